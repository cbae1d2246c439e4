//! Department and category codes, each held once per process.
//!
//! The same few hundred codes recur in every case, so a case holds a 4-byte `Code` naming an
//! entry of one process-wide table instead of the text. The table only grows. Input events
//! may add codes while it holds fewer than `MAX_NEW_CODES` (`Code::admit`): past that, only
//! garbage input brings new codes, and they are refused. Records `hotline` wrote itself are
//! always read back (`Code::of`), whatever this process has met before, up to a table of
//! `CHUNKS * CHUNK` codes.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{LazyLock, Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Distinct codes past which input events may not bring new ones.
pub(crate) const MAX_NEW_CODES: usize = 65_536;

const CHUNK: usize = 4096;
const CHUNKS: usize = 4096;

/// The text of every code, by its number less one, in chunks allocated as the table grows;
/// entries are set once, so reading them needs no lock.
static NAMES: [OnceLock<Box<[OnceLock<&'static str>]>>; CHUNKS] = [const { OnceLock::new() }; CHUNKS];

/// A department or category code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code(NonZeroU32);

/// The table of codes is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the table of department and category codes is full")]
pub struct TooManyCodes;

impl Code {
    /// The code for `text` from an input event: refused if it is new and the table holds
    /// `MAX_NEW_CODES` already.
    pub(crate) fn admit(text: &str) -> Result<Code, TooManyCodes> {
        Code::intern(text, MAX_NEW_CODES)
    }

    /// The code for `text` read from a record: added to the table if it is new.
    pub fn of(text: &str) -> Result<Code, TooManyCodes> {
        Code::intern(text, CHUNKS * CHUNK)
    }

    fn intern(text: &str, limit: usize) -> Result<Code, TooManyCodes> {
        static NUMBERS: LazyLock<Mutex<HashMap<&'static str, Code>>> = LazyLock::new(Mutex::default);
        let mut numbers = NUMBERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(code) = numbers.get(text) {
            return Ok(*code);
        }
        let index = numbers.len();
        if index >= limit {
            return Err(TooManyCodes);
        }
        // Entries are never removed: the table is bounded, so leaking its text is too.
        let name: &'static str = Box::leak(text.into());
        let chunk = NAMES[index / CHUNK].get_or_init(|| (0..CHUNK).map(|_| OnceLock::new()).collect());
        chunk[index % CHUNK].set(name).expect("each entry is set once, under the lock");
        let code = Code(NonZeroU32::new(index as u32 + 1).expect("one more than an index"));
        numbers.insert(name, code);
        Ok(code)
    }

    pub fn as_str(self) -> &'static str {
        let index = self.0.get() as usize - 1;
        NAMES[index / CHUNK].get().and_then(|chunk| chunk[index % CHUNK].get()).expect("a code names a set entry")
    }
}

impl std::ops::Deref for Code {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Codes order by their text, not by when the process first met them.
impl Ord for Code {
    fn cmp(&self, other: &Code) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Code {
    fn partial_cmp(&self, other: &Code) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
impl From<&str> for Code {
    /// For tests: panics when the table is full.
    fn from(text: &str) -> Code {
        Code::of(text).expect("the code table has room")
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        let text: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        Code::of(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_held_once_and_reads_back() {
        let a = Code::of("tiexi_district").unwrap();
        assert_eq!(Code::of("tiexi_district"), Ok(a));
        assert_eq!(a.as_str(), "tiexi_district");
        assert_ne!(Code::of("tiedong_district").unwrap(), a);
        assert_eq!(size_of::<Option<Code>>(), 4);
    }

    #[test]
    fn codes_past_the_first_chunk_read_back() {
        let codes: Vec<Code> = (0..CHUNK + 10).map(|n| Code::of(&format!("chunked_{n}")).unwrap()).collect();
        for (n, code) in codes.iter().enumerate() {
            assert_eq!(code.as_str(), format!("chunked_{n}"));
        }
        assert_eq!(Code::admit("chunked_7"), Ok(codes[7]), "a code held is admitted whatever the limit");
    }

    #[test]
    fn codes_order_by_text() {
        let (z, a) = (Code::from("zz_code_order"), Code::from("aa_code_order"));
        assert!(a < z);
        let json = serde_json::to_string(&z).unwrap();
        assert_eq!(json, "\"zz_code_order\"");
        assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), z);
    }
}
