//! The checks themselves: each reads part of the feed and records what is wrong as a
//! [`Finding`]; [`check_feed`] runs them in order and returns the [`Report`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use feeds::control::Paragraph;
use feeds::index::{self, IndexError, PackagesFile};
use feeds::limits::read_to_end_bounded;
use feeds::relation::{Alternatives, Op, Relation, parse_relations};
use feeds::release::{Release, format_date};
use feeds::usign::{self, Fingerprint, KeyDir, PublicKey, Signature};
use feeds::version::Version;
use sha2::{Digest, Sha256};

use super::{CheckError, CheckOptions, Finding, FindingKind, Report, Severity, Trust};

/// Checks the feed in `dir`. Every inconsistency is a [`Finding`] in the report; an error
/// is returned only when the check cannot start (no directory, no index, unusable key).
pub fn check_feed(dir: &Path, opts: &CheckOptions) -> Result<Report, CheckError> {
    let root = dir.canonicalize().map_err(|source| CheckError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    if !root.is_dir() {
        return Err(CheckError::NotADirectory(dir.to_path_buf()));
    }
    let verifier = match opts.trust {
        None => None,
        Some(Trust::Key(path)) => Some(Verifier::Key(PublicKey::read_path(path)?)),
        Some(Trust::Dir(path)) if path.is_dir() => Some(Verifier::Dir(KeyDir::new(path))),
        Some(Trust::Dir(path)) => return Err(CheckError::KeyDir(path.to_path_buf())),
    };
    let mut c = Checker {
        root,
        opts,
        findings: Vec::new(),
        files_checked: 0,
        verified: Vec::new(),
    };
    let (index_name, packages) = c.load_index(dir)?;
    let parsed = packages.as_deref().and_then(|bytes| {
        PackagesFile::parse(bytes)
            .map_err(|e| {
                let msg = format!("{index_name}: {e}");
                c.error(FindingKind::IndexSyntax, Some(index_name), None, msg);
            })
            .ok()
    });
    if let Some(file) = &parsed {
        c.check_manifest(file);
    }
    let release = c.read_index_file("Release", FindingKind::ReleaseInvalid);
    c.check_signatures(verifier.as_ref(), packages.as_deref(), release.as_deref());
    if let Some(bytes) = &release {
        c.check_release(bytes);
    }
    // Without a parsed index, stray and dependency checks would mean nothing.
    let stanzas = parsed.map(|p| p.stanzas).unwrap_or_default();
    if !stanzas.is_empty() {
        let pkgs = c.check_stanzas(index_name, &stanzas);
        c.check_strays(&stanzas);
        c.check_dependencies(index_name, &pkgs);
    }
    Ok(Report {
        dir: dir.to_path_buf(),
        findings: c.findings,
        packages: stanzas.len(),
        files_checked: c.files_checked,
        signatures_verified: c.verified,
    })
}

enum Verifier {
    Key(PublicKey),
    Dir(KeyDir),
}

/// A package a stanza declares, as the dependency check needs it.
struct Pkg<'s> {
    name: &'s str,
    version: Version,
    arch: &'s str,
    stanza: &'s Paragraph,
}

impl Pkg<'_> {
    fn label(&self) -> String {
        format!("{} {} ({})", self.name, self.version, self.arch)
    }
}

/// Why a feed-relative path could not be opened.
enum OpenError {
    Missing,
    Outside(PathBuf),
    Io(io::Error),
}

/// Size and SHA-256 of a file compared with what an index says.
enum Digest256 {
    /// The file has this other size (not hashed).
    Size(u64),
    /// The file has the expected size and this SHA-256 (lower-case hex).
    Hash(String),
}

struct Checker<'o, 'a> {
    root: PathBuf,
    opts: &'o CheckOptions<'a>,
    findings: Vec<Finding>,
    files_checked: usize,
    verified: Vec<(String, Fingerprint)>,
}

impl Checker<'_, '_> {
    fn push(
        &mut self,
        severity: Severity,
        kind: FindingKind,
        file: Option<&str>,
        package: Option<&str>,
        message: String,
    ) {
        self.findings.push(Finding {
            severity,
            kind,
            file: file.map(str::to_string),
            package: package.map(str::to_string),
            message,
        });
    }

