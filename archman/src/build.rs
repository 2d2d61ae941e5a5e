//! `archman build`: the `ipkg-build` equivalent. `PKG_DIR/CONTROL/control` (plus maintainer
//! scripts, `conffiles`) and the data tree under `PKG_DIR` become a reproducible `.ipk` named
//! `<Package>_<Version>_<Architecture>.ipk`: entries sorted, uid/gid 0, one mtime
//! (`SOURCE_DATE_EPOCH`), gzip without name or time.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use feeds::build::{DataEntry, EntryKind, PackageBuilder, Source};
use feeds::package::{Container, Package, ReadOptions};
use safe_fs::{FsError, TempFile, WriteOptions};

/// Why a package could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Builds the package in `pkg_dir` into `out_dir`; returns the path written.
pub fn build(
    pkg_dir: &Path,
    out_dir: &Path,
    container: Container,
    mtime: u64,
) -> Result<PathBuf, BuildError> {
    let control_dir = pkg_dir.join("CONTROL");
    let control_path = control_dir.join("control");
    let control = fs::read(&control_path).map_err(io_err(&control_path))?;
    let mut b = PackageBuilder::new(control)
        .mtime(mtime)
        .container(container);
    let mut names: Vec<_> = fs::read_dir(&control_dir)
        .map_err(io_err(&control_dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(&control_dir))?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "control" {
            continue;
        }
        let path = e.path();
        if !path.is_file() {
            return Err(BuildError::Invalid {
                path,
                message: "CONTROL may only hold regular files".into(),
            });
        }
        let data = fs::read(&path).map_err(io_err(&path))?;
        // Maintainer scripts must run; ipkg-build makes them executable.
        let mode = if feeds::package::MAINTAINER_SCRIPTS.contains(&name.as_str()) {
            0o755
        } else {
            0o644
        };
        b = b.control_file(&name, mode, data);
    }
    for entry in walkdir::WalkDir::new(pkg_dir)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
    {
        let entry = entry.map_err(|e| BuildError::Invalid {
            path: e.path().unwrap_or(pkg_dir).to_path_buf(),
            message: e.to_string(),
        })?;
        let rel = entry
            .path()
            .strip_prefix(pkg_dir)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        if rel == "CONTROL" || rel.starts_with("CONTROL/") {
            continue;
        }
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(io_err(entry.path()))?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path()).map_err(io_err(entry.path()))?;
            EntryKind::Symlink(target.to_string_lossy().into_owned())
        } else if ft.is_file() {
            EntryKind::File(Source::Path(entry.path().to_path_buf()))
        } else {
            return Err(BuildError::Invalid {
                path: entry.path().to_path_buf(),
                message: "device nodes, fifos and sockets cannot go into a package".into(),
            });
        };
        b = b.entry(DataEntry {
            path: rel,
            mode,
            kind,
        });
    }
    fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    // A hidden temporary file beside the output (docs/crash-safety.md §7), removed if
    // anything below fails.
    let mut tmp = TempFile::new_in(out_dir, "archman-build.ipk", WriteOptions::default())?;
    let mut w = io::BufWriter::new(tmp.file_mut());
    let written = b.write(&mut w).and_then(|()| w.flush());
    drop(w);
    written.map_err(io_err(tmp.path()))?;
    // Read it back: this validates the control file (required fields, names) exactly as
    // `archman index` will, and gives the name.
    let pkg =
        Package::open(tmp.path(), &ReadOptions::default()).map_err(|e| BuildError::Invalid {
            path: control_path,
            message: e.source.to_string(),
        })?;
    let version = pkg.version();
    let version = version.split_once(':').map_or(version, |(_, v)| v);
    let name = format!("{}_{}_{}.ipk", pkg.name(), version, pkg.architecture());
    // Fsynced, renamed onto its name, the directory fsynced.
    tmp.persist(&name)?;
    Ok(out_dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn package_dir(control: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("CONTROL")).unwrap();
        fs::write(dir.path().join("CONTROL/control"), control).unwrap();
        fs::create_dir_all(dir.path().join("usr/share/t")).unwrap();
        fs::write(dir.path().join("usr/share/t/file"), b"data\n").unwrap();
        dir
    }

    const CONTROL: &str = "Package: t\nVersion: 1:1.0-r1\nArchitecture: all\n\
        Maintainer: M <m@example.org>\nDescription: A test.\n";

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn planted_symlinks_in_the_output_directory_are_not_written_through() {
        let pkg = package_dir(CONTROL);
        let out = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let sentinel = outside.path().join("sentinel");
        fs::write(&sentinel, b"outside").unwrap();
        // The fixed temporary name earlier versions used, and the output's own name.
        symlink(&sentinel, out.path().join(".archman-build.tmp.ipk")).unwrap();
        symlink(&sentinel, out.path().join("t_1.0-r1_all.ipk")).unwrap();
        let path = build(pkg.path(), out.path(), Container::TarGz, 0).unwrap();
        assert_eq!(path, out.path().join("t_1.0-r1_all.ipk"));
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(fs::read(&sentinel).unwrap(), b"outside");
        let pkg = Package::open(&path, &ReadOptions::default()).unwrap();
        assert_eq!(pkg.name(), "t");
        assert_eq!(
            names(out.path()),
            [".archman-build.tmp.ipk", "t_1.0-r1_all.ipk"]
        );
    }

    #[test]
    fn a_refused_control_file_leaves_no_temporary_file() {
        let pkg = package_dir("Version: 1.0\nArchitecture: all\n");
        let out = tempfile::tempdir().unwrap();
        let err = build(pkg.path(), out.path(), Container::TarGz, 0).unwrap_err();
        assert!(matches!(err, BuildError::Invalid { .. }), "{err}");
        assert!(names(out.path()).is_empty(), "{:?}", names(out.path()));
    }
}
