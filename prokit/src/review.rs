//! The permission review: what a package will do to a root beyond placing plain files, read
//! from the verified package file itself (never from the index alone), before anything is
//! unpacked. `prokit review`, `prokit install --review` and the policy (`policy.rs`) all
//! work from it (docs/trust-model.md §10).
//!
//! A package "requests permissions" when it carries maintainer scripts, setuid/setgid
//! files, device nodes or FIFOs, files outside the usual trees, files another installed
//! package owns, services, or user and group changes. Conffiles and the installed size are
//! listed too, for the reader, but are not permissions.

use std::path::Path;

use feeds::package::{DataEntry, PackageError, ReadOptions, read_package_file_nofollow};
use serde::Serialize;

use crate::status::FileKind;
use crate::unpack::{normalize_name, trust_reason};

/// The trees a package's files usually live in; anything else is listed as "outside".
pub const USUAL_TREES: [&str; 6] = ["/etc", "/usr", "/lib", "/www", "/bin", "/sbin"];

/// Words in a maintainer script that add users or groups (shadow-utils, busybox, and
/// OpenWrt's `/lib/functions.sh`).
const USER_COMMANDS: [&str; 6] = [
    "useradd",
    "adduser",
    "groupadd",
    "addgroup",
    "user_add",
    "group_add",
];

/// A maintainer script the package carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Script {
    /// `preinst`, `postinst`, `prerm`, `postrm`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its text (lossy UTF-8).
    pub text: String,
}

/// A special file: a setuid/setgid file, or a device node or FIFO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Special {
    pub path: String,
    /// `setuid`, `setgid`, `setuid+setgid`, `character device`, `block device`, `fifo`.
    pub what: String,
    /// The permission bits, octal (`4755`).
    pub mode: String,
}

/// A file another installed package owns today, which this package would take over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Takeover {
    pub path: String,
    /// The package that owns it now.
    pub owner: String,
}

/// What one package will do, as `prokit review` prints it and `--json` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The feed that offered it.
    pub feed: String,
    /// The package file's SHA-256 (as verified against the signed index).
    pub sha256: String,
    /// The feed key that signed the index listing it.
    pub feed_key: Option<String>,
    /// The developer key whose signature over the file verified.
    pub developer_key: Option<String>,
    pub scripts: Vec<Script>,
    /// setuid/setgid files.
    pub setid: Vec<Special>,
    /// Device nodes and FIFOs.
    pub devices: Vec<Special>,
    /// Files outside [`USUAL_TREES`].
    pub outside: Vec<String>,
    pub conffiles: Vec<String>,
    pub takes_over: Vec<Takeover>,
    /// Services it adds: `/etc/init.d/*`, `/etc/rc.d/*`, systemd units.
    pub services: Vec<String>,
    /// Users and groups it declares or creates: the `Require-User` field, shipped
    /// `/etc/passwd`, `/etc/group` or `/etc/shadow`, scripts that add users or groups.
    pub users: Vec<String>,
    /// Scripts OpenWrt runs as root at the next boot (`/etc/uci-defaults/*`): maintainer
    /// scripts by another name, and judged as such by `deny scripts`.
    pub boot_scripts: Vec<String>,
    /// Files that would change which feeds and keys are trusted, or the install policy
    /// (installed only for the configured keyring package or with `--allow-trust-changes`).
    pub trust_changes: Vec<String>,
    /// Non-directory entries in the data archive.
    pub files: usize,
    /// Bytes of regular files (the data archive's own count, not the index's).
    pub installed_size: u64,
}

impl Review {
    /// True when the package asks for anything beyond placing plain files (what makes
    /// `install` ask before going on).
    pub fn requests_permissions(&self) -> bool {
        !(self.scripts.is_empty()
            && self.setid.is_empty()
            && self.devices.is_empty()
            && self.outside.is_empty()
            && self.takes_over.is_empty()
            && self.services.is_empty()
            && self.users.is_empty()
            && self.boot_scripts.is_empty()
            && self.trust_changes.is_empty())
    }
}

/// Where a package under review came from and who vouched for it.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub feed: String,
    pub feed_key: Option<String>,
    pub developer_key: Option<String>,
}

/// Reads the package at `path` and lists what it will do. `owner_of` names the installed
/// package that owns a path today (for takeovers); `None` for paths nobody owns.
/// The paths (not directories) the package file at `path` installs, as unpacking names
/// them.
pub fn package_paths(
    path: &Path,
) -> Result<std::collections::BTreeSet<String>, feeds::package::PackageFileError> {
    let mut out = std::collections::BTreeSet::new();
    let mut visit = |data: &mut feeds::package::DataTar<'_>| -> Result<(), PackageError> {
        data.for_each_entry(|e: &mut DataEntry<'_, '_>| -> Result<(), PackageError> {
            if e.header().entry_type() == tar::EntryType::Directory {
                return Ok(());
            }
            if let Ok(Some(p)) = normalize_name(&e.path_bytes()) {
                out.insert(p);
            }
            Ok(())
        })?;
        Ok(())
    };
    read_package_file_nofollow(path, &ReadOptions::default(), Some(&mut visit))?;
    Ok(out)
}

