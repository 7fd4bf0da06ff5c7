//! Endpoint configuration files: models, defaults, template rendering and validation.
#![forbid(unsafe_code)]

mod coerce;
pub mod config;
pub mod defaults;
pub mod engine;
mod error;
pub mod pyfmt;
pub mod template;
pub mod user_env;
pub mod yaml;

pub use coerce::Number;
pub use config::{
    BaseConfig, CoreEndpointConfig, EndpointConfig, LoadOptions, PamConfig, PathsConfig,
    UserEndpointConfig, load_config,
};
pub use engine::{AddressConfig, EngineConfig, EngineType, LauncherConfig, ProviderConfig};
pub use error::{
    ConfigError, ConfigErrorKind, engine_in_core_config_message, missing_engine_message,
};
