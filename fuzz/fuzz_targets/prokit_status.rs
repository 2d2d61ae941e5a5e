//! prokit's installed database (opkg `status`, `info/<pkg>.list`, `info/<pkg>.sha256`):
//! `prokit::status::Db::open`, its only public parser entry point, over files written from the
//! input into a temporary root.
//!
//! The input is split on NUL bytes into up to three parts: the `status` file, then the `.list`
//! and the prokit sidecar (`.sha256`) of the first package whose name is a plain package name
//! (`a-z0-9+-._`, not starting with `.`). They are written to
//! `<tmp>/prokit-status-fuzz-<pid>/usr/lib/opkg/`, one fixed directory per process, reused and
//! overwritten on every run (left behind in the temporary directory when the fuzzer exits).
//!
//! Asserts: nothing panics — opening the database (parsing `status`), then for every stanza
//! `is_installed`, `conffiles_of`/`Db::conffiles` and `Db::files` (parsing `.list` and the
//! sidecar). Also: `Db::get` finds every stanza by its own `Package` name, and `files` of a
//! name that is not in the database is `NotInstalled`.
//!
//! Seeds: `seed.sh` writes status files like opkg-lede and prokit write them (with
//! Conffiles, Auto-Installed, not-installed states), a `.list` and a sidecar.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prokit::status::{Db, StatusError, conffiles_of, is_installed};

const DB_DIR: &str = "usr/lib/opkg";

fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("prokit-status-fuzz-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join(DB_DIR).join("info")).expect("create the fuzz root");
        root
    })
}

/// A name safe to use as a file name in `info/` (never leaves the directory).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    let dir = root.join(DB_DIR);
    let info = dir.join("info");
    // Start from an empty info/ every run.
    if let Ok(rd) = fs::read_dir(&info) {
        for e in rd.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
    let mut parts = data.splitn(3, |&b| b == 0);
    let status = parts.next().unwrap_or_default();
    let list = parts.next();
    let sidecar = parts.next();
    fs::write(dir.join("status"), status).expect("write status");

    // The extra files go to the first plain name in the input's Package lines.
    if list.is_some() {
        let text = String::from_utf8_lossy(status);
        let first = text
            .lines()
            .filter_map(|l| l.strip_prefix("Package:"))
            .map(str::trim)
            .find(|n| plain_name(n));
        if let Some(name) = first {
            if let Some(list) = list {
                fs::write(info.join(format!("{name}.list")), list).expect("write list");
            }
            if let Some(sidecar) = sidecar {
                fs::write(info.join(format!("{name}.sha256")), sidecar).expect("write sidecar");
            }
        }
    }

    let db = match Db::open(root, DB_DIR) {
        Ok(db) => db,
        Err(StatusError::Locked { path }) => panic!("fuzz root locked: {}", path.display()),
        Err(_) => return,
    };
    // The stanzas are read back from the database's scratch file: in this process, that
    // cannot fail.
    let stanzas: Vec<_> = db
        .packages()
        .map(|p| p.expect("a stanza read back").into_owned())
        .collect();
    let names: Vec<String> = stanzas
        .iter()
        .map(|p| p.get("Package").unwrap_or("").to_string())
        .collect();
    assert_eq!(db.package_names().collect::<Vec<_>>(), names);
    assert_eq!(db.package_count(), names.len());
    for (p, name) in stanzas.iter().zip(&names) {
        assert!(!name.is_empty(), "stanza without a Package name accepted");
        assert!(db.has(name));
        assert_eq!(
            db.get(name).expect("a stanza read back").as_deref(),
            Some(p),
            "stanza not found by its own name"
        );
        let _ = is_installed(p);
        assert_eq!(Some(conffiles_of(p)), db.conffiles(name).ok());
        if plain_name(name) {
            let _ = db.files(name);
        }
    }
    if !names.iter().any(|n| n == "not-a-package-name-in-the-db") {
        assert!(matches!(
            db.files("not-a-package-name-in-the-db"),
            Err(StatusError::NotInstalled(_))
        ));
    }
});
