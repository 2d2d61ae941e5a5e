//! Reading binary packages: `.ipk` in both containers and `.deb`, in one bounded pass.
//!
//! Containers:
//! - gzipped tar holding `./debian-binary`, `./data.tar.gz`, `./control.tar.gz` in any order
//!   (OpenWrt's `ipkg-build`; the only form opkg-lede installs);
//! - `ar` holding `debian-binary`, `control.tar[.gz|.xz|.zst|.bz2]` and
//!   `data.tar[.gz|.xz|.zst|.bz2]` in any order, member names possibly ending in `/`
//!   (opkg-utils' `opkg-build`, and every `.deb`).
//!
//! [`read_package`] walks the container once, and while it does so hashes every byte of the
//! file (SHA-256, and MD5 on request) and counts its size: the caller gets the control
//! paragraph, the control members (conffiles, maintainer scripts) and, through a visitor, a
//! streaming reader over the data tar — without a second read of the file. Every length read
//! from the file is checked against [`Limits`] before use, and every decompressor is bounded in
//! output and ratio, so a hostile file yields a [`PackageError`], never a panic, a hang or a
//! huge allocation.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::control::{ControlError, Paragraph};
use crate::limits::{Bounded, Counting, LimitError, Limits, read_to_end_bounded};
use crate::version::Version;

/// The outer container of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// An `ar` archive (`.deb`, opkg-utils `.ipk`).
    Ar,
    /// A gzipped tar (OpenWrt `.ipk`).
    TarGz,
}

/// Compression of a member, from its name's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    /// The compression of a member called `<stem><suffix>` (`control.tar.gz` → Gzip);
    /// `None` when the name is not `stem` with a known suffix.
    pub fn of_member(name: &str, stem: &str) -> Option<Compression> {
        match name.strip_prefix(stem)? {
            "" => Some(Compression::None),
            ".gz" => Some(Compression::Gzip),
            ".xz" => Some(Compression::Xz),
            ".zst" => Some(Compression::Zstd),
            ".bz2" => Some(Compression::Bzip2),
            _ => None,
        }
    }
}

/// What was wrong with a package. The `Display` form starts with the member concerned, e.g.
/// `control.tar.gz: control: missing Package field`.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("read error: {0}")]
    Io(#[source] io::Error),
    #[error("not a package (neither an ar archive nor a gzip stream)")]
    NotAPackage,
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("bad ar archive: {0}")]
    BadAr(String),
    #[error("{member}: {message}")]
    BadMember { member: String, message: String },
    #[error("no {0} member")]
    MissingMember(&'static str),
    #[error("two {0} members")]
    DuplicateMember(String),
    #[error("{what}: more than {limit} {unit}")]
    Limit {
        what: String,
        limit: u64,
        unit: &'static str,
    },
    #[error("{member}: decompression bomb: expands more than {ratio}:1")]
    Bomb { member: String, ratio: u64 },
    #[error("{member}: no control file")]
    NoControlFile { member: String },
    #[error("{member}: control: {source}")]
    Control {
        member: String,
        #[source]
        source: ControlError,
    },
    #[error("{member}: control: missing {field} field")]
    MissingField { member: String, field: &'static str },
    #[error("{member}: control: bad {field} {value:?}: {reason}")]
    BadField {
        member: String,
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("data: {0}")]
    Visitor(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl PackageError {
    /// Maps an I/O error met while reading `member`: limits and truncation get their own
    /// variants, everything else names the member.
    fn in_member(member: &str, e: io::Error) -> PackageError {
        if let Some(limit) = LimitError::from_io(&e) {
            return match limit {
                LimitError::TooLarge { limit } => PackageError::Limit {
                    what: format!("{member} (uncompressed)"),
                    limit,
                    unit: "bytes",
                },
                LimitError::Ratio { ratio } => PackageError::Bomb {
                    member: member.to_string(),
                    ratio,
                },
            };
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return PackageError::Truncated(format!("{member} ends early"));
        }
        PackageError::BadMember {
            member: member.to_string(),
            message: e.to_string(),
        }
    }
}

/// A package file that could not be read: the path and what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PackageFileError {
    pub path: PathBuf,
    #[source]
    pub source: PackageError,
}

/// Options for [`read_package`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Also compute the MD5 of the file (for old opkg's `MD5Sum`).
    pub md5: bool,
    /// The bounds to enforce.
    pub limits: Limits,
    /// The SHA-256 of the input, when the caller already took it over exactly the bytes it
    /// gives (a download that hashed them as it wrote them, read back through the same open
    /// file): reported as the package's without hashing them again. Every bound is still
    /// checked.
    pub sha256_known: Option<[u8; 32]>,
}

/// A file from the control tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMember {
    /// Its name, without a leading `./`.
    pub name: String,
    /// Its unix mode bits.
    pub mode: u32,
    /// Its contents.
    pub data: Vec<u8>,
}

