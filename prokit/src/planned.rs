//! The packages of a plan as the install reads them: a record each, in a scratch file.
//!
//! An install holds every package of its plan from the downloads to the last commit: a
//! bootstrap of 10,000 packages holds 10,000. As a resolver [`Step`](crate::resolve::Step)
//! plus a [`DownloadItem`] each, a package costs ~600 bytes in a dozen allocations (its name,
//! version, architecture and feed name, its URL, cache path and hash as text). Here its
//! record (version, architecture, `Filename`, size, the SHA-256 as 32 bytes, feed, …) goes to
//! a scratch file ([`ScratchLog`]), read back once or twice as the install gets to the
//! package ([`Planned::get`]); memory keeps where its record ends: 4 bytes. The URL,
//! mirrors and cache path of a package are made when a download or the install asks for them
//! ([`Package::item`]), by the same code that makes them for a single download
//! ([`download::item_for`]).

use crate::download::{self, DownloadError, DownloadItem};
use crate::scratch_log::{ScratchLog, Span};
use std::io;
use std::path::PathBuf;

/// A feed packages come from: its name and base URLs (the configured one, then its mirrors).
#[derive(Debug, Clone)]
pub(crate) struct PlannedFeed {
    pub(crate) name: String,
    pub(crate) bases: Vec<String>,
}

/// One package to add (its texts are copied in).
pub(crate) struct NewPackage<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: &'a str,
    pub(crate) arch: &'a str,
    pub(crate) filename: &'a str,
    pub(crate) size: u64,
    /// Lower-case hex, 64 digits.
    pub(crate) sha256: &'a str,
    /// Index into the feeds given to [`Planned::new`].
    pub(crate) feed: usize,
    pub(crate) auto: bool,
    pub(crate) upgrade_from: Option<&'a str>,
    /// The developer signature the index stanza carries: `Signed-By` and `Signature`.
    pub(crate) index_signature: Option<(&'a str, &'a str)>,
}

/// A record: the SHA-256 (32 bytes), the size (8), the feed (2), whether auto-installed
/// (1), whether an upgrade (1), whether the index signed it (1), the lengths of the version,
/// architecture, file name, version upgraded from, name, `Signed-By` and `Signature` (2
/// each), then those texts.
const HEAD: usize = 32 + 8 + 2 + 1 + 1 + 1 + TEXTS * 2;

/// How many texts a record has.
const TEXTS: usize = 7;

/// The plan's packages, in install order.
pub(crate) struct Planned {
    records: ScratchLog,
    /// Where each package's record ends in `records`.
    ends: Vec<u32>,
    feeds: Vec<PlannedFeed>,
    cache: PathBuf,
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planned")
            .field("packages", &self.len())
            .finish()
    }
}

/// Why a package could not be added or read back.
#[derive(Debug, thiserror::Error)]
pub enum PlannedError {
    #[error("{0}")]
    Download(#[from] DownloadError),
    #[error(
        "its name, version, architecture, Filename, Signed-By or Signature is longer than 65,535 bytes"
    )]
    TooLong,
    #[error("its SHA-256 is not 64 hex digits")]
    BadHash,
    #[error("the plan's scratch file (in the temporary directory): {0}")]
    Scratch(#[source] io::Error),
}

impl From<PlannedError> for DownloadError {
    /// What a download reports when the package it was to fetch could not be read back.
    fn from(e: PlannedError) -> DownloadError {
        match e {
            PlannedError::Download(d) => d,
            other => DownloadError::Plan(other.to_string()),
        }
    }
}

impl Planned {
    /// An empty table for packages from `feeds`, cached under `cache`, with room for
    /// `packages`.
    pub(crate) fn new(feeds: Vec<PlannedFeed>, cache: PathBuf, packages: usize) -> Planned {
        Planned::with_records(ScratchLog::default(), feeds, cache, packages)
    }

