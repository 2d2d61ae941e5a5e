//! Bytes appended one after the other to an unnamed scratch file, read back by where they
//! went: for what a run must keep but rarely reads (the stanza fields a plan step carries,
//! resolve/kept.rs; the packages of a plan, planned.rs).
//!
//! Appends go through a 64 KiB buffer to a file made by `safe_fs::scratch_file` (it has no
//! name another process could open, and disappears with the process); what is written is
//! only what prokit itself parsed from verified indexes or made from them, the same trust as
//! memory (docs/on-disk-state.md §3.5, "The status stanzas in memory"). When no scratch file
//! can be made or written (a missing, read-only or full `$TMPDIR`), everything stays in the
//! buffer: as correct, only in memory.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, OnceLock};

/// Bytes buffered before they are written to the file.
const BUFFER: usize = 64 << 10;

/// Where appended bytes are: their offset in the log and their length. 12 bytes, aligned
/// as a `u32` (the offset in two halves): a universe keeps one per package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    off: [u32; 2],
    pub(crate) len: u32,
}

impl Span {
    pub(crate) fn new(off: u64, len: u32) -> Span {
        Span {
            off: [off as u32, (off >> 32) as u32],
            len,
        }
    }

    pub(crate) fn off(self) -> u64 {
        u64::from(self.off[0]) | u64::from(self.off[1]) << 32
    }
}

/// An append-only log of byte strings; shared between threads (a read from the file takes no
/// lock: the download workers read while the install does).
#[derive(Default)]
pub(crate) struct ScratchLog {
    /// The scratch file, made when the buffer first fills.
    file: OnceLock<File>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// How many bytes the file holds; the buffer's come after them.
    flushed: u64,
    buf: Vec<u8>,
    /// A scratch file could not be made or written: everything stays in the buffer.
    in_memory: bool,
}

impl ScratchLog {
    /// A log that never makes a scratch file (the tests of that fallback).
    #[cfg(test)]
    pub(crate) fn in_memory() -> ScratchLog {
        let log = ScratchLog::default();
        log.inner().in_memory = true;
        log
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while the lock was held leaves texts that are whole or not referred to.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many bytes it holds.
    pub(crate) fn len(&self) -> u64 {
        let inner = self.inner();
        inner.flushed + inner.buf.len() as u64
    }

    /// Whether some of it went to a scratch file.
    #[cfg(test)]
    pub(crate) fn on_file(&self) -> bool {
        self.file.get().is_some()
    }

    /// Appends `bytes`; where they are (an error only for 4 GiB or more at once).
    pub(crate) fn push(&self, bytes: &[u8]) -> io::Result<Span> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::other("a record of 4 GiB or more"))?;
        let mut inner = self.inner();
        let off = inner.flushed + inner.buf.len() as u64;
        inner.buf.extend_from_slice(bytes);
        if inner.buf.len() >= BUFFER && !inner.in_memory && inner.flush(&self.file).is_err() {
            // No scratch file can be made or written: the bytes stay in the buffer.
            inner.in_memory = true;
        }
        Ok(Span::new(off, len))
    }

    /// The bytes at `span`.
    pub(crate) fn read(&self, span: Span) -> io::Result<Vec<u8>> {
        let mut out = vec![0; span.len as usize];
        {
            let inner = self.inner();
            if span.off() >= inner.flushed {
                // Bytes are appended whole to the buffer, and the buffer written whole.
                let start = (span.off() - inner.flushed) as usize;
                let part = inner
                    .buf
                    .get(start..start + out.len())
                    .ok_or_else(|| io::Error::other("a record past the end of its scratch file"))?;
                out.copy_from_slice(part);
                return Ok(out);
            }
        }
        // Written before: what the file holds there never changes.
        let file = self
            .file
            .get()
            .ok_or_else(|| io::Error::other("the scratch file is missing"))?;
        file.read_exact_at(&mut out, span.off())?;
        Ok(out)
    }

    /// Frees what the buffer reserved and does not hold.
    pub(crate) fn shrink_to_fit(&self) {
        self.inner().buf.shrink_to_fit();
    }
}

impl Inner {
    /// Writes the buffer to `file` (made first when there is none yet).
    fn flush(&mut self, file: &OnceLock<File>) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = match file.get() {
            Some(f) => f,
            None => {
                let _ = file.set(safe_fs::scratch_file()?);
                file.get()
                    .ok_or_else(|| io::Error::other("no scratch file"))?
            }
        };
        file.write_all_at(&self.buf, self.flushed)?;
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records read back as they went in, from the buffer and from the file, across many
    /// flushes; and the same when no scratch file can be made.
    #[test]
    fn records_read_back_from_buffer_and_file() {
        for (log, to_file) in [
            (ScratchLog::default(), true),
            (ScratchLog::in_memory(), false),
        ] {
            let mut spans = Vec::new();
            for i in 0..3000 {
                let text = format!("Filename: p{i}.ipk\nSize: {}\n", i * 7);
                spans.push((log.push(text.as_bytes()).unwrap(), text));
            }
            assert_eq!(log.on_file(), to_file, "where the records went");
            for (span, text) in &spans {
                assert_eq!(log.read(*span).unwrap(), text.as_bytes());
            }
            let empty = log.push(b"").unwrap();
            assert!(log.read(empty).unwrap().is_empty());
            assert_eq!(
                log.len(),
                spans.iter().map(|s| s.1.len() as u64).sum::<u64>()
            );
        }
    }
}
