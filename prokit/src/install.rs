//! Installing, upgrading and removing one package in a root, crash-safely (docs/threats.md §16,
//! docs/crash-safety.md §5), with maintainer scripts run the way OpenWrt's image build runs them.
//!
//! An install stages the package ([`crate::unpack::unpack`]), writes its database files
//! (`info/<pkg>.control`, `.list`, `.conffiles`, the scripts, prokit's `.sha256`) and the new
//! `status` to temporary files, then commits: renames everything into place, runs the
//! post-install scripts, and only then records the new status. Every step is journaled
//! (see [`crate::unpack`]); a failure rolls back in-process, a killed run is finished or
//! undone by [`recover`]. The caller calls [`recover`] right after `Db::open`, before
//! planning anything; [`install`] and [`remove`] call it again first, as a safety net.
//!
//! Maintainer scripts ([`ScriptMode::Offline`]) run on the host as `sh <script> <args>`, with
//! `IPKG_INSTROOT=<root>`, `PKG_ROOT=<root>`, `PKG_UPGRADE=0|1`, the root as working directory
//! and stdin from `/dev/null`; the script file is called `<pkg>.<script>` as opkg installs it
//! (OpenWrt's `default_postinst "$0"` derives the package name from it). Order, as opkg and
//! dpkg do it: install — `preinst install`, unpack, `postinst configure`; upgrade — old
//! `prerm upgrade <new>`, new `preinst upgrade <old>`, unpack, old `postrm upgrade <new>`, new
//! `postinst configure`; remove — `prerm remove`, files removed, `postrm remove`. A script
//! that fails fails the operation with its exit status and its output (stdout and stderr,
//! interleaved, the first 64 KiB), and the operation is rolled back; prokit does not call
//! dpkg's error-unwind scripts (`abort-upgrade`, ...). With [`ScriptMode::Skip`] nothing runs
//! and the status stanza of a package that has scripts says `Prokit-Scripts: skipped`.
//!
//! [`ScriptMode::Run`] is the live system (the root is `/`), as opkg runs scripts on a device:
//! `PKG_ROOT=/` and no `IPKG_INSTROOT`, the same order. `preinst` and the old `prerm` still run
//! before anything is visible, and their failure rolls the operation back; but the package is
//! committed as `install … unpacked` and the scripts after unpacking (the old `postrm
//! upgrade`, `postinst configure`) run once the transaction is done: a failure leaves the new
//! version's files in place and the package unpacked, as opkg leaves it, and [`configure`]
//! runs `postinst` again; success marks it `installed`. A failing `postrm remove` is reported
//! after the removal (docs/crash-safety.md §5, step 4).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use feeds::control::Paragraph;
use feeds::package::MAINTAINER_SCRIPTS;

use crate::status::{
    Db, FileKind, FileRecord, SIDECAR_SUFFIX, StatusError, list_text, sidecar_text, status_stanza,
    write_new_file,
};
use crate::unpack::{self, PackageFile, Parent, Transaction, UnpackError, UnpackOptions};

/// Whether maintainer scripts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScriptMode {
    /// Not run; recorded in the status database (`Prokit-Scripts: skipped`).
    #[default]
    Skip,
    /// Run on the host, as OpenWrt's image build does (see the module documentation).
    Offline,
    /// Run on this live system, as opkg runs them on a device upgrading itself: the root is
    /// `/`, `PKG_ROOT=/`, no `IPKG_INSTROOT`. A failing `postinst` (or old `postrm upgrade`)
    /// leaves the package `unpacked`, as opkg does, for [`configure`] to finish; a failing
    /// `postrm remove` leaves it removed (see the module documentation).
    Run,
}

impl ScriptMode {
    /// Whether maintainer scripts run at all.
    pub fn runs(self) -> bool {
        self != ScriptMode::Skip
    }
}

/// How to install or remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallOptions {
    /// Whether maintainer scripts run.
    pub scripts: ScriptMode,
    /// Allow setuid/setgid files, device nodes and FIFOs.
    pub allow_special: bool,
    /// `Installed-Time` to record (the caller passes `SOURCE_DATE_EPOCH` or now).
    pub installed_time: i64,
    /// The configured keyring package (`<name>-keyring` for `option keyring <name>`): the
    /// one package allowed to change which keys and feeds are trusted (docs/threats.md §19).
    pub trust_package: Option<String>,
    /// Let any package change which keys and feeds are trusted (`--allow-trust-changes`).
    pub allow_trust_changes: bool,
    /// Paths that packages upgraded in this transaction ship no more: another package of
    /// the transaction may take such a path over without `Replaces` (a file moving from the
    /// old version of a to a new b, as opkg allows).
    pub released: Released,
    /// Take over files owned by other packages without `Replaces` (`--force-overwrite`).
    pub force_overwrite: bool,
}

/// Whether a path leaves its package in this transaction ([`InstallOptions::released`]):
/// asked, when a package ships a path that another package owns, of the owner and the path.
/// Answers only what it knows: the client answers from the new version's file list once it
/// has arrived, and no before (the package is then tried again once every package has).
#[derive(Clone, Default)]
pub struct Released(Option<std::sync::Arc<ReleasedFn>>);

type ReleasedFn = dyn Fn(&str, &str) -> bool + Send + Sync;

impl Released {
    /// Answered by `leaves(owner, path)`.
    pub fn new(leaves: impl Fn(&str, &str) -> bool + Send + Sync + 'static) -> Released {
        Released(Some(std::sync::Arc::new(leaves)))
    }

    /// The paths that leave, by package.
    pub fn from_map(map: BTreeMap<String, BTreeSet<String>>) -> Released {
        Released::new(move |owner, path| map.get(owner).is_some_and(|p| p.contains(path)))
    }

    /// Whether `path`, owned by `owner` now, leaves it in this transaction.
    pub fn leaves(&self, owner: &str, path: &str) -> bool {
        self.0.as_ref().is_some_and(|f| f(owner, path))
    }
}

impl std::fmt::Debug for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Released(..)"
        } else {
            "Released(none)"
        })
    }
}

impl PartialEq for Released {
    fn eq(&self, other: &Released) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Released {}

/// A path of the installed package that was to be deleted but was left in place, and why
/// (docs/threats.md §19): its `.list` names a path no package can own, or a directory on the
/// way to it is now a symlink (or not a directory), so deleting it would touch files that
/// are not the package's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftInPlace {
    /// The path as the `.list` gives it.
    pub path: String,
    /// Why it was not deleted.
    pub reason: String,
}

/// What the verified index says a package file is: the file must say the same of itself
/// (docs/threats.md §17). A package can only ever install under the name, version and
/// architecture the signed index gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Where the stanza came from, for messages (`feed "main"`).
    pub origin: String,
    pub name: String,
    pub version: String,
    /// Empty when the stanza has no `Architecture`.
    pub arch: String,
    /// The stanza's developer signature (`Signed-By`, `Signature`), when it has one.
    pub index_signature: Option<(String, String)>,
    /// The developer key whose signature over the downloaded file was verified (recorded
    /// in the status file as `Signed-By`).
    pub signed_by: Option<String>,
    /// The feed key whose signature over the index vouched for the file (recorded as
    /// `Prokit-Feed-Key`).
    pub feed_key: Option<String>,
    /// The SHA-256 (hex) the verified index gives: the bytes unpacked must hash to it. The
    /// download checked it already; this check is over the very read that unpacks, so a
    /// file swapped in the cache after the download (and after the review and the policy
    /// judged it) is refused.
    pub sha256: Option<String>,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The package installed.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Paths recorded in the package's `.list` (files, symlinks, nodes).
    pub files: usize,
    /// Conffiles kept because they were modified; the new versions are `<path>-opkg`.
    pub kept_conffiles: Vec<String>,
    /// The version that was installed before, when this was an upgrade (or reinstall).
    pub upgraded_from: Option<String>,
    /// Files of the old version that were not deleted, and why (to show as warnings).
    pub left_in_place: Vec<LeftInPlace>,
    /// setuid/setgid files and device nodes or FIFOs installed (`/usr/bin/su (mode 4755)`),
    /// for the audit trail.
    pub special: Vec<String>,
    /// Each maintainer script the package carries and what became of it (`postinst run`,
    /// `postinst skipped`).
    pub scripts: Vec<String>,
}

/// What a removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveReport {
    /// The package removed.
    pub name: String,
    /// The version that was installed.
    pub version: String,
    /// Paths deleted.
    pub files: usize,
    /// Modified conffiles left in place.
    pub kept_conffiles: Vec<String>,
    /// Files that were not deleted, and why (to show as warnings).
    pub left_in_place: Vec<LeftInPlace>,
}

/// Why an install or removal failed (the root is unchanged unless said otherwise).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "package {package}: {script} {args} failed ({}); {outcome}; output:\n{output}",
        match .exit_code { Some(c) => format!("exit status {c}"), None => "killed by a signal".to_string() }
    )]
    ScriptFailed {
        package: String,
        script: String,
        args: String,
        exit_code: Option<i32>,
        output: String,
        /// What became of the operation ("the operation was rolled back", ...).
        outcome: Box<str>,
    },
    #[error("package {package}: cannot run its {script} script: {source}")]
    ScriptSpawn {
        package: String,
        script: String,
        #[source]
        source: io::Error,
    },
    #[error("package {0} is not installed")]
    NotInstalled(String),
    /// A [`Batch`]'s gate did not open: not every package of the transaction was downloaded
    /// and verified, so nothing was changed.
    #[error("stopped before anything changed: not every package was downloaded and verified")]
    NotVerified,
    #[error(
        "package {0}: configuring runs its postinst: pass --scripts run (the live system) or --scripts offline"
    )]
    ConfigureNeedsScripts(String),
    /// The package file changed after it was downloaded and checked.
    #[error(
        "{file}: refused: its bytes hash to SHA-256 {got}, but the verified index gives {want}: the file changed after it was downloaded and checked"
    )]
    ChangedSinceVerified {
        file: String,
        want: String,
        got: String,
    },
    /// The package file is not what the index stanza it was downloaded for describes.
    #[error(
        "{file}: refused: its control file says {field} {got:?}, but the verified index of {origin} lists it as {field} {want:?}: a package installs only under the identity the signed index gives it"
    )]
    IdentityMismatch {
        file: String,
        origin: String,
        field: &'static str,
        want: String,
        got: String,
    },
}

impl InstallError {
    /// A script failure that did not roll the operation back says what it left.
    fn with_outcome(self, what: String) -> InstallError {
        match self {
            InstallError::ScriptFailed {
                package,
                script,
                args,
                exit_code,
                output,
                ..
            } => InstallError::ScriptFailed {
                package,
                script,
                args,
                exit_code,
                output,
                outcome: what.into(),
            },
            other => other,
        }
    }
}

/// Finishes an installed package that a live install left `unpacked` (its `postinst
/// configure` failed or was interrupted): runs `postinst configure` again and marks it
/// `installed`, as `opkg configure` does. Returns false when the package needed nothing.
pub fn configure(db: &mut Db, name: &str, opts: &InstallOptions) -> Result<bool, InstallError> {
    recover(db)?;
    let state = db
        .installed(name)?
        .ok_or_else(|| InstallError::NotInstalled(name.to_string()))?
        .get("Status")
        .and_then(|s| s.split_whitespace().nth(2))
        .unwrap_or("installed")
        .to_string();
    if state == "installed" {
        return Ok(false);
    }
    if !opts.scripts.runs() {
        return Err(InstallError::ConfigureNeedsScripts(name.to_string()));
    }
    if let Some(s) = read_info_script(db, name, "postinst")? {
        let version = db
            .get(name)?
            .and_then(|p| p.get("Version").map(str::to_string))
            .unwrap_or_default();
        run_script(
            db,
            opts.scripts,
            name,
            "postinst",
            &s,
            &["configure"],
            false,
        )
        .map_err(|e| {
            e.with_outcome(format!(
                "{name} {version} is still unpacked, not configured"
            ))
        })?;
    }
    db.set_state(name, "installed")?;
    Ok(true)
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Finishes or undoes an install or removal that a killed run left half done, and reloads
/// the database. Returns a description of what it did, `None` when nothing was pending.
pub fn recover(db: &mut Db) -> Result<Option<String>, InstallError> {
    let done = unpack::recover_journal(db)?;
    if done.is_some() {
        db.reload()?;
    }
    Ok(done)
}

/// Runs `body` inside a transaction; rolls it back on failure (unless it reached `done`,
/// after which only [`recover`] finishes it).
fn transact<T>(
    db: &mut Db,
    op: &str,
    body: impl FnOnce(&mut Db, &mut Transaction) -> Result<T, InstallError>,
) -> Result<T, InstallError> {
    let mut tx = Transaction::begin(db, op)?;
    let result = match body(db, &mut tx) {
        Ok(v) => Ok(v),
        Err(e) => {
            if !unpack::killed() && !tx.is_done() {
                tx.rollback()?;
            }
            Err(e)
        }
    };
    if let Some(f) = tx.into_spare() {
        db.keep_spare_journal(f);
    }
    result
}

/// Installs the package file (already downloaded and hash-checked by the caller) into the
/// root of `db`. `auto`: pulled in as a dependency (an already user-requested package stays
/// user-requested). When the same name is installed this is an upgrade (or a reinstall, or a
/// downgrade: the caller decides): files only in the old version are removed, conffiles
/// handled as [`crate::unpack`] says, scripts run in dpkg/opkg order.
pub fn install(
    db: &mut Db,
    pkg_file: &Path,
    auto: bool,
    opts: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    install_expecting(db, PackageFile::Path(pkg_file), auto, opts, None)
}

/// [`install`], refusing the package (before anything is visible) unless its own control
/// file gives the `expected` name, version and architecture.
pub fn install_expecting<'p>(
    db: &mut Db,
    pkg: impl Into<PackageFile<'p>>,
    auto: bool,
    opts: &InstallOptions,
    expected: Option<&Expected>,
) -> Result<InstallReport, InstallError> {
    let pkg = pkg.into();
    recover(db)?;
    let label = pkg
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    transact(db, &format!("install {label}"), |db, tx| {
        install_in(db, tx, pkg, auto, opts, expected)
    })
}