/// What reading a package yields.
#[derive(Debug, Clone)]
pub struct Package {
    /// The outer container.
    pub container: Container,
    /// The name of the control member (`control.tar.gz`, ...).
    pub control_member: String,
    /// The name of the data member (`data.tar.xz`, ...).
    pub data_member: String,
    /// The control file, exactly as in the package.
    pub control_text: String,
    /// The control file, parsed.
    pub control: Paragraph,
    /// Every other file of the control tar (scripts, `conffiles`, `md5sums`, ...), by name.
    pub control_files: Vec<ControlMember>,
    /// The file's size in bytes.
    pub size: u64,
    /// The file's SHA-256.
    pub sha256: [u8; 32],
    /// The file's MD5, when asked for.
    pub md5: Option<[u8; 16]>,
}

/// The maintainer scripts opkg and dpkg run.
pub const MAINTAINER_SCRIPTS: [&str; 5] = ["preinst", "postinst", "prerm", "postrm", "config"];

impl Package {
    /// Opens and reads the package at `path` (no data visitor).
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<Package, PackageFileError> {
        read_package_file(path, opts, None)
    }

    /// `Package` field.
    pub fn name(&self) -> &str {
        self.control.get("Package").unwrap_or("")
    }

    /// `Version` field.
    pub fn version(&self) -> &str {
        self.control.get("Version").unwrap_or("")
    }

    /// `Architecture` field.
    pub fn architecture(&self) -> &str {
        self.control.get("Architecture").unwrap_or("")
    }

    /// A control-tar member by name.
    pub fn control_file(&self, name: &str) -> Option<&ControlMember> {
        self.control_files.iter().find(|m| m.name == name)
    }

    /// The conffiles listed in the `conffiles` member (one absolute path a line).
    pub fn conffiles(&self) -> Vec<String> {
        self.control_file("conffiles")
            .map(|m| {
                String::from_utf8_lossy(&m.data)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The names of the maintainer scripts present (`preinst`, `postinst`, ...).
    pub fn scripts(&self) -> Vec<&str> {
        MAINTAINER_SCRIPTS
            .into_iter()
            .filter(|s| self.control_file(s).is_some())
            .collect()
    }

    /// The SHA-256 as lower-case hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The MD5 as lower-case hex, when computed.
    pub fn md5_hex(&self) -> Option<String> {
        self.md5.map(hex::encode)
    }
}

/// The data tar, handed to a visitor while the package is read.
pub struct DataTar<'a> {
    archive: tar::Archive<Box<dyn Read + 'a>>,
    max_entries: u64,
    member: String,
}

/// The entry type a [`DataTar`] visitor sees.
pub type DataEntry<'e, 'a> = tar::Entry<'e, Box<dyn Read + 'a>>;

impl<'a> DataTar<'a> {
    /// The data member's name (`data.tar.gz`, ...).
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The data tar itself, decompressed, when it is at most `max` bytes; `None` (and the
    /// tar read only that far) when it is bigger. The member's bounds apply as they do to the
    /// entries. Afterwards the tar has no entries left.
    pub fn read_whole(&mut self, max: u64) -> Result<Option<Vec<u8>>, PackageError> {
        let empty: Box<dyn Read + 'a> = Box::new(io::empty());
        let archive = std::mem::replace(&mut self.archive, tar::Archive::new(empty));
        let mut out = Vec::new();
        archive
            .into_inner()
            .take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| PackageError::in_member(&self.member, e))?;
        if out.len() as u64 > max {
            return Ok(None);
        }
        // It is kept a while (read ahead of its install): not twice its size.
        out.shrink_to_fit();
        Ok(Some(out))
    }

    /// Calls `f` on each entry in order, bounded by the entry limit; returns the count.
    /// An error from `f` stops the walk and is returned as [`PackageError::Visitor`].
    pub fn for_each_entry<F, E>(&mut self, mut f: F) -> Result<u64, PackageError>
    where
        F: FnMut(&mut DataEntry<'_, 'a>) -> Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let member = self.member.clone();
        let entries = self
            .archive
            .entries()
            .map_err(|e| PackageError::in_member(&member, e))?;
        let mut n = 0u64;
        for entry in entries {
            let mut entry = entry.map_err(|e| PackageError::in_member(&member, e))?;
            n += 1;
            if n > self.max_entries {
                return Err(PackageError::Limit {
                    what: member,
                    limit: self.max_entries,
                    unit: "entries",
                });
            }
            f(&mut entry).map_err(|e| PackageError::Visitor(e.into()))?;
        }
        Ok(n)
    }
}

/// A package read whole, its data tar decompressed into memory ([`decode_package`]), so that
/// it can be walked later (and more than once) without reading or decompressing it again.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// What reading it yielded (control, hashes, size).
    pub package: Package,
    data_member: String,
    /// Shared, so that a reader can keep the bytes of its files without copying them
    /// ([`Decoded::data_tar`]).
    data_tar: Arc<Vec<u8>>,
    max_entries: u64,
}

