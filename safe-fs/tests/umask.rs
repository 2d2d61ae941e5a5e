//! Modes are exact whatever the umask. The umask is per process, so this binary holds this
//! one test alone.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use safe_fs::{Root, WriteOptions};

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
#[allow(unsafe_code)] // umask(2)
fn modes_are_exact_under_a_restrictive_umask() {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
    let dir = tempfile::tempdir().unwrap();
    let opts = WriteOptions::default();
    safe_fs::write_atomic(&dir.path().join("a"), b"a", opts).unwrap();
    assert_eq!(mode_of(&dir.path().join("a")), 0o644);
    safe_fs::write_new(&dir.path().join("n"), b"n", opts.mode(0o640)).unwrap();
    assert_eq!(mode_of(&dir.path().join("n")), 0o640);
    let root = Root::open(dir.path()).unwrap();
    root.write_atomic("x/y/z", b"z", opts.mode(0o755)).unwrap();
    assert_eq!(mode_of(&dir.path().join("x")), 0o755);
    assert_eq!(mode_of(&dir.path().join("x/y")), 0o755);
    assert_eq!(mode_of(&dir.path().join("x/y/z")), 0o755);
}
