//! The operations behind prokit's commands: `update`, `install`, `remove`, `list`, `info`,
//! `verify` on a root described by its opkg.conf, and `bootstrap`, which makes a new root
//! (its opkg.conf and trusted keys) and installs into it.
//!
//! Order of work for an install, so that nothing changes unless everything checks out:
//! finish or undo an interrupted earlier run; load the stored indexes (their signatures are
//! checked again on load); resolve the whole request (an unsatisfiable one fails here, before
//! any download); download every package in parallel, each capped at its indexed Size and
//! checked against its SHA-256 while streaming; then install package by package in dependency
//! order, each one crash-safe.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use feeds::control::Paragraph;
use feeds::usign::PublicKey;
use safe_fs::{FsError, Root, WriteOptions};

use crate::audit::{Audit, AuditError, redact, split_package};
use crate::config::{Config, ConfigError, Source};
use crate::download::{self, DownloadError, DownloadItem};
use crate::feed::{FeedError, FeedSource, FeedStore, Trust, UpdateReport};
use crate::fetch::{FetchError, FetchOptions, Fetcher, MinRate};
use crate::install::{self, InstallError, InstallOptions, InstallReport, RemoveReport, ScriptMode};
use crate::keyring::{self, KeyringError};
use crate::planned::Planned;
use crate::policy::Policy;
use crate::resolve::{Request, RequestList, ResolveError, Universe};
use crate::review::{Provenance, Review};
use crate::rootfs::{self, TarError};
use crate::status::{Db, StatusError};
use crate::unpack::PackageFile;
use crate::verify::{self, VerifyReport};

/// What the library tells the user while it works; the binary draws it.
pub trait Progress: Sync {
    /// A line of information (a recovered run, a kept conffile).
    fn message(&self, _text: &str) {}
    /// A package file is ready in the cache (`cached`: it was there already and verified).
    fn downloaded(&self, _file: &str, _cached: bool) {}
    /// A package was installed.
    fn installed(&self, _report: &InstallReport) {}
}

/// Reports nothing.
pub struct Quiet;
impl Progress for Quiet {}

/// What an install shows and asks before it changes anything (`--review`, the terminal
/// question, `prokit review`). The default reviews nothing and asks nothing.
pub trait Gate {
    /// Whether to read every package's permission review (the policy reads them anyway
    /// when it has rules).
    fn wants_review(&self) -> bool {
        false
    }
    /// Called once with every package's review, after all are downloaded and verified and
    /// the policy let them through, before anything changes: false stops the install with
    /// nothing changed ([`ClientError::Declined`]).
    fn confirm(&mut self, _reviews: &[Review]) -> bool {
        true
    }
    /// True for `prokit review`, which never installs: its records say `"mode":"review"`.
    fn review_only(&self) -> bool {
        false
    }
}

/// Asks nothing.
pub struct NoGate;
impl Gate for NoGate {}

/// Settings common to every operation.
#[derive(Debug, Clone)]
pub struct Options {
    /// The root filesystem operated on (`/` for the running system).
    pub root: PathBuf,
    /// The configuration file (default: the root's opkg.conf and opkg/*.conf).
    pub conf: Option<PathBuf>,
    /// Where packages are downloaded (default `<root>/var/cache/prokit`).
    pub cache_dir: Option<PathBuf>,
    /// Keep downloaded packages after installing them.
    pub keep_cache: bool,
    /// Extra CA certificates (PEM) for https feeds.
    pub ca_file: Option<PathBuf>,
    /// Names treated as installed (what OpenWrt indexes leave out: libc, kernel).
    pub assume_installed: Vec<String>,
    pub scripts: ScriptMode,
    /// Allow setuid/setgid files and device nodes.
    pub allow_special: bool,
    /// Parallel downloads.
    pub jobs: usize,
    /// The current time (Unix seconds) for Release freshness.
    pub now: i64,
    /// `Installed-Time` recorded in the status database (`SOURCE_DATE_EPOCH` when set).
    pub installed_time: i64,
    /// fsync the database and installed files after each package (off for a fresh
    /// bootstrap, whose root is thrown away and redone after a power loss anyway; kill -9
    /// safety does not depend on it).
    pub durable: bool,
    /// Install each package as soon as it (and all before it) is downloaded and verified
    /// (bootstrap of a fresh root). Otherwise packages are still unpacked as they arrive,
    /// but nothing is committed before every package is downloaded and verified
    /// (docs/crash-safety.md §5.1, "The gate").
    pub pipeline: bool,
    /// Let any package change which keys and feeds are trusted (`--allow-trust-changes`);
    /// otherwise only the configured keyring package may (docs/threats.md §19).
    pub allow_trust_changes: bool,
    /// Change held packages (`prokit flag hold`) too (`--force-hold`).
    pub force_hold: bool,
    /// Install named packages again that are already installed at the chosen version
    /// (`--force-reinstall`).
    pub force_reinstall: bool,
    /// Take over files other packages own, without `Replaces` (`--force-overwrite`).
    pub force_overwrite: bool,
    /// Install what newly installed packages `Recommends` when it can be installed with the
    /// rest, as opkg does (`--no-install-recommends` turns it off).
    pub install_recommends: bool,
    /// Download and verify the packages an install or upgrade needs, then stop: the cache
    /// is filled (and kept), the root unchanged (`--download-only`).
    pub download_only: bool,
}

impl Options {
    /// Defaults for a root: scripts skipped, 4 download workers, the current time.
    pub fn new(root: PathBuf) -> Options {
        let now = feeds::release::unix_now();
        Options {
            root,
            conf: None,
            cache_dir: None,
            keep_cache: false,
            ca_file: None,
            assume_installed: Vec::new(),
            scripts: ScriptMode::Skip,
            allow_special: false,
            jobs: 4,
            now,
            installed_time: now,
            durable: true,
            pipeline: false,
            allow_trust_changes: false,
            force_hold: false,
            force_reinstall: false,
            force_overwrite: false,
            install_recommends: true,
            download_only: false,
        }
    }
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Plan(#[from] crate::planned::PlannedError),
    #[error("no feeds are configured (add `src/gz NAME URL` to {0})")]
    NoFeeds(String),
    #[error("feed {0:?} has no verified index yet: run `prokit update` first")]
    NotUpdated(String),
    #[error("feed {feed:?}: package {package}: {reason}")]
    BadStanza {
        feed: String,
        package: String,
        reason: String,
    },
    #[error("package {0} is not installed")]
    NotInstalled(String),
    #[error("cannot remove {name}: installed packages depend on it: {} (remove them too, or use --force-depends)", dependents.join(", "))]
    Dependents {
        name: String,
        dependents: Vec<String>,
    },
    #[error("{} feed{} failed to update: {}", failed.len(), if failed.len() == 1 { "" } else { "s" }, failed.join("; "))]
    UpdateFailed { failed: Vec<String> },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Installing one package of a plan failed: named by package and URL, not by the cache
    /// file it was read from.
    #[error("cannot install {package} (from {url}): {source}")]
    InstallOf {
        package: String,
        url: String,
        #[source]
        source: Box<InstallError>,
    },
    #[error("{0}")]
    Invalid(String),
    /// The install policy refused a package (docs/trust-model.md §10).
    #[error("refused {package} by policy {rule}: {detail}; nothing was changed")]
    Policy {
        package: String,
        rule: String,
        detail: String,
    },
    #[error(transparent)]
    PolicyFile(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("{package}: cannot review the downloaded package: {source}")]
    Review {
        package: String,
        #[source]
        source: Box<feeds::package::PackageFileError>,
    },
    /// The user answered no to the review; nothing was changed.
    #[error("not installed: the review was declined; nothing was changed")]
    Declined,
    /// Packages held by `prokit flag hold` would change.
    #[error(
        "{} held (prokit flag hold): not changed; name {} with --force-hold, or release {} with prokit flag ok; nothing was changed",
        held_list(.0), if .0.len() == 1 { "it" } else { "them" }, if .0.len() == 1 { "it" } else { "them" }
    )]
    Held(Vec<String>),
    /// The second signing layer refused a package (docs/trust-model.md §9).
    #[error("refused {package} (from {url}): {reason}")]
    Developer {
        package: String,
        url: String,
        reason: String,
    },
}

/// A feed's verified stanzas and the key that signed its index ([`Client::indexes`]).
type SignedIndex<'a> = (
    &'a Source,
    Vec<Paragraph>,
    Option<feeds::usign::Fingerprint>,
);

/// An installed package whose developer key no longer counts (`prokit verify --signatures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFinding {
    pub package: String,
    pub version: String,
    /// Revoked, dropped from the keyring or no longer a developer key: what exit status 1
    /// reports. Otherwise retired, expired or out of scope: reported only.
    pub revoked: bool,
    pub reason: String,
}

/// `option developer_signatures off|check|require` (docs/trust-model.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeveloperMode {
    /// Developer signatures are not looked at.
    Off,
    /// A package whose index stanza carries a developer signature installs only if it
    /// verifies (the default). Without `option keyring` there are no developer keys, and
    /// signatures cannot be judged: they are not checked.
    Check,
    /// Every package must carry a developer signature that verifies.
    Require,
}

/// The developer-signature policy and the trusted keyring whose developer keys count.
#[derive(Debug, Clone)]
struct DeveloperPolicy {
    mode: DeveloperMode,
    keyring: Option<keyring_pkg::Keyring>,
}

fn held_list(names: &[String]) -> String {
    match names {
        [one] => format!("package {one} is"),
        many => format!("packages {} are", many.join(", ")),
    }
}

/// Whether `names` may be removed together: each installed, and (unless `force_depends`)
/// nothing else installed depending on it.
fn check_removable(
    db: &Db,
    universe: &Universe,
    names: &[String],
    force_depends: bool,
) -> Result<(), ClientError> {
    for n in names {
        if !db.has(n) {
            return Err(ClientError::NotInstalled(n.clone()));
        }
        let dependents: Vec<String> = universe
            .reverse_dependents(n)
            .into_iter()
            .filter(|d| !names.contains(d))
            .collect();
        if !dependents.is_empty() && !force_depends {
            return Err(ClientError::Dependents {
                name: n.clone(),
                dependents,
            });
        }
    }
    Ok(())
}

/// The request list of package arguments (`NAME` or `NAME=VERSION`).
fn requests_of(packages: &[String]) -> Vec<Request<'_>> {
    packages.iter().map(|p| Request::of(p)).collect()
}

/// What an install or upgrade would do (`--noaction`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanReport {
    pub steps: Vec<PlannedStep>,
    /// Installed packages it would remove (replaced by a package of `steps`).
    pub removes: Vec<String>,
    /// Requested packages already at the version chosen.
    pub already_installed: Vec<String>,
}

/// One package of a [`PlanReport`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedStep {
    pub name: String,
    pub version: String,
    /// The installed version it replaces (an upgrade), if any.
    pub from: Option<String>,
    pub feed: String,
    /// The download size (`Size` from the verified index).
    pub size: u64,
    /// Pulled in as a dependency.
    pub auto: bool,
}

/// An installed package a verified feed offers a newer version of (`list-upgradable`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Upgradable {
    pub name: String,
    pub installed: String,
    pub available: String,
    pub feed: String,
    /// Held (`prokit flag hold`): `upgrade` leaves it alone.
    pub held: bool,
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The outcome of updating one feed.
pub struct FeedOutcome {
    pub name: String,
    pub result: Result<UpdateReport, FeedError>,
    /// The URL whose index was accepted: the feed's own, or one of its mirrors.
    pub served_by: Option<String>,
    /// URLs tried before it (or all of them, on failure), each with why it was passed over.
    pub skipped: Vec<(String, String)>,
}

impl FeedError {
    /// An error of this machine (the root's state, a key file, the store), not of the URL
    /// tried: another mirror would not help.
    fn is_local(&self) -> bool {
        matches!(
            self,
            FeedError::State { .. }
                | FeedError::Io { .. }
                | FeedError::KeyFile { .. }
                | FeedError::ListReplaced { .. }
                | FeedError::BadName { .. }
        )
    }
}

/// One line of `prokit list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The feed it comes from, or None for an installed package.
    pub feed: Option<String>,
    pub installed: bool,
    pub summary: String,
}

/// A root and its configuration.
pub struct Client {
    opts: Options,
    config: Config,
    fetcher: Fetcher,
    store: FeedStore,
    /// The root, opened once: the configuration, the feed store and the download cache are
    /// all reached through it (docs/threats.md §18).
    root: std::sync::Arc<Root>,
    trust: Trust,
    /// Narrower trust for the feeds named in `option signed_by` (docs/threats.md §23).
    feed_trust: std::collections::BTreeMap<String, Trust>,
    developer: DeveloperPolicy,
    /// `etc/prokit/policy.conf` (docs/trust-model.md §10).
    policy: Policy,
    /// The audit trail (`option audit_log`, src/audit.rs).
    audit: Audit,
    /// What opening the root found worth saying (the binary prints them).
    warnings: Vec<String>,
}

