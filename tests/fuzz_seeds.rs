//! The fuzz targets' seed corpora (`fuzz/corpus/<target>/`), run through the same decoders on
//! stable Rust, so that every `cargo test` checks what `cargo +nightly fuzz run` starts from:
//! no seed panics, the event decoder reads each seed as serde_json does and some as events, and
//! every snapshot seed decodes and writes back the same.

use std::path::{Path, PathBuf};

use hotline::avro::{Framing, SnapshotCodec};
use hotline::domain::event::{DecodeLimits, decode_agreeing_with_json};

/// Every file of `fuzz/corpus/<target>/`, with its name; at least one.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .into_iter()
        .map(|f| (f.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&f).unwrap()))
        .collect()
}

#[test]
fn every_event_seed_reads_as_serde_json_reads_it_and_some_are_events() {
    let limits =
        DecodeLimits { max_message_bytes: 1 << 20, latest_occurred_at: "2030-01-01T00:00:00Z".parse().unwrap() };
    let mut events = 0;
    for (_, bytes) in seeds("event_decoder") {
        if decode_agreeing_with_json(&bytes, &limits).is_ok() {
            events += 1;
        }
    }
    assert!(events > 0, "the seeds hold valid events");
}

#[test]
fn every_internal_record_seed_reads_without_panic() {
    for (_, bytes) in seeds("internal_records") {
        hotline::records::read_every_kind(&bytes);
    }
}

#[test]
fn every_snapshot_seed_decodes_and_writes_back_the_same() {
    let codec = SnapshotCodec::new(Framing::SingleObject);
    for (name, bytes) in seeds("snapshot_avro") {
        let snapshot = codec.decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = codec.decode(&codec.encode(&snapshot).unwrap()).unwrap();
        assert_eq!(again, snapshot, "{name}");
    }
}
