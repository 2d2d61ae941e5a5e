//! A map from paths (or names) to numbers whose entries live in a scratch file, with one byte
//! per slot in memory.
//!
//! The ownership map's files ([`crate::status`]) are every non-directory path of every
//! installed package: 37,613 in a root of 10,000 packages, ~2 MB as entries of an in-memory
//! table even without the paths' text; its directories and package names are three tables of
//! this kind together. Here a key is a 128-bit keyed fingerprint (docs/on-disk-state.md §3.5,
//! "The ownership map"), and its entry — the fingerprint and the number — is a 20-byte record
//! in an unnamed scratch file (`safe_fs::scratch_file`), in an open-addressing table of slots
//! (a power of two, at most three quarters of them taken). Memory keeps one byte per slot: empty,
//! removed, or eight bits of the fingerprint (a *tag*). A lookup walks the tags and reads from
//! the file only the records whose tag matches (1 in 254 of the others), so that a path no
//! package owns — most of what a bootstrap asks — costs no read at all, and adding one costs
//! one write. A small table (up to [`IN_MEMORY_SLOTS`] slots, 40 KiB of records: a root of a
//! hundred-odd packages) keeps its records in memory instead, and costs no system call at all.
//! Not more: every root on its way to thousands of packages passes through the largest
//! in-memory size, and at 8,192 slots two tables held 320 KiB there: after the packages in
//! flight, the biggest part of what a bootstrap of 10,000 packages held live at its peak
//! (bench/README.md, results at 16c0150).

use safe_fs::FileAt;
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
/// Tables of up to this many slots keep their records in memory.
const IN_MEMORY_SLOTS: usize = 2048;

/// A path's keyed 128-bit fingerprint ([`ScratchTable::key`]).
pub(crate) type Key = [u64; 2];

pub(crate) struct ScratchTable {
    /// The records, `tags.len()` of them (none until the first insert).
    records: Option<Records>,
    /// Per slot: [`EMPTY`], [`REMOVED`] or the tag of its entry's fingerprint.
    tags: Vec<u8>,
    /// Slots not [`EMPTY`].
    used: usize,
    live: usize,
    keys: [RandomState; 2],
    /// Keep the records in memory (the tests of that fallback).
    memory: bool,
    /// Keep them in memory up to this many slots ([`IN_MEMORY_SLOTS`]; the tests of the
    /// scratch file set less).
    in_memory_slots: usize,
}

/// Where the records are: the scratch file, or memory when no scratch file can be made (a
/// missing or read-only `$TMPDIR`): as correct, only bigger.
enum Records {
    File(File),
    Memory(Vec<u8>),
}

impl Records {
    /// `slots` empty records, in a scratch file unless `memory`.
    fn new(slots: usize, memory: bool) -> Records {
        let len = slots * RECORD;
        match (memory, safe_fs::scratch_file()) {
            (false, Ok(f)) if f.set_len(len as u64).is_ok() => Records::File(f),
            _ => Records::Memory(vec![0; len]),
        }
    }

    fn read(&self, slot: usize) -> io::Result<[u8; RECORD]> {
        let mut r = [0u8; RECORD];
        let at = slot * RECORD;
        match self {
            Records::File(f) => f.read_exact_at(&mut r, at as u64)?,
            Records::Memory(m) => r.copy_from_slice(&m[at..at + RECORD]),
        }
        Ok(r)
    }

    fn write(&mut self, slot: usize, r: &[u8; RECORD]) -> io::Result<()> {
        let at = slot * RECORD;
        match self {
            Records::File(f) => f.write_all_at(r, at as u64),
            Records::Memory(m) => {
                m[at..at + RECORD].copy_from_slice(r);
                Ok(())
            }
        }
    }
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
            records: None,
            tags: Vec::new(),
            used: 0,
            live: 0,
            keys: [RandomState::new(), RandomState::new()],
            memory: false,
            in_memory_slots: IN_MEMORY_SLOTS,
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

    /// The fingerprint of `path` in this table (keyed per table).
    pub(crate) fn key(&self, path: &str) -> Key {
        [self.keys[0].hash_one(path), self.keys[1].hash_one(path)]
    }

    fn read_record(&self, slot: usize) -> io::Result<(Key, u32)> {
        let records = self.records.as_ref().ok_or_else(missing)?;
        Ok(decode(&records.read(slot)?))
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
        self.get_key(self.key(path))
    }

    /// [`ScratchTable::get`] of a fingerprint [`ScratchTable::key`] made.
    pub(crate) fn get_key(&self, key: Key) -> io::Result<Option<u32>> {
        Ok(self.find(key)?.map(|(_, v)| v))
    }

    /// Sets the value of `path`, adding it when new.
    pub(crate) fn insert(&mut self, path: &str, value: u32) -> io::Result<()> {
        self.insert_key(self.key(path), value)
    }

    /// [`ScratchTable::insert`] of a fingerprint [`ScratchTable::key`] made.
    pub(crate) fn insert_key(&mut self, key: Key, value: u32) -> io::Result<()> {
        if let Some((at, _)) = self.find(key)? {
            let records = self.records.as_mut().ok_or_else(missing)?;
            return records.write(at, &encode(key, value));
        }
        // Rebuilt when three quarters of the slots are taken, or when removed entries are as
        // many as the live ones. Not at half: the tags are a bootstrap's biggest table in
        // memory (128 KiB for the files of 10,000 packages), and the longer probes they cost
        // at ¾ are of bytes in memory, a record read for 1 in 254 of them.
        if (self.used + 1) * 4 > self.tags.len() * 3 || self.used >= 2 * self.live + 16 {
            self.rebuild()?;
        }
        self.append(key, value)
    }