/// Where prokit keeps all its own state inside a root (feeds, keyrings).
pub const STATE_ROOT: &str = "var/lib/prokit";
/// Where prokit keeps its own per-feed state inside a root.
pub const STATE_DIR: &str = "var/lib/prokit/feeds";
/// Where a root's trusted feed keys live (read by opkg-lede's usign too).
pub const KEYS_DIR: &str = "etc/opkg/keys";
/// The default download cache inside a root.
pub const CACHE_DIR: &str = "var/cache/prokit";
/// Where opkg-lede keeps its lock file (`opkg.lock`) inside a root.
pub const OPKG_LOCK_DIR: &str = "var/lock";

/// Whether `root` is this system's `/` (a device changing itself), where maintainer scripts
/// run as opkg runs them live.
pub fn is_live_root(root: &Path) -> bool {
    fs::canonicalize(root).is_ok_and(|p| p == Path::new("/"))
}

impl Client {
    /// Reads the root's configuration and trusted keys.
    pub fn open(opts: Options) -> Result<Client, ClientError> {
        if !opts.root.is_dir() {
            return Err(ClientError::Invalid(format!(
                "{}: no such root directory (prokit bootstrap makes one)",
                opts.root.display()
            )));
        }
        if opts.scripts == ScriptMode::Run && !is_live_root(&opts.root) {
            return Err(ClientError::Invalid(format!(
                "{}: --scripts run runs maintainer scripts on this live system, whose absolute paths would miss the root: it needs --root /; for another root use --scripts offline (IPKG_INSTROOT=<root>, as OpenWrt's image build)",
                opts.root.display()
            )));
        }
        let root = std::sync::Arc::new(Root::open(&opts.root)?);
        let mut config = Config::default();
        match opts.conf.as_deref() {
            Some(conf) => config = Config::load(&opts.root, Some(conf))?,
            None => Config::load_in(&root, &mut config)?,
        }
        let ca_file = match opts.ca_file.clone() {
            Some(f) => Some(f),
            None => config
                .option("ca_file")
                .map(|p| ca_file_in_root(&root, p))
                .transpose()?,
        };
        // A server must keep up a minimum rate after a grace period (docs/threats.md §24):
        // `option fetch_min_rate 10K`, `option fetch_grace 30`.
        let min_rate = MinRate::from_options(
            config.option("fetch_min_rate"),
            config.option("fetch_grace"),
        )?;
        // Credentials (docs/trust-model.md §13): etc/prokit/auth.conf{,.d/*.conf}, then the
        // userinfo of feed URLs in opkg.conf (said once, on stderr: that file is readable by
        // every user of the machine).
        let mut credentials = crate::auth::Credentials::load(&root)?;
        let mut warnings = Vec::new();
        for s in &config.sources {
            if let Some(raw) = &s.userinfo {
                let (login, password) = crate::auth::decode_userinfo(raw);
                warnings.push(format!(
                    "feed {}: credentials in its URL in opkg.conf, which every user can read; keep them in /{} (prokit auth set {} …) instead",
                    s.name,
                    crate::auth::AUTH_CONF_D,
                    s.name
                ));
                if let Some(machine) = crate::auth::Machine::for_url(&s.url) {
                    credentials.push(crate::auth::Entry {
                        origin: format!("opkg.conf feed {}", s.name),
                        machine,
                        credential: crate::auth::Credential::Basic {
                            login: login.clone(),
                            password: password.clone(),
                        },
                    });
                }
            }
        }
        let fetch_options = FetchOptions {
            ca_file,
            credentials,
            ..FetchOptions::default()
        }
        .with_config(
            config.option("fetch_timeout"),
            config.option("fetch_retries"),
        )?;
        let fetcher = Fetcher::new(&fetch_options)?.with_min_rate(min_rate);
        let store = FeedStore::new(root.clone(), &config.lists_rel(), STATE_DIR)?;
        let keys = root.open_dir(KEYS_DIR, false).is_ok();
        let mut trust = if let Some(name) = config.option("keyring") {
            // A keyring decides: exactly its active feed keys, whatever else sits in keys/.
            keyring::trust(&opts.root, name, opts.now)?
        } else if keys {
            Trust::from_key_dir(&root, KEYS_DIR)?
        } else {
            Trust::default()
        };
        trust.require_signature = config.flag("check_signature").unwrap_or(true);
        trust.require_release = config.flag("require_release").unwrap_or(false);
        let mut feed_trust = std::collections::BTreeMap::new();
        for (feed, fps) in &config.signed_by {
            let wanted: Vec<feeds::usign::Fingerprint> =
                fps.iter().filter_map(|f| f.parse().ok()).collect();
            let narrowed = Trust {
                keys: trust
                    .keys
                    .iter()
                    .filter(|k| wanted.contains(&k.fingerprint()))
                    .cloned()
                    .collect(),
                scope: Some(format!("option signed_by {feed} {}", fps.join(" "))),
                ..trust.clone()
            };
            feed_trust.insert(feed.clone(), narrowed);
        }
        let developer = DeveloperPolicy {
            mode: match config.option("developer_signatures") {
                None | Some("check") => DeveloperMode::Check,
                Some("off") => DeveloperMode::Off,
                Some("require") => DeveloperMode::Require,
                Some(other) => {
                    return Err(ClientError::Invalid(format!(
                        "option developer_signatures {other:?}: expected off, check or require"
                    )));
                }
            },
            keyring: match config.option("keyring") {
                Some(name) => keyring_pkg::apply::load_trusted(&opts.root, name)
                    .map_err(KeyringError::from)?
                    .map(|k| k.keyring().clone()),
                None => None,
            },
        };
        if developer.mode == DeveloperMode::Require && developer.keyring.is_none() {
            return Err(ClientError::Invalid(
                "option developer_signatures require needs a trusted keyring (option keyring NAME): developer keys come from it".into(),
            ));
        }
        let policy = Policy::load(&root)?;
        let audit = Audit::configured(root.clone(), config.option("audit_log"))?;
        audit.set_durable(opts.durable);
        Ok(Client {
            opts,
            config,
            fetcher,
            store,
            root,
            trust,
            feed_trust,
            developer,
            policy,
            audit,
            warnings,
        })
    }

    /// The plan of installing `packages`: resolved, with their Recommends (unless turned
    /// off), holds checked. The universe is dropped here: only the plan is needed from here
    /// on, and the universe is as big as the feeds.
    fn resolve_plan(
        &self,
        db: &Db,
        mut universe: Universe,
        packages: &RequestList,
        progress: &dyn Progress,
    ) -> Result<crate::resolve::Plan, ClientError> {
        universe.finish_reading();
        let mut plan = universe.resolve(packages)?;
        if self.opts.install_recommends {
            plan = self.with_recommends(db, &universe, packages, plan, progress)?;
        }
        if self.opts.force_reinstall {
            // Named packages already installed at the chosen version are installed again,
            // from a feed offering that very version (opkg's --force-reinstall).
            for name in std::mem::take(&mut plan.already_installed) {
                if !packages.iter().any(|r| Request::of(r).name() == name) {
                    plan.already_installed.push(name);
                    continue;
                }
                let Some(step) = universe.reinstall_step(&name) else {
                    let installed = db.get(&name)?;
                    let v = installed
                        .as_ref()
                        .and_then(|p| p.get("Version"))
                        .unwrap_or("");
                    return Err(ClientError::Invalid(format!(
                        "cannot reinstall {name}: no verified feed offers its installed version {v} for its architecture"
                    )));
                };
                plan.steps.push(step);
            }
        }
        drop(universe);
        self.check_holds(db, &plan)?;
        Ok(plan)
    }

    /// `plan` with what its newly installed packages `Recommends` (the first alternative of
    /// each group): each added only when the whole still resolves, as a dependency
    /// (`Auto-Installed`). A recommended package already installed, already planned, or that
    /// the status file says was removed (`Status: deinstall …`, as opkg leaves it) is not
    /// added; one that cannot be installed with the rest is left out with a note.
    fn with_recommends(
        &self,
        db: &Db,
        universe: &Universe,
        packages: &RequestList,
        mut plan: crate::resolve::Plan,
        progress: &dyn Progress,
    ) -> Result<crate::resolve::Plan, ClientError> {
        const MAX_RECOMMENDS: usize = 64;
        let mut wanted: Vec<String> = Vec::new();
        for step in plan.steps.iter().filter(|s| s.upgrade_from().is_none()) {
            let stanza = step.stanza.read()?;
            let field = stanza.get("Recommends").unwrap_or("");
            let Ok(groups) = feeds::relation::parse_relations(field) else {
                continue;
            };
            for g in groups {
                let Some(first) = g.relations().first() else {
                    continue;
                };
                let name = first.name().to_string();
                let status = db.get(&name)?;
                let removed_by_user = status.as_ref().is_some_and(|p| {
                    p.get("Status")
                        .and_then(|s| s.split_whitespace().next())
                        .is_some_and(|want| want == "deinstall" || want == "purge")
                });
                let present = status
                    .as_ref()
                    .is_some_and(|p| crate::status::is_installed(p))
                    || plan.steps.iter().any(|s| s.name() == name);
                if !present && !removed_by_user && !wanted.contains(&name) {
                    wanted.push(name);
                }
            }
        }
        wanted.truncate(MAX_RECOMMENDS);
        if wanted.is_empty() {
            return Ok(plan);
        }
        let mut requested = packages.clone();
        let mut taken = Vec::new();
        for name in wanted {
            let mut trial = requested.clone();
            trial.push(&name);
            match universe.resolve(&trial) {
                Ok(p) => {
                    plan = p;
                    requested = trial;
                    taken.push(name);
                }
                Err(_) => progress.message(&format!(
                    "note: recommended package {name} left out: it cannot be installed with the rest"
                )),
            }
        }
        for step in &mut plan.steps {
            if taken.iter().any(|t| t == step.name()) {
                step.auto = true;
            }
        }
        Ok(plan)
    }

    /// Held packages change only when named with --force-hold (opkg-lede:
    /// libopkg/opkg_upgrade.c line 32 skips them on upgrade).
    fn check_holds(&self, db: &Db, plan: &crate::resolve::Plan) -> Result<(), ClientError> {
        if self.opts.force_hold {
            return Ok(());
        }
        let mut held: Vec<String> = Vec::new();
        for n in plan
            .steps
            .iter()
            .filter(|s| s.upgrade_from().is_some())
            .map(|s| s.name())
            .chain(plan.removes.iter().map(String::as_str))
        {
            if db.get(n)?.is_some_and(|p| crate::status::is_held(&p)) {
                held.push(n.to_string());
            }
        }
        held.sort();
        held.dedup();
        if held.is_empty() {
            Ok(())
        } else {
            Err(ClientError::Held(held))
        }
    }

