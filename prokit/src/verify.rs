//! `prokit verify`: checks an installed root against what was recorded at install time.
//!
//! Every regular file is hashed (SHA-256) and compared with the hash in prokit's sidecar
//! (`info/<pkg>.sha256`), every symlink's target is compared with the recorded one, every
//! directory and node must still be one; paths that are gone are reported as missing.
//! Conffiles (the `Conffiles` of the status stanza) are reported separately — changed or
//! deleted — and do not make the check fail: changing configuration is what they are for.
//! Paths listed by a package that prokit did not install (no sidecar: opkg installed it)
//! are only checked for presence. Nothing is followed through a symlink.

use std::collections::HashSet;
use std::fs;
use std::io;

use crate::status::{Db, FileKind, StatusError, io_err, join_root, sha256_file};

/// What `verify` found. Each list holds (package, path) pairs, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Paths checked.
    pub checked: usize,
    /// Files whose contents, type or symlink target changed.
    pub changed: Vec<(String, String)>,
    /// Paths that are gone.
    pub missing: Vec<(String, String)>,
    /// Conffiles that were changed or deleted (reported, not a failure).
    pub conffiles_changed: Vec<(String, String)>,
}

impl VerifyReport {
    /// True when nothing changed or went missing (conffile changes do not count).
    pub fn ok(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty()
    }
}

enum Outcome {
    Same,
    Changed,
    Missing,
}

/// Checks every installed package, or only those named in `only` (each must be installed).
pub fn verify(db: &Db, only: Option<&[String]>) -> Result<VerifyReport, StatusError> {
    let names: Vec<String> = match only {
        Some(names) => {
            for n in names {
                if db.get(n).is_none() {
                    return Err(StatusError::NotInstalled(n.clone()));
                }
            }
            let mut v = names.to_vec();
            v.sort();
            v.dedup();
            v
        }
        None => db
            .packages()
            .filter_map(|p| p.get("Package").map(str::to_string))
            .collect(),
    };
    let mut report = VerifyReport::default();
    for name in &names {
        let conffiles: HashSet<String> = db.conffiles(name).into_iter().map(|(p, _)| p).collect();
        for r in db.files(name)? {
            let full = join_root(db.root(), &r.path);
            report.checked += 1;
            let meta = match fs::symlink_metadata(&full) {
                Ok(m) => Some(m),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err(&full)(e)),
            };
            let outcome = match (&meta, r.kind) {
                (None, _) => Outcome::Missing,
                (Some(m), FileKind::File) => {
                    if !m.is_file() {
                        Outcome::Changed
                    } else {
                        match &r.sha256 {
                            Some(want) => {
                                let got = sha256_file(&full).map_err(io_err(&full))?;
                                if &got == want {
                                    Outcome::Same
                                } else {
                                    Outcome::Changed
                                }
                            }
                            None => Outcome::Same,
                        }
                    }
                }
                (Some(m), FileKind::Symlink) => {
                    if !m.file_type().is_symlink() {
                        Outcome::Changed
                    } else {
                        let got = fs::read_link(&full).map_err(io_err(&full))?;
                        if Some(got.to_string_lossy().as_ref()) == r.link_target.as_deref() {
                            Outcome::Same
                        } else {
                            Outcome::Changed
                        }
                    }
                }
                (Some(m), FileKind::Dir) => {
                    if m.is_dir() {
                        Outcome::Same
                    } else {
                        Outcome::Changed
                    }
                }
                (Some(m), FileKind::Special) => {
                    if m.is_file() || m.is_dir() || m.file_type().is_symlink() {
                        Outcome::Changed
                    } else {
                        Outcome::Same
                    }
                }
                (Some(_), FileKind::Unknown) => Outcome::Same,
            };
            let entry = (name.clone(), r.path.clone());
            match outcome {
                Outcome::Same => {}
                _ if conffiles.contains(&r.path) => report.conffiles_changed.push(entry),
                Outcome::Changed => report.changed.push(entry),
                Outcome::Missing => report.missing.push(entry),
            }
        }
    }
    report.changed.sort();
    report.missing.sort();
    report.conffiles_changed.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::{ScriptMode, install};
    use crate::unpack::test_support::*;
    use feeds::build::PackageBuilder;

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
        // foo: 4 paths and 5 directories (/etc, /usr, /usr/bin, /usr/share, /usr/share/foo);
        // bar: 1 path and 2 directories.
        assert_eq!(r.checked, 12, "{r:?}");
        assert!(r.conffiles_changed.is_empty());
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
    fn files_installed_by_opkg_are_checked_for_presence() {
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
        assert_eq!(r.checked, 2);
        assert_eq!(
            r.missing,
            vec![("old".to_string(), "/usr/sbin/gone".to_string())]
        );
        assert!(r.changed.is_empty());
    }
}