    fn with_records(
        records: ScratchLog,
        feeds: Vec<PlannedFeed>,
        cache: PathBuf,
        packages: usize,
    ) -> Planned {
        Planned {
            records,
            ends: Vec::with_capacity(packages),
            feeds,
            cache,
        }
    }

    /// Adds a package; its file name is checked as a download would check it.
    pub(crate) fn push(&mut self, p: NewPackage<'_>) -> Result<(), PlannedError> {
        let sha256 = hex_32(p.sha256).ok_or(PlannedError::BadHash)?;
        let feed = self
            .feeds
            .get(p.feed)
            .expect("a package's feed is one of the table's");
        // Refused here, not when the download starts: the URLs are made again from the
        // same texts then.
        download::item_for(p.filename, p.size, p.sha256, &feed.bases, &self.cache)?;
        let texts: [&str; TEXTS] = [
            p.version,
            p.arch,
            p.filename,
            p.upgrade_from.unwrap_or_default(),
            p.name,
            p.index_signature.map_or("", |s| s.0),
            p.index_signature.map_or("", |s| s.1),
        ];
        let mut record = Vec::with_capacity(HEAD + texts.iter().map(|t| t.len()).sum::<usize>());
        record.extend_from_slice(&sha256);
        record.extend_from_slice(&p.size.to_le_bytes());
        let feed = u16::try_from(p.feed).expect("fewer than 65,536 feeds");
        record.extend_from_slice(&feed.to_le_bytes());
        record.push(u8::from(p.auto));
        record.push(u8::from(p.upgrade_from.is_some()));
        record.push(u8::from(p.index_signature.is_some()));
        for t in texts {
            u16::try_from(t.len()).map_err(|_| PlannedError::TooLong)?;
        }
        for t in texts {
            record.extend_from_slice(&(t.len() as u16).to_le_bytes());
        }
        texts
            .iter()
            .for_each(|t| record.extend_from_slice(t.as_bytes()));
        let too_long = |_| PlannedError::TooLong;
        let end = u32::try_from(self.records.len() + record.len() as u64).map_err(too_long)?;
        self.records.push(&record).map_err(PlannedError::Scratch)?;
        self.ends.push(end);
        Ok(())
    }

    /// Frees what the table reserved and did not use.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.records.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Package `i`, read back.
    pub(crate) fn get(&self, i: usize) -> Result<Package<'_>, PlannedError> {
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1],
        };
        let span = Span::new(u64::from(start), self.ends[i] - start);
        let record = self.records.read(span).map_err(PlannedError::Scratch)?;
        let bad =
            || PlannedError::Scratch(io::Error::other("a plan record read back is cut short"));
        if record.len() < HEAD {
            return Err(bad());
        }
        let u16_at = |at: usize| u16::from_le_bytes([record[at], record[at + 1]]) as usize;
        let mut ends = [0usize; TEXTS];
        let mut at = HEAD;
        for (k, end) in ends.iter_mut().enumerate() {
            at += u16_at(HEAD - 2 * TEXTS + 2 * k);
            *end = at;
        }
        if at != record.len() || std::str::from_utf8(&record[HEAD..]).is_err() {
            return Err(bad());
        }
        Ok(Package {
            table: self,
            record,
            ends,
        })
    }
}

/// A package of a [`Planned`] table, read back.
pub(crate) struct Package<'a> {
    table: &'a Planned,
    record: Vec<u8>,
    /// Where each text ends ([`Package::text`]).
    ends: [usize; TEXTS],
}