    /// What `install` (or, with `upgrade`, `upgrade`) of `packages` would do, resolved
    /// against the verified indexes and the installed database, downloading nothing and
    /// changing nothing (`--noaction`).
    pub fn plan(
        &self,
        packages: &RequestList,
        upgrade: bool,
        progress: &dyn Progress,
    ) -> Result<PlanReport, ClientError> {
        let db = self.open_db(progress)?;
        let (universe, _) = self.universe_signed(&db, true, progress)?;
        let plan = self.resolve_plan(&db, universe, packages, progress)?;
        let mut steps = Vec::with_capacity(plan.steps.len());
        for s in &plan.steps {
            steps.push(PlannedStep {
                name: s.name().to_string(),
                version: s.version().to_string(),
                from: s.upgrade_from().map(str::to_string),
                feed: s.feed.to_string(),
                size: s
                    .stanza
                    .read()?
                    .get("Size")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0),
                auto: s.auto || (upgrade && s.upgrade_from().is_some()),
            });
        }
        Ok(PlanReport {
            steps,
            removes: plan.removes,
            already_installed: plan.already_installed,
        })
    }

    /// The packages `upgrade NAMES` would change, and the held ones it leaves alone.
    pub fn upgrade_targets(
        &self,
        names: &[String],
        progress: &dyn Progress,
    ) -> Result<(Vec<String>, Vec<Upgradable>), ClientError> {
        let upgradable = self.upgradable(progress)?;
        let (mut targets, mut skipped) = (Vec::new(), Vec::new());
        if names.is_empty() {
            for u in upgradable {
                if u.held && !self.opts.force_hold {
                    skipped.push(u);
                } else {
                    targets.push(u.name);
                }
            }
        } else {
            let db = self.installed_db()?;
            for n in names {
                let Some(p) = db.installed(n)? else {
                    return Err(ClientError::Invalid(format!(
                        "package {n} is not installed (prokit install installs it)"
                    )));
                };
                if crate::status::is_held(&p) && !self.opts.force_hold {
                    return Err(ClientError::Held(vec![n.clone()]));
                }
                if upgradable.iter().any(|u| &u.name == n) {
                    targets.push(n.clone());
                }
            }
        }
        Ok((targets, skipped))
    }

    /// The auto-installed packages nothing installed on request needs any more
    /// (`autoremove`; see [`crate::query::orphans`]).
    pub fn orphans(&self) -> Result<Vec<String>, ClientError> {
        Ok(crate::query::orphans(&self.installed_db()?)?)
    }

    /// What `remove NAMES` would remove (name, version, files), after the same checks,
    /// changing nothing (`remove --noaction`).
    pub fn remove_plan(
        &self,
        names: &[String],
        force_depends: bool,
        progress: &dyn Progress,
    ) -> Result<Vec<(String, String, usize)>, ClientError> {
        let db = self.open_db(progress)?;
        let universe = self.universe(&db, false, progress)?;
        check_removable(&db, &universe, names, force_depends)?;
        let mut out = Vec::new();
        for n in names {
            let Some(p) = db.get(n)? else {
                return Err(ClientError::NotInstalled(n.clone()));
            };
            let files = db.files(n).map(|f| f.len()).unwrap_or(0);
            out.push((
                n.clone(),
                p.get("Version").unwrap_or("").trim().to_string(),
                files,
            ));
        }
        Ok(out)
    }

    /// How an offered stanza ranks: its version and its architecture's `arch` priority
    /// (0 with no `arch` lines); `None` for an architecture not accepted or a version that
    /// does not parse.
    fn offer_rank(&self, p: &Paragraph) -> Option<(feeds::version::Version, u32)> {
        let arch = p.get("Architecture").unwrap_or("").trim();
        let prio = if self.config.arch.is_empty() {
            0
        } else {
            self.config.arch.iter().find(|(x, _)| x == arch)?.1
        };
        let v = feeds::version::Version::parse(p.get("Version").unwrap_or("").trim()).ok()?;
        Some((v, prio))
    }

    /// The stanza of `name` the verified feeds offer that an install would choose: the
    /// newest version among the stanzas of an accepted architecture, the higher `arch`
    /// priority on equal versions. `None` when no feed offers it.
    pub fn best_offer(
        &self,
        name: &str,
        progress: &dyn Progress,
    ) -> Result<Option<Paragraph>, ClientError> {
        let mut best: Option<((feeds::version::Version, u32), Paragraph)> = None;
        for (_, p) in self.available(progress)? {
            if p.get("Package").map(str::trim) != Some(name) {
                continue;
            }
            let Some(rank) = self.offer_rank(&p) else {
                continue;
            };
            if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                best = Some((rank, p));
            }
        }
        Ok(best.map(|(_, p)| p))
    }

    /// The installed packages a verified feed offers a newer version of: the newest
    /// version among the stanzas of an accepted architecture (the higher `arch` priority on
    /// equal versions), held ones marked.
    pub fn upgradable(&self, progress: &dyn Progress) -> Result<Vec<Upgradable>, ClientError> {
        let db = self.installed_db()?;
        let field = |p: &Paragraph, f: &str| p.get(f).unwrap_or("").trim().to_string();
        let mut best: std::collections::BTreeMap<
            String,
            (feeds::version::Version, u32, String, String),
        > = std::collections::BTreeMap::new();
        for (feed, p) in self.available(progress)? {
            let name = field(&p, "Package");
            let Some((v, prio)) = self.offer_rank(&p) else {
                continue;
            };
            let better = best
                .get(&name)
                .is_none_or(|(bv, bp, _, _)| (&v, prio) > (bv, *bp));
            if better {
                let text = field(&p, "Version");
                best.insert(name, (v, prio, text, feed));
            }
        }
        let mut out = Vec::new();
        for p in db.packages() {
            let p = p?;
            if !crate::status::is_installed(&p) {
                continue;
            }
            let p = &*p;
            let name = field(p, "Package");
            let Ok(have) = feeds::version::Version::parse(&field(p, "Version")) else {
                continue;
            };
            if let Some((v, _, text, feed)) = best.get(&name)
                && *v > have
            {
                out.push(Upgradable {
                    installed: field(p, "Version"),
                    available: text.clone(),
                    feed: feed.clone(),
                    held: crate::status::is_held(p),
                    name,
                });
            }
        }
        Ok(out)
    }

    /// `prokit upgrade [PKG…]`: every upgradable installed package (or the named ones) to
    /// the newest version the verified feeds offer, as one transaction resolved, downloaded
    /// and verified before anything changes (as install). Held packages are left alone
    /// (returned as skipped) unless named with `--force-hold`. Auto-Installed flags are kept.
    pub fn upgrade_gated(
        &self,
        names: &[String],
        progress: &dyn Progress,
        gate: &mut dyn Gate,
    ) -> Result<(usize, Vec<Upgradable>), ClientError> {
        let (targets, skipped) = self.upgrade_targets(names, progress)?;
        if targets.is_empty() {
            return Ok((0, skipped));
        }
        let review_only = gate.review_only();
        let result =
            self.install_inner(Cow::Owned(RequestList::new(targets)), progress, gate, true);
        if let Err(e) = &result {
            self.audit_refusal(e, review_only)?;
        }
        self.audit.sync()?;
        Ok((result?, skipped))
    }

    /// `prokit download PKG…`: each package's file (the newest the verified feeds offer, or
    /// `NAME=VERSION`), downloaded into `dir` under its own file name and checked against the
    /// verified index (size, SHA-256, and its developer signature under the policy in force);
    /// no dependency, nothing installed.
    pub fn download_to(
        &self,
        names: &[String],
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<Vec<PathBuf>, ClientError> {
        let (indexes, feed_keys) = {
            let signed = self.indexes_signed(progress)?;
            let keys: std::collections::BTreeMap<String, Option<String>> = signed
                .iter()
                .map(|(s, _, k)| (s.name.clone(), k.map(|f| f.to_string())))
                .collect();
            let idx: Vec<(Source, Vec<Paragraph>)> =
                signed.into_iter().map(|(s, p, _)| (s.clone(), p)).collect();
            (idx, keys)
        };
        let field = |p: &Paragraph, f: &str| p.get(f).unwrap_or("").trim().to_string();
        let mut items = Vec::new();
        let mut expected = Vec::new();
        for request in requests_of(names) {
            let mut best: Option<(feeds::version::Version, &Source, &Paragraph)> = None;
            for (source, stanzas) in &indexes {
                for p in stanzas {
                    if field(p, "Package") != request.name() {
                        continue;
                    }
                    let Some((v, _)) = self.offer_rank(p) else {
                        continue;
                    };
                    if request
                        .version()
                        .is_some_and(|want| want != field(p, "Version"))
                    {
                        continue;
                    }
                    if best.as_ref().is_none_or(|(bv, _, _)| v > *bv) {
                        best = Some((v, source, p));
                    }
                }
            }
            let Some((_, source, stanza)) = best else {
                return Err(ClientError::Invalid(format!(
                    "package {} is in no verified feed{}",
                    request.name(),
                    request
                        .version()
                        .map(|v| format!(" at version {v}"))
                        .unwrap_or_default()
                )));
            };
            let mut item = download_item(
                stanza,
                source,
                self.mirrors_of(&source.name),
                dir,
                &source.name,
            )?;
            let base = field(stanza, "Filename");
            let base = base.rsplit('/').next().unwrap_or(&base).to_string();
            if base.is_empty() || base.starts_with('.') {
                return Err(ClientError::BadStanza {
                    feed: source.name.clone(),
                    package: request.name().to_string(),
                    reason: "no usable file name".into(),
                });
            }
            item.dest = dir.join(&base);
            expected.push(install::Expected {
                origin: format!("feed {:?}", source.name),
                name: field(stanza, "Package"),
                version: field(stanza, "Version"),
                arch: field(stanza, "Architecture"),
                index_signature: stanza
                    .get("Signature")
                    .map(|sig| (field(stanza, "Signed-By"), sig.trim().to_string())),
                signed_by: None,
                feed_key: feed_keys.get(&source.name).cloned().flatten(),
                sha256: Some(item.sha256.clone()),
            });
            items.push(item);
        }
        download::download_all(
            &self.fetcher,
            &items,
            self.opts.jobs.max(1),
            &|_, item, cached| {
                progress.downloaded(&item.url, cached);
            },
        )?;
        for (item, exp) in items.iter().zip(&expected) {
            if let Err(reason) = self.verify_developer(&item.dest, exp) {
                let _ = fs::remove_file(&item.dest);
                return Err(ClientError::Developer {
                    package: format!("{} {}", exp.name, exp.version),
                    url: item.url.clone(),
                    reason,
                });
            }
        }
        Ok(items.into_iter().map(|i| i.dest).collect())
    }

    /// `prokit flag hold|user|ok|noprune PKG…`: sets each installed package's flags as
    /// opkg-lede's `opkg flag` does; every name is checked before any is changed.
    pub fn flag(&self, flag: &str, names: &[String]) -> Result<(), ClientError> {
        if !["hold", "user", "ok", "noprune"].contains(&flag) {
            return Err(ClientError::Invalid(format!(
                "flag {flag:?}: expected hold, user, ok or noprune"
            )));
        }
        let mut db = self.open_db(&Quiet)?;
        for n in names {
            if db.installed(n)?.is_none() {
                return Err(ClientError::Invalid(format!(
                    "package {n} is not installed"
                )));
            }
        }
        for n in names {
            db.set_flag(n, flag)?;
        }
        Ok(())
    }

    /// `prokit configure [PKG…]`: runs `postinst configure` of each named package (or of
    /// every package) that a live install left `unpacked`, dependencies first, as `opkg
    /// configure` does; stops at the first failure. Returns the packages configured.
    pub fn configure(&self, names: &[String]) -> Result<Vec<String>, ClientError> {
        if !self.opts.scripts.runs() {
            return Err(ClientError::Invalid(
                "configure runs maintainer scripts: pass --scripts run (the live system, --root /) or --scripts offline".into(),
            ));
        }
        let mut db = self.open_db(&Quiet)?;
        for n in names {
            if db.installed(n)?.is_none() {
                return Err(ClientError::Invalid(format!(
                    "package {n} is not installed"
                )));
            }
        }
        // The packages unpacked but not configured, with what they depend on.
        let mut pending: Vec<(String, BTreeSet<String>)> = Vec::new();
        for p in db.packages() {
            let p = p?;
            let name = p.get("Package").unwrap_or("").trim();
            if (names.is_empty() || names.iter().any(|n| n == name))
                && crate::status::is_installed(&p)
                && p.get("Status").and_then(|s| s.split_whitespace().nth(2)) != Some("installed")
            {
                pending.push((name.to_string(), crate::query::dependency_names(&p)));
            }
        }
        // Dependencies first: a package waits while one it depends on is still pending.
        let mut order: Vec<String> = Vec::new();
        let mut left = pending;
        while !left.is_empty() {
            let next = left
                .iter()
                .position(|(a, deps)| !left.iter().any(|(b, _)| b != a && deps.contains(b)))
                .unwrap_or(0);
            order.push(left.remove(next).0);
        }
        let opts = self.install_options();
        let mut done = Vec::new();
        for n in &order {
            if install::configure(&mut db, n, &opts).map_err(|source| ClientError::InstallOf {
                package: n.clone(),
                url: String::new(),
                source: Box::new(source),
            })? {
                self.audit
                    .record("package-configured", serde_json::json!({ "name": n }))?;
                done.push(n.clone());
            }
        }
        Ok(done)
    }

    /// The installed database, read-only (for the queries of src/query.rs).
    pub fn installed_db(&self) -> Result<Db, ClientError> {
        Ok(Db::open(&self.opts.root, &self.config.db_dir())?)
    }

    /// Every stanza of the verified feed indexes, with its feed's name.
    pub fn available(
        &self,
        progress: &dyn Progress,
    ) -> Result<Vec<(String, Paragraph)>, ClientError> {
        // Stanzas of an architecture the `arch` lines do not accept are left out, as
        // opkg-lede leaves them out of everything it lists and installs
        // (libopkg/pkg_hash.c line 130: "has no valid architecture, ignoring").
        let accepted = |p: &Paragraph| {
            let arch = p.get("Architecture").unwrap_or("").trim();
            self.config.arch.is_empty() || self.config.arch.iter().any(|(a, _)| a == arch)
        };
        Ok(self
            .indexes(progress)?
            .into_iter()
            .flat_map(|(s, stanzas)| {
                stanzas
                    .into_iter()
                    .filter(|p| accepted(p))
                    .map(move |p| (s.name.clone(), p))
            })
            .collect())
    }

    /// The configured `arch` lines (architecture, priority).
    pub fn architectures(&self) -> &[(String, u32)] {
        &self.config.arch
    }

    /// What opening the root found worth a warning (credentials in opkg.conf URLs).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The download cache: `--cache-dir` (a host path the user chose), else
    /// `var/cache/prokit` resolved inside the root (created; never through a symlink out).
    fn cache_dir(&self) -> Result<PathBuf, ClientError> {
        match &self.opts.cache_dir {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(io_at(dir))?;
                Ok(dir.clone())
            }
            None => Ok(self.root.resolve_dir(CACHE_DIR, true)?),
        }
    }

    /// The second layer (docs/trust-model.md §9): checks the developer signature the verified
    /// index gives the downloaded `file` (already checked against the index's SHA-256) with
    /// the trusted keyring's developer keys; returns the developer key when one verified.
    fn verify_developer(
        &self,
        file: &Path,
        exp: &install::Expected,
    ) -> Result<Option<feeds::usign::Fingerprint>, String> {
        let (by, line) = match (self.developer.mode, &exp.index_signature) {
            (DeveloperMode::Off, _) | (DeveloperMode::Check, None) => return Ok(None),
            // The keyring's own package: the root signatures inside it vouch for it.
            (DeveloperMode::Require, None)
                if self
                    .developer
                    .keyring
                    .as_ref()
                    .is_some_and(|k| exp.name == format!("{}-keyring", k.name())) =>
            {
                return Ok(None);
            }
            (DeveloperMode::Require, None) => {
                return Err(format!(
                    "package {}: the index of {} gives it no developer signature, and option developer_signatures require",
                    exp.name, exp.origin
                ));
            }
            (_, Some(s)) => s,
        };
        let Some(keyring) = &self.developer.keyring else {
            return Ok(None);
        };
        let text = format!("untrusted comment: signed by key {by}\n{line}\n");
        let sig = feeds::usign::Signature::parse(text.as_bytes()).map_err(|e| {
            format!(
                "package {}: its Signature field in the index of {} does not decode: {}",
                exp.name,
                exp.origin,
                e.root()
            )
        })?;
        if sig.fingerprint().to_string() != *by {
            return Err(format!(
                "package {}: the index of {} says Signed-By {by:?}, but its Signature is by key {}",
                exp.name,
                exp.origin,
                sig.fingerprint()
            ));
        }
        let key =
            keyring_pkg::developer::check_key(keyring, &exp.name, sig.fingerprint(), self.opts.now)
                .map_err(|e| e.to_string())?;
        // Over the file as it was downloaded and hash-checked, read in parts: a regular file
        // only, never through a symlink (the cache is inside the root: docs/threats.md §18).
        let mut v = key.public_key.verifier(&sig).map_err(|e| e.to_string())?;
        let mut f = safe_fs::open_bounded_existing(file, u64::MAX).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; cli_support::READ_BUFFER];
        loop {
            match std::io::Read::read(&mut f, &mut buf) {
                Ok(0) => break,
                Ok(n) => v.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{}: {e}", file.display())),
            }
        }
        v.finish().map_err(|_| {
            keyring_pkg::DeveloperError::BadSignature {
                package: exp.name.clone(),
                fingerprint: sig.fingerprint(),
            }
            .to_string()
        })?;
        Ok(Some(sig.fingerprint()))
    }

    /// The keys trusted for `feed`: those of its `option signed_by`, else every trusted key.
    fn trust_for(&self, feed: &str) -> &Trust {
        self.feed_trust.get(feed).unwrap_or(&self.trust)
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn conf_name(&self) -> String {
        self.opts
            .conf
            .clone()
            .unwrap_or_else(|| self.opts.root.join("etc/opkg.conf"))
            .display()
            .to_string()
    }

    /// Fetches and verifies every feed; a feed that fails keeps its last good index.
    pub fn update(&self) -> Result<Vec<FeedOutcome>, ClientError> {
        if self.config.sources.is_empty() {
            return Err(ClientError::NoFeeds(self.conf_name()));
        }
        let outcomes: Vec<FeedOutcome> = self
            .config
            .sources
            .iter()
            .map(|s| self.update_feed(s))
            .collect();
        for (o, s) in outcomes.iter().zip(&self.config.sources) {
            match &o.result {
                Ok(r) => self.audit.record(
                    "feed-verified",
                    serde_json::json!({
                        "feed": o.name,
                        "url": audit_log::url_without_credentials(&r.index_url),
                        "file": r.index_url.rsplit('/').next().unwrap_or(""),
                        "key": r.fingerprint,
                        "sha256": r.sha256,
                        "release_date": r.release_date.map(audit_log::format_rfc3339),
                        "packages": r.packages,
                        "unchanged": r.unchanged,
                    }),
                )?,
                Err(e) => self.audit.record(
                    "feed-refused",
                    serde_json::json!({
                        "feed": o.name,
                        "url": audit_log::url_without_credentials(&s.url),
                        "reason": redact(&e.to_string()),
                    }),
                )?,
            }
        }
        self.audit.sync()?;
        Ok(outcomes)
    }

    /// The `option mirror` URLs of a feed.
    fn mirrors_of(&self, feed: &str) -> &[String] {
        self.config.mirrors.get(feed).map_or(&[], Vec::as_slice)
    }

    /// The URLs of a feed: its own, then its `option mirror` lines in order.
    fn urls_of(&self, s: &Source) -> Vec<String> {
        std::iter::once(s.url.clone())
            .chain(
                self.config
                    .mirrors
                    .get(&s.name)
                    .into_iter()
                    .flatten()
                    .cloned(),
            )
            .collect()
    }

    /// Updates one feed from its URL, or, when that fails for a reason of the server (it is
    /// down, slow, failing, serves an older or badly signed index), from each mirror in turn
    /// (docs/trust-model.md §14): the signature, not the transport, is what is trusted, so
    /// any URL whose index verifies against the feed's trust and state is as good as another.
    fn update_feed(&self, s: &Source) -> FeedOutcome {
        let mut skipped = Vec::new();
        let mut last = None;
        for url in self.urls_of(s) {
            let source = FeedSource {
                name: s.name.clone(),
                url: url.clone(),
                gz: s.gz,
            };
            match self.store.update(
                &source,
                self.trust_for(&s.name),
                &self.fetcher,
                self.opts.now,
            ) {
                Ok(r) => {
                    return FeedOutcome {
                        name: s.name.clone(),
                        result: Ok(r),
                        served_by: Some(url),
                        skipped,
                    };
                }
                Err(e) if e.is_local() => {
                    last = Some(e);
                    break;
                }
                Err(e) => {
                    skipped.push((url, e.to_string()));
                    last = Some(e);
                }
            }
        }
        FeedOutcome {
            name: s.name.clone(),
            result: Err(last.expect("a feed has at least one URL")),
            served_by: None,
            skipped,
        }
    }

    fn open_db(&self, progress: &dyn Progress) -> Result<Db, ClientError> {
        let mut db = Db::open(&self.opts.root, &self.config.db_dir())?;
        db.set_fsync(self.opts.durable);
        // A fresh root being bootstrapped: nobody looks at it before it is done, so files in
        // the directories a transaction creates are made in place (docs/crash-safety.md §5).
        db.set_direct_new_dirs(self.opts.pipeline);
        // Packages never write the package manager's own state (docs/threats.md §19), the
        // audit trail included (§27).
        let audit = self.audit_rel();
        let mut reserved = vec![
            self.config.lists_rel(),
            STATE_ROOT.to_string(),
            CACHE_DIR.to_string(),
            OPKG_LOCK_DIR.to_string(),
        ];
        reserved.extend(audit);
        let reserved: Vec<&str> = reserved.iter().map(String::as_str).collect();
        db.reserve(&reserved);
        if let Some(done) = install::recover(&mut db)? {
            progress.message(&done);
        }
        Ok(db)
    }

    /// The verified stored indexes, feed by feed, in configuration order. A feed whose stored
    /// index cannot be loaded (never updated, unreadable, no longer verifying) is left out
    /// with a warning naming it, so one bad feed does not stop the others
    /// (docs/threats.md §22); when no feed loads at all, the first failure is the error.
    fn indexes(
        &self,
        progress: &dyn Progress,
    ) -> Result<Vec<(&Source, Vec<Paragraph>)>, ClientError> {
        Ok(self
            .indexes_signed(progress)?
            .into_iter()
            .map(|(s, stanzas, _)| (s, stanzas))
            .collect())
    }

    /// [`Client::indexes`], each with the key that signed it.
    fn indexes_signed(&self, progress: &dyn Progress) -> Result<Vec<SignedIndex<'_>>, ClientError> {
        Ok(self
            .each_feed(progress, |_, s| {
                self.store.load_signed(&s.name, self.trust_for(&s.name))
            })?
            .into_iter()
            .map(|(s, (index, signer))| (s, index.stanzas, signer))
            .collect())
    }

    /// `load` of every configured feed (its position in the configuration, and the feed),
    /// in order. A feed that does not load (never updated, refused) is left out with a
    /// warning naming it, so one bad feed does not stop the others (docs/threats.md §22);
    /// when no feed loads at all, the first failure is the error.
    fn each_feed<'s, T>(
        &'s self,
        progress: &dyn Progress,
        mut load: impl FnMut(usize, &'s Source) -> Result<Option<T>, FeedError>,
    ) -> Result<Vec<(&'s Source, T)>, ClientError> {
        if self.config.sources.is_empty() {
            return Err(ClientError::NoFeeds(self.conf_name()));
        }
        let mut out = Vec::new();
        let mut first_error = None;
        for (i, s) in self.config.sources.iter().enumerate() {
            let loaded = load(i, s)
                .map_err(ClientError::from)
                .and_then(|r| r.ok_or_else(|| ClientError::NotUpdated(s.name.clone())));
            match loaded {
                Ok(t) => out.push((s, t)),
                Err(e) => {
                    progress.message(&format!("warning: feed {:?} left out: {e}", s.name));
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    fn universe(
        &self,
        db: &Db,
        with_feeds: bool,
        progress: &dyn Progress,
    ) -> Result<Universe, ClientError> {
        Ok(self.universe_signed(db, with_feeds, progress)?.0)
    }

    /// [`Client::universe`], with the key that signed each feed's index (by feed name), taken
    /// from the same verified load.
    fn universe_signed(
        &self,
        db: &Db,
        with_feeds: bool,
        progress: &dyn Progress,
    ) -> Result<(Universe, BTreeMap<String, Option<String>>), ClientError> {
        let mut signers = BTreeMap::new();
        let mut u = Universe::new(&self.config.arch);
        u.reserve(db.package_count());
        for p in db.packages() {
            u.add_installed(p?.into_owned())?;
        }
        if with_feeds {
            // Each stanza goes into the universe as it is read (once the whole index has been
            // verified): the index is never whole in memory beside the universe. A stanza the
            // resolver cannot read is left out with a warning naming the feed, the stanza's
            // line and the reason; the rest of the feed, and the other feeds, stay usable
            // (docs/threats.md §22).
            let loaded = self.each_feed(progress, |i, s| {
                let mut line = 1;
                let mut add = |st: Paragraph, stanzas: usize| {
                    if line == 1 {
                        u.reserve(stanzas);
                    }
                    let lines: usize = st
                        .fields()
                        .map(|f| 1 + f.raw().bytes().filter(|&b| b == b'\n').count())
                        .sum();
                    let name = st.get("Package").map(|n| n.trim().to_string());
                    if let Err(e) = u.add_available(st, &s.name, i) {
                        progress.message(&format!(
                            "warning: feed {:?}: stanza at line {line} ({}) left out: {e}",
                            s.name,
                            name.as_deref().unwrap_or("no Package field")
                        ));
                    }
                    line += lines + 1;
                };
                self.store
                    .for_each_stanza(&s.name, self.trust_for(&s.name), &mut add)
            })?;
            for (s, (_, signer)) in loaded {
                signers.insert(s.name.clone(), signer.map(|f| f.to_string()));
            }
        }
        for a in &self.opts.assume_installed {
            u.assume_installed(a);
        }
        Ok((u, signers))
    }

    fn install_options(&self) -> InstallOptions {
        InstallOptions {
            scripts: self.opts.scripts,
            allow_special: self.opts.allow_special,
            installed_time: self.opts.installed_time,
            trust_package: self
                .config
                .option("keyring")
                .map(keyring_pkg::package::package_name),
            allow_trust_changes: self.opts.allow_trust_changes,
            released: Default::default(),
            force_overwrite: self.opts.force_overwrite,
        }
    }

    /// Resolves, downloads, verifies and installs `packages` (`name` or `name=version`);
    /// how many packages were installed or upgraded. Each one's report goes to
    /// [`Progress::installed`] as it is committed, and is not kept (a bootstrap of tens of
    /// thousands of packages would hold them all).
    pub fn install(
        &self,
        packages: &RequestList,
        progress: &dyn Progress,
    ) -> Result<usize, ClientError> {
        self.install_gated(packages, progress, &mut NoGate)
    }

    /// [`Client::install`], with every package reviewed and judged by the policy (when it
    /// has rules or `gate` wants reviews) after all are downloaded and verified, and `gate`
    /// asked before anything changes.
    pub fn install_gated(
        &self,
        packages: &RequestList,
        progress: &dyn Progress,
        gate: &mut dyn Gate,
    ) -> Result<usize, ClientError> {
        self.install_audited(Cow::Borrowed(packages), progress, gate)
    }

    /// [`Client::install_gated`], with `packages` dropped once resolved when owned.
    fn install_audited(
        &self,
        packages: Cow<'_, RequestList>,
        progress: &dyn Progress,
        gate: &mut dyn Gate,
    ) -> Result<usize, ClientError> {
        let review_only = gate.review_only();
        let result = self.install_inner(packages, progress, gate, false);
        if let Err(e) = &result {
            self.audit_refusal(e, review_only)?;
        }
        self.audit.sync()?;
        result
    }

    /// Records a keyring decision made outside a client (`prokit keyring init`): the
    /// keyring first trusted, or why it was refused.
    pub fn audit_keyring_init(
        &self,
        outcome: Result<&keyring_pkg::apply::ApplyReport, String>,
        root_fingerprint: &str,
    ) -> Result<(), ClientError> {
        match outcome {
            Ok(r) => self.audit.record(
                "keyring-updated",
                serde_json::json!({
                    "name": r.name,
                    "serial_from": r.previous,
                    "serial_to": r.serial,
                    "changed": r.state_replaced,
                    "root_keys": [root_fingerprint],
                    "first_trust": true,
                }),
            )?,
            Err(reason) => self.audit.record(
                "keyring-refused",
                serde_json::json!({
                    "root_fingerprint": root_fingerprint,
                    "reason": redact(&reason),
                    "first_trust": true,
                }),
            )?,
        }
        self.audit.sync()?;
        Ok(())
    }

    /// The root's audit log opened for reading through the root (never through a symlink
    /// out of it), with the path to name it by; `None` when `option audit_log off` or the
    /// log does not exist yet.
    pub fn open_audit_log(&self) -> Result<Option<(fs::File, PathBuf)>, ClientError> {
        let Some(rel) = self.audit_rel() else {
            return Ok(None);
        };
        let path = self.opts.root.join(&rel);
        Ok(self.root.open_file(&rel)?.map(|f| (f, path)))
    }

    /// The configured log's path relative to the root (`None`: off).
    fn audit_rel(&self) -> Option<String> {
        match self.config.option("audit_log").map(str::trim) {
            Some("off") => None,
            Some(p) => crate::audit::option_path(p).ok(),
            None => Some(crate::audit::DEFAULT_AUDIT_LOG.to_string()),
        }
    }

    fn audit_removed(&self, r: &RemoveReport, why: &str) -> Result<(), ClientError> {
        self.audit.record(
            "package-removed",
            serde_json::json!({
                "name": r.name,
                "package_version": r.version,
                "files": r.files,
                "conffiles_kept": r.kept_conffiles,
                "reason": why,
                "scripts": if self.opts.scripts.runs() { "run" } else { "skipped" },
            }),
        )?;
        Ok(())
    }

    /// Records why an install stopped, when a package was refused (not when the user said
    /// no, or the request could not be resolved).
    fn audit_refusal(&self, e: &ClientError, review_only: bool) -> Result<(), ClientError> {
        let (package, url) = match e {
            ClientError::Developer { package, url, .. }
            | ClientError::InstallOf { package, url, .. } => (package.as_str(), Some(url)),
            ClientError::Policy { package, .. } | ClientError::Review { package, .. } => {
                (package.as_str(), None)
            }
            _ => return Ok(()),
        };
        let (name, version) = split_package(package);
        self.audit.record(
            "package-refused",
            serde_json::json!({
                "name": name,
                "package_version": version,
                "url": url.map(|u| audit_log::url_without_credentials(u)),
                "reason": redact(&e.to_string()),
                "mode": if review_only { "review" } else { "install" },
            }),
        )?;
        Ok(())
    }

    /// `packages` is dropped once resolved: owned, a bootstrap's thousands of names are
    /// freed before the install.
    fn install_inner(
        &self,
        packages: Cow<'_, RequestList>,
        progress: &dyn Progress,
        gate: &mut dyn Gate,
        upgrade: bool,
    ) -> Result<usize, ClientError> {
        let mut db = self.open_db(progress)?;
        // One journal file for all the packages (unpack/journal.rs, `end_journal`).
        db.set_reuse_journal(true);
        // The feed key that signed each feed's index, recorded with what it vouched for.
        let (universe, feed_keys) = self.universe_signed(&db, true, progress)?;
        let mut plan = self.resolve_plan(&db, universe, &packages, progress)?;
        drop(packages);
        // An upgrade changes versions, not who asked for a package: what was pulled in as
        // a dependency stays Auto-Installed.
        if upgrade {
            for step in &mut plan.steps {
                if step.upgrade_from().is_some() {
                    step.auto = true;
                }
            }
        }
        let cache = self.cache_dir()?;
        // The plan as the install reads it: one compact record per package (planned.rs).
        let feeds = self
            .config
            .sources
            .iter()
            .map(|s| crate::planned::PlannedFeed {
                name: s.name.clone(),
                bases: std::iter::once(&s.url)
                    .chain(self.mirrors_of(&s.name))
                    .cloned()
                    .collect(),
            })
            .collect();
        let mut planned = Planned::new(feeds, cache, plan.steps.len());
        let removes = std::mem::take(&mut plan.removes);
        for step in std::mem::take(&mut plan.steps) {
            let package = || format!("{} {}", step.name(), step.version());
            let bad = |reason: String| ClientError::BadStanza {
                feed: step.feed.to_string(),
                package: package(),
                reason,
            };
            let feed = self
                .config
                .sources
                .iter()
                .position(|s| *s.name == *step.feed)
                .ok_or_else(|| bad("feed not configured".into()))?;
            let stanza = step.stanza.read()?;
            let (filename, size, sha256) = package_fields(&stanza, &step.feed, &package)?;
            // The developer signature the index stanza carries, kept in the plan's record.
            let index_signature = stanza
                .get("Signature")
                .map(|sig| (stanza.get("Signed-By").unwrap_or("").trim(), sig.trim()));
            planned
                .push(crate::planned::NewPackage {
                    name: step.name(),
                    version: step.version(),
                    arch: &step.arch,
                    filename,
                    size,
                    sha256: &sha256,
                    feed,
                    auto: step.auto,
                    upgrade_from: step.upgrade_from(),
                    index_signature,
                })
                .map_err(|e| match e {
                    crate::planned::PlannedError::Download(d) => ClientError::from(d),
                    other => bad(other.to_string()),
                })?;
        }
        planned.shrink_to_fit();
        drop(plan);
        // The resolution's memory (the universe and the search: ~4.6 MB at 10,000 packages)
        // and the plan's steps (~1 MB: 72 bytes and a text each) are free now, but their
        // pages stay with the main thread's heap, where the download and reader threads
        // cannot reuse them: without this the install's first moments, with the first
        // downloads and reads on top, were the run's peak, and the steps' pages stayed
        // resident to the end (bench/README.md).
        cli_support::release_free_memory();
        let planned = &planned;
        // The records of the install are written a group at a time: after each commit, the
        // packages it verified and installed (docs/on-disk-state.md §5); whatever is held
        // when the install fails is written on the way out.
        let audit_held = self.audit.hold()?;
        // What package file `p` must say of itself (docs/threats.md §17), made when needed:
        // a list of them would hold another copy of every name, version and hash of the plan.
        // The index's developer signature goes only to its check (the install does not read
        // it): a copy made for each install and freed after it would be one more small
        // allocation among the unpacking's (bench/README.md, "Memory the allocator keeps").
        let expected_with = |p: &crate::planned::Package<'_>, signature: bool| install::Expected {
            origin: format!("feed {:?}", p.feed()),
            name: p.name().to_string(),
            version: p.version().to_string(),
            arch: p.arch().to_string(),
            index_signature: signature
                .then(|| p.index_signature())
                .flatten()
                .map(|(by, sig)| (by.to_string(), sig.to_string())),
            signed_by: None,
            feed_key: feed_keys.get(p.feed()).cloned().flatten(),
            sha256: Some(p.sha256()),
        };
        let mut opts = self.install_options();
        // Files leaving the packages this transaction upgrades (the old version ships them,
        // the new one does not) may move to another package of it: asked when a package
        // ships a path an upgraded package owns, answered from the upgraded package's new
        // file list once it has arrived (read then, once).
        let arrived: std::sync::Arc<Vec<std::sync::atomic::AtomicBool>> =
            std::sync::Arc::new((0..planned.len()).map(|_| Default::default()).collect());
        {
            let mut upgraded: std::collections::HashMap<String, (PathBuf, usize)> =
                Default::default();
            for i in 0..planned.len() {
                let p = planned.get(i)?;
                if p.upgrade_from().is_some() {
                    upgraded.insert(p.name().to_string(), (p.dest(), i));
                }
            }
            let arrived = arrived.clone();
            type Lists =
                std::collections::HashMap<String, Option<std::collections::BTreeSet<String>>>;
            let lists: std::sync::Mutex<Lists> = Default::default();
            opts.released = install::Released::new(move |owner, path| {
                let Some((dest, i)) = upgraded.get(owner) else {
                    return false;
                };
                if !arrived[*i].load(std::sync::atomic::Ordering::SeqCst) {
                    return false;
                }
                let mut lists = lists.lock().unwrap_or_else(|e| e.into_inner());
                lists
                    .entry(owner.to_string())
                    .or_insert_with(|| crate::review::package_paths(dest).ok())
                    .as_ref()
                    .is_some_and(|new| !new.contains(path))
            });
        }
        let jobs = self.opts.jobs.max(1);
        // How many packages were committed.
        let mut committed = 0usize;
        // Developer signatures are checked by the download workers as each file arrives, in
        // parallel and off the install thread; what a worker did not check is checked before
        // the install. A verdict is kept in 4 bytes until the install reaches the package
        // (verdicts.rs), not as text made by a worker and held to the end.
        let verdicts = crate::verdicts::Verdicts::new(planned.len());
        let check_arrived = |i: usize, item: &DownloadItem| {
            let _ = verdicts.get_or_judge(i, || match planned.get(i) {
                Ok(p) => self.verify_developer(&item.dest, &expected_with(&p, true)),
                Err(e) => Err(e.to_string()),
            });
            arrived[i].store(true, std::sync::atomic::Ordering::SeqCst);
        };
        // The developer key that signed package `i` (its signature checked once, by a
        // download worker or here), or the refusal naming the package and where it came from.
        let developer_verdict =
            |p: &crate::planned::Package<'_>, i: usize| -> Result<Option<String>, ClientError> {
                verdicts
                    .get_or_judge(i, || {
                        self.verify_developer(&p.dest(), &expected_with(p, true))
                    })
                    .map(|key| key.map(|k| k.to_string()))
                    .map_err(|reason| ClientError::Developer {
                        package: p.label(),
                        url: p.url(),
                        reason,
                    })
            };
        // The steps given to the batch and not yet reported, by name, to find a report's (the
        // batch's few, not a table of the plan's thousands).
        let in_batch: std::cell::RefCell<std::collections::HashMap<String, usize>> =
            Default::default();
        let install_one = |db: &mut Db,
                           batch: &mut install::Batch,
                           i: usize,
                           decoded: Option<&crate::unpack::Preread>|
         -> Result<(), ClientError> {
            // The few texts the install needs, made here (not a whole download item: an
            // install allocates as little per package as it can, bench/README.md).
            let p = planned.get(i)?;
            let dest = p.dest();
            let mut exp = expected_with(&p, false);
            exp.signed_by = developer_verdict(&p, i)?;
            in_batch.borrow_mut().insert(p.name().to_string(), i);
            self.audit.record(
                "package-verified",
                serde_json::json!({
                    "name": p.name(),
                    "package_version": p.version(),
                    "sha256": exp.sha256,
                    "feed": p.feed(),
                    "url": audit_log::url_without_credentials(&p.url()),
                    "feed_key": exp.feed_key,
                    "developer_key": exp.signed_by,
                }),
            )?;
            let file = match decoded {
                Some(package) => PackageFile::Decoded {
                    path: &dest,
                    package,
                },
                None => PackageFile::Path(&dest),
            };
            batch
                .install(db, file, p.auto(), &opts, Some(&exp))
                .map_err(|source| ClientError::InstallOf {
                    package: p.label(),
                    url: p.url(),
                    source: Box::new(source),
                })
        };
        // The cache files of committed packages, to delete: by a thread of their own while the
        // install goes on when there is one (`unlinker`), else at once.
        let unlinker: std::cell::RefCell<Option<std::sync::mpsc::Sender<Vec<PathBuf>>>> =
            Default::default();
        // What a batch committed: recorded, reported, its cache files gone.
        let step_of = |name: &str| -> Result<usize, ClientError> {
            in_batch.borrow_mut().remove(name).ok_or_else(|| {
                ClientError::Invalid(format!(
                    "the install reported {name}, which it was not given"
                ))
            })
        };
        let settle =
            |batch: &mut install::Batch, committed: &mut usize| -> Result<(), ClientError> {
                let done = batch.take_done();
                let any = !done.is_empty();
                let mut cached = Vec::new();
                for report in done {
                    let p = planned.get(step_of(&report.name)?)?;
                    self.audit.record(
                        if report.upgraded_from.is_some() {
                            "package-upgraded"
                        } else {
                            "package-installed"
                        },
                        serde_json::json!({
                            "name": report.name,
                            "package_version": report.version,
                            "from_version": report.upgraded_from,
                            "files": report.files,
                            "conffiles_kept": report.kept_conffiles,
                            "special_granted": report.special,
                            "scripts": report.scripts,
                            "auto_installed": p.auto(),
                        }),
                    )?;
                    for c in &report.kept_conffiles {
                        progress.message(&format!(
                            "{}: kept the modified {c}; the new version is {c}-opkg",
                            report.name
                        ));
                    }
                    for l in &report.left_in_place {
                        progress.message(&format!(
                            "warning: {}: left {} in place: {}",
                            report.name, l.path, l.reason
                        ));
                    }
                    progress.installed(&report);
                    *committed += 1;
                    if !self.opts.keep_cache {
                        cached.push(p.dest());
                    }
                }
                match unlinker.borrow().as_ref() {
                    Some(tx) if !cached.is_empty() => {
                        let _ = tx.send(cached);
                    }
                    _ => cached.iter().for_each(|p| {
                        let _ = fs::remove_file(p);
                    }),
                }
                if any {
                    audit_held.flush()?;
                }
                Ok(())
            };
        // Installs package `i` in the batch and settles what that committed; on an error the
        // packages before it are committed and settled first.
        let step = |db: &mut Db,
                    batch: &mut install::Batch,
                    committed: &mut usize,
                    i: Option<(usize, Option<&crate::unpack::Preread>)>|
         -> Result<(), ClientError> {
            let result = match i {
                Some((i, decoded)) => install_one(db, batch, i, decoded),
                None => batch.flush(db).map_err(ClientError::from),
            };
            if let Err(e) = &result
                && i.is_some()
                && let Err(f) = batch.flush(db)
                && !matches!(f, install::InstallError::NotVerified)
            {
                progress.message(&format!(
                    "error: after {e}: committing the packages before it failed too: {f}"
                ));
            }
            settle(batch, committed)?;
            result
        };
        if self.opts.download_only {
            // Everything fetched and verified (index SHA-256 and developer signatures) into
            // the cache, which is kept; nothing of the root changes.
            self.download_planned(planned, jobs, &|i, item, cached| {
                progress.downloaded(&item.url, cached);
                check_arrived(i, item);
            })?;
            for i in 0..planned.len() {
                let p = planned.get(i)?;
                developer_verdict(&p, i)?;
                progress.message(&format!("Downloaded {}: {}", p.label(), p.dest().display()));
            }
            return Ok(0);
        }
        let reviewing = gate.wants_review() || !self.policy.is_empty();
        if !removes.is_empty() || reviewing {
            // apt's order: every package downloaded and verified before anything changes.
            self.download_planned(planned, jobs, &|i, item, cached| {
                progress.downloaded(&item.url, cached);
                check_arrived(i, item);
            })?;
            if reviewing {
                let mode = if gate.review_only() {
                    "review"
                } else {
                    "install"
                };
                let mut reviews = Vec::with_capacity(planned.len());
                let owned = db.owners()?;
                for i in 0..planned.len() {
                    let p = planned.get(i)?;
                    let item = p.item();
                    let package = p.label();
                    let verdict = developer_verdict(&p, i)?;
                    let provenance = Provenance {
                        feed: p.feed().to_string(),
                        feed_key: feed_keys.get(p.feed()).cloned().flatten(),
                        developer_key: verdict,
                    };
                    // A path's owner the map cannot read fails the review after it.
                    let unreadable = std::cell::RefCell::new(None);
                    let review =
                        crate::review::review_package(&item.dest, &provenance, &|p| match owned
                            .file_owner(p)
                        {
                            Ok(o) => o.map(|o| o.to_string()),
                            Err(e) => {
                                unreadable.borrow_mut().get_or_insert(e);
                                None
                            }
                        })
                        .map_err(|source| ClientError::Review {
                            package: package.clone(),
                            source: Box::new(source),
                        })?;
                    if let Some(e) = unreadable.into_inner() {
                        return Err(e.into());
                    }
                    // The review read the file the install will read (bound to the index by
                    // SHA-256 here, and again at unpacking).
                    if !review.sha256.eq_ignore_ascii_case(item.sha256.trim()) {
                        return Err(ClientError::Review {
                            package,
                            source: Box::new(feeds::package::PackageFileError {
                                path: item.dest.clone(),
                                source: feeds::package::PackageError::Io(std::io::Error::other(
                                    format!(
                                        "the file changed after it was checked (SHA-256 {}, the index gives {})",
                                        review.sha256, item.sha256
                                    ),
                                )),
                            }),
                        });
                    }
                    let keyring_package = self
                        .config
                        .option("keyring")
                        .map(keyring_pkg::package::package_name);
                    let decisions = self.policy.judge_with(&review, keyring_package.as_deref());
                    for d in &decisions {
                        self.audit.record(
                            "policy-decision",
                            serde_json::json!({
                                "name": d.package,
                                "package_version": d.version,
                                "rule": d.rule.to_string(),
                                "outcome": if d.allowed { "allowed" } else { "refused" },
                                "detail": d.detail,
                                "mode": mode,
                            }),
                        )?;
                    }
                    if let Some(d) = decisions.into_iter().find(|d| !d.allowed) {
                        return Err(ClientError::Policy {
                            package,
                            rule: d.rule.to_string(),
                            detail: d.detail,
                        });
                    }
                    reviews.push(review);
                }
                if !gate.confirm(&reviews) {
                    if !gate.review_only() {
                        let names: Vec<String> = reviews
                            .iter()
                            .map(|r| format!("{} {}", r.name, r.version))
                            .collect();
                        self.audit
                            .record("install-declined", serde_json::json!({ "packages": names }))?;
                    }
                    return Err(ClientError::Declined);
                }
            }
            // Packages the plan replaces (Conflicts + Replaces) go first.
            for name in &removes {
                let r = install::remove(&mut db, name, &opts)?;
                self.audit_removed(&r, "replaced")?;
                progress.message(&format!("Removed {} (replaced)", r.name));
            }
            let mut batch = install::Batch::new(&mut db)?;
            for i in 0..planned.len() {
                step(&mut db, &mut batch, &mut committed, Some((i, None)))?;
            }
            step(&mut db, &mut batch, &mut committed, None)?;
            audit_held.finish()?;
            return Ok(committed);
        }
        // Each package is unpacked (still verified whole first) as soon as it and everything
        // before it in dependency order has arrived and been read (read_ahead.rs), while later
        // ones download. On a fresh root (bootstrap) it is installed then and there; otherwise
        // the batch's gate holds every commit until all packages are downloaded and verified:
        // apt's order, nothing changes before that, but the unpacking is not left waiting for
        // the downloads.
        let held = !self.opts.pipeline;
        // Downloads → reader: each package as it arrives, in any order. Reader → install: each
        // package in plan order, read whole (read_ahead.rs).
        let (arrive, arrived) = std::sync::mpsc::channel::<crate::read_ahead::Arrived>();
        let open_files = crate::read_ahead::Held::default();
        let (ready_tx, ready) =
            std::sync::mpsc::sync_channel::<crate::read_ahead::Ready>(crate::read_ahead::AHEAD);
        let budget = crate::read_ahead::Budget::default();
        let downloads_ended = crate::read_ahead::Latch::default();
        let downloads_failed = std::sync::atomic::AtomicBool::new(false);
        let refused: std::cell::RefCell<Option<ClientError>> = Default::default();
        let fetcher = &self.fetcher;
        std::thread::scope(|scope| -> Result<(), ClientError> {
            // Deleting a file takes the file system's time (ext4 frees its inode and blocks):
            // the committed packages' cache files go on a thread of their own, off the install.
            let (unlink_tx, unlink_rx) = std::sync::mpsc::channel::<Vec<PathBuf>>();
            *unlinker.borrow_mut() = Some(unlink_tx);
            scope.spawn(move || {
                for batch in unlink_rx {
                    for p in batch {
                        let _ = fs::remove_file(p);
                    }
                }
            });
            let downloads = scope.spawn(|| {
                let arrive = arrive;
                let item = |i| Ok(planned.get(i)?.item());
                let r = download::download_each_open(
                    fetcher,
                    planned.len(),
                    &item,
                    jobs,
                    &|i, item, cached, file| {
                        progress.downloaded(&item.url, cached);
                        check_arrived(i, item);
                        let file = file.filter(|_| open_files.admit());
                        let _ = arrive.send((i, file));
                    },
                );
                if r.is_err() {
                    downloads_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                downloads_ended.open();
                r
            });
            let (budget, open_files) = (&budget, &open_files);
            scope.spawn(move || {
                crate::read_ahead::run(
                    planned.len(),
                    arrived,
                    ready_tx,
                    budget,
                    open_files,
                    &|i, file| {
                        let p = planned.get(i).ok()?;
                        // The file the download wrote, its bytes hashed as they were written
                        // and checked against the index's SHA-256; else the cached one.
                        let sha256 = hex::decode(p.sha256()).ok()?.try_into().ok();
                        match (file, sha256) {
                            (Some(f), Some(sha256)) => {
                                crate::read_ahead::read_downloaded(f, sha256)
                            }
                            _ => crate::read_ahead::read(&p.dest()),
                        }
                    },
                )
            });
            let wait_all = |_: &Db| -> Result<(), install::InstallError> {
                downloads_ended.wait();
                if downloads_failed.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(install::InstallError::NotVerified);
                }
                (0..planned.len())
                    .try_for_each(|i| developer_verdict(&planned.get(i)?, i).map(|_| ()))
                    .map_err(|e| {
                        *refused.borrow_mut() = Some(e);
                        install::InstallError::NotVerified
                    })
            };
            let installed = (|| -> Result<(), ClientError> {
                let mut batch = if held {
                    install::Batch::gated(&mut db, Box::new(wait_all))?
                } else {
                    install::Batch::new(&mut db)?
                };
                let mut failed = None;
                // Install what has arrived, in order; the channel closes after the last
                // package, or before a package whose download failed (its error is returned
                // below).
                while failed.is_none()
                    && let Ok((i, package)) = ready.recv()
                {
                    let r = step(
                        &mut db,
                        &mut batch,
                        &mut committed,
                        Some((i, package.as_ref())),
                    );
                    budget.give(package.as_ref().map_or(0, crate::unpack::Preread::data_len));
                    if let Err(e) = r {
                        failed = Some(e);
                    }
                }
                if failed.is_none()
                    && let Err(e) = step(&mut db, &mut batch, &mut committed, None)
                {
                    failed = Some(e);
                }
                failed.map_or(Ok(()), Err)
            })();
            // The unlinking thread ends with its channel (the scope waits for it), whatever
            // is returned below.
            unlinker.borrow_mut().take();
            // The reader stops: nothing more is taken.
            budget.close();
            drop(ready);
            let downloaded = downloads
                .join()
                .map_err(|_| ClientError::Invalid("the download thread panicked".into()))?;
            if let Some(e) = refused.take() {
                return Err(e);
            }
            if let Err(e) = downloaded {
                return Err(self.download_refused(planned, e));
            }
            installed
        })?;
        audit_held.finish()?;
        Ok(committed)
    }

    /// Downloads the packages of `planned` (see [`download::download_each`]); a refused one
    /// is recorded ([`Client::download_refused`]).
    fn download_planned(
        &self,
        planned: &Planned,
        jobs: usize,
        progress: &(dyn Fn(usize, &DownloadItem, bool) + Sync),
    ) -> Result<(), ClientError> {
        download::download_each(
            &self.fetcher,
            planned.len(),
            &|i| Ok(planned.get(i)?.item()),
            jobs,
            progress,
        )
        .map_err(|e| self.download_refused(planned, e))
    }

    /// A download that failed its checks (Size, SHA-256, …) refuses its package: recorded
    /// under the package's name, found by the URL the error names.
    fn download_refused(&self, planned: &Planned, e: DownloadError) -> ClientError {
        let text = e.to_string();
        if let Some((p, url)) = (0..planned.len())
            .filter_map(|i| planned.get(i).ok())
            .map(|p| {
                let url = p.url();
                (p, url)
            })
            .find(|(_, url)| text.contains(url.as_str()))
            && let Err(audit) = self.audit.record(
                "package-refused",
                serde_json::json!({
                    "name": p.name(),
                    "package_version": p.version(),
                    "url": audit_log::url_without_credentials(&url),
                    "reason": redact(&text),
                }),
            )
        {
            return audit.into();
        }
        e.into()
    }

    /// Removes installed packages; refuses when other installed packages depend on them,
    /// unless `force_depends`.
    pub fn remove(
        &self,
        names: &[String],
        force_depends: bool,
        progress: &dyn Progress,
    ) -> Result<Vec<RemoveReport>, ClientError> {
        let mut db = self.open_db(progress)?;
        let universe = self.universe(&db, false, progress)?;
        check_removable(&db, &universe, names, force_depends)?;
        let opts = self.install_options();
        let mut out = Vec::new();
        for n in names {
            let report = match install::remove(&mut db, n, &opts) {
                Ok(r) => r,
                Err(e) => {
                    // What was removed before is on record, durably.
                    self.audit.sync()?;
                    return Err(e.into());
                }
            };
            self.audit_removed(&report, "requested")?;
            for l in &report.left_in_place {
                progress.message(&format!(
                    "warning: {}: left {} in place: {}",
                    report.name, l.path, l.reason
                ));
            }
            out.push(report);
        }
        self.audit.sync()?;
        Ok(out)
    }

    /// Installed packages, or everything the feeds offer (marked when installed).
    pub fn list(
        &self,
        installed_only: bool,
        progress: &dyn Progress,
    ) -> Result<Vec<ListEntry>, ClientError> {
        let db = Db::open(&self.opts.root, &self.config.db_dir())?;
        let field = |p: &Paragraph, f: &str| p.get(f).unwrap_or("").trim().to_string();
        let summary = |p: &Paragraph| {
            p.get("Description")
                .and_then(|d| d.lines().next())
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let mut out = Vec::new();
        if installed_only {
            // A `deinstall`/`not-installed` entry is not an installed package.
            for p in db.packages() {
                let p = p?;
                if !crate::status::is_installed(&p) {
                    continue;
                }
                let p = &*p;
                let name = field(p, "Package");
                // The status file has no Description; the package's control file does.
                let control = db
                    .read_info(&name, "control", 1 << 20)
                    .ok()
                    .flatten()
                    .and_then(|b| Paragraph::parse_bytes(&b).ok());
                out.push(ListEntry {
                    version: field(p, "Version"),
                    architecture: field(p, "Architecture"),
                    feed: None,
                    installed: true,
                    summary: summary(control.as_ref().unwrap_or(p)),
                    name,
                });
            }
        } else {
            for (feed, p) in self.available(progress)? {
                let name = field(&p, "Package");
                let version = field(&p, "Version");
                let installed = db.get(&name)?.map(|p| field(&p, "Version"));
                out.push(ListEntry {
                    installed: installed.as_deref() == Some(&version),
                    name,
                    version,
                    architecture: field(&p, "Architecture"),
                    feed: Some(feed),
                    summary: summary(&p),
                });
            }
        }
        out.sort_by(|a, b| (&a.name, &a.version, &a.feed).cmp(&(&b.name, &b.version, &b.feed)));
        Ok(out)
    }

    /// The installed stanza (if any) and every stanza the feeds have for `name`.
    pub fn info(
        &self,
        name: &str,
        progress: &dyn Progress,
    ) -> Result<Vec<(Option<String>, Paragraph)>, ClientError> {
        let db = Db::open(&self.opts.root, &self.config.db_dir())?;
        // NAME, or a glob (`*`, `?`) over names, as opkg's info takes.
        let matches = |n: &str| crate::query::glob_matches(name, n);
        let mut out = Vec::new();
        for name in db.package_names().filter(|n| matches(n)) {
            if let Some(p) = db.get(name)? {
                out.push((None, p.into_owned()));
            }
        }
        if let Ok(offered) = self.available(progress) {
            for (feed, p) in offered {
                if matches(p.get("Package").unwrap_or("").trim()) {
                    out.push((Some(feed), p));
                }
            }
        }
        Ok(out)
    }

    /// Checks every installed file (or those of `only`) against the recorded hashes.
    pub fn verify(&self, only: Option<&[String]>) -> Result<VerifyReport, ClientError> {
        let db = Db::open(&self.opts.root, &self.config.db_dir())?;
        if let Some(names) = only
            && let Some(n) = names.iter().find(|n| !db.has(n))
        {
            return Err(ClientError::NotInstalled(n.clone()));
        }
        Ok(verify::verify(&db, only)?)
    }

    /// `verify --signatures`: every installed package (or those in `only`) that recorded a
    /// developer key (`Signed-By` in the status file), judged against today's trusted keyring
    /// (docs/trust-model.md §9): what is wrong with each one whose key no longer counts.
    pub fn verify_signatures(
        &self,
        only: Option<&[String]>,
    ) -> Result<Vec<SignatureFinding>, ClientError> {
        let db = Db::open(&self.opts.root, &self.config.db_dir())?;
        if let Some(names) = only
            && let Some(n) = names.iter().find(|n| !db.has(n))
        {
            return Err(ClientError::NotInstalled(n.clone()));
        }
        let Some(keyring) = &self.developer.keyring else {
            return Err(ClientError::Invalid(
                "verify --signatures needs a trusted keyring (option keyring NAME): developer keys come from it".into(),
            ));
        };
        let mut out = Vec::new();
        for p in db.packages() {
            let p = p?;
            let name = &p.get("Package").unwrap_or("").trim().to_string();
            if only.is_some_and(|o| !o.contains(name)) {
                continue;
            }
            let Some(fp) = p.get("Signed-By").map(str::trim) else {
                continue;
            };
            let version = p.get("Version").unwrap_or("").trim().to_string();
            let Ok(fingerprint) = fp.parse::<feeds::usign::Fingerprint>() else {
                out.push(SignatureFinding {
                    package: name.clone(),
                    version,
                    revoked: true,
                    reason: format!("package {name}: Signed-By {fp:?} is not a key fingerprint"),
                });
                continue;
            };
            if let Err(e) =
                keyring_pkg::developer::check_key(keyring, name, fingerprint, self.opts.now)
            {
                use keyring_pkg::DeveloperError as D;
                let revoked = matches!(
                    e,
                    D::NotActive {
                        status: keyring_pkg::Status::Revoked,
                        ..
                    } | D::UnknownKey { .. }
                        | D::NotDeveloper { .. }
                );
                out.push(SignatureFinding {
                    package: name.clone(),
                    version,
                    revoked,
                    reason: e.to_string(),
                });
            }
        }
        Ok(out)
    }

    /// `verify --from-feed`: first makes the records prokit lacks (packages another tool
    /// installed or upgraded) from the packages themselves — the installed version of each,
    /// found in the verified indexes, taken from the cache or downloaded, checked against the
    /// index's Size and SHA-256, read, and recorded in `info/<pkg>.sha256` — then verifies
    /// as [`Client::verify`] does. A package no feed has at its installed version stays
    /// unverifiable, with the reason in the returned list.
    pub fn verify_from_feed(
        &self,
        only: Option<&[String]>,
        progress: &dyn Progress,
    ) -> Result<(VerifyReport, Vec<Recorded>), ClientError> {
        let db = Db::open(&self.opts.root, &self.config.db_dir())?;
        let first = verify::verify(&db, only).map_err(|e| match e {
            StatusError::NotInstalled(n) => ClientError::NotInstalled(n),
            e => e.into(),
        })?;
        let wanted = first.unverifiable_packages();
        if wanted.is_empty() {
            return Ok((first, Vec::new()));
        }
        let indexes = self.indexes(progress)?;
        let cache = self.cache_dir()?;
        let mut outcomes = Vec::new();
        for name in wanted {
            let Some(installed) = db.get(&name)? else {
                continue;
            };
            let version = installed.get("Version").unwrap_or("").trim().to_string();
            let arch = installed.get("Architecture").map(str::trim);
            let found = indexes.iter().find_map(|(s, stanzas)| {
                stanzas
                    .iter()
                    .find(|p| {
                        p.get("Package").map(str::trim) == Some(name.as_str())
                            && p.get("Version").map(str::trim) == Some(version.as_str())
                            && (arch.is_none() || p.get("Architecture").map(str::trim) == arch)
                    })
                    .map(|p| (*s, p))
            });
            let result = match found {
                None => Err(format!(
                    "no configured feed has {name} {version}: its files stay unverifiable"
                )),
                Some((source, stanza)) => self
                    .record_from_feed(&db, &name, &version, source, stanza, &cache)
                    .map_err(|e| e.to_string()),
            };
            if let Ok(feed) = &result {
                progress.message(&format!(
                    "recorded {name} {version} from feed {feed} (package checked against the signed index)"
                ));
            }
            outcomes.push(Recorded {
                package: name,
                version,
                result,
            });
        }
        Ok((verify::verify(&db, only)?, outcomes))
    }

    /// Downloads (or reuses from the cache) the package a verified stanza describes, checks it
    /// is `name` `version`, and writes its records as prokit's sidecar. Returns the feed name.
    fn record_from_feed(
        &self,
        db: &Db,
        name: &str,
        version: &str,
        source: &Source,
        stanza: &Paragraph,
        cache: &Path,
    ) -> Result<String, ClientError> {
        let item = download_item(
            stanza,
            source,
            self.mirrors_of(&source.name),
            cache,
            &source.name,
        )?;
        download::download_all(&self.fetcher, std::slice::from_ref(&item), 1, &|_, _, _| {})?;
        let (package, records) = verify::package_records(&item.dest)
            .map_err(|e| ClientError::Invalid(format!("cannot read the feed's package: {e}")))?;
        if package.name() != name || package.version() != version {
            return Err(ClientError::BadStanza {
                feed: source.name.clone(),
                package: format!("{name} {version}"),
                reason: format!(
                    "{} is package {} {}, not the installed one",
                    item.dest.display(),
                    package.name(),
                    package.version()
                ),
            });
        }
        let path = db.info_file(name, crate::status::SIDECAR_SUFFIX);
        let text = crate::status::sidecar_text(name, version, &records);
        safe_fs::write_atomic(&path, text.as_bytes(), WriteOptions::default())?;
        Ok(source.name.clone())
    }
}

/// What `verify --from-feed` did for one package that had no prokit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub package: String,
    pub version: String,
    /// The feed its records came from, or why there are none.
    pub result: Result<String, String>,
}

/// What `prokit keyring refresh` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub name: String,
    /// The serial trusted now.
    pub serial: u64,
    /// The serial trusted before, when it changed.
    pub from: Option<u64>,
}

