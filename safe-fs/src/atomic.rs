//! Atomic file replacement by path (docs/crash-safety.md §1), temporary names, directory fsync
//! and durable removal. The work is done by [`Dir`] on the file's directory, opened once.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dir::Dir;
use crate::error::{FsError, Result};

/// How a file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// The file's mode, set exactly (the umask does not narrow it).
    pub mode: u32,
    /// Fsync the file before it gets its name, and the directory after.
    pub sync: bool,
}

impl Default for WriteOptions {
    /// Mode 0644, fsynced.
    fn default() -> Self {
        WriteOptions {
            mode: 0o644,
            sync: true,
        }
    }
}

impl WriteOptions {
    /// These options with `mode`.
    pub fn mode(self, mode: u32) -> Self {
        WriteOptions { mode, ..self }
    }

    /// These options with `sync`.
    pub fn sync(self, sync: bool) -> Self {
        WriteOptions { sync, ..self }
    }
}

/// The longest file name most file systems take (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// What [`temp_name`] adds around the name: `.`, `.tmp-` and 16 hex digits.
const TEMP_OVERHEAD: usize = 1 + 5 + 16;

/// `2 * n_bytes` random lower-case hex digits, for names that must not collide (not for
/// secrets). Should the system's random source fail, a mix of the process id, the time and a
/// counter stands in, which is still unique within the machine.
pub fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    if getrandom::fill(&mut bytes).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut x = nanos
            ^ (u64::from(std::process::id()) << 40)
            ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(20);
        for b in &mut bytes {
            // xorshift: spreads the bits over every byte.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    hex::encode(bytes)
}

/// The name of a temporary file standing in for `file_name`: `.<file_name>.tmp-<16 hex>`,
/// hidden and unique. A long `file_name` is shortened so that the result still fits in 255
/// bytes.
pub fn temp_name(file_name: &str) -> String {
    let mut end = file_name.len().min(NAME_MAX - TEMP_OVERHEAD);
    while !file_name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.tmp-{}", &file_name[..end], random_hex(8))
}

/// [`temp_name`] for any file name.
pub(crate) fn temp_name_os(file_name: &OsStr) -> OsString {
    let bytes = file_name.as_bytes();
    let bytes = &bytes[..bytes.len().min(NAME_MAX - TEMP_OVERHEAD)];
    let mut out = Vec::with_capacity(bytes.len() + TEMP_OVERHEAD);
    out.push(b'.');
    out.extend_from_slice(bytes);
    out.extend_from_slice(b".tmp-");
    out.extend_from_slice(random_hex(8).as_bytes());
    OsString::from_vec(out)
}

/// True for a name [`temp_name`] makes (to clean up after an interrupted writer).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name.rsplit_once(".tmp-").is_some_and(|(_, tail)| {
            tail.len() == 16 && tail.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// The directory holding `path` (`.` for a bare file name) and the file name.
