//! The installed database's stanzas, held in a private scratch file instead of in memory
//! (docs/on-disk-state.md §3.5, "The status stanzas in memory").
//!
//! A root of 10,000 packages has a status file of ~2.6 MB, and as parsed paragraphs in a map
//! it took ~4.4 MB of the install's memory, growing by ~450 bytes with every package. Here
//! a stanza costs its name and two offsets in memory: its text lives in an unnamed temporary
//! file (`safe_fs::scratch_file`: no other process can open it by name, and it disappears
//! with the process), in name order, one stanza after the other. The
//! stanzas changed since the file was written are held in memory (the *overlay*); once there
//! are [`OVERLAY_MAX`] of them they are merged into a new file.
//!
//! Writing the status file is one merge of the scratch file, read in order, with the
//! overlay: the bytes of an unchanged stanza are copied, never parsed again. Reading one
//! stanza ([`StanzaStore::get`]) is one positioned read and a parse.
//!
//! The scratch file holds only what prokit parsed and accepted (the status file at open,
//! within the database's limits, and the stanzas prokit made since): it is the same trust as
//! memory. A stanza read back is parsed under the same limits, and a failure is an error.

use crate::status::Stanza;
use feeds::control::{ControlLimits, Paragraph, ParagraphReader};
use safe_fs::FileAt;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;

/// How many changed stanzas are held in memory before they are merged into the file: a
/// bootstrap's group commit installs up to 64 packages, and each commit writes the status
/// file through one merge.
const OVERLAY_MAX: usize = 512;

/// Stanzas by package name: the scratch file's, sorted, and the changes since.
#[derive(Default)]
pub(crate) struct StanzaStore {
    /// The scratch file (none until the first stanza is merged into one).
    file: Option<File>,
    /// The file's stanzas' names, one after the other, sorted.
    names: String,
    /// Per stanza of the file: where its name ends in `names`.
    name_ends: Vec<u32>,
    /// Per stanza of the file: where its text ends in the file (each starts where the one
    /// before ends; the first at 0). Four bytes, as the names' ends: a status file past
    /// 4 GiB is refused ([`text_end`]).
    text_ends: Vec<u32>,
    /// Stanzas added or replaced (`Some`) or removed (`None`) since the file was written.
    overlay: BTreeMap<String, Option<Paragraph>>,
    /// How many stanzas there are, the file's and the overlay's together.
    len: usize,
    /// How many changes the overlay holds before they are merged: [`OVERLAY_MAX`], twice as
    /// many as it held when a merge failed (each later change would retry the whole merge).
    merge_at: usize,
    limits: ControlLimits,
}

impl std::fmt::Debug for StanzaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StanzaStore")
            .field("stanzas", &self.len)
            .field("in_file", &self.name_ends.len())
            .field("overlay", &self.overlay.len())
            .finish()
    }
}

impl StanzaStore {
    /// An empty store; stanzas read back are parsed under `limits`.
    pub(crate) fn new(limits: ControlLimits) -> StanzaStore {
        StanzaStore {
            limits,
            merge_at: OVERLAY_MAX,
            ..StanzaStore::default()
        }
    }

