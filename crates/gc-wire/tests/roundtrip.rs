//! Property test: every message type survives `pack` → `unpack` unchanged, and re-packing the
//! decoded message gives the same bytes.

mod common;

use common::message;
use gc_wire::messagepack::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(m in message()) {
        let bytes = pack(&m);
        prop_assert_eq!(bytes[0], PROTOCOL_VERSION);
        // The JSON never contains a raw newline (messages may be newline-delimited).
        prop_assert!(!bytes.contains(&b'\n'));
        let back = unpack(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(pack(&back), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = unpack(&bytes);
        let mut v1 = vec![PROTOCOL_VERSION];
        v1.extend_from_slice(&bytes);
        let _ = unpack(&v1);
    }
}