/// Packages a [`Batch`] commits together at most (a bound on what one kill rolls back, and
/// on what the install holds until a commit frees it: each package's journal records, file
/// list, status stanza and report, ~5 KiB for a small package)…
///
/// 128, not 256: the peak RSS of a bootstrap fell by 0.7 MiB at 300 small packages and by
/// 1.1 MiB at 10,000, while a bootstrap of 300 packages and an upgrade of them took no longer;
/// 64, not 128: by another 0.25 and 0.53 MiB, the time unchanged (3.04 s at 10,000, 95 ms at
/// 300, tmpfs). A bootstrap's `fsync`s do not grow with the groups (bench/README.md, issue 16).
const GROUP_PACKAGES: usize = 64;
/// …and the size of their package files at most (a bound on the room taken by old and new
/// files side by side until the group commits).
const GROUP_BYTES: u64 = 64 << 20;

/// Installs several packages, committing them in groups: one transaction, one status file,
/// one set of fsyncs for many packages instead of one per package (docs/crash-safety.md
/// §5.1). A package joins the open group when its maintainer scripts do not run and what
/// it plans touches nothing the group plans — no path that a package of the group writes or
/// deletes, no directory it removes or ships; otherwise (and when it fails to stage in the
/// group, out of room for instance) the group is committed first and the package installed
/// alone, exactly as [`install_expecting`] installs it. A kill rolls back or completes the
/// whole open group: the root is always the state before or after a group.
///
/// The database in memory follows each package as it joins (so that the next one is planned
/// against it); when a group fails to commit it is reloaded from the disk.
///
/// A batch may be given a gate ([`Batch::gated`]): called before anything becomes visible
/// (the first commit, the first script), and nothing does unless it passes. The client
/// stages packages as they download and opens the gate once every package is downloaded and
/// verified: apt's order (all verified before anything changes) without waiting for the
/// downloads before unpacking.
#[derive(Default)]
pub struct Batch<'g> {
    gate: Option<Gate<'g>>,
    tx: Option<Transaction>,
    /// Joined the open group, not yet visible.
    planned: Vec<InstallReport>,
    /// Size of their package files.
    bytes: u64,
    /// Paths the open group writes or deletes, directories it removes when empty, and the
    /// directories its packages ship.
    files: HashSet<String>,
    rmdirs: HashSet<String>,
    dirs: HashSet<String>,
    /// Committed, not yet taken by [`Batch::take_done`].
    done: Vec<InstallReport>,
}

/// See [`Batch::gated`].
pub type Gate<'g> = Box<dyn FnMut(&Db) -> Result<(), InstallError> + 'g>;

impl<'g> Batch<'g> {
    /// Starts a batch on `db` (finishing what a killed run left first).
    pub fn new(db: &mut Db) -> Result<Batch<'g>, InstallError> {
        recover(db)?;
        Ok(Batch::default())
    }

    /// [`Batch::new`], with `gate` called once before anything becomes visible; when it
    /// fails, nothing does and its error is returned.
    pub fn gated(db: &mut Db, gate: Gate<'g>) -> Result<Batch<'g>, InstallError> {
        let mut b = Batch::new(db)?;
        b.gate = Some(gate);
        Ok(b)
    }

    /// Passes the gate (once).
    fn pass(&mut self, db: &Db) -> Result<(), InstallError> {
        if let Some(mut gate) = self.gate.take()
            && let Err(e) = gate(db)
        {
            self.gate = Some(gate);
            return Err(e);
        }
        Ok(())
    }

    /// Installs `pkg_file` as [`install_expecting`] does, in the open group when it can join
    /// it. An error leaves the packages before it committed ([`Batch::take_done`]) and this
    /// one not installed.
    pub fn install<'p>(
        &mut self,
        db: &mut Db,
        pkg: impl Into<PackageFile<'p>>,
        auto: bool,
        opts: &InstallOptions,
        expected: Option<&Expected>,
    ) -> Result<(), InstallError> {
        let pkg = pkg.into();
        let size = pkg.size();
        if !self.planned.is_empty()
            && (self.planned.len() >= GROUP_PACKAGES || self.bytes + size > GROUP_BYTES)
        {
            self.flush(db)?;
        }
        let mut tx = match self.tx.take() {
            Some(tx) => tx,
            None => Transaction::begin(db, "install")?,
        };
        let mark = tx.mark();
        let attempt = plan_in_group(db, &mut tx, pkg, auto, opts, expected);
        if unpack::killed() {
            // A simulated kill: nothing more happens in this process.
            return attempt.map(|_| ());
        }
        let attempt = match attempt {
            Ok(Some(plan)) => {
                let (files, rmdirs) = tx.planned_since(&mark);
                let dirs: Vec<&str> = plan
                    .new_records
                    .iter()
                    .filter(|r| r.kind == FileKind::Dir)
                    .map(|r| r.path.as_str())
                    .collect();
                let collides = files.iter().any(|f| self.files.contains(*f))
                    || rmdirs.iter().any(|d| self.dirs.contains(*d))
                    || dirs.iter().any(|d| self.rmdirs.contains(*d));
                if !collides {
                    self.files.extend(files.iter().map(|f| f.to_string()));
                    self.rmdirs.extend(rmdirs.iter().map(|d| d.to_string()));
                    self.dirs.extend(dirs.iter().map(|d| d.to_string()));
                    if let Err(e) = plan.apply(db, false) {
                        // Nothing of the database in memory changed but the ownership map,
                        // dropped until the group ends: the package leaves the group as it
                        // came.
                        let undone = tx.undo_to(&mark);
                        self.tx = Some(tx);
                        undone?;
                        return Err(e);
                    }
                    self.bytes += size;
                    self.planned.push(plan.report);
                    self.tx = Some(tx);
                    return Ok(());
                }
                Ok(None)
            }
            other => other,
        };
        // Alone, after the group. A package that failed to stage on its own before the gate
        // opened is tried again after it (the gate may let it take over a file that a package
        // upgraded in the same transaction leaves: [`InstallOptions::released`]).
        if self.planned.is_empty() {
            let retry = self.gate.is_some();
            self.tx = Some(tx);
            self.flush(db)?;
            if !retry {
                attempt?;
            }
        } else {
            let undone = tx.undo_to(&mark);
            self.tx = Some(tx);
            undone?;
            self.flush(db)?;
        }
        self.pass(db)?;
        let report = install_expecting(db, pkg, auto, opts, expected)?;
        self.done.push(report);
        Ok(())
    }

    /// Commits the open group (the database in memory is reloaded when that fails).
    pub fn flush(&mut self, db: &mut Db) -> Result<(), InstallError> {
        let Some(mut tx) = self.tx.take() else {
            return Ok(());
        };
        self.files.clear();
        self.rmdirs.clear();
        self.dirs.clear();
        self.bytes = 0;
        let planned = std::mem::take(&mut self.planned);
        let result = if planned.is_empty() {
            tx.rollback().map_err(InstallError::from)
        } else {
            self.pass(db).and_then(|()| {
                tx.stage_status(|out| db.write_status_with(out, "", None))
                    .and_then(|()| tx.commit())
                    .and_then(|()| tx.finish())
                    .map_err(InstallError::from)
            })
        };
        if let Err(e) = result {
            if unpack::killed() {
                return Err(e);
            }
            if tx.is_done() {
                // Rolled forward by the next recovery: installed.
                self.done.extend(planned);
            } else {
                tx.rollback()?;
                db.reload()?;
                db.transaction_ended();
            }
            if let Some(f) = tx.into_spare() {
                db.keep_spare_journal(f);
            }
            return Err(e);
        }
        self.done.extend(planned);
        db.transaction_ended();
        if let Some(f) = tx.into_spare() {
            db.keep_spare_journal(f);
        }
        // The group's buffers are gone: their pages need not count in the next group's peak.
        cli_support::release_free_memory();
        Ok(())
    }

    /// What was committed since the last call, in install order.
    pub fn take_done(&mut self) -> Vec<InstallReport> {
        std::mem::take(&mut self.done)
    }
}

/// Stages and plans a package in a group's transaction; `None` when its maintainer scripts
/// would run (a package whose scripts run is installed alone, in script order).
fn plan_in_group(
    db: &mut Db,
    tx: &mut Transaction,
    pkg: PackageFile<'_>,
    auto: bool,
    opts: &InstallOptions,
    expected: Option<&Expected>,
) -> Result<Option<InstallPlan>, InstallError> {
    let staged = stage(db, tx, pkg, opts, expected)?;
    if opts.scripts.runs() {
        let name = staged.package.name();
        let old_scripts = db.has(name)
            && info_suffixes(db, name)?
                .iter()
                .any(|s| MAINTAINER_SCRIPTS.contains(&s.as_str()));
        if old_scripts || !staged.package.scripts().is_empty() {
            return Ok(None);
        }
    }
    plan_install(db, tx, staged, auto, opts, expected, false).map(Some)
}

/// Compares a package's own control fields with what the index said of it.
fn check_identity(
    pkg_file: &Path,
    package: &feeds::package::Package,
    want: &Expected,
) -> Result<(), InstallError> {
    if let Some(sha) = &want.sha256
        && !sha.trim().eq_ignore_ascii_case(&package.sha256_hex())
    {
        return Err(InstallError::ChangedSinceVerified {
            file: pkg_file.display().to_string(),
            want: sha.trim().to_string(),
            got: package.sha256_hex(),
        });
    }
    let fields = [
        ("Package", want.name.as_str(), package.name()),
        ("Version", want.version.as_str(), package.version()),
        ("Architecture", want.arch.as_str(), package.architecture()),
    ];
    for (field, want_v, got) in fields {
        if want_v.trim() != got.trim() {
            return Err(InstallError::IdentityMismatch {
                file: pkg_file.display().to_string(),
                origin: want.origin.clone(),
                field,
                want: want_v.trim().to_string(),
                got: got.trim().to_string(),
            });
        }
    }
    Ok(())
}

fn install_in(
    db: &mut Db,
    tx: &mut Transaction,
    pkg: PackageFile<'_>,
    auto: bool,
    opts: &InstallOptions,
    expected: Option<&Expected>,
) -> Result<InstallReport, InstallError> {
    let staged = stage(db, tx, pkg, opts, expected)?;
    let name = staged.package.name().to_string();
    let version = staged.package.version().to_string();
    let old_version = db.version_of(&name)?;
    let mode = opts.scripts;
    let script = |n: &str| staged.package.control_file(n).map(|m| m.data.clone());

    // Scripts before anything is visible: a failure aborts, as opkg's "Aborting installation".
    let mut old_postrm = None;
    if mode.runs() {
        if let Some(ov) = &old_version {
            if let Some(s) = read_info_script(db, &name, "prerm")? {
                run_script(db, mode, &name, "prerm", &s, &["upgrade", &version], true)?;
            }
            old_postrm = read_info_script(db, &name, "postrm")?;
            if let Some(s) = script("preinst") {
                run_script(db, mode, &name, "preinst", &s, &["upgrade", ov], true)?;
            }
        } else if let Some(s) = script("preinst") {
            run_script(db, mode, &name, "preinst", &s, &["install"], false)?;
        }
        // A script may have moved any directory: walks start from the root again.
        tx.dirs().forget_all();
    }
    let postinst = if mode.runs() {
        script("postinst")
    } else {
        None
    };
    // On a live system the package is `unpacked` until its scripts after the unpack succeed,
    // as opkg records it (docs/crash-safety.md §5): a failure or a kill leaves it for
    // `prokit configure`.
    let live = mode == ScriptMode::Run && (postinst.is_some() || old_postrm.is_some());
    let plan = plan_install(db, tx, staged, auto, opts, expected, live)?;
    tx.stage_status(|out| db.write_status_with(out, &plan.name, Some(&plan.stanza)))?;

    tx.commit()?;

    let upgrade = plan.old_version.is_some();
    let after_unpack = |db: &Db| -> Result<(), InstallError> {
        if let Some(s) = &old_postrm {
            run_script(db, mode, &name, "postrm", s, &["upgrade", &version], true)?;
        }
        if let Some(s) = &postinst {
            run_script(db, mode, &name, "postinst", s, &["configure"], upgrade)?;
        }
        Ok(())
    };
    if mode == ScriptMode::Offline {
        after_unpack(db)?;
        tx.dirs().forget_all();
    }

    tx.finish()?;

    // The database in memory follows the disk.
    plan.apply(db, true)?;
    if live {
        after_unpack(db).map_err(|e| {
            e.with_outcome(format!(
                "{name} {version} is unpacked but not configured: `prokit configure {name}` runs its postinst again"
            ))
        })?;
        db.set_state(&name, "installed")?;
    }
    Ok(plan.report)
}

/// Stages a package file in `tx` (nothing visible yet) and checks it is what the index said.
fn stage(
    db: &mut Db,
    tx: &mut Transaction,
    pkg: PackageFile<'_>,
    opts: &InstallOptions,
    expected: Option<&Expected>,
) -> Result<unpack::Unpacked, InstallError> {
    let unpack_opts = UnpackOptions {
        allow_special: opts.allow_special,
        trust_package: opts.trust_package.clone(),
        allow_trust_changes: opts.allow_trust_changes,
        released: opts.released.clone(),
        force_overwrite: opts.force_overwrite,
    };
    let staged = unpack::unpack(db, tx, pkg, &unpack_opts)?;
    if let Some(want) = expected {
        check_identity(pkg.path(), &staged.package, want)?;
    }
    Ok(staged)
}

