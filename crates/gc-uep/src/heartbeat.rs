//! Heartbeat bodies (PROTOCOL-ENDPOINT §6.2): engine status, then `ep_info` extended with the
//! UEP's own process facts (ENDPOINT.md §5.2 step 15), then `heartbeat_period` and `active`.

use gc_wire::messagepack::{EpStatusReport, Message, TaskStatuses, pack};
use serde_json::{Map, Value};
use uuid::Uuid;

/// `ep_info` from stdin plus `posix_*`, `config_raw`, `start_iso`, `start_unix`, in upstream's
/// order.
pub(crate) fn extended_ep_info(
    mut ep_info: Map<String, Value>,
    config_raw: &str,
) -> Map<String, Value> {
    use nix::unistd::{Pid, User, getgid, getgroups, getpid, getsid, getuid};
    let uid = getuid();
    let username = User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.as_raw().to_string(), |u| u.name);
    let groups: Vec<Value> = getgroups()
        .map(|gs| gs.into_iter().map(|g| g.as_raw().into()).collect())
        .unwrap_or_default();
    let sid = getsid(None::<Pid>).map_or(0, Pid::as_raw);
    let now = chrono::Local::now();
    let start_unix = now.timestamp_micros() as f64 / 1e6;
    ep_info.insert("posix_username".into(), username.into());
    ep_info.insert("posix_uid".into(), uid.as_raw().into());
    ep_info.insert("posix_gid".into(), getgid().as_raw().into());
    ep_info.insert("posix_groups".into(), groups.into());
    ep_info.insert("posix_pid".into(), getpid().as_raw().into());
    ep_info.insert("posix_sid".into(), sid.into());
    ep_info.insert("config_raw".into(), config_raw.into());
    ep_info.insert(
        "start_iso".into(),
        now.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string().into(),
    );
    ep_info.insert("start_unix".into(), start_unix.into());
    ep_info
}

/// The packed `EPStatusReport` of one heartbeat.
pub(crate) fn report(
    uep_id: Uuid,
    engine_state: Map<String, Value>,
    ep_info: &Map<String, Value>,
    heartbeat_period: f64,
    active: bool,
) -> Vec<u8> {
    let mut global_state = engine_state;
    global_state.extend(ep_info.iter().map(|(k, v)| (k.clone(), v.clone())));
    global_state.insert("heartbeat_period".into(), heartbeat_period.into());
    global_state.insert("active".into(), active.into());
    pack(&Message::EpStatusReport(EpStatusReport {
        endpoint_id: uep_id,
        global_state,
        task_statuses: TaskStatuses::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_engine::EngineStatus;

    #[test]
    fn report_has_upstream_keys_in_order() {
        let status = EngineStatus {
            engine_type: "ThreadPoolEngine",
            max_workers: 2,
            live_workers: 2,
            pending_tasks: 0,
            running_tasks: 0,
        };
        let mut info = Map::new();
        info.insert("posix_ppid".into(), 24395.into());
        let info = extended_ep_info(info, "engine:\n  type: ThreadPoolEngine");
        let id = Uuid::parse_str("22222222-3333-4444-8555-666666666666").unwrap();
        let bytes = report(id, status.global_state(), &info, 5.0, false);
        let v: Value = serde_json::from_slice(&bytes[1..]).unwrap();
        let gs = v["data"]["global_state"].as_object().unwrap();
        let keys: Vec<&str> = gs.keys().map(String::as_str).collect();
        let tail = [
            "engine_type",
            "posix_ppid",
            "posix_username",
            "posix_uid",
            "posix_gid",
            "posix_groups",
            "posix_pid",
            "posix_sid",
            "config_raw",
            "start_iso",
            "start_unix",
            "heartbeat_period",
            "active",
        ];
        assert_eq!(&keys[keys.len() - tail.len()..], tail);
        assert_eq!(gs["posix_pid"], std::process::id());
        assert_eq!(gs["active"], false);
        // Python writes the period as a float.
        assert!(String::from_utf8_lossy(&bytes).contains("\"heartbeat_period\":5.0"));
        assert_eq!(v["data"]["task_statuses"], serde_json::json!({}));
    }
}
