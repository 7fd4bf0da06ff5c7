//! Globus identity mapping for multi-user endpoints.
#![forbid(unsafe_code)]
