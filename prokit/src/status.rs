//! The installed-package database, kept exactly where and how opkg-lede keeps it, so that
//! `opkg -o <root>` can go on managing a root that prokit made (docs/on-disk-state.md §3.5).
//!
//! Under `<root>/<db_dir>` (default `usr/lib/opkg`; Yocto uses `var/lib/opkg`):
//! - `status`: one deb822 stanza per installed package, in opkg's field order (Package,
//!   Version, Depends, Pre-Depends, Recommends, Suggests, Provides, Replaces, Conflicts,
//!   Status, Essential, Architecture, Conffiles, Installed-Time, Auto-Installed). prokit
//!   writes the stanzas sorted by name, rewrites the file whole through a temporary file that
//!   is fsynced and renamed, so it is never torn. `Status: install user installed` marks a
//!   requested package, `install ok installed` plus `Auto-Installed: yes` a dependency.
//!   `Conffiles` lines are ` /etc/x <hash>`; opkg-lede today records SHA-256 (and reads MD5,
//!   32 hex digits, from older databases); prokit writes SHA-256 and reads both.
//!   When maintainer scripts were skipped (`--scripts skip`) the stanza carries
//!   `Prokit-Scripts: skipped`: opkg-lede's status parser (`pkg_parse_line`) ignores fields it
//!   does not know, so the field is harmless to it (opkg drops it when it rewrites the file).
//! - `info/<pkg>.control` (the control file as shipped), `info/<pkg>.list` (opkg-lede's format:
//!   one installed path per line, absolute inside the root, files and symlinks only — opkg's
//!   `file_hash_set_file_owner` never records directories), `info/<pkg>.conffiles` and the
//!   other control members (`preinst`, `postinst`, `prerm`, `postrm`, ...), as opkg's
//!   `install_maintainer_scripts` extracts them.
//! - `info/<pkg>.sha256`: prokit's own record of what it installed, for `prokit verify`: one
//!   line per entry, `<kind>\t<mode>\t<sha256|link target|->\t<path>` (kind `f` file, `l`
//!   symlink, `d` directory, `s` special file), after a header `# prokit-sha256\t1\t<pkg>\t<version>`.
//!   opkg's `remove_maintainer_scripts` deletes `info/<pkg>.*`, so it disappears with the
//!   package when opkg removes it; a sidecar whose version is not the installed one (opkg
//!   upgraded the package) is ignored.
//!
//! Locking: [`Db::open`] takes an exclusive lock on `<db_dir>/prokit.lock` (so two prokit runs
//! exclude each other) and, when the root has a `var/lock` directory, on `var/lock/opkg.lock`,
//! the file opkg-lede locks. opkg-lede locks with `lockf(3)`, a POSIX record lock, which
//! `flock(2)` does not conflict with on Linux; prokit therefore takes open-file-description
//! record locks (`F_OFD_SETLK`), which conflict with opkg's and, unlike classic POSIX locks,
//! also with a second open in the same process. A root that is locked is not waited for
//! beyond half a second: `open` then fails with [`StatusError::Locked`]. (opkg cannot run on a root without
//! `var/lock`: it does not create the directory.)

use crate::scratch_table::{Key, ScratchTable};
use crate::stanza_store::StanzaStore;
use crate::texts::ScratchTexts;

/// A status stanza as the database hands it out: borrowed when it is in memory, read back
/// from the database's scratch file otherwise (stanza_store.rs).
pub type Stanza<'a> = std::borrow::Cow<'a, Paragraph>;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use feeds::control::{ControlLimits, Paragraph, ParagraphReader};
use sha2::{Digest, Sha256};

/// The database directory opkg-lede uses, relative to the root.
pub const DEFAULT_DB_DIR: &str = "usr/lib/opkg";
/// The suffix of prokit's per-package hash record in `info/`.
pub const SIDECAR_SUFFIX: &str = "sha256";
/// The lock file opkg-lede takes, relative to the root.
pub const OPKG_LOCK: &str = "var/lock/opkg.lock";
/// prokit's own lock file, in the database directory.
pub const PROKIT_LOCK: &str = "prokit.lock";

const MAX_STATUS: u64 = 256 << 20;
const MAX_LIST: u64 = 64 << 20;
const MAX_SIDECAR: u64 = 256 << 20;
const SIDECAR_HEADER: &str = "# prokit-sha256";

/// What went wrong with the installed database.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: line {line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error(
        "{}: locked by another process (prokit or opkg); only one may change a root at a time",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("database directory {dir:?}: {reason}")]
    BadDbDir { dir: String, reason: String },
    #[error("package {0} is not installed")]
    NotInstalled(String),
    #[error("the ownership map's scratch file (in the temporary directory): {0}")]
    OwnersScratch(#[source] io::Error),
    #[error(
        "the ownership map could not follow the changes of the open transaction; it is made again from the database once that transaction ends"
    )]
    OwnersStale,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StatusError + '_ {
    move |source| StatusError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an installed path is, as far as the database knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file (its SHA-256 is recorded by prokit).
    File,
    /// A symbolic link (its target is recorded by prokit).
    Symlink,
    /// A directory the package ships (only prokit records these; opkg's `.list` has none).
    Dir,
    /// A FIFO or device node (installed only with `allow_special`).
    Special,
    /// Listed in opkg's `.list` without a prokit record (installed by opkg).
    Unknown,
}

impl FileKind {
    fn letter(self) -> &'static str {
        match self {
            FileKind::File => "f",
            FileKind::Symlink => "l",
            FileKind::Dir => "d",
            FileKind::Special => "s",
            FileKind::Unknown => "?",
        }
    }

    fn from_letter(s: &str) -> Option<FileKind> {
        Some(match s {
            "f" => FileKind::File,
            "l" => FileKind::Symlink,
            "d" => FileKind::Dir,
            "s" => FileKind::Special,
            _ => return None,
        })
    }
}

/// One path a package installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Absolute inside the root, e.g. `/usr/bin/x`.
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Lower-case hex SHA-256 of a regular file's contents, as installed.
    pub sha256: Option<String>,
    /// A symlink's target.
    pub link_target: Option<String>,
    /// Permission bits as installed (`0o7777` mask), when prokit recorded them.
    pub mode: Option<u32>,
}

/// Which package owns which path (built from every `.list` and sidecar on first use).
///
/// Kept small because it holds every path of the root (a root of thousands of packages owns
/// hundreds of thousands): a path is held as a 128-bit keyed fingerprint, not its text, in a
/// scratch file with a byte per slot in memory ([`ScratchTable`]), for the files, the
/// directories and the package names alike; a package's name is held once, in a scratch file
/// too ([`ScratchTexts`]), and paths refer to it by number; a directory shipped by one
/// package (most are: `/usr/share/<pkg>`) costs no allocation, one shipped by many
/// (`/usr/bin`) a list of numbers.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    /// Non-directory path → owning package (its number in `names`).
    files: ScratchTable,
    /// Directory path shipped by one package → that package.
    dirs: ScratchTable,
    /// Directory shipped by several packages (`/usr/bin`; few, and looked up by every
    /// package that ships them: kept in memory) → those packages ([`Shippers`]). Keyed by its
    /// fingerprint in `dirs` ([`ScratchTable::key`]). A directory is in one of the two.
    shared: HashMap<Key, Shippers>,
    /// Every name held above, once (a package removed during the run leaves its name here:
    /// one string, taken again if it comes back); `ids` finds a name's number.
    /// The names one after the other, in a scratch file (a name per installed package, kept as
    /// long as the map; read back only to name an owner: a conflict, a takeover, a review).
    names: ScratchTexts,
    ids: ScratchTable,
}

fn scratch(e: io::Error) -> StatusError {
    StatusError::OwnersScratch(e)
}