pub fn review_package(
    path: &Path,
    provenance: &Provenance,
    owner_of: &dyn Fn(&str) -> Option<String>,
) -> Result<Review, feeds::package::PackageFileError> {
    let mut entries: Vec<(String, tar::EntryType, u32, u64)> = Vec::new();
    let mut visit = |data: &mut feeds::package::DataTar<'_>| -> Result<(), PackageError> {
        data.for_each_entry(|e: &mut DataEntry<'_, '_>| -> Result<(), PackageError> {
            let raw = e.path_bytes().into_owned();
            let header = e.header();
            let kind = header.entry_type();
            let mode = header.mode().unwrap_or(0) & 0o7777;
            let size = header.size().unwrap_or(0);
            // A name install would refuse is shown as it is; install names the reason.
            let path = match normalize_name(&raw) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(_) => format!("/{}", String::from_utf8_lossy(&raw)),
            };
            entries.push((path, kind, mode, size));
            Ok(())
        })?;
        Ok(())
    };
    let pkg = read_package_file_nofollow(path, &ReadOptions::default(), Some(&mut visit))?;
    let mut r = Review {
        name: pkg.name().to_string(),
        version: pkg.version().to_string(),
        architecture: pkg.architecture().to_string(),
        feed: provenance.feed.clone(),
        sha256: pkg.sha256_hex(),
        feed_key: provenance.feed_key.clone(),
        developer_key: provenance.developer_key.clone(),
        scripts: Vec::new(),
        setid: Vec::new(),
        devices: Vec::new(),
        outside: Vec::new(),
        conffiles: pkg.conffiles(),
        takes_over: Vec::new(),
        services: Vec::new(),
        users: Vec::new(),
        boot_scripts: Vec::new(),
        trust_changes: Vec::new(),
        files: 0,
        installed_size: 0,
    };
    for name in pkg.scripts() {
        let m = pkg.control_file(name).expect("listed by scripts()");
        let text = String::from_utf8_lossy(&m.data).into_owned();
        for word in USER_COMMANDS {
            if mentions_command(&text, word) {
                r.users.push(format!("{name} runs {word}"));
            }
        }
        r.scripts.push(Script {
            name: name.to_string(),
            size: m.data.len() as u64,
            text,
        });
    }
    if let Some(u) = pkg.control.get("Require-User") {
        let u = u.trim();
        if !u.is_empty() {
            r.users.insert(0, format!("Require-User: {u}"));
        }
    }
    for (path, kind, mode, size) in entries {
        use tar::EntryType as T;
        if kind == T::Directory {
            // A setgid (or setuid) directory is refused at unpacking like a file.
            if mode & 0o6000 != 0 {
                r.setid.push(Special {
                    path,
                    what: "setgid/setuid directory".into(),
                    mode: format!("{mode:o}"),
                });
            }
            continue;
        }
        r.files += 1;
        if matches!(kind, T::Regular | T::Continuous) {
            r.installed_size += size;
        }
        let special = match kind {
            T::Char => Some("character device"),
            T::Block => Some("block device"),
            T::Fifo => Some("fifo"),
            _ => None,
        };
        if let Some(what) = special {
            r.devices.push(Special {
                path: path.clone(),
                what: what.into(),
                mode: format!("{mode:o}"),
            });
        } else if mode & 0o6000 != 0 {
            let what = match (mode & 0o4000 != 0, mode & 0o2000 != 0) {
                (true, true) => "setuid+setgid",
                (true, false) => "setuid",
                _ => "setgid",
            };
            r.setid.push(Special {
                path: path.clone(),
                what: what.into(),
                mode: format!("{mode:o}"),
            });
        }
        if !USUAL_TREES.iter().any(|t| under(&path, t)) {
            r.outside.push(path.clone());
        }
        if is_service(&path) {
            r.services.push(path.clone());
        }
        if path
            .strip_prefix("/etc/uci-defaults/")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        {
            r.boot_scripts.push(path.clone());
        }
        let file_kind = match kind {
            T::Symlink => FileKind::Symlink,
            _ => FileKind::File,
        };
        if trust_reason(&path, file_kind).is_some() {
            r.trust_changes.push(path.clone());
        }
        if matches!(
            path.as_str(),
            "/etc/passwd" | "/etc/group" | "/etc/shadow" | "/etc/gshadow"
        ) {
            r.users.push(format!("ships {path}"));
        }
        if let Some(owner) = owner_of(&path).filter(|o| *o != r.name) {
            r.takes_over.push(Takeover { path, owner });
        }
    }
    Ok(r)
}

