//! A map from paths to numbers whose entries live in a scratch file, with one byte per slot in
//! memory.
//!
//! The ownership map's files ([`crate::status`]) are every non-directory path of every
//! installed package: 37,613 in a root of 10,000 packages, ~2 MB as [`PathTable`] entries
//! (crate::path_table) even without the paths' text. Here a path is the same 128-bit keyed
//! fingerprint (docs/on-disk-state.md §3.5, "The ownership map"), and its entry — the
//! fingerprint and the number — is a 20-byte record in an unnamed scratch file
//! (`safe_fs::scratch_file`), in an open-addressing table of slots (a power of two, at most
//! half of them taken). Memory keeps one byte per slot: empty, removed, or eight bits of the
//! fingerprint (a *tag*). A lookup walks the tags and reads from the file only the records
//! whose tag matches (1 in 254 of the others), so that a path no package owns — most of what a
//! bootstrap asks — costs no read at all, and adding one costs one write.
//!
//! [`PathTable`]: crate::path_table::PathTable

use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;

/// A slot never used.
const EMPTY: u8 = 0;
/// A slot whose entry was removed (probing goes on past it).
const REMOVED: u8 = 1;
/// A record: the fingerprint's two halves and the value, little-endian.
const RECORD: usize = 20;

type Key = [u64; 2];

pub(crate) struct ScratchTable {
    /// The records, `tags.len()` of them (none until the first insert).
    file: Option<File>,
    /// Per slot: [`EMPTY`], [`REMOVED`] or the tag of its entry's fingerprint.
    tags: Vec<u8>,
    /// Slots not [`EMPTY`].
    used: usize,
    live: usize,
    keys: [RandomState; 2],
}

impl std::fmt::Debug for ScratchTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchTable")
            .field("live", &self.live)
            .field("slots", &self.tags.len())
            .finish()
    }
}

impl Default for ScratchTable {
    fn default() -> Self {
        ScratchTable {
            file: None,
            tags: Vec::new(),
            used: 0,
            live: 0,
            keys: [RandomState::new(), RandomState::new()],
        }
    }
}

/// The tag of `key`: 2..=255 (0 and 1 mark empty and removed slots).
fn tag(key: Key) -> u8 {
    2 + (key[1] % 254) as u8
}

impl ScratchTable {
    /// How many paths it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    fn key(&self, path: &str) -> Key {
        [self.keys[0].hash_one(path), self.keys[1].hash_one(path)]
    }

    fn file(&self) -> io::Result<&File> {
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("the ownership map's scratch file is missing"))
    }

    fn read_record(&self, slot: usize) -> io::Result<(Key, u32)> {
        let mut r = [0u8; RECORD];
        self.file()?.read_exact_at(&mut r, (slot * RECORD) as u64)?;
        Ok(decode(&r))
    }

    fn write_record(&self, slot: usize, key: Key, value: u32) -> io::Result<()> {
        self.file()?
            .write_all_at(&encode(key, value), (slot * RECORD) as u64)
    }

    /// The slot holding `key`, and its value.
    fn find(&self, key: Key) -> io::Result<Option<(usize, u32)>> {
        if self.tags.is_empty() {
            return Ok(None);
        }
        let mask = self.tags.len() - 1;
        let want = tag(key);
        let mut at = key[0] as usize & mask;
        loop {
            match self.tags[at] {
                EMPTY => return Ok(None),
                t if t == want => {
                    let (k, value) = self.read_record(at)?;
                    if k == key {
                        return Ok(Some((at, value)));
                    }
                }
                _ => {}
            }
            at = (at + 1) & mask;
        }
    }

    pub(crate) fn get(&self, path: &str) -> io::Result<Option<u32>> {
        Ok(self.find(self.key(path))?.map(|(_, v)| v))
    }

    /// Sets the value of `path`, adding it when new.
    pub(crate) fn insert(&mut self, path: &str, value: u32) -> io::Result<()> {
        let key = self.key(path);
        if let Some((at, _)) = self.find(key)? {
            return self.write_record(at, key, value);
        }
        // Rebuilt when half the slots are taken, or when removed entries are as many as the
        // live ones (as PathTable is).
        if (self.used + 1) * 2 > self.tags.len() || self.used >= 2 * self.live + 16 {
            self.rebuild()?;
        }
        self.append(key, value)
    }

    /// Adds `key`, known to be absent, in a table with a free slot for it.
    fn append(&mut self, key: Key, value: u32) -> io::Result<()> {
        let mask = self.tags.len() - 1;
        let mut at = key[0] as usize & mask;
        while !matches!(self.tags[at], EMPTY | REMOVED) {
            at = (at + 1) & mask;
        }
        self.write_record(at, key, value)?;
        if self.tags[at] == EMPTY {
            self.used += 1;
        }
        self.tags[at] = tag(key);
        self.live += 1;
        Ok(())
    }

    /// Removes `path`; its value, if it was there.
    pub(crate) fn remove(&mut self, path: &str) -> io::Result<Option<u32>> {
        let Some((at, value)) = self.find(self.key(path))? else {
            return Ok(None);
        };
        self.tags[at] = REMOVED;
        self.live -= 1;
        Ok(Some(value))
    }

    /// A new file of three to six slots per live entry (a power of two, at least 64), with the
    /// live entries only: read in order from the old file, written where they go in the new.
    fn rebuild(&mut self) -> io::Result<()> {
        let slots = ((self.live + 1) * 3).next_power_of_two().max(64);
        let file = safe_fs::scratch_file().map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
        file.set_len((slots * RECORD) as u64)?;
        let old_tags = std::mem::replace(&mut self.tags, vec![EMPTY; slots]);
        let old_file = self.file.replace(file);
        self.used = 0;
        self.live = 0;
        if let Some(old) = old_file {
            let mut reader = BufReader::with_capacity(64 * 1024, &old);
            let mut r = [0u8; RECORD];
            for &t in &old_tags {
                reader.read_exact(&mut r)?;
                if t > REMOVED {
                    let (key, value) = decode(&r);
                    self.append(key, value)?;
                }
            }
        }
        Ok(())
    }
}

