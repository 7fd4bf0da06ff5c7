//! The frame channel between the engine and one Python worker.
//!
//! The format is described once, in the worker's module doc
//! (`python/globus_compute_rs_worker/globus_compute_rs_worker/worker.py`): every frame is a
//! big-endian `u32` length, then a body made of a big-endian `u32` header length, a JSON
//! header and a raw blob. This module writes the parent's frames and reads the worker's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Version of the frame protocol; the worker refuses any other.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// Largest frame accepted from a worker. Results are limited to `result_size_limit`
/// characters (10 MiB by default), but error text has no limit of its own; this only guards
/// against a corrupted length field allocating without bound.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Frames the engine sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ToWorker<'a> {
    Init {
        protocol: u32,
        run_dir: &'a str,
        run_in_sandbox: bool,
        allowed_deserializers: &'a [String],
        result_size_limit: usize,
    },
    Task {
        task_id: &'a str,
        result_serializers: &'a [String],
        /// Variables set for this task only; left out when empty.
        #[serde(skip_serializing_if = "no_environment")]
        environment: &'a BTreeMap<String, String>,
        /// The submitter's `user_runtime`; left out when unknown.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_runtime: Option<&'a Map<String, Value>>,
    },
}

fn no_environment(environment: &&BTreeMap<String, String>) -> bool {
    environment.is_empty()
}

/// How a task ended, as the worker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// The blob is the serialized return value.
    Success,
    /// The blob is the error text; `code` and `user_message` are set.
    Failure,
    /// Preparing the task's directory failed; the blob is a traceback. Reported like a lost
    /// worker (an engine-level failure).
    SystemFailure,
}

/// Frames the engine receives (headers only; the blob travels beside them).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum FromWorker {
    Ready {
        protocol: u32,
        pid: u32,
        details: Map<String, Value>,
    },
    Fatal {
        message: String,
    },
    Result {
        task_id: String,
        outcome: Outcome,
        code: Option<String>,
        user_message: Option<String>,
        exec_start: i64,
        exec_end: i64,
        /// The submitter's runtime differs from the worker's in a way that may still work.
        #[serde(default)]
        warning: Option<String>,
    },
}

/// What can go wrong on the channel itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("channel closed")]
    Closed,
    #[error("I/O error on the worker channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame from the worker: {0}")]
    Malformed(String),
}

/// Write one frame: `header` as JSON, then `blob`.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    header: &ToWorker<'_>,
    blob: &[u8],
) -> Result<(), FrameError> {
    let header = serde_json::to_vec(header)
        .map_err(|e| FrameError::Malformed(format!("cannot encode a header: {e}")))?;
    let total = 4 + header.len() + blob.len();
    let (Ok(total), Ok(hlen)) = (u32::try_from(total), u32::try_from(header.len())) else {
        return Err(FrameError::Malformed(format!(
            "a frame of {total} bytes does not fit the 32-bit length"
        )));
    };
    let mut head = Vec::with_capacity(8 + header.len());
    head.extend_from_slice(&total.to_be_bytes());
    head.extend_from_slice(&hlen.to_be_bytes());
    head.extend_from_slice(&header);
    w.write_all(&head).await?;
    w.write_all(blob).await?;
    w.flush().await?;
    Ok(())
}

/// Send the worker's source ahead of the first frame (big-endian `u32` length, UTF-8).
pub(crate) async fn write_source<W: AsyncWrite + Unpin>(
    w: &mut W,
    source: &str,
) -> Result<(), FrameError> {
    let len = u32::try_from(source.len())
        .map_err(|_| FrameError::Malformed("worker source too long".into()))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(source.as_bytes()).await?;
    Ok(())
}

