//! The format library against real-world feeds and packages from `../shared/real`: every
//! package reads, every index writes back byte for byte, and the stanzas we build from real
//! packages equal the published ones — or differ exactly where the samples are known to be
//! stale.

// Tests say on stderr what they skipped or measured.
#![allow(clippy::print_stderr)]

use e2e as common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use feeds::control::Paragraph;
use feeds::index::{self, PackagesFile};
use feeds::limits::Limits;
use feeds::package::{DataTar, Package, ReadOptions, read_package_file};

fn files_with_ext(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_with_ext(&p, ext, out);
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
}

fn all_ipks(real: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    files_with_ext(&real.join("ipk"), "ipk", &mut v);
    files_with_ext(&real.join("feeds"), "ipk", &mut v);
    v
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn every_real_package_reads_with_its_data() {
    let Some(real) = common::real_dir() else {
        return;
    };
    let ipks = all_ipks(&real);
    assert!(
        ipks.len() >= 70,
        "expected the real samples, found {}",
        ipks.len()
    );
    let mut containers = BTreeMap::new();
    for path in &ipks {
        let bytes = fs::read(path).unwrap();
        let mut entries = 0u64;
        let mut visit = |tar: &mut DataTar<'_>| {
            entries = tar.for_each_entry(|e| std::io::copy(e, &mut std::io::sink()).map(|_| ()))?;
            Ok(())
        };
        let opts = ReadOptions {
            md5: true,
            ..Default::default()
        };
        let pkg =
            read_package_file(path, &opts, Some(&mut visit)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pkg.size, bytes.len() as u64, "{}", path.display());
        assert_eq!(pkg.sha256_hex(), sha256_hex(&bytes), "{}", path.display());
        assert!(entries > 0, "{}: empty data tar", path.display());
        let stem = path.file_name().unwrap().to_str().unwrap();
        assert!(
            stem.starts_with(&format!("{}_", pkg.name())),
            "{}: control says {}",
            path.display(),
            pkg.name()
        );
        *containers
            .entry(format!("{:?}", pkg.container))
            .or_insert(0) += 1;
    }
    // Both containers are among the samples.
    assert!(
        containers.get("Ar").copied().unwrap_or(0) >= 20,
        "{containers:?}"
    );
    assert!(
        containers.get("TarGz").copied().unwrap_or(0) >= 40,
        "{containers:?}"
    );
}

#[test]
fn every_real_index_writes_back_byte_for_byte() {
    let Some(real) = common::real_dir() else {
        return;
    };
    let mut checked = 0;
    let mut dirs: Vec<_> = fs::read_dir(real.join("feeds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        for name in ["Packages", "Packages.manifest", "Packages.txt"] {
            let path = dir.join(name);
            let Ok(bytes) = fs::read(&path) else { continue };
            let file =
                PackagesFile::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!file.stanzas.is_empty());
            assert!(
                file.to_bytes() == bytes,
                "{} does not write back",
                path.display()
            );
            for s in &file.stanzas {
                for f in ["Package", "Version", "Architecture"] {
                    assert!(s.get(f).is_some(), "{}: stanza without {f}", path.display());
                }
            }
            checked += 1;
        }
        // Packages.gz holds the same stanzas.
        let gz = fs::read(dir.join("Packages.gz")).unwrap();
        let from_gz = PackagesFile::parse_gz(&gz, &Limits::default()).unwrap();
        let plain = fs::read(dir.join("Packages"))
            .or_else(|_| fs::read(dir.join("Packages.txt")))
            .unwrap();
        assert_eq!(from_gz.to_bytes(), plain, "{}", dir.display());
    }
    assert!(checked >= 13, "checked {checked}");
}

/// The published stanzas of a feed folder's `Packages.manifest`, by Filename.
fn manifest(dir: &Path) -> BTreeMap<String, Paragraph> {
    let bytes = fs::read(dir.join("Packages.manifest")).unwrap();
    PackagesFile::parse(&bytes)
        .unwrap()
        .stanzas
        .into_iter()
        .map(|s| (s.get("Filename").unwrap().to_string(), s))
        .collect()
}