fn encode(key: Key, value: u32) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..8].copy_from_slice(&key[0].to_le_bytes());
    r[8..16].copy_from_slice(&key[1].to_le_bytes());
    r[16..].copy_from_slice(&value.to_le_bytes());
    r
}

fn decode(r: &[u8; RECORD]) -> (Key, u32) {
    let word = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().expect("8 bytes"));
    let value = u32::from_le_bytes(r[16..].try_into().expect("4 bytes"));
    ([word(0), word(8)], value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn it_holds_what_a_hash_map_holds_through_inserts_replacements_and_removals() {
        let mut table = ScratchTable::default();
        let mut model = HashMap::new();
        let mut x: u64 = 11;
        for step in 0..20_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let path = format!("/usr/lib/p{}/f{}", (x >> 33) % 300, (x >> 20) % 7);
            match (x >> 60) % 4 {
                0 => assert_eq!(
                    table.remove(&path).unwrap(),
                    model.remove(&path),
                    "step {step}"
                ),
                _ => {
                    table.insert(&path, step).unwrap();
                    model.insert(path.clone(), step);
                }
            }
            assert_eq!(
                table.get(&path).unwrap(),
                model.get(&path).copied(),
                "step {step}: {path}"
            );
        }
        assert_eq!(table.len(), model.len());
        for (path, value) in &model {
            assert_eq!(table.get(path).unwrap(), Some(*value));
        }
        assert_eq!(table.get("/usr/lib/p1").unwrap(), None);
        assert_eq!(table.get("").unwrap(), None);
        // A path put back and removed again and again does not fill the table.
        for _ in 0..10_000 {
            table.insert("/tmp/x", 1).unwrap();
            table.remove("/tmp/x").unwrap();
        }
        assert!(table.used <= 2 * table.len() + 16);
        assert_eq!(table.len(), model.len());
        // One byte of memory per slot, at most six slots per path.
        assert!(table.tags.len() <= 6 * table.len().max(11));
    }

    #[test]
    fn an_empty_table_finds_nothing_and_removes_nothing() {
        let mut table = ScratchTable::default();
        assert_eq!(table.get("/a").unwrap(), None);
        assert_eq!(table.remove("/a").unwrap(), None);
        table.insert("/a", 1).unwrap();
        table.insert("/a", 2).unwrap();
        assert_eq!((table.get("/a").unwrap(), table.len()), (Some(2), 1));
        assert_eq!(table.remove("/a").unwrap(), Some(2));
        assert_eq!((table.get("/a").unwrap(), table.len()), (None, 0));
    }
}