impl Decoded {
    /// Calls `visit` with the data tar, read from memory, as [`read_package`] would have.
    pub fn visit_data(&self, visit: DataVisitor<'_>) -> Result<(), PackageError> {
        let tar: Box<dyn Read + '_> = Box::new(&self.data_tar[..]);
        visit(&mut DataTar {
            archive: tar::Archive::new(tar),
            max_entries: self.max_entries,
            member: self.data_member.clone(),
        })
    }

    /// The bytes of the decompressed data tar it holds.
    pub fn data_len(&self) -> usize {
        self.data_tar.len()
    }

    /// Its decompressed data tar, shared: a regular file's contents are the bytes at
    /// [`entry_data_range`] of the entry met walking it ([`Decoded::visit_data`]).
    pub fn data_tar(&self) -> &Arc<Vec<u8>> {
        &self.data_tar
    }
}

/// Where a regular file's contents lie in the data tar it was read from (from its start):
/// `None` for any other kind of entry. Only meaningful for a tar read from its first byte, as
/// [`Decoded::visit_data`] reads one; the range may still lie past the end of a truncated tar,
/// so index with `get`.
pub fn entry_data_range(e: &DataEntry<'_, '_>) -> Option<Range<usize>> {
    if !matches!(
        e.header().entry_type(),
        tar::EntryType::Regular | tar::EntryType::Continuous
    ) {
        return None;
    }
    let start = usize::try_from(e.raw_file_position()).ok()?;
    let len = usize::try_from(e.size()).ok()?;
    Some(start..start.checked_add(len)?)
}

/// Reads a package from `input` as [`read_package`] does (every bound checked, every byte
/// hashed), keeping its data tar decompressed in memory when that is at most `max_data` bytes;
/// `Ok(None)` when it is bigger.
pub fn decode_package<R: Read>(
    input: R,
    opts: &ReadOptions,
    max_data: u64,
) -> Result<Option<Decoded>, PackageError> {
    let mut data: Option<(String, Vec<u8>)> = None;
    let mut too_big = false;
    let read = {
        let mut visit = |tar: &mut DataTar<'_>| -> Result<(), PackageError> {
            match tar.read_whole(max_data)? {
                Some(bytes) => {
                    data = Some((tar.member().to_string(), bytes));
                    Ok(())
                }
                None => {
                    too_big = true;
                    Err(PackageError::Limit {
                        what: tar.member().to_string(),
                        limit: max_data,
                        unit: "bytes kept in memory",
                    })
                }
            }
        };
        read_package(input, opts, Some(&mut visit))
    };
    let package = match read {
        Ok(p) => p,
        Err(_) if too_big => return Ok(None),
        Err(e) => return Err(e),
    };
    let (data_member, data_tar) = data.unwrap_or_default();
    Ok(Some(Decoded {
        package,
        data_member,
        data_tar: Arc::new(data_tar),
        max_entries: opts.limits.max_data_entries,
    }))
}