    fn error(&mut self, kind: FindingKind, file: Option<&str>, pkg: Option<&str>, msg: String) {
        self.push(Severity::Error, kind, file, pkg, msg);
    }

    /// `path` (under the feed) relative to the feed, `/`-separated.
    fn relative(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        rel.to_string_lossy().replace('\\', "/")
    }

    fn exists(&self, name: &str) -> bool {
        fs::symlink_metadata(self.root.join(name)).is_ok()
    }

    /// Reads an index-like file at the feed root (bounded by `max_index`); `None` when it is
    /// absent or unreadable (the latter a finding of `kind`).
    fn read_index_file(&mut self, name: &str, kind: FindingKind) -> Option<Vec<u8>> {
        let file = match open_regular(&self.root.join(name)) {
            Ok(Some(file)) => file,
            Ok(None) => return None,
            Err(e) => {
                self.error(kind, Some(name), None, format!("{name}: {e}"));
                return None;
            }
        };
        match read_to_end_bounded(file, self.opts.limits.max_index) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.error(kind, Some(name), None, format!("{name}: {e}"));
                None
            }
        }
    }

    /// The uncompressed `Packages` bytes (from `Packages`, else gunzipped `Packages.gz`) and
    /// the name to blame for them; checks that the two agree when both exist.
    fn load_index(&mut self, dir: &Path) -> Result<(&'static str, Option<Vec<u8>>), CheckError> {
        let (has_plain, has_gz) = (self.exists("Packages"), self.exists("Packages.gz"));
        if !has_plain && !has_gz {
            return Err(CheckError::NoIndex(dir.to_path_buf()));
        }
        let unreadable = FindingKind::IndexUnreadable;
        let plain = self.read_index_file("Packages", unreadable);
        let gz =
            self.read_index_file("Packages.gz", unreadable)
                .and_then(|gz| match index::gunzip(&gz, &self.opts.limits) {
                    Ok(bytes) => Some(bytes),
                    Err(e) => {
                        let msg = format!("Packages.gz: {e}");
                        self.error(unreadable, Some("Packages.gz"), None, msg);
                        None
                    }
                });
        Ok(match (plain, gz) {
            (Some(plain), Some(gz)) => {
                if plain != gz {
                    let msg = format!(
                        "Packages.gz: gunzips to {} bytes that differ from Packages ({} bytes)",
                        gz.len(),
                        plain.len()
                    );
                    self.error(FindingKind::IndexMismatch, Some("Packages.gz"), None, msg);
                }
                ("Packages", Some(plain))
            }
            (Some(plain), None) => ("Packages", Some(plain)),
            (None, Some(gz)) if !has_plain => ("Packages.gz", Some(gz)),
            (None, _) => ("Packages", None),
        })
    }

    /// `Packages.manifest` (OpenWrt's full-field index) must list the same packages.
    fn check_manifest(&mut self, packages: &PackagesFile) {
        const NAME: &str = "Packages.manifest";
        let Some(bytes) = self.read_index_file(NAME, FindingKind::IndexUnreadable) else {
            return;
        };
        let manifest = match PackagesFile::parse(&bytes) {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("{NAME}: {e}");
                self.error(FindingKind::IndexSyntax, Some(NAME), None, msg);
                return;
            }
        };
        let keys = |f: &PackagesFile| -> BTreeSet<[String; 4]> {
            f.stanzas
                .iter()
                .map(|s| {
                    ["Package", "Version", "Architecture", "Filename"]
                        .map(|k| s.get(k).unwrap_or("").to_string())
                })
                .collect()
        };
        let (in_packages, in_manifest) = (keys(packages), keys(&manifest));
        for [p, v, a, f] in in_manifest.difference(&in_packages) {
            let msg = format!("{NAME}: lists {p} {v} ({a}) as {f}, which Packages does not");
            self.error(FindingKind::ManifestMismatch, Some(NAME), Some(p), msg);
        }
        for [p, v, a, f] in in_packages.difference(&in_manifest) {
            let msg = format!("{NAME}: lacks {p} {v} ({a}) as {f}, which Packages lists");
            self.error(FindingKind::ManifestMismatch, Some(NAME), Some(p), msg);
        }
    }

    fn check_signatures(
        &mut self,
        verifier: Option<&Verifier>,
        packages: Option<&[u8]>,
        release: Option<&[u8]>,
    ) {
        if self.exists("Release.sig") && !self.exists("Release") {
            let msg = "Release.sig: present, but Release is missing (stripped?)".to_string();
            self.error(FindingKind::ReleaseInvalid, Some("Release"), None, msg);
        }
        let Some(verifier) = verifier else {
            let present: Vec<&str> = ["Packages.sig", "Release.sig"]
                .into_iter()
                .filter(|s| self.exists(s))
                .collect();
            let msg = format!(
                "signatures not checked: no key given (-p or -P); the feed has {}",
                if present.is_empty() {
                    "no signature files".to_string()
                } else {
                    present.join(" and ")
                }
            );
            self.push(
                Severity::Warning,
                FindingKind::SignatureUnchecked,
                None,
                None,
                msg,
            );
            return;
        };
        if let Some(packages) = packages {
            self.verify(verifier, "Packages.sig", "Packages", packages);
        }
        if let Some(release) = release {
            self.verify(verifier, "Release.sig", "Release", release);
            self.verify_openpgp(verifier, release);
        }
    }

    /// apt's signatures (docs/formats.md §6), when the feed has them: `InRelease` must carry
    /// exactly `Release` and both it and `Release.gpg` must verify with the OpenPGP form of
    /// a trusted key.
    fn verify_openpgp(&mut self, verifier: &Verifier, release: &[u8]) {
        let invalid = FindingKind::SignatureInvalid;
        let keys: Vec<PublicKey> = match verifier {
            Verifier::Key(k) => vec![k.clone()],
            Verifier::Dir(d) => d
                .keys()
                .map(|v| v.into_iter().map(|(_, k)| k).collect())
                .unwrap_or_default(),
        };
        for name in ["InRelease", "Release.gpg"] {
            let bytes = match open_regular(&self.root.join(name)) {
                Ok(None) => continue,
                Ok(Some(file)) => read_to_end_bounded(file, 4 * release.len() as u64 + 64 * 1024)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let text = bytes.and_then(|b| String::from_utf8(b).map_err(|_| "not text".into()));
            let text = match text {
                Ok(t) => t,
                Err(e) => return self.error(invalid, Some(name), None, format!("{name}: {e}")),
            };
            let want = release.strip_suffix(b"\n").unwrap_or(release);
            let mut stale = None;
            let by = keys.iter().find_map(|k| {
                let ok = if name == "InRelease" {
                    match usign_openpgp::verify_clearsigned_by(k.as_bytes(), &text) {
                        Ok(signed) if signed.as_bytes() == want => true,
                        Ok(_) => {
                            stale = Some(k.fingerprint());
                            false
                        }
                        Err(_) => false,
                    }
                } else {
                    usign_openpgp::verify_detached_by(k.as_bytes(), &text, release).is_ok()
                };
                ok.then(|| k.fingerprint())
            });
            match (by, stale) {
                (Some(fp), _) => self.verified.push((name.to_string(), fp)),
                (None, Some(fp)) => {
                    let msg = format!(
                        "{name}: signed by key {fp}, but the text it carries is not Release (a stale InRelease?)"
                    );
                    self.error(invalid, Some(name), None, msg);
                }
                (None, None) => {
                    let msg = format!(
                        "{name}: not an OpenPGP signature of Release by a trusted key (edited, or by another key)"
                    );
                    self.error(invalid, Some(name), None, msg);
                }
            }
        }
    }

    fn verify(&mut self, verifier: &Verifier, sig_name: &str, msg_name: &str, message: &[u8]) {
        let invalid = FindingKind::SignatureInvalid;
        let file = match open_regular(&self.root.join(sig_name)) {
            Ok(Some(file)) => file,
            Ok(None) => {
                let msg =
                    format!("{sig_name}: missing; a key was given, so {msg_name} must be signed");
                self.error(FindingKind::SignatureMissing, Some(sig_name), None, msg);
                return;
            }
            Err(e) => return self.error(invalid, Some(sig_name), None, format!("{sig_name}: {e}")),
        };
        let signature = read_to_end_bounded(file, usign::MAX_FILE_LEN as u64)
            .map_err(|e| e.to_string())
            .and_then(|bytes| Signature::parse(&bytes).map_err(|e| e.to_string()));
        let signature = match signature {
            Ok(s) => s,
            Err(e) => return self.error(invalid, Some(sig_name), None, format!("{sig_name}: {e}")),
        };
        let checked = match verifier {
            Verifier::Key(key) => key.verify(message, &signature),
            Verifier::Dir(dir) => dir.verify(message, &signature).map(|_| ()),
        };
        match checked {
            Ok(()) => self
                .verified
                .push((sig_name.to_string(), signature.fingerprint())),
            Err(e) => {
                let msg = format!("{sig_name}: {e} (over {msg_name})");
                self.error(invalid, Some(sig_name), None, msg);
            }
        }
    }

    fn check_release(&mut self, bytes: &[u8]) {
        const NAME: &str = "Release";
        let parsed = std::str::from_utf8(bytes)
            .map_err(|_| "not valid UTF-8".to_string())
            .and_then(|text| Release::parse(text).map_err(|e| e.to_string()));
        let release = match parsed {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("{NAME}: {e}");
                return self.error(FindingKind::ReleaseInvalid, Some(NAME), None, msg);
            }
        };
        let mismatch = FindingKind::ReleaseMismatch;
        for entry in &release.sha256 {
            let name = entry.name.as_str();
            if index::check_filename(name).is_err() {
                let msg = format!("{NAME}: lists {name:?}, which leaves the feed; not read");
                self.error(FindingKind::FilenameOutside, Some(name), None, msg);
                continue;
            }
            let result = self.open_in_feed(name).map(|f| digest(f, entry.size));
            let msg = match result {
                Ok(Ok(Digest256::Hash(h))) if h == entry.sha256 => continue,
                Ok(Ok(Digest256::Hash(h))) => {
                    format!("{NAME}: {name}: SHA256 {h}, Release says {}", entry.sha256)
                }
                Ok(Ok(Digest256::Size(n))) => {
                    format!("{NAME}: {name}: size {n}, Release says {}", entry.size)
                }
                Ok(Err(e)) | Err(OpenError::Io(e)) => format!("{NAME}: {name}: {e}"),
                Err(OpenError::Missing) => format!("{NAME}: lists {name}, which is missing"),
                Err(OpenError::Outside(to)) => {
                    let msg = format!(
                        "{NAME}: {name} resolves to {}, outside the feed; not read",
                        to.display()
                    );
                    self.error(FindingKind::FilenameOutside, Some(name), None, msg);
                    continue;
                }
            };
            self.error(mismatch, Some(name), None, msg);
        }
        for name in ["Packages", "Packages.gz"] {
            if self.exists(name) && release.file(name).is_none() {
                let msg = format!("{NAME}: does not list {name}");
                self.error(FindingKind::ReleaseUnlisted, Some(name), None, msg);
            }
        }
        let now = self.opts.now.unwrap_or_else(feeds::release::unix_now);
        if let Some(valid_until) = release.valid_until.filter(|v| *v < now) {
            let msg = format!(
                "{NAME}: expired: Valid-Until {} is in the past (now {})",
                format_date(valid_until),
                format_date(now)
            );
            self.error(FindingKind::ReleaseExpired, Some(NAME), None, msg);
        }
    }

    /// Opens `rel` (already checked by `check_filename`) inside the feed, refusing anything
    /// that resolves outside it through a symlink.
    fn open_in_feed(&self, rel: &str) -> Result<File, OpenError> {
        let path = match self.root.join(rel).canonicalize() {
            Ok(path) => path,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::Missing),
            Err(e) => return Err(OpenError::Io(e)),
        };
        if !path.starts_with(&self.root) {
            return Err(OpenError::Outside(path));
        }
        open_regular(&path)
            .map_err(OpenError::Io)?
            .ok_or(OpenError::Missing)
    }

    /// Checks every stanza and its file; returns the packages the stanzas declare (those with
    /// a name and a valid version, first of each duplicate) for the dependency check.
    fn check_stanzas<'s>(&mut self, index: &str, stanzas: &'s [Paragraph]) -> Vec<Pkg<'s>> {
        let mut pkgs = Vec::new();
        let mut seen: HashMap<(&str, Version, &str), (usize, &str)> = HashMap::new();
        for (i, stanza) in stanzas.iter().enumerate() {
            let field = |name| stanza.get(name).unwrap_or("");
            let (name, filename) = (field("Package"), field("Filename"));
            let complete = index::check_stanza(stanza).map_err(|e| {
                let (kind, msg) = match e {
                    IndexError::FilenameOutsideFeed(_) => (
                        FindingKind::FilenameOutside,
                        format!("{index}: {name} {}: {e}; not read", field("Version")),
                    ),
                    _ => (
                        FindingKind::BadStanza,
                        format!("{index}: stanza {}: {e}", i + 1),
                    ),
                };
                self.error(kind, Some(filename), Some(name), msg);
            });
            let Ok(version) = Version::parse(field("Version")) else {
                continue;
            };
            let pkg = Pkg {
                name,
                version,
                arch: field("Architecture"),
                stanza,
            };
            let key = (name, pkg.version.clone(), pkg.arch);
            let first = match seen.get(&key) {
                Some((first, first_file)) => {
                    let msg = format!(
                        "{index}: {} is listed twice (stanzas {} and {}, Filenames {first_file} and {filename})",
                        pkg.label(),
                        first + 1,
                        i + 1
                    );
                    self.error(
                        FindingKind::DuplicateStanza,
                        Some(filename),
                        Some(name),
                        msg,
                    );
                    false
                }
                None => {
                    seen.insert(key, (i, filename));
                    true
                }
            };
            // A complete stanza has a numeric Size and a SHA-256.
            if let (Ok(()), Ok(size), Some(sha)) = (
                complete,
                field("Size").parse::<u64>(),
                index::stanza_sha256(stanza),
            ) {
                let sha = sha.to_ascii_lowercase();
                self.check_package_file(index, &pkg, filename, size, &sha);
            }
            if first && !name.is_empty() {
                pkgs.push(pkg);
            }
        }
        pkgs
    }

    fn check_package_file(&mut self, index: &str, pkg: &Pkg, filename: &str, size: u64, sha: &str) {
        let whose = format!("; listed in {index} for {} {}", pkg.name, pkg.version);
        let (kind, problem) = match self.open_in_feed(filename) {
            Ok(file) => {
                self.files_checked += 1;
                if filename.ends_with(".ipk") && is_ar(&file) {
                    let msg = format!("{filename}: {}{whose}", crate::index::AR_IPK_WARNING);
                    self.push(
                        Severity::Warning,
                        FindingKind::ArIpk,
                        Some(filename),
                        Some(pkg.name),
                        msg,
                    );
                }
                match digest(file, size) {
                    Ok(Digest256::Hash(h)) if h == sha => return,
                    Ok(Digest256::Hash(h)) => (
                        FindingKind::HashMismatch,
                        format!("SHA256 {h}, index says {sha}"),
                    ),
                    Ok(Digest256::Size(n)) => (
                        FindingKind::SizeMismatch,
                        format!("size {n}, index says {size}"),
                    ),
                    Err(e) => (FindingKind::FileUnreadable, e.to_string()),
                }
            }
            Err(OpenError::Missing) => {
                (FindingKind::FileMissing, self.missing(filename, size, sha))
            }
            Err(OpenError::Outside(to)) => (
                FindingKind::FilenameOutside,
                format!("resolves to {}, outside the feed; not read", to.display()),
            ),
            Err(OpenError::Io(e)) => (FindingKind::FileUnreadable, e.to_string()),
        };
        let msg = format!("{filename}: {problem}{whose}");
        self.error(kind, Some(filename), Some(pkg.name), msg);
    }

    /// "missing", plus what a file of the same base name at the feed root looks like (a stale
    /// index often carries a build-tree prefix such as `staging_dir/repo/`).
    fn missing(&self, filename: &str, size: u64, sha: &str) -> String {
        let Some((_, base)) = filename.rsplit_once('/').filter(|(_, b)| !b.is_empty()) else {
            return "missing".to_string();
        };
        let Ok(file) = self.open_in_feed(base) else {
            return "missing".to_string();
        };
        let at_root = format!("a file {base} exists at the feed root");
        match digest(file, size) {
            Ok(Digest256::Size(n)) => format!("missing ({at_root}: size {n}, index says {size})"),
            Ok(Digest256::Hash(h)) if h == sha => {
                format!("missing ({at_root} with the indexed Size and SHA256sum)")
            }
            Ok(Digest256::Hash(h)) => {
                format!("missing ({at_root}: same size, but SHA256 {h}, index says {sha})")
            }
            Err(_) => format!("missing ({at_root}, unreadable)"),
        }
    }

    /// Every `*.ipk`, `*.opk`, `*.deb` under the feed that no stanza's `Filename` names.
    fn check_strays(&mut self, stanzas: &[Paragraph]) {
        let named: HashSet<String> = stanzas
            .iter()
            .filter_map(|s| s.get("Filename"))
            .map(normalize)
            .collect();
        let mut found = Vec::new();
        for entry in walkdir::WalkDir::new(&self.root).sort_by_file_name() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let rel = e.path().map_or(String::new(), |p| self.relative(p));
                    let msg = format!("{rel}: cannot list: {e}");
                    self.error(FindingKind::FileUnreadable, Some(&rel), None, msg);
                    continue;
                }
            };
            let name = entry.file_name().to_string_lossy();
            let package = [".ipk", ".opk", ".deb"].iter().any(|e| name.ends_with(e));
            if package && !entry.file_type().is_dir() {
                let rel = entry
                    .path()
                    .strip_prefix(&self.root)
                    .unwrap_or(entry.path());
                // A name that is not UTF-8 cannot be any Filename (index text is UTF-8).
                let not_text = rel.to_str().is_none().then(|| rel.as_os_str().to_owned());
                found.push((self.relative(entry.path()), not_text));
            }
        }
        for (rel, not_text) in found.into_iter().filter(|(f, _)| !named.contains(f)) {
            let msg = match not_text {
                None => {
                    format!("{rel}: package file not in the index (no stanza has this Filename)")
                }
                Some(raw) => format!(
                    "{rel}: package file not in the index: its name {raw:?} is not valid UTF-8, so no Filename can name it (archman index refuses it; rename the file)"
                ),
            };
            // OpenWrt's index rule (`archman index --profile openwrt`) skips these on purpose.
            let base = rel.rsplit('/').next().unwrap_or("");
            if base.ends_with(".ipk") && (base.starts_with("kernel_") || base.starts_with("libc_"))
            {
                let msg = format!("{msg}; OpenWrt's index rule skips kernel_* and libc_* files");
                self.push(
                    Severity::Warning,
                    FindingKind::NotInIndex,
                    Some(&rel),
                    None,
                    msg,
                );
            } else {
                self.error(FindingKind::NotInIndex, Some(&rel), None, msg);
            }
        }
    }

    /// Every `Pre-Depends` and `Depends` entry must be satisfied inside the feed or by an
    /// assumed-installed name.
    fn check_dependencies(&mut self, index: &str, pkgs: &[Pkg]) {
        let mut by_name: HashMap<&str, Vec<&Pkg>> = HashMap::new();
        let mut provides: HashMap<String, Vec<(&Pkg, Option<Version>)>> = HashMap::new();
        for p in pkgs {
            by_name.entry(p.name).or_default().push(p);
            for r in self
                .relations(index, p, "Provides")
                .iter()
                .flat_map(|g| g.relations())
            {
                let version = r.constraint().filter(|(op, _)| *op == Op::Eq);
                provides
                    .entry(r.name().to_string())
                    .or_default()
                    .push((p, version.map(|(_, v)| v.clone())));
            }
        }
        let feed = Feed {
            by_name,
            provides,
            assumed: self
                .opts
                .assume_installed
                .iter()
                .map(|s| s.trim())
                .collect(),
        };
        for p in pkgs {
            for field in ["Pre-Depends", "Depends"] {
                for group in self.relations(index, p, field) {
                    if group.relations().iter().any(|r| feed.satisfies(p, r)) {
                        continue;
                    }
                    let why: Vec<String> = group
                        .relations()
                        .iter()
                        .map(|r| feed.explain(p, r))
                        .collect();
                    let prefix = if group.relations().len() > 1 {
                        format!("{group}: ")
                    } else {
                        String::new()
                    };
                    let msg = format!(
                        "{index}: {}: {field}: {prefix}{}",
                        p.label(),
                        why.join("; ")
                    );
                    self.error(
                        FindingKind::UnsatisfiedDependency,
                        Some(index),
                        Some(p.name),
                        msg,
                    );
                }
            }
        }
    }

    /// A relation field of `p`, parsed; a parse error is a finding (and an empty list).
    fn relations(&mut self, index: &str, p: &Pkg, field: &str) -> Vec<Alternatives> {
        let Some(text) = p.stanza.get(field) else {
            return Vec::new();
        };
        parse_relations(text).unwrap_or_else(|e| {
            let msg = format!("{index}: {}: {field}: {e}", p.label());
            self.error(FindingKind::BadRelation, Some(index), Some(p.name), msg);
            Vec::new()
        })
    }
}

