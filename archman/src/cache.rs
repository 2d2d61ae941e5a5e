//! The index cache: what `archman index` learned about each package file, keyed by its path,
//! size, mtime and inode, so a re-run over an unchanged feed reads no package contents.
//!
//! The file is a small length-prefixed text format: a header naming the feed, then segments of
//! records, each ending in a CRC-32 of the segment. A re-index that learned little *appends* a
//! segment (the records of the packages it read, the paths that are gone) instead of rewriting
//! megabytes; later records override earlier ones, and the file is compacted into one segment
//! once the overridden records weigh as much as the live ones. A foreign cache (another feed,
//! another format version) or a damaged first segment is ignored — the caller warns and
//! re-reads the packages; a damaged later segment (an append cut short) is dropped with
//! everything after it. Dropping records is always safe: every entry is re-checked against the
//! file's size, mtime and inode before use, so a lost record only costs a re-read.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use feeds::package::Container;

const MAGIC: &str = "archman-cache 5";
/// Refuse to read a cache larger than this.
const MAX_CACHE: u64 = 1 << 30;

/// The file identity a cached entry is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub inode: u64,
}

impl std::fmt::Display for FileKey {
    /// The cache's text form: `size mtime mtime_nsec inode`, read back by
    /// [`FileKey::parse_fields`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.size, self.mtime, self.mtime_nsec, self.inode
        )
    }
}

impl FileKey {
    /// Reads the four fields written by `Display`; `None` if any is not a number.
    fn parse_fields([size, mtime, nsec, inode]: [&str; 4]) -> Option<FileKey> {
        Some(FileKey {
            size: size.parse().ok()?,
            mtime: mtime.parse().ok()?,
            mtime_nsec: nsec.parse().ok()?,
            inode: inode.parse().ok()?,
        })
    }

    /// The key of a file's metadata.
    pub fn of(meta: &fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            inode: meta.ino(),
        }
    }
}

/// What is remembered about one package file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: FileKey,
    pub sha256: String,
    pub md5: Option<String>,
    /// The package's outer container (`archman index --profile openwrt` warns about an `ar`
    /// `.ipk` on every run, cached or not).
    pub container: Container,
    /// The package's index stanza, as published (without the blank line after it).
    pub stanza: String,
}

/// A `Packages.sig` this program has already checked (or made): the signature file with
/// SHA-256 `sig_sha256` is a valid signature by key `fingerprint` over the `Packages` with
/// SHA-256 `packages_sha256`. Lets a republish keep the signature without hashing `Packages`
/// through SHA-512 again. Trusting it is safe: a forged record can only make archman publish a
/// bad signature, which every client (and `archman check`) refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSig {
    pub packages_sha256: String,
    pub sig_sha256: String,
    pub fingerprint: String,
}

/// A published index file as it was on disk right after a run that found the feed consistent
/// with exactly the cache's entries. While every package and every published file still has
/// the recorded identity, the next run knows the feed is up to date without building,
/// hashing or comparing the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub name: String,
    pub key: FileKey,
    /// SHA-256 of the file (recorded for the uncompressed index files only).
    pub sha256: Option<String>,
}

/// Cached entries by path relative to the feed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cache {
    pub entries: HashMap<String, Entry>,
    pub checked_sig: Option<CheckedSig>,
    /// The published files, valid only together with exactly these entries (a segment that
    /// changes entries without restating them clears them).
    pub published: Vec<Published>,
}

/// A cache as loaded from disk, with what decides between appending to it and rewriting it.
#[derive(Debug, Default)]
pub struct Loaded {
    pub cache: Cache,
    /// Length of the file as read (0 when there was none).
    pub file_len: u64,
    /// A damaged later segment was dropped: the file must be rewritten, not appended to.
    pub damaged_tail: bool,
}

impl Loaded {
    /// True when a segment of `extra` bytes may be appended to the file: it is intact and
    /// would not then hold more overridden bytes than `live` bytes of current records.
    pub fn appendable(&self, extra: usize, live: usize) -> bool {
        self.file_len > 0
            && !self.damaged_tail
            && self.file_len + extra as u64 <= 2 * live as u64 + 64 * 1024
    }
}

