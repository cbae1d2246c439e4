//! The snapshot's Avro decoder (every released schema), as a restore reads the snapshots
//! topic, on any bytes: a snapshot or an error, never a panic.
#![no_main]

use std::sync::LazyLock;

use hotline::avro::{Framing, SnapshotCodec};
use libfuzzer_sys::fuzz_target;

static CODEC: LazyLock<SnapshotCodec> = LazyLock::new(|| SnapshotCodec::new(Framing::SingleObject));

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = CODEC.decode(data) {
        // What it read, it writes and reads back the same.
        let again = CODEC.decode(&CODEC.encode(&snapshot).unwrap()).unwrap();
        assert_eq!(again, snapshot);
    }
});
