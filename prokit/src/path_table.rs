//! A map from paths to small values that holds a 128-bit keyed fingerprint of each path, not
//! the path.
//!
//! The ownership map of a root ([`crate::status`]) holds every path of every installed package:
//! hundreds of thousands in a large root. As a `HashMap<Box<str>, V>` each path costs an
//! allocation (its bytes rounded up, plus the allocator's header) and a 24-byte table entry;
//! kept in one arena it still costs its bytes (~50 on average). Here it costs 16 bytes of
//! fingerprint, the value, and 8 to 16 bytes of open-addressing table (kept at most half full),
//! whatever its length. Nothing reads a path back out of the map: it is asked about paths the
//! caller holds (a package's file list, an entry being unpacked).
//!
//! The fingerprint is two SipHash values of the path under two random keys drawn for each map
//! (the standard library's `RandomState`, as `HashMap` keys its table). Two paths are taken for
//! one only if both 64-bit values collide: for a root of a million paths the chance that any
//! two do is below 10⁻²⁶, and paths come from packages written before the keys exist, so no
//! package can choose paths that collide (nor degrade the table: the slot comes from the keyed
//! value too). docs/on-disk-state.md, §3.5 "The ownership map".
//!
//! A removed path leaves its entry until the table is next rebuilt, when the live entries are
//! copied into a new one; that happens before the removed entries outnumber the live ones (by
//! more than 16).

use std::hash::{BuildHasher, RandomState};

/// A slot of the table never used.
const EMPTY: u32 = 0;
/// A slot whose entry was removed (probing goes on past it).
const REMOVED: u32 = u32::MAX;

/// A path's fingerprint: its hashes under the map's two keys.
type Key = [u64; 2];

#[derive(Debug, Clone)]
struct Entry<V> {
    key: Key,
    /// `None` once removed (no slot refers to it then).
    value: Option<V>,
}

#[derive(Debug, Clone)]
pub(crate) struct PathTable<V> {
    entries: Vec<Entry<V>>,
    /// Per slot: [`EMPTY`], [`REMOVED`] or the entry's index plus one. A power of two long.
    slots: Vec<u32>,
    /// Slots not [`EMPTY`] (live or removed).
    used: usize,
    live: usize,
    keys: [RandomState; 2],
}

impl<V> Default for PathTable<V> {
    fn default() -> Self {
        PathTable {
            entries: Vec::new(),
            slots: Vec::new(),
            used: 0,
            live: 0,
            keys: [RandomState::new(), RandomState::new()],
        }
    }
}