/// One change to write in a segment.
pub enum Record<'a> {
    /// The entry for a path (new or replacing an older one).
    Put(&'a str, &'a Entry),
    /// A path that is no longer in the feed.
    Gone(&'a str),
    /// The checked signature record (or its absence).
    Sig(Option<&'a CheckedSig>),
    /// One published file; the `Published` records of a segment replace all earlier ones.
    Published(&'a Published),
}

/// Bytes of a segment holding `records`, checksum line included.
pub fn segment<'a>(records: impl IntoIterator<Item = Record<'a>>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        match r {
            Record::Put(path, e) => {
                out.extend_from_slice(
                    format!(
                        "E {} {} {} {} {} {}\n",
                        path.len(),
                        e.key,
                        e.sha256,
                        e.md5.as_deref().unwrap_or("-"),
                        match e.container {
                            Container::Ar => "ar",
                            Container::TarGz => "tgz",
                        },
                        e.stanza.len()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(path.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(e.stanza.as_bytes());
                out.push(b'\n');
            }
            Record::Gone(path) => {
                out.extend_from_slice(format!("D {}\n{path}\n", path.len()).as_bytes());
            }
            Record::Sig(None) => out.extend_from_slice(b"S -\n"),
            Record::Published(p) => {
                out.extend_from_slice(
                    format!(
                        "P {} {} {}\n{}\n",
                        p.name.len(),
                        p.key,
                        p.sha256.as_deref().unwrap_or("-"),
                        p.name
                    )
                    .as_bytes(),
                );
            }
            Record::Sig(Some(s)) => out.extend_from_slice(
                format!(
                    "S {} {} {}\n",
                    s.packages_sha256, s.sig_sha256, s.fingerprint
                )
                .as_bytes(),
            ),
        }
    }
    let sum = crc32(&out);
    out.extend_from_slice(format!("END {sum:08x}\n").as_bytes());
    out
}

/// Appends a segment made by [`segment`] to the cache file at `path`, in one write. Not
/// synced: a segment cut short by a crash fails its checksum and is dropped on the next load.
pub fn append(path: &Path, seg: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(seg)
}

/// Why a cache file was not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not an archman cache for this feed ({reason}); ignoring it", path.display())]
    Foreign { path: PathBuf, reason: String },
    #[error("{}: corrupt cache ({reason}); ignoring it", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl Cache {
    /// Loads the cache at `path` written for feed `feed_id`. A missing file is an empty cache;
    /// anything unreadable, foreign or corrupt is an error the caller reports and ignores.
    pub fn load(path: &Path, feed_id: &str) -> Result<Loaded, CacheError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(source) => {
                return Err(CacheError::Io {
                    path: path.into(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| CacheError::Corrupt {
            path: path.into(),
            reason,
        };
        if meta.len() > MAX_CACHE {
            return Err(corrupt(format!("larger than {MAX_CACHE} bytes")));
        }
        let bytes = fs::read(path).map_err(|source| CacheError::Io {
            path: path.into(),
            source,
        })?;
        let (cache, damaged_tail) = parse(&bytes, feed_id).map_err(|e| match e {
            ParseError::Foreign(reason) => CacheError::Foreign {
                path: path.into(),
                reason,
            },
            ParseError::Corrupt(reason) => corrupt(reason),
        })?;
        Ok(Loaded {
            cache,
            file_len: bytes.len() as u64,
            damaged_tail,
        })
    }

    /// The bytes of the cache file for feed `feed_id` (entries in path order, so equal caches
    /// are equal files).
    pub fn to_bytes(&self, feed_id: &str) -> Vec<u8> {
        let mut out = format!("{MAGIC}\n{}\n{feed_id}\n", feed_id.len()).into_bytes();
        let mut paths: Vec<&String> = self.entries.keys().collect();
        paths.sort();
        let sig = self.checked_sig.iter().map(|s| Record::Sig(Some(s)));
        let puts = paths.into_iter().map(|p| Record::Put(p, &self.entries[p]));
        let published = self.published.iter().map(Record::Published);
        out.extend_from_slice(&segment(sig.chain(puts).chain(published)));
        out
    }
}

/// The checksum guarding the file against truncation and corruption (the cache is no trust
/// boundary: it lives in the feed, whose packages are trusted as they are anyway).
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

enum ParseError {
    Foreign(String),
    Corrupt(String),
}

/// A bounds-checked cursor over the cache bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn line(&mut self) -> Result<&'a str, ParseError> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| ParseError::Corrupt("truncated".into()))?;
        self.at += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| ParseError::Corrupt("not text".into()))
    }

    /// Exactly `len` bytes followed by a newline.
    fn exact(&mut self, len: usize) -> Result<&'a str, ParseError> {
        let rest = &self.bytes[self.at..];
        if rest.len() < len + 1 || rest[len] != b'\n' {
            return Err(ParseError::Corrupt("truncated record".into()));
        }
        self.at += len + 1;
        std::str::from_utf8(&rest[..len]).map_err(|_| ParseError::Corrupt("not text".into()))
    }
}

/// One parsed record, applied only once its segment's checksum holds.
enum Op<'a> {
    Put(&'a str, Entry),
    Gone(&'a str),
    Sig(Option<CheckedSig>),
    Published(Published),
}

/// Parses the records of one segment starting at the cursor, through its checksum line.
fn parse_segment<'a>(c: &mut Cursor<'a>) -> Result<Vec<Op<'a>>, ParseError> {
    let corrupt = |r: &str| ParseError::Corrupt(r.to_string());
    let hexok = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let start = c.at;
    let mut ops = Vec::new();
    loop {
        let line_start = c.at;
        let head = c.line()?;
        let f: Vec<&str> = head.split(' ').collect();
        let unum = |s: &str| s.parse::<u64>().map_err(|_| corrupt("bad number"));
        match f[..] {
            ["END", sum] => {
                if format!("{:08x}", crc32(&c.bytes[start..line_start])) != sum {
                    return Err(corrupt("checksum mismatch"));
                }
                return Ok(ops);
            }
            ["S", "-"] => ops.push(Op::Sig(None)),
            ["S", packages, sig, fp] => {
                if !hexok(packages, 64) || !hexok(sig, 64) || !hexok(fp, 16) {
                    return Err(corrupt("bad signature record"));
                }
                ops.push(Op::Sig(Some(CheckedSig {
                    packages_sha256: packages.to_string(),
                    sig_sha256: sig.to_string(),
                    fingerprint: fp.to_string(),
                })));
            }
            ["P", nlen, size, mtime, nsec, inode, sha] => {
                let nlen = unum(nlen)? as usize;
                if nlen > 255 || (sha != "-" && !hexok(sha, 64)) {
                    return Err(corrupt("bad published-file record"));
                }
                let key = FileKey::parse_fields([size, mtime, nsec, inode])
                    .ok_or_else(|| corrupt("bad number"))?;
                ops.push(Op::Published(Published {
                    name: c.exact(nlen)?.to_string(),
                    key,
                    sha256: (sha != "-").then(|| sha.to_string()),
                }));
            }
            ["D", plen] => {
                let plen = unum(plen)? as usize;
                if plen > 4096 {
                    return Err(corrupt("record length out of bounds"));
                }
                ops.push(Op::Gone(c.exact(plen)?));
            }
            [
                "E",
                plen,
                size,
                mtime,
                nsec,
                inode,
                sha,
                md5,
                container,
                clen,
            ] => {
                let plen = unum(plen)? as usize;
                let clen = unum(clen)? as usize;
                if plen > 4096 || clen > c.bytes.len() {
                    return Err(corrupt("record length out of bounds"));
                }
                let key = FileKey::parse_fields([size, mtime, nsec, inode])
                    .ok_or_else(|| corrupt("bad number"))?;
                if !hexok(sha, 64) || (md5 != "-" && !hexok(md5, 32)) {
                    return Err(corrupt("bad hash"));
                }
                let container = match container {
                    "ar" => Container::Ar,
                    "tgz" => Container::TarGz,
                    _ => return Err(corrupt("bad container")),
                };
                let path = c.exact(plen)?;
                let stanza = c.exact(clen)?.to_string();
                ops.push(Op::Put(
                    path,
                    Entry {
                        key,
                        sha256: sha.to_string(),
                        md5: (md5 != "-").then(|| md5.to_string()),
                        container,
                        stanza,
                    },
                ));
            }
            _ => return Err(corrupt("bad record header")),
        }
    }
}

