//! Writing packages reproducibly: the `ipkg-build` equivalent.
//!
//! A [`PackageBuilder`] holds a control file, control members (scripts, `conffiles`) and data
//! entries, and writes an `.ipk` in either container: the gzipped tar that opkg-lede installs
//! (the default, as OpenWrt's `ipkg-build` writes it) or an `ar` archive (opkg-utils style).
//! Output depends only on the inputs: entries sorted by name, uid/gid 0, one fixed mtime
//! (`SOURCE_DATE_EPOCH`), gzip without name or time.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use flate2::{Compression as Level, GzBuilder};

use crate::package::Container;

/// Where a data file's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// A file on disk, streamed when the package is written.
    Path(PathBuf),
}

/// What a data entry is.
#[derive(Debug, Clone)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file and its contents.
    File(Source),
    /// A symbolic link and its target.
    Symlink(String),
}

/// One entry of the data tar. `path` is relative (`usr/bin/foo`); it is stored as `./usr/bin/foo`.
#[derive(Debug, Clone)]
pub struct DataEntry {
    pub path: String,
    pub mode: u32,
    pub kind: EntryKind,
}

/// Builds a package from parts.
#[derive(Debug, Clone)]
pub struct PackageBuilder {
    control: Vec<u8>,
    control_files: Vec<(String, u32, Vec<u8>)>,
    data: Vec<DataEntry>,
    mtime: u64,
    container: Container,
}

impl PackageBuilder {
    /// A package with this `control` file text (written verbatim).
    pub fn new(control: impl Into<Vec<u8>>) -> Self {
        PackageBuilder {
            control: control.into(),
            control_files: Vec::new(),
            data: Vec::new(),
            mtime: 0,
            container: Container::TarGz,
        }
    }

    /// The container to write (default: gzipped tar).
    pub fn container(mut self, c: Container) -> Self {
        self.container = c;
        self
    }