impl Client {
    /// Updates every feed, finds the newest `<name>-keyring` package (name from
    /// `option keyring`), downloads it (checked against the verified index), walks its history
    /// from the trusted serial with every rule of docs/trust-model.md §5, and applies it atomically.
    /// Holds the keyring lock throughout, so concurrent refreshes serialise. Any feed that
    /// fails to update fails the refresh, which then changes nothing.
    pub fn refresh_keyring(&self, progress: &dyn Progress) -> Result<Refreshed, ClientError> {
        let result = self.refresh_keyring_inner(progress);
        let name = self.config.option("keyring").unwrap_or("");
        match &result {
            Ok((r, signers)) => self.audit.record(
                "keyring-updated",
                serde_json::json!({
                    "name": r.name,
                    "serial_from": r.from.unwrap_or(r.serial),
                    "serial_to": r.serial,
                    "changed": r.from.is_some(),
                    "root_keys": signers,
                }),
            )?,
            Err(e) => self.audit.record(
                "keyring-refused",
                serde_json::json!({ "name": name, "reason": redact(&e.to_string()) }),
            )?,
        }
        self.audit.sync()?;
        result.map(|(r, _)| r)
    }

    /// The refresh itself; also returns the root keys whose signatures the trusted serial
    /// carries.
    fn refresh_keyring_inner(
        &self,
        progress: &dyn Progress,
    ) -> Result<(Refreshed, Vec<String>), ClientError> {
        let name = self
            .config
            .option("keyring")
            .ok_or(KeyringError::NotConfigured)?
            .to_string();
        let lock = keyring_pkg::apply::lock(&self.opts.root).map_err(KeyringError::from)?;
        let current = keyring_pkg::apply::load_trusted(&self.opts.root, &name)
            .map_err(KeyringError::from)?
            .ok_or_else(|| KeyringError::NotTrusted(name.clone()))?;
        let failed: Vec<String> = self
            .update()?
            .into_iter()
            .filter_map(|o| o.result.err().map(|e| e.to_string()))
            .collect();
        if !failed.is_empty() {
            return Err(ClientError::UpdateFailed { failed });
        }
        let package = keyring_pkg::package::package_name(&name);
        let mut best: Option<(feeds::version::Version, &Source, Paragraph)> = None;
        let indexes = self.indexes(progress)?;
        for (s, stanzas) in &indexes {
            for p in stanzas {
                if p.get("Package").map(str::trim) != Some(package.as_str()) {
                    continue;
                }
                let Some(v) = p
                    .get("Version")
                    .and_then(|v| feeds::version::Version::parse(v.trim()).ok())
                else {
                    continue;
                };
                if best.as_ref().is_none_or(|(b, _, _)| v > *b) {
                    best = Some((v, *s, p.clone()));
                }
            }
        }
        let Some((_, source, stanza)) = best else {
            return Err(KeyringError::NoPackage { name, package }.into());
        };
        let cache = self.cache_dir()?;
        let item = download_item(
            &stanza,
            source,
            self.mirrors_of(&source.name),
            &cache,
            &source.name,
        )?;
        download::download_all(&self.fetcher, std::slice::from_ref(&item), 1, &|_, _, _| {})?;
        let pkg =
            keyring_pkg::package::read_keyring_package(&item.dest).map_err(KeyringError::from)?;
        let _ = fs::remove_file(&item.dest);
        let verified = keyring_pkg::accept::accept_chain(&current, pkg.candidates(), self.opts.now)
            .map_err(KeyringError::from)?;
        let report = keyring_pkg::apply::apply(&lock, &verified, self.opts.now)
            .map_err(KeyringError::from)?;
        let signers = root_signers(verified.signed(), current.keyring());
        Ok((
            Refreshed {
                name,
                serial: report.serial,
                from: report.previous.filter(|p| *p != report.serial),
            },
            signers,
        ))
    }
}