/// `path` is `tree` or below it.
fn under(path: &str, tree: &str) -> bool {
    path.strip_prefix(tree)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn is_service(path: &str) -> bool {
    let in_dir = |dir: &str| {
        path.strip_prefix(dir)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
    };
    in_dir("/etc/init.d/")
        || in_dir("/etc/rc.d/")
        || [
            "/lib/systemd/system/",
            "/usr/lib/systemd/system/",
            "/etc/systemd/system/",
        ]
        .iter()
        .any(|d| in_dir(d) && (path.ends_with(".service") || path.ends_with(".socket")))
}

/// `word` appears in `text` as a command word (not inside a longer word).
fn mentions_command(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The review as text for a terminal: one block per package. `verbose` adds each script's
/// text.
/// Text from a package, fit for a terminal: control characters (an escape sequence could
/// hide lines above the question), bidirectional and zero-width characters escaped.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let hidden = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        if (c.is_control() && c != '\t') || hidden {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn render(r: &Review, verbose: bool) -> String {
    use std::fmt::Write;
    let r = &cleaned(r);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} ({}) from feed {:?}: {} files, {}",
        r.name,
        r.version,
        r.architecture,
        r.feed,
        r.files,
        human_size(r.installed_size)
    );
    let key = |k: &Option<String>| k.as_deref().unwrap_or("none").to_string();
    let _ = writeln!(
        s,
        "  vouched for by feed key {}, developer key {}",
        key(&r.feed_key),
        key(&r.developer_key)
    );
    if !r.requests_permissions() {
        let _ = writeln!(s, "  requests nothing beyond placing plain files");
    }
    for sc in &r.scripts {
        let _ = writeln!(s, "  runs script {} ({} bytes)", sc.name, sc.size);
        if verbose {
            for line in sc.text.lines() {
                let _ = writeln!(s, "    | {line}");
            }
        }
    }
    for x in r.setid.iter().chain(&r.devices) {
        let _ = writeln!(s, "  {} {} (mode {})", x.what, x.path, x.mode);
    }
    for p in &r.outside {
        let _ = writeln!(s, "  file outside {}: {p}", USUAL_TREES.join(" "));
    }
    for t in &r.takes_over {
        let _ = writeln!(s, "  takes over {} from {}", t.path, t.owner);
    }
    for p in &r.services {
        let _ = writeln!(s, "  adds service {p}");
    }
    for u in &r.users {
        let _ = writeln!(s, "  users/groups: {u}");
    }
    for p in &r.boot_scripts {
        let _ = writeln!(s, "  runs at the next boot: {p}");
    }
    for p in &r.trust_changes {
        let _ = writeln!(s, "  changes trust: {p}");
    }
    for c in &r.conffiles {
        let _ = writeln!(s, "  conffile {c}");
    }
    s
}

/// Every text of `r` through [`clean`].
fn cleaned(r: &Review) -> Review {
    let list = |v: &[String]| v.iter().map(|x| clean(x)).collect::<Vec<_>>();
    let special = |v: &[Special]| {
        v.iter()
            .map(|x| Special {
                path: clean(&x.path),
                what: x.what.clone(),
                mode: x.mode.clone(),
            })
            .collect::<Vec<_>>()
    };
    Review {
        name: clean(&r.name),
        version: clean(&r.version),
        architecture: clean(&r.architecture),
        scripts: r
            .scripts
            .iter()
            .map(|x| Script {
                name: x.name.clone(),
                size: x.size,
                text: x.text.lines().map(clean).collect::<Vec<_>>().join("\n"),
            })
            .collect(),
        setid: special(&r.setid),
        devices: special(&r.devices),
        outside: list(&r.outside),
        conffiles: list(&r.conffiles),
        takes_over: r
            .takes_over
            .iter()
            .map(|t| Takeover {
                path: clean(&t.path),
                owner: clean(&t.owner),
            })
            .collect(),
        services: list(&r.services),
        users: list(&r.users),
        boot_scripts: list(&r.boot_scripts),
        trust_changes: list(&r.trust_changes),
        ..r.clone()
    }
}

