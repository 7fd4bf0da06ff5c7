//! Endpoint configuration: the files an endpoint reads, their models and the user-config
//! template.
//!
//! This crate's one job is turning configuration *text* into validated *values*, exactly as
//! upstream Globus Compute endpoint 4.19.0 does (ENDPOINT.md §1.6, §2, §3):
//!
//! * [`defaults`] — the byte-exact default files `configure` writes;
//! * [`CoreEndpointConfig`] (`config.yaml`) and [`UserEndpointConfig`] (the rendered
//!   template), with upstream defaults, lax coercions and the cross-cutting rules of §2.7;
//!   [`engine`] models the `engine`/`provider`/`launcher`/`address` dispatch;
//! * [`template`] — validating user options and rendering `user_config_template.yaml.j2` in a
//!   sandboxed, strict Jinja environment;
//! * [`user_env`] — `user_environment.yaml`;
//! * [`yaml`] — a YAML 1.1 loader (PyYAML semantics) that keeps line numbers.
//!
//! Errors are values: [`ConfigError`] names the file, the line and the field
//! (`config.yaml: line 3: unknown field `foo` (Unexpected keyword argument)`);
//! [`template::TemplateError`] carries upstream's exception class and message.
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use gc_config::template::{render_and_load, RenderInputs};
//! use gc_config::{defaults, CoreEndpointConfig, EngineType, LoadOptions};
//!
//! let mep = CoreEndpointConfig::from_yaml(defaults::DEFAULT_CONFIG_YAML, "config.yaml", LoadOptions::default())?;
//! let err = CoreEndpointConfig::from_yaml("display_name: x\nfoo: 1\n", "config.yaml", LoadOptions::default())
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "config.yaml: line 2: unknown field `foo` (Unexpected keyword argument)");
//!
//! let opts = serde_json::json!({"endpoint_setup": "echo hi"});
//! let uep = render_and_load(
//!     &RenderInputs {
//!         template: defaults::USER_CONFIG_TEMPLATE_J2,
//!         template_dir: None,
//!         schema: None,
//!         user_opts: &opts,
//!         user_runtime: &serde_json::json!({}),
//!         parent_config: &mep,
//!         mapped_identity: &serde_json::json!({}),
//!         env: &BTreeMap::new(),
//!     },
//!     "<rendered user config>",
//! )?;
//! assert_eq!(uep.engine.engine_type, EngineType::GlobusCompute);
//! assert_eq!(uep.endpoint_setup.as_deref(), Some("echo hi"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
    UserEndpointConfig, expand_path, load_config,
};
pub use engine::{AddressConfig, EngineConfig, EngineType, LauncherConfig, ProviderConfig};
pub use error::{
    ConfigError, ConfigErrorKind, engine_in_core_config_message, missing_engine_message,
};