/// The root keys (of the keyring trusted before, or of the new one) whose signatures `signed`
/// carries, for the audit trail.
pub fn root_signers(
    signed: &keyring_pkg::signatures::SignedKeyring,
    before: &keyring_pkg::Keyring,
) -> Vec<String> {
    use keyring_pkg::manifest::Role;
    let is_root = |k: &keyring_pkg::Keyring, fp| k.key(fp).is_some_and(|e| e.role == Role::Root);
    signed
        .signatures()
        .fingerprints()
        .into_iter()
        .filter(|fp| is_root(before, *fp) || is_root(signed.keyring(), *fp))
        .map(|fp| fp.to_string())
        .collect()
}

/// The CA file that `option ca_file PATH` names inside the root: its directory resolved
/// inside the root, and the file itself not a symlink (so it cannot name a host file).
fn ca_file_in_root(root: &Root, path: &str) -> Result<PathBuf, ClientError> {
    let rel =
        Root::confine(path).map_err(|e| ClientError::Invalid(format!("option ca_file: {e}")))?;
    let (dir, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", rel.as_str()),
    };
    let full = root.resolve_dir(dir, false)?.join(name);
    match fs::symlink_metadata(&full) {
        Ok(m) if m.is_file() => Ok(full),
        Ok(_) => Err(ClientError::Invalid(format!(
            "option ca_file {path}: {} is not a regular file (a symlink is not followed)",
            full.display()
        ))),
        Err(e) => Err(io_at(&full)(e)),
    }
}

