//! Attacks on `archman index` by someone who can write the feed directory (an upload
//! directory, a shared build output) but not the maintainer's home. Whatever they put there,
//! the signed index must hold only stanzas archman built from bytes it read in this feed
//! (issue 10, class 4).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use archman::cache::{Cache, CacheKey, Entry, FileKey, KEY_LEN};
use feeds::build::PackageBuilder;
use feeds::package::Container;
use sha2::{Digest, Sha256};

const ARCHMAN: &str = env!("CARGO_BIN_EXE_archman");

fn pkg(name: &str, depends: &str) -> Vec<u8> {
    PackageBuilder::new(format!(
        "Package: {name}\nVersion: 1.0-1\nDepends: {depends}\nArchitecture: all\nDescription: the {name} package\n"
    ))
    .file(&format!("usr/share/{name}/data"), 0o644, format!("{name} {depends}\n"))
    .build()
    .unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A signed feed of small packages, and the maintainer's cache home.
struct Feed {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    sec: PathBuf,
    public: PathBuf,
    /// SOURCE_DATE_EPOCH of the next run: a minute later each time.
    next_date: std::cell::Cell<i64>,
}

impl Feed {
    fn new(names: &[&str]) -> Feed {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("feed");
        fs::create_dir(&dir).unwrap();
        for n in names {
            fs::write(dir.join(format!("{n}_1.0-1_all.ipk")), pkg(n, "libc")).unwrap();
        }
        let (sec, public) = e2e::archman_keygen(Path::new(ARCHMAN), tmp.path());
        Feed {
            tmp,
            dir,
            sec,
            public,
            next_date: std::cell::Cell::new(1_795_315_200),
        }
    }

    fn xdg(&self) -> PathBuf {
        self.tmp.path().join("xdg-cache")
    }

    fn cache(&self) -> PathBuf {
        archman::cache::default_path(&self.xdg(), &self.dir.canonicalize().unwrap())
    }

    fn feed_id(&self) -> String {
        format!(
            "{} md5=0 profile=Full",
            self.dir.canonicalize().unwrap().display()
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `archman index --json --key SEC EXTRA FEED`, as the maintainer runs it.
    fn index(&self, extra: &[&str]) -> Output {
        let date = self.next_date.get();
        self.next_date.set(date + 60);
        Command::new(ARCHMAN)
            .args(["index", "--json", "--key"])
            .arg(&self.sec)
            .args(extra)
            .arg(&self.dir)
            .env("XDG_CACHE_HOME", self.xdg())
            .env("SOURCE_DATE_EPOCH", date.to_string())
            .output()
            .unwrap()
    }

    fn index_ok(&self, extra: &[&str]) -> Output {
        let o = self.index(extra);
        assert!(o.status.success(), "{}", stderr(&o));
        o
    }

    /// The feed verifies: signatures by our key, Release hashes, every file as indexed (the
    /// dependencies, which are not the point here, assumed installed).
    fn assert_verifies(&self) {
        let packages = self.packages();
        let deps: Vec<&str> = packages
            .lines()
            .filter_map(|l| l.strip_prefix("Depends: "))
            .collect();
        let o = Command::new(ARCHMAN)
            .arg("check")
            .arg("-p")
            .arg(&self.public)
            .arg("--assume-installed")
            .arg(deps.join(","))
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        // Packages.gz is the same index as Packages (clients may fetch either).
        let gz = fs::read(self.path("Packages.gz")).unwrap();
        let plain = feeds::index::gunzip(&gz, &Default::default()).unwrap();
        assert_eq!(plain, fs::read(self.path("Packages")).unwrap());
    }

    fn packages(&self) -> String {
        fs::read_to_string(self.path("Packages")).unwrap()
    }

    /// The published stanza whose Filename is `file`.
    fn stanza(&self, file: &str) -> String {
        self.packages()
            .split("\n\n")
            .find(|s| s.contains(&format!("\nFilename: {file}\n")))
            .unwrap_or_else(|| panic!("no stanza for {file} in\n{}", self.packages()))
            .to_string()
    }
}

fn field<'a>(stanza: &'a str, name: &str) -> &'a str {
    stanza
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in\n{stanza}"))
}

/// What an attacker who can write the cache file (but cannot read the key) writes: a cache
/// in the right format for this feed, whose entry for `file` claims the file's true identity
/// on disk with a stanza that does not describe it (another SHA-256, another dependency).
fn forged_cache(feed: &Feed, file: &str, key: &CacheKey) -> Vec<u8> {
    let meta = fs::metadata(feed.path(file)).unwrap();
    let mut stanza = format!(
        "Package: c\nVersion: 1.0-1\nDepends: evil\nArchitecture: all\nFilename: {file}\nSize: {}\nSHA256sum: {}\nSHA256: {}\nDescription: the c package",
        meta.len(),
        "0".repeat(64),
        "0".repeat(64)
    );
    stanza.push('\n');
    let mut cache = Cache::default();
    cache.entries.insert(
        file.to_string(),
        Entry {
            key: FileKey::of(&meta),
            sha256: [0; 32],
            md5: None,
            container: Container::TarGz,
            stanza: stanza.trim_end().into(),
        },
    );
    cache.to_bytes(&feed.feed_id(), key)
}

#[test]
fn forged_cache_cannot_make_archman_sign_a_file_it_never_read() {
    let feed = Feed::new(&["a", "b"]);
    feed.index_ok(&[]);
    let cache = feed.cache();
    assert!(cache.is_file(), "no cache at {}", cache.display());
    // A new package arrives in the upload directory, and the attacker rewrites the cache so
    // that archman would take its stanza from there instead of reading it: in a cache of
    // their own making (they have no key, so they use one of their own)...
    let file = "c_1.0-1_all.ipk";
    let bytes = pkg("c", "libc");
    fs::write(feed.path(file), &bytes).unwrap();
    let own_key = CacheKey::from_bytes([0x5a; KEY_LEN]);
    let attempts: Vec<(&str, Vec<u8>)> = vec![
        (
            "a cache made with another key",
            forged_cache(&feed, file, &own_key),
        ),
        ("a genuine cache with its records changed", Vec::new()),
    ];
    for (what, forged) in attempts {
        let forged = if forged.is_empty() {
            // ...or in the genuine cache, changed in place: the true hash of c swapped for
            // zeros, every length kept.
            let genuine = fs::read(&cache).unwrap();
            let text = String::from_utf8(genuine).unwrap();
            let true_hash = sha256(&bytes);
            assert!(text.contains(&true_hash), "{what}: c is not in the cache");
            text.replace(&true_hash, &"0".repeat(64)).into_bytes()
        } else {
            forged
        };
        fs::write(&cache, &forged).unwrap();
        let o = feed.index_ok(&["--refresh"]);
        assert!(
            stderr(&o).contains(&format!(
                "warning: cache {}: fails authentication; ignoring it and reading every package",
                cache.display()
            )),
            "{what}: {}",
            stderr(&o)
        );
        assert!(
            stdout(&o).contains("\"read\":3,\"cached\":0"),
            "{what}: {}",
            stdout(&o)
        );
        let stanza = feed.stanza(file);
        assert_eq!(field(&stanza, "SHA256sum"), sha256(&bytes), "{what}");
        assert!(!feed.packages().contains("evil"), "{what}");
        feed.assert_verifies();
        // That run replaced the forged cache with a genuine one: the next run reads nothing.
        let o = feed.index_ok(&[]);
        assert!(stdout(&o).contains("\"read\":0"), "{what}: {}", stdout(&o));
        assert!(!stderr(&o).contains("cache"), "{what}: {}", stderr(&o));
    }
}

#[test]
fn package_swapped_with_same_size_and_mtime_is_reread() {
    let feed = Feed::new(&["a", "b"]);
    let file = "b_1.0-1_all.ipk";
    let original = fs::read(feed.path(file)).unwrap();
    // Another valid package of exactly the same size: the attacker's (a dependency name as
    // long as `libc`, and as many tries as it takes for the compressed sizes to agree).
    let swapped = (0..1000)
        .map(|i| pkg("b", &format!("e{i:03}")))
        .find(|p| p.len() == original.len() && *p != original)
        .expect("a package of the same size");
    feed.index_ok(&[]);
    let before = fs::metadata(feed.path(file)).unwrap();
    // Past the file system's timestamp granularity, so that the ctime can tell.
    std::thread::sleep(std::time::Duration::from_millis(50));
    // Rewritten in place (same inode), then `touch -r`: the mtime put back to the nanosecond.
    fs::write(feed.path(file), &swapped).unwrap();
    fs::File::options()
        .write(true)
        .open(feed.path(file))
        .unwrap()
        .set_modified(before.modified().unwrap())
        .unwrap();
    let after = fs::metadata(feed.path(file)).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec(), after.ino()),
        (
            before.len(),
            before.mtime(),
            before.mtime_nsec(),
            before.ino()
        ),
        "the swap must keep size, mtime and inode"
    );
    let o = feed.index_ok(&[]);
    assert!(
        stdout(&o).contains("\"read\":1,\"cached\":1"),
        "{}",
        stdout(&o)
    );
    let stanza = feed.stanza(file);
    assert_eq!(field(&stanza, "SHA256sum"), sha256(&swapped));
    assert!(field(&stanza, "Depends").starts_with('e'), "{stanza}");
    feed.assert_verifies();
}

