//! Department and category codes, each held once per ledger.
//!
//! The same few hundred codes recur in every case, so a case record holds a 4-byte `Code`
//! naming an entry of its ledger's `Codes` instead of the text. Each ledger owns its table:
//! nothing else ever holds one of its `Code`s, so the table has no limit that one upstream's
//! junk could fill for everyone, and a ledger that evicts cases rebuilds its table from the
//! cases it still holds (`Ledger::evict_before`), so codes last as long as the cases naming
//! them. Events carry codes as text; only the ledger turns them into `Code`s.

use std::num::NonZeroU32;

use compact_str::CompactString;

/// A department or category code: an entry of one ledger's `Codes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Code(NonZeroU32);

/// The codes of one ledger's cases.
#[derive(Clone, Debug, Default)]
pub struct Codes {
    names: Vec<CompactString>,
    numbers: hashbrown::HashMap<CompactString, Code, foldhash::fast::RandomState>,
}

impl Codes {
    /// The code for `text`, added to the table if it is new.
    pub fn intern(&mut self, text: &str) -> Code {
        if let Some(code) = self.numbers.get(text) {
            return *code;
        }
        let number = u32::try_from(self.names.len() + 1).expect("fewer codes than a u32 counts: each names a case");
        let code = Code(NonZeroU32::new(number).expect("one more than an index"));
        self.names.push(text.into());
        self.numbers.insert(text.into(), code);
        code
    }

    /// The text of a code of this table.
    pub fn name(&self, code: Code) -> &str {
        &self.names[code.0.get() as usize - 1]
    }

    /// Codes held.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Roughly the memory the table takes, for the state-size metric.
    pub(crate) fn approx_bytes(&self) -> usize {
        let text = |n: &CompactString| if n.is_heap_allocated() { n.len() } else { 0 };
        let entry = 2 * size_of::<CompactString>() + size_of::<Code>() + 8;
        self.names.iter().map(|n| entry + 2 * text(n)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_held_once_and_reads_back() {
        let mut codes = Codes::default();
        let a = codes.intern("tiexi_district");
        assert_eq!(codes.intern("tiexi_district"), a);
        assert_eq!(codes.name(a), "tiexi_district");
        assert_ne!(codes.intern("tiedong_district"), a);
        assert_eq!(codes.len(), 2);
        assert_eq!(size_of::<Option<Code>>(), 4);
    }

    #[test]
    fn a_table_has_no_limit_but_memory() {
        let mut codes = Codes::default();
        let all: Vec<Code> = (0..200_000).map(|n| codes.intern(&format!("junk_{n}"))).collect();
        assert_eq!(codes.name(all[150_000]), "junk_150000");
        assert_eq!(codes.len(), 200_000);
    }
}
