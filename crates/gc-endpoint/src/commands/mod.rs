//! One module per sub-command; each offers `run(args) -> CmdResult`.

pub mod auth;
pub mod bootstrap_user_endpoint;
pub mod common;
pub mod configure;
pub mod delete;
pub mod list;
pub mod map_identity;
pub mod on_boot;
pub mod render_user_config;
pub mod restart;
pub mod start;
pub mod start_user_endpoint;
pub mod stop;
pub mod version;
