//! The checks on each entry of a package's data, the staging of what passes
//! ([`Stager`]), and what is settled once the whole package is read ([`settle`]):
//! conffiles, trust files, file ownership. See the documentation of [`crate::unpack`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

use feeds::package::{DataEntry, Package};
use feeds::relation::parse_relations;
use feeds::version::Version;
use sha2::{Digest, Sha256};

use super::journal::{Bytes, RootDirs, Transaction, parent_of};
use super::{Planned, UnpackError, UnpackOptions, Unpacked, conffile_modified_at, io_at};
use crate::status::{Db, FileKind, StatusError, conffiles_of};
use feeds::control::Paragraph;

/// Files up to this size are read whole and created later, with the package's others (a
/// bigger limit costs peak memory: bench/bootstrap measures both).
const SMALL_FILE: u64 = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    Special,
}

impl Kind {
    fn file_kind(self) -> FileKind {
        match self {
            Kind::File => FileKind::File,
            Kind::Dir => FileKind::Dir,
            Kind::Symlink => FileKind::Symlink,
            Kind::Special => FileKind::Special,
        }
    }
}

/// Normalizes an archive name: `Ok(None)` for the root itself, else `/a/b`.
pub(crate) fn normalize_name(raw: &[u8]) -> Result<Option<String>, String> {
    let name = std::str::from_utf8(raw).map_err(|_| "name is not valid UTF-8".to_string())?;
    if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("name holds control characters".into());
    }
    let mut rest = name;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    if rest.starts_with('/') {
        return Err("absolute path (nothing may be written outside the root)".into());
    }
    let mut out = String::new();
    for c in rest.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("`..` component (nothing may be written outside the root)".into()),
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Where `path` (absolute in the root) lies when it is part of the package manager's own
/// state — the database, the lists, the cache, the lock files, prokit's state
/// ([`Db::is_reserved`]) — as "inside the package database (/usr/lib/opkg)".
pub(crate) fn reserved_what(db: &Db, path: &str) -> Option<String> {
    if !db.is_reserved(path) {
        return None;
    }
    let under = |base: &str| {
        path.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let configured = format!("/{}", db.db_dir().trim_matches('/'));
    let resolved = db
        .dir()
        .strip_prefix(db.root())
        .ok()
        .and_then(|p| p.to_str())
        .map(|p| format!("/{}", p.trim_matches('/')));
    Some(if under(&configured) {
        format!("inside the package database ({configured})")
    } else if let Some(r) = resolved.filter(|r| under(r)) {
        format!("inside the package database ({r})")
    } else {
        "inside the package manager's own state (its lists, cache, lock or state directory)"
            .to_string()
    })
}

/// Why a package may never write `path`, when it is reserved ([`reserved_what`]).
pub(crate) fn reserved_reason(db: &Db, path: &str) -> Option<String> {
    reserved_what(db, path)
        .map(|what| format!("{what}: a package may never write the package manager's state"))
}

/// What writing `path` (absolute in the root) as a `kind` would change about trust, when it
/// would: opkg's configuration (`/etc/opkg.conf`, `/etc/opkg/*.conf`: `src` lines, `option
/// check_signature`, `option keyring`, `option signed_by`), the trusted keys
/// (`/etc/opkg/keys/*`), or the directories holding them (a symlink or file in place of
/// `/etc` or `/etc/opkg` would redirect both). A real directory changes nothing.
pub(crate) fn trust_reason(path: &str, kind: FileKind) -> Option<&'static str> {
    if kind == FileKind::Dir {
        return None;
    }
    if path == "/etc/opkg.conf" {
        return Some(
            "opkg's configuration (its `src` lines and options decide which feeds and keys are trusted)",
        );
    }
    if path == "/etc/opkg/keys" || path.starts_with("/etc/opkg/keys/") {
        return Some("a trusted key (/etc/opkg/keys)");
    }
    if let Some(name) = path.strip_prefix("/etc/opkg/")
        && !name.contains('/')
        && name.ends_with(".conf")
    {
        return Some(
            "an opkg configuration file (/etc/opkg/*.conf: `src` lines and options decide which feeds and keys are trusted)",
        );
    }
    if path == "/etc" || path == "/etc/opkg" {
        return Some("it would replace the directory of opkg's configuration and trusted keys");
    }
    // The install policy decides which packages may land at all (docs/trust-model.md §10).
    if path == "/etc/prokit" || path.starts_with("/etc/prokit/") {
        return Some("prokit's install policy (/etc/prokit)");
    }
    None
}