/// CRC-32 (IEEE), as archman's cache format 5 used.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn cache_in_feed_dir_is_not_used() {
    let feed = Feed::new(&["a", "b"]);
    // A fresh run keeps its cache outside the feed.
    let o = feed.index_ok(&["--no-cache"]);
    assert!(!stderr(&o).contains("archman-cache"), "{}", stderr(&o));
    let file = "a_1.0-1_all.ipk";
    let true_stanza = feed.stanza(file);
    // What the previous archman kept in the feed (format 5, checked by a CRC only), as the
    // attacker rewrites it: a's entry with its true identity and a stanza of their own.
    let meta = fs::metadata(feed.path(file)).unwrap();
    let forged_stanza = true_stanza
        .replace(
            &sha256(&fs::read(feed.path(file)).unwrap()),
            &"0".repeat(64),
        )
        .replace("Depends: libc", "Depends: evil");
    let mut records = format!(
        "E {} {} {} {} {} {} - tgz {}\n{file}\n{forged_stanza}\n",
        file.len(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino(),
        "0".repeat(64),
        forged_stanza.len()
    );
    records.push_str(&format!("END {:08x}\n", crc32(records.as_bytes())));
    let id = feed.feed_id();
    let old = format!("archman-cache 5\n{}\n{id}\n{records}", id.len());
    let old_cache = feed.path(".archman-cache");
    fs::write(&old_cache, &old).unwrap();

    let o = feed.index_ok(&["--refresh"]);
    assert_eq!(feed.stanza(file), true_stanza);
    assert!(!feed.packages().contains("evil"));
    feed.assert_verifies();
    // Said once, on the run that starts the new cache; the old file is left to the user.
    let notice = format!(
        "warning: {}: no longer used (archman now keeps its cache outside the feed, in {}); it may be deleted",
        old_cache.display(),
        feed.cache().display()
    );
    assert!(stderr(&o).contains(&notice), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(&old_cache).unwrap(), old);
    assert!(feed.cache().is_file());
    let o = feed.index_ok(&[]);
    assert!(!stderr(&o).contains("archman-cache"), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"read\":0"), "{}", stdout(&o));
    // Nothing but the lock file was added to the feed.
    let mut extra: Vec<String> = fs::read_dir(&feed.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    extra.sort();
    assert_eq!(extra, [".archman-cache", ".archman-lock"]);
}

