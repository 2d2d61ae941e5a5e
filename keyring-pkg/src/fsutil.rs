//! Small filesystem helpers shared by the modules that write: atomic file replacement, bounded
//! reads, directory fsync, and resolving a directory inside a root without leaving it.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The most symbolic links followed while resolving one path inside a root.
const MAX_SYMLINK_HOPS: usize = 40;

/// 16 random lower-case hex digits, for temporary names.
pub(crate) fn random_suffix() -> io::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("random: {e}")))?;
    Ok(hex::encode(bytes))
}

/// The name of the temporary file used to replace `file_name`: `.<file_name>.tmp-<hex>`.
pub(crate) fn temp_name(file_name: &str) -> io::Result<String> {
    Ok(format!(".{file_name}.tmp-{}", random_suffix()?))
}

/// True for a name [`temp_name`] makes.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name.rsplit_once(".tmp-").is_some_and(|(_, tail)| {
            tail.len() == 16 && tail.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same directory, written,
/// fsynced, renamed over `path`, then the directory fsynced. A reader (or a crash) sees the old
/// file or the new one, never a mix. The temporary file is removed on failure.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_of(path);
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(temp_name(&file_name)?);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        // The umask may have narrowed the mode; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// Fsyncs a directory, so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Reads at most `max` bytes of the regular file at `path`; `Ok(None)` when it does not exist.
/// A larger file is an error of kind `FileTooLarge` (its message says how large it is).
pub(crate) fn read_bounded(path: &Path, max: usize) -> io::Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("file is larger than the {max} bytes allowed"),
        ));
    }
    Ok(Some(bytes))
}

/// Resolves the directory `rel` (a relative path such as `etc/opkg/keys`) inside `root` the way
/// a chroot would: a symbolic link met on the way is followed, but an absolute target is taken
/// relative to `root` and `..` never climbs above `root`, so the result is always inside it.
/// With `create`, missing directories are created (mode 0755); without, `Ok(None)` when a
/// component is missing. A component that is not a directory is an error.
pub(crate) fn resolve_dir(root: &Path, rel: &str, create: bool) -> io::Result<Option<PathBuf>> {
    let mut pending: Vec<OsString> = components(Path::new(rel));
    pending.reverse(); // a stack: next component last
    let mut depth: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            depth.pop();
            continue;
        }
        let here = joined(root, &depth).join(&name);
        match fs::symlink_metadata(&here) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{}: too many levels of symbolic links", here.display()),
                    ));
                }
                let target = fs::read_link(&here)?;
                if target.is_absolute() {
                    depth.clear();
                }
                let mut parts = components(&target);
                parts.reverse();
                pending.extend(parts);
            }
            Ok(meta) if meta.is_dir() => depth.push(name),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{}: not a directory", here.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match fs::create_dir(&here) {
                    Ok(()) => {
                        fs::set_permissions(&here, fs::Permissions::from_mode(0o755))?;
                        sync_dir(parent_of(&here))?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                // Look again: another process may have made it a symlink meanwhile.
                pending.push(name);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(joined(root, &depth)))
}

/// The normal components of `path` (root and `.` dropped, `..` kept).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn joined(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(parts);
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_names_are_recognised() {
        let name = temp_name("0123456789abcdef").unwrap();
        assert!(is_temp_name(&name), "{name}");
        assert!(!is_temp_name("0123456789abcdef"));
        assert!(!is_temp_name(".x.tmp-123"));
    }

    #[test]
    fn read_bounded_refuses_larger_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"12345").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap().unwrap(), b"12345");
        let err = read_bounded(&path, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(read_bounded(&dir.path().join("none"), 4).unwrap().is_none());
        assert!(read_bounded(dir.path(), 4).is_err());
    }

    #[test]
    fn resolve_dir_keeps_absolute_and_dotdot_symlinks_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        // An absolute link to a directory that exists on the host: must stay in the root.
        symlink(outside.path(), root.join("etc/opkg")).unwrap();
        let keys = resolve_dir(root, "etc/opkg/keys", true).unwrap().unwrap();
        assert!(keys.starts_with(root), "{}", keys.display());
        assert!(keys.is_dir());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        // `..` chains cannot climb out either.
        symlink("../../../../../../tmp/x", root.join("var")).unwrap();
        let lib = resolve_dir(root, "var/lib", true).unwrap().unwrap();
        assert_eq!(lib, root.join("tmp/x/lib"));
        // OpenWrt's relative `var -> tmp` style works.
        fs::remove_file(root.join("var")).unwrap();
        symlink("tmp", root.join("var")).unwrap();
        assert_eq!(
            resolve_dir(root, "var/lib/prokit", true).unwrap().unwrap(),
            root.join("tmp/lib/prokit")
        );
    }

    #[test]
    fn resolve_dir_without_create_reports_missing_and_refuses_files_and_loops() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        assert!(resolve_dir(root, "a/b", false).unwrap().is_none());
        fs::write(root.join("file"), b"").unwrap();
        let err = resolve_dir(root, "file/x", true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
        symlink("loop", root.join("loop")).unwrap();
        let err = resolve_dir(root, "loop/x", true).unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err}");
    }
}