impl Owners {
    /// The number of `name`, taken when new.
    fn id(&mut self, name: &str) -> Result<u32, StatusError> {
        if let Some(id) = self.ids.get(name).map_err(scratch)? {
            return Ok(id);
        }
        // The name first: should the table fail to take it, the name is only never read.
        let id = self
            .names
            .push(name)
            .map_err(scratch)?
            .expect("fewer than 2^32 package names, shorter than 4 GiB in all");
        self.ids.insert(name, id).map_err(scratch)?;
        Ok(id)
    }

    /// The name of number `id`.
    fn name(&self, id: u32) -> Result<Cow<'_, str>, StatusError> {
        match self.names.get(id).map_err(scratch)? {
            Some(name) => Ok(name),
            None => Err(scratch(io::Error::other(format!(
                "package number {id} has no name"
            )))),
        }
    }

    /// The package that owns the non-directory `path`.
    pub fn file_owner(&self, path: &str) -> Result<Option<Cow<'_, str>>, StatusError> {
        self.file_owner_besides(path, None)
    }

    /// The package that owns the non-directory `path` when it is not the one numbered `own`
    /// ([`Owners::package_number`]): the name is read back only then, so that checking the
    /// paths of a package that already owns them (an upgrade) reads none.
    pub fn file_owner_besides(
        &self,
        path: &str,
        own: Option<u32>,
    ) -> Result<Option<Cow<'_, str>>, StatusError> {
        match self.files.get(path).map_err(scratch)? {
            Some(id) if Some(id) != own => self.name(id).map(Some),
            _ => Ok(None),
        }
    }

    /// The number of the package `name`, if the map has seen it.
    pub fn package_number(&self, name: &str) -> Result<Option<u32>, StatusError> {
        self.ids.get(name).map_err(scratch)
    }

    /// The packages that ship the directory `path` (none when no package does), in the
    /// order their names were first seen. Each name is read as the iterator reaches it
    /// (`/usr` has a shipper per package: a caller that wants one or two reads one or two).
    pub fn dir_owners(
        &self,
        path: &str,
    ) -> Result<impl Iterator<Item = Result<Cow<'_, str>, StatusError>>, StatusError> {
        let key = self.dirs.key(path);
        let (one, many) = match self.shared.get(&key) {
            Some(ids) => (None, Some(ids)),
            None => (self.dirs.get_key(key).map_err(scratch)?, None),
        };
        Ok(one
            .into_iter()
            .chain(many.into_iter().flat_map(Shippers::iter))
            .map(|id| self.name(id)))
    }

    /// Forgets everything `name` owns.
    pub fn remove_package(
        &mut self,
        name: &str,
        records: &[FileRecord],
    ) -> Result<(), StatusError> {
        let Some(id) = self.ids.get(name).map_err(scratch)? else {
            return Ok(());
        };
        for r in records {
            if r.kind == FileKind::Dir {
                self.remove_dir_owner(&r.path, id)?;
            } else if self.file_owner_id(&r.path)? == Some(id) {
                self.files.remove(&r.path).map_err(scratch)?;
            }
        }
        Ok(())
    }

    /// Records `records` as owned by `name`.
    pub fn add_package(&mut self, name: &str, records: &[FileRecord]) -> Result<(), StatusError> {
        self.add(name, records, true)
    }

    /// Records `records` as owned by `name` where no package owns them yet (a path in two
    /// lists keeps the first owner read).
    fn add_listed(&mut self, name: &str, records: &[FileRecord]) -> Result<(), StatusError> {
        self.add(name, records, false)
    }

    /// The number of the package that owns the non-directory `path`.
    fn file_owner_id(&self, path: &str) -> Result<Option<u32>, StatusError> {
        self.files.get(path).map_err(scratch)
    }

    fn add(
        &mut self,
        name: &str,
        records: &[FileRecord],
        take_over: bool,
    ) -> Result<(), StatusError> {
        let id = self.id(name)?;
        for r in records {
            if r.kind == FileKind::Dir {
                self.add_dir_owner(&r.path, id)?;
            } else if take_over || self.file_owner_id(&r.path)?.is_none() {
                self.files.insert(&r.path, id).map_err(scratch)?;
            }
        }
        Ok(())
    }

    fn add_dir_owner(&mut self, path: &str, id: u32) -> Result<(), StatusError> {
        let key = self.dirs.key(path);
        if let Some(ids) = self.shared.get_mut(&key) {
            ids.insert(id);
            return Ok(());
        }
        match self.dirs.get_key(key).map_err(scratch)? {
            None => self.dirs.insert_key(key, id).map_err(scratch)?,
            Some(one) if one == id => {}
            Some(one) => {
                self.dirs.remove_key(key).map_err(scratch)?;
                let mut ids = Shippers::List(vec![one]);
                ids.insert(id);
                self.shared.insert(key, ids);
            }
        }
        Ok(())
    }

    fn remove_dir_owner(&mut self, path: &str, id: u32) -> Result<(), StatusError> {
        let key = self.dirs.key(path);
        if let Some(ids) = self.shared.get_mut(&key) {
            ids.remove(id);
            let left = {
                let mut left = ids.iter();
                (left.next(), left.next())
            };
            match left {
                (None, _) => {
                    self.shared.remove(&key);
                }
                // Back to the table; until that is done it stays a set of one, as true.
                (Some(last), None) => {
                    self.dirs.insert_key(key, last).map_err(scratch)?;
                    self.shared.remove(&key);
                }
                _ => {}
            }
            return Ok(());
        }
        if self.dirs.get_key(key).map_err(scratch)? == Some(id) {
            self.dirs.remove_key(key).map_err(scratch)?;
        }
        Ok(())
    }
}

/// The packages that ship a shared directory, by number: a sorted list while short, a bitmap
/// of the numbers once the list would be the larger. Most packages of a root ship `/usr`:
/// for 10,000 packages its list was 40 KB and grew with every package; its bitmap is 1.25 KB.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shippers {
    List(Vec<u32>),
    Bits(Vec<u64>),
}

impl Shippers {
    fn insert(&mut self, id: u32) {
        match self {
            Shippers::List(ids) => {
                if let Err(at) = ids.binary_search(&id) {
                    ids.insert(at, id);
                }
                // A list costs 32 bits a package, a bitmap one bit a number up to the largest.
                let largest = ids.last().map_or(0, |&i| i as usize);
                if ids.len() * 32 > largest + 64 {
                    let mut words = Vec::new();
                    for &i in ids.iter() {
                        set_bit(&mut words, i);
                    }
                    *self = Shippers::Bits(words);
                }
            }
            Shippers::Bits(words) => set_bit(words, id),
        }
    }

    fn remove(&mut self, id: u32) {
        match self {
            Shippers::List(ids) => {
                if let Ok(at) = ids.binary_search(&id) {
                    ids.remove(at);
                }
            }
            Shippers::Bits(words) => {
                if let Some(w) = words.get_mut((id / 64) as usize) {
                    *w &= !(1 << (id % 64));
                }
            }
        }
    }

    /// The numbers, ascending.
    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (list, words): (&[u32], &[u64]) = match self {
            Shippers::List(ids) => (ids, &[]),
            Shippers::Bits(words) => (&[], words),
        };
        let bits = words.iter().enumerate().flat_map(|(w, &word)| {
            (0..64u32)
                .filter(move |b| word >> b & 1 == 1)
                .map(move |b| w as u32 * 64 + b)
        });
        list.iter().copied().chain(bits)
    }
}

fn set_bit(words: &mut Vec<u64>, id: u32) {
    let w = (id / 64) as usize;
    if words.len() <= w {
        words.resize(w + 1, 0);
    }
    words[w] |= 1 << (id % 64);
}

