//! Where a run keeps the stanza text it holds beyond a budget: an unnamed temporary file.
//!
//! `archman index` holds every package's stanza until it has written, compressed and signed
//! the index, and a feed's stanzas are its `Packages`: 44 MB at 60,000 packages. Up to a
//! budget (`--stanza-memory`, 8 MiB by default) they stay in memory; past it they are
//! appended to a file made without a name (`O_TMPFILE`, or created and unlinked at once)
//! beside the cache, or in the temporary directory, and read back in pieces when needed. No
//! other process can open the file by name, and it is gone when the run ends, however it
//! ends; what is read back is what this run wrote, exactly as it would be from memory
//! (docs/on-disk-state.md §1.2 and docs/crash-safety.md §2.3, "Stanzas outside memory").

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Bytes gathered before they are written to the file.
const PENDING: usize = 256 << 10;

/// The default budget of stanza text kept in memory.
pub const DEFAULT_BUDGET: usize = 8 << 20;

/// The store (see the module documentation). Shared by the threads of one run.
pub struct Spill {
    budget: usize,
    in_memory: AtomicUsize,
    dir: Option<PathBuf>,
    file: OnceLock<File>,
    writer: Mutex<Pending>,
    /// Bytes of the file that are written (readable with `read_at`).
    flushed: AtomicU64,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Where `bytes` go in the file.
    at: u64,
}

impl Pending {
    /// Where what was stored ends (written or still pending).
    fn end(&self) -> u64 {
        self.at + self.bytes.len() as u64
    }
}

impl Spill {
    /// A store keeping up to `budget` bytes in memory; its file, made on first use, goes in
    /// `dir` (the temporary directory when `None`, or when it cannot be made there).
    pub fn new(budget: usize, dir: Option<&Path>) -> Spill {
        Spill {
            budget,
            in_memory: AtomicUsize::new(0),
            dir: dir.map(Path::to_path_buf),
            file: OnceLock::new(),
            writer: Mutex::new(Pending::default()),
            flushed: AtomicU64::new(0),
        }
    }

    /// Whether `len` more bytes may stay in memory; if so they are counted against the budget.
    pub fn keep_in_memory(&self, len: usize) -> bool {
        self.in_memory
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(len).filter(|&n| n <= self.budget)
            })
            .is_ok()
    }

    /// Whether anything has gone to the file.
    pub fn used(&self) -> bool {
        self.file.get().is_some()
    }

    fn file(&self) -> io::Result<&File> {
        if let Some(f) = self.file.get() {
            return Ok(f);
        }
        let made = match &self.dir {
            Some(d) => tempfile::tempfile_in(d).or_else(|_| tempfile::tempfile()),
            None => tempfile::tempfile(),
        }?;
        Ok(self.file.get_or_init(|| made))
    }

    /// Appends `bytes`; returns where they are.
    pub fn put(&self, bytes: &[u8]) -> io::Result<u64> {
        let file = self.file()?;
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let at = w.end();
        if w.bytes.len() + bytes.len() > PENDING {
            self.write_pending(file, &mut w)?;
        }
        if bytes.len() >= PENDING {
            file.write_all_at(bytes, at)?;
            w.at = at + bytes.len() as u64;
            self.flushed.store(w.at, Ordering::Release);
        } else {
            if w.bytes.capacity() == 0 {
                w.bytes.reserve_exact(PENDING);
            }
            w.bytes.extend_from_slice(bytes);
        }
        Ok(at)
    }

    fn write_pending(&self, file: &File, w: &mut Pending) -> io::Result<()> {
        file.write_all_at(&w.bytes, w.at)?;
        w.at += w.bytes.len() as u64;
        w.bytes.clear();
        self.flushed.store(w.at, Ordering::Release);
        Ok(())
    }

    /// Fills `buf` from `at`.
    pub fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = at + buf.len() as u64;
        let file = self
            .file
            .get()
            .ok_or_else(|| io::Error::other("nothing was stored there"))?;
        if end > self.flushed.load(Ordering::Acquire) {
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            if end > w.end() {
                return Err(io::Error::other("read past the end of what was stored"));
            }
            self.write_pending(file, &mut w)?;
        }
        file.read_exact_at(buf, at)
    }
}

/// Reads stanzas back from a [`Spill`], a block at a time while they are read in the order
/// they were stored, one at a time otherwise.
pub struct Reader<'s> {
    spill: &'s Spill,
    block: Vec<u8>,
    block_at: u64,
    /// Stanzas the current block served.
    served: usize,
    /// Reads made (for the tests).
    #[cfg(test)]
    reads: usize,
}

const BLOCK: usize = 64 << 10;

impl<'s> Reader<'s> {
    pub fn new(spill: &'s Spill) -> Reader<'s> {
        Reader {
            spill,
            block: Vec::new(),
            block_at: 0,
            served: 0,
            #[cfg(test)]
            reads: 0,
        }
    }

    /// The `len` bytes at `at`.
    pub fn get(&mut self, at: u64, len: usize) -> io::Result<&[u8]> {
        let end = at + len as u64;
        let inside = at >= self.block_at && end <= self.block_at + self.block.len() as u64;
        if !inside {
            // Reading on from where the last block ended, or after a block that served
            // several: the stanzas come in the order they were stored, a block at a time.
            // Otherwise only this one.
            let sequential = self.served > 1 || at == self.block_at + self.block.len() as u64;
            let want = if sequential { len.max(BLOCK) } else { len };
            // A block never reads past what was stored.
            let stored = self
                .spill
                .writer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .end();
            let want = (want as u64).min(stored.saturating_sub(at)).max(len as u64) as usize;
            self.block.resize(want, 0);
            self.spill.read_at(at, &mut self.block)?;
            self.block_at = at;
            self.served = 0;
            #[cfg(test)]
            {
                self.reads += 1;
            }
        }
        self.served += 1;
        let start = (at - self.block_at) as usize;
        Ok(&self.block[start..start + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_put_is_read_back_in_any_order_and_the_budget_holds() {
        let spill = Spill::new(100, None);
        assert!(spill.keep_in_memory(60));
        assert!(!spill.keep_in_memory(41));
        assert!(spill.keep_in_memory(40));
        assert!(!spill.used());
        let texts: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("Package: p{i}\n{}\n", "x".repeat(i % 700)).into_bytes())
            .chain([vec![b'y'; PENDING + 3]])
            .collect();
        let at: Vec<u64> = texts.iter().map(|t| spill.put(t).unwrap()).collect();
        assert!(spill.used());
        let mut r = Reader::new(&spill);
        for (t, a) in texts.iter().zip(&at) {
            assert_eq!(r.get(*a, t.len()).unwrap(), &t[..]);
        }
        // Read in the order stored: a block at a time (~700 KB of small texts, then one
        // larger than a block).
        assert!(r.reads < 20, "{} reads", r.reads);
        let mut r = Reader::new(&spill);
        for (t, a) in texts.iter().zip(&at).rev().step_by(7) {
            assert_eq!(r.get(*a, t.len()).unwrap(), &t[..]);
        }
        // Reading what was never stored fails rather than giving zeros.
        let end = at.last().unwrap() + texts.last().unwrap().len() as u64;
        assert!(spill.read_at(end, &mut [0; 1]).is_err());
        assert!(Spill::new(0, None).read_at(0, &mut [0; 1]).is_err());
    }

    #[test]
    fn the_file_has_no_name() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(0, Some(dir.path()));
        spill.put(b"Package: a\n").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
