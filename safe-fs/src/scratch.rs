//! Scratch files: unnamed temporary files that hold what a process would otherwise keep in
//! memory (prokit keeps its installed database's stanzas in one), read back with positioned
//! reads.
//!
//! A scratch file is made in the temporary directory (`$TMPDIR`, else `/tmp`) with
//! `O_TMPFILE` where the kernel and filesystem have it, so it never has a name that another
//! process could open, and it disappears when its last descriptor closes, whatever way the
//! process ends; elsewhere it is created exclusively under a random name, mode 0600, and
//! unlinked at once (the `tempfile` crate's `tempfile()`). Its pages live in the page cache:
//! they do not count in the process's resident memory.

use crate::error::{FsError, Result};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

/// A new, empty scratch file (see the module documentation).
pub fn scratch_file() -> Result<File> {
    tempfile::tempfile()
        .map_err(|e| FsError::new(std::env::temp_dir(), "cannot create a scratch file in", e))
}

/// A file read or written from a position on, with positioned reads and writes (`pread`,
/// `pwrite`): a shared `&File` has no cursor of its own to move, and several readers of one
/// scratch file each keep their own place. Wrap it in a `BufReader` or `BufWriter`.
pub struct FileAt<'f> {
    file: &'f File,
    at: u64,
}

impl<'f> FileAt<'f> {
    /// `file` from byte `at` on.
    pub fn new(file: &'f File, at: u64) -> FileAt<'f> {
        FileAt { file, at }
    }
}

impl Read for FileAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl Write for FileAt<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_file_reads_back_what_was_written_and_has_no_name() {
        let f = scratch_file().unwrap();
        f.write_all_at(b"hello, scratch", 0).unwrap();
        let mut buf = [0; 7];
        f.read_exact_at(&mut buf, 7).unwrap();
        assert_eq!(&buf, b"scratch");
        // Unnamed: no link to it anywhere.
        assert_eq!(
            std::os::unix::fs::MetadataExt::nlink(&f.metadata().unwrap()),
            0
        );
    }

    #[test]
    fn file_at_reads_and_writes_from_its_own_place() {
        let f = scratch_file().unwrap();
        FileAt::new(&f, 4).write_all(b"tail").unwrap();
        FileAt::new(&f, 0).write_all(b"head").unwrap();
        let (mut a, mut b) = (FileAt::new(&f, 0), FileAt::new(&f, 4));
        let mut buf = [0; 4];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"tail");
        a.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"head");
    }
}