/// The cache in `bytes`, and whether a damaged later segment was dropped.
fn parse(bytes: &[u8], feed_id: &str) -> Result<(Cache, bool), ParseError> {
    let corrupt = |r: &str| ParseError::Corrupt(r.to_string());
    let mut c = Cursor { bytes, at: 0 };
    if !bytes.starts_with(MAGIC.as_bytes()) || c.line()? != MAGIC {
        return Err(ParseError::Foreign("unknown format".into()));
    }
    let id_len: usize = c.line()?.parse().map_err(|_| corrupt("bad header"))?;
    if id_len > 4096 || c.exact(id_len)? != feed_id {
        return Err(ParseError::Foreign("written for another feed".into()));
    }
    let mut cache = Cache::default();
    let mut segments = 0;
    while c.at < bytes.len() {
        let ops = match parse_segment(&mut c) {
            Ok(ops) => ops,
            // The first segment is the cache; a later one is an append that may be cut short.
            Err(e) if segments == 0 => return Err(e),
            Err(_) => return Ok((cache, true)),
        };
        segments += 1;
        let changes_entries = ops.iter().any(|o| matches!(o, Op::Put(..) | Op::Gone(_)));
        let restates = ops.iter().any(|o| matches!(o, Op::Published(_)));
        if changes_entries || restates {
            cache.published.clear();
        }
        for op in ops {
            match op {
                Op::Put(path, e) => {
                    cache.entries.insert(path.to_string(), e);
                }
                Op::Gone(path) => {
                    cache.entries.remove(path);
                }
                Op::Sig(s) => cache.checked_sig = s,
                Op::Published(p) => cache.published.push(p),
            }
        }
    }
    if segments == 0 {
        return Err(corrupt("truncated"));
    }
    Ok((cache, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cache {
        let mut c = Cache::default();
        c.entries.insert(
            "pool/a_1_all.ipk".into(),
            Entry {
                key: FileKey {
                    size: 10,
                    mtime: 1_700_000_000,
                    mtime_nsec: 5,
                    inode: 42,
                },
                sha256: "ab".repeat(32),
                md5: None,
                container: Container::TarGz,
                stanza: "Package: a\nVersion: 1\nArchitecture: all\n".into(),
            },
        );
        c.entries.insert(
            "b.ipk".into(),
            Entry {
                key: FileKey {
                    size: 1,
                    mtime: 0,
                    mtime_nsec: 0,
                    inode: 1,
                },
                sha256: "cd".repeat(32),
                md5: Some("ef".repeat(16)),
                container: Container::Ar,
                stanza: "Package: b\n".into(),
            },
        );
        c.published.push(Published {
            name: "Packages".into(),
            key: FileKey {
                size: 7,
                mtime: 8,
                mtime_nsec: 9,
                inode: 10,
            },
            sha256: Some("67".repeat(32)),
        });
        c.checked_sig = Some(CheckedSig {
            packages_sha256: "01".repeat(32),
            sig_sha256: "23".repeat(32),
            fingerprint: "45".repeat(8),
        });
        c
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let bytes = sample().to_bytes("/feed");
        assert_eq!(bytes, sample().to_bytes("/feed"));
        fs::write(&p, &bytes).unwrap();
        assert_eq!(Cache::load(&p, "/feed").unwrap().cache, sample());
        let absent = Cache::load(&dir.path().join("absent"), "/feed").unwrap();
        assert_eq!((absent.cache, absent.file_len), (Cache::default(), 0));
    }

    #[test]
    fn foreign_and_corrupt_caches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let bytes = sample().to_bytes("/feed");
        fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            Cache::load(&p, "/other"),
            Err(CacheError::Foreign { .. })
        ));
        fs::write(&p, b"something else\n").unwrap();
        assert!(matches!(
            Cache::load(&p, "/feed"),
            Err(CacheError::Foreign { .. })
        ));
        // Every truncation and every single-byte change is caught.
        for cut in 0..bytes.len() {
            fs::write(&p, &bytes[..cut]).unwrap();
            assert!(Cache::load(&p, "/feed").is_err() || cut == 0, "cut {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            fs::write(&p, &b).unwrap();
            assert!(Cache::load(&p, "/feed").is_err(), "flip at {i}");
        }
    }

    #[test]
    fn appended_segments_override_and_a_cut_append_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cache");
        let base = sample().to_bytes("/feed");
        fs::write(&p, &base).unwrap();
        let mut changed = sample().entries["b.ipk"].clone();
        changed.stanza = "Package: b\nVersion: 2\n".into();
        let seg = segment([
            Record::Put("b.ipk", &changed),
            Record::Gone("pool/a_1_all.ipk"),
            Record::Sig(None),
        ]);
        append(&p, &seg).unwrap();
        let loaded = Cache::load(&p, "/feed").unwrap();
        assert!(!loaded.damaged_tail);
        assert_eq!(loaded.file_len as usize, base.len() + seg.len());
        // Changing entries without restating the published files forgets them.
        let mut want = Cache::default();
        want.entries.insert("b.ipk".into(), changed);
        assert_eq!(loaded.cache, want);
        // Every cut and every flip inside the appended segment drops just that segment.
        let whole = fs::read(&p).unwrap();
        for cut in base.len() + 1..whole.len() {
            fs::write(&p, &whole[..cut]).unwrap();
            let l = Cache::load(&p, "/feed").unwrap();
            assert!(l.damaged_tail, "cut {cut}");
            assert_eq!(l.cache, sample(), "cut {cut}");
            assert!(!l.appendable(10, 1000));
        }
        for i in base.len()..whole.len() {
            let mut b = whole.clone();
            b[i] ^= 0x01;
            fs::write(&p, &b).unwrap();
            let l = Cache::load(&p, "/feed").unwrap();
            assert!(l.damaged_tail && l.cache == sample(), "flip at {i}");
        }
    }
}
