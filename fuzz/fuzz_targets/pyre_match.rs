//! Fuzz the Python-`re`-compatible engine of `gc_idmap::pyre` with its step bound.
//!
//! Input layout: `<flags byte><pattern>\0<subject>`. Never panics; compiling is total (a
//! pattern compiles or is refused); a match never runs past its step budget (libFuzzer's
//! `-timeout` catches a runaway); the number of groups reported equals `groups()`, and with a
//! bigger budget an exhausted attempt may only turn into a definite answer, never the reverse.
#![no_main]

use gc_idmap::pyre::{MatchOutcome, PyRegex};
use libfuzzer_sys::fuzz_target;

const SMALL_LIMIT: u64 = 20_000;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (pattern, subject) = text.split_once('\0').unwrap_or((text, "alice@example.org"));
    let Ok(re) = PyRegex::compile(pattern, flags & 1 == 1) else {
        return;
    };
    let _ = re.top_level_alternation();
    let small = re.match_with_limit(subject, SMALL_LIMIT);
    if let MatchOutcome::Matched(groups) = &small {
        assert_eq!(groups.len(), re.groups(), "group count");
    }
    let full = re.match_start(subject);
    match (&small, &full) {
        (MatchOutcome::Exhausted, _) => {}
        (a, b) => assert_eq!(a, b, "a larger step budget changed a definite answer"),
    }
});