/// An open installed database, locked for exclusive use until dropped.
pub struct Db {
    root: PathBuf,
    db_dir: String,
    dir: PathBuf,
    info: PathBuf,
    status_path: PathBuf,
    /// The status file's stanzas, held in a scratch file (stanza_store.rs).
    packages: StanzaStore,
    owners: Option<Owners>,
    /// The ownership map was dropped while a transaction held changes the disk does not have
    /// yet: it cannot be made again from the `.list` files until that transaction ends.
    owners_stale: bool,
    /// Paths (absolute in the root) packages may not write at or below.
    reserved: Vec<String>,
    fsync: bool,
    /// Transactions empty their journal for the next one instead of deleting it.
    reuse_journal: bool,
    /// Transactions make new files in place in the directories they create.
    direct_new_dirs: bool,
    /// The info directory was empty when that was turned on ([`Db::fresh_info`]).
    fresh_info: bool,
    /// The journal a finished transaction emptied, kept for the next one (unpack/journal.rs).
    spare_journal: Option<File>,
    /// The names in the info directory, listed on first use and kept up to date by installs
    /// and removals: an upgrade of N packages lists the directory once, not N times.
    info_names: std::sync::OnceLock<BTreeSet<String>>,
    _locks: Vec<File>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("root", &self.root)
            .field("db_dir", &self.db_dir)
            .field("packages", &self.packages.len())
            .finish()
    }
}

impl Drop for Db {
    /// Deletes the emptied journal kept between transactions (still under the locks); a
    /// failure only leaves an empty journal, which the next run takes over.
    fn drop(&mut self) {
        if let Some(f) = self.spare_journal.take()
            && f.metadata().is_ok_and(|m| m.len() == 0)
        {
            let _ = fs::remove_file(self.journal_path());
        }
    }
}

