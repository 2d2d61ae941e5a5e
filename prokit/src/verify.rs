//! `prokit verify`: checks an installed root against what was recorded at install time.
//!
//! Every regular file is hashed (SHA-256) and compared with the hash in prokit's sidecar
//! (`info/<pkg>.sha256`), every symlink's target is compared with the recorded one, every
//! directory and node must still be one; paths that are gone are reported as missing.
//!
//! Conffiles (the `Conffiles` of the status stanza) are compared with the hash the status
//! file records for them — SHA-256 or MD5, whichever it holds, as opkg-lede's
//! `conffile_has_been_modified` does (`libopkg/conffile.c` lines 53–57) — so a root that opkg
//! also manages gives the same answer as `opkg list-changed-conffiles`. A changed or deleted
//! conffile is reported separately and does not make the check fail: changing configuration
//! is what they are for.
//!
//! Files that a package lists but prokit holds no record of (opkg installed or upgraded the
//! package: it writes no sidecar, and `opkg upgrade` deletes prokit's) cannot be verified.
//! They are counted apart as "not verifiable", never as checked; only their presence is
//! known. [`package_records`] makes the missing records from the package file itself, which
//! `prokit verify --from-feed` fetches through the verified index.
//!
//! Nothing is followed through a symlink: a path whose parent directory is no longer a real
//! directory (replaced by a symlink, say to `/`) counts as missing, and nothing outside the
//! root is read.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::Path;

use feeds::package::{Package, PackageFileError, ReadOptions, read_package_file_nofollow};
use sha2::{Digest, Sha256};

use crate::status::{Db, FileKind, FileRecord, StatusError};
use crate::unpack::{Parent, RootDirs, UnpackError, conffile_modified_at, normalize_name};

/// What `verify` found. Each list holds (package, path) pairs, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Files, symlinks and nodes checked against a record (directories not included).
    pub checked: usize,
    /// Directories checked (that they still are directories).
    pub dirs: usize,
    /// Files whose contents, type or symlink target changed.
    pub changed: Vec<(String, String)>,
    /// Paths that are gone.
    pub missing: Vec<(String, String)>,
    /// Conffiles that were changed or deleted (reported, not a failure).
    pub conffiles_changed: Vec<(String, String)>,
    /// Present files with no record to check them against (installed by another tool).
    pub unverifiable: Vec<(String, String)>,
}

impl VerifyReport {
    /// True when nothing changed or went missing (conffile changes do not count). Files that
    /// could not be verified do not count either: see [`VerifyReport::complete`].
    pub fn ok(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty()
    }

    /// True when every file had a record to be checked against.
    pub fn complete(&self) -> bool {
        self.unverifiable.is_empty()
    }

    /// The packages that have files without a record, sorted.
    pub fn unverifiable_packages(&self) -> Vec<String> {
        let mut v: Vec<String> = self.unverifiable.iter().map(|(p, _)| p.clone()).collect();
        v.dedup();
        v
    }
}

enum Outcome {
    Same,
    Changed,
    Missing,
    Unverifiable,
}

/// A failure of the descriptor walk, as the database error `verify` reports.
fn walk_err(root: &Path) -> impl Fn(UnpackError) -> StatusError + '_ {
    move |e| match e {
        UnpackError::Io { path, source } => StatusError::Io { path, source },
        other => StatusError::Io {
            path: root.to_path_buf(),
            source: io::Error::other(other.to_string()),
        },
    }
}

