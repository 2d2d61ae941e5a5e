//! A reproducible tarball of a root filesystem (`prokit bootstrap --tar`): entries in byte
//! order of their paths, directories before their contents, owner 0:0 (`root`), one mtime
//! for every entry (`SOURCE_DATE_EPOCH`), permission bits as on disk, no access times, no
//! user names from the build host. The same root and mtime give the same bytes.
//!
//! The file is written to a temporary name beside `out` and renamed into place.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the tarball could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot put a {kind} into the root tarball", path.display())]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("{}: {source}", root.display())]
    Walk {
        root: PathBuf,
        #[source]
        source: walkdir::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> TarError + '_ {
    move |source| TarError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    // Names are fixed strings, so they never fail.
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h
}

/// Writes every file under `root` (except paths for which `skip` is true, relative to the
/// root) into a tar at `out`, reproducibly. Returns the number of entries.
pub fn write_tar(
    root: &Path,
    out: &Path,
    mtime: u64,
    skip: &dyn Fn(&Path) -> bool,
) -> Result<u64, TarError> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty());
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rootfs.tar".into());
    let tmp = dir
        .unwrap_or(Path::new("."))
        .join(format!(".{name}.prokit-tmp"));
    let result = write_to(root, &tmp, mtime, skip);
    match result {
        Ok(n) => {
            fs::rename(&tmp, out).map_err(io_at(out))?;
            Ok(n)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_to(
    root: &Path,
    tmp: &Path,
    mtime: u64,
    skip: &dyn Fn(&Path) -> bool,
) -> Result<u64, TarError> {
    let file = File::create(tmp).map_err(io_at(tmp))?;
    let mut b = tar::Builder::new(BufWriter::new(file));
    b.mode(tar::HeaderMode::Complete);
    let mut n = 0u64;
    // Byte order of file names gives byte order of paths, and a directory comes right
    // before its contents.
    let walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| {
            a.file_name()
                .as_encoded_bytes()
                .cmp(b.file_name().as_encoded_bytes())
        });
    for entry in walk {
        let entry = entry.map_err(|source| TarError::Walk {
            root: root.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(path);
        if skip(rel) {
            continue;
        }
        let meta = entry.metadata().map_err(|source| TarError::Walk {
            root: root.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let rel_name = rel.display().to_string();
        if ft.is_dir() {
            let mut h = header(tar::EntryType::Directory, mode, 0, mtime);
            b.append_data(&mut h, format!("{rel_name}/"), io::empty())
                .map_err(io_at(path))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_at(path))?;
            let mut h = header(tar::EntryType::Symlink, 0o777, 0, mtime);
            b.append_link(&mut h, &rel_name, &target)
                .map_err(io_at(path))?;
        } else if ft.is_file() {
            // Still a regular file, not a symlink swapped in since the walk saw it, and no
            // longer than the header says.
            let f = safe_fs::open_bounded_existing(path, meta.size())
                .map_err(|e| io_at(path)(e.into_io_error()))?;
            let mut h = header(tar::EntryType::Regular, mode, meta.size(), mtime);
            b.append_data(&mut h, &rel_name, f).map_err(io_at(path))?;
        } else {
            return Err(TarError::Unsupported {
                path: path.to_path_buf(),
                kind: "special file",
            });
        }
        n += 1;
    }
    let mut w = b.into_inner().map_err(io_at(tmp))?;
    w.flush().map_err(io_at(tmp))?;
    w.into_inner()
        .map_err(|e| io_at(tmp)(e.into_error()))?
        .sync_all()
        .map_err(io_at(tmp))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn make_root(root: &Path) {
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("etc/b.conf"), b"b\n").unwrap();
        fs::write(root.join("etc/a.conf"), b"a\n").unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        let long = "d".repeat(120);
        fs::create_dir_all(root.join("usr/share").join(&long)).unwrap();
        fs::write(root.join("usr/share").join(&long).join("f"), b"x").unwrap();
    }

    #[test]
    fn same_root_same_bytes_sorted_and_owned_by_root() {
        let t = tempfile::tempdir().unwrap();
        let (r1, r2) = (t.path().join("r1"), t.path().join("r2"));
        make_root(&r1);
        make_root(&r2);
        // Different mtimes and creation order on disk do not matter.
        fs::write(r2.join("etc/a.conf"), b"a\n").unwrap();
        let (o1, o2) = (t.path().join("1.tar"), t.path().join("2.tar"));
        let none = |_: &Path| false;
        write_tar(&r1, &o1, 1_700_000_000, &none).unwrap();
        write_tar(&r2, &o2, 1_700_000_000, &none).unwrap();
        assert_eq!(fs::read(&o1).unwrap(), fs::read(&o2).unwrap());

        let mut a = tar::Archive::new(File::open(&o1).unwrap());
        let mut names = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            names.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(names.contains(&"usr/bin/tool".to_string()), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("/f") && n.len() > 100));
        // Another mtime gives another tarball.
        write_tar(&r1, &o2, 1, &none).unwrap();
        assert_ne!(fs::read(&o1).unwrap(), fs::read(&o2).unwrap());
    }

    #[test]
    fn skipped_paths_are_left_out() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("r");
        make_root(&r);
        let out = t.path().join("o.tar");
        let skip = |p: &Path| p.starts_with("etc");
        write_tar(&r, &out, 0, &skip).unwrap();
        let mut a = tar::Archive::new(File::open(&out).unwrap());
        for e in a.entries().unwrap() {
            let p = String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned();
            assert!(!p.starts_with("etc"), "{p}");
        }
    }
}