    /// How many stanzas it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn file_name(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.name_ends[i - 1] as usize,
        };
        &self.names[start..self.name_ends[i] as usize]
    }

    fn file_range(&self, i: usize) -> (u64, u64) {
        let start = match i {
            0 => 0,
            _ => self.text_ends[i - 1],
        };
        (u64::from(start), u64::from(self.text_ends[i]))
    }

    /// The position of `name` among the file's stanzas.
    fn file_find(&self, name: &str) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.name_ends.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.file_name(mid).cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Whether a stanza of `name` is held (no I/O).
    pub(crate) fn contains(&self, name: &str) -> bool {
        match self.overlay.get(name) {
            Some(p) => p.is_some(),
            None => self.file_find(name).is_ok(),
        }
    }

    /// The stanza of `name`.
    pub(crate) fn get(&self, name: &str) -> io::Result<Option<Stanza<'_>>> {
        if let Some(p) = self.overlay.get(name) {
            return Ok(p.as_ref().map(Cow::Borrowed));
        }
        let Ok(i) = self.file_find(name) else {
            return Ok(None);
        };
        let (start, end) = self.file_range(i);
        let mut text = vec![0; (end - start) as usize];
        self.file()?.read_exact_at(&mut text, start)?;
        self.parse(&text).map(|p| Some(Cow::Owned(p)))
    }

    fn file(&self) -> io::Result<&File> {
        self.file.as_ref().ok_or_else(missing_file)
    }

    fn parse(&self, text: &[u8]) -> io::Result<Paragraph> {
        match ParagraphReader::with_limits(text, self.limits).next() {
            Some(Ok(p)) => Ok(p),
            Some(Err(e)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a stanza read back from the scratch file: {e}"),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an empty stanza read back from the scratch file",
            )),
        }
    }

    /// Every name, sorted (no I/O).
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.walk().filter_map(|(name, from)| {
            matches!(from, From::File(_) | From::Overlay(_)).then_some(name)
        })
    }

    /// The file's names and the overlay's, merged in order: each name once, with where its
    /// stanza is (`Gone` for a file stanza the overlay removed).
    fn walk(&self) -> impl Iterator<Item = (&str, From<'_>)> + '_ {
        let mut file = (0..self.name_ends.len()).peekable();
        let mut over = self.overlay.iter().peekable();
        std::iter::from_fn(move || {
            let take_file = match (file.peek(), over.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(&i), Some((k, _))) => self.file_name(i) < k.as_str(),
            };
            if take_file {
                let i = file.next()?;
                return Some((self.file_name(i), From::File(i)));
            }
            let (k, p) = over.next()?;
            if file
                .peek()
                .is_some_and(|&i| self.file_name(i) == k.as_str())
            {
                file.next();
            }
            Some((
                k.as_str(),
                match p {
                    Some(p) => From::Overlay(p),
                    None => From::Gone,
                },
            ))
        })
    }

    /// Every stanza, in name order, each as its text (what the status file holds), with
    /// `name`'s replaced by `stanza` (added when new; left out when `None`): `each` gets the
    /// name and the text. Unchanged stanzas are copied from the file as they are.
    pub(crate) fn for_each_text_with(
        &self,
        name: &str,
        stanza: Option<&Paragraph>,
        each: &mut dyn FnMut(&str, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut reader = self
            .file
            .as_ref()
            .map(|f| BufReader::with_capacity(64 * 1024, FileAt::new(f, 0)));
        let mut buf = Vec::new();
        let mut pending = stanza;
        for (k, from) in self.walk() {
            if k > name
                && let Some(s) = pending.take()
            {
                each(name, s.as_text().as_bytes())?;
            }
            // The file's bytes of `k` are read even when skipped, so the reader stays in step.
            self.read_in_step(k, from, &mut reader, &mut buf)?;
            if k == name {
                continue;
            }
            match from {
                From::File(_) => each(k, &buf)?,
                From::Overlay(p) => each(k, p.as_text().as_bytes())?,
                From::Gone => {}
            }
        }
        if let Some(s) = pending {
            each(name, s.as_text().as_bytes())?;
        }
        Ok(())
    }

    /// Reads the file's text of `k` (found by [`StanzaStore::walk`] as `from`) into `buf`,
    /// when the file has one: the sequential `reader` of the file stays in step with the walk
    /// whether the text is used (a stanza of the file) or not (one the overlay replaced or
    /// removed).
    fn read_in_step(
        &self,
        k: &str,
        from: From<'_>,
        reader: &mut Option<BufReader<FileAt<'_>>>,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        let in_file = match from {
            From::File(i) => Some(i),
            _ => self.file_find(k).ok(),
        };
        if let Some(i) = in_file {
            let (start, end) = self.file_range(i);
            let r = reader.as_mut().ok_or_else(missing_file)?;
            buf.resize((end - start) as usize, 0);
            r.read_exact(buf)?;
        }
        Ok(())
    }

    /// Every stanza, parsed, in name order; nothing more after an error (the reader's place
    /// in the file is then unknown).
    pub(crate) fn iter(&self) -> impl Iterator<Item = io::Result<Stanza<'_>>> + '_ {
        let mut reader = self
            .file
            .as_ref()
            .map(|f| BufReader::with_capacity(64 * 1024, FileAt::new(f, 0)));
        let mut buf = Vec::new();
        let mut walk = self.walk();
        let mut failed = false;
        std::iter::from_fn(move || {
            loop {
                if failed {
                    return None;
                }
                let (k, from) = walk.next()?;
                if let Err(e) = self.read_in_step(k, from, &mut reader, &mut buf) {
                    failed = true;
                    return Some(Err(e));
                }
                match from {
                    From::File(_) => return Some(self.parse(&buf).map(Cow::Owned)),
                    From::Overlay(p) => return Some(Ok(Cow::Borrowed(p))),
                    From::Gone => {}
                }
            }
        })
    }

    /// Records `name`'s stanza (`Some`) or its removal (`None`). Once the overlay holds
    /// [`OVERLAY_MAX`] changes they are merged into a new scratch file; when that fails
    /// (the temporary directory is full) they stay in memory, where they are as correct.
    pub(crate) fn set(&mut self, name: &str, stanza: Option<Paragraph>) {
        self.set_with(name, stanza, false);
    }

    /// [`StanzaStore::set`] for the stanzas of a status file being read, in its order: the
    /// overlay may grow to a quarter of the stanzas before a merge, so that a file not
    /// sorted by name (each merge then rewrites the scratch file) costs O(n log n), not
    /// O(n²). [`StanzaStore::settle`] merges the rest.
    pub(crate) fn load(&mut self, name: &str, stanza: Paragraph) {
        self.set_with(name, Some(stanza), true);
    }

    /// Merges what the overlay holds (kept in memory when that fails).
    pub(crate) fn settle(&mut self) {
        if self.merge().is_err() {
            self.merge_at = self.merge_at.max(self.overlay.len() * 2);
        }
    }

    fn set_with(&mut self, name: &str, stanza: Option<Paragraph>, loading: bool) {
        let had = self.contains(name);
        let has = stanza.is_some();
        if !has && self.file_find(name).is_err() {
            self.overlay.remove(name);
        } else {
            self.overlay.insert(name.to_string(), stanza);
        }
        match (had, has) {
            (false, true) => self.len += 1,
            (true, false) => self.len -= 1,
            _ => {}
        }
        let at = if loading {
            self.merge_at.max(self.len / 4)
        } else {
            self.merge_at
        };
        if self.overlay.len() >= at {
            self.merge_at = match self.merge() {
                Ok(()) => OVERLAY_MAX,
                Err(_) => self.overlay.len() * 2,
            };
        }
    }

    /// Merges the overlay into the file, after which it is empty: when it only adds names
    /// that sort after the file's last, they are appended; otherwise the file's stanzas and
    /// the overlay, merged, are written into a new scratch file, which replaces the old one.
    fn merge(&mut self) -> io::Result<()> {
        if self.overlay.is_empty() {
            return Ok(());
        }
        let appends = self.overlay.values().all(Option::is_some)
            && match (self.name_ends.len(), self.overlay.keys().next()) {
                (0, _) => true,
                (n, Some(first)) => first.as_str() > self.file_name(n - 1),
                (_, None) => false,
            };
        if appends {
            let file = match self.file.take() {
                Some(f) => f,
                None => safe_fs::scratch_file()?,
            };
            let mut end = u64::from(self.text_ends.last().copied().unwrap_or(0));
            let (before, names_before) = (self.name_ends.len(), self.names.len());
            // Exactly the room the new stanzas take, in one step: pushed one by one, the
            // arrays would grow to up to twice what they need, to be copied back to their
            // length by the shrink below.
            self.names
                .reserve_exact(self.overlay.keys().map(String::len).sum());
            self.name_ends.reserve_exact(self.overlay.len());
            self.text_ends.reserve_exact(self.overlay.len());
            let written = (|| -> io::Result<()> {
                let mut out = BufWriter::with_capacity(64 * 1024, FileAt::new(&file, end));
                for (name, p) in &self.overlay {
                    let text = p.as_ref().map_or("", |p| p.as_text());
                    out.write_all(text.as_bytes())?;
                    end += text.len() as u64;
                    self.names.push_str(name);
                    self.name_ends.push(name_end(&self.names)?);
                    self.text_ends.push(text_end(end)?);
                }
                out.flush()
            })();
            self.file = Some(file);
            if let Err(e) = written {
                // The file is as it was up to its last whole stanza (bytes after it are never
                // read, and the next append writes over them); the overlay still holds all.
                self.name_ends.truncate(before);
                self.text_ends.truncate(before);
                self.names.truncate(names_before);
                return Err(e);
            }
        } else {
            let file = safe_fs::scratch_file()?;
            // Room for every stanza's name and ends: the file's and the overlay's (a few
            // too many when the overlay replaces or removes).
            let mut names = String::with_capacity(
                self.names.len() + self.overlay.keys().map(String::len).sum::<usize>(),
            );
            let mut name_ends = Vec::with_capacity(self.len);
            let mut text_ends = Vec::with_capacity(self.len);
            let mut end = 0u64;
            {
                let mut out = BufWriter::with_capacity(64 * 1024, FileAt::new(&file, 0));
                self.for_each_text_with("", None, &mut |name, text| {
                    out.write_all(text)?;
                    end += text.len() as u64;
                    names.push_str(name);
                    name_ends.push(name_end(&names)?);
                    text_ends.push(text_end(end)?);
                    Ok(())
                })?;
                out.flush()?;
            }
            self.file = Some(file);
            self.names = names;
            self.name_ends = name_ends;
            self.text_ends = text_ends;
        }
        self.names.shrink_to_fit();
        self.name_ends.shrink_to_fit();
        self.text_ends.shrink_to_fit();
        self.overlay.clear();
        Ok(())
    }

    /// Every stanza, in a map (for tests comparing a database before and after).
    #[cfg(test)]
    pub(crate) fn to_map(&self) -> BTreeMap<String, Paragraph> {
        self.iter()
            .map(|p| {
                let p = p.unwrap().into_owned();
                (p.get("Package").unwrap().to_string(), p)
            })
            .collect()
    }
}

