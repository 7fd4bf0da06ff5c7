//! Fuzz the document the MEP writes to a user endpoint's stdin (`gc_wire::uep_stdin`), and the
//! parts of it the UEP interprets: `amqp_creds` (`gc_wire::amqp_creds::AmqpCreds`) and the
//! broker `connection_url`s inside (`gc_broker::AmqpUrl`).
//!
//! * Never panics on arbitrary bytes.
//! * An accepted document re-encodes to bytes that parse to the same document.
//! * Every `connection_url` the credentials hold parses or is refused without panicking; the
//!   raw input is also tried as a URL.
#![no_main]

use gc_broker::AmqpUrl;
use gc_wire::{amqp_creds::AmqpCreds, uep_stdin::UepStdin};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(url) = AmqpUrl::parse(text) {
            let _ = url.to_lapin();
            let _ = url.with_port_override(Some(1));
        }
    }
    let Ok(doc) = UepStdin::from_slice(data) else {
        return;
    };
    let bytes = doc.to_bytes();
    let back = UepStdin::from_slice(&bytes).expect("re-parse stdin document");
    assert_eq!(back, doc);
    assert_eq!(back.to_bytes(), bytes, "re-encoding is not stable");
    if let Some(creds) = &doc.amqp_creds {
        if let Ok(creds) = AmqpCreds::from_json(&Value::Object(creds.clone())) {
            for info in [&creds.task_queue_info, &creds.result_queue_info, &creds.heartbeat_queue_info] {
                let _ = AmqpUrl::parse(&info.connection_url);
            }
        }
    }
});
