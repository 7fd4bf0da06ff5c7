//! Globus identity mapping for multi-user endpoints: turn a Globus Auth identity set into one
//! local user name, exactly as the reference (`globus-identity-mapping` as driven by the Globus
//! Compute endpoint) does. The specification is `IDENTITY-MAPPING.md`; section numbers in the
//! docs below refer to it.
//!
//! * [`MappingFile`] loads and validates a mapping file (§2): `expression_identity_mapping#1.0.0`
//!   rules compiled with Python `re` semantics (§3, module [`pyre`]) and
//!   `external_identity_mapping#1.0.0` programs (§6, module [`external`]).
//! * [`MappingFile::map_identities`] evaluates every configuration and applies the decision of
//!   §7 ([`MappingOutcome`]); [`MappingFile::explain`] also says why.
//! * [`ReloadingMapping`] follows the file on disk for the MEP (§7.4).
//!
//! ```
//! use gc_idmap::{ExternalContext, MappingFile, MappingOutcome, json};
//!
//! let file = MappingFile::from_bytes(br#"[{"DATA_TYPE": "expression_identity_mapping#1.0.0",
//!     "mappings": [{"source": "{username}", "match": "(.*)@example\\.org", "output": "{0}"}]}]"#)
//!     .unwrap();
//! let ids = json::parse(r#"[{"id": "u1", "username": "alice@example.org", "status": "used"}]"#)
//!     .unwrap();
//! let json::Json::Array(ids) = ids else { unreachable!() };
//! let ctx = ExternalContext::for_endpoint("00000000-0000-0000-0000-000000000000");
//! assert_eq!(
//!     file.map_identities(&ids, &ctx),
//!     MappingOutcome::Mapped { identity_id: json::Json::Str("u1".into()), username: "alice".into() }
//! );
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod dialect;
pub mod expression;
pub mod external;
pub mod json;
mod mapper;
pub mod pyre;
pub mod pytext;
pub mod reload;
mod tables;
pub mod template;

pub use config::{ConfigKind, Configuration, LoadError, MappingFile, Rule};
pub use external::{ExternalContext, POSIX_CONNECTOR_ID};
pub use mapper::{ConfigReport, MappingOutcome};
pub use reload::{FileError, ReloadStatus, ReloadingMapping};
