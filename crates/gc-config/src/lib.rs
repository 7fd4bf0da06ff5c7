//! Endpoint configuration files: models, defaults, template rendering and validation.
#![forbid(unsafe_code)]

pub mod defaults;
