//! Every value and key hotline writes to its own topics, read from any bytes: a value or an
//! `Unreadable`, never a panic; a routed event read back is written back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hotline::records::read_every_kind(data);
});