/// An install planned in a transaction: what the database becomes once it commits.
struct InstallPlan {
    name: String,
    old_version: Option<String>,
    /// The old version's records, the new ones.
    old_records: Vec<FileRecord>,
    new_records: Vec<FileRecord>,
    /// The new status stanza.
    stanza: Paragraph,
    /// Info files gone and added (`foo.postinst`).
    gone_info: Vec<String>,
    added_info: Vec<String>,
    /// Files taken over from other packages, by package.
    taken: Vec<(String, Vec<FileRecord>)>,
    report: InstallReport,
}

impl InstallPlan {
    /// Makes the database in memory what the disk holds once the plan is committed
    /// (`committed`: it is). When the ownership map cannot follow, it is dropped: after a
    /// commit that is all (the map is made again from the `.list` files); before one, the
    /// plan is refused and nothing else in memory changes (the map is not made again until
    /// the transaction ends: the disk does not hold the group's changes yet).
    fn apply(&self, db: &mut Db, committed: bool) -> Result<(), InstallError> {
        let owners = db.owners()?;
        let updated = owners
            .remove_package(&self.name, &self.old_records)
            .and_then(|()| {
                self.taken
                    .iter()
                    .try_for_each(|(other, recs)| owners.remove_package(other, recs))
            })
            .and_then(|()| owners.add_package(&self.name, &self.new_records));
        if let Err(e) = updated {
            db.forget_owners(committed);
            if !committed {
                return Err(e.into());
            }
        }
        db.set_package(&self.name, Some(self.stanza.clone()));
        db.note_info_names(&self.gone_info, &self.added_info);
        Ok(())
    }
}

/// Plans, in `tx`, everything of an install besides its scripts and the status file: the old
/// version's files that go, the database files, the lists of packages files are taken from,
/// and the new status stanza (`live`: recorded `unpacked`, see [`ScriptMode::Run`]).
fn plan_install(
    db: &mut Db,
    tx: &mut Transaction,
    staged: unpack::Unpacked,
    auto: bool,
    opts: &InstallOptions,
    expected: Option<&Expected>,
    live: bool,
) -> Result<InstallPlan, InstallError> {
    let name = staged.package.name().to_string();
    let version = staged.package.version().to_string();
    let old = db.get(&name)?.map(std::borrow::Cow::into_owned);
    let old_version = old
        .as_ref()
        .map(|p| p.get("Version").unwrap_or("").to_string());
    let mode = opts.scripts;

    // The old version's files that the new one does not ship.
    let new_paths: HashSet<&str> = staged.entries.iter().map(|e| e.path.as_str()).collect();
    let new_records: Vec<FileRecord> = staged.entries.iter().map(|e| e.record()).collect();
    let old_records = if old.is_some() {
        db.files(&name)?
    } else {
        Vec::new()
    };
    let mut left_in_place = Vec::new();
    {
        let old_conffiles = db.conffiles(&name)?;
        let owners = db.owners()?.clone_for(&old_records)?;
        for r in &old_records {
            if new_paths.contains(r.path.as_str()) {
                continue;
            }
            if r.kind == FileKind::Dir {
                if owners.dir_only_of(&r.path, &name) && confined(db, &r.path).is_ok() {
                    tx.rmdir_later(&r.path)?;
                }
                continue;
            }
            if !owners.file_of(&r.path, &name) {
                continue;
            }
            if !plan_removal(db, tx, &r.path, &mut left_in_place)? {
                continue;
            }
            if let Some((_, h)) = old_conffiles.iter().find(|(p, _)| *p == r.path)
                && unpack::conffile_modified_at(tx.dirs(), &r.path, h)?
            {
                continue;
            }
            tx.del(&r.path)?;
        }
    }

    // Database files of this package. In a fresh database a package not installed has none
    // yet: they are made at their final paths (Db::fresh_info).
    let info_rel = info_rel(db)?;
    let in_place = db.fresh_info() && old.is_none();
    let mut new_info: BTreeSet<String> = BTreeSet::new();
    let mut put_info = |tx: &mut Transaction, suffix: &str, data: &[u8], mode: u32| {
        new_info.insert(suffix.to_string());
        let path = format!("{info_rel}/{name}.{suffix}");
        if in_place && !tx.made(&path) {
            tx.make_later(&path, data.to_vec(), mode, None)
        } else {
            tx.put_bytes(&path, data, mode)
        }
    };
    put_info(tx, "control", staged.package.control_text.as_bytes(), 0o644)?;
    for m in &staged.package.control_files {
        if valid_member_name(&m.name)
            && !["control", "list", SIDECAR_SUFFIX].contains(&m.name.as_str())
        {
            put_info(tx, &m.name, &m.data, m.mode & 0o777)?;
        }
    }
    put_info(tx, "list", list_text(&new_records).as_bytes(), 0o644)?;
    put_info(
        tx,
        SIDECAR_SUFFIX,
        sidecar_text(&name, &version, &new_records).as_bytes(),
        0o644,
    )?;
    let mut gone_info = Vec::new();
    if old.is_some() {
        for suffix in info_suffixes(db, &name)? {
            if !new_info.contains(&suffix) {
                tx.del(&format!("{info_rel}/{name}.{suffix}"))?;
                gone_info.push(format!("{name}.{suffix}"));
            }
        }
    }
    let added_info: Vec<String> = new_info.iter().map(|s| format!("{name}.{s}")).collect();

    // Files taken over from other packages: their lists shrink.
    let mut taken: Vec<(String, Vec<FileRecord>)> = Vec::new();
    for (other, paths) in &staged.takeovers {
        let records = db.files(other)?;
        let had_sidecar = records.iter().any(|r| r.kind != FileKind::Unknown);
        let left: Vec<FileRecord> = records
            .into_iter()
            .filter(|r| !paths.contains(&r.path))
            .collect();
        tx.put_bytes(
            &format!("{info_rel}/{other}.list"),
            list_text(&left).as_bytes(),
            0o644,
        )?;
        if had_sidecar {
            let v = db.version_of(other)?.unwrap_or_default();
            let known: Vec<FileRecord> = left
                .iter()
                .filter(|r| r.kind != FileKind::Unknown)
                .cloned()
                .collect();
            tx.put_bytes(
                &format!("{info_rel}/{other}.{SIDECAR_SUFFIX}"),
                sidecar_text(other, &v, &known).as_bytes(),
                0o644,
            )?;
        }
        taken.push((other.clone(), paths.iter().map(|p| record_of(p)).collect()));
    }

    // The new status.
    let was_user = old
        .as_ref()
        .and_then(|p| p.get("Status"))
        .is_some_and(|s| s.split_whitespace().nth(1) == Some("user"));
    let has_scripts = !staged.package.scripts().is_empty();
    let mut stanza = status_stanza(
        &staged.package.control,
        !auto || was_user,
        &staged.conffiles,
        opts.installed_time,
        !mode.runs() && has_scripts,
    );
    // A held package changed with --force-hold stays held.
    if old.as_ref().is_some_and(crate::status::is_held) {
        let _ = stanza.set("Status", "install hold installed");
    }
    if live {
        let unpacked = crate::status::status_with(&stanza, None, Some("unpacked"));
        let _ = stanza.set("Status", &unpacked);
    }
    if let Some(fp) = expected.and_then(|e| e.signed_by.as_deref()) {
        // Which developer vouched for this version (`prokit verify --signatures`).
        let _ = stanza.set("Signed-By", fp);
    }
    if let Some(fp) = expected.and_then(|e| e.feed_key.as_deref()) {
        // And which feed key (`prokit info`).
        let _ = stanza.set("Prokit-Feed-Key", fp);
    }

    let special = new_records
        .iter()
        .filter(|r| r.kind == FileKind::Special || r.mode.is_some_and(|m| m & 0o6000 != 0))
        .map(|r| match r.mode {
            Some(m) => format!("{} (mode {m:o})", r.path),
            None => r.path.clone(),
        })
        .collect();
    let scripts = staged
        .package
        .scripts()
        .into_iter()
        .map(|n| {
            let what = match (mode.runs(), n) {
                (false, _) => "skipped",
                (true, "preinst" | "postinst") => "run",
                // Kept in the database, run when the package is upgraded or removed.
                (true, _) => "kept",
            };
            format!("{n} {what}")
        })
        .collect();
    let report = InstallReport {
        name: name.clone(),
        version,
        files: new_records
            .iter()
            .filter(|r| r.kind != FileKind::Dir)
            .count(),
        kept_conffiles: staged.kept_conffiles,
        upgraded_from: old_version.clone(),
        left_in_place,
        special,
        scripts,
    };
    // What the package queued goes to the pool now, not with the next package's files.
    tx.start_writes()?;
    Ok(InstallPlan {
        name,
        old_version,
        old_records,
        new_records,
        stanza,
        gone_info,
        added_info,
        taken,
        report,
    })
}

/// Removes an installed package: its files (modified conffiles are kept and reported),
/// the directories it shipped once empty and unused by other packages, its database files
/// and its status stanza. Scripts: `prerm remove`, `postrm remove` ([`ScriptMode::Offline`]).
pub fn remove(
    db: &mut Db,
    name: &str,
    opts: &InstallOptions,
) -> Result<RemoveReport, InstallError> {
    recover(db)?;
    if !db.has(name) {
        return Err(InstallError::NotInstalled(name.to_string()));
    }
    transact(db, &format!("remove {name}"), |db, tx| {
        remove_in(db, tx, name, opts)
    })
}

fn remove_in(
    db: &mut Db,
    tx: &mut Transaction,
    name: &str,
    opts: &InstallOptions,
) -> Result<RemoveReport, InstallError> {
    let version = db.version_of(name)?.unwrap_or_default();
    tx.set_package(name, &version)?;
    let mode = opts.scripts;
    let mut postrm = None;
    if mode.runs() {
        // A failing prerm refuses the removal, as opkg's "not removing package".
        if let Some(s) = read_info_script(db, name, "prerm")? {
            run_script(db, mode, name, "prerm", &s, &["remove"], false)?;
            tx.dirs().forget_all();
        }
        postrm = read_info_script(db, name, "postrm")?;
    }
    let records = db.files(name)?;
    let conffiles = db.conffiles(name)?;
    let owners = db.owners()?.clone_for(&records)?;
    let mut removed = 0;
    let mut kept = Vec::new();
    let mut left_in_place = Vec::new();
    for r in records.iter().filter(|r| r.kind != FileKind::Dir) {
        if !owners.file_of(&r.path, name) {
            continue;
        }
        if !plan_removal(db, tx, &r.path, &mut left_in_place)? {
            continue;
        }
        if let Some((_, h)) = conffiles.iter().find(|(p, _)| *p == r.path)
            && unpack::conffile_modified_at(tx.dirs(), &r.path, h)?
        {
            kept.push(r.path.clone());
            continue;
        }
        tx.del(&r.path)?;
        removed += 1;
    }
    for r in records.iter().filter(|r| r.kind == FileKind::Dir) {
        if owners.dir_only_of(&r.path, name) && confined(db, &r.path).is_ok() {
            tx.rmdir_later(&r.path)?;
        }
    }
    let info_rel = info_rel(db)?;
    let mut gone_info = Vec::new();
    for suffix in info_suffixes(db, name)? {
        tx.del(&format!("{info_rel}/{name}.{suffix}"))?;
        gone_info.push(format!("{name}.{suffix}"));
    }
    tx.stage_status(|out| db.write_status_with(out, name, None))?;
    tx.commit()?;
    if let (Some(s), ScriptMode::Offline) = (&postrm, mode) {
        run_script(db, mode, name, "postrm", s, &["remove"], false)?;
        tx.dirs().forget_all();
    }
    tx.finish()?;
    if db.owners()?.remove_package(name, &records).is_err() {
        // Committed: made again from the `.list` files when next needed.
        db.forget_owners(true);
    }
    db.set_package(name, None);
    db.note_info_names(&gone_info, &[]);
    if let (Some(s), ScriptMode::Run) = (&postrm, mode) {
        // On a live system the files are gone before postrm runs; its failure is reported
        // and the package stays removed, as opkg-lede's opkg_remove_pkg does.
        run_script(db, mode, name, "postrm", s, &["remove"], false)
            .map_err(|e| e.with_outcome(format!("{name} {version} was removed")))?;
    }
    Ok(RemoveReport {
        name: name.to_string(),
        version,
        files: removed,
        kept_conffiles: kept,
        left_in_place,
    })
}

/// What to do with a path of an installed package that is to go.
enum Removal {
    /// Delete it (backed up until the transaction is done).
    Delete,
    /// It is a directory now: remove it at the end if empty.
    Rmdir,
    /// Nothing is there.
    Absent,
    /// Leave it, for this reason.
    Keep(String),
}

/// Checks a path read from a package's `.list` as an entry of a package is checked
/// (docs/threats.md §19): the list lives in the root and may be forged, so before anything is
/// deleted the path must be a normalized absolute path, outside the package manager's own
/// state, and not a name of prokit's temporary files.
fn confined(db: &Db, path: &str) -> Result<(), String> {
    let normalized = path
        .strip_prefix('/')
        .and_then(|rel| unpack::normalize_name(rel.as_bytes()).ok().flatten());
    if normalized.as_deref() != Some(path) {
        return Err(
            "not a normalized path inside the root (the package's .list is forged or corrupt)"
                .into(),
        );
    }
    if let Some(what) = unpack::reserved_what(db, path) {
        return Err(format!(
            "{what}: no package owns files there (the package's .list is forged or corrupt)"
        ));
    }
    let base = &path[path.rfind('/').map_or(0, |i| i + 1)..];
    if base.starts_with(".prokit-") {
        return Err("a name of prokit's temporary files, which no package owns".into());
    }
    Ok(())
}

