//! The JSON document a MEP writes to a user endpoint's stdin (PROTOCOL-ENDPOINT §5.4).
//!
//! [`UepStdin::to_bytes`] writes the compact form upstream writes (keys in upstream's order,
//! absent optional keys omitted); [`UepStdin::from_slice`] parses and validates what a UEP
//! reads. The document must fit in the pipe buffer ([`MAX_LEN_DEFAULT_PIPE`] with Linux's
//! default 64 KiB pipe).
//!
//! ```
//! use gc_wire::uep_stdin::UepStdin;
//! let doc = UepStdin::from_slice(br#"{"config":"engine:\n  type: ThreadPoolEngine",
//!     "ep_info":{"posix_ppid":24395},"mem_fd":3,"enckey":"k"}"#).unwrap();
//! assert_eq!(doc.ep_info.posix_ppid, 24395);
//! assert_eq!(doc.mem_fd, Some(3));
//! ```

use std::io;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The largest document that fits a default Linux pipe: `F_GETPIPE_SZ` (65 536) − 256.
pub const MAX_LEN_DEFAULT_PIPE: usize = 65_536 - 256;

/// Why a stdin document is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StdinError {
    /// Not a JSON object of the expected shape (e.g. `config` missing or not a string).
    #[error("stdin document is not valid: {0}")]
    Json(#[source] serde_json::Error),
    /// Neither `amqp_creds` nor `mem_fd`: the UEP would have no broker credentials.
    #[error("stdin document has neither amqp_creds nor mem_fd")]
    NoCredentials,
    /// `mem_fd` without a non-empty `enckey`: the credentials could not be decrypted.
    #[error("stdin document has mem_fd but no enckey")]
    MissingEncryptionKey,
}

/// The stdin document of a user endpoint. Unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UepStdin {
    /// Verbatim `kwargs.amqp_creds` of the start command (always written by the MEP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp_creds: Option<Map<String, Value>>,
    /// The rendered user endpoint config (YAML text).
    pub config: String,
    pub ep_info: EpInfo,
    /// Descriptor of the credential memfd (always 3 in 4.19).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_fd: Option<i32>,
    /// Fernet key of the credential memfd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enckey: Option<String>,
    /// Present iff the MEP config has `allowed_functions` (even empty); replaces the UEP
    /// config's own list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_functions: Option<Vec<Uuid>>,
    /// Audit pipe descriptor (HA with `audit_log_path` only; 4 in 4.19).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_fd: Option<i32>,
}

/// `ep_info`: facts about the MEP side, echoed by the UEP in its heartbeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpInfo {
    /// The MEP's pid.
    pub posix_ppid: i64,
    /// Only when identity mapping matched (IDENTITY-MAPPING.md §7.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globus_candidate_identities: Option<Vec<Value>>,
    /// Only when identity mapping matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globus_matched_identity: Option<String>,
    /// Anything else, kept and echoed.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl UepStdin {
    /// Parse and validate a document read from stdin.
    pub fn from_slice(bytes: &[u8]) -> Result<UepStdin, StdinError> {
        let doc: UepStdin = serde_json::from_slice(bytes).map_err(StdinError::Json)?;
        // As upstream's credential provider: the memfd when given (which needs the key),
        // else the inline credentials.
        match (doc.mem_fd, doc.enckey.as_deref(), &doc.amqp_creds) {
            (Some(_), None | Some(""), _) => Err(StdinError::MissingEncryptionKey),
            (None, _, None) => Err(StdinError::NoCredentials),
            _ => Ok(doc),
        }
    }

    /// The compact JSON written to the pipe (no trailing newline), ASCII-only like upstream's
    /// `json.dumps`: other characters are written as `\uXXXX` escapes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
        // Cannot fail: string keys only, finite numbers only, written to memory.
        self.serialize(&mut ser)
            .expect("serializing the stdin document cannot fail");
        out
    }
}