impl Package<'_> {
    /// Text number `k` (0 version, 1 architecture, 2 file name, 3 version upgraded from,
    /// 4 name, 5 `Signed-By`, 6 `Signature`).
    fn text(&self, k: usize) -> &str {
        let start = match k {
            0 => HEAD,
            _ => self.ends[k - 1],
        };
        // Checked to be UTF-8 when read back.
        std::str::from_utf8(&self.record[start..self.ends[k]]).unwrap_or_default()
    }

    pub(crate) fn name(&self) -> &str {
        self.text(4)
    }

    pub(crate) fn version(&self) -> &str {
        self.text(0)
    }

    pub(crate) fn arch(&self) -> &str {
        self.text(1)
    }

    fn filename(&self) -> &str {
        self.text(2)
    }

    /// `name version`, as errors name a package.
    pub(crate) fn label(&self) -> String {
        format!("{} {}", self.name(), self.version())
    }

    fn feed_index(&self) -> usize {
        u16::from_le_bytes([self.record[40], self.record[41]]) as usize
    }

    /// The name of the feed the package comes from.
    pub(crate) fn feed(&self) -> &str {
        &self.table.feeds[self.feed_index()].name
    }

    pub(crate) fn auto(&self) -> bool {
        self.record[42] != 0
    }

    /// The installed version the package replaces, if any.
    pub(crate) fn upgrade_from(&self) -> Option<&str> {
        (self.record[43] != 0).then(|| self.text(3))
    }

    /// The developer signature the index stanza carried (`Signed-By`, `Signature`).
    pub(crate) fn index_signature(&self) -> Option<(&str, &str)> {
        (self.record[44] != 0).then(|| (self.text(5), self.text(6)))
    }

    fn size(&self) -> u64 {
        u64::from_le_bytes(self.record[32..40].try_into().expect("8 bytes"))
    }

    /// The SHA-256 the verified index gives, lower-case hex.
    pub(crate) fn sha256(&self) -> String {
        hex::encode(&self.record[..32])
    }

    /// The package's place in the cache (as in [`Package::item`]).
    pub(crate) fn dest(&self) -> PathBuf {
        download::cache_path(&self.table.cache, &self.sha256(), self.filename())
    }

    /// The URL the package is fetched from first (as in [`Package::item`]).
    pub(crate) fn url(&self) -> String {
        let bases = &self.table.feeds[self.feed_index()].bases;
        let base = &bases[download::first_base(&self.sha256(), bases.len())];
        download::package_url(base, self.filename()).expect("checked when the package was added")
    }

    /// What to download: its URL (the feed's or a mirror's, spread by the hash), the other
    /// URLs, its size and hash, its place in the cache.
    pub(crate) fn item(&self) -> DownloadItem {
        download::item_for(
            self.filename(),
            self.size(),
            &self.sha256(),
            &self.table.feeds[self.feed_index()].bases,
            &self.table.cache,
        )
        .expect("checked when the package was added")
    }
}

