//! The input contract's decoder on any bytes: a `CaseEvent` or a `Rejection`, never a panic;
//! and it agrees with serde_json's own reading of the bytes as a JSON tree: what is not JSON,
//! or not an object, is never an event.
#![no_main]

use hotline::domain::event::{DecodeLimits, Rejection, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        max_message_bytes: 1 << 20,
        latest_occurred_at: "2030-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap(),
    };
    let decoded = decode(data, &limits);
    let tree = serde_json::from_slice::<serde_json::Value>(data);
    match (&decoded, &tree) {
        (Ok(_), Ok(serde_json::Value::Object(_))) => {}
        (Ok(event), _) => panic!("decoded {event} from bytes that are not a JSON object: {tree:?}"),
        (Err(Rejection::InvalidJson { .. }), Ok(_)) => panic!("valid JSON rejected as invalid"),
        (Err(Rejection::NotAnObject), Ok(serde_json::Value::Object(_))) => panic!("an object rejected as none"),
        _ => {}
    }
});