fn human_size(n: u64) -> String {
    if n >= 10 * 1024 * 1024 {
        format!("{} MiB", n / (1024 * 1024))
    } else if n >= 10 * 1024 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::test_support::{Raw, control, raw_ipk, write_raw};

    fn fixture(dir: &Path) -> std::path::PathBuf {
        let ctl = control("everything", "1.0", "Require-User: ntp=123:ntp=123\n");
        let path = dir.join("everything.ipk");
        let bytes = raw_ipk(
            &ctl,
            &[
                ("postinst", 0o755, b"#!/bin/sh\nuser_add ntp 123\n"),
                ("conffiles", 0o644, b"/etc/config/everything\n"),
            ],
            &[
                Raw::Dir("./usr/", 0o755),
                Raw::File("./usr/bin/plain", 0o755, b"x"),
                Raw::File("./usr/bin/su", 0o4755, b"su"),
                Raw::File("./usr/bin/wall", 0o2755, b"wall"),
                Raw::Node("./dev/console", tar::EntryType::Char, 0o600),
                Raw::Node("./dev/fifo", tar::EntryType::Fifo, 0o600),
                Raw::File("./opt/thing/data", 0o644, b"d"),
                Raw::File("./etc/init.d/everything", 0o755, b"#!/bin/sh"),
                Raw::File("./etc/config/everything", 0o644, b"c"),
                Raw::File("./usr/share/shared", 0o644, b"s"),
            ],
        );
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_package_carrying_every_permission_lists_each() {
        let t = tempfile::tempdir().unwrap();
        let path = fixture(t.path());
        let owner = |p: &str| (p == "/usr/share/shared").then(|| "other".to_string());
        let r = review_package(&path, &Provenance::default(), &owner).unwrap();
        assert_eq!(r.name, "everything");
        assert_eq!(
            r.scripts
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["postinst"]
        );
        let setid: Vec<_> = r.setid.iter().map(|s| (&*s.path, &*s.what)).collect();
        assert_eq!(
            setid,
            [("/usr/bin/su", "setuid"), ("/usr/bin/wall", "setgid")]
        );
        let dev: Vec<_> = r.devices.iter().map(|s| (&*s.path, &*s.what)).collect();
        assert_eq!(
            dev,
            [("/dev/console", "character device"), ("/dev/fifo", "fifo")]
        );
        assert_eq!(r.outside, ["/dev/console", "/dev/fifo", "/opt/thing/data"]);
        assert_eq!(r.services, ["/etc/init.d/everything"]);
        assert_eq!(r.conffiles, ["/etc/config/everything"]);
        assert_eq!(
            r.takes_over,
            [Takeover {
                path: "/usr/share/shared".into(),
                owner: "other".into()
            }]
        );
        assert_eq!(
            r.users,
            ["Require-User: ntp=123:ntp=123", "postinst runs user_add"]
        );
        assert_eq!(r.files, 9);
        assert!(r.requests_permissions());
        let text = render(&r, true);
        for needle in [
            "runs script postinst",
            "| user_add ntp 123",
            "setuid /usr/bin/su (mode 4755)",
            "character device /dev/console",
            "takes over /usr/share/shared from other",
            "adds service /etc/init.d/everything",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
    }

    #[test]
    fn plain_files_request_nothing() {
        let t = tempfile::tempdir().unwrap();
        let path = write_raw(
            t.path(),
            "plain.ipk",
            &control("plain", "1", ""),
            &[Raw::File("./usr/bin/plain", 0o755, b"x")],
        );
        let r = review_package(&path, &Provenance::default(), &|_| None).unwrap();
        assert!(!r.requests_permissions(), "{r:?}");
        assert!(render(&r, false).contains("requests nothing beyond placing plain files"));
    }

    #[test]
    fn package_text_cannot_steer_the_terminal() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("esc.ipk");
        let bytes = raw_ipk(
            &control("esc", "1", ""),
            &[("postinst", 0o755, b"#!/bin/sh\n\x1b[1A\x1b[2Khidden\n")],
            &[
                Raw::File("./etc/uci-defaults/90-esc", 0o755, b"x"),
                Raw::File("./etc/opkg/keys/0123456789abcdef", 0o644, b"k"),
                Raw::Dir("./usr/share/esc/", 0o2755),
            ],
        );
        std::fs::write(&path, bytes).unwrap();
        let r = review_package(&path, &Provenance::default(), &|_| None).unwrap();
        assert_eq!(r.boot_scripts, ["/etc/uci-defaults/90-esc"]);
        assert_eq!(r.trust_changes, ["/etc/opkg/keys/0123456789abcdef"]);
        assert_eq!(r.setid[0].path, "/usr/share/esc");
        let text = render(&r, true);
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.contains("\\u{1b}[1A"), "{text}");
        assert!(text.contains("runs at the next boot: /etc/uci-defaults/90-esc"));
        assert!(text.contains("changes trust: /etc/opkg/keys/0123456789abcdef"));
    }

    #[test]
    fn command_words_are_whole_words() {
        assert!(mentions_command("x; useradd -r foo", "useradd"));
        assert!(!mentions_command("# no_useradd here", "useradd"));
        assert!(!mentions_command("adduser2", "adduser"));
    }
}
