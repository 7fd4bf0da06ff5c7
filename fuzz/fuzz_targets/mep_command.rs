//! Fuzz the MEP's command-queue check (`gc_mep::command::check`) the way a message arrives:
//! AMQP properties and a JSON body, all attacker-shaped.
//!
//! Input layout: byte 0 picks the content type, bytes 1..9 are the timestamp offset from "now"
//! (little-endian `i64`, so skew rejections and acceptances are both reached), the rest is
//! the body. Properties checked:
//! * `check` never panics, whatever the bytes;
//! * an accepted command is exactly what `MepCommand::from_slice(body)?.validate()` gives, its
//!   identity set intersects the owner's, and it survives a JSON round trip.
#![no_main]

use std::collections::BTreeSet;

use gc_mep::command::{self, Envelope};
use gc_wire::mep_command::MepCommand;
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_750_000_000;
const OWNER: &str = "40322b9a-ccff-4e94-a6f6-4aa684bb3121";

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (offset, body) = match rest.split_first_chunk::<8>() {
        Some((head, body)) => (i64::from_le_bytes(*head), body),
        None => (0, rest),
    };
    let content_type = match kind % 4 {
        0 | 1 => Some("application/json"),
        2 => Some("text/plain"),
        _ => None,
    };
    // Mostly timestamps near "now"; sometimes anything, including before the epoch.
    let timestamp = if kind & 0x80 == 0 {
        u64::try_from(NOW.saturating_add(offset % 400)).ok()
    } else {
        Some(offset as u64)
    };
    let owner: BTreeSet<String> = [OWNER.to_string()].into();
    let envelope = Envelope {
        content_type,
        timestamp,
    };
    let _ = command::redacted_dump(body);
    if let Ok(start) = command::check(envelope, body, NOW, &owner) {
        let direct = MepCommand::from_slice(body)
            .and_then(MepCommand::validate)
            .expect("an accepted command validates on its own");
        assert_eq!(direct, start);
        assert!(start.identity_subs().any(|s| s == OWNER));
        let wire = serde_json::to_vec(&start).expect("serialize command");
        let back = MepCommand::from_slice(&wire)
            .and_then(MepCommand::validate)
            .expect("re-validate command");
        assert_eq!(back, start);
    }
});