pub(super) struct Stager<'a> {
    pub db: &'a Db,
    pub tx: &'a mut Transaction,
    pub opts: &'a UnpackOptions,
    pub label: String,
    /// Path → what this package puts there (index into `entries`).
    pub planned: HashMap<String, (Kind, usize)>,
    pub entries: Vec<Planned>,
    /// Paths known to be real directories in the root.
    pub verified: HashSet<String>,
    /// Directories this package created: its own directory entries among them get their
    /// modes at commit.
    pub created: HashSet<String>,
    pub buf: Vec<u8>,
    /// The data tar being walked, when it was read ahead into memory: files are written
    /// from it rather than from copies.
    pub shared: Option<std::sync::Arc<Vec<u8>>>,
    /// The package's conffiles (normalized), when its control was read before its data
    /// (a package read ahead): files that are none of them may be made in place
    /// ([`Transaction::may_make`]).
    pub conffiles: Option<HashSet<String>>,
}

impl<'a> Stager<'a> {
    pub fn new(
        db: &'a Db,
        tx: &'a mut Transaction,
        opts: &'a UnpackOptions,
        label: String,
    ) -> Stager<'a> {
        Stager {
            db,
            tx,
            opts,
            label,
            planned: HashMap::new(),
            entries: Vec::new(),
            verified: HashSet::new(),
            created: HashSet::new(),
            // Made when the package has a file too big to be read whole (most have none).
            buf: Vec::new(),
            shared: None,
            conffiles: None,
        }
    }

    fn refuse(&self, entry: &str, reason: String) -> UnpackError {
        UnpackError::Entry {
            package: self.label.clone(),
            entry: entry.to_string(),
            reason,
        }
    }

    fn owner_note(&self, path: &str) -> String {
        match self.db_owner(path) {
            Ok(Some(o)) => format!("installed by package {o}"),
            Ok(None) => "already in the root, owned by no package".into(),
            Err(e) => format!("already in the root (its owner is unknown: {e})"),
        }
    }

    fn db_owner(&self, path: &str) -> Result<Option<String>, StatusError> {
        match self.db.owners_ref() {
            Some(o) => Ok(o.file_owner(path)?.map(|n| n.to_string())),
            None => Ok(None),
        }
    }

    fn dirs(&self) -> &RootDirs {
        self.tx.dirs()
    }

    /// Stages entry `e`; `digest`: the SHA-256 of its contents, when already known.
    pub fn entry(
        &mut self,
        e: &mut DataEntry<'_, '_>,
        digest: Option<[u8; 32]>,
    ) -> Result<(), UnpackError> {
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let header = e.header();
        let etype = header.entry_type();
        let mode = header
            .mode()
            .map_err(|err| self.refuse(&shown, format!("bad mode: {err}")))?
            & 0o7777;
        let kind = match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::File,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => Kind::Special,
            tar::EntryType::XGlobalHeader => return Ok(()),
            other => {
                return Err(self.refuse(
                    &shown,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ));
            }
        };
        let hard_link = etype == tar::EntryType::Link;
        let path = match normalize_name(&raw) {
            Ok(Some(p)) => p,
            Ok(None) if kind == Kind::Dir => return Ok(()),
            Ok(None) => return Err(self.refuse(&shown, "names the root itself".into())),
            Err(reason) => return Err(self.refuse(&shown, reason)),
        };
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let mtime = header.mtime().unwrap_or(0);
        let dev = (
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        );
        // Before anything else: whatever its type, nothing of a package lands in the
        // package manager's own state (threat 19).
        if let Some(reason) = reserved_reason(self.db, &path) {
            return Err(self.refuse(&shown, reason));
        }
        if mode & 0o6000 != 0 && !self.opts.allow_special {
            return Err(self.refuse(
                &shown,
                format!(
                    "setuid/setgid bit (mode 0{mode:o}) refused; use --allow-special to allow it"
                ),
            ));
        }
        if kind == Kind::Special && !self.opts.allow_special {
            let what = match etype {
                tar::EntryType::Fifo => "FIFO",
                tar::EntryType::Char => "character device node",
                _ => "block device node",
            };
            return Err(self.refuse(
                &shown,
                format!("{what} refused; use --allow-special to allow it"),
            ));
        }
        let base = &path[path.rfind('/').map_or(0, |i| i + 1)..];
        if base.starts_with(".prokit-") {
            return Err(self.refuse(&shown, "name reserved for prokit's temporary files".into()));
        }
        if let Some((prev, _)) = self.planned.get(&path) {
            if *prev == Kind::Dir && kind == Kind::Dir {
                return Ok(());
            }
            return Err(self.refuse(&shown, format!("{path} appears twice in the archive")));
        }
        self.prepare_parents(&path, &shown)?;
        // A directory this transaction found (or made) is not looked up again. In a directory
        // it made, nothing exists but the directories it made there: its files wait under
        // temporary names until commit.
        let known_dir = kind == Kind::Dir && self.tx.known_dir(&path).is_some();
        let on_disk = if known_dir
            || self.tx.created(parent_of(&path)) && !self.tx.created(&path) && !self.tx.made(&path)
        {
            None
        } else {
            self.dirs().lstat(&path)?
        };
        if kind == Kind::Dir {
            match on_disk {
                None if !known_dir => {
                    self.tx.mkdir(&path)?;
                    self.created.insert(path.clone());
                    self.tx.chmod_later(&path, mode)?;
                }
                // A directory entry on an existing symlink writes nothing; anything below
                // it is refused by `prepare_parents`.
                Some(m) if m.is_symlink() => return Ok(()),
                Some(m) if !m.is_dir() => {
                    return Err(self.refuse(
                        &shown,
                        format!("{path} exists in the root and is not a directory"),
                    ));
                }
                // A directory already there.
                found => {
                    if let Some(m) = found {
                        self.tx.know_dir(&path, m.perm());
                    }
                    if self.created.contains(&path) {
                        self.tx.chmod_later(&path, mode)?;
                    }
                }
            }
            self.verified.insert(path.clone());
            self.plan(&path, &shown, Kind::Dir, mode, None, None, None);
            return Ok(());
        }
        if on_disk.is_some_and(|m| m.is_dir()) {
            return Err(self.refuse(&shown, format!("{path} is a directory in the root")));
        }
        if kind == Kind::File && !hard_link && on_disk.is_none() {
            // A new file in a directory this transaction made, read ahead into memory, and
            // neither a conffile nor a file of trust: made at its final path.
            let data = match &self.conffiles {
                Some(conffiles)
                    if !conffiles.contains(&path)
                        && trust_reason(&path, FileKind::File).is_none()
                        && self.tx.may_make(&path) =>
                {
                    self.shared_data(e)
                }
                _ => None,
            };
            if let Some(data) = data {
                let sha = sha_hex(digest, data.as_slice());
                self.tx.make_later(&path, data, mode, Some(mtime))?;
                self.plan(&path, &shown, Kind::File, mode, Some(sha), None, None);
                return Ok(());
            }
        }
        let tmp = self.tx.new_temp(parent_of(&path))?;
        match kind {
            Kind::File if hard_link => {
                let target = link.unwrap_or_default();
                let target = match normalize_name(&target) {
                    Ok(Some(t)) => t,
                    Ok(None) => {
                        return Err(self.refuse(&shown, "hard link to the root itself".into()));
                    }
                    Err(reason) => {
                        return Err(self.refuse(
                            &shown,
                            format!("hard link target leaves the root: {reason}"),
                        ));
                    }
                };
                let Some(&(Kind::File, i)) = self.planned.get(&target) else {
                    return Err(self.refuse(
                        &shown,
                        format!(
                            "hard link to {target}, which is not a file earlier in this package"
                        ),
                    ));
                };
                let (src_tmp, sha, tmode) = {
                    let t = &self.entries[i];
                    // Where the file is now: its temporary name, or its path when it was
                    // made in place.
                    let src = t.tmp.clone().unwrap_or_else(|| t.path.clone());
                    (src, t.sha256.clone(), t.mode)
                };
                // The file linked to may still be waiting to be created.
                self.tx.flush_writes()?;
                self.tx.dirs_to_change()?.hard_link(&src_tmp, &tmp)?;
                self.plan(&path, &shown, Kind::File, tmode, sha, None, Some(tmp));
            }
            Kind::File => {
                let sha = self.write_file(e, &tmp, mode, mtime, digest)?;
                self.plan(&path, &shown, Kind::File, mode, Some(sha), None, Some(tmp));
            }
            Kind::Symlink => {
                let target = link.unwrap_or_default();
                let target = match std::str::from_utf8(&target) {
                    Ok(t) if !t.is_empty() && !t.bytes().any(|b| b < 0x20 || b == 0x7f) => {
                        t.to_string()
                    }
                    _ => {
                        return Err(self.refuse(
                            &shown,
                            "symlink target is empty, not UTF-8 or holds control characters".into(),
                        ));
                    }
                };
                self.tx.dirs_to_change()?.symlink(&target, &tmp)?;
                self.plan(
                    &path,
                    &shown,
                    Kind::Symlink,
                    mode,
                    None,
                    Some(target),
                    Some(tmp),
                );
            }
            Kind::Special => {
                let node = match etype {
                    tar::EntryType::Fifo => libc::S_IFIFO,
                    tar::EntryType::Char => libc::S_IFCHR,
                    _ => libc::S_IFBLK,
                };
                self.tx.write_journal()?;
                self.dirs()
                    .mknod(&tmp, node, mode, libc::makedev(dev.0, dev.1))
                    .map_err(|err| self.refuse(&shown, format!("cannot create the node: {err}")))?;
                self.plan(&path, &shown, Kind::Special, mode, None, None, Some(tmp));
            }
            Kind::Dir => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn plan(
        &mut self,
        path: &str,
        shown: &str,
        kind: Kind,
        mode: u32,
        sha256: Option<String>,
        link_target: Option<String>,
        tmp: Option<String>,
    ) {
        self.planned
            .insert(path.to_string(), (kind, self.entries.len()));
        self.entries.push(Planned {
            path: path.to_string(),
            kind: kind.file_kind(),
            mode,
            sha256,
            link_target,
            final_path: path.to_string(),
            tmp,
            entry: shown.to_string(),
        });
    }

    /// Makes sure every parent of `path` is a real directory in the root (creating missing
    /// ones), refusing symlinks and files on the way.
    fn prepare_parents(&mut self, path: &str, shown: &str) -> Result<(), UnpackError> {
        let cuts: Vec<usize> = path.match_indices('/').skip(1).map(|(i, _)| i).collect();
        for i in cuts {
            let q = &path[..i];
            if self.verified.contains(q) {
                continue;
            }
            match self.planned.get(q) {
                Some((Kind::Symlink, _)) => {
                    return Err(self.refuse(
                        shown,
                        format!(
                            "write through the symlink {q}, installed earlier by this same package"
                        ),
                    ));
                }
                Some((Kind::File | Kind::Special, _)) => {
                    return Err(self.refuse(
                        shown,
                        format!("{q}, a parent directory, is a file of this package"),
                    ));
                }
                _ => {}
            }
            // Like a dpkg archive, the package counts its parents as its directories (removed
            // with it when empty and unused).
            if let Some(perm) = self.tx.known_dir(q) {
                if !self.planned.contains_key(q) {
                    self.plan(q, q, Kind::Dir, perm, None, None, None);
                }
                self.verified.insert(q.to_string());
                continue;
            }
            match self.dirs().lstat(q)? {
                Some(m) if m.is_dir() => {
                    self.tx.know_dir(q, m.perm());
                    if !self.planned.contains_key(q) {
                        self.plan(q, q, Kind::Dir, m.perm(), None, None, None);
                    }
                }
                Some(m) if m.is_symlink() => {
                    return Err(self.refuse(
                        shown,
                        format!(
                            "write through the symlink {q} ({}); prokit never writes through symlinks",
                            self.owner_note(q)
                        ),
                    ));
                }
                Some(_) => {
                    return Err(self.refuse(
                        shown,
                        format!("{q}, a parent directory, is not a directory in the root"),
                    ));
                }
                None => {
                    self.tx.mkdir(q)?;
                    self.created.insert(q.to_string());
                    self.plan(q, q, Kind::Dir, 0o755, None, None, None);
                }
            }
            self.verified.insert(q.to_string());
        }
        Ok(())
    }

    /// A regular file's contents in the data tar read ahead, when the package was read ahead
    /// (and the entry lies within it).
    fn shared_data(&self, e: &DataEntry<'_, '_>) -> Option<Bytes> {
        let buf = self.shared.as_ref()?;
        feeds::package::entry_data_range(e).and_then(|r| Bytes::shared(buf, r))
    }

    /// Streams a regular file's contents into the new temporary file `tmp`; returns its
    /// SHA-256.
    fn write_file(
        &mut self,
        e: &mut DataEntry<'_, '_>,
        tmp: &str,
        mode: u32,
        mtime: u64,
        digest: Option<[u8; 32]>,
    ) -> Result<String, UnpackError> {
        let read_error = |e: &DataEntry<'_, '_>, err: io::Error| UnpackError::Entry {
            package: self.label.clone(),
            entry: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
            reason: format!("reading the archive: {err}"),
        };
        // A package read ahead holds its files in memory already: each is created from there
        // with the package's others, in parallel (`Transaction::write_later`), whatever its
        // size.
        if let Some(data) = self.shared_data(e) {
            let sha = sha_hex(digest, data.as_slice());
            self.tx.write_later(tmp, data, mode, Some(mtime))?;
            return Ok(sha);
        }
        let mut h = Sha256::new();
        // A small file is read whole and created with the package's others, in parallel
        // (`Transaction::write_later`); a big one is streamed to disk here.
        if e.size() <= SMALL_FILE {
            let mut data = Vec::with_capacity(e.size() as usize);
            e.take(SMALL_FILE + 1)
                .read_to_end(&mut data)
                .map_err(|err| read_error(e, err))?;
            let sha = sha_hex(digest, &data);
            self.tx.write_later(tmp, data, mode, Some(mtime))?;
            return Ok(sha);
        }
        if self.buf.is_empty() {
            self.buf = vec![0u8; cli_support::READ_BUFFER];
        }
        let tfull = self.dirs().full(tmp);
        let mut f = self.tx.dirs_to_change()?.create(tmp)?;
        loop {
            let n = match e.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(read_error(e, err)),
            };
            if digest.is_none() {
                h.update(&self.buf[..n]);
            }
            f.write_all(&self.buf[..n]).map_err(io_at(&tfull))?;
        }
        // SAFETY: an open descriptor.
        if unsafe { libc::fchmod(f.as_raw_fd(), mode as libc::mode_t) } != 0 {
            return Err(io_at(&tfull)(io::Error::last_os_error()));
        }
        let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
        Ok(hex::encode(digest.unwrap_or_else(|| h.finalize().into())))
    }
}

