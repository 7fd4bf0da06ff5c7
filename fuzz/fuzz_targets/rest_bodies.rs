//! Fuzz the REST request bodies the service accepts (`gc_wire::rest`), decoded the way
//! `gc-service`'s `JsonBody` extractor does (one JSON value, nothing after it).
//!
//! The first byte picks the request type; the rest is the body. Never panics; an accepted body
//! re-serializes to JSON that decodes to the same value.
#![no_main]

use gc_wire::rest::{
    BatchStatusRequest, RegisterEndpointRequest, RegisterFunctionRequest, SubmitRequest,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn strict<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = T::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Some(v) = strict::<T>(bytes) {
        let wire = serde_json::to_vec(&v).expect("serialize body");
        let back: T = strict(&wire).expect("re-parse body");
        assert_eq!(back, v);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => round_trip::<SubmitRequest>(body),
        1 => round_trip::<RegisterEndpointRequest>(body),
        2 => round_trip::<RegisterFunctionRequest>(body),
        _ => round_trip::<BatchStatusRequest>(body),
    }
});
