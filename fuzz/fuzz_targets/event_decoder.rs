//! The input contract's decoder on any bytes: a `CaseEvent` or a `Rejection`, never a panic;
//! and it agrees with serde_json's own reading of the bytes as a JSON tree: what is not JSON,
//! or not an object, is never an event.
#![no_main]

use hotline::domain::event::{DecodeLimits, decode_agreeing_with_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        max_message_bytes: 1 << 20,
        latest_occurred_at: "2030-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap(),
    };
    let _ = decode_agreeing_with_json(data, &limits);
});