/// The download of the package an index stanza describes, checked against its Size and
/// SHA-256.
/// The download fields of a verified stanza of `feed` for `package` (named in errors):
/// `Filename`, `Size`, and the SHA-256 (`SHA256sum`, or Debian's `SHA256`) as lower-case hex.
fn package_fields<'s>(
    stanza: &'s Paragraph,
    feed: &str,
    package: &dyn Fn() -> String,
) -> Result<(&'s str, u64, String), ClientError> {
    let bad = |reason: &str| ClientError::BadStanza {
        feed: feed.to_string(),
        package: package(),
        reason: reason.into(),
    };
    let filename = stanza
        .get("Filename")
        .ok_or_else(|| bad("no Filename field"))?;
    let size: u64 = stanza
        .get("Size")
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad("no valid Size field"))?;
    let sha256 = stanza
        .get("SHA256sum")
        .or_else(|| stanza.get("SHA256"))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad("no valid SHA256sum field"))?;
    Ok((filename.trim(), size, sha256))
}

/// What to download for the package a verified stanza of `source` describes.
fn download_item(
    stanza: &Paragraph,
    source: &Source,
    mirrors: &[String],
    cache: &Path,
    feed: &str,
) -> Result<DownloadItem, ClientError> {
    let package = || {
        format!(
            "{} {}",
            stanza.get("Package").unwrap_or("?").trim(),
            stanza.get("Version").unwrap_or("?").trim()
        )
    };
    let (filename, size, sha256) = package_fields(stanza, feed, &package)?;
    let bases: Vec<String> = std::iter::once(&source.url)
        .chain(mirrors)
        .cloned()
        .collect();
    Ok(download::item_for(filename, size, &sha256, &bases, cache)?)
}