fn split<'a>(path: &'a Path, op: &'static str) -> Result<(&'a Path, &'a OsStr)> {
    let name = path.file_name().ok_or_else(|| {
        FsError::other(
            path,
            op,
            io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// Opens the directory of `path` for writing `name`; errors name `path`'s directory.
fn parent<'a>(path: &'a Path, op: &'static str) -> Result<(Dir, &'a OsStr)> {
    let (dir, name) = split(path, op)?;
    // Keep the caller's spelling in messages: "f" rather than "./f".
    let display = path.parent().unwrap_or(Path::new(""));
    let dir = Dir::open(dir)?;
    if display.as_os_str().is_empty() {
        return Ok((dir.with_path(display.to_path_buf()), name));
    }
    Ok((dir, name))
}

/// Replaces `path` with `bytes` atomically: see [`Dir::write_atomic`] (temporary file
/// `.<name>.tmp-<16 hex>` in the same directory, created exclusively with `O_NOFOLLOW`,
/// written, mode set, fsynced, renamed, directory fsynced; removed on failure). The directory
/// part of `path` is the caller's own (followed like any path); a symlink at `path` itself is
/// replaced, not written through.
pub fn write_atomic(path: &Path, bytes: &[u8], opts: WriteOptions) -> Result<()> {
    let (dir, name) = parent(path, "write")?;
    dir.write_atomic_os(name, bytes, opts)
}

/// [`write_atomic`] with the contents written by `write` (streaming).
pub fn write_atomic_with(
    path: &Path,
    opts: WriteOptions,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let (dir, name) = parent(path, "write")?;
    dir.write_atomic_with_os(name, opts, write)
}

/// Creates `path`, which must not exist: see [`Dir::write_new`].
pub fn write_new(path: &Path, bytes: &[u8], opts: WriteOptions) -> Result<()> {
    let (dir, name) = parent(path, "create")?;
    dir.write_new_os(name, bytes, opts)
}

/// Fsyncs the directory `dir`, so that renames, creations and removals in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    Dir::open(dir)?.sync()
}

/// Removes the file or symlink `path` (never a symlink's target) and, with `sync`, fsyncs its
/// directory; `Ok(false)` when it did not exist.
pub fn remove_file_durably(path: &Path, sync: bool) -> Result<bool> {
    let (dir, name) = match parent(path, "remove") {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(e),
    };
    let removed = dir.remove_file_os(name)?;
    if removed && sync {
        dir.sync()?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn write_atomic_replaces_sets_the_exact_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", WriteOptions::default().mode(0o600)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode_of(&path), 0o600);
        write_atomic(&path, b"two", WriteOptions::default().mode(0o755)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), 0o755);
        write_atomic(&path, b"three", WriteOptions::default().sync(false)).unwrap();
        assert_eq!(mode_of(&path), 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failing_writer_keeps_the_old_file_and_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"old").unwrap();
        let err = write_atomic_with(&path, WriteOptions::default(), |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: cannot write: disk on fire", path.display())
        );
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_atomic_with_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic_with(&path, WriteOptions::default(), |f| {
            f.write_all(b"a")?;
            f.write_all(b"b")
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"ab");
    }

    #[test]
    fn write_atomic_into_a_missing_directory_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none/f");
        let err = write_atomic(&path, b"x", WriteOptions::default()).unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(err.path, dir.path().join("none"));
    }

    #[test]
    fn a_bare_file_name_is_written_in_the_current_directory() {
        // Only the error path is checked here (changing the current directory would disturb
        // the other tests): the message names the file as given.
        let err = write_atomic(Path::new(""), b"x", WriteOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let (dir, name) = split(Path::new("f"), "write").unwrap();
        assert_eq!((dir, name), (Path::new("."), OsStr::new("f")));
    }

    #[test]
    fn write_new_does_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_new(&path, b"one", WriteOptions::default().mode(0o600)).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let err = write_new(&path, b"two", WriteOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn temp_names_table() {
        let name = temp_name("Packages");
        assert!(name.starts_with(".Packages.tmp-"), "{name}");
        assert!(is_temp_name(&name), "{name}");
        assert_ne!(temp_name("Packages"), name);
        for (text, want) in [
            (".x.tmp-0123456789abcdef", true),
            (".a.b.tmp-0123456789abcdef", true),
            ("x.tmp-0123456789abcdef", false),
            (".x.tmp-0123456789ABCDEF", false),
            (".x.tmp-123", false),
            (".x.tmp-0123456789abcdef0", false),
            ("0123456789abcdef", false),
            (".x", false),
        ] {
            assert_eq!(is_temp_name(text), want, "{text}");
        }
        // A name at the limit still gives a usable temporary name.
        let long = "é".repeat(127);
        let tmp = temp_name(&long);
        assert!(tmp.len() <= 255, "{}", tmp.len());
        assert!(is_temp_name(&tmp));
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(255);
        write_atomic(&dir.path().join(&long), b"ok", WriteOptions::default()).unwrap();
        assert_eq!(fs::read(dir.path().join(&long)).unwrap(), b"ok");
    }

    #[test]
    fn random_hex_has_the_length_asked_and_varies() {
        assert_eq!(random_hex(8).len(), 16);
        assert_eq!(random_hex(0), "");
        assert_ne!(random_hex(8), random_hex(8));
    }

    #[test]
    fn sync_dir_and_durable_removal() {
        let dir = tempfile::tempdir().unwrap();
        sync_dir(dir.path()).unwrap();
        let err = sync_dir(&dir.path().join("none")).unwrap_err();
        assert!(err.is_not_found());
        assert!(
            err.to_string().contains("none: cannot open directory: "),
            "{err}"
        );
        let path = dir.path().join("f");
        fs::write(&path, b"").unwrap();
        assert!(remove_file_durably(&path, true).unwrap());
        assert!(!path.exists());
        assert!(!remove_file_durably(&path, true).unwrap());
        assert!(!remove_file_durably(&dir.path().join("none/f"), false).unwrap());
    }
}