/// The paths a package's `conffiles` names (absolute ones, normalized; repeats kept): what
/// the install treats as its conffiles.
pub(super) fn conffile_paths(package: &Package) -> impl Iterator<Item = String> + use<> {
    package.conffiles().into_iter().filter_map(|c| {
        if !c.starts_with('/') {
            return None;
        }
        normalize_name(c.trim_start_matches('/').as_bytes()).ok()?
    })
}

/// The SHA-256 (hex) of `data`: `digest` when the reading ahead took it already.
fn sha_hex(digest: Option<[u8; 32]>, data: &[u8]) -> String {
    hex::encode(digest.unwrap_or_else(|| Sha256::digest(data).into()))
}

/// After the whole package was read: conffiles, trust files, file ownership, the plan of
/// renames.
pub(super) fn settle(
    db: &Db,
    tx: &mut Transaction,
    opts: &UnpackOptions,
    package: Package,
    mut entries: Vec<Planned>,
    planned: HashMap<String, (Kind, usize)>,
) -> Result<Unpacked, UnpackError> {
    let name = package.name().to_string();
    let who = format!("package {name} {}", package.version());
    tx.set_package(&name, package.version())?;
    let refuse = |entry: &str, reason: String| UnpackError::Entry {
        package: who.clone(),
        entry: entry.to_string(),
        reason,
    };
    // Conffiles.
    let mut conffiles = Vec::new();
    let mut kept = Vec::new();
    let mut seen = HashSet::new();
    for p in conffile_paths(&package) {
        if !seen.insert(p.clone()) {
            continue;
        }
        let dirs = tx.dirs();
        match planned.get(&p) {
            Some(&(Kind::File, i)) => {
                let new_hash = entries[i].sha256.clone().unwrap_or_default();
                let keep = match dirs.lstat(&p)? {
                    None => false,
                    Some(m) if m.is_file() => {
                        let cur = dirs.digest::<Sha256>(&p)?;
                        if cur.as_deref() == Some(new_hash.as_str()) {
                            false
                        } else {
                            match recorded_conffile_hash(db, &p, &name)? {
                                Some(rec) => conffile_modified_at(dirs, &p, &rec)?,
                                None => true,
                            }
                        }
                    }
                    Some(_) => true,
                };
                if keep {
                    // The new version goes beside the kept file: a path of this package
                    // like any other (threat 26), checked here and for ownership below.
                    let alt = format!("{p}-opkg");
                    let shown = format!("{} (the new version of a kept conffile)", alt);
                    if planned.contains_key(&alt) {
                        return Err(refuse(
                            &alt,
                            "collides with where the new version of a kept conffile goes".into(),
                        ));
                    }
                    if let Some(reason) = reserved_reason(db, &alt) {
                        return Err(refuse(&shown, reason));
                    }
                    if dirs.lstat(&alt)?.is_some_and(|m| m.is_dir()) {
                        return Err(refuse(&shown, format!("{alt} is a directory in the root")));
                    }
                    entries[i].final_path = alt;
                    kept.push(p.clone());
                }
                conffiles.push((p, new_hash));
            }
            Some(_) => {}
            None => {
                // Listed but not shipped: opkg records the file's hash when it exists.
                if let Some(h) = dirs.digest::<Sha256>(&p)? {
                    conffiles.push((p, h));
                }
            }
        }
    }
    // Trust: only the configured keyring package (or an explicit override) may change which
    // keys or feeds are trusted (threat 19).
    let trusted = opts.allow_trust_changes || opts.trust_package.as_deref() == Some(name.as_str());
    if !trusted {
        for e in &entries {
            let Some(what) = trust_reason(&e.final_path, e.kind) else {
                continue;
            };
            if unchanged(tx.dirs(), e)? {
                continue;
            }
            let keyring = match &opts.trust_package {
                Some(k) => format!("the configured keyring package ({k})"),
                None => "the configured keyring package (none is configured)".to_string(),
            };
            let entry = if e.final_path == e.path {
                e.entry.clone()
            } else {
                format!("{} (as {})", e.entry, e.final_path)
            };
            return Err(refuse(
                &entry,
                format!(
                    "{what}: a package other than {keyring} may not change which keys or feeds are trusted; pass --allow-trust-changes to allow it"
                ),
            ));
        }
    }
    // Ownership, of every path this package writes: the `-opkg` copy of a kept conffile
    // included (threat 26).
    let replaces = parse_relations(package.control.get("Replaces").unwrap_or("")).map_err(|e| {
        UnpackError::Control {
            package: who.clone(),
            reason: format!("bad Replaces: {e}"),
        }
    })?;
    let owners = db.owners_ref();
    // Paths this package already owns (an upgrade) are passed over without reading a name.
    let own = match owners {
        Some(o) => o.package_number(name.as_str())?,
        None => None,
    };
    let mut takeovers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind != FileKind::Dir) {
        let paths = if e.final_path == e.path {
            vec![&e.path]
        } else {
            vec![&e.path, &e.final_path]
        };
        for path in paths {
            let owner = match owners {
                Some(o) => o.file_owner_besides(path, own)?,
                None => None,
            };
            let Some(owner) = owner else {
                continue;
            };
            let owner: &str = &owner;
            if owner == name {
                continue;
            }
            let owner_version = db.version_of(owner)?.and_then(|v| Version::parse(&v).ok());
            let replaced = replaces.iter().flat_map(|a| a.relations()).any(|r| {
                r.name() == owner
                    && match &owner_version {
                        Some(v) => r.matches_constraint(v),
                        None => r.constraint().is_none(),
                    }
            });
            // A file moving: the owner is upgraded in this same transaction to a version
            // that does not ship the path any more.
            let replaced =
                replaced || opts.force_overwrite || opts.released.leaves(owner, path.as_str());
            if !replaced {
                return Err(UnpackError::Conflict {
                    package: name.clone(),
                    path: if *path == e.path {
                        path.clone()
                    } else {
                        format!("{path} (the new version of its kept conffile {})", e.path)
                    },
                    owner: owner.to_string(),
                });
            }
            takeovers
                .entry(owner.to_string())
                .or_default()
                .insert(path.clone());
        }
    }
    for e in &entries {
        if let Some(tmp) = &e.tmp {
            tx.put(tmp, &e.final_path)?;
        }
    }
    Ok(Unpacked {
        package,
        entries,
        conffiles,
        kept_conffiles: kept,
        takeovers,
    })
}