#[test]
fn an_old_authentic_cache_put_back_brings_back_nothing() {
    let feed = Feed::new(&["a", "b"]);
    feed.index_ok(&[]);
    let old = fs::read(feed.cache()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let file = "a_1.0-1_all.ipk";
    let new = pkg("a", "libssl");
    fs::write(feed.path(file), &new).unwrap();
    feed.index_ok(&[]);
    // The cache from before the change, put back whole: authentic, but its entry for a (and
    // its record of the published files) no longer matches the files on disk.
    fs::write(feed.cache(), &old).unwrap();
    let o = feed.index_ok(&["--refresh"]);
    assert!(
        stdout(&o).contains("\"read\":1,\"cached\":1"),
        "{}",
        stdout(&o)
    );
    assert_eq!(field(&feed.stanza(file), "SHA256sum"), sha256(&new));
    feed.assert_verifies();
}

/// The published Release is not authenticated when archman reads it back: a planted Release
/// that lists a planted Packages.gz must not make archman sign that Packages.gz.
#[test]
fn a_planted_packages_gz_is_not_signed() {
    let feed = Feed::new(&["a", "b"]);
    feed.index_ok(&[]);
    let packages = fs::read(feed.path("Packages")).unwrap();
    let evil_index = String::from_utf8(packages.clone())
        .unwrap()
        .replace("Depends: libc", "Depends: evil");
    let evil_gz = feeds::index::gzip(evil_index.as_bytes());
    fs::write(feed.path("Packages.gz"), &evil_gz).unwrap();
    let mut release =
        feeds::release::Release::parse(&fs::read_to_string(feed.path("Release")).unwrap()).unwrap();
    for f in &mut release.sha256 {
        if f.name == "Packages.gz" {
            f.sha256 = sha256(&evil_gz);
            f.size = evil_gz.len() as u64;
        }
    }
    fs::write(feed.path("Release"), release.to_text()).unwrap();
    // The maintainer's cron job re-signs the Release.
    feed.index_ok(&["--refresh"]);
    let gz = fs::read(feed.path("Packages.gz")).unwrap();
    assert_ne!(gz, evil_gz, "archman signed the planted Packages.gz");
    feed.assert_verifies();
}

#[test]
fn a_forged_lock_file_is_refused_not_followed() {
    let feed = Feed::new(&["a"]);
    let target = feed.tmp.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, feed.path(".archman-lock")).unwrap();
    let o = feed.index(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{}: a symbolic link, not a lock file",
            feed.path(".archman-lock").display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(!target.exists());
    assert!(!feed.path("Packages").exists());
}

#[test]
fn an_exposed_cache_key_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let feed = Feed::new(&["a"]);
    feed.index_ok(&[]);
    let key = archman::cache::key_path(&feed.xdg());
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let o = feed.index_ok(&["--refresh"]);
    assert!(
        stderr(&o).contains(&format!(
            "warning: cache key {}: other users can read or write it (mode 0644)",
            key.display()
        )) && stderr(&o).contains("running without the cache"),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("\"read\":1,\"cached\":0"),
        "{}",
        stdout(&o)
    );
    feed.assert_verifies();
}