/// A visitor of the data tar.
pub type DataVisitor<'v> = &'v mut dyn for<'a> FnMut(&mut DataTar<'a>) -> Result<(), PackageError>;

/// Reads the package at `path`: see [`read_package`]. Errors carry the path.
pub fn read_package_file(
    path: &Path,
    opts: &ReadOptions,
    data: Option<DataVisitor<'_>>,
) -> Result<Package, PackageFileError> {
    read_opened(path, File::open(path), opts, data)
}

/// [`read_package_file`] of a file in a directory that someone else may write (a client's
/// download cache inside the root it manages): a regular file only, never read through a final
/// symlink, and a FIFO is refused without blocking ([`safe_fs::open_bounded`]).
pub fn read_package_file_nofollow(
    path: &Path,
    opts: &ReadOptions,
    data: Option<DataVisitor<'_>>,
) -> Result<Package, PackageFileError> {
    // The error names the path already: only its reason goes under the path here.
    let file =
        safe_fs::open_bounded_existing(path, u64::MAX).map_err(safe_fs::FsError::into_io_error);
    read_opened(path, file, opts, data)
}

/// [`read_package`] of `file`, as opening `path` gave it: errors carry the path.
fn read_opened(
    path: &Path,
    file: io::Result<impl Read>,
    opts: &ReadOptions,
    data: Option<DataVisitor<'_>>,
) -> Result<Package, PackageFileError> {
    let wrap = |source| PackageFileError {
        path: path.to_path_buf(),
        source,
    };
    let file = file.map_err(|e| wrap(PackageError::Io(e)))?;
    read_package(BufReader::with_capacity(128 * 1024, file), opts, data).map_err(wrap)
}

/// Reads a package from `input` in one pass, hashing every byte.
///
/// When `data` is given it is called with the data tar as soon as the data member is reached
/// (which may be before the control member: OpenWrt puts data first); when absent, the data
/// member is hashed but not decompressed.
pub fn read_package<R: Read>(
    input: R,
    opts: &ReadOptions,
    data: Option<DataVisitor<'_>>,
) -> Result<Package, PackageError> {
    let mut hashing = Hashing::new(input, opts.md5, opts.limits.max_package_size);
    if let Some(known) = opts.sha256_known {
        hashing.sha256 = None;
        hashing.known = Some(known);
    }
    let mut magic = [0u8; 8];
    let got = read_full(&mut hashing, &mut magic).map_err(PackageError::Io)?;
    let parts = if got == 8 && &magic == b"!<arch>\n" {
        let mut parts = Parts::new(Container::Ar);
        read_ar(&mut hashing, opts, &mut parts, data)?;
        parts
    } else if got >= 2 && magic[..2] == [0x1f, 0x8b] {
        let mut parts = Parts::new(Container::TarGz);
        let prefix = io::Cursor::new(magic[..got].to_vec());
        read_targz(prefix.chain(&mut hashing), opts, &mut parts, data)?;
        parts
    } else if got < 8 {
        return Err(PackageError::Truncated(format!(
            "{got} bytes is too short for a package"
        )));
    } else {
        return Err(PackageError::NotAPackage);
    };
    // Hash whatever follows the archive proper (padding, trailing bytes).
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| hashing_error(e, &opts.limits))?;
    let (size, sha256, md5) = hashing.finish();
    parts.finish(size, sha256, md5)
}

fn hashing_error(e: io::Error, limits: &Limits) -> PackageError {
    match LimitError::from_io(&e) {
        Some(_) => PackageError::Limit {
            what: "package file".into(),
            limit: limits.max_package_size,
            unit: "bytes",
        },
        None => PackageError::Io(e),
    }
}

/// Reads until `buf` is full or the input ends; returns the count read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The pieces collected while walking a container.
struct Parts {
    container: Container,
    members: u64,
    debian_binary: bool,
    control: Option<(String, Vec<ControlMember>)>,
    data_member: Option<String>,
}

impl Parts {
    fn new(container: Container) -> Parts {
        Parts {
            container,
            members: 0,
            debian_binary: false,
            control: None,
            data_member: None,
        }
    }

    fn count_member(&mut self, limits: &Limits) -> Result<(), PackageError> {
        self.members += 1;
        if self.members > limits.max_members {
            return Err(PackageError::Limit {
                what: "package".into(),
                limit: limits.max_members,
                unit: "members",
            });
        }
        Ok(())
    }