/// 64 hex digits as 32 bytes.
fn hex_32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feeds() -> Vec<PlannedFeed> {
        vec![
            PlannedFeed {
                name: "base".into(),
                bases: vec!["http://a.example/feed".into()],
            },
            PlannedFeed {
                name: "extra".into(),
                bases: vec![
                    "http://b.example/x".into(),
                    "http://mirror.example/x".into(),
                ],
            },
        ]
    }

    fn package<'a>(name: &'a str, filename: &'a str, sha256: &'a str) -> NewPackage<'a> {
        NewPackage {
            name,
            version: "1.0-r1",
            arch: "all",
            filename,
            size: 42,
            sha256,
            feed: 1,
            auto: true,
            upgrade_from: Some("0.9"),
            index_signature: None,
        }
    }

    #[test]
    fn a_package_reads_back_as_it_went_in_and_downloads_as_a_single_item_would() {
        for records in [ScratchLog::default(), ScratchLog::in_memory()] {
            reads_back(records);
        }
    }

    fn reads_back(records: ScratchLog) {
        let sha = "ab".repeat(32);
        let mut t = Planned::with_records(records, feeds(), PathBuf::from("/cache"), 2);
        t.push(NewPackage {
            feed: 0,
            auto: false,
            upgrade_from: None,
            ..package("first", "first_1.0_all.ipk", &sha)
        })
        .unwrap();
        t.push(NewPackage {
            index_signature: Some(("0123456789abcdef", "RWQ sig")),
            ..package("second", "sub/second_1.0-r1_all.ipk", &sha)
        })
        .unwrap();
        t.shrink_to_fit();
        assert_eq!(t.len(), 2);
        let (p0, p1) = (t.get(0).unwrap(), t.get(1).unwrap());
        assert_eq!(
            (p1.name(), p1.version(), p1.arch(), p1.feed()),
            ("second", "1.0-r1", "all", "extra")
        );
        assert_eq!((p0.auto(), p0.upgrade_from()), (false, None));
        assert_eq!((p1.auto(), p1.upgrade_from()), (true, Some("0.9")));
        assert_eq!(p0.index_signature(), None);
        assert_eq!(p1.index_signature(), Some(("0123456789abcdef", "RWQ sig")));
        assert_eq!(
            (p0.name(), p0.label()),
            ("first", "first 1.0-r1".to_string())
        );
        assert_eq!(p1.sha256(), sha);
        let item = p1.item();
        let single = download::item_for(
            "sub/second_1.0-r1_all.ipk",
            42,
            &sha,
            &feeds()[1].bases,
            std::path::Path::new("/cache"),
        )
        .unwrap();
        assert_eq!(item, single);
        assert_eq!((p1.dest(), p1.url()), (item.dest.clone(), item.url.clone()));
        assert_eq!(
            item.dest,
            PathBuf::from(format!("/cache/{}-second_1.0-r1_all.ipk", &sha[..16]))
        );
        assert_eq!(p0.item().url, "http://a.example/feed/first_1.0_all.ipk");
    }

    #[test]
    fn a_package_a_download_would_refuse_is_refused_when_added() {
        let sha = "cd".repeat(32);
        let mut t = Planned::new(feeds(), PathBuf::from("/cache"), 1);
        for bad in ["../escape.ipk", "/abs.ipk", "http://x/y.ipk", ""] {
            assert!(
                matches!(
                    t.push(package("p", bad, &sha)),
                    Err(PlannedError::Download(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            t.push(package("p", "p.ipk", "xyz")),
            Err(PlannedError::BadHash)
        ));
        let long = "v".repeat(70_000);
        assert!(matches!(
            t.push(NewPackage {
                version: &long,
                ..package("p", "p.ipk", &sha)
            }),
            Err(PlannedError::TooLong)
        ));
        assert_eq!(t.len(), 0);
        assert_eq!(t.records.len(), 0);
    }

    /// A record read back that is cut short, or whose lengths do not add up to it, or whose
    /// texts are not UTF-8, is an error naming the scratch file, not a package.
    #[test]
    fn a_damaged_record_read_back_is_refused() {
        let sha = "ab".repeat(32);
        let mut t = Planned::with_records(ScratchLog::in_memory(), feeds(), "/cache".into(), 1);
        t.push(package("p", "p.ipk", &sha)).unwrap();
        let good = t.records.read(Span::new(0, t.ends[0])).unwrap();
        let mut damaged = vec![good[..10].to_vec(), good[..good.len() - 1].to_vec()];
        let mut bad_utf8 = good.clone();
        *bad_utf8.last_mut().unwrap() = 0xff;
        damaged.push(bad_utf8);
        for record in damaged {
            let at = t.records.push(&record).unwrap();
            t.ends.push((at.off() + u64::from(at.len)) as u32);
            let i = t.len() - 1;
            match t.get(i) {
                Err(PlannedError::Scratch(e)) => {
                    assert!(e.to_string().contains("cut short"), "{e}")
                }
                other => panic!(
                    "record of {} bytes read back as {:?}",
                    record.len(),
                    other.map(|p| p.name().to_string())
                ),
            }
        }
        assert_eq!(t.get(0).unwrap().name(), "p");
    }
}