/// Checks every installed package, or only those named in `only` (each must be installed).
pub fn verify(db: &Db, only: Option<&[String]>) -> Result<VerifyReport, StatusError> {
    let names = selected(db, only)?;
    let mut report = VerifyReport::default();
    // Every path is reached through its directory's descriptor, walked from the root
    // without following a symlink (the install journal's own walker).
    let dirs = RootDirs::open(db.root()).map_err(walk_err(db.root()))?;
    let err = walk_err(db.root());
    for name in &names {
        let conffiles: HashMap<String, String> = db
            .conffiles(name)?
            .into_iter()
            .filter(|(_, h)| matches!(h.len(), 32 | 64) && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        for r in db.files(name)? {
            // A parent that is no longer a real directory: nothing there is followed.
            let meta = match dirs.check_parent(&r.path).map_err(&err)? {
                Parent::Real => dirs.lstat(&r.path).map_err(&err)?,
                Parent::Missing | Parent::Blocked { .. } => None,
            };
            let entry = (name.clone(), r.path.clone());
            if let Some(recorded) = conffiles.get(&r.path) {
                // The status file's hash is the reference, as for opkg.
                let modified = match &meta {
                    None => true,
                    Some(_) => conffile_modified_at(&dirs, &r.path, recorded).map_err(&err)?,
                };
                if modified {
                    report.conffiles_changed.push(entry);
                } else {
                    report.checked += 1;
                }
                continue;
            }
            let outcome = match (&meta, r.kind) {
                (None, _) => Outcome::Missing,
                (Some(m), FileKind::File) => {
                    if !m.is_file() {
                        Outcome::Changed
                    } else {
                        match &r.sha256 {
                            Some(want) => {
                                let got = dirs.digest::<Sha256>(&r.path).map_err(&err)?;
                                if got.as_ref() == Some(want) {
                                    Outcome::Same
                                } else {
                                    Outcome::Changed
                                }
                            }
                            None => Outcome::Unverifiable,
                        }
                    }
                }
                (Some(m), FileKind::Symlink) => {
                    if !m.is_symlink() {
                        Outcome::Changed
                    } else {
                        let got = dirs.read_link(&r.path).map_err(&err)?.unwrap_or_default();
                        if Some(String::from_utf8_lossy(&got).as_ref()) == r.link_target.as_deref()
                        {
                            Outcome::Same
                        } else {
                            Outcome::Changed
                        }
                    }
                }
                (Some(m), FileKind::Dir) => {
                    if m.is_dir() {
                        report.dirs += 1;
                        continue;
                    }
                    Outcome::Changed
                }
                (Some(m), FileKind::Special) => {
                    if m.is_file() || m.is_dir() || m.is_symlink() {
                        Outcome::Changed
                    } else {
                        Outcome::Same
                    }
                }
                (Some(m), FileKind::Unknown) if m.is_dir() => {
                    report.dirs += 1;
                    continue;
                }
                (Some(_), FileKind::Unknown) => Outcome::Unverifiable,
            };
            match outcome {
                Outcome::Same => report.checked += 1,
                Outcome::Changed => report.changed.push(entry),
                Outcome::Missing => report.missing.push(entry),
                Outcome::Unverifiable => report.unverifiable.push(entry),
            }
        }
    }
    report.changed.sort();
    report.missing.sort();
    report.conffiles_changed.sort();
    report.unverifiable.sort();
    Ok(report)
}

/// The installed packages `only` names (each must be installed), or all; sorted.
pub fn selected(db: &Db, only: Option<&[String]>) -> Result<Vec<String>, StatusError> {
    Ok(match only {
        Some(names) => {
            for n in names {
                if !db.has(n) {
                    return Err(StatusError::NotInstalled(n.clone()));
                }
            }
            let mut v = names.to_vec();
            v.sort();
            v.dedup();
            v
        }
        None => db.package_names().map(str::to_string).collect(),
    })
}

/// Why the records of a package file could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    Package(#[from] PackageFileError),
    #[error("{file}: entry {entry:?}: {reason}")]
    Entry {
        file: String,
        entry: String,
        reason: String,
    },
}