/// Decides what happens to `path`, a file of an installed package that is to go. Besides
/// [`confined`], every directory on the way must be a real one: when one is a symlink now
/// (`/usr/lib` swapped for a link to `/host/lib`), the path is left in place and reported —
/// deleting through the link would delete a file that is not the package's, possibly outside
/// the root, while refusing the whole removal would leave the package impossible to remove.
/// (The transaction itself never goes through a symlink either way.)
/// Plans what removing `path` takes, per [`removal_of`]: a path left in place is recorded in
/// `left`, a directory is removed at the end if empty. True when the caller should go on and
/// delete the file (after its conffile check).
fn plan_removal(
    db: &Db,
    tx: &mut Transaction,
    path: &str,
    left: &mut Vec<LeftInPlace>,
) -> Result<bool, InstallError> {
    match removal_of(db, tx, path)? {
        Removal::Absent => Ok(false),
        Removal::Keep(reason) => {
            left.push(LeftInPlace {
                path: path.to_string(),
                reason,
            });
            Ok(false)
        }
        Removal::Rmdir => {
            tx.rmdir_later(path)?;
            Ok(false)
        }
        Removal::Delete => Ok(true),
    }
}

fn removal_of(db: &Db, tx: &Transaction, path: &str) -> Result<Removal, InstallError> {
    if let Err(reason) = confined(db, path) {
        return Ok(Removal::Keep(reason));
    }
    match tx.dirs().check_parent(path)? {
        Parent::Missing => Ok(Removal::Absent),
        Parent::Blocked { at, symlink } => Ok(Removal::Keep(format!(
            "{at} is {} now; deleting through it would touch files that are not this package's",
            if symlink {
                "a symbolic link"
            } else {
                "not a directory"
            }
        ))),
        Parent::Real => Ok(match tx.dirs().lstat(path)? {
            None => Removal::Absent,
            Some(m) if m.is_dir() => Removal::Rmdir,
            Some(_) => Removal::Delete,
        }),
    }
}

/// A small view of ownership for the paths at hand (so the database can be borrowed again).
struct OwnersView {
    files: BTreeMap<String, String>,
    /// The directories some package ships: with its name when exactly one does (a root's
    /// `/usr` is shipped by most of its packages: the view does not list them all).
    dirs: BTreeMap<String, Option<String>>,
}

impl OwnersView {
    fn file_of(&self, path: &str, name: &str) -> bool {
        self.files.get(path).is_some_and(|o| o == name)
    }

    /// True when no package other than `name` ships directory `path`.
    fn dir_only_of(&self, path: &str, name: &str) -> bool {
        match self.dirs.get(path) {
            None => true,
            Some(only) => only.as_deref() == Some(name),
        }
    }
}

trait CloneFor {
    fn clone_for(&self, records: &[FileRecord]) -> Result<OwnersView, StatusError>;
}

impl CloneFor for crate::status::Owners {
    fn clone_for(&self, records: &[FileRecord]) -> Result<OwnersView, StatusError> {
        let mut v = OwnersView {
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
        };
        for r in records {
            if let Some(o) = self.file_owner(&r.path)? {
                v.files.insert(r.path.clone(), o.to_string());
            }
            // Packages that ship a directory are distinct: a second one means another.
            let mut shippers = self.dir_owners(&r.path)?;
            if let Some(first) = shippers.next().transpose()? {
                let only = shippers.next().is_none().then(|| first.into_owned());
                v.dirs.insert(r.path.clone(), only);
            }
        }
        Ok(v)
    }
}

fn record_of(path: &str) -> FileRecord {
    FileRecord {
        path: path.to_string(),
        kind: FileKind::Unknown,
        sha256: None,
        link_target: None,
        mode: None,
    }
}

/// The `info` directory, absolute in the root.
fn info_rel(db: &Db) -> Result<String, InstallError> {
    let rel = db
        .info_dir()
        .strip_prefix(db.root())
        .ok()
        .and_then(|p| p.to_str())
        .map(|s| format!("/{}", s.trim_matches('/')))
        .filter(|s| s.len() > 1);
    rel.ok_or_else(|| InstallError::Io {
        path: db.info_dir().to_path_buf(),
        source: io::Error::other("the info directory is not inside the root"),
    })
}

/// A control member name that can become `info/<pkg>.<name>`.
fn valid_member_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The suffixes of `info/<name>.<suffix>` files present (suffixes without a dot, so that
/// `info/<name>.foo.list` of a package `<name>.foo` is never taken for one of `<name>`'s).
fn info_suffixes(db: &Db, name: &str) -> Result<Vec<String>, InstallError> {
    let prefix = format!("{name}.");
    Ok(db
        .info_names_with_prefix(&prefix)?
        .into_iter()
        .filter_map(|f| {
            f.strip_prefix(&prefix)
                .filter(|s| valid_member_name(s))
                .map(str::to_string)
        })
        .collect())
}

/// The largest maintainer script run: one larger is an error, never run cut short.
const MAX_SCRIPT: u64 = 8 << 20;

/// An installed maintainer script of `name`, if any: a regular file of at most
/// [`MAX_SCRIPT`] bytes, never read through a symlink (the database is inside the root, and a
/// script linked to a host file is not run: docs/threats.md §20).
fn read_info_script(db: &Db, name: &str, script: &str) -> Result<Option<Vec<u8>>, InstallError> {
    let path = db.info_file(name, script);
    safe_fs::read_bounded(&path, MAX_SCRIPT).map_err(|e| InstallError::Io {
        path: path.clone(),
        source: e.into_io_error(),
    })
}

const MAX_OUTPUT: u64 = 64 * 1024;

/// Runs a maintainer script (see the module documentation).
fn run_script(
    db: &Db,
    mode: ScriptMode,
    name: &str,
    script: &str,
    content: &[u8],
    args: &[&str],
    upgrade: bool,
) -> Result<(), InstallError> {
    if !MAINTAINER_SCRIPTS.contains(&script) {
        return Ok(());
    }
    let dir = db.scripts_dir();
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).map_err(io_at(&dir))?;
    let result = run_script_in(db, mode, &dir, name, script, content, args, upgrade);
    let _ = fs::remove_dir_all(&dir);
    result
}