    /// Adds `key`, known to be absent, in a table with a free slot for it. On an error the
    /// table is as it was.
    fn append(&mut self, key: Key, value: u32) -> io::Result<()> {
        let records = self.records.as_mut().ok_or_else(missing)?;
        let at = free_slot(&self.tags, key);
        records.write(at, &encode(key, value))?;
        if self.tags[at] == EMPTY {
            self.used += 1;
        }
        self.tags[at] = tag(key);
        self.live += 1;
        Ok(())
    }

    /// Removes `path`; its value, if it was there.
    pub(crate) fn remove(&mut self, path: &str) -> io::Result<Option<u32>> {
        self.remove_key(self.key(path))
    }

    /// [`ScratchTable::remove`] of a fingerprint [`ScratchTable::key`] made.
    pub(crate) fn remove_key(&mut self, key: Key) -> io::Result<Option<u32>> {
        let Some((at, value)) = self.find(key)? else {
            return Ok(None);
        };
        self.tags[at] = REMOVED;
        self.live -= 1;
        Ok(Some(value))
    }

    /// A new table of one and a half to three slots per live entry (a power of two, at least
    /// 64: each rebuild of a growing table doubles it), with
    /// the live entries only: read in order from the old records, written where they go in
    /// the new. Built aside and swapped in whole: on an error the table is as it was.
    fn rebuild(&mut self) -> io::Result<()> {
        let slots = ((self.live + 1) * 3 / 2).next_power_of_two().max(64);
        let mut records = Records::new(slots, self.memory || slots <= self.in_memory_slots);
        let mut tags = vec![EMPTY; slots];
        let mut put = |key: Key, value: u32| -> io::Result<()> {
            let at = free_slot(&tags, key);
            records.write(at, &encode(key, value))?;
            tags[at] = tag(key);
            Ok(())
        };
        match &self.records {
            None => {}
            Some(Records::Memory(m)) => {
                for (r, &t) in m.chunks_exact(RECORD).zip(&self.tags) {
                    if t > REMOVED {
                        let (key, value) = decode(r.try_into().expect("a record"));
                        put(key, value)?;
                    }
                }
            }
            Some(Records::File(old)) => {
                let mut reader = BufReader::with_capacity(64 * 1024, FileAt::new(old, 0));
                let mut r = [0u8; RECORD];
                for &t in &self.tags {
                    reader.read_exact(&mut r)?;
                    if t > REMOVED {
                        let (key, value) = decode(&r);
                        put(key, value)?;
                    }
                }
            }
        }
        self.records = Some(records);
        self.tags = tags;
        self.used = self.live;
        Ok(())
    }
}

/// The first empty or removed slot from `key`'s (one exists: at most ¾ are taken).
fn free_slot(tags: &[u8], key: Key) -> usize {
    let mask = tags.len() - 1;
    let mut at = key[0] as usize & mask;
    while !matches!(tags[at], EMPTY | REMOVED) {
        at = (at + 1) & mask;
    }
    at
}

fn missing() -> io::Error {
    io::Error::other("the ownership map's records are missing")
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
        holds_what_a_hash_map_holds(ScratchTable {
            in_memory_slots: 0,
            ..ScratchTable::default()
        });
    }

    /// A small table keeps its records in memory; grown past [`IN_MEMORY_SLOTS`], it moves
    /// them to a scratch file and still holds every one.
    #[test]
    fn a_small_table_is_kept_in_memory_and_moves_to_a_file_as_it_grows() {
        holds_what_a_hash_map_holds(ScratchTable::default());
        let mut table = ScratchTable::default();
        let paths = |n: usize| (0..n).map(|i| format!("/usr/share/p{i}"));
        let small = IN_MEMORY_SLOTS / 4;
        for (i, p) in paths(small).enumerate() {
            table.insert(&p, i as u32).unwrap();
        }
        assert!(matches!(table.records, Some(Records::Memory(_))));
        let big = IN_MEMORY_SLOTS * 2;
        for (i, p) in paths(big).enumerate() {
            table.insert(&p, i as u32).unwrap();
        }
        assert!(table.tags.len() > IN_MEMORY_SLOTS);
        assert!(matches!(table.records, Some(Records::File(_))));
        for (i, p) in paths(big).enumerate() {
            assert_eq!(table.get(&p).unwrap(), Some(i as u32), "{p}");
        }
    }

    /// The same with the records in memory, as when no scratch file can be made.
    #[test]
    fn records_kept_in_memory_hold_the_same() {
        holds_what_a_hash_map_holds(ScratchTable {
            memory: true,
            ..ScratchTable::default()
        });
    }

    fn holds_what_a_hash_map_holds(mut table: ScratchTable) {
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
        // One byte of memory per slot, at most three slots per path.
        assert!(table.tags.len() <= 3 * (table.len() + 1).max(22));
        // The records are where they were asked for.
        assert_eq!(
            matches!(table.records, Some(Records::Memory(_))),
            table.memory || table.tags.len() <= table.in_memory_slots
        );
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
