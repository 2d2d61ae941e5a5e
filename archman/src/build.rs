//! `archman build`: the `ipkg-build` equivalent. `PKG_DIR/CONTROL/control` (plus maintainer
//! scripts, `conffiles`) and the data tree under `PKG_DIR` become a reproducible `.ipk` named
//! `<Package>_<Version>_<Architecture>.ipk`: entries sorted, uid/gid 0, one mtime
//! (`SOURCE_DATE_EPOCH`), gzip without name or time.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use feeds::build::{DataEntry, EntryKind, PackageBuilder, Source};
use feeds::package::{Container, Package, ReadOptions};

/// Why a package could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
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
    let tmp = out_dir.join(".archman-build.tmp.ipk");
    let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut w = io::BufWriter::new(file);
    b.write(&mut w).map_err(io_err(&tmp))?;
    let file = w.into_inner().map_err(|e| BuildError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(&tmp))?;
    // Read it back: this validates the control file (required fields, names) exactly as
    // `archman index` will, and gives the name.
    let pkg = match Package::open(&tmp, &ReadOptions::default()) {
        Ok(p) => p,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(BuildError::Invalid {
                path: control_path,
                message: e.source.to_string(),
            });
        }
    };
    let version = pkg.version();
    let version = version.split_once(':').map_or(version, |(_, v)| v);
    let name = format!("{}_{}_{}.ipk", pkg.name(), version, pkg.architecture());
    let out = out_dir.join(name);
    fs::rename(&tmp, &out).map_err(io_err(&tmp))?;
    Ok(out)
}