impl<V> PathTable<V> {
    /// How many paths it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn key(&self, path: &str) -> Key {
        [self.keys[0].hash_one(path), self.keys[1].hash_one(path)]
    }

    /// The slot holding the entry of `key`, or None.
    fn find(&self, key: Key) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = key[0] as usize & mask;
        loop {
            match self.slots[at] {
                EMPTY => return None,
                REMOVED => {}
                i => {
                    if self.entries[i as usize - 1].key == key {
                        return Some(at);
                    }
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// The entry in slot `at` (one [`PathTable::find`] gave).
    fn entry(&self, at: usize) -> &Entry<V> {
        &self.entries[self.slots[at] as usize - 1]
    }

    fn entry_mut(&mut self, at: usize) -> &mut Entry<V> {
        &mut self.entries[self.slots[at] as usize - 1]
    }

    pub(crate) fn get(&self, path: &str) -> Option<&V> {
        let at = self.find(self.key(path))?;
        self.entry(at).value.as_ref()
    }

    pub(crate) fn get_mut(&mut self, path: &str) -> Option<&mut V> {
        let at = self.find(self.key(path))?;
        self.entry_mut(at).value.as_mut()
    }

    #[cfg(test)]
    pub(crate) fn contains_key(&self, path: &str) -> bool {
        self.find(self.key(path)).is_some()
    }

    /// Sets the value of `path`, adding it when new.
    pub(crate) fn insert(&mut self, path: &str, value: V) {
        let key = self.key(path);
        if let Some(at) = self.find(key) {
            self.entry_mut(at).value = Some(value);
            return;
        }
        // Rebuilt when half the slots are taken (linear probing slows fast past that: a miss
        // probes ~2.5 slots at half full, ~32 at 7/8), or when removed entries are as many as
        // the live ones (a path put back after its removal takes a removed slot, not a new
        // one).
        if (self.used + 1) * 2 > self.slots.len() || self.entries.len() >= 2 * self.live + 16 {
            self.rebuild();
        }
        self.append(key, value);
    }

    /// Removes `path`; its value, if it was there.
    pub(crate) fn remove(&mut self, path: &str) -> Option<V> {
        let at = self.find(self.key(path))?;
        let value = self.entry_mut(at).value.take();
        self.slots[at] = REMOVED;
        self.live -= 1;
        value
    }

    /// Adds the entry of `key`, known to be absent, in a table with a free slot for it.
    fn append(&mut self, key: Key, value: V) {
        self.entries.push(Entry {
            key,
            value: Some(value),
        });
        let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 - 1 paths");
        let mask = self.slots.len() - 1;
        let mut at = key[0] as usize & mask;
        while !matches!(self.slots[at], EMPTY | REMOVED) {
            at = (at + 1) & mask;
        }
        if self.slots[at] == EMPTY {
            self.used += 1;
        }
        self.slots[at] = index;
        self.live += 1;
    }

    /// A table of three to six slots per live entry (a power of two, at least 16), with only
    /// the live entries, and room for as many as it takes before the next rebuild (half the
    /// slots), so that they are not copied by a growth in between. (Four slots per entry
    /// rounded up would make eight: 4 MB for the 37,613 files of a 10,000-package root.)
    fn rebuild(&mut self) {
        let slots = ((self.live + 1) * 3).next_power_of_two().max(16);
        let fresh = PathTable {
            entries: Vec::with_capacity(slots / 2),
            slots: vec![EMPTY; slots],
            used: 0,
            live: 0,
            keys: self.keys.clone(),
        };
        let old = std::mem::replace(self, fresh);
        for e in old.entries {
            if let Some(value) = e.value {
                self.append(e.key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn it_holds_what_a_hash_map_holds_through_inserts_replacements_and_removals() {
        let mut table = PathTable::default();
        let mut model = HashMap::new();
        // A deterministic mix: paths that share prefixes, come back after removal, and
        // replace values, over several growths.
        let mut x: u64 = 7;
        for step in 0..20_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let path = format!("/usr/lib/p{}/f{}", (x >> 33) % 300, (x >> 20) % 7);
            match (x >> 60) % 4 {
                0 => assert_eq!(table.remove(&path), model.remove(&path), "step {step}"),
                _ => {
                    table.insert(&path, step);
                    model.insert(path.clone(), step);
                }
            }
            assert_eq!(table.get(&path), model.get(&path), "step {step}: {path}");
        }
        assert_eq!(table.len(), model.len());
        for (path, value) in &model {
            assert_eq!(table.get(path), Some(value));
            assert!(table.contains_key(path));
        }
        assert_eq!(table.get("/usr/lib/p1"), None);
        assert_eq!(table.get(""), None);
        // What removals leave behind never outnumbers what is live (by more than 16).
        assert!(table.entries.len() <= 2 * table.len() + 16);
        // Nor does a path put back and removed again and again pile up.
        for _ in 0..10_000 {
            table.insert("/tmp/x", 1);
            table.remove("/tmp/x");
        }
        assert!(table.entries.len() <= 2 * table.len() + 16);
        assert_eq!(table.len(), model.len());
    }

    #[test]
    fn an_empty_table_finds_nothing_and_removes_nothing() {
        let mut table: PathTable<u32> = PathTable::default();
        assert_eq!(table.get("/a"), None);
        assert_eq!(table.remove("/a"), None);
        table.insert("/a", 1);
        table.insert("/a", 2);
        assert_eq!((table.get("/a"), table.len()), (Some(&2), 1));
        *table.get_mut("/a").unwrap() = 3;
        assert_eq!(table.remove("/a"), Some(3));
        assert_eq!((table.get("/a"), table.len()), (None, 0));
    }
}
