//! The packages of a plan as the install reads them: one compact record each.
//!
//! An install holds every package of its plan from the downloads to the last commit: a
//! bootstrap of 10,000 packages holds 10,000. As a resolver [`Step`](crate::resolve::Step)
//! plus a [`DownloadItem`] each, a package costs ~600 bytes in a dozen allocations (its name,
//! version, architecture and feed name, its URL, cache path and hash as text). Here it costs
//! its name, version, architecture and `Filename` once, in one string shared by all, and a
//! fixed record (the SHA-256 as 32 bytes): ~150 bytes. The URL, mirrors and cache path of a
//! package are made when a download or the install asks for them ([`Planned::item`]), by
//! the same code that makes them for a single download ([`download::item_for`]).

use crate::download::{self, DownloadError, DownloadItem};
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
    pub(crate) upgrade_from: Option<String>,
}

#[derive(Debug)]
struct Row {
    /// Where the name starts in [`Planned::text`]; the version, architecture and file name
    /// follow it, with the lengths in `lens`.
    at: u32,
    lens: [u16; 4],
    feed: u16,
    auto: bool,
    size: u64,
    sha256: [u8; 32],
    upgrade_from: Option<Box<str>>,
}

/// The plan's packages, in install order.
#[derive(Debug)]
pub(crate) struct Planned {
    text: String,
    rows: Vec<Row>,
    feeds: Vec<PlannedFeed>,
    cache: PathBuf,
}

/// Why a package could not be added.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlannedError {
    #[error("{0}")]
    Download(#[from] DownloadError),
    #[error("its name, version, architecture or Filename is longer than 65,535 bytes")]
    TooLong,
    #[error("its SHA-256 is not 64 hex digits")]
    BadHash,
}

impl Planned {
    /// An empty table for packages from `feeds`, cached under `cache`, with room for
    /// `packages`.
    pub(crate) fn new(feeds: Vec<PlannedFeed>, cache: PathBuf, packages: usize) -> Planned {
        Planned {
            text: String::new(),
            rows: Vec::with_capacity(packages),
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
        let texts = [p.name, p.version, p.arch, p.filename];
        let mut lens = [0u16; 4];
        for (len, t) in lens.iter_mut().zip(texts) {
            *len = u16::try_from(t.len()).map_err(|_| PlannedError::TooLong)?;
        }
        let at = u32::try_from(self.text.len()).map_err(|_| PlannedError::TooLong)?;
        texts.iter().for_each(|t| self.text.push_str(t));
        self.rows.push(Row {
            at,
            lens,
            feed: u16::try_from(p.feed).expect("fewer than 65,536 feeds"),
            auto: p.auto,
            size: p.size,
            sha256,
            upgrade_from: p.upgrade_from.map(String::into_boxed_str),
        });
        Ok(())
    }

    /// Frees what the table reserved and did not use.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.rows.shrink_to_fit();
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Text number `k` (0 name, 1 version, 2 architecture, 3 file name) of package `i`.
    fn text(&self, i: usize, k: usize) -> &str {
        let row = &self.rows[i];
        let start = row.at as usize + row.lens[..k].iter().map(|&l| l as usize).sum::<usize>();
        &self.text[start..start + row.lens[k] as usize]
    }

    pub(crate) fn name(&self, i: usize) -> &str {
        self.text(i, 0)
    }

    pub(crate) fn version(&self, i: usize) -> &str {
        self.text(i, 1)
    }

    pub(crate) fn arch(&self, i: usize) -> &str {
        self.text(i, 2)
    }

    /// `name version`, as errors name a package.
    pub(crate) fn label(&self, i: usize) -> String {
        format!("{} {}", self.name(i), self.version(i))
    }

    /// The name of the feed package `i` comes from.
    pub(crate) fn feed(&self, i: usize) -> &str {
        &self.feeds[self.rows[i].feed as usize].name
    }

    pub(crate) fn auto(&self, i: usize) -> bool {
        self.rows[i].auto
    }

    /// The installed version package `i` replaces, if any.
    pub(crate) fn upgrade_from(&self, i: usize) -> Option<&str> {
        self.rows[i].upgrade_from.as_deref()
    }

    /// The SHA-256 the verified index gives, lower-case hex.
    pub(crate) fn sha256(&self, i: usize) -> String {
        hex::encode(self.rows[i].sha256)
    }

    /// Package `i`'s place in the cache (as in [`Planned::item`]).
    pub(crate) fn dest(&self, i: usize) -> PathBuf {
        download::cache_path(&self.cache, &self.sha256(i), self.text(i, 3))
    }

    /// The URL package `i` is fetched from first (as in [`Planned::item`]).
    pub(crate) fn url(&self, i: usize) -> String {
        let bases = &self.feeds[self.rows[i].feed as usize].bases;
        let base = &bases[download::first_base(&self.sha256(i), bases.len())];
        download::package_url(base, self.text(i, 3)).expect("checked when the package was added")
    }

    /// What to download for package `i`: its URL (the feed's or a mirror's, spread by the
    /// hash), the other URLs, its size and hash, its place in the cache.
    pub(crate) fn item(&self, i: usize) -> DownloadItem {
        let row = &self.rows[i];
        download::item_for(
            self.text(i, 3),
            row.size,
            &self.sha256(i),
            &self.feeds[row.feed as usize].bases,
            &self.cache,
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
            upgrade_from: Some("0.9".into()),
        }
    }

    #[test]
    fn a_package_reads_back_as_it_went_in_and_downloads_as_a_single_item_would() {
        let sha = "ab".repeat(32);
        let mut t = Planned::new(feeds(), PathBuf::from("/cache"), 2);
        t.push(NewPackage {
            feed: 0,
            auto: false,
            upgrade_from: None,
            ..package("first", "first_1.0_all.ipk", &sha)
        })
        .unwrap();
        t.push(package("second", "sub/second_1.0-r1_all.ipk", &sha))
            .unwrap();
        t.shrink_to_fit();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t.name(1), t.version(1), t.arch(1), t.feed(1)),
            ("second", "1.0-r1", "all", "extra")
        );
        assert_eq!((t.auto(0), t.upgrade_from(0)), (false, None));
        assert_eq!((t.auto(1), t.upgrade_from(1)), (true, Some("0.9")));
        assert_eq!(t.label(0), "first 1.0-r1");
        assert_eq!(t.sha256(1), sha);
        let item = t.item(1);
        let single = download::item_for(
            "sub/second_1.0-r1_all.ipk",
            42,
            &sha,
            &feeds()[1].bases,
            std::path::Path::new("/cache"),
        )
        .unwrap();
        assert_eq!(item, single);
        assert_eq!((t.dest(1), t.url(1)), (item.dest.clone(), item.url.clone()));
        assert_eq!(
            item.dest,
            PathBuf::from(format!("/cache/{}-second_1.0-r1_all.ipk", &sha[..16]))
        );
        assert_eq!(t.item(0).url, "http://a.example/feed/first_1.0_all.ipk");
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
        assert!(t.text.is_empty());
    }
}