/// Whether the root already holds exactly what entry `e` would put at its final path (the
/// same file contents, the same symlink target): writing it changes nothing.
fn unchanged(dirs: &RootDirs, e: &Planned) -> Result<bool, UnpackError> {
    Ok(match e.kind {
        FileKind::File => {
            e.sha256.is_some()
                && dirs.lstat(&e.final_path)?.is_some_and(|m| m.is_file())
                && dirs.digest::<Sha256>(&e.final_path)? == e.sha256
        }
        FileKind::Symlink => match (&e.link_target, dirs.read_link(&e.final_path)?) {
            (Some(t), Some(cur)) => t.as_bytes() == cur.as_slice(),
            _ => false,
        },
        _ => false,
    })
}

/// The hash recorded for conffile `path`: by the installed version of `name`, else by the
/// package that owns the path, else by any package that lists it.
fn recorded_conffile_hash(db: &Db, path: &str, name: &str) -> Result<Option<String>, StatusError> {
    let hash_in = |p: &Paragraph| {
        conffiles_of(p)
            .into_iter()
            .find(|(c, _)| c == path)
            .map(|(_, h)| h)
    };
    let find = |pkg: &str| Ok::<_, StatusError>(db.get(pkg)?.and_then(|p| hash_in(&p)));
    if let Some(h) = find(name)? {
        return Ok(Some(h));
    }
    let owner = match db.owners_ref() {
        Some(o) => o.file_owner(path)?,
        None => None,
    };
    if let Some(owner) = owner
        && let Some(h) = find(&owner)?
    {
        return Ok(Some(h));
    }
    for p in db.packages() {
        if let Some(h) = hash_in(&*p?) {
            return Ok(Some(h));
        }
    }
    Ok(None)
}