/// Where [`StanzaStore::walk`] found a stanza.
#[derive(Clone, Copy)]
enum From<'a> {
    File(usize),
    Overlay(&'a Paragraph),
    /// In the file, removed since.
    Gone,
}

fn missing_file() -> io::Error {
    io::Error::other("the scratch file of the status stanzas is missing")
}

/// Where the last name of `names` ends, as the store keeps it.
fn name_end(names: &str) -> io::Result<u32> {
    u32::try_from(names.len())
        .map_err(|_| io::Error::other("status stanza names longer than 4 GiB"))
}

/// Where a stanza's text ends in the scratch file, as a [`StanzaStore::text_ends`] entry.
fn text_end(end: u64) -> io::Result<u32> {
    u32::try_from(end).map_err(|_| io::Error::other("status stanzas longer than 4 GiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(name: &str, version: &str) -> Paragraph {
        Paragraph::parse(&format!(
            "Package: {name}\nVersion: {version}\nStatus: install ok installed\n"
        ))
        .unwrap()
    }

    fn texts(s: &StanzaStore, name: &str, stanza: Option<&Paragraph>) -> String {
        let mut out = String::new();
        s.for_each_text_with(name, stanza, &mut |_, t| {
            out.push_str(std::str::from_utf8(t).unwrap());
            out.push('\n');
            Ok(())
        })
        .unwrap();
        out
    }

    /// The store against a `BTreeMap` through thousands of adds, replacements and removals
    /// (so the overlay is merged into the file several times): the same names, stanzas,
    /// count and text at every check.
    #[test]
    fn store_matches_a_map_through_merges() {
        let mut store = StanzaStore::new(ControlLimits::default());
        let mut map: BTreeMap<String, Paragraph> = BTreeMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..6000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = format!("pkg{:04}", x % 1500);
            if x.is_multiple_of(5) {
                store.set(&name, None);
                map.remove(&name);
            } else {
                let p = stanza(&name, &format!("{step}"));
                store.set(&name, Some(p.clone()));
                map.insert(name.clone(), p);
            }
            if step.is_multiple_of(997) || step == 5999 {
                assert_eq!(store.len(), map.len());
                let names: Vec<&str> = store.names().collect();
                let want: Vec<&str> = map.keys().map(String::as_str).collect();
                assert_eq!(names, want);
                assert_eq!(store.to_map(), map);
                for k in ["pkg0001", "pkg0777", "pkg1499", "zzz", &name] {
                    assert_eq!(store.get(k).unwrap().as_deref(), map.get(k), "{k}");
                    assert_eq!(store.contains(k), map.contains_key(k));
                }
                // The text with one stanza replaced, added, and removed.
                for (k, p) in [
                    ("pkg0500", Some(stanza("pkg0500", "new"))),
                    ("aaa", Some(stanza("aaa", "1"))),
                    ("pkg0600", None),
                ] {
                    let mut m = map.clone();
                    match &p {
                        Some(p) => m.insert(k.to_string(), p.clone()),
                        None => m.remove(k),
                    };
                    let want: String = m.values().map(|p| format!("{}\n", p.as_text())).collect();
                    assert_eq!(texts(&store, k, p.as_ref()), want);
                }
            }
        }
        assert!(store.file.is_some(), "the overlay was merged into a file");
    }

    /// A status file read in an order that is not the names' (an opkg-written one): every
    /// stanza kept, and nothing left in memory once settled.
    #[test]
    fn stanzas_loaded_out_of_order_are_all_kept() {
        let mut store = StanzaStore::new(ControlLimits::default());
        let mut map = BTreeMap::new();
        for i in (0..5000u32).map(|i| (i * 7919) % 5000) {
            let name = format!("p{i:05}");
            let p = stanza(&name, "1");
            map.insert(name.clone(), p.clone());
            store.load(&name, p);
        }
        store.settle();
        assert!(store.overlay.is_empty());
        assert_eq!(store.len(), 5000);
        assert_eq!(store.to_map(), map);
    }
}
