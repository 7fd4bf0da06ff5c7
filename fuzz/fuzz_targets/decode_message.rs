//! Fuzz the decoders of gc-wire with arbitrary bytes.
//!
//! * `messagepack::unpack` must never panic, and whatever it accepts must re-encode to bytes
//!   that decode to the same message and re-encode identically (a fixed point after one pass).
//! * The JSON documents that arrive from outside the process (MEP command bodies, the UEP stdin
//!   document) must never panic either; the bytes after the first one are tried as those.
#![no_main]

use gc_wire::{mep_command::MepCommand, messagepack, uep_stdin::UepStdin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = messagepack::unpack(data) {
        let packed = messagepack::pack(&message);
        let again = messagepack::unpack(&packed).expect("a packed message decodes");
        assert_eq!(again, message, "pack/unpack changed the message");
        assert_eq!(
            messagepack::pack(&again),
            packed,
            "re-packing is not stable"
        );
    }
    if let Some(body) = data.get(1..) {
        if let Ok(start) = MepCommand::from_slice(body).and_then(MepCommand::validate) {
            // A validated command serializes back to a body that validates the same way.
            let wire = serde_json::to_vec(&start).expect("serialize command");
            let back = MepCommand::from_slice(&wire).and_then(MepCommand::validate);
            assert_eq!(back.expect("re-validate command"), start);
        }
        if let Ok(doc) = UepStdin::from_slice(body) {
            let back = UepStdin::from_slice(&doc.to_bytes()).expect("re-parse stdin document");
            assert_eq!(back, doc);
        }
    }
});