/// What the feed offers for dependency resolution.
struct Feed<'p, 's> {
    by_name: HashMap<&'s str, Vec<&'p Pkg<'s>>>,
    provides: HashMap<String, Vec<(&'p Pkg<'s>, Option<Version>)>>,
    assumed: HashSet<&'p str>,
}

impl Feed<'_, '_> {
    /// A package of arch `all` goes with any arch; otherwise the arches must be equal.
    fn compatible(p: &Pkg, q: &Pkg) -> bool {
        p.arch == "all" || q.arch == "all" || p.arch == q.arch
    }

    fn satisfies(&self, p: &Pkg, r: &Relation) -> bool {
        self.assumed.contains(r.name())
            || self.by_name.get(r.name()).is_some_and(|qs| {
                qs.iter()
                    .any(|q| Self::compatible(p, q) && r.matches_constraint(&q.version))
            })
            || self.provides.get(r.name()).is_some_and(|qs| {
                qs.iter()
                    .any(|(q, v)| Self::compatible(p, q) && r.satisfied_by(r.name(), v.as_ref()))
            })
    }

    /// What the feed has under the relation's name: `b (>= 2) but the feed has b 1.0`.
    fn explain(&self, p: &Pkg, r: &Relation) -> String {
        let arch = |q: &Pkg| {
            if Self::compatible(p, q) {
                String::new()
            } else {
                format!(" for {} only", q.arch)
            }
        };
        let mut have: Vec<String> = Vec::new();
        for q in self.by_name.get(r.name()).into_iter().flatten() {
            have.push(format!("{} {}{}", q.name, q.version, arch(q)));
        }
        for (q, v) in self.provides.get(r.name()).into_iter().flatten() {
            let what = match v {
                Some(v) => format!("{} {v}", r.name()),
                None => format!("{} (unversioned)", r.name()),
            };
            have.push(format!(
                "{what} provided by {} {}{}",
                q.name,
                q.version,
                arch(q)
            ));
        }
        if have.is_empty() {
            format!("{}: no such package in the feed", r.name())
        } else {
            format!("{r} but the feed has {}", have.join(", "))
        }
    }
}