#[allow(clippy::too_many_arguments)]
fn run_script_in(
    db: &Db,
    mode: ScriptMode,
    dir: &Path,
    name: &str,
    script: &str,
    content: &[u8],
    args: &[&str],
    upgrade: bool,
) -> Result<(), InstallError> {
    let path = dir.join(format!("{name}.{script}"));
    write_new_file(&path, content, 0o755, false).map_err(io_at(&path))?;
    let out_path = dir.join("output");
    let out = File::create(&out_path).map_err(io_at(&out_path))?;
    let err = out.try_clone().map_err(io_at(&out_path))?;
    let root = db.root();
    let mut cmd = Command::new("sh");
    cmd.arg(&path).args(args).current_dir(root);
    if mode == ScriptMode::Offline {
        cmd.env("IPKG_INSTROOT", root);
    } else {
        // On a live system opkg leaves IPKG_INSTROOT unset (libopkg/pkg.c, pkg_run_script
        // sets PKG_ROOT and PKG_UPGRADE only), and OpenWrt's scripts test it to tell an image
        // build from a device.
        cmd.env_remove("IPKG_INSTROOT");
    }
    let status = cmd
        .env("PKG_ROOT", root)
        .env("PKG_UPGRADE", if upgrade { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|source| InstallError::ScriptSpawn {
            package: name.to_string(),
            script: script.to_string(),
            source,
        })?;
    if status.success() {
        return Ok(());
    }
    let mut output = Vec::new();
    if let Ok(f) = File::open(&out_path) {
        let _ = f.take(MAX_OUTPUT).read_to_end(&mut output);
    }
    Err(InstallError::ScriptFailed {
        package: name.to_string(),
        script: script.to_string(),
        args: args.join(" "),
        exit_code: status.code(),
        output: String::from_utf8_lossy(&output).into_owned(),
        outcome: "the operation was rolled back".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::sha256_file;
    use crate::unpack::test_support::*;
    use feeds::build::PackageBuilder;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn sha(data: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(data))
    }

    fn foo(version: &str, conf: &str, extra_files: &[(&str, &str)]) -> PackageBuilder {
        foo_with(version, conf, extra_files, "/etc/foo.conf\n")
    }

    fn foo_with(
        version: &str,
        conf: &str,
        extra_files: &[(&str, &str)],
        conffiles: &str,
    ) -> PackageBuilder {
        let mut b = PackageBuilder::new(control("foo", version, "Depends: libc\n"))
            .dir("etc", 0o755)
            .dir("usr/bin", 0o755)
            .file("etc/foo.conf", 0o644, conf.as_bytes().to_vec())
            .file("usr/bin/foo", 0o755, format!("foo {version}\n"))
            .symlink("usr/bin/f", "foo")
            .control_file("conffiles", 0o644, conffiles.to_string());
        for (p, d) in extra_files {
            b = b.file(p, 0o644, d.as_bytes().to_vec());
        }
        b
    }

    #[test]
    fn install_fresh_package_records_opkg_database() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let pkg = write_pkg(
            tmp.path(),
            "foo_1.0_all.ipk",
            foo("1.0", "a=1\n", &[]).control_file("postinst", 0o755, "#!/bin/sh\nexit 0\n"),
        );
        let mut db = open(&root);
        let r = install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(
            r,
            InstallReport {
                name: "foo".into(),
                version: "1.0".into(),
                files: 3,
                kept_conffiles: vec![],
                upgraded_from: None,
                left_in_place: vec![],
                special: vec![],
                scripts: vec!["postinst skipped".into()],
            }
        );
        assert_eq!(fs::read(root.join("usr/bin/foo")).unwrap(), b"foo 1.0\n");
        let info = root.join("usr/lib/opkg/info");
        assert_eq!(
            fs::read_to_string(info.join("foo.list")).unwrap(),
            "/etc/foo.conf\n/usr/bin/f\n/usr/bin/foo\n"
        );
        assert_eq!(
            fs::read_to_string(info.join("foo.control")).unwrap(),
            control("foo", "1.0", "Depends: libc\n")
        );
        assert_eq!(
            fs::read_to_string(info.join("foo.conffiles")).unwrap(),
            "/etc/foo.conf\n"
        );
        let postinst = fs::metadata(info.join("foo.postinst")).unwrap();
        assert_eq!(postinst.permissions().mode() & 0o777, 0o755);
        let status = fs::read_to_string(root.join("usr/lib/opkg/status")).unwrap();
        assert_eq!(
            status,
            format!(
                "Package: foo\nVersion: 1.0\nDepends: libc\nStatus: install user installed\n\
                 Architecture: all\nConffiles:\n /etc/foo.conf {}\nInstalled-Time: 1700000000\n\
                 Prokit-Scripts: skipped\n\n",
                sha(b"a=1\n")
            )
        );
        let files = db.files("foo").unwrap();
        let bin = files.iter().find(|f| f.path == "/usr/bin/foo").unwrap();
        assert_eq!(bin.sha256.as_deref(), Some(sha(b"foo 1.0\n").as_str()));
        assert_eq!(bin.mode, Some(0o755));
        assert!(
            files
                .iter()
                .any(|f| f.path == "/usr/bin" && f.kind == FileKind::Dir)
        );
        // The database survives a reopen.
        drop(db);
        let db = open(&root);
        assert_eq!(db.files("foo").unwrap(), files);
        assert!(!db.journal_path().exists());
    }

    #[test]
    fn a_reused_journal_is_emptied_between_installs_and_deleted_with_the_database() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let v1 = write_pkg(tmp.path(), "foo_1.0_all.ipk", foo("1.0", "a=1\n", &[]));
        let v2 = write_pkg(tmp.path(), "foo_1.1_all.ipk", foo("1.1", "a=1\n", &[]));
        let mut db = open(&root);
        db.set_reuse_journal(true);
        let journal = db.journal_path();
        install(&mut db, &v1, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(fs::metadata(&journal).unwrap().len(), 0);
        // Empty: nothing to recover.
        assert_eq!(recover(&mut db).unwrap(), None);
        install(&mut db, &v2, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(fs::metadata(&journal).unwrap().len(), 0);
        assert_eq!(fs::read(root.join("usr/bin/foo")).unwrap(), b"foo 1.1\n");
        drop(db);
        assert!(!journal.exists());
        // An empty journal a killed run left is taken over, not reported as pending.
        fs::write(&journal, "").unwrap();
        let mut db = open(&root);
        assert_eq!(recover(&mut db).unwrap(), None);
        install(&mut db, &v1, false, &opts(ScriptMode::Skip)).unwrap();
        assert!(!journal.exists());
        // One that is not empty is pending work, not taken over.
        fs::write(&journal, "prokit-journal\t1\nop\tinstall x\n").unwrap();
        let Err(err) = Transaction::begin(&mut db, "install y") else {
            panic!("a journal with records was taken over");
        };
        assert!(matches!(err, UnpackError::Pending { .. }), "{err}");
    }

    #[test]
    fn dependency_is_recorded_auto_installed_and_stays_user_when_requested_before() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let lib = write_pkg(
            tmp.path(),
            "lib_1_all.ipk",
            PackageBuilder::new(control("lib", "1", "")).file("usr/lib/lib.so", 0o644, "x"),
        );
        let mut db = open(&root);
        install(&mut db, &lib, true, &opts(ScriptMode::Skip)).unwrap();
        let st = db.stanza("lib").unwrap();
        assert_eq!(st.get("Status"), Some("install ok installed"));
        assert_eq!(st.get("Auto-Installed"), Some("yes"));
        assert_eq!(
            st.get("Prokit-Scripts"),
            None,
            "no scripts, nothing skipped"
        );
        install(&mut db, &lib, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(
            db.stanza("lib").unwrap().get("Status"),
            Some("install user installed")
        );
        install(&mut db, &lib, true, &opts(ScriptMode::Skip)).unwrap();
        let st = db.stanza("lib").unwrap();
        assert_eq!(st.get("Status"), Some("install user installed"));
        assert_eq!(st.get("Auto-Installed"), None);
    }

    #[test]
    fn file_conflict_between_packages_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let a = write_pkg(
            tmp.path(),
            "a_1_all.ipk",
            PackageBuilder::new(control("a", "1", "")).file("usr/bin/tool", 0o755, "a"),
        );
        let b = write_pkg(
            tmp.path(),
            "b_1_all.ipk",
            PackageBuilder::new(control("b", "1", ""))
                .file("usr/bin/other", 0o755, "b")
                .file("usr/bin/tool", 0o755, "b"),
        );
        let mut db = open(&root);
        install(&mut db, &a, false, &opts(ScriptMode::Skip)).unwrap();
        let before = snapshot(&root);
        let err = install(&mut db, &b, false, &opts(ScriptMode::Skip)).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, InstallError::Unpack(UnpackError::Conflict { package, path, owner })
                if package == "b" && path == "/usr/bin/tool" && owner == "a"),
            "{text}"
        );
        assert!(text.contains("package a") && text.contains("b"), "{text}");
        assert_eq!(snapshot(&root), before);
        assert!(db.stanza("b").is_none());
    }

    #[test]
    fn replaces_allows_takeover() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let a = write_pkg(
            tmp.path(),
            "a_1_all.ipk",
            PackageBuilder::new(control("a", "1", ""))
                .file("usr/bin/tool", 0o755, "a")
                .file("usr/bin/a-only", 0o755, "a"),
        );
        let b = write_pkg(
            tmp.path(),
            "b_1_all.ipk",
            PackageBuilder::new(control("b", "1", "Replaces: a (<< 2)\n")).file(
                "usr/bin/tool",
                0o755,
                "b",
            ),
        );
        let mut db = open(&root);
        install(&mut db, &a, false, &opts(ScriptMode::Skip)).unwrap();
        install(&mut db, &b, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(fs::read(root.join("usr/bin/tool")).unwrap(), b"b");
        let info = root.join("usr/lib/opkg/info");
        assert_eq!(
            fs::read_to_string(info.join("a.list")).unwrap(),
            "/usr/bin/a-only\n"
        );
        assert_eq!(
            fs::read_to_string(info.join("b.list")).unwrap(),
            "/usr/bin/tool\n"
        );
        assert!(
            db.files("a")
                .unwrap()
                .iter()
                .all(|r| r.path != "/usr/bin/tool")
        );
        // Removing the old owner leaves the taken-over file alone, also after a reopen.
        drop(db);
        let mut db = open(&root);
        let r = remove(&mut db, "a", &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(r.files, 1);
        assert_eq!(fs::read(root.join("usr/bin/tool")).unwrap(), b"b");
        assert!(!root.join("usr/bin/a-only").exists());
        crate::verify::verify(&db, None)
            .map(|v| assert!(v.ok(), "{v:?}"))
            .unwrap();
    }

    #[test]
    fn directories_are_shared_freely() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let mk = |n: &str| {
            write_pkg(
                tmp.path(),
                &format!("{n}_1_all.ipk"),
                PackageBuilder::new(control(n, "1", ""))
                    .dir("usr/share/common", 0o755)
                    .file(&format!("usr/share/common/{n}"), 0o644, n.to_string()),
            )
        };
        let (a, b) = (mk("a"), mk("b"));
        let mut db = open(&root);
        install(&mut db, &a, false, &opts(ScriptMode::Skip)).unwrap();
        install(&mut db, &b, false, &opts(ScriptMode::Skip)).unwrap();
        remove(&mut db, "a", &opts(ScriptMode::Skip)).unwrap();
        assert!(
            root.join("usr/share/common/b").exists(),
            "b's directory stays"
        );
        remove(&mut db, "b", &opts(ScriptMode::Skip)).unwrap();
        assert!(!root.join("usr/share").exists(), "the last user removes it");
    }

    #[test]
    fn modified_conffile_is_kept_and_new_written_as_opkg() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let v1 = write_pkg(
            tmp.path(),
            "foo_1.0_all.ipk",
            foo_with(
                "1.0",
                "a=1\n",
                &[("etc/other.conf", "o=1\n")],
                "/etc/foo.conf\n/etc/other.conf\n",
            ),
        );
        let v2 = write_pkg(
            tmp.path(),
            "foo_2.0_all.ipk",
            foo_with(
                "2.0",
                "a=2\n",
                &[("etc/other.conf", "o=2\n")],
                "/etc/foo.conf\n/etc/other.conf\n",
            ),
        );
        let mut db = open(&root);
        install(&mut db, &v1, false, &opts(ScriptMode::Skip)).unwrap();
        fs::write(root.join("etc/foo.conf"), "mine\n").unwrap();
        let r = install(&mut db, &v2, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(r.kept_conffiles, vec!["/etc/foo.conf".to_string()]);
        assert_eq!(r.upgraded_from.as_deref(), Some("1.0"));
        assert_eq!(fs::read(root.join("etc/foo.conf")).unwrap(), b"mine\n");
        assert_eq!(fs::read(root.join("etc/foo.conf-opkg")).unwrap(), b"a=2\n");
        // The unmodified one is simply replaced.
        assert_eq!(fs::read(root.join("etc/other.conf")).unwrap(), b"o=2\n");
        assert!(!root.join("etc/other.conf-opkg").exists());
        // opkg's rule: the recorded hash is the new version's, so the next upgrade keeps the
        // user's file again.
        assert_eq!(
            db.conffiles("foo").unwrap(),
            vec![
                ("/etc/foo.conf".to_string(), sha(b"a=2\n")),
                ("/etc/other.conf".to_string(), sha(b"o=2\n")),
            ]
        );
        let v = crate::verify::verify(&db, None).unwrap();
        assert!(v.ok(), "{v:?}");
        assert_eq!(
            v.conffiles_changed,
            vec![("foo".into(), "/etc/foo.conf".into())]
        );
        // Removing keeps the modified conffile and says so.
        let r = remove(&mut db, "foo", &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(r.kept_conffiles, vec!["/etc/foo.conf".to_string()]);
        assert_eq!(fs::read(root.join("etc/foo.conf")).unwrap(), b"mine\n");
        assert!(!root.join("etc/other.conf").exists());
    }

    #[test]
    fn conffile_already_in_root_and_owned_by_no_package_is_kept_when_different() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/foo.conf"), "local\n").unwrap();
        // A non-conffile owned by no package is simply replaced (as dpkg does).
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/foo"), "stray\n").unwrap();
        let pkg = write_pkg(tmp.path(), "foo_1.0_all.ipk", foo("1.0", "a=1\n", &[]));
        let mut db = open(&root);
        let r = install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(r.kept_conffiles, vec!["/etc/foo.conf".to_string()]);
        assert_eq!(fs::read(root.join("etc/foo.conf")).unwrap(), b"local\n");
        assert_eq!(fs::read(root.join("etc/foo.conf-opkg")).unwrap(), b"a=1\n");
        assert_eq!(fs::read(root.join("usr/bin/foo")).unwrap(), b"foo 1.0\n");
        // Identical content is not "modified".
        let tmp2 = tempfile::tempdir().unwrap();
        let root2 = tmp2.path().join("root");
        fs::create_dir_all(root2.join("etc")).unwrap();
        fs::write(root2.join("etc/foo.conf"), "a=1\n").unwrap();
        let mut db2 = open(&root2);
        let r = install(&mut db2, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        assert!(r.kept_conffiles.is_empty());
        assert!(!root2.join("etc/foo.conf-opkg").exists());
    }

    #[test]
    fn upgrade_replaces_files_and_removes_obsolete_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let v1 = write_pkg(
            tmp.path(),
            "foo_1.0_all.ipk",
            foo("1.0", "a=1\n", &[("usr/share/foo/old.txt", "old")])
                .dir("usr/share/foo", 0o755)
                .control_file("prerm", 0o755, "#!/bin/sh\n"),
        );
        let v2 = write_pkg(
            tmp.path(),
            "foo_2.0_all.ipk",
            foo("2.0", "a=1\n", &[("usr/lib/foo/new.so", "new")]),
        );
        let mut db = open(&root);
        install(&mut db, &v1, true, &opts(ScriptMode::Skip)).unwrap();
        let r = install(&mut db, &v2, true, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(r.upgraded_from.as_deref(), Some("1.0"));
        assert_eq!(fs::read(root.join("usr/bin/foo")).unwrap(), b"foo 2.0\n");
        assert!(root.join("usr/lib/foo/new.so").exists());
        assert!(
            !root.join("usr/share/foo").exists(),
            "obsolete file and its dir are gone"
        );
        let info = root.join("usr/lib/opkg/info");
        assert!(
            !info.join("foo.prerm").exists(),
            "old scripts go with the old version"
        );
        assert_eq!(
            fs::read_to_string(info.join("foo.list")).unwrap(),
            "/etc/foo.conf\n/usr/bin/f\n/usr/bin/foo\n/usr/lib/foo/new.so\n"
        );
        let st = db.stanza("foo").unwrap();
        assert_eq!(st.get("Version"), Some("2.0"));
        assert_eq!(st.get("Auto-Installed"), Some("yes"));
        assert!(crate::verify::verify(&db, None).unwrap().ok());
        // Nothing of prokit's bookkeeping is left behind.
        let names: Vec<String> = walk_names(&root);
        assert!(names.iter().all(|n| !n.contains(".prokit-")), "{names:?}");
    }

    fn walk_names(dir: &Path) -> Vec<String> {
        snapshot(dir).into_keys().collect()
    }

    #[test]
    fn remove_deletes_files_dirs_and_database_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let pkg = write_pkg(
            tmp.path(),
            "foo_1.0_all.ipk",
            foo("1.0", "a=1\n", &[("usr/share/foo/doc", "d")]),
        );
        let other = write_pkg(
            tmp.path(),
            "foo.bar_1_all.ipk",
            PackageBuilder::new(control("foo.bar", "1", "")).file("usr/bin/foobar", 0o755, "x"),
        );
        let mut db = open(&root);
        let empty = snapshot(&root);
        install(&mut db, &other, false, &opts(ScriptMode::Skip)).unwrap();
        let with_other = snapshot(&root);
        install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        let r = remove(&mut db, "foo", &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(r.files, 4);
        assert!(r.kept_conffiles.is_empty());
        assert_eq!(snapshot(&root), with_other, "exactly the state before foo");
        assert!(db.stanza("foo").is_none());
        assert!(matches!(
            remove(&mut db, "foo", &opts(ScriptMode::Skip)),
            Err(InstallError::NotInstalled(_))
        ));
        remove(&mut db, "foo.bar", &opts(ScriptMode::Skip)).unwrap();
        let mut after = snapshot(&root);
        // The status file now exists, empty.
        assert_eq!(
            after.remove("usr/lib/opkg/status").as_deref(),
            Some("f 644 ")
        );
        assert_eq!(after, empty);
    }

    #[test]
    fn failing_postinst_fails_and_rolls_back() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let bad = "#!/bin/sh\necho to-stdout\necho to-stderr >&2\nexit 3\n";
        let v1 = write_pkg(tmp.path(), "foo_1.0_all.ipk", foo("1.0", "a=1\n", &[]));
        let v2 = write_pkg(
            tmp.path(),
            "foo_2.0_all.ipk",
            foo("2.0", "a=2\n", &[("usr/share/new", "n")]).control_file("postinst", 0o755, bad),
        );
        let mut db = open(&root);
        // A fresh install that fails leaves nothing.
        let empty = snapshot(&root);
        let err = install(&mut db, &v2, false, &opts(ScriptMode::Offline)).unwrap_err();
        match &err {
            InstallError::ScriptFailed {
                package,
                script,
                exit_code,
                output,
                ..
            } => {
                assert_eq!((package.as_str(), script.as_str()), ("foo", "postinst"));
                assert_eq!(*exit_code, Some(3));
                assert!(
                    output.contains("to-stdout") && output.contains("to-stderr"),
                    "{output}"
                );
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("exit status 3"), "{err}");
        assert_eq!(snapshot(&root), empty);
        assert!(db.stanza("foo").is_none());
        // An upgrade that fails leaves the old version, complete.
        install(&mut db, &v1, false, &opts(ScriptMode::Offline)).unwrap();
        let old = snapshot(&root);
        install(&mut db, &v2, false, &opts(ScriptMode::Offline)).unwrap_err();
        assert_eq!(snapshot(&root), old);
        assert_eq!(db.stanza("foo").unwrap().get("Version"), Some("1.0"));
        drop(db);
        let db = open(&root);
        assert_eq!(db.stanza("foo").unwrap().get("Version"), Some("1.0"));
        assert!(crate::verify::verify(&db, None).unwrap().ok());
    }

    #[test]
    fn failing_preinst_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let pkg = write_pkg(
            tmp.path(),
            "foo_1.0_all.ipk",
            foo("1.0", "a=1\n", &[]).control_file("preinst", 0o755, "exit 7\n"),
        );
        let mut db = open(&root);
        let before = snapshot(&root);
        let err = install(&mut db, &pkg, false, &opts(ScriptMode::Offline)).unwrap_err();
        assert!(
            matches!(err, InstallError::ScriptFailed { exit_code: Some(7), ref script, .. } if script == "preinst"),
            "{err}"
        );
        assert_eq!(snapshot(&root), before);
        // Skipping scripts installs it, and records that they were skipped.
        install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(
            db.stanza("foo").unwrap().get("Prokit-Scripts"),
            Some("skipped")
        );
    }

    /// Live mode (`--scripts run`, a device changing itself), as opkg-lede: preinst and
    /// prerm failures abort with nothing changed (libopkg/opkg_install.c "Aborting
    /// installation", opkg_remove.c "not removing package"); a postinst failure leaves the
    /// new version's files in place and the package `unpacked` (opkg_cmd.c,
    /// opkg_configure_packages) until `configure` succeeds; a postrm failure leaves the
    /// package removed; IPKG_INSTROOT is unset.
    #[test]
    fn live_scripts_leave_packages_as_opkg_does() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let flag = root.join("postinst-may-pass");
        let postinst = "#!/bin/sh\necho \"postinst $* instroot=${IPKG_INSTROOT-unset} pkgroot=$PKG_ROOT\" >> \"$PKG_ROOT/log\"\n\
                        [ -e \"$PKG_ROOT/postinst-may-pass\" ] || { echo cannot start foo >&2; exit 4; }\n";
        let v1 = write_pkg(tmp.path(), "foo_1.0_all.ipk", foo("1.0", "a=1\n", &[]));
        let v2 = write_pkg(
            tmp.path(),
            "foo_2.0_all.ipk",
            foo("2.0", "a=2\n", &[("usr/share/new", "n")])
                .control_file("postinst", 0o755, postinst)
                .control_file("postrm", 0o755, "#!/bin/sh\nexit 5\n"),
        );
        let mut db = open(&root);
        let o = opts(ScriptMode::Run);
        install(&mut db, &v1, false, &o).unwrap();
        let err = install(&mut db, &v2, false, &o).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("postinst configure failed (exit status 4)")
                && msg.contains("foo 2.0 is unpacked but not configured")
                && msg.contains("prokit configure foo")
                && msg.contains("cannot start foo"),
            "{msg}"
        );
        // The new version is in place, unpacked, on disk and in memory.
        assert!(root.join("usr/share/new").exists());
        let p = db.stanza("foo").unwrap();
        assert_eq!(p.get("Version"), Some("2.0"));
        assert_eq!(p.get("Status"), Some("install user unpacked"));
        let status = |root: &Path| fs::read_to_string(root.join("usr/lib/opkg/status")).unwrap();
        assert!(
            status(&root).contains("Version: 2.0\nStatus: install user unpacked\n")
                || status(&root).contains("Status: install user unpacked"),
            "{}",
            status(&root)
        );
        // configure runs it again once the cause is fixed; a second time there is nothing.
        assert!(matches!(
            configure(&mut db, "foo", &o),
            Err(InstallError::ScriptFailed { .. })
        ));
        fs::write(&flag, "").unwrap();
        assert!(matches!(
            configure(&mut db, "foo", &opts(ScriptMode::Skip)),
            Err(InstallError::ConfigureNeedsScripts(_))
        ));
        assert!(configure(&mut db, "foo", &o).unwrap());
        assert!(!configure(&mut db, "foo", &o).unwrap());
        assert!(status(&root).contains("Status: install user installed"));
        let r = db.root().display().to_string();
        let log = fs::read_to_string(root.join("log")).unwrap();
        assert_eq!(
            log.lines().collect::<Vec<_>>(),
            vec![format!("postinst configure instroot=unset pkgroot={r}"); 3]
        );
        // A failing postrm remove: the package is removed all the same, and it is said.
        let err = remove(&mut db, "foo", &o).unwrap_err().to_string();
        assert!(
            err.contains("postrm remove failed (exit status 5)")
                && err.contains("foo 2.0 was removed"),
            "{err}"
        );
        assert!(db.stanza("foo").is_none() && !status(&root).contains("Package: foo"));
        assert!(!root.join("usr/share/new").exists());
        // A failing preinst aborts with nothing changed.
        let bad = write_pkg(
            tmp.path(),
            "foo_3.0_all.ipk",
            foo("3.0", "a=3\n", &[]).control_file("preinst", 0o755, "exit 7\n"),
        );
        let before = snapshot(&root);
        let err = install(&mut db, &bad, false, &o).unwrap_err().to_string();
        assert!(err.contains("the operation was rolled back"), "{err}");
        assert_eq!(snapshot(&root), before);
    }

    #[test]
    fn scripts_run_offline_in_opkg_order_with_instroot() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let log = |name: &str| {
            format!(
                "#!/bin/sh\necho \"{name} $* root=$IPKG_INSTROOT pkgroot=$PKG_ROOT up=$PKG_UPGRADE \
                 cwd=$(pwd) self=$(basename $0)\" >> \"$IPKG_INSTROOT/log\"\n"
            )
        };
        let with_scripts = |b: PackageBuilder, v: &str| {
            b.control_file("preinst", 0o755, log(&format!("preinst-{v}")))
                .control_file("postinst", 0o755, log(&format!("postinst-{v}")))
                .control_file("prerm", 0o755, log(&format!("prerm-{v}")))
                .control_file("postrm", 0o755, log(&format!("postrm-{v}")))
        };
        let v1 = write_pkg(
            tmp.path(),
            "foo_1.0_all.ipk",
            with_scripts(foo("1.0", "a\n", &[]), "1"),
        );
        let v2 = write_pkg(
            tmp.path(),
            "foo_2.0_all.ipk",
            with_scripts(foo("2.0", "a\n", &[]), "2"),
        );
        let mut db = open(&root);
        let o = opts(ScriptMode::Offline);
        install(&mut db, &v1, false, &o).unwrap();
        install(&mut db, &v2, false, &o).unwrap();
        remove(&mut db, "foo", &o).unwrap();
        let r = db.root().display().to_string();
        let got = fs::read_to_string(root.join("log")).unwrap();
        let want: Vec<String> = [
            ("preinst-1 install", "0", "preinst"),
            ("postinst-1 configure", "0", "postinst"),
            ("prerm-1 upgrade 2.0", "1", "prerm"),
            ("preinst-2 upgrade 1.0", "1", "preinst"),
            ("postrm-1 upgrade 2.0", "1", "postrm"),
            ("postinst-2 configure", "1", "postinst"),
            ("prerm-2 remove", "0", "prerm"),
            ("postrm-2 remove", "0", "postrm"),
        ]
        .iter()
        .map(|(what, up, s)| format!("{what} root={r} pkgroot={r} up={up} cwd={r} self=foo.{s}"))
        .collect();
        assert_eq!(got.lines().collect::<Vec<_>>(), want);
        assert!(
            db.stanza("foo")
                .unwrap_or_default()
                .get("Prokit-Scripts")
                .is_none()
        );
        assert!(!db.scripts_dir().exists());
    }

    /// `root` with foo installed (offline scripts), foo shipping a `prerm`.
    fn installed_with_prerm(dir: &Path, root: &Path) -> (Db, InstallOptions) {
        let pkg = write_pkg(
            dir,
            "foo_1.0_all.ipk",
            foo("1.0", "a\n", &[]).control_file("prerm", 0o755, "#!/bin/sh\nexit 0\n"),
        );
        let o = opts(ScriptMode::Offline);
        let mut db = open(root);
        install(&mut db, &pkg, false, &o).unwrap();
        (db, o)
    }

    #[test]
    fn threat_20_an_installed_script_linked_to_a_host_file_is_neither_read_nor_run() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        // Outside the root: a script that would leave a mark if it ran, and a sentinel.
        let host = tmp.path().join("host");
        fs::create_dir(&host).unwrap();
        let mark = host.join("ran");
        let evil = host.join("evil.sh");
        let body = format!("#!/bin/sh\ntouch {}\n", mark.display());
        fs::write(&evil, &body).unwrap();
        fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).unwrap();
        let (mut db, o) = installed_with_prerm(tmp.path(), &root);
        // The root's database, hostile: foo's prerm is now a link to the host's script.
        let prerm = db.info_file("foo", "prerm");
        fs::remove_file(&prerm).unwrap();
        std::os::unix::fs::symlink(&evil, &prerm).unwrap();
        let before = db.stanza("foo").unwrap();
        let err = remove(&mut db, "foo", &o).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(err.contains(&prerm.display().to_string()), "{err}");
        assert!(!mark.exists(), "the host's script ran");
        assert_eq!(fs::read_to_string(&evil).unwrap(), body);
        // Nothing lost: foo is still installed, its file still there.
        drop(db);
        assert_eq!(open(&root).stanza("foo").unwrap(), before);
        assert!(root.join("etc/foo.conf").is_file());
    }

    #[test]
    fn an_installed_script_larger_than_the_bound_is_refused_not_cut_short() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let (mut db, o) = installed_with_prerm(tmp.path(), &root);
        let prerm = db.info_file("foo", "prerm");
        let f = fs::OpenOptions::new().write(true).open(&prerm).unwrap();
        f.set_len(MAX_SCRIPT + 1).unwrap();
        let err = remove(&mut db, "foo", &o).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        drop(db);
        assert!(open(&root).stanza("foo").is_some());
    }

    /// Runs `op` with a simulated kill at every step in turn; after each, reopens the root,
    /// recovers (when `kill_recovery`, first with a kill at every step of the recovery too),
    /// and checks that the root is exactly the old state or exactly the new one. Returns how
    /// many kills ended in each.
    fn kill_everywhere(
        setup: &dyn Fn(&Path),
        op: &dyn Fn(&mut Db) -> Result<(), InstallError>,
        kill_recovery: bool,
    ) -> (usize, usize) {
        let run = |kill: Option<u64>, kill_in_recovery: Option<u64>| {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("root");
            setup(&root);
            drop(open(&root));
            let before = snapshot(&root);
            crate::unpack::arm_kill(kill);
            let result = {
                let mut db = open(&root);
                op(&mut db)
            };
            let fired = crate::unpack::killed();
            let mut recovery_fired = false;
            if kill_in_recovery.is_some() {
                crate::unpack::arm_kill(kill_in_recovery);
                let mut db = open(&root);
                let r = recover(&mut db);
                recovery_fired = crate::unpack::killed();
                assert!(r.is_ok() != recovery_fired, "{r:?}");
            }
            crate::unpack::arm_kill(None);
            let recovered = {
                let mut db = open(&root);
                recover(&mut db).unwrap()
            };
            // What a maintainer script did cannot be undone; it is not prokit's state.
            let mut after = snapshot(&root);
            after.remove("postinst-ran");
            (
                before,
                after,
                result.is_ok(),
                fired,
                recovered,
                recovery_fired,
                tmp,
            )
        };
        let (old, new, ok, fired, recovered, _, _t) = run(None, None);
        assert!(ok && !fired && recovered.is_none());
        assert_ne!(old, new);
        let check = |n: u64, got: &BTreeMap<String, String>| -> bool {
            if *got == old {
                return true;
            }
            if *got == new {
                return false;
            }
            let keys: BTreeSet<&String> = got.keys().chain(old.keys()).chain(new.keys()).collect();
            let diff: Vec<_> = keys
                .into_iter()
                .filter(|k| got.get(*k) != old.get(*k))
                .map(|k| (k, got.get(k), old.get(k), new.get(k)))
                .collect();
            panic!("step {n}: neither the old nor the new state; differs in {diff:?}");
        };
        let (mut olds, mut news) = (0, 0);
        for n in 0.. {
            let (_, got, ok, fired, recovered, _, _t) = run(Some(n), None);
            if !fired {
                assert!(ok, "step {n}");
                assert_eq!(got, new);
                break;
            }
            assert!(!ok, "a killed run reports failure");
            // Killed before the journal's first record: nothing to recover, nothing done.
            assert!(
                recovered.is_some() || got == old,
                "step {n}: a journal was left to recover"
            );
            if check(n, &got) {
                olds += 1;
            } else {
                news += 1;
            }
            if kill_recovery {
                for m in 0.. {
                    let (_, again, _, _, _, recovery_fired, _t) = run(Some(n), Some(m));
                    assert_eq!(again, got, "step {n}, recovery killed at {m}");
                    if !recovery_fired {
                        break;
                    }
                }
            }
        }
        (olds, news)
    }

    #[test]
    fn kill_at_every_step_leaves_old_or_new_state() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let v1 = write_pkg(
            &d,
            "foo_1.0_all.ipk",
            foo_with(
                "1.0",
                "a=1\n",
                &[("usr/share/foo/old", "old"), ("etc/two.conf", "t1")],
                "/etc/foo.conf\n/etc/two.conf\n",
            ),
        );
        let v2 = write_pkg(
            &d,
            "foo_2.0_all.ipk",
            foo_with(
                "2.0",
                "a=2\n",
                &[("usr/lib/foo/new", "new"), ("etc/two.conf", "t2")],
                "/etc/foo.conf\n/etc/two.conf\n",
            )
            .control_file(
                "postinst",
                0o755,
                "#!/bin/sh\necho ok > \"$IPKG_INSTROOT/postinst-ran\"\n",
            ),
        );
        let base = write_pkg(
            &d,
            "base_1_all.ipk",
            PackageBuilder::new(control("base", "1", "")).file("usr/bin/shared", 0o755, "base"),
        );
        let taker = write_pkg(
            &d,
            "taker_1_all.ipk",
            PackageBuilder::new(control("taker", "1", "Replaces: base\n"))
                .file("usr/bin/shared", 0o755, "taker")
                .file("etc/taker.conf", 0o644, "t")
                .control_file("conffiles", 0o644, "/etc/taker.conf\n"),
        );
        let skip = opts(ScriptMode::Skip);
        let offline = opts(ScriptMode::Offline);

        // A fresh install.
        let (olds, news) = kill_everywhere(
            &|_| {},
            &|db| install(db, &v1, false, &skip).map(|_| ()),
            false,
        );
        assert!(olds > 5 && news > 0, "{olds} {news}");

        // An upgrade with a modified conffile, an obsolete file and a postinst.
        let setup_v1 = |root: &Path| {
            let mut db = open(root);
            install(&mut db, &v1, false, &skip).unwrap();
            fs::write(root.join("etc/foo.conf"), "mine\n").unwrap();
        };
        let (olds, news) = kill_everywhere(
            &setup_v1,
            &|db| install(db, &v2, false, &offline).map(|_| ()),
            true,
        );
        assert!(olds > 5 && news > 0, "{olds} {news}");

        // A takeover of another package's file.
        let setup_base = |root: &Path| {
            let mut db = open(root);
            install(&mut db, &base, false, &skip).unwrap();
        };
        let (olds, news) = kill_everywhere(
            &setup_base,
            &|db| install(db, &taker, false, &skip).map(|_| ()),
            false,
        );
        assert!(olds > 5 && news > 0, "{olds} {news}");

        // A removal.
        let (olds, news) =
            kill_everywhere(&setup_v1, &|db| remove(db, "foo", &skip).map(|_| ()), false);
        assert!(olds > 2 && news > 0, "{olds} {news}");
    }

    /// Installs `files` in one batch, committing at the end; the names committed, in order.
    fn batch_install(
        db: &mut Db,
        files: &[&Path],
        o: &InstallOptions,
    ) -> (Vec<String>, Result<(), InstallError>) {
        let mut batch = match Batch::new(db) {
            Ok(b) => b,
            Err(e) => return (Vec::new(), Err(e)),
        };
        let mut names = Vec::new();
        for f in files {
            let r = batch.install(db, *f, false, o, None);
            if let Err(e) = r {
                if !crate::unpack::killed() {
                    batch.flush(db).unwrap();
                }
                names.extend(batch.take_done().into_iter().map(|r| r.name));
                return (names, Err(e));
            }
            names.extend(batch.take_done().into_iter().map(|r| r.name));
        }
        let r = batch.flush(db);
        names.extend(batch.take_done().into_iter().map(|r| r.name));
        (names, r)
    }

    fn three_packages(d: &Path) -> Vec<PathBuf> {
        ["a", "b", "c"]
            .iter()
            .map(|n| {
                write_pkg(
                    d,
                    &format!("{n}_1_all.ipk"),
                    PackageBuilder::new(control(n, "1", ""))
                        .file(&format!("usr/share/{n}/data"), 0o644, *n)
                        .file(&format!("usr/bin/{n}"), 0o755, *n)
                        .file(&format!("etc/{n}.conf"), 0o644, "conf")
                        .control_file("conffiles", 0o644, format!("/etc/{n}.conf\n")),
                )
            })
            .collect()
    }

    #[test]
    fn a_batch_commits_independent_packages_together_and_a_kill_keeps_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let pkgs = three_packages(dir.path());
        let refs: Vec<&Path> = pkgs.iter().map(PathBuf::as_path).collect();
        let skip = opts(ScriptMode::Skip);
        // Installed one by one and in a batch: the same root, byte for byte.
        let (one, group) = (dir.path().join("one"), dir.path().join("group"));
        {
            let mut db = open(&one);
            for p in &refs {
                install(&mut db, p, false, &skip).unwrap();
            }
            let mut db = open(&group);
            let (names, r) = batch_install(&mut db, &refs, &skip);
            r.unwrap();
            assert_eq!(names, ["a", "b", "c"]);
        }
        assert_eq!(snapshot(&one), snapshot(&group));
        // One group: a kill anywhere leaves none of the three or all of them.
        let (olds, news) = kill_everywhere(&|_| {}, &|db| batch_install(db, &refs, &skip).1, false);
        assert!(olds > 10 && news > 0, "{olds} {news}");
        // An upgrade of all three together, with a modified conffile kept.
        let v2: Vec<PathBuf> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                write_pkg(
                    dir.path(),
                    &format!("{n}_2_all.ipk"),
                    PackageBuilder::new(control(n, "2", ""))
                        .file(&format!("usr/bin/{n}"), 0o755, format!("{n}2"))
                        .file(&format!("usr/lib/{n}/new"), 0o644, "new")
                        .file(&format!("etc/{n}.conf"), 0o644, "conf2")
                        .control_file("conffiles", 0o644, format!("/etc/{n}.conf\n")),
                )
            })
            .collect();
        let v2_refs: Vec<&Path> = v2.iter().map(PathBuf::as_path).collect();
        let setup = |root: &Path| {
            let mut db = open(root);
            batch_install(&mut db, &refs, &skip).1.unwrap();
            fs::write(root.join("etc/b.conf"), "mine").unwrap();
        };
        let (olds, news) = kill_everywhere(
            &setup,
            &|db| batch_install(db, &v2_refs, &skip).1,
            // Recovery is the same code for one package or a group: killing it at every
            // step is `kill_at_every_step_leaves_old_or_new_state`'s.
            false,
        );
        assert!(olds > 10 && news > 0, "{olds} {news}");
        let root = dir.path().join("up");
        setup(&root);
        let mut db = open(&root);
        batch_install(&mut db, &v2_refs, &skip).1.unwrap();
        for n in ["a", "b", "c"] {
            assert!(!root.join(format!("usr/share/{n}/data")).exists());
            assert_eq!(
                fs::read_to_string(root.join(format!("usr/bin/{n}"))).unwrap(),
                format!("{n}2")
            );
            assert_eq!(db.stanza(n).unwrap().get("Version"), Some("2"));
        }
        assert_eq!(fs::read_to_string(root.join("etc/b.conf")).unwrap(), "mine");
        assert_eq!(
            fs::read_to_string(root.join("etc/b.conf-opkg")).unwrap(),
            "conf2"
        );
        let map = db.package_map();
        drop(db);
        assert_eq!(open(&root).package_map(), map);
    }

    #[test]
    fn a_large_upgrade_commits_and_cleans_up_through_the_thread_pool() {
        // Enough paths that commit and cleanup take their parallel way (PARALLEL_AT).
        let dir = tempfile::tempdir().unwrap();
        let many = |version: &str, dropped: usize| {
            let mut b = PackageBuilder::new(control("many", version, ""));
            for i in dropped..300 {
                b = b.file(
                    &format!("usr/share/many/{}/f{i}", i % 7),
                    0o644,
                    format!("{version} {i}"),
                );
            }
            write_pkg(dir.path(), &format!("many_{version}_all.ipk"), b)
        };
        let (v1, v2) = (many("1", 0), many("2", 150));
        let root = dir.path().join("root");
        let mut db = open(&root);
        install(&mut db, &v1, false, &opts(ScriptMode::Skip)).unwrap();
        install(&mut db, &v2, false, &opts(ScriptMode::Skip)).unwrap();
        let got = snapshot(&root.join("usr/share/many"));
        let files: Vec<(&String, &String)> =
            got.iter().filter(|(_, v)| v.starts_with('f')).collect();
        assert_eq!(files.len(), 150, "{got:?}");
        for (path, v) in files {
            let i: usize = path.rsplit("/f").next().unwrap().parse().unwrap();
            assert!(i >= 150, "{path} left behind");
            assert_eq!(v, &format!("f 644 2 {i}"));
        }
        assert!(got.keys().all(|k| !k.contains(".prokit-")), "{got:?}");
    }

    #[test]
    fn packages_of_a_batch_sharing_new_directories_land_as_installed_one_by_one() {
        // The first package creates the directories; the second names the same ones (and a
        // new one below them) in its archive, in the same transaction, before anything is
        // committed. Paths under a directory the transaction made are not looked up: the
        // ones it made there still are.
        let dir = tempfile::tempdir().unwrap();
        let first = write_pkg(
            dir.path(),
            "first_1_all.ipk",
            PackageBuilder::new(control("first", "1", ""))
                .dir("opt/app", 0o755)
                .dir("opt/app/share", 0o750)
                .file("opt/app/share/first", 0o644, "first"),
        );
        let second = write_pkg(
            dir.path(),
            "second_1_all.ipk",
            PackageBuilder::new(control("second", "1", ""))
                .dir("opt/app", 0o755)
                .dir("opt/app/share", 0o700)
                .dir("opt/app/share/more", 0o755)
                .file("opt/app/share/second", 0o644, "second")
                .file("opt/app/share/more/x", 0o600, "x"),
        );
        let refs = [first.as_path(), second.as_path()];
        let skip = opts(ScriptMode::Skip);
        let (one, group) = (dir.path().join("one"), dir.path().join("group"));
        let mut db = open(&one);
        for p in refs {
            install(&mut db, p, false, &skip).unwrap();
        }
        let mut db = open(&group);
        let (names, r) = batch_install(&mut db, &refs, &skip);
        r.unwrap();
        assert_eq!(names, ["first", "second"]);
        assert_eq!(snapshot(&one), snapshot(&group));
        // A file where the batch already made a directory is refused, as it would be alone.
        let clash = write_pkg(
            dir.path(),
            "clash_1_all.ipk",
            PackageBuilder::new(control("clash", "1", "")).file("opt/new/share", 0o644, "f"),
        );
        let maker = write_pkg(
            dir.path(),
            "maker_1_all.ipk",
            PackageBuilder::new(control("maker", "1", "")).file("opt/new/share/f", 0o644, "f"),
        );
        let mut db = open(&dir.path().join("clash"));
        let (names, r) = batch_install(&mut db, &[maker.as_path(), clash.as_path()], &skip);
        let err = r.unwrap_err().to_string();
        assert!(err.contains("/opt/new/share is a directory"), "{err}");
        assert_eq!(names, ["maker"]);
    }

    /// [`three_packages`], each read ahead.
    fn three_read_ahead(d: &Path) -> Vec<(PathBuf, crate::unpack::Preread)> {
        three_packages(d)
            .into_iter()
            .map(|p| {
                let pre = crate::unpack::Preread::read(&p, 1 << 20).expect("read ahead");
                (p, pre)
            })
            .collect()
    }

    /// Installs `pkgs` read ahead in one batch, as a bootstrap does (direct mode).
    fn bootstrap_batch(
        db: &mut Db,
        pkgs: &[(PathBuf, crate::unpack::Preread)],
    ) -> Result<(), InstallError> {
        db.set_direct_new_dirs(true);
        let skip = opts(ScriptMode::Skip);
        let mut batch = Batch::new(db)?;
        for (path, package) in pkgs {
            let file = crate::unpack::PackageFile::Decoded { path, package };
            batch.install(db, file, false, &skip, None)?;
        }
        batch.flush(db)
    }

    #[test]
    fn a_bootstrap_makes_new_files_in_place_and_a_kill_anywhere_keeps_all_or_none() {
        // Packages read ahead, in a database set to make files in place in the directories
        // a transaction creates (a bootstrap): the same root as installing each from its
        // file, and a kill at any step leaves none of the three or all of them.
        let dir = tempfile::tempdir().unwrap();
        let pre = three_read_ahead(dir.path());
        let in_place = |db: &mut Db| bootstrap_batch(db, &pre);
        let (one, direct) = (dir.path().join("one"), dir.path().join("direct"));
        let mut db = open(&one);
        for (p, _) in &pre {
            install(&mut db, p, false, &opts(ScriptMode::Skip)).unwrap();
        }
        let mut db = open(&direct);
        in_place(&mut db).unwrap();
        assert_eq!(snapshot(&one), snapshot(&direct));
        // Made in place: killed before its commit, the journal names a data file and an info
        // file (the database's is fresh) by their own paths (a temporary would be
        // `.prokit-N.new`).
        let made_seen = |step: u64, path: &str| {
            let tmp = tempfile::tempdir().unwrap();
            let mut db = open(&tmp.path().join("root"));
            crate::unpack::arm_kill(Some(step));
            let _ = in_place(&mut db);
            crate::unpack::arm_kill(None);
            fs::read_to_string(db.journal_path())
                .is_ok_and(|j| j.contains(&format!("\nnew\t{path}\n")) && !j.contains("\ndone"))
        };
        for path in ["/usr/share/b/data", "/usr/lib/opkg/info/b.list"] {
            assert!(
                (1..400).any(|step| made_seen(step, path)),
                "no journal named {path} made in place"
            );
        }
        let (olds, news) = kill_everywhere(&|_| {}, &in_place, true);
        assert!(olds > 10 && news > 0, "{olds} {news}");
    }

    #[test]
    fn a_bootstrap_over_a_database_with_info_files_makes_none_of_them_in_place() {
        // The info directory holds a file before the bootstrap (a stray `b.control` of a
        // package not installed): it is not fresh, so b's info files go under temporary
        // names, put over what is there at commit. Made in place, b.control would fail to be
        // created, and the undo would delete the stray file: neither the old state nor the new.
        let dir = tempfile::tempdir().unwrap();
        let pre = three_read_ahead(dir.path());
        let stray = |root: &Path| {
            let info = root.join("usr/lib/opkg/info");
            fs::create_dir_all(&info).unwrap();
            fs::write(info.join("b.control"), "left by someone\n").unwrap();
        };
        let bootstrap = |db: &mut Db| -> Result<(), InstallError> {
            db.set_direct_new_dirs(true);
            assert!(!db.fresh_info());
            bootstrap_batch(db, &pre)
        };
        let (olds, news) = kill_everywhere(&stray, &bootstrap, true);
        assert!(olds > 10 && news > 0, "{olds} {news}");
        // An empty one is fresh.
        let mut db = open(&dir.path().join("fresh"));
        db.set_direct_new_dirs(true);
        assert!(db.fresh_info());
        db.set_direct_new_dirs(false);
        assert!(!db.fresh_info());
    }

    #[test]
    fn a_file_moving_between_packages_of_a_batch_lands_with_its_new_owner_in_either_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a1 = write_pkg(
            d,
            "a_1_all.ipk",
            PackageBuilder::new(control("a", "1", ""))
                .file("usr/bin/tool", 0o755, "a's tool")
                .file("usr/bin/a", 0o755, "a1"),
        );
        let a2 = write_pkg(
            d,
            "a_2_all.ipk",
            PackageBuilder::new(control("a", "2", "")).file("usr/bin/a", 0o755, "a2"),
        );
        let b = write_pkg(
            d,
            "b_1_all.ipk",
            PackageBuilder::new(control("b", "1", "")).file("usr/bin/tool", 0o755, "b's tool"),
        );
        for order in [[&a2, &b], [&b, &a2]] {
            let root = d.join(format!("root-{}", order[0] == &b));
            let mut db = open(&root);
            install(&mut db, &a1, false, &opts(ScriptMode::Skip)).unwrap();
            let mut o = opts(ScriptMode::Skip);
            o.released = Released::from_map(
                [("a".to_string(), ["/usr/bin/tool".to_string()].into())].into(),
            );
            let refs: Vec<&Path> = order.iter().map(|p| p.as_path()).collect();
            batch_install(&mut db, &refs, &o).1.unwrap();
            assert_eq!(
                fs::read_to_string(root.join("usr/bin/tool")).unwrap(),
                "b's tool"
            );
            assert_eq!(fs::read_to_string(root.join("usr/bin/a")).unwrap(), "a2");
            let map = db.package_map();
            drop(db);
            let mut reopened = open(&root);
            assert_eq!(reopened.package_map(), map);
            let owners = reopened.owners().unwrap();
            assert_eq!(
                owners.file_owner("/usr/bin/tool").unwrap().as_deref(),
                Some("b")
            );
            let names: Vec<String> = walk_names(&root.join("usr/bin"));
            assert!(
                names.iter().all(|n| !n.starts_with(".prokit-")),
                "{names:?}"
            );
        }
    }

    #[test]
    fn a_failure_in_a_batch_commits_the_packages_before_it_and_nothing_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pkgs = three_packages(d);
        let clash = write_pkg(
            d,
            "clash_1_all.ipk",
            PackageBuilder::new(control("clash", "1", ""))
                .file("usr/share/clash/x", 0o644, "x")
                .file("usr/bin/a", 0o755, "not a's"),
        );
        let root = d.join("root");
        let mut db = open(&root);
        let refs = [
            pkgs[0].as_path(),
            pkgs[1].as_path(),
            clash.as_path(),
            pkgs[2].as_path(),
        ];
        let (done, r) = batch_install(&mut db, &refs, &opts(ScriptMode::Skip));
        let err = r.unwrap_err();
        assert_eq!(done, ["a", "b"]);
        assert!(
            matches!(err, InstallError::Unpack(UnpackError::Conflict { .. })),
            "{err}"
        );
        assert!(root.join("usr/bin/b").exists());
        assert!(!root.join("usr/share/clash").exists());
        assert!(!root.join("usr/bin/c").exists());
        let (map, journal) = (db.package_map(), db.journal_path());
        drop(db);
        assert!(!journal.exists());
        let reopened = open(&root);
        assert_eq!(reopened.package_map(), map);
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn in_a_batch_a_package_whose_scripts_run_is_installed_alone_in_script_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pkgs = three_packages(d);
        let scripted = write_pkg(
            d,
            "s_1_all.ipk",
            PackageBuilder::new(control("s", "1", ""))
                .file("usr/bin/s", 0o755, "s")
                .control_file(
                    "postinst",
                    0o755,
                    "#!/bin/sh\nls \"$IPKG_INSTROOT/usr/bin\" > \"$IPKG_INSTROOT/seen\"\n",
                ),
        );
        let root = d.join("root");
        let mut db = open(&root);
        let refs = [pkgs[0].as_path(), scripted.as_path(), pkgs[1].as_path()];
        let (done, r) = batch_install(&mut db, &refs, &opts(ScriptMode::Offline));
        r.unwrap();
        assert_eq!(done, ["a", "s", "b"]);
        // The postinst ran after a was committed, before b was.
        assert_eq!(fs::read_to_string(root.join("seen")).unwrap(), "a\ns\n");
    }

    /// A scratch directory with `root/` and `outside/` holding a sentinel file, and package
    /// `foo` installed with `/usr/lib/foo/x` and `/usr/bin/foo`.
    fn scene_with_foo() -> (tempfile::TempDir, PathBuf, PathBuf, Db) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), "host file").unwrap();
        fs::write(outside.join("x"), "host x").unwrap();
        let pkg = write_pkg(
            tmp.path(),
            "foo_1_all.ipk",
            PackageBuilder::new(control("foo", "1", ""))
                .file("usr/lib/foo/x", 0o644, "x")
                .file("usr/bin/foo", 0o755, "foo"),
        );
        let mut db = open(&root);
        install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        (tmp, root, outside, db)
    }

    fn outside_state(outside: &Path) -> BTreeMap<String, String> {
        snapshot(outside)
    }

    #[test]
    fn threat_19_remove_with_forged_list_deletes_nothing_outside_the_root() {
        // 1. A `.list` line climbing out of the root: the list is refused as a whole (the
        //    database layer) or the line is left alone; either way nothing outside changes.
        let (tmp, root, outside, db) = scene_with_foo();
        drop(db);
        let before = outside_state(&outside);
        let list = root.join("usr/lib/opkg/info/foo.list");
        for forged in ["/../../outside/sentinel", "/usr/../../../outside/x"] {
            fs::write(&list, format!("/usr/bin/foo\n/usr/lib/foo/x\n{forged}\n")).unwrap();
            let mut db = open(&root);
            let _ = remove(&mut db, "foo", &opts(ScriptMode::Skip));
            assert_eq!(outside_state(&outside), before, "{forged}");
        }
        drop(tmp);

        // 2. A normal line whose directory was swapped for a symlink to the host: left in
        //    place and reported; the rest of the package is removed.
        let (_tmp, root, outside, db) = scene_with_foo();
        drop(db);
        let before = outside_state(&outside);
        fs::rename(root.join("usr/lib/foo"), root.join("usr/lib/foo.moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("usr/lib/foo")).unwrap();
        let mut db = open(&root);
        let r = remove(&mut db, "foo", &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(outside_state(&outside), before);
        assert_eq!(fs::read(outside.join("x")).unwrap(), b"host x");
        assert_eq!(r.files, 1, "{r:?}");
        assert_eq!(
            r.left_in_place,
            vec![LeftInPlace {
                path: "/usr/lib/foo/x".into(),
                reason: "/usr/lib/foo is a symbolic link now; deleting through it would touch files that are not this package's".into(),
            }]
        );
        assert!(!root.join("usr/bin/foo").exists());
        assert!(db.stanza("foo").is_none());

        // 3. Lines naming the package manager's own state or prokit's temporaries: left.
        let (_tmp, root, _outside, db) = scene_with_foo();
        drop(db);
        let list = root.join("usr/lib/opkg/info/foo.list");
        fs::write(
            &list,
            "/usr/bin/foo\n/usr/lib/opkg/info/bar.list\n/usr/lib/opkg/status\n/usr/bin/.prokit-0.new\n",
        )
        .unwrap();
        fs::write(root.join("usr/lib/opkg/info/bar.list"), "/usr/bin/bar\n").unwrap();
        fs::write(root.join("usr/bin/.prokit-0.new"), "x").unwrap();
        let mut db = open(&root);
        let r = remove(&mut db, "foo", &opts(ScriptMode::Skip)).unwrap();
        let left: Vec<(&str, &str)> = r
            .left_in_place
            .iter()
            .map(|l| (l.path.as_str(), l.reason.as_str()))
            .collect();
        assert_eq!(
            left,
            vec![
                (
                    "/usr/bin/.prokit-0.new",
                    "a name of prokit's temporary files, which no package owns"
                ),
                (
                    "/usr/lib/opkg/info/bar.list",
                    "inside the package database (/usr/lib/opkg): no package owns files there (the package's .list is forged or corrupt)"
                ),
                (
                    "/usr/lib/opkg/status",
                    "inside the package database (/usr/lib/opkg): no package owns files there (the package's .list is forged or corrupt)"
                ),
            ]
        );
        assert!(root.join("usr/lib/opkg/info/bar.list").exists());
        assert!(root.join("usr/bin/.prokit-0.new").exists());
        assert!(!root.join("usr/bin/foo").exists());
    }

    #[test]
    fn upgrade_never_deletes_or_writes_through_a_symlinked_parent() {
        let (tmp, root, outside, db) = scene_with_foo();
        drop(db);
        let before = outside_state(&outside);
        fs::rename(root.join("usr/lib/foo"), root.join("usr/lib/foo.moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("usr/lib/foo")).unwrap();
        // Version 2 drops /usr/lib/foo/x: it is left in place, not deleted through the link.
        let v2 = write_pkg(
            tmp.path(),
            "foo_2_all.ipk",
            PackageBuilder::new(control("foo", "2", "")).file("usr/bin/foo", 0o755, "foo 2"),
        );
        let mut db = open(&root);
        let r = install(&mut db, &v2, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(r.left_in_place.len(), 1, "{r:?}");
        assert_eq!(r.left_in_place[0].path, "/usr/lib/foo/x");
        assert_eq!(outside_state(&outside), before);
        // Version 3 ships /usr/lib/foo/x again: refused, nothing written through the link.
        let v3 = write_pkg(
            tmp.path(),
            "foo_3_all.ipk",
            PackageBuilder::new(control("foo", "3", "")).file("usr/lib/foo/x", 0o644, "x3"),
        );
        let err = install(&mut db, &v3, false, &opts(ScriptMode::Skip)).unwrap_err();
        assert!(
            err.to_string()
                .contains("write through the symlink /usr/lib/foo"),
            "{err}"
        );
        assert_eq!(outside_state(&outside), before);
    }

    #[test]
    fn recover_with_nothing_pending_does_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut db = open(tmp.path());
        assert_eq!(recover(&mut db).unwrap(), None);
    }

    #[test]
    fn a_file_changed_after_it_was_checked_is_refused_at_unpacking() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(&root).unwrap();
        let pkg = write_pkg(t.path(), "foo.ipk", foo("1.0", "a=1\n", &[]));
        let mut db = open(&root);
        let want = Expected {
            origin: "feed \"main\"".into(),
            name: "foo".into(),
            version: "1.0".into(),
            arch: "all".into(),
            index_signature: None,
            signed_by: None,
            feed_key: None,
            sha256: Some("00".repeat(32)),
        };
        let before = snapshot(&root);
        let e = install_expecting(&mut db, &pkg, false, &opts(ScriptMode::Skip), Some(&want))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the file changed after it was downloaded and checked"),
            "{e}"
        );
        assert_eq!(snapshot(&root), before);
        let right = Expected {
            sha256: Some(sha(&fs::read(&pkg).unwrap())),
            ..want
        };
        install_expecting(&mut db, &pkg, false, &opts(ScriptMode::Skip), Some(&right)).unwrap();
    }

    #[test]
    fn a_package_read_ahead_is_checked_and_installed_as_its_file_would_be() {
        let t = tempfile::tempdir().unwrap();
        let pkg = write_pkg(
            t.path(),
            "foo.ipk",
            foo("1.0", "a=1\n", &[]).file("usr/share/foo/big", 0o644, vec![7u8; 200_000]),
        );
        let read = crate::unpack::Preread::read(&pkg, 1 << 20).expect("read whole");
        // Too big to keep in memory: not read ahead (the install reads the file itself).
        assert!(crate::unpack::Preread::read(&pkg, 1000).is_none());
        let want = Expected {
            origin: "feed \"main\"".into(),
            name: "foo".into(),
            version: "1.0".into(),
            arch: "all".into(),
            index_signature: None,
            signed_by: None,
            feed_key: None,
            sha256: Some("00".repeat(32)),
        };
        let file = PackageFile::Decoded {
            path: &pkg,
            package: &read,
        };
        // The SHA-256 of the bytes read ahead is compared with the index's, as for a file.
        let root = t.path().join("ahead");
        let mut db = open(&root);
        let before = snapshot(&root);
        let e = install_expecting(&mut db, file, false, &opts(ScriptMode::Skip), Some(&want))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the file changed after it was downloaded and checked"),
            "{e}"
        );
        assert_eq!(snapshot(&root), before);
        let right = Expected {
            sha256: Some(sha(&fs::read(&pkg).unwrap())),
            ..want
        };
        install_expecting(&mut db, file, false, &opts(ScriptMode::Skip), Some(&right)).unwrap();
        // The same root as an install from the file, and the same records of every file.
        let direct = t.path().join("direct");
        let mut db2 = open(&direct);
        install_expecting(&mut db2, &pkg, false, &opts(ScriptMode::Skip), Some(&right)).unwrap();
        let strip_time = |m: std::collections::BTreeMap<String, String>| {
            m.into_iter()
                .map(|(k, v)| {
                    let v = v
                        .lines()
                        .filter(|l| !l.starts_with("Installed-Time:"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    (k, v)
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert_eq!(strip_time(snapshot(&root)), strip_time(snapshot(&direct)));
        let sidecar = fs::read_to_string(root.join("usr/lib/opkg/info/foo.sha256")).unwrap();
        assert!(
            sidecar.contains(&sha(&vec![7u8; 200_000])),
            "the read-ahead digest of a big file is recorded: {sidecar}"
        );
    }

    #[test]
    fn reinstalling_same_version_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let pkg = write_pkg(tmp.path(), "foo_1.0_all.ipk", foo("1.0", "a=1\n", &[]));
        let mut db = open(&root);
        install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        let once = snapshot(&root);
        let r = install(&mut db, &pkg, false, &opts(ScriptMode::Skip)).unwrap();
        assert_eq!(r.upgraded_from.as_deref(), Some("1.0"));
        assert_eq!(snapshot(&root), once);
        let _: BTreeMap<String, String> = BTreeMap::new();
        assert_eq!(
            sha256_file(&root.join("usr/bin/foo")).unwrap(),
            sha(b"foo 1.0\n")
        );
    }
}