/// What `prokit bootstrap` is asked to make.
pub struct Bootstrap {
    /// `NAME=URL` feeds, in priority order.
    pub feeds: Vec<(String, String)>,
    /// usign public keys trusted for the feeds (copied into `<root>/etc/opkg/keys/<fp>`).
    pub pubkeys: Vec<PathBuf>,
    /// Or a keyring (package or manifest) and the root key fingerprint the user confirms.
    pub keyring: Option<(PathBuf, feeds::usign::Fingerprint)>,
    /// `arch` lines; empty accepts every architecture.
    pub arch: Vec<(String, u32)>,
    /// What to install, as on a command line (`name` or `name=version`): freed once
    /// resolved (a bootstrap's thousands of names are not needed by the install).
    pub packages: RequestList,
    /// Write a reproducible tarball of the root here when done.
    pub tar: Option<PathBuf>,
    /// mtime of every entry in the tarball.
    pub tar_mtime: u64,
    /// `option audit_log` for the new root (a path inside it, or `off`); `None` keeps the
    /// default, `var/log/prokit/audit.jsonl`.
    pub audit_log: Option<String>,
}

/// Makes a root filesystem: writes its opkg.conf and trusted keys (so the root can update
/// itself later with the same trust), updates every feed (all must verify), installs the
/// packages, and optionally writes a reproducible tarball of the result.
pub fn bootstrap(
    opts: Options,
    b: Bootstrap,
    progress: &dyn Progress,
) -> Result<usize, ClientError> {
    let root = opts.root.clone();
    let client = prepare_root(opts, &b)?;
    let installed = client.install_audited(Cow::Owned(b.packages), progress, &mut NoGate)?;
    if let Some(out) = &b.tar {
        let cache = client.opts.cache_dir.clone();
        // The lock directory goes into the tarball (opkg needs it), its lock files do not.
        // Nor does the audit log of the build (its times, host and pids would make every
        // tarball differ): it stays in ROOT, the record of how the image was made.
        let audit = client.audit_rel();
        let skip = |p: &Path| {
            cache.is_none() && p.starts_with(CACHE_DIR)
                || p.starts_with(OPKG_LOCK_DIR) && p != Path::new(OPKG_LOCK_DIR)
                || audit.as_deref().is_some_and(|a| p == Path::new(a))
        };
        rootfs::write_tar(&root, out, b.tar_mtime, &skip)?;
    }
    Ok(installed)
}

