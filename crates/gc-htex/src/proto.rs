//! The channel between the interchange and a worker manager.
//!
//! Frames, both directions: big-endian `u32` N, then N bytes made of a big-endian `u32` H,
//! H bytes of JSON header ([`ToManager`] / [`FromManager`]) and N − 4 − H bytes of blob:
//! a task's `task_buffer` (UTF-8) with `task`, a packed `Result` message
//! (`gc_wire::messagepack`) with `result`, nothing otherwise. Over TLS when `encrypted`.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

/// Version of this channel; the interchange refuses managers speaking another.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts (a result is at most 10 MiB of text plus its envelope).
pub const MAX_FRAME: usize = 64 << 20;

/// What the worker settings of every manager are (sent on registration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSettings {
    /// Absolute task working directory.
    pub working_dir: String,
    /// `run_in_sandbox`.
    pub run_in_sandbox: bool,
    /// Deserializer allow-list (empty: all).
    pub allowed_deserializers: Vec<String>,
    /// Result size limit in characters.
    pub result_size_limit: usize,
    /// Goes into every result's `details`.
    pub endpoint_id: Option<Uuid>,
    /// Seconds between heartbeats each side sends.
    pub heartbeat_period: f64,
    /// Seconds of silence after which each side gives the other up.
    pub heartbeat_threshold: f64,
    /// Extra attempts when a worker dies under a task (the manager retries those itself).
    pub max_retries_on_system_failure: u32,
}

/// Interchange → manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToManager {
    /// Answer to `register`.
    Registered {
        /// The interchange's name for this manager.
        manager_id: String,
        /// How to run workers.
        settings: WorkerSettings,
    },
    /// Run a task; the blob is its `task_buffer`.
    Task {
        /// The task id.
        task_id: Uuid,
        /// Result serializers requested by the task.
        result_serializers: Vec<String>,
        /// GlobusMPIEngine: the task's `resource_specification` (left out when empty).
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        resource_specification: serde_json::Map<String, serde_json::Value>,
        /// The submitter's `user_runtime` (PROTOCOL-SDK §5.4), for the worker's compatibility
        /// check; left out when unknown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_runtime: Option<serde_json::Map<String, serde_json::Value>>,
    },
    /// I am alive.
    Heartbeat,
    /// Stop (the manager's block is being scaled in, or the engine stops).
    Shutdown,
    /// Registration refused.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Manager → interchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromManager {
    /// First frame.
    Register {
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The block (`--block-id`).
        block_id: String,
        /// The node's host name.
        hostname: String,
        /// The manager's process id.
        pid: u32,
        /// Workers it runs.
        workers: usize,
        /// The workers' Python version (`platform.python_version()`), when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        python_version: Option<String>,
        /// The workers' `globus-compute-sdk` version, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdk_version: Option<String>,
    },
    /// A finished task; the blob is the packed `Result`.
    Result {
        /// The task id.
        task_id: Uuid,
    },
    /// I am alive.
    Heartbeat,
    /// `drain_period` is over: send me nothing more, and tell me to stop once I hold no task.
    Drain,
}

/// Channel errors.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
    /// I/O failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a frame of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Write one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, H: Serialize>(
    w: &mut W,
    header: &H,
    blob: &[u8],
) -> Result<(), FrameError> {
    let header = serde_json::to_vec(header).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let total = 4 + header.len() + blob.len();
    if total > MAX_FRAME {
        return Err(FrameError::Malformed(format!("frame of {total} bytes")));
    }
    let mut buf = Vec::with_capacity(8 + header.len() + blob.len());
    buf.extend_from_slice(&(total as u32).to_be_bytes());
    buf.extend_from_slice(&(header.len() as u32).to_be_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(blob);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Read one frame.
pub async fn read_frame<R: AsyncRead + Unpin, H: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<(H, Vec<u8>), FrameError> {
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
    let header = serde_json::from_slice(&body[4..4 + hlen])
        .map_err(|e| FrameError::Malformed(format!("header: {e}")))?;
    body.drain(..4 + hlen);
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let mut buf = Vec::new();
        let id = Uuid::new_v4();
        let msg = ToManager::Task {
            task_id: id,
            result_serializers: vec!["x".into()],
            resource_specification: serde_json::json!({"num_ranks": 2})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            user_runtime: serde_json::json!({"python": {"version": "3.12.1"}})
                .as_object()
                .cloned(),
        };
        write_frame(&mut buf, &msg, b"payload").await.unwrap();
        let (back, blob): (ToManager, _) = read_frame(&mut buf.as_slice()).await.unwrap();
        assert_eq!(back, msg);
        assert_eq!(blob, b"payload");
    }

    #[tokio::test]
    async fn bad_frames_are_errors() {
        let r: Result<(FromManager, _), _> = read_frame(&mut &b""[..]).await;
        assert!(matches!(r, Err(FrameError::Closed)));
        let mut bad = Vec::new();
        bad.extend_from_slice(&8u32.to_be_bytes());
        bad.extend_from_slice(&100u32.to_be_bytes());
        bad.extend_from_slice(b"{}{}");
        let r: Result<(FromManager, _), _> = read_frame(&mut bad.as_slice()).await;
        assert!(matches!(r, Err(FrameError::Malformed(_))));
        let mut unknown = Vec::new();
        write_frame(&mut unknown, &serde_json::json!({"type": "nope"}), b"")
            .await
            .unwrap();
        let r: Result<(FromManager, _), _> = read_frame(&mut unknown.as_slice()).await;
        assert!(matches!(r, Err(FrameError::Malformed(_))));
        let huge = u32::MAX.to_be_bytes();
        let r: Result<(FromManager, _), _> = read_frame(&mut &huge[..]).await;
        assert!(matches!(r, Err(FrameError::Malformed(_))));
    }
}