    /// Handles one member of the outer container.
    fn member<R: Read>(
        &mut self,
        name: &str,
        size: u64,
        mut body: R,
        opts: &ReadOptions,
        data: &mut Option<DataVisitor<'_>>,
    ) -> Result<(), PackageError> {
        let limits = &opts.limits;
        if name == "debian-binary" {
            if self.debian_binary {
                return Err(PackageError::DuplicateMember(name.into()));
            }
            self.debian_binary = true;
            let text =
                read_to_end_bounded(&mut body, 64).map_err(|e| PackageError::in_member(name, e))?;
            if !text.starts_with(b"2.") {
                return Err(PackageError::BadMember {
                    member: name.into(),
                    message: format!(
                        "unsupported format version {:?} (expected 2.x)",
                        String::from_utf8_lossy(&text).trim()
                    ),
                });
            }
        } else if let Some(comp) = Compression::of_member(name, "control.tar") {
            if self.control.is_some() {
                return Err(PackageError::DuplicateMember(name.into()));
            }
            if size > limits.max_control_member {
                return Err(PackageError::Limit {
                    what: name.into(),
                    limit: limits.max_control_member,
                    unit: "bytes",
                });
            }
            let files = read_control_tar(name, comp, body, limits)?;
            self.control = Some((name.to_string(), files));
        } else if let Some(comp) = Compression::of_member(name, "data.tar") {
            if self.data_member.is_some() {
                return Err(PackageError::DuplicateMember(name.into()));
            }
            self.data_member = Some(name.to_string());
            if let Some(visit) = data.as_mut() {
                let (counting, count) = Counting::new(body);
                let dec =
                    decompressor(comp, counting).map_err(|e| PackageError::in_member(name, e))?;
                let bounded: Box<dyn Read + '_> =
                    Box::new(Bounded::new(dec, limits.max_data_tar).with_ratio(
                        count,
                        limits.max_ratio,
                        limits.ratio_grace,
                    ));
                let mut tar = DataTar {
                    archive: tar::Archive::new(bounded),
                    max_entries: limits.max_data_entries,
                    member: name.to_string(),
                };
                visit(&mut tar)?;
            }
        }
        // Anything else (dpkg's `_`-prefixed members, signatures) is hashed and skipped.
        Ok(())
    }

    fn finish(
        self,
        size: u64,
        sha256: [u8; 32],
        md5: Option<[u8; 16]>,
    ) -> Result<Package, PackageError> {
        let (control_member, mut files) = self
            .control
            .ok_or(PackageError::MissingMember("control.tar"))?;
        let data_member = self
            .data_member
            .ok_or(PackageError::MissingMember("data.tar"))?;
        let at = files
            .iter()
            .position(|f| f.name == "control")
            .ok_or_else(|| PackageError::NoControlFile {
                member: control_member.clone(),
            })?;
        let control_file = files.remove(at);
        let control_text =
            String::from_utf8(control_file.data).map_err(|e| PackageError::Control {
                member: control_member.clone(),
                source: ControlError {
                    line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count(),
                    kind: crate::control::ControlErrorKind::NotUtf8,
                },
            })?;
        let control = Paragraph::parse(&control_text).map_err(|source| PackageError::Control {
            member: control_member.clone(),
            source,
        })?;
        check_control(&control, &control_member)?;
        Ok(Package {
            container: self.container,
            control_member,
            data_member,
            control_text,
            control,
            control_files: files,
            size,
            sha256,
            md5,
        })
    }
}

/// True for a name opkg and dpkg accept as a package name (opkg allows upper case).
pub fn is_valid_package_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
}

fn check_control(control: &Paragraph, member: &str) -> Result<(), PackageError> {
    for field in ["Package", "Version", "Architecture"] {
        match control.get(field) {
            Some(v) if !v.is_empty() => {}
            _ => {
                return Err(PackageError::MissingField {
                    member: member.into(),
                    field,
                });
            }
        }
    }
    let bad = |field, value: &str, reason: String| PackageError::BadField {
        member: member.into(),
        field,
        value: value.to_string(),
        reason,
    };
    let name = control.get("Package").unwrap_or("");
    if !is_valid_package_name(name) {
        return Err(bad(
            "Package",
            name,
            "must start with a letter or digit and hold only letters, digits and + - . _".into(),
        ));
    }
    let version = control.get("Version").unwrap_or("");
    if let Err(e) = Version::parse(version) {
        return Err(bad("Version", version, e.kind.to_string()));
    }
    let arch = control.get("Architecture").unwrap_or("");
    if arch.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad("Architecture", arch, "must be one word".into()));
    }
    Ok(())
}