/// What [`bootstrap`] would install (`bootstrap --noaction`), writing nothing to `opts.root`
/// (it is not even made): the root is prepared in a private temporary directory instead —
/// its opkg.conf, its keys, every feed fetched and verified — the packages resolved there,
/// and the directory removed. Nothing is downloaded but the indexes.
pub fn bootstrap_plan(
    mut opts: Options,
    b: Bootstrap,
    progress: &dyn Progress,
) -> Result<PlanReport, ClientError> {
    let scratch = tempfile::Builder::new()
        .prefix("prokit-bootstrap-plan-")
        .tempdir()
        .map_err(|e| ClientError::Io {
            path: std::env::temp_dir(),
            source: e,
        })?;
    opts.root = scratch.path().to_path_buf();
    // The plan's records go nowhere: the directory and everything in it is removed.
    let client = prepare_root(opts, &b)?;
    let plan = client.plan(&b.packages, false, progress);
    drop(client);
    drop(scratch);
    plan
}

/// The root of a bootstrap before its packages: made, its opkg.conf and keys written, every
/// feed updated (all must verify).
fn prepare_root(opts: Options, b: &Bootstrap) -> Result<Client, ClientError> {
    if b.feeds.is_empty() {
        return Err(ClientError::Invalid(
            "bootstrap needs at least one --feed NAME=URL".into(),
        ));
    }
    if b.pubkeys.is_empty() && b.keyring.is_none() {
        return Err(ClientError::Invalid(
            "bootstrap needs the keys to trust: --pubkey FILE (one per feed key), or --keyring FILE --root-fingerprint FP".into(),
        ));
    }
    let root = &opts.root.clone();
    fs::create_dir_all(root).map_err(io_at(root))?;
    // opkg-lede takes `<root>/var/lock/opkg.lock` before anything else and fails when the
    // directory is missing (`libopkg/opkg_conf.c` line 498, `creat(lock_file, …)`), so a root
    // that opkg should manage too needs it. Made inside the root, never through a symlink out.
    let confined = Root::open(root)?;
    confined.open_dir(OPKG_LOCK_DIR, true)?;
    let mut config = Config::default();
    for (name, url) in &b.feeds {
        if !crate::config::valid_feed_name(name) {
            return Err(ClientError::Invalid(format!(
                "--feed {name}={url}: the name must be letters, digits, '.', '_', '-', '+'"
            )));
        }
        let (url, userinfo) = crate::auth::split_userinfo(url.trim_end_matches('/'));
        config.sources.push(Source {
            name: name.clone(),
            url,
            gz: true,
            userinfo,
        });
    }
    config.dests.push(("root".into(), "/".into()));
    // No `arch` lines: every architecture is accepted.
    config.arch = b.arch.clone();
    config.options.insert("check_signature".into(), "1".into());
    if let Some(a) = &b.audit_log {
        // Checked before anything is written.
        if a.trim() != "off" {
            crate::audit::option_path(a)?;
        }
        config.options.insert("audit_log".into(), a.clone());
    }
    confined.write_atomic(
        "etc/opkg.conf",
        config.to_text().as_bytes(),
        WriteOptions::default(),
    )?;
    let first_trust = match &b.keyring {
        Some((source, root_fp)) => {
            Some((keyring::init(root, source, *root_fp, opts.now)?, *root_fp))
        }
        None => None,
    };
    let mut trusted = Vec::new();
    for k in &b.pubkeys {
        let key = PublicKey::read_path(k).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let dest = format!("{KEYS_DIR}/{}", key.fingerprint());
        confined.write_atomic(&dest, &key.to_file_bytes(), WriteOptions::default())?;
        trusted.push(key.fingerprint().to_string());
    }
    // A fresh root is redone after a power loss anyway: skip the fsyncs (kill -9 safety
    // does not depend on them).
    let client = Client::open(Options {
        conf: None,
        durable: false,
        pipeline: true,
        ..opts
    })?;
    // The trust the root starts from is the first thing on its record.
    if let Some((report, fp)) = &first_trust {
        client.audit_keyring_init(Ok(report), &fp.to_string())?;
    }
    if !trusted.is_empty() {
        client.audit.record(
            "keys-trusted",
            serde_json::json!({ "keys": trusted, "source": "bootstrap --pubkey" }),
        )?;
    }
    let failed: Vec<String> = client
        .update()?
        .into_iter()
        .filter_map(|o| o.result.err().map(|e| e.to_string()))
        .collect();
    if !failed.is_empty() {
        return Err(ClientError::UpdateFailed { failed });
    }
    Ok(client)
}
