//! Decoding allocates only in proportion to the input. The format has no length prefixes, so a
//! tiny input cannot make the decoder reserve memory on the sender's word: inputs that would
//! announce 4 GiB in a length-prefixed format (real MessagePack `str32`/`array32`/`map32`
//! headers, or huge numbers where a length or count could be) are rejected after allocating
//! only a few KiB.
//!
//! One test per binary: dhat's profiler is process-global.

use gc_wire::messagepack::unpack;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const T: &str = "00000000-0000-4000-8000-000000000001";

#[test]
fn decoding_allocates_in_proportion_to_the_input() {
    // The profile is written when the profiler drops; keep it out of the source tree.
    let _profiler = dhat::Profiler::builder()
        .testing()
        .file_name(std::env::temp_dir().join("gc-wire-dhat-heap.json"))
        .build();

    let v1 = |json: &str| [&[1u8][..], json.as_bytes()].concat();
    let tiny_hostile: Vec<Vec<u8>> = vec![
        // MessagePack headers claiming 4 GiB strings, arrays and maps.
        b"\x01\xdb\xff\xff\xff\xff".to_vec(),
        b"\x01\xdd\xff\xff\xff\xff".to_vec(),
        b"\x01\xdf\xff\xff\xff\xff".to_vec(),
        b"\xdb\xff\xff\xff\xff".to_vec(),
        // JSON with huge numbers where counts or sizes could be.
        v1(&format!(
            r#"{{"message_type":"task","data":{{"task_id":"{T}","task_buffer":4294967296}}}}"#
        )),
        v1(r#"{"message_type":"task_transition","data":{"timestamp":1e4294967296}}"#),
        v1(&format!(
            r#"{{"message_type":"task_transition","data":{{"timestamp":"{}"}}}}"#,
            "9".repeat(200)
        )),
        // Unterminated string and array.
        v1(r#"{"message_type":"result","data":{"data":""#),
        v1(r#"{"message_type":"ep_status_report","data":{"global_state":{"x":[[[[[["#),
    ];

    let before = dhat::HeapStats::get();
    for input in &tiny_hostile {
        assert!(input.len() < 300);
        assert!(unpack(input).is_err(), "{}", String::from_utf8_lossy(input));
    }
    let after = dhat::HeapStats::get();
    // Peak heap use while decoding all of them stays in the KiB range.
    dhat::assert!(after.max_bytes - before.curr_bytes < 64 * 1024, "{after:?}");

    // A large, valid but hostile-shaped status report (a flat array of a million tiny JSON
    // values, the worst case for the free-form `global_state`) stays within a constant factor
    // of its size: each value costs one `serde_json::Value` (32 bytes) plus vector growth.
    let n = 500_000;
    let input = [
        &[1u8][..],
        format!(
            r#"{{"message_type":"ep_status_report","data":{{"endpoint_id":"{T}","global_state":{{"x":[{}0]}},"task_statuses":{{}}}}}}"#,
            "0,".repeat(n)
        )
        .as_bytes(),
    ]
    .concat();
    let before = dhat::HeapStats::get();
    assert!(unpack(&input).is_ok());
    let after = dhat::HeapStats::get();
    let peak = after.max_bytes - before.curr_bytes;
    dhat::assert!(
        peak < 64 * input.len(),
        "peak {peak} for {} input bytes",
        input.len()
    );
}