/// `Packages.gz` is built from compressed runs of stanzas kept beside the cache (issue 16):
/// a re-index compresses only the runs that changed, and the file is the same bytes a full
/// index writes, one gzip member that `gzip -t` accepts and `gzip -dc` turns into exactly
/// `Packages`. opkg-lede reads a `src/gz` index through `gzip -d -c` (libbb/gzip.c line 112,
/// opkg-lede 38eccbb), so this is what it reads.
#[test]
fn packages_gz_from_reused_runs_is_what_a_full_index_writes() {
    let names: Vec<String> = (0..300).map(|i| format!("p{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let feed = Feed::new(&refs);
    feed.index_ok(&[]);
    let parts = archman::gz_parts::path_for(&feed.cache());
    assert!(parts.exists(), "{} was not kept", parts.display());
    // A real change: one package more. One run (or two, where a cut moved) is compressed.
    fs::write(feed.path("zz-new_1.0-1_all.ipk"), pkg("zz-new", "libc")).unwrap();
    let o = feed.index_ok(&[]);
    let json: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let runs = &json["packages_gz_runs"];
    assert!(runs["total"].as_u64().unwrap() >= 3, "{json}");
    assert!(
        (1..=2).contains(&runs["compressed"].as_u64().unwrap()),
        "{json}"
    );
    let incremental = fs::read(feed.path("Packages.gz")).unwrap();
    feed.assert_verifies();
    let gzip_ok = |args: &[&str]| {
        let o = Command::new("gzip")
            .args(args)
            .arg(feed.path("Packages.gz"))
            .output()
            .unwrap();
        assert!(o.status.success(), "gzip {args:?}: {}", stderr(&o));
        o.stdout
    };
    gzip_ok(&["-t"]);
    assert_eq!(gzip_ok(&["-dc"]), fs::read(feed.path("Packages")).unwrap());
    // The same bytes as compressing every run afresh.
    feed.index_ok(&["--no-cache", "--refresh"]);
    assert_eq!(fs::read(feed.path("Packages.gz")).unwrap(), incremental);
}

/// The compressed runs go into the signed Release without being inflated again, so they are
/// authenticated like the cache: a part swapped for other deflate data under the same name
/// (the SHA-256 of the genuine run) fails the MAC, is ignored with a warning, and every run is
/// compressed again.
#[test]
fn forged_gz_parts_cannot_make_archman_sign_a_packages_gz_it_did_not_compress() {
    let names: Vec<String> = (0..200).map(|i| format!("q{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let feed = Feed::new(&refs);
    feed.index_ok(&[]);
    let path = archman::gz_parts::path_for(&feed.cache());
    let mut bytes = fs::read(&path).unwrap();
    // The first part's data, after the header lines, its 32-byte key and 4-byte length:
    // replaced by an evil stanza compressed the same way, length kept.
    let header = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .unwrap()
        .0
        + 1;
    let len = u32::from_le_bytes(bytes[header + 32..header + 36].try_into().unwrap()) as usize;
    let mut evil = feeds::index_gz::deflate_run(b"Package: evil\nVersion: 1\n\n");
    evil.resize(len, 0);
    bytes[header + 36..header + 36 + len].copy_from_slice(&evil);
    fs::write(&path, &bytes).unwrap();
    fs::write(feed.path("zz_1.0-1_all.ipk"), pkg("zz", "libc")).unwrap();
    let o = feed.index_ok(&[]);
    let err = stderr(&o);
    assert!(
        err.contains(&path.display().to_string()) && err.contains("MAC does not verify"),
        "{err}"
    );
    let plain = feeds::index::gunzip(
        &fs::read(feed.path("Packages.gz")).unwrap(),
        &Default::default(),
    )
    .unwrap();
    assert!(!String::from_utf8_lossy(&plain).contains("Package: evil"));
    feed.assert_verifies();
}