/// Compact JSON with every character outside printable ASCII escaped, as Python's
/// `json.dumps(ensure_ascii=True)` (characters beyond the BMP as UTF-16 surrogate pairs).
struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut units = [0u16; 2];
        for (i, c) in fragment.char_indices() {
            if (' '..='~').contains(&c) {
                writer.write_all(&fragment.as_bytes()[i..i + 1])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The VERIFIED 4.19 document of PROTOCOL-ENDPOINT §5.4.
    const VERIFIED: &str = r#"{"amqp_creds":{"endpoint_id":"55555555-3333-4444-8555-666666666666","task_queue_info":{"connection_url":"amqp://gcep:gcep@localhost:5672/gcep","exchange":"tasks","queue":"55555555-3333-4444-8555-666666666666.tasks"},"result_queue_info":{"connection_url":"amqp://gcep:gcep@localhost:5672/gcep","exchange":"results","queue":"results","queue_publish_kwargs":{"exchange":"results","routing_key":"55555555-3333-4444-8555-666666666666.results","mandatory":true,"properties":{"delivery_mode":2}}},"heartbeat_queue_info":{"connection_url":"amqp://gcep:gcep@localhost:5672/gcep","exchange":"heartbeats","queue":"heartbeats","queue_publish_kwargs":{"exchange":"heartbeats","routing_key":"55555555-3333-4444-8555-666666666666.heartbeats","mandatory":true,"properties":{"delivery_mode":2}}}},"config":"heartbeat_period: 5\nidle_heartbeats_soft: 4\nidle_heartbeats_hard: 8\nengine:\n  type: ThreadPoolEngine\n  max_workers: 2","ep_info":{"posix_ppid":24395},"mem_fd":3,"enckey":"an27SNS1I52vm3L3A8KNEfzkoZlcg8eZTXnDHwDlJDA=","allowed_functions":["0a0a0a0a-0000-4000-8000-00000000000a"]}"#;

    #[test]
    fn verified_document_round_trips_byte_identically() {
        let doc = UepStdin::from_slice(VERIFIED.as_bytes()).unwrap();
        assert_eq!(doc.ep_info.posix_ppid, 24395);
        assert_eq!(doc.allowed_functions.as_ref().unwrap().len(), 1);
        let creds = crate::amqp_creds::AmqpCreds::from_json(&Value::Object(
            doc.amqp_creds.clone().unwrap(),
        ))
        .unwrap();
        assert_eq!(
            creds.endpoint_id.to_string(),
            "55555555-3333-4444-8555-666666666666"
        );
        assert_eq!(String::from_utf8(doc.to_bytes()).unwrap(), VERIFIED);
        assert!(VERIFIED.len() <= MAX_LEN_DEFAULT_PIPE);
    }

    #[test]
    fn identity_mapping_fields_and_extras_are_kept() {
        let text = r#"{"mem_fd":3,"enckey":"k","config":"x","ep_info":{"posix_ppid":1,"globus_candidate_identities":[{"id":"a"}],"globus_matched_identity":"a","extra":[1]}}"#;
        let doc = UepStdin::from_slice(text.as_bytes()).unwrap();
        assert_eq!(doc.ep_info.globus_matched_identity.as_deref(), Some("a"));
        assert_eq!(doc.ep_info.other["extra"], serde_json::json!([1]));
        let back: Value = serde_json::from_slice(&doc.to_bytes()).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn non_ascii_is_escaped_like_python_json_dumps() {
        let mut doc = UepStdin::from_slice(VERIFIED.as_bytes()).unwrap();
        doc.config = "\u{e9}\u{1f600}\u{7f}\n\u{1}\"\\/".into();
        let text = String::from_utf8(doc.to_bytes()).unwrap();
        // Python: json.dumps("é😀\x7f\n\x01\"\\/", separators=(",", ":"))
        assert!(
            text.contains(r#""config":"\u00e9\ud83d\ude00\u007f\n\u0001\"\\/","#),
            "{text}"
        );
        assert_eq!(UepStdin::from_slice(text.as_bytes()).unwrap(), doc);
    }

    #[test]
    fn invalid_documents_are_rejected() {
        for text in [
            "",
            "[]",
            r#"{"ep_info":{"posix_ppid":1},"amqp_creds":{}}"#,
            r#"{"config":5,"ep_info":{"posix_ppid":1},"amqp_creds":{}}"#,
            r#"{"config":"x","amqp_creds":{}}"#,
            r#"{"config":"x","ep_info":{},"amqp_creds":{}}"#,
            r#"{"config":"x","ep_info":{"posix_ppid":1},"mem_fd":"3","enckey":"k"}"#,
            r#"{"config":"x","ep_info":{"posix_ppid":1},"amqp_creds":{},"allowed_functions":["nope"]}"#,
        ] {
            assert!(
                matches!(
                    UepStdin::from_slice(text.as_bytes()),
                    Err(StdinError::Json(_))
                ),
                "{text}"
            );
        }
        assert!(matches!(
            UepStdin::from_slice(br#"{"config":"x","ep_info":{"posix_ppid":1}}"#),
            Err(StdinError::NoCredentials)
        ));
        for text in [
            r#"{"config":"x","ep_info":{"posix_ppid":1},"mem_fd":3,"amqp_creds":{}}"#,
            r#"{"config":"x","ep_info":{"posix_ppid":1},"mem_fd":3,"enckey":""}"#,
        ] {
            assert!(
                matches!(
                    UepStdin::from_slice(text.as_bytes()),
                    Err(StdinError::MissingEncryptionKey)
                ),
                "{text}"
            );
        }
        // Inline credentials alone are enough (pre-4.19 MEPs).
        assert!(
            UepStdin::from_slice(br#"{"config":"x","ep_info":{"posix_ppid":1},"amqp_creds":{}}"#)
                .is_ok()
        );
    }
}
