//! The unprivileged core endpoint (MEP) runtime — what `globus-compute-endpoint start NAME`
//! runs (ENDPOINT §4, PROTOCOL-ENDPOINT §2, §4, §5, §6.1).
//!
//! One job: keep a registered endpoint's command queue served. In order:
//!
//! 1. [`register`] — client-credentials tokens, `POST`/`PUT /v3/endpoints`, `endpoint.json`,
//!    the owner's identity set; failures are [`RegisterError`]s with upstream's exit statuses
//!    ([`RegisterError::exit_code`]: 69 blocked, 65 invalid, 75 network, 77 auth, 70 malformed).
//! 2. [`run`] — consume commands, check each ([`command::check`]: content type, timestamp,
//!    clock skew ≤ 180 s, required keys, command name, identity), render the user config
//!    template as the same user and spawn the user endpoint
//!    (`<child_program> _start-user-endpoint <name> [args…]`, stdin document of §5.4) in its own
//!    process group; de-duplicate start commands for a running user endpoint and revive it
//!    when it exits 0 within the grace period; send failure notices (§4.6) for refused
//!    commands, failed starts and user endpoints killed by a signal (a user endpoint reports
//!    its own non-zero exits); heartbeat every `heartbeat_period`; on shutdown send the
//!    final `heartbeat_period: 0` report, SIGTERM the user endpoints, then SIGKILL their
//!    process groups. [`MepOptions::events`] reports what happened ([`MepEvent`]).
//!
//! ```no_run
//! # async fn demo(dir: std::path::PathBuf) -> Result<(), Box<dyn std::error::Error>> {
//! use gc_mep::{ClientCredentials, MepOptions, RegisterInputs, ServiceUrls};
//! let config = gc_config::CoreEndpointConfig::from_file(&dir.join("config.yaml"), Default::default())?;
//! let urls = ServiceUrls::for_config(&config)?;
//! let credentials = ClientCredentials::from_env()?;
//! let registration = gc_mep::register(&RegisterInputs {
//!     endpoint_dir: &dir, name: "my-ep", config: &config, endpoint_uuid: None,
//!     urls: &urls, credentials: &credentials, python_version: "3.11.2", takeover: false,
//! }).await?;
//! let options = MepOptions::new("my-ep", dir.clone(), config)?;
//! gc_mep::run(options, registration, gc_mep::shutdown_signal()).await?;
//! # Ok(()) }
//! ```
//!
//! [`start`] / [`start_blocking`] do the whole `start` sequence (config, PID file, register,
//! run until a signal or the PID file's removal) and return the exit status.
//!
//! A UEP's broker credentials reach it only through the Fernet-encrypted credential memfd at
//! descriptor 3 (`mem_fd`/`enckey` in the stdin document, never `amqp_creds`;
//! [`gc_sys::credfd`]); a repeated start command for a running UEP rewrites it. Not yet done:
//! detaching and the console banner. The HA audit log is in [`audit`].
//!
//! A privileged MEP with `identity_mapping_config_path` ([`MepOptions::identity_mapping`])
//! maps each start command's identity set to a local account and starts the UEP through the
//! [`bootstrap`] program after dropping privileges to that account (optionally inside a PAM
//! account/session check); see `docs/multi-user.md`. Without a mapping file a privileged MEP
//! works as upstream's root-without-mapping: `multi_user`, cleared UEP environment, owner
//! identities only.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bootstrap;
pub mod command;
pub mod metrics;
pub mod pidfile;
pub mod privilege;
mod register;
mod runtime;
mod start;
pub mod uep;

pub use register::{
    ClientCredentials, ENDPOINT_VERSION, RegisterError, RegisterInputs, Registration, ServiceUrls,
    register, request_body,
};
pub use runtime::{MepError, MepEvent, MepOptions, StopCause, run, shutdown_signal};
pub use start::{StartArgs, start, start_blocking};