impl Db {
    /// Opens (creating when missing) the database `db_dir` (relative to `root`, e.g.
    /// `usr/lib/opkg`) of the root `root`, which is created too when missing. Takes the
    /// locks described in the module documentation (failing with [`StatusError::Locked`] when
    /// another process holds them) and parses `status` (bounded; errors name the file and
    /// line). Does not finish an interrupted install: call `install::recover` next.
    pub fn open(root: &Path, db_dir: &str) -> Result<Db, StatusError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        let confined = safe_fs::Root::open(root).map_err(|e| StatusError::Io {
            path: e.path.clone(),
            source: io::Error::new(e.kind(), e.to_string()),
        })?;
        let root = confined.path().to_path_buf();
        let db_dir = safe_fs::Root::confine(db_dir).map_err(|_| StatusError::BadDbDir {
            dir: db_dir.to_string(),
            reason: "must be a path inside the root: its `..` climbs above it".into(),
        })?;
        if db_dir.is_empty() {
            return Err(StatusError::BadDbDir {
                dir: db_dir,
                reason: "must not be the root itself".into(),
            });
        }
        // Resolved inside the root as a chroot would (docs/threats.md §18).
        let dir = confined
            .resolve_dir(&db_dir, true)
            .map_err(|e| StatusError::BadDbDir {
                dir: db_dir.clone(),
                reason: e.to_string(),
            })?;
        let db_rel = rel_of(&root, &dir).ok_or_else(|| StatusError::BadDbDir {
            dir: db_dir.clone(),
            reason: "resolves to the root itself".into(),
        })?;
        let mut locks = vec![lock_file(&dir.join(PROKIT_LOCK))?];
        let mut opkg_lock_rel = None;
        if let Ok(lock_dir) = confined.resolve_dir("var/lock", false) {
            let path = lock_dir.join("opkg.lock");
            locks.push(lock_file(&path)?);
            opkg_lock_rel = rel_of(&root, &path);
        }
        let info = dir.join("info");
        match fs::symlink_metadata(&info) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StatusError::BadDbDir {
                    dir: db_dir,
                    reason: format!("{} is not a directory", info.display()),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&info).map_err(io_err(&info))?;
            }
            Err(e) => return Err(io_err(&info)(e)),
        }
        let status_path = dir.join("status");
        let mut reserved = vec![
            format!("/{db_dir}"),
            format!("/{db_rel}"),
            format!("/{OPKG_LOCK}"),
        ];
        reserved.extend(opkg_lock_rel.map(|r| format!("/{r}")));
        reserved.sort();
        reserved.dedup();
        let mut db = Db {
            root,
            db_dir,
            dir,
            info,
            status_path,
            packages: StanzaStore::new(STATUS_LIMITS),
            owners: None,
            owners_stale: false,
            reserved,
            fsync: true,
            reuse_journal: false,
            direct_new_dirs: false,
            fresh_info: false,
            spare_journal: None,
            info_names: std::sync::OnceLock::new(),
            _locks: locks,
        };
        db.reload()?;
        Ok(db)
    }

    /// Every stanza of the status file, sorted by package name, read back one at a time.
    /// (prokit writes only installed packages; a database opkg wrote may hold other
    /// states: see [`is_installed`].)
    pub fn packages(&self) -> impl Iterator<Item = Result<Stanza<'_>, StatusError>> + '_ {
        self.packages.iter().map(|r| r.map_err(self.scratch_err()))
    }

    /// How many stanzas the status file has.
    pub fn package_count(&self) -> usize {
        self.packages.len()
    }

    /// The names of the status file's stanzas, sorted (read from memory).
    pub fn package_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.packages.names()
    }

    /// Whether the status file has a stanza for `name` (read from memory).
    pub fn has(&self, name: &str) -> bool {
        self.packages.contains(name)
    }

    /// The status stanza of `name`.
    pub fn get(&self, name: &str) -> Result<Option<Stanza<'_>>, StatusError> {
        self.packages.get(name).map_err(self.scratch_err())
    }

    /// The status stanza of `name` when it describes an installed package ([`is_installed`]).
    pub fn installed(&self, name: &str) -> Result<Option<Stanza<'_>>, StatusError> {
        Ok(self.get(name)?.filter(|p| is_installed(p)))
    }

    /// The `Version` of `name`'s stanza (empty when it has none); `None` without a stanza.
    pub fn version_of(&self, name: &str) -> Result<Option<String>, StatusError> {
        Ok(self
            .get(name)?
            .map(|p| p.get("Version").unwrap_or("").to_string()))
    }

    /// An error of the scratch file holding the stanzas, named after the status file.
    fn scratch_err(&self) -> impl Fn(io::Error) -> StatusError + '_ {
        |e| StatusError::Io {
            path: self.status_path.clone(),
            source: io::Error::new(e.kind(), format!("its copy in a temporary file: {e}")),
        }
    }

    /// The root (canonical, absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The database directory as configured, relative to the root (`usr/lib/opkg`).
    pub fn db_dir(&self) -> &str {
        &self.db_dir
    }

    /// The database directory on disk (after following symlinks inside the root).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `info` directory on disk.
    pub fn info_dir(&self) -> &Path {
        &self.info
    }

    /// The `status` file on disk.
    pub fn status_path(&self) -> &Path {
        &self.status_path
    }

    /// `info/<name>.<suffix>` on disk.
    pub fn info_file(&self, name: &str, suffix: &str) -> PathBuf {
        self.info.join(format!("{name}.{suffix}"))
    }

    /// Whether state files are fsynced (default true). Turning it off keeps every guarantee
    /// against a killed process (the kernel keeps what was written) but not against a power
    /// loss; useful when bootstrapping a fresh root that is simply rebuilt after a crash.
    pub fn set_fsync(&mut self, on: bool) {
        self.fsync = on;
    }

    /// Whether state files are fsynced.
    pub fn fsync_enabled(&self) -> bool {
        self.fsync
    }

    /// Lets transactions make new files at their final paths in the directories they create
    /// (rather than under temporary names renamed at commit): a bootstrap of a fresh root,
    /// where nobody looks at the root before it is done. Crash safety is the same (an undo
    /// removes them, docs/crash-safety.md §5); what changes is that such files can be seen
    /// before their transaction commits.
    ///
    /// When the info directory is empty then (a fresh root), the info files of a package
    /// being installed are made in place too ([`Db::fresh_info`]).
    pub fn set_direct_new_dirs(&mut self, on: bool) {
        self.direct_new_dirs = on;
        self.fresh_info = on && fs::read_dir(&self.info).is_ok_and(|mut d| d.next().is_none());
    }

    /// Whether the info directory was empty when direct mode was turned on. Then every file
    /// in it is one this database's transactions wrote (it holds the locks), and a package
    /// that is not in the status has none there: an install of it may make its info files
    /// at their final paths (docs/crash-safety.md §5, "Files made in place").
    pub(crate) fn fresh_info(&self) -> bool {
        self.fresh_info
    }

    pub(crate) fn direct_new_dirs(&self) -> bool {
        self.direct_new_dirs
    }

    /// Adds the directories `dirs` (inside the root: the lists directory, prokit's state, the
    /// download cache, the lock directory) to what packages may never write, both as
    /// configured and as it resolves inside the root (docs/threats.md §19).
    pub fn reserve(&mut self, dirs: &[&str]) {
        let root = safe_fs::Root::open(&self.root).ok();
        for rel in dirs {
            let Ok(confined) = safe_fs::Root::confine(rel) else {
                continue;
            };
            if confined.is_empty() {
                continue;
            }
            self.reserved.push(format!("/{confined}"));
            if let Some(root) = &root
                && let Ok(dir) = root.resolve_dir(&confined, false)
                && let Some(r) = rel_of(&self.root, &dir)
            {
                self.reserved.push(format!("/{r}"));
            }
        }
        self.reserved.sort();
        self.reserved.dedup();
    }

    /// The paths (absolute in the root) a package may never write: the database directory,
    /// the lock files, and what [`Db::reserve`] added.
    pub fn is_reserved(&self, path: &str) -> bool {
        self.reserved.iter().any(|base| {
            path.strip_prefix(base.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// The installed files of `name`: every path of its `.list`, with kind, hash and symlink
    /// target from prokit's sidecar when it has one for this version, plus the directories
    /// the sidecar records. Sorted by path. A package without a `.list` has no files.
    pub fn files(&self, name: &str) -> Result<Vec<FileRecord>, StatusError> {
        let version = self
            .get(name)?
            .ok_or_else(|| StatusError::NotInstalled(name.to_string()))?
            .get("Version")
            .unwrap_or("")
            .to_string();
        let listed = read_list(&self.info_file(name, "list"))?;
        let sidecar = read_sidecar(&self.info_file(name, SIDECAR_SUFFIX), name, &version)?;
        let mut by_path: BTreeMap<String, FileRecord> = BTreeMap::new();
        let mut known: HashMap<String, FileRecord> = HashMap::new();
        for r in sidecar {
            if r.kind == FileKind::Dir {
                by_path.insert(r.path.clone(), r);
            } else {
                known.insert(r.path.clone(), r);
            }
        }
        for (path, is_dir) in listed {
            let rec = match known.remove(&path) {
                Some(r) => r,
                None => FileRecord {
                    path: path.clone(),
                    kind: if is_dir {
                        FileKind::Dir
                    } else {
                        FileKind::Unknown
                    },
                    sha256: None,
                    link_target: None,
                    mode: None,
                },
            };
            by_path.insert(path, rec);
        }
        Ok(by_path.into_values().collect())
    }

    /// The `Conffiles` of an installed package: (path, recorded hash) pairs.
    pub fn conffiles(&self, name: &str) -> Result<Vec<(String, String)>, StatusError> {
        Ok(self
            .get(name)?
            .map(|p| conffiles_of(&p))
            .unwrap_or_default())
    }

    /// The bytes of `info/<name>.<suffix>` (at most `max`), never through a symlink; `None`
    /// when absent.
    pub fn read_info(
        &self,
        name: &str,
        suffix: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, StatusError> {
        let path = self.info_file(name, suffix);
        let Some(mut f) = open_bounded(&path, max)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        f.read_to_end(&mut out).map_err(io_err(&path))?;
        Ok(Some(out))
    }

    /// Re-reads `status` from disk and forgets cached ownership.
    pub(crate) fn reload(&mut self) -> Result<(), StatusError> {
        self.packages = read_status(&self.status_path)?;
        self.owners = None;
        self.owners_stale = false;
        self.info_names = std::sync::OnceLock::new();
        Ok(())
    }

    /// The names of the info directory that start with `prefix`, sorted.
    pub(crate) fn info_names_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StatusError> {
        let names = match self.info_names.get() {
            Some(n) => n,
            None => {
                let mut set = BTreeSet::new();
                let dir = &self.info;
                let rd = match fs::read_dir(dir) {
                    Ok(rd) => Some(rd),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(source) => {
                        return Err(StatusError::Io {
                            path: dir.clone(),
                            source,
                        });
                    }
                };
                for e in rd.into_iter().flatten() {
                    let e = e.map_err(|source| StatusError::Io {
                        path: dir.clone(),
                        source,
                    })?;
                    if let Some(f) = e.file_name().to_str() {
                        set.insert(f.to_string());
                    }
                }
                self.info_names.get_or_init(|| set)
            }
        };
        Ok(names
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|n| n.starts_with(prefix))
            .cloned()
            .collect())
    }

    /// Records that the info files `gone` were deleted and `added` written (after a
    /// transaction finished).
    pub(crate) fn note_info_names(&mut self, gone: &[String], added: &[String]) {
        if let Some(names) = self.info_names.get_mut() {
            for g in gone {
                names.remove(g);
            }
            names.extend(added.iter().cloned());
        }
    }

    /// Which package owns which path, built on first use from every `.list` and sidecar.
    pub(crate) fn owners(&mut self) -> Result<&mut Owners, StatusError> {
        if self.owners.is_none() && self.owners_stale {
            return Err(StatusError::OwnersStale);
        }
        if self.owners.is_none() {
            let mut owners = Owners::default();
            for name in self.packages.names() {
                let records = self.files(name)?;
                owners.add_listed(name, &records)?;
            }
            self.owners = Some(owners);
        }
        // Just filled in above.
        Ok(self.owners.get_or_insert_with(Owners::default))
    }

    /// Drops the ownership map after it could not follow a change: it is built again from
    /// the `.list` files when next needed, once they hold the change. `committed`: they do
    /// already; otherwise the change is in an open transaction, and the map is not built
    /// again until [`Db::transaction_ended`].
    pub(crate) fn forget_owners(&mut self, committed: bool) {
        self.owners = None;
        self.owners_stale |= !committed;
    }

    /// The open transaction committed or rolled back: the disk is whole again, and an
    /// ownership map dropped during it can be built from it.
    pub(crate) fn transaction_ended(&mut self) {
        self.owners_stale = false;
    }

    /// The ownership map, when [`Db::owners`] built it.
    pub(crate) fn owners_ref(&self) -> Option<&Owners> {
        self.owners.as_ref()
    }

    /// Records (`Some`) or forgets (`None`) one package's stanza in memory (after the status
    /// file was written).
    pub(crate) fn set_package(&mut self, name: &str, stanza: Option<Paragraph>) {
        self.packages.set(name, stanza);
    }

    /// Writes the status file the database would have with package `name`'s stanza replaced
    /// by `stanza` (added when new; removed when `None`) to `out` as it goes: installing
    /// package k of a bootstrap costs one pass over k stanzas, and the file's text is never
    /// whole in memory. Its many small writes go through a buffer of its own, flushed before
    /// it returns.
    pub(crate) fn write_status_with(
        &self,
        out: &mut dyn Write,
        name: &str,
        stanza: Option<&Paragraph>,
    ) -> io::Result<()> {
        let out = &mut io::BufWriter::with_capacity(128 * 1024, out);
        self.packages
            .for_each_text_with(name, stanza, &mut |_, text| {
                out.write_all(text)?;
                out.write_all(b"\n")
            })?;
        out.flush()
    }

    /// The stanza of `name`, owned (tests).
    #[cfg(test)]
    pub(crate) fn stanza(&self, name: &str) -> Option<Paragraph> {
        self.get(name).unwrap().map(std::borrow::Cow::into_owned)
    }

    /// Every stanza, in a map (tests compare a database before and after).
    #[cfg(test)]
    pub(crate) fn package_map(&self) -> BTreeMap<String, Paragraph> {
        self.packages.to_map()
    }

    /// The interrupted-operation journal.
    pub(crate) fn journal_path(&self) -> PathBuf {
        self.dir.join("prokit-journal")
    }

    /// Lets the transactions of this process keep one journal file, emptied between them,
    /// instead of creating and deleting one each (for installs of many packages); an empty
    /// journal left by a killed run holds nothing to recover. Deleted when `self` is dropped.
    pub fn set_reuse_journal(&mut self, on: bool) {
        self.reuse_journal = on;
    }

    pub(crate) fn reuses_journal(&self) -> bool {
        self.reuse_journal
    }

    /// Whether an emptied journal is kept open for the next transaction.
    pub(crate) fn holds_spare_journal(&self) -> bool {
        self.spare_journal.is_some()
    }

    /// The empty journal a finished transaction left, if any.
    pub(crate) fn take_spare_journal(&mut self) -> Option<File> {
        self.spare_journal.take()
    }

    /// Keeps the emptied journal of a finished transaction for the next one.
    pub(crate) fn keep_spare_journal(&mut self, f: File) {
        self.spare_journal = Some(f);
    }

    /// Where maintainer scripts are put to run.
    pub(crate) fn scripts_dir(&self) -> PathBuf {
        self.dir.join("prokit-scripts")
    }
}

/// The flags of a status stanza (`Status: WANT FLAGS STATE`, FLAGS comma-separated:
/// `ok`, `hold`, `user`, `noprune`, …), as opkg-lede writes them (libopkg/pkg.c
/// `pkg_state_flag_to_str`).
pub fn status_flags(p: &Paragraph) -> Vec<String> {
    p.get("Status")
        .and_then(|s| s.split_whitespace().nth(1))
        .map(|f| f.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether an installed package is held (`flag hold`): upgrade leaves it alone and install
/// refuses to change it without `--force-hold`.
pub fn is_held(p: &Paragraph) -> bool {
    status_flags(p).iter().any(|f| f == "hold")
}

impl Db {
    /// `prokit flag FLAG NAME`: sets the package's flags to `flag` alone, as opkg-lede's
    /// `opkg flag` does (`pkg->state_flag = pkg_state_flag_from_str(flags)`, libopkg/opkg_cmd.c
    /// line 949), and writes the status file atomically under the database lock.
    pub fn set_flag(&mut self, name: &str, flag: &str) -> Result<(), StatusError> {
        self.set_status_words(name, Some(flag), None)
    }

    /// Sets the state word of an installed package's `Status` (`installed` once its
    /// `postinst configure` succeeded, `unpacked` before: as opkg-lede's
    /// `opkg_configure_packages`, libopkg/opkg_cmd.c line 423), keeping its flags.
    pub fn set_state(&mut self, name: &str, state: &str) -> Result<(), StatusError> {
        self.set_status_words(name, None, Some(state))
    }

    fn set_status_words(
        &mut self,
        name: &str,
        flag: Option<&str>,
        state: Option<&str>,
    ) -> Result<(), StatusError> {
        let mut stanza = self
            .installed(name)?
            .ok_or_else(|| StatusError::NotInstalled(name.to_string()))?
            .into_owned();
        let new = status_with(&stanza, flag, state);
        stanza.set("Status", &new).map_err(|e| StatusError::Parse {
            path: self.status_path().to_path_buf(),
            line: 0,
            message: e.to_string(),
        })?;
        let root = safe_fs::Root::open(self.root()).map_err(|e| StatusError::Io {
            path: self.root().to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?;
        let rel = self
            .status_path()
            .strip_prefix(self.root())
            .ok()
            .and_then(|r| r.to_str())
            .map(|r| r.trim_start_matches('/').to_string())
            .ok_or_else(|| StatusError::BadDbDir {
                dir: self.db_dir().to_string(),
                reason: "the status file is not inside the root".into(),
            })?;
        root.write_atomic_with(&rel, safe_fs::WriteOptions::default(), |f| {
            self.write_status_with(f, name, Some(&stanza))
        })
        .map_err(|e| StatusError::Io {
            path: self.status_path().to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?;
        self.set_package(name, Some(stanza));
        Ok(())
    }
}

/// The `Status` of `p` with its flag word and/or its state word replaced (`install ok
/// installed` stands in for a missing or malformed field).
pub(crate) fn status_with(p: &Paragraph, flag: Option<&str>, state: Option<&str>) -> String {
    let status = p.get("Status").unwrap_or("install ok installed");
    let mut words: Vec<&str> = status.split_whitespace().collect();
    if words.len() != 3 {
        words = vec!["install", "ok", "installed"];
    }
    format!(
        "{} {} {}",
        words[0],
        flag.unwrap_or(words[1]),
        state.unwrap_or(words[2])
    )
}

/// Whether a status stanza describes an installed package (`Status: * * installed`, or
/// `unpacked`/`half-configured`, which opkg also counts as present).
pub fn is_installed(p: &Paragraph) -> bool {
    matches!(
        p.get("Status").and_then(|s| s.split_whitespace().nth(2)),
        Some("installed" | "unpacked" | "half-configured")
    )
}

/// The `Conffiles` of a stanza as (path, hash) pairs.
pub fn conffiles_of(p: &Paragraph) -> Vec<(String, String)> {
    p.get("Conffiles")
        .map(|v| {
            v.lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    Some((it.next()?.to_string(), it.next()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The lower-case hex SHA-256 of a file (not following a final symlink).
pub fn sha256_file(path: &Path) -> io::Result<String> {
    hash_file(path, Sha256::new())
}

fn hash_file<D: Digest>(path: &Path, mut d: D) -> io::Result<String> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        d.update(&buf[..n]);
    }
    Ok(hex::encode(d.finalize()))
}

/// `root` joined with a path absolute inside it (`/usr/bin/x`).
pub(crate) fn join_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// `path` relative to `root` with `/` separators, when it is strictly inside it.
fn rel_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let s = rel.to_str()?.trim_matches('/').to_string();
    (!s.is_empty()).then_some(s)
}

/// How long a held lock is retried before `open` gives up (a lock is briefly held on by a
/// child process between its fork and exec).
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Opens `path` (not following a symlink there) and takes an exclusive lock on it, retrying
/// for [`LOCK_GRACE`].
fn lock_file(path: &Path) -> Result<File, StatusError> {
    let start = std::time::Instant::now();
    loop {
        match lock_file_once(path) {
            Err(StatusError::Locked { .. }) if start.elapsed() < LOCK_GRACE => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn lock_file_once(path: &Path) -> Result<File, StatusError> {
    for _ in 0..10 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err(path))?;
        if !try_lock(&file).map_err(io_err(path))? {
            return Err(StatusError::Locked {
                path: path.to_path_buf(),
            });
        }
        // opkg unlinks its lock file on exit: make sure we locked the file that is there now.
        let ours = file.metadata().map_err(io_err(path))?;
        match fs::symlink_metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => return Ok(file),
            _ => continue,
        }
    }
    Err(StatusError::Locked {
        path: path.to_path_buf(),
    })
}

#[cfg(target_os = "linux")]
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    // SAFETY: the descriptor is open for the duration of the call and `fl` outlives it.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(e),
    }
}

/// Opens a file for a bounded read: fails when it is larger than `limit`; `None` when absent.
fn open_bounded(path: &Path, limit: u64) -> Result<Option<safe_fs::Bounded>, StatusError> {
    // Never through a final symlink, and a regular file only (a `.list` or `status` linked to
    // a host file is not read: docs/threats.md §20); the database directory itself was
    // resolved inside the root.
    let too_large = || StatusError::TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    match safe_fs::open_bounded(path, limit) {
        Ok(Some(f)) if f.file().metadata().map_err(io_err(path))?.len() > limit => Err(too_large()),
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => Err(too_large()),
        Err(e) => Err(StatusError::Io {
            path: path.to_path_buf(),
            source: e.into_io_error(),
        }),
    }
}

/// The limits a status file is parsed under (and its stanzas read back from the scratch file).
const STATUS_LIMITS: ControlLimits = ControlLimits {
    max_line: 1 << 20,
    max_fields: 4096,
    max_paragraph: 16 << 20,
};

/// Parses a status file (absent: empty) into a store, a stanza at a time.
fn read_status(path: &Path) -> Result<StanzaStore, StatusError> {
    let mut out = StanzaStore::new(STATUS_LIMITS);
    let Some(file) = open_bounded(path, MAX_STATUS)? else {
        return Ok(out);
    };
    let mut reader = ParagraphReader::with_limits(BufReader::new(file), STATUS_LIMITS);
    while let Some(item) = reader.next() {
        let p = item.map_err(|e| StatusError::Parse {
            path: path.to_path_buf(),
            line: e.line,
            message: e.kind.to_string(),
        })?;
        let line = reader.paragraph_start_line();
        let name = p.get("Package").unwrap_or("").to_string();
        if name.is_empty() {
            return Err(StatusError::Parse {
                path: path.to_path_buf(),
                line,
                message: "stanza without a Package field".into(),
            });
        }
        if !valid_package_name(&name) {
            // The name becomes `info/<name>.list` and friends: it must stay a file name.
            return Err(StatusError::Parse {
                path: path.to_path_buf(),
                line,
                message: format!(
                    "package name {} cannot be a file name in the database (a slash, a leading dot or a control character)",
                    crate::config::excerpt(&name)
                ),
            });
        }
        if out.contains(&name) {
            return Err(StatusError::Parse {
                path: path.to_path_buf(),
                line,
                message: format!("second stanza for package {name}"),
            });
        }
        out.load(&name, p);
    }
    out.settle();
    Ok(out)
}

/// True for a package name that can name files in the database (`info/<name>.list`).
pub fn valid_package_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// A path read from the database (`.list`, sidecar): absolute inside the root, normalized
/// (`//`, `.` dropped); `None` when it is not absolute or a `..` climbs out of the root,
/// which no package manager writes (docs/threats.md §19).
fn confined_list_path(p: &str) -> Option<String> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return None;
    }
    let rel = safe_fs::Root::confine(p).ok()?;
    Some(format!("/{rel}"))
}

/// Reads an opkg `.list`: (path, is a directory) pairs. Absent: empty. Lines may carry
/// `\t<mode>[\t<target>]` after the path (the format of Yocto's opkg); that is dropped.
fn read_list(path: &Path) -> Result<Vec<(String, bool)>, StatusError> {
    let Some(file) = open_bounded(path, MAX_LIST)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(io_err(path))?;
        let text = String::from_utf8(line).map_err(|_| StatusError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: "not valid UTF-8".into(),
        })?;
        let p = text.split('\t').next().unwrap_or("").trim_end_matches('\r');
        if p.is_empty() {
            continue;
        }
        let is_dir = p.len() > 1 && p.ends_with('/');
        let Some(confined) = confined_list_path(p).filter(|c| c != "/") else {
            return Err(StatusError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!(
                    "{} is not a path inside the root (absolute, without `..`): refusing to use this list",
                    crate::config::excerpt(p)
                ),
            });
        };
        out.push((confined, is_dir));
    }
    Ok(out)
}

/// Reads prokit's sidecar; empty when absent or written for another version.
fn read_sidecar(path: &Path, name: &str, version: &str) -> Result<Vec<FileRecord>, StatusError> {
    let Some(file) = open_bounded(path, MAX_SIDECAR)? else {
        return Ok(Vec::new());
    };
    let bad = |line: usize, message: String| StatusError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if i == 0 {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 4 || f[0] != SIDECAR_HEADER || f[1] != "1" {
                return Err(bad(1, "not a prokit-sha256 version 1 file".into()));
            }
            if f[2] != name || f[3] != version {
                return Ok(Vec::new());
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        if f.len() != 4 {
            return Err(bad(i + 1, "expected 4 tab-separated fields".into()));
        }
        let kind =
            FileKind::from_letter(f[0]).ok_or_else(|| bad(i + 1, format!("kind {:?}", f[0])))?;
        let mode = u32::from_str_radix(f[1], 8)
            .map_err(|_| bad(i + 1, format!("mode {:?} is not octal", f[1])))?;
        if confined_list_path(f[3]).as_deref() != Some(f[3]) {
            return Err(bad(
                i + 1,
                format!(
                    "{} is not a normalized path inside the root",
                    crate::config::excerpt(f[3])
                ),
            ));
        }
        let (sha256, link_target) = match kind {
            FileKind::File => {
                if f[2].len() != 64 || !f[2].bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(i + 1, format!("{:?} is not a SHA-256", f[2])));
                }
                (Some(f[2].to_ascii_lowercase()), None)
            }
            FileKind::Symlink => (None, Some(f[2].to_string())),
            _ => (None, None),
        };
        out.push(FileRecord {
            path: f[3].to_string(),
            kind,
            sha256,
            link_target,
            mode: Some(mode & 0o7777),
        });
    }
    Ok(out)
}

/// The text of an opkg `.list` for these records (non-directories, sorted).
pub(crate) fn list_text(records: &[FileRecord]) -> String {
    let mut paths: Vec<&str> = records
        .iter()
        .filter(|r| r.kind != FileKind::Dir)
        .map(|r| r.path.as_str())
        .collect();
    paths.sort_unstable();
    let mut out = String::new();
    for p in paths {
        out.push_str(p);
        out.push('\n');
    }
    out
}

/// The text of prokit's sidecar for these records (sorted by path).
pub(crate) fn sidecar_text(name: &str, version: &str, records: &[FileRecord]) -> String {
    let mut sorted: Vec<&FileRecord> = records.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = format!("{SIDECAR_HEADER}\t1\t{name}\t{version}\n");
    for r in sorted {
        let data = match r.kind {
            FileKind::File => r.sha256.as_deref().unwrap_or("-"),
            FileKind::Symlink => r.link_target.as_deref().unwrap_or("-"),
            _ => "-",
        };
        out.push_str(&format!(
            "{}\t{:04o}\t{}\t{}\n",
            r.kind.letter(),
            r.mode.unwrap_or(0) & 0o7777,
            data,
            r.path
        ));
    }
    out
}

/// Fields copied from the control file into a status stanza, in opkg's order (Status goes
/// after Conflicts; Essential and Architecture after it).
const RELATION_FIELDS: [&str; 8] = [
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Provides",
    "Replaces",
    "Conflicts",
    "Breaks",
];

/// Builds the status stanza of a package from its control file.
pub(crate) fn status_stanza(
    control: &Paragraph,
    user: bool,
    conffiles: &[(String, String)],
    installed_time: i64,
    scripts_skipped: bool,
) -> Paragraph {
    let mut p = Paragraph::new();
    // Values come from a parsed control file; folding continuation lines into one line keeps
    // them valid (opkg reads relation fields from one line).
    let one_line = |v: &str| v.split('\n').map(str::trim).collect::<Vec<_>>().join(" ");
    let put = |p: &mut Paragraph, name: &str, value: &str| {
        let _ = p.set(name, value);
    };
    for f in ["Package", "Version"] {
        if let Some(v) = control.get(f) {
            put(&mut p, f, &one_line(v));
        }
    }
    for f in RELATION_FIELDS {
        if let Some(v) = control.get(f) {
            let v = one_line(v);
            if !v.is_empty() {
                put(&mut p, f, &v);
            }
        }
    }
    put(
        &mut p,
        "Status",
        if user {
            "install user installed"
        } else {
            "install ok installed"
        },
    );
    if control
        .get("Essential")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"))
    {
        put(&mut p, "Essential", "yes");
    }
    if let Some(v) = control.get("Architecture") {
        put(&mut p, "Architecture", &one_line(v));
    }
    if !conffiles.is_empty() {
        let mut v = String::new();
        for (path, hash) in conffiles {
            v.push_str(&format!("\n {path} {hash}"));
        }
        put(&mut p, "Conffiles", &v);
    }
    put(&mut p, "Installed-Time", &installed_time.to_string());
    if !user {
        put(&mut p, "Auto-Installed", "yes");
    }
    if scripts_skipped {
        put(&mut p, "Prokit-Scripts", "skipped");
    }
    p
}

/// Writes `data` to a new file `path` (which must not exist), with `mode`, fsynced when
/// `sync`.
pub(crate) fn write_new_file(path: &Path, data: &[u8], mode: u32, sync: bool) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(data)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    if sync {
        f.sync_all()?;
    }
    Ok(())
}

/// fsyncs a directory (so renames in it are durable).
pub(crate) fn fsync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The directories' owners, in the table or in memory once shared, against a model,
    /// through random installs and removals (a directory moves to the shared lists at its
    /// second package and back at its last but one).
    #[test]
    fn directory_owners_match_a_model_through_adds_and_removes() {
        let mut o = Owners::default();
        let mut model: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut installed: BTreeMap<String, Vec<FileRecord>> = BTreeMap::new();
        let (mut bitmaps, mut lists) = (0, 0);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..3000 {
            let name = format!("p{}", next(60));
            if let Some(records) = installed.remove(&name) {
                o.remove_package(&name, &records).unwrap();
                for r in &records {
                    let owners = model.get_mut(&r.path).unwrap();
                    owners.remove(&name);
                    if owners.is_empty() {
                        model.remove(&r.path);
                    }
                }
            } else {
                let mut paths: BTreeSet<String> = BTreeSet::new();
                for _ in 0..1 + next(4) {
                    paths.insert(format!("/d{}", next(25)));
                }
                let records: Vec<FileRecord> = paths
                    .iter()
                    .map(|p| FileRecord {
                        path: p.clone(),
                        kind: FileKind::Dir,
                        sha256: None,
                        link_target: None,
                        mode: None,
                    })
                    .collect();
                o.add_package(&name, &records).unwrap();
                for p in paths {
                    model.entry(p).or_default().insert(name.clone());
                }
                installed.insert(name, records);
            }
            if step % 50 == 0 || step == 2999 {
                for d in 0..25 {
                    let path = format!("/d{d}");
                    let got: BTreeSet<String> = o
                        .dir_owners(&path)
                        .unwrap()
                        .map(|n| n.unwrap().into_owned())
                        .collect();
                    assert_eq!(got, model.get(&path).cloned().unwrap_or_default(), "{path}");
                    let in_table = o.dirs.get(&path).unwrap().is_some();
                    let shared = o.shared.get(&o.dirs.key(&path));
                    assert!(!(in_table && shared.is_some()), "{path} in both");
                    bitmaps += usize::from(matches!(shared, Some(Shippers::Bits(_))));
                    lists += usize::from(matches!(shared, Some(Shippers::List(_))));
                }
            }
        }
        assert!(
            bitmaps > 0 && lists > 0,
            "both forms of a shared directory were checked"
        );
    }

    #[test]
    fn owners_hold_each_package_name_once() {
        let rec = |path: &str, kind| FileRecord {
            path: path.into(),
            kind,
            sha256: None,
            link_target: None,
            mode: None,
        };
        let foo = [
            rec("/usr", FileKind::Dir),
            rec("/usr/bin", FileKind::Dir),
            rec("/usr/bin/foo", FileKind::File),
            rec("/usr/bin/foo2", FileKind::Symlink),
        ];
        let bar = [
            rec("/usr/bin", FileKind::Dir),
            rec("/usr/bin/bar", FileKind::File),
        ];
        let mut o = Owners::default();
        o.add_package("foo", &foo).unwrap();
        o.add_package("bar", &bar).unwrap();
        o.add_listed("foo", &[rec("/usr/bin/bar", FileKind::File)])
            .unwrap();
        // One name for every path of a package.
        assert_eq!(o.file_owner("/usr/bin/foo").unwrap().unwrap(), "foo");
        assert_eq!(o.file_owner("/usr/bin/foo2").unwrap().unwrap(), "foo");
        let dir = |o: &Owners, path: &str| {
            o.dir_owners(path)
                .unwrap()
                .map(|n| n.unwrap().into_owned())
                .collect::<Vec<_>>()
        };
        // Sorted by when the name was first seen; each package once.
        assert_eq!(dir(&o, "/usr/bin"), ["foo", "bar"]);
        assert!(o.dirs.get("/usr").unwrap().is_some() && o.shared.len() == 1);
        // A listed path keeps the owner it has.
        assert_eq!(o.file_owner("/usr/bin/bar").unwrap().unwrap(), "bar");
        // Asked on behalf of its owner, a path has no other owner; on behalf of another, it has.
        let foo_id = o.package_number("foo").unwrap();
        assert!(foo_id.is_some() && o.package_number("baz").unwrap().is_none());
        assert!(
            o.file_owner_besides("/usr/bin/foo", foo_id)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            o.file_owner_besides("/usr/bin/bar", foo_id)
                .unwrap()
                .as_deref(),
            Some("bar")
        );
        let names = |o: &Owners| {
            (0..o.names.len() as u32)
                .map(|i| o.names.get(i).unwrap().unwrap().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&o), ["foo", "bar"]);
        // Adding a package twice changes nothing.
        o.add_package("bar", &bar).unwrap();
        assert_eq!(dir(&o, "/usr/bin"), ["foo", "bar"]);
        o.remove_package("foo", &foo).unwrap();
        assert!(
            o.file_owner("/usr/bin/foo").unwrap().is_none()
                && o.dirs.get("/usr").unwrap().is_none()
        );
        assert_eq!(dir(&o, "/usr/bin"), ["bar"]);
        assert!(o.dirs.get("/usr/bin").unwrap().is_some() && o.shared.is_empty());
        // A package that owns nothing (or is unknown) removes nothing.
        o.remove_package("baz", &bar).unwrap();
        assert_eq!(dir(&o, "/usr/bin"), ["bar"]);
        o.remove_package("bar", &bar).unwrap();
        assert!(o.dirs.len() == 0 && o.files.len() == 0 && o.shared.is_empty());
        // The next package of that name shares the name kept.
        o.add_package("foo", &foo[2..3]).unwrap();
        assert_eq!(o.names.len(), 2);
    }

    fn sample_control() -> Paragraph {
        Paragraph::parse(
            "Package: foo\nVersion: 1.0-1\nDepends: libc, bar (>= 2)\nProvides: foo-any\n\
             Source: feeds/foo\nSection: utils\nArchitecture: x86_64\nInstalled-Size: 10\n\
             Description:  Foo.\n More.\n",
        )
        .unwrap()
    }

    /// The ownership map dropped inside an open transaction is not made again from the
    /// disk (which does not hold the transaction's changes) until the transaction ends.
    #[test]
    fn ownership_map_dropped_in_a_transaction_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path(), "usr/lib/opkg").unwrap();
        db.owners().unwrap();
        db.forget_owners(true);
        assert!(
            db.owners().is_ok(),
            "a committed change: made again at once"
        );
        db.forget_owners(false);
        assert!(matches!(db.owners(), Err(StatusError::OwnersStale)));
        db.transaction_ended();
        assert!(db.owners().is_ok());
    }

    #[test]
    fn status_file_round_trips_opkg_format() {
        let dir = tempfile::tempdir().unwrap();
        let conffiles = vec![(
            "/etc/config/foo".to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_string(),
        )];
        let user = status_stanza(&sample_control(), true, &conffiles, 1700000000, false);
        let auto_ctl = Paragraph::parse("Package: bar\nVersion: 2\nArchitecture: all\n").unwrap();
        let auto = status_stanza(&auto_ctl, false, &[], 1700000001, true);
        let root = dir.path();
        let mut db = Db::open(root, "usr/lib/opkg").unwrap();
        db.set_package("foo", Some(user.clone()));
        db.set_package("bar", Some(auto.clone()));
        let status_text = |db: &Db| {
            let mut out = Vec::new();
            db.write_status_with(&mut out, "", None).unwrap();
            String::from_utf8(out).unwrap()
        };
        let text = status_text(&db);
        drop(db);
        // Byte for byte what opkg-lede's pkg_print_status writes, stanzas sorted by name.
        assert_eq!(
            text,
            "Package: bar\nVersion: 2\nStatus: install ok installed\nArchitecture: all\n\
             Installed-Time: 1700000001\nAuto-Installed: yes\nProkit-Scripts: skipped\n\n\
             Package: foo\nVersion: 1.0-1\nDepends: libc, bar (>= 2)\nProvides: foo-any\n\
             Status: install user installed\nArchitecture: x86_64\nConffiles:\n \
             /etc/config/foo e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             Installed-Time: 1700000000\n\n"
        );
        let db_path = root.join("usr/lib/opkg");
        fs::write(db_path.join("status"), &text).unwrap();
        let db = Db::open(root, "usr/lib/opkg").unwrap();
        let names: Vec<String> = db
            .packages()
            .map(|p| p.unwrap().get("Package").unwrap().to_string())
            .collect();
        assert_eq!(names, ["bar", "foo"]);
        assert_eq!(db.stanza("foo"), Some(user));
        assert_eq!(db.stanza("bar"), Some(auto));
        assert_eq!(db.conffiles("foo").unwrap(), conffiles);
        assert!(is_installed(&db.stanza("bar").unwrap()));
        // Rewriting what was read gives the same bytes.
        assert_eq!(status_text(&db), text);
    }

    #[test]
    fn status_parse_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("usr/lib/opkg");
        fs::create_dir_all(&db_path).unwrap();
        fs::write(
            db_path.join("status"),
            "Package: a\nVersion: 1\n\nPackage: b\nno colon here\n",
        )
        .unwrap();
        let err = Db::open(dir.path(), "usr/lib/opkg")
            .unwrap_err()
            .to_string();
        assert!(err.contains("usr/lib/opkg/status"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        fs::write(
            db_path.join("status"),
            "Package: a\nVersion: 1\n\nPackage: a\nVersion: 2\n",
        )
        .unwrap();
        let err = Db::open(dir.path(), "usr/lib/opkg")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 4") && err.contains("second stanza"),
            "{err}"
        );
    }

    #[test]
    fn second_open_of_a_root_fails_with_locked() {
        let dir = tempfile::tempdir().unwrap();
        let first = Db::open(dir.path(), DEFAULT_DB_DIR).unwrap();
        let err = Db::open(dir.path(), DEFAULT_DB_DIR).unwrap_err();
        assert!(matches!(err, StatusError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("prokit.lock"), "{err}");
        drop(first);
        Db::open(dir.path(), DEFAULT_DB_DIR).unwrap();
    }

    #[test]
    fn open_locks_opkg_lock_file_when_var_lock_exists() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("var/lock")).unwrap();
        let db = Db::open(dir.path(), DEFAULT_DB_DIR).unwrap();
        let lock = dir.path().join(OPKG_LOCK);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&lock)
            .unwrap();
        assert!(
            !try_lock(&f).unwrap(),
            "a second lock on opkg.lock must fail"
        );
        // What opkg-lede does, lockf(F_TLOCK) from another process, must fail too.
        let lockf = |path: &Path| {
            std::process::Command::new("python3")
                .arg("-c")
                .arg("import fcntl,sys; f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)")
                .arg(path)
                .stderr(std::process::Stdio::null())
                .status()
                .ok()
        };
        if let Some(st) = lockf(&lock) {
            assert!(!st.success(), "opkg's lockf must see prokit's lock");
        }
        drop(db);
        // Another test thread may fork between our open and its exec: the child then holds the
        // lock's open file description until it execs, as `lock_file` allows for with
        // LOCK_GRACE. Wait out that window rather than fail on it.
        let within_grace = |mut ok: Box<dyn FnMut() -> bool + '_>| {
            let start = std::time::Instant::now();
            loop {
                if ok() {
                    return true;
                }
                if start.elapsed() > LOCK_GRACE * 4 {
                    return false;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        assert!(
            within_grace(Box::new(|| try_lock(&f).unwrap())),
            "the lock must be free once prokit let go"
        );
        drop(f);
        if lockf(&lock).is_some() {
            assert!(
                within_grace(Box::new(|| lockf(&lock).is_some_and(|st| st.success()))),
                "lockf must succeed once prokit let go"
            );
        }
    }

    #[test]
    fn db_dir_is_resolved_inside_root_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("real/opkg")).unwrap();
        fs::create_dir_all(root.join("var")).unwrap();
        // An absolute link inside the root means the root's /real, not the host's.
        std::os::unix::fs::symlink("/real", root.join("var/lib")).unwrap();
        let db = Db::open(root, "var/lib/opkg").unwrap();
        assert_eq!(db.dir(), fs::canonicalize(root.join("real/opkg")).unwrap());
        assert!(db.is_reserved("/var/lib/opkg/status"));
        assert!(db.is_reserved("/real/opkg/info/x.list"));
        assert!(!db.is_reserved("/real/other"));
        drop(db);
        // `..` never climbs above the root.
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        let got = safe_fs::Root::open(root)
            .unwrap()
            .resolve_dir("up/made", true)
            .unwrap();
        assert_eq!(got, fs::canonicalize(root).unwrap().join("made"));
        assert!(Db::open(root, "../x").is_err());
    }

    #[test]
    fn files_merge_list_and_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let info = root.join("usr/lib/opkg/info");
        fs::create_dir_all(&info).unwrap();
        fs::write(
            root.join("usr/lib/opkg/status"),
            "Package: foo\nVersion: 1\nStatus: install user installed\nArchitecture: all\n\n\
             Package: old\nVersion: 1\nStatus: install ok installed\nArchitecture: all\n\n",
        )
        .unwrap();
        let recs = vec![
            FileRecord {
                path: "/usr/bin/foo".into(),
                kind: FileKind::File,
                sha256: Some("ab".repeat(32)),
                link_target: None,
                mode: Some(0o755),
            },
            FileRecord {
                path: "/usr/bin/f".into(),
                kind: FileKind::Symlink,
                sha256: None,
                link_target: Some("foo".into()),
                mode: Some(0o777),
            },
            FileRecord {
                path: "/usr/bin".into(),
                kind: FileKind::Dir,
                sha256: None,
                link_target: None,
                mode: Some(0o755),
            },
        ];
        fs::write(info.join("foo.list"), list_text(&recs)).unwrap();
        assert_eq!(list_text(&recs), "/usr/bin/f\n/usr/bin/foo\n");
        fs::write(info.join("foo.sha256"), sidecar_text("foo", "1", &recs)).unwrap();
        // A package opkg installed: a .list only.
        fs::write(info.join("old.list"), "/usr/sbin/old\n/etc/old.conf\n").unwrap();
        // A stale sidecar from another version is ignored.
        fs::write(info.join("old.sha256"), sidecar_text("old", "0.9", &recs)).unwrap();
        let mut db = Db::open(root, DEFAULT_DB_DIR).unwrap();
        let mut want = recs.clone();
        want.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(db.files("foo").unwrap(), want);
        let old = db.files("old").unwrap();
        assert_eq!(old.len(), 2);
        assert!(
            old.iter()
                .all(|r| r.kind == FileKind::Unknown && r.sha256.is_none())
        );
        let owners = db.owners().unwrap();
        assert_eq!(
            owners.file_owner("/usr/bin/foo").unwrap().as_deref(),
            Some("foo")
        );
        assert_eq!(
            owners.file_owner("/etc/old.conf").unwrap().as_deref(),
            Some("old")
        );
        assert!(
            owners
                .dir_owners("/usr/bin")
                .unwrap()
                .any(|o| o.unwrap() == "foo")
        );
        assert!(matches!(
            db.files("nope"),
            Err(StatusError::NotInstalled(_))
        ));
    }

    #[test]
    fn oversized_status_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status");
        let f = File::create(&p).unwrap();
        f.set_len(MAX_STATUS + 1).unwrap();
        assert!(matches!(read_status(&p), Err(StatusError::TooLarge { .. })));
    }
}