/// What a package file installs, as the records prokit keeps in its sidecar: every entry of
/// its data tar with kind, mode, the SHA-256 of each regular file (a hard link gets its
/// target's) and each symlink's target. Reads the file once; writes nothing.
pub fn package_records(file: &Path) -> Result<(Package, Vec<FileRecord>), RecordsError> {
    let label = file.display().to_string();
    let mut records: Vec<FileRecord> = Vec::new();
    let mut failure: Option<RecordsError> = None;
    let read = {
        let mut visit = |tar: &mut feeds::package::DataTar<'_>| {
            let mut hashes: HashMap<String, String> = HashMap::new();
            let mut seen: HashSet<String> = HashSet::new();
            let mut buf = vec![0u8; 64 * 1024];
            tar.for_each_entry(|e| {
                let refuse = |entry: &str, reason: String| RecordsError::Entry {
                    file: label.clone(),
                    entry: entry.to_string(),
                    reason,
                };
                let raw = e.path_bytes().into_owned();
                let shown = String::from_utf8_lossy(&raw).into_owned();
                let etype = e.header().entry_type();
                let mode = e.header().mode().unwrap_or(0) & 0o7777;
                let path = match normalize_name(&raw) {
                    Ok(Some(p)) => p,
                    Ok(None) => return Ok(()),
                    Err(reason) => {
                        failure = Some(refuse(&shown, reason));
                        return Err(io::Error::other("stopped"));
                    }
                };
                let mut rec = FileRecord {
                    path: path.clone(),
                    kind: FileKind::File,
                    sha256: None,
                    link_target: None,
                    mode: Some(mode),
                };
                match etype {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        let mut d = Sha256::new();
                        loop {
                            let n = e.read(&mut buf)?;
                            if n == 0 {
                                break;
                            }
                            d.update(&buf[..n]);
                        }
                        let h = hex::encode(d.finalize());
                        hashes.insert(path.clone(), h.clone());
                        rec.sha256 = Some(h);
                    }
                    tar::EntryType::Link => {
                        let target = e
                            .link_name_bytes()
                            .and_then(|l| normalize_name(&l).ok().flatten());
                        match target.and_then(|t| hashes.get(&t).cloned()) {
                            Some(h) => rec.sha256 = Some(h),
                            None => {
                                failure = Some(refuse(
                                    &shown,
                                    "hard link to no regular file earlier in the archive".into(),
                                ));
                                return Err(io::Error::other("stopped"));
                            }
                        }
                    }
                    tar::EntryType::Symlink => {
                        rec.kind = FileKind::Symlink;
                        rec.link_target = e
                            .link_name_bytes()
                            .map(|l| String::from_utf8_lossy(&l).into_owned());
                    }
                    tar::EntryType::Directory => rec.kind = FileKind::Dir,
                    tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                        rec.kind = FileKind::Special
                    }
                    tar::EntryType::XGlobalHeader => return Ok(()),
                    other => {
                        failure = Some(refuse(
                            &shown,
                            format!("unsupported entry type {:?}", other.as_byte() as char),
                        ));
                        return Err(io::Error::other("stopped"));
                    }
                }
                if !seen.insert(path) {
                    failure = Some(refuse(&shown, "appears twice in the archive".into()));
                    return Err(io::Error::other("stopped"));
                }
                records.push(rec);
                Ok(())
            })
            .map(|_| ())
        };
        read_package_file_nofollow(file, &ReadOptions::default(), Some(&mut visit))
    };
    match read {
        Ok(p) => Ok((p, records)),
        Err(e) => Err(failure.unwrap_or(RecordsError::Package(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::{ScriptMode, install};
    use crate::unpack::test_support::*;
    use feeds::build::PackageBuilder;
    use std::fs;

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, Db) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let foo = write_pkg(
            tmp.path(),
            "foo_1_all.ipk",
            PackageBuilder::new(control("foo", "1", ""))
                .dir("usr/share/foo", 0o755)
                .file("usr/bin/foo", 0o755, "foo")
                .file("usr/share/foo/data", 0o644, "data")
                .symlink("usr/bin/f", "foo")
                .file("etc/foo.conf", 0o644, "conf")
                .control_file("conffiles", 0o644, "/etc/foo.conf\n"),
        );
        let bar = write_pkg(
            tmp.path(),
            "bar_1_all.ipk",
            PackageBuilder::new(control("bar", "1", "")).file("usr/bin/bar", 0o755, "bar"),
        );
        let mut db = open(&root);
        install(&mut db, &foo, false, &opts(ScriptMode::Skip)).unwrap();
        install(&mut db, &bar, false, &opts(ScriptMode::Skip)).unwrap();
        (tmp, root, db)
    }

    #[test]
    fn verify_of_an_untouched_root_is_ok() {
        let (_t, _root, db) = setup();
        let r = verify(&db, None).unwrap();
        assert!(r.ok(), "{r:?}");
        // foo: 4 paths (the conffile checked against the status file's hash) and 5
        // directories (/etc, /usr, /usr/bin, /usr/share, /usr/share/foo); bar: 1 path and 2
        // directories. Directories are counted apart.
        assert_eq!((r.checked, r.dirs), (5, 7), "{r:?}");
        assert!(r.conffiles_changed.is_empty());
        assert!(r.complete(), "{r:?}");
    }

    #[test]
    fn verify_reports_changed_missing_and_conffiles_separately() {
        let (_t, root, db) = setup();
        fs::write(root.join("usr/bin/foo"), "tampered").unwrap();
        fs::remove_file(root.join("usr/share/foo/data")).unwrap();
        fs::remove_file(root.join("usr/bin/f")).unwrap();
        std::os::unix::fs::symlink("/bin/evil", root.join("usr/bin/f")).unwrap();
        fs::write(root.join("etc/foo.conf"), "edited").unwrap();
        let r = verify(&db, None).unwrap();
        let pair = |p: &str| ("foo".to_string(), p.to_string());
        assert_eq!(r.changed, vec![pair("/usr/bin/f"), pair("/usr/bin/foo")]);
        assert_eq!(r.missing, vec![pair("/usr/share/foo/data")]);
        assert_eq!(r.conffiles_changed, vec![pair("/etc/foo.conf")]);
        assert!(!r.ok());
        // Only bar: untouched.
        let r = verify(&db, Some(&["bar".to_string()])).unwrap();
        assert!(r.ok() && r.checked >= 1, "{r:?}");
    }

    #[test]
    fn changed_conffile_alone_does_not_fail() {
        let (_t, root, db) = setup();
        fs::remove_file(root.join("etc/foo.conf")).unwrap();
        let r = verify(&db, None).unwrap();
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.conffiles_changed.len(), 1);
    }

    #[test]
    fn file_replaced_by_a_directory_or_symlink_is_changed() {
        let (_t, root, db) = setup();
        fs::remove_file(root.join("usr/bin/bar")).unwrap();
        fs::create_dir(root.join("usr/bin/bar")).unwrap();
        fs::remove_dir_all(root.join("usr/share/foo")).unwrap();
        std::os::unix::fs::symlink("/", root.join("usr/share/foo")).unwrap();
        let r = verify(&db, None).unwrap();
        assert!(
            r.changed.contains(&("bar".into(), "/usr/bin/bar".into())),
            "{r:?}"
        );
        assert!(
            r.changed.contains(&("foo".into(), "/usr/share/foo".into())),
            "{r:?}"
        );
        // Not followed through the symlink: the file below it counts as missing.
        assert!(
            r.missing
                .contains(&("foo".into(), "/usr/share/foo/data".into())),
            "{r:?}"
        );
    }

    #[test]
    fn verify_of_an_unknown_package_is_an_error() {
        let (_t, _root, db) = setup();
        let err = verify(&db, Some(&["nope".to_string()])).unwrap_err();
        assert!(
            matches!(err, StatusError::NotInstalled(ref n) if n == "nope"),
            "{err}"
        );
    }

    #[test]
    fn files_installed_by_opkg_are_not_verifiable_never_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let info = root.join("usr/lib/opkg/info");
        fs::create_dir_all(&info).unwrap();
        fs::write(
            root.join("usr/lib/opkg/status"),
            "Package: old\nVersion: 1\nStatus: install user installed\nArchitecture: all\n\n",
        )
        .unwrap();
        fs::write(info.join("old.list"), "/usr/sbin/old\n/usr/sbin/gone\n").unwrap();
        fs::create_dir_all(root.join("usr/sbin")).unwrap();
        fs::write(root.join("usr/sbin/old"), "x").unwrap();
        let db = open(root);
        let r = verify(&db, None).unwrap();
        assert_eq!(r.checked, 0, "{r:?}");
        assert_eq!(
            r.unverifiable,
            vec![("old".to_string(), "/usr/sbin/old".to_string())]
        );
        assert_eq!(
            r.missing,
            vec![("old".to_string(), "/usr/sbin/gone".to_string())]
        );
        assert!(r.changed.is_empty());
        assert!(!r.complete());
        assert_eq!(r.unverifiable_packages(), ["old"]);
    }

    /// A stanza as opkg-lede writes it for a package with a conffile: `Conffiles` lines of
    /// path and hash (`pkg_print_status`), SHA-256 since opkg-lede records it with
    /// `file_sha256sum_alloc` (`libopkg/opkg_install.c` line 1126), MD5 in older roots.
    fn opkg_root_with_conffile(hash_of: &dyn Fn(&[u8]) -> String) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let info = root.join("usr/lib/opkg/info");
        fs::create_dir_all(&info).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/cfg.conf"), "setting=1\n").unwrap();
        fs::write(
            root.join("usr/lib/opkg/status"),
            format!(
                "Package: cfg\nVersion: 1\nConffiles:\n /etc/cfg.conf {}\nStatus: install user installed\nArchitecture: all\n\n",
                hash_of(b"setting=1\n")
            ),
        )
        .unwrap();
        fs::write(info.join("cfg.list"), "/etc/cfg.conf\n").unwrap();
        tmp
    }

    #[test]
    fn conffiles_are_checked_against_the_status_file_hash_sha256_and_md5() {
        use md5::Md5;
        let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
        let md5 = |b: &[u8]| hex::encode(Md5::digest(b));
        for hash_of in [&sha as &dyn Fn(&[u8]) -> String, &md5] {
            let tmp = opkg_root_with_conffile(hash_of);
            let db = open(tmp.path());
            let r = verify(&db, None).unwrap();
            // No prokit record, but the status file's hash verifies the conffile.
            assert_eq!(r.checked, 1, "{r:?}");
            assert!(
                r.complete() && r.ok() && r.conffiles_changed.is_empty(),
                "{r:?}"
            );
            // An edit is seen, as `opkg list-changed-conffiles` sees it.
            fs::write(tmp.path().join("etc/cfg.conf"), "setting=2\n").unwrap();
            let r = verify(&db, None).unwrap();
            assert_eq!(
                r.conffiles_changed,
                vec![("cfg".to_string(), "/etc/cfg.conf".to_string())]
            );
            assert!(r.ok(), "a conffile edit is not a failure: {r:?}");
        }
    }

    #[test]
    fn a_parent_replaced_by_a_symlink_out_of_the_root_is_not_followed() {
        let (_t, root, db) = setup();
        // A file outside the root with exactly the recorded content: following the link
        // would call it unchanged.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("data"), "data").unwrap();
        fs::remove_dir_all(root.join("usr/share/foo")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("usr/share/foo")).unwrap();
        let r = verify(&db, None).unwrap();
        assert!(
            r.missing
                .contains(&("foo".into(), "/usr/share/foo/data".into())),
            "{r:?}"
        );
    }

    #[test]
    fn package_records_match_what_install_records() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let pkg = write_pkg(
            tmp.path(),
            "foo_1_all.ipk",
            PackageBuilder::new(control("foo", "1", ""))
                .dir("usr/share/foo", 0o755)
                .file("usr/bin/foo", 0o755, "foo")
                .symlink("usr/bin/f", "foo")
                .file("etc/foo.conf", 0o644, "conf")
                .control_file("conffiles", 0o644, "/etc/foo.conf\n"),
        );
        let mut db = open(&root);
        install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        let (p, mut made) = package_records(&pkg).unwrap();
        assert_eq!((p.name(), p.version()), ("foo", "1"));
        let mut recorded: Vec<FileRecord> = db
            .files("foo")
            .unwrap()
            .into_iter()
            .filter(|r| made.iter().any(|m| m.path == r.path))
            .collect();
        made.sort_by(|a, b| a.path.cmp(&b.path));
        recorded.sort_by(|a, b| a.path.cmp(&b.path));
        let key = |r: &FileRecord| {
            (
                r.path.clone(),
                r.kind,
                r.sha256.clone(),
                r.link_target.clone(),
            )
        };
        assert_eq!(
            made.iter().map(key).collect::<Vec<_>>(),
            recorded.iter().map(key).collect::<Vec<_>>()
        );
    }
}