/// A decompressing reader for `comp` over `r`.
fn decompressor<'a, R: Read + 'a>(comp: Compression, r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match comp {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                256 << 20,
                liblzma::stream::CONCATENATED,
            )
            .map_err(io::Error::other)?;
            Box::new(liblzma::read::XzDecoder::new_stream(r, stream))
        }
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(r)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
        ),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
    })
}

/// Reads the control tar: every regular file at its top level, bounded.
fn read_control_tar<R: Read>(
    member: &str,
    comp: Compression,
    body: R,
    limits: &Limits,
) -> Result<Vec<ControlMember>, PackageError> {
    let err = |e| PackageError::in_member(member, e);
    let (counting, count) = Counting::new(body);
    let dec = decompressor(comp, counting).map_err(err)?;
    let bounded = Bounded::new(dec, limits.max_control_tar).with_ratio(
        count,
        limits.max_ratio,
        limits.ratio_grace,
    );
    let mut archive = tar::Archive::new(bounded);
    let mut files: Vec<ControlMember> = Vec::new();
    let mut n = 0u64;
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        n += 1;
        if n > limits.max_control_entries {
            return Err(PackageError::Limit {
                what: member.into(),
                limit: limits.max_control_entries,
                unit: "entries",
            });
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let path = String::from_utf8_lossy(&raw);
        let name = path.strip_prefix("./").unwrap_or(&path);
        if name.is_empty() || name.contains('/') {
            continue;
        }
        if files.iter().any(|f| f.name == name) {
            return Err(PackageError::DuplicateMember(format!("{member}: {name}")));
        }
        let declared = entry.header().size().map_err(err)?;
        if declared > limits.max_control_file {
            return Err(PackageError::Limit {
                what: format!("{member}: {name}"),
                limit: limits.max_control_file,
                unit: "bytes",
            });
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let data = read_to_end_bounded(&mut entry, limits.max_control_file).map_err(err)?;
        files.push(ControlMember {
            name: name.to_string(),
            mode,
            data,
        });
    }
    Ok(files)
}

/// Walks an OpenWrt gzipped-tar container.
fn read_targz<R: Read>(
    input: R,
    opts: &ReadOptions,
    parts: &mut Parts,
    mut data: Option<DataVisitor<'_>>,
) -> Result<(), PackageError> {
    const OUTER: &str = "outer tar.gz";
    let limits = &opts.limits;
    let (counting, count) = Counting::new(input);
    let dec = flate2::read::GzDecoder::new(counting);
    // The outer stream wraps compressed members, so the ratio stays near 1:1 in real files.
    let mut bounded = Bounded::new(dec, limits.max_package_size.saturating_mul(2)).with_ratio(
        count,
        limits.max_ratio,
        limits.ratio_grace,
    );
    {
        let mut archive = tar::Archive::new(&mut bounded);
        for entry in archive
            .entries()
            .map_err(|e| PackageError::in_member(OUTER, e))?
        {
            let mut entry = entry.map_err(|e| PackageError::in_member(OUTER, e))?;
            parts.count_member(limits)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let raw = entry.path_bytes().into_owned();
            let path = String::from_utf8_lossy(&raw);
            let name = path.strip_prefix("./").unwrap_or(&path).to_string();
            let size = entry
                .header()
                .size()
                .map_err(|e| PackageError::in_member(OUTER, e))?;
            parts.member(&name, size, &mut entry, opts, &mut data)?;
        }
    }
    // Inflate the rest of the stream (tar padding) so the whole file is hashed and checked.
    io::copy(&mut bounded, &mut io::sink()).map_err(|e| PackageError::in_member(OUTER, e))?;
    Ok(())
}

/// Walks an `ar` container: 60-byte headers, each checked before use.
fn read_ar<R: Read>(
    input: &mut R,
    opts: &ReadOptions,
    parts: &mut Parts,
    mut data: Option<DataVisitor<'_>>,
) -> Result<(), PackageError> {
    let limits = &opts.limits;
    let mut offset = 8u64;
    loop {
        let mut header = [0u8; 60];
        let got = read_full(input, &mut header).map_err(PackageError::Io)?;
        if got == 0 {
            return Ok(());
        }
        if got < 60 {
            // A lone newline may pad the archive's end.
            if got == 1 && header[0] == b'\n' {
                return Ok(());
            }
            return Err(PackageError::Truncated(format!(
                "ar header at offset {offset} has {got} of 60 bytes"
            )));
        }
        if &header[58..60] != b"`\n" {
            return Err(PackageError::BadAr(format!(
                "bad header magic at offset {offset}"
            )));
        }
        let size = parse_ar_size(&header[48..58])
            .ok_or_else(|| PackageError::BadAr(format!("bad member size at offset {offset}")))?;
        if size > limits.max_package_size {
            return Err(PackageError::Limit {
                what: format!("ar member at offset {offset}"),
                limit: limits.max_package_size,
                unit: "bytes",
            });
        }
        let raw_name = std::str::from_utf8(&header[..16])
            .map_err(|_| {
                PackageError::BadAr(format!("member name at offset {offset} is not text"))
            })?
            .trim_end_matches(' ');
        let mut body = input.take(size);
        let mut name = raw_name.to_string();
        if let Some(len) = raw_name.strip_prefix("#1/") {
            // BSD long name: stored at the start of the body.
            let len: u64 = len
                .parse()
                .ok()
                .filter(|&l| l <= 256 && l <= size)
                .ok_or_else(|| PackageError::BadAr(format!("bad long name at offset {offset}")))?;
            let bytes =
                read_to_end_bounded(body.by_ref().take(len), len).map_err(PackageError::Io)?;
            if (bytes.len() as u64) < len {
                return Err(PackageError::Truncated(format!(
                    "ar member name at offset {offset}"
                )));
            }
            name = String::from_utf8_lossy(&bytes)
                .trim_end_matches('\0')
                .to_string();
        } else if name != "/"
            && name != "//"
            && let Some(stripped) = name.strip_suffix('/')
        {
            name = stripped.to_string();
        }
        if name != "/" && name != "//" {
            parts.count_member(limits)?;
            parts.member(&name, size, &mut body, opts, &mut data)?;
        }
        // Skip what the member handler left unread; it must all be there.
        let left = body.limit();
        let skipped = io::copy(&mut body, &mut io::sink()).map_err(PackageError::Io)?;
        if skipped < left {
            return Err(PackageError::Truncated(format!(
                "ar member {name:?} declares {size} bytes, the file ends {} bytes short",
                left - skipped
            )));
        }
        offset += 60 + size;
        if size % 2 == 1 {
            let mut pad = [0u8; 1];
            if read_full(input, &mut pad).map_err(PackageError::Io)? == 0 {
                return Ok(());
            }
            offset += 1;
        }
    }
}

fn parse_ar_size(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?.trim_end_matches(' ');
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A reader that hashes and counts everything read through it, and caps the total.
struct Hashing<R> {
    inner: R,
    /// `None` when the digest is known ([`ReadOptions::sha256_known`]).
    sha256: Option<Sha256>,
    known: Option<[u8; 32]>,
    md5: Option<Md5>,
    size: u64,
    max: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R, md5: bool, max: u64) -> Self {
        Hashing {
            inner,
            sha256: Some(Sha256::new()),
            known: None,
            md5: md5.then(Md5::new),
            size: 0,
            max,
        }
    }

    fn finish(self) -> (u64, [u8; 32], Option<[u8; 16]>) {
        let sha256 = match (self.sha256, self.known) {
            (Some(h), _) => h.finalize().into(),
            (None, known) => known.unwrap_or_default(),
        };
        (self.size, sha256, self.md5.map(|m| m.finalize().into()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.size += n as u64;
        if self.size > self.max {
            return Err(LimitError::TooLarge { limit: self.max }.into_io());
        }
        if let Some(h) = &mut self.sha256 {
            h.update(&buf[..n]);
        }
        if let Some(m) = &mut self.md5 {
            m.update(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