/// Read one frame: its decoded header and its blob.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<(FromWorker, Vec<u8>), FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let total = u32::from_be_bytes(len) as usize;
    if !(4..=MAX_FRAME).contains(&total) {
        return Err(FrameError::Malformed(format!("frame length {total}")));
    }
    let mut body = vec![0u8; total];
    match r.read_exact(&mut body).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let hlen = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    if hlen > total - 4 {
        return Err(FrameError::Malformed(format!(
            "header length {hlen} exceeds frame length {total}"
        )));
    }
    let header: FromWorker = serde_json::from_slice(&body[4..4 + hlen])
        .map_err(|e| FrameError::Malformed(format!("header: {e}")))?;
    body.drain(..4 + hlen);
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_frame(header: &str, blob: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + header.len() + blob.len()) as u32).to_be_bytes());
        v.extend_from_slice(&(header.len() as u32).to_be_bytes());
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(blob);
        v
    }

    #[tokio::test]
    async fn writes_length_prefixed_json_then_blob() {
        let mut out = Vec::new();
        let header = ToWorker::Task {
            task_id: "t",
            result_serializers: &[],
            environment: &BTreeMap::new(),
            user_runtime: None,
        };
        write_frame(&mut out, &header, b"BLOB").await.unwrap();
        let json = br#"{"type":"task","task_id":"t","result_serializers":[]}"#;
        assert_eq!(&out[..4], &((4 + json.len() + 4) as u32).to_be_bytes());
        assert_eq!(&out[4..8], &(json.len() as u32).to_be_bytes());
        assert_eq!(&out[8..8 + json.len()], json);
        assert_eq!(&out[8 + json.len()..], b"BLOB");
    }

    #[tokio::test]
    async fn reads_result_frames() {
        let hdr = r#"{"type":"result","task_id":"t","outcome":"failure","code":"C","user_message":"m","exec_start":1,"exec_end":2}"#;
        let bytes = worker_frame(hdr, "é".as_bytes());
        let (h, blob) = read_frame(&mut bytes.as_slice()).await.unwrap();
        assert!(matches!(
            h,
            FromWorker::Result {
                outcome: Outcome::Failure,
                exec_end: 2,
                ..
            }
        ));
        assert_eq!(blob, "é".as_bytes());
        let hdr = r#"{"type":"result","task_id":"t","outcome":"success","code":null,"user_message":null,"exec_start":1,"exec_end":2,"warning":"w"}"#;
        let bytes = worker_frame(hdr, b"");
        let (h, _) = read_frame(&mut bytes.as_slice()).await.unwrap();
        assert!(matches!(h, FromWorker::Result { warning: Some(w), .. } if w == "w"));
    }

    #[tokio::test]
    async fn task_frames_carry_the_user_runtime_when_known() {
        let mut out = Vec::new();
        let runtime: Map<String, Value> =
            serde_json::from_str(r#"{"python":{"version":"3.12.1"}}"#).unwrap();
        let header = ToWorker::Task {
            task_id: "t",
            result_serializers: &[],
            environment: &BTreeMap::new(),
            user_runtime: Some(&runtime),
        };
        write_frame(&mut out, &header, b"").await.unwrap();
        let json = br#"{"type":"task","task_id":"t","result_serializers":[],"user_runtime":{"python":{"version":"3.12.1"}}}"#;
        assert_eq!(&out[8..], json);
    }

    #[tokio::test]
    async fn rejects_truncated_and_inconsistent_frames() {
        assert!(matches!(
            read_frame(&mut &b""[..]).await,
            Err(FrameError::Closed)
        ));
        let mut short = worker_frame(r#"{"type":"fatal","message":"x"}"#, b"");
        short.truncate(10);
        assert!(matches!(
            read_frame(&mut short.as_slice()).await,
            Err(FrameError::Closed)
        ));
        let mut bad = Vec::new();
        bad.extend_from_slice(&8u32.to_be_bytes());
        bad.extend_from_slice(&100u32.to_be_bytes());
        bad.extend_from_slice(b"{}{}");
        assert!(matches!(
            read_frame(&mut bad.as_slice()).await,
            Err(FrameError::Malformed(_))
        ));
        let unknown = worker_frame(r#"{"type":"nope"}"#, b"");
        assert!(matches!(
            read_frame(&mut unknown.as_slice()).await,
            Err(FrameError::Malformed(_))
        ));
        let huge = u32::MAX.to_be_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..]).await,
            Err(FrameError::Malformed(_))
        ));
    }
}
