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

/// A new, empty scratch file (see the module documentation).
pub fn scratch_file() -> Result<File> {
    tempfile::tempfile()
        .map_err(|e| FsError::new(std::env::temp_dir(), "cannot create a scratch file in", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

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
}