/// Streams `file` through SHA-256 when its size is `expected` (never reading past it).
fn digest(file: File, expected: u64) -> io::Result<Digest256> {
    let len = file.metadata()?.len();
    if len != expected {
        return Ok(Digest256::Size(len));
    }
    let mut hasher = Sha256::new();
    let read = io::copy(&mut file.take(expected.saturating_add(1)), &mut hasher)?;
    if read != expected {
        return Ok(Digest256::Size(read));
    }
    Ok(Digest256::Hash(hex::encode(hasher.finalize())))
}

/// True when `file` starts with the `ar` magic (read in place: the file position is kept).
fn is_ar(file: &File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 8];
    file.read_exact_at(&mut head, 0).is_ok() && &head == b"!<arch>\n"
}

/// Opens the regular file at `path`; `Ok(None)` when it does not exist. Anything else (a FIFO,
/// a device: opening those could block) is an error.
fn open_regular(path: &Path) -> io::Result<Option<File>> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => File::open(path).map(Some),
        Ok(_) => Err(io::Error::other("not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A `Filename` as a plain relative path: `./a//b.ipk` → `a/b.ipk`.
fn normalize(name: &str) -> String {
    name.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_normalized_for_the_stray_check() {
        assert_eq!(normalize("./pool//a.ipk"), "pool/a.ipk");
        assert_eq!(normalize("a.ipk"), "a.ipk");
    }
}