    /// The mtime of every entry (default 0; pass `SOURCE_DATE_EPOCH`).
    pub fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }

    /// Adds a control member (`postinst`, `conffiles`, ...).
    pub fn control_file(mut self, name: &str, mode: u32, data: impl Into<Vec<u8>>) -> Self {
        self.control_files
            .push((name.to_string(), mode, data.into()));
        self
    }

    /// Adds a data entry.
    pub fn entry(mut self, entry: DataEntry) -> Self {
        self.data.push(entry);
        self
    }

    /// Adds a regular file with in-memory contents.
    pub fn file(self, path: &str, mode: u32, data: impl Into<Vec<u8>>) -> Self {
        self.entry(DataEntry {
            path: path.to_string(),
            mode,
            kind: EntryKind::File(Source::Bytes(data.into())),
        })
    }

    /// Adds a directory.
    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.entry(DataEntry {
            path: path.to_string(),
            mode,
            kind: EntryKind::Dir,
        })
    }

    /// Adds a symbolic link.
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.entry(DataEntry {
            path: path.to_string(),
            mode: 0o777,
            kind: EntryKind::Symlink(target.to_string()),
        })
    }

    /// Writes the package into memory.
    pub fn build(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write(&mut out)?;
        Ok(out)
    }

    /// Writes the package to `out`.
    pub fn write<W: Write>(&self, out: W) -> io::Result<()> {
        let data = self.data_tar_gz()?;
        let control = self.control_tar_gz()?;
        let members: [(&str, &[u8]); 3] = [
            ("debian-binary", b"2.0\n"),
            ("data.tar.gz", &data),
            ("control.tar.gz", &control),
        ];
        match self.container {
            Container::TarGz => {
                let gz = gzip_writer(out);
                let mut tar = tar::Builder::new(gz);
                tar.mode(tar::HeaderMode::Deterministic);
                for (name, body) in members {
                    let mut h = self.header(tar::EntryType::Regular, 0o644, body.len() as u64);
                    append(&mut tar, &mut h, &format!("./{name}"), None, body)?;
                }
                tar.into_inner()?.finish()?;
                Ok(())
            }
            Container::Ar => {
                // opkg-build's layout: GNU ar names ending in `/`, debian-binary first.
                let mut out = out;
                out.write_all(b"!<arch>\n")?;
                for (name, body) in [members[0], members[2], members[1]] {
                    writeln!(
                        out,
                        "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`",
                        format!("{name}/"),
                        self.mtime,
                        0,
                        0,
                        "100644",
                        body.len()
                    )?;
                    out.write_all(body)?;
                    if body.len() % 2 == 1 {
                        out.write_all(b"\n")?;
                    }
                }
                Ok(())
            }
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn control_tar_gz(&self) -> io::Result<Vec<u8>> {
        let mut files: Vec<(&str, u32, &[u8])> = vec![("control", 0o644, &self.control)];
        files.extend(
            self.control_files
                .iter()
                .map(|(n, m, d)| (n.as_str(), *m, d.as_slice())),
        );
        files.sort_by(|a, b| a.0.cmp(b.0));
        let mut tar = tar::Builder::new(gzip_writer(Vec::new()));
        let mut root = self.header(tar::EntryType::Directory, 0o755, 0);
        append(&mut tar, &mut root, "./", None, io::empty())?;
        for (name, mode, data) in files {
            let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
            append(&mut tar, &mut h, &format!("./{name}"), None, data)?;
        }
        tar.into_inner()?.finish()
    }

    fn data_tar_gz(&self) -> io::Result<Vec<u8>> {
        let mut entries: Vec<&DataEntry> = self.data.iter().collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut tar = tar::Builder::new(gzip_writer(Vec::new()));
        let mut root = self.header(tar::EntryType::Directory, 0o755, 0);
        append(&mut tar, &mut root, "./", None, io::empty())?;
        for e in entries {
            let path = format!("./{}", e.path.trim_start_matches('/'));
            match &e.kind {
                EntryKind::Dir => {
                    let mut h = self.header(tar::EntryType::Directory, e.mode, 0);
                    append(&mut tar, &mut h, &format!("{path}/"), None, io::empty())?;
                }
                EntryKind::Symlink(target) => {
                    let mut h = self.header(tar::EntryType::Symlink, e.mode, 0);
                    append(&mut tar, &mut h, &path, Some(target), io::empty())?;
                }
                EntryKind::File(Source::Bytes(data)) => {
                    let mut h = self.header(tar::EntryType::Regular, e.mode, data.len() as u64);
                    append(&mut tar, &mut h, &path, None, data.as_slice())?;
                }
                EntryKind::File(Source::Path(p)) => {
                    let file = File::open(p)?;
                    let len = file.metadata()?.len();
                    let mut h = self.header(tar::EntryType::Regular, e.mode, len);
                    // Take exactly the size recorded, even if the file grows meanwhile.
                    append(&mut tar, &mut h, &path, None, file.take(len))?;
                }
            }
        }
        tar.into_inner()?.finish()
    }
}

/// Appends an entry whose name is stored exactly as given (`./usr/bin/foo`, as GNU tar and
/// OpenWrt's `ipkg-build` store it; the tar crate's own path setters drop the `./`). Names and
/// link targets over 100 bytes get GNU long-name records.
fn append<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    header: &mut tar::Header,
    name: &str,
    link: Option<&str>,
    data: R,
) -> io::Result<()> {
    for (value, kind) in [(Some(name), b'L'), (link, b'K')] {
        let Some(value) = value else { continue };
        if value.len() > 100 {
            let mut long = tar::Header::new_gnu();
            long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            long.set_entry_type(tar::EntryType::new(kind));
            long.set_mode(0o644);
            long.set_mtime(0);
            long.set_size(value.len() as u64 + 1);
            long.set_cksum();
            let mut body = value.as_bytes().to_vec();
            body.push(0);
            tar.append(&long, body.as_slice())?;
        }
    }
    let old = header.as_old_mut();
    let n = name.len().min(100);
    old.name = [0; 100];
    old.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    if let Some(link) = link {
        let n = link.len().min(100);
        old.linkname = [0; 100];
        old.linkname[..n].copy_from_slice(&link.as_bytes()[..n]);
    }
    header.set_cksum();
    tar.append(header, data)
}

/// A gzip writer as `gzip -n -9` makes it: no name, mtime 0.
fn gzip_writer<W: Write>(w: W) -> flate2::write::GzEncoder<W> {
    GzBuilder::new().mtime(0).write(w, Level::best())
}