/// Our stanza of every `.ipk` in a feed folder, by file name.
fn built(dir: &Path, prefix: &str) -> BTreeMap<String, Paragraph> {
    let mut ipks = Vec::new();
    files_with_ext(dir, "ipk", &mut ipks);
    ipks.iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let pkg = Package::open(p, &ReadOptions::default()).unwrap();
            let stanza =
                index::stanza_for(&pkg, &format!("{prefix}{name}"), Default::default()).unwrap();
            (format!("{prefix}{name}"), stanza)
        })
        .collect()
}

fn feed_dir(real: &Path, prefix: &str) -> PathBuf {
    fs::read_dir(real.join("feeds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .unwrap()
}

#[test]
fn stangri_stanzas_equal_the_published_manifest() {
    let Some(real) = common::real_dir() else {
        return;
    };
    let dir = feed_dir(&real, "stangri+");
    let published = manifest(&dir);
    let ours = built(&dir, "");
    assert_eq!(ours.len(), 31);
    assert_eq!(
        published.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    for (name, stanza) in &ours {
        assert_eq!(stanza.to_text(), published[name].to_text(), "{name}");
    }
}

/// The fields whose values differ between two stanzas.
fn differing_fields(a: &Paragraph, b: &Paragraph) -> Vec<String> {
    let mut names: Vec<String> = a
        .fields()
        .chain(b.fields())
        .map(|f| f.name().to_string())
        .collect();
    names.sort();
    names.dedup();
    names.retain(|n| a.field(n).map(|f| f.raw()) != b.field(n).map(|f| f.raw()));
    names
}

#[test]
fn up_n_atom_differs_exactly_where_known_stale() {
    let Some(real) = common::real_dir() else {
        return;
    };
    let dir = feed_dir(&real, "up-n-atom+");
    let published = manifest(&dir);
    // Every published Filename carries a `staging_dir/repo/` prefix that does not exist here.
    for name in published.keys() {
        assert!(name.starts_with("staging_dir/repo/"), "{name}");
        assert!(!dir.join(name).exists());
    }
    let ours = built(&dir, "staging_dir/repo/");
    assert_eq!(
        published.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    let mut diffs = BTreeMap::new();
    for (name, stanza) in &ours {
        diffs.insert(name.as_str(), differing_fields(stanza, &published[name]));
    }
    assert_eq!(
        diffs,
        BTreeMap::from([
            ("staging_dir/repo/kmod-bnx2x_5.10.138-1_x86_64.ipk", vec![]),
            (
                "staging_dir/repo/kmod-bnx2x_5.4.188-1_x86_64.ipk",
                vec![
                    "Installed-Size".to_string(),
                    "SHA256sum".into(),
                    "Size".into()
                ]
            ),
        ])
    );
}

#[test]
fn garycannex_differs_exactly_where_known() {
    let Some(real) = common::real_dir() else {
        return;
    };
    let dir = feed_dir(&real, "GaryCannex+");
    let published = manifest(&dir);
    let ours = built(&dir, "");
    let missing: Vec<_> = published
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .collect();
    let unindexed: Vec<_> = ours
        .keys()
        .filter(|k| !published.contains_key(*k))
        .collect();
    assert_eq!(missing, ["domoticz_3.8153-4_mipsel_24kc.ipk"]);
    let mut diffs = BTreeMap::new();
    for (name, stanza) in &ours {
        if let Some(p) = published.get(name) {
            let d = differing_fields(stanza, p);
            if !d.is_empty() {
                diffs.insert(name.clone(), d);
            }
        }
    }
    eprintln!("unindexed: {unindexed:?}\ndiffs: {diffs:?}");
    assert!(unindexed.is_empty());
    assert!(diffs.is_empty());
}
