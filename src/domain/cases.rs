//! The cases a ledger holds, by id, in as little memory as a million of them allow.
//!
//! Entries sit in one vector and a hash table holds only their 4-byte positions, so the
//! table's room to grow (up to half of it is empty) costs 5 bytes a slot rather than a whole
//! entry, and a vector's spare capacity is never touched, so it takes no memory. Ids of up to
//! 24 bytes are held inline.

use std::hash::BuildHasher;

use compact_str::CompactString;
use hashbrown::HashTable;

use super::case::CaseRecord;

#[derive(Clone, Debug, Default)]
pub(crate) struct Cases {
    entries: Vec<(CompactString, CaseRecord)>,
    /// Positions in `entries`, by the hash of their id.
    positions: HashTable<u32>,
    /// foldhash (seeded per process) hashes ids several times faster than SipHash, which a
    /// restore of every changelog record felt.
    hasher: foldhash::fast::RandomState,
}

impl Cases {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Where the case `id` is held.
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        let entries = &self.entries;
        self.positions.find(self.hash(id), |&i| entries[i as usize].0 == id).map(|&i| i as usize)
    }

    pub fn get(&self, id: &str) -> Option<&CaseRecord> {
        self.position(id).map(|i| &self.entries[i].1)
    }

    pub(crate) fn at_mut(&mut self, position: usize) -> &mut CaseRecord {
        &mut self.entries[position].1
    }

    /// Adds a case not held yet.
    pub(crate) fn insert_new(&mut self, id: &str, record: CaseRecord) {
        debug_assert!(self.position(id).is_none(), "a case is held once");
        let position = u32::try_from(self.entries.len()).expect("fewer than 4 billion cases in one partition");
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.positions.insert_unique(self.hash(id), position, |&i| hasher.hash_one(entries[i as usize].0.as_str()));
        self.entries.push((id.into(), record));
    }

    /// Takes the case `id` out; the last entry moves into its place.
    pub fn remove(&mut self, id: &str) -> Option<CaseRecord> {
        let entries = &self.entries;
        let found = self.positions.find_entry(self.hash(id), |&i| entries[i as usize].0 == id).ok()?;
        let position = *found.get() as usize;
        found.remove();
        let last = self.entries.len() - 1;
        if position != last {
            let moved = self.hash(&self.entries[last].0);
            let slot = self.positions.find_mut(moved, |&i| i as usize == last).expect("every entry has a position");
            *slot = position as u32;
        }
        Some(self.entries.swap_remove(position).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &CaseRecord)> {
        self.entries.iter().map(|(id, record)| (id.as_str(), record))
    }

    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(&mut CaseRecord)) {
        self.entries.iter_mut().for_each(|(_, record)| f(record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::case::{EventKey, Fact, Nanos};

    fn record(n: i64) -> CaseRecord {
        let at = Nanos::from_i64(n).unwrap();
        CaseRecord { closed: Some(Fact { event: EventKey(n as u64), at, data: () }), ..CaseRecord::default() }
    }

    #[test]
    fn cases_are_found_after_any_inserts_and_removals() {
        let mut cases = Cases::default();
        let id = |n: i64| format!("case-{n}-with-an-id-longer-than-twenty-four-bytes-{}", n % 3);
        for n in 1..=1000 {
            cases.insert_new(&id(n), record(n));
        }
        for n in (1..=1000).filter(|n| n % 3 == 0) {
            assert_eq!(cases.remove(&id(n)), Some(record(n)));
        }
        assert_eq!(cases.remove(&id(3)), None);
        assert_eq!(cases.len(), 667);
        for n in 1..=1000 {
            let expected = (n % 3 != 0).then(|| record(n));
            assert_eq!(cases.get(&id(n)), expected.as_ref(), "case {n}");
        }
        let p = cases.position(&id(1)).unwrap();
        *cases.at_mut(p) = record(5000);
        assert_eq!(cases.get(&id(1)), Some(&record(5000)));
        assert_eq!(cases.iter().count(), 667);
    }
}
