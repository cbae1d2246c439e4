//! Department and category codes, each held once per process.
//!
//! The same few hundred codes recur in every case, so a case holds a 4-byte `Code` naming an
//! entry of one process-wide table instead of the text. The table only grows, up to
//! `MAX_CODES` entries: a code past that (which only garbage input produces) is refused.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{LazyLock, Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Distinct codes a process holds at most.
pub const MAX_CODES: usize = 65_536;

/// The text of every code, by its number less one; entries are set once, so reading them
/// needs no lock.
static NAMES: [OnceLock<&'static str>; MAX_CODES] = [const { OnceLock::new() }; MAX_CODES];

/// A department or category code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code(NonZeroU32);

/// The table of codes is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_CODES} distinct department and category codes")]
pub struct TooManyCodes;

impl Code {
    /// The code for `text`, added to the table if it is new.
    pub fn of(text: &str) -> Result<Code, TooManyCodes> {
        static NUMBERS: LazyLock<Mutex<HashMap<&'static str, Code>>> = LazyLock::new(Mutex::default);
        let mut numbers = NUMBERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(code) = numbers.get(text) {
            return Ok(*code);
        }
        let index = numbers.len();
        if index >= MAX_CODES {
            return Err(TooManyCodes);
        }
        // Entries are never removed: the table is bounded, so leaking its text is too.
        let name: &'static str = Box::leak(text.into());
        NAMES[index].set(name).expect("each entry is set once, under the lock");
        let code = Code(NonZeroU32::new(index as u32 + 1).expect("one more than an index"));
        numbers.insert(name, code);
        Ok(code)
    }

    pub fn as_str(self) -> &'static str {
        NAMES[self.0.get() as usize - 1].get().expect("a code names a set entry")
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

impl From<&str> for Code {
    /// For tests and fixtures: panics when the table is full.
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
    fn codes_order_by_text() {
        let (z, a) = (Code::from("zz_code_order"), Code::from("aa_code_order"));
        assert!(a < z);
        let json = serde_json::to_string(&z).unwrap();
        assert_eq!(json, "\"zz_code_order\"");
        assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), z);
    }
}
