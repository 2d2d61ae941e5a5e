//! The `prokit` command line: parses arguments, calls `prokit::client`, prints, and maps
//! errors to exit codes (0 success, 1 failure, 2 usage). `main` only parses, dispatches to
//! one `cmd_*` function per subcommand and maps errors to the exit status.

// The command line's edge: the one place in this crate that prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use prokit::client::{self, Bootstrap, Client, ListEntry, Options, Progress, Recorded};
use prokit::install::{InstallReport, ScriptMode};
use prokit::resolve::RequestList;
use prokit::review::{self, Review};
use prokit::verify::VerifyReport;
use serde::Serialize;

/// Client for signed opkg feeds: fetch and verify feeds, resolve dependencies, verify every
/// package, install into a root filesystem with an opkg-compatible status database, and
/// bootstrap a rootfs on a build host.
///
/// Every feed is checked before use: Packages.sig by a key in <root>/etc/opkg/keys, and the
/// Release (when the feed has one) for its hashes, its Date (never going back) and its
/// Valid-Until. Every package is checked against the Size and SHA-256 of the verified index
/// while it downloads, and nothing is written outside the root.
///
/// Examples:
///   prokit bootstrap ./rootfs --feed base=http://127.0.0.1:8000 --pubkey feed.pub busybox
///   prokit --root ./rootfs update
///   prokit --root ./rootfs install dropbear
///   prokit --root ./rootfs verify
#[derive(Parser)]
#[command(name = "prokit", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// Root filesystem to operate on; every configured path lives under it.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Configuration file (default: <root>/etc/opkg.conf plus <root>/etc/opkg/*.conf).
    #[arg(long, global = true, value_name = "FILE")]
    conf: Option<PathBuf>,
    /// Print only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print more (each download and each installed package).
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Machine-readable output on stdout (update, list, info, verify).
    #[arg(long, global = true)]
    json: bool,
    /// Download cache (default: <root>/var/cache/prokit).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Extra CA certificates (PEM) for https feeds.
    #[arg(long, global = true, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scripts {
    /// Do not run maintainer scripts (recorded in the database).
    Skip,
    /// Run them on this host the way OpenWrt's image build does (IPKG_INSTROOT=<root>).
    Offline,
    /// Run them on this live system as opkg does on a device (--root / only; PKG_ROOT=/).
    Run,
}

/// The scripts mode: as given, else `run` for the live system (`--root /`), `skip` for any
/// other root.
fn script_mode(given: Option<Scripts>, root: &Path) -> ScriptMode {
    match given {
        Some(Scripts::Skip) => ScriptMode::Skip,
        Some(Scripts::Offline) => ScriptMode::Offline,
        Some(Scripts::Run) => ScriptMode::Run,
        None if prokit::client::is_live_root(root) => ScriptMode::Run,
        None => ScriptMode::Skip,
    }
}

#[derive(Args, Clone)]
struct InstallArgs {
    /// Treat these names as installed (comma-separated; what OpenWrt feeds leave out, e.g.
    /// libc,kernel).
    #[arg(long, value_name = "PKG,...", value_delimiter = ',')]
    assume_installed: Vec<String>,
    /// Maintainer scripts: run (the default for --root /, a device changing itself: as opkg,
    /// a failing postinst leaves the package unpacked for `prokit configure`), offline
    /// (another root, IPKG_INSTROOT=<root>, as OpenWrt's image build; a failure rolls the
    /// package back) or skip (the default for any other root; recorded in the database).
    #[arg(long, value_enum)]
    scripts: Option<Scripts>,
    /// Allow setuid/setgid files and device nodes in packages.
    #[arg(long)]
    allow_special: bool,
    /// Let any package change which keys and feeds are trusted (/etc/opkg/keys/*,
    /// /etc/opkg.conf, /etc/opkg/*.conf); otherwise only the keyring package named by
    /// `option keyring` may.
    #[arg(long)]
    allow_trust_changes: bool,
    /// Parallel downloads.
    #[arg(long, short = 'j', default_value_t = 4)]
    jobs: usize,
    /// Keep downloaded packages in the cache after installing them.
    #[arg(long)]
    keep_cache: bool,
    /// Change packages held with `prokit flag hold` too.
    #[arg(long)]
    force_hold: bool,
    /// Install named packages again that are already installed at that version: their
    /// files and database entries are written afresh from the verified package (modified
    /// conffiles are kept, as on an upgrade).
    #[arg(long)]
    force_reinstall: bool,
    /// Take over files that other installed packages own, even without `Replaces` (the
    /// new owner is recorded; the old package no longer lists them).
    #[arg(long)]
    force_overwrite: bool,
    /// Do not install what the new packages `Recommends` (installed by default, as opkg
    /// does, when it can be installed with the rest).
    #[arg(long)]
    no_install_recommends: bool,
    /// Print the plan (installs, upgrades, removals, download sizes) and change nothing;
    /// nothing is downloaded. With bootstrap: the feeds are fetched and verified into a
    /// private temporary directory, and the target is not made.
    #[arg(long, visible_alias = "dry-run", conflicts_with = "download_only")]
    noaction: bool,
    /// Download and verify everything the install needs into the cache (kept), and stop:
    /// the root is not changed (bootstrap: the root is configured and its feeds fetched,
    /// and nothing is installed).
    #[arg(long)]
    download_only: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch and verify every configured feed. A feed that fails keeps its last good index;
    /// the exit status is 1 when any feed failed, and each failure names the feed, the file,
    /// the reason and the key fingerprint.
    Update,
    /// Resolve, download, verify and install packages (NAME or NAME=VERSION). An unsatisfiable
    /// request fails before anything is downloaded, with the chain that explains it.
    Install(InstallCmd),
    /// Show what installing packages would do, and change nothing: resolve, download and
    /// verify them as install does, then list per package its maintainer scripts,
    /// setuid/setgid files, device nodes, files outside /etc /usr /lib /www /bin /sbin,
    /// conffiles, files taken over from other packages, services, users and groups, and
    /// size, read from the verified package files. Also says which policy rule
    /// (etc/prokit/policy.conf) would refuse a package (exit 1).
    ///
    /// Example: prokit --root ./rootfs review -v dropbear
    Review(ReviewCmd),
    /// Upgrade every installed package (or the named ones) to the newest version the
    /// verified feeds offer: one transaction, resolved (new dependencies pulled in),
    /// downloaded and verified before anything changes, as install. Held packages (prokit
    /// flag hold) are left alone unless named with --force-hold; Auto-Installed flags are
    /// kept.
    ///
    /// Example (cron): prokit -q update && prokit -q upgrade
    Upgrade(UpgradeCmd),
    /// Download packages (NAME or NAME=VERSION; no dependencies) into the current
    /// directory, each checked against the verified index.
    Download {
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
    },
    /// List the installed packages a verified feed offers a newer version of:
    /// `NAME - INSTALLED - AVAILABLE`, held ones marked.
    ListUpgradable,
    /// Set installed packages' flags, stored as opkg-lede stores them (`Status: install hold
    /// installed`): hold (upgrade leaves it alone, install refuses to change it without
    /// --force-hold), user (installed on request), ok (neither), noprune.
    ///
    /// Example: prokit flag hold dropbear
    Flag {
        #[arg(value_name = "hold|user|ok|noprune")]
        flag: String,
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
    },
    /// Remove installed packages (modified conffiles are kept).
    Remove(RemoveArgs),
    /// Run `postinst configure` of packages a live install left unpacked (their postinst
    /// failed or was interrupted) and mark them installed, dependencies first; without
    /// names, every such package.
    ///
    /// Example: prokit configure dropbear
    Configure {
        #[arg(value_name = "PKG")]
        packages: Vec<String>,
        /// Maintainer scripts: run (the default for --root /) or offline (another root).
        #[arg(long, value_enum)]
        scripts: Option<Scripts>,
    },
    /// Remove the packages installed only as dependencies (`Auto-Installed: yes`, as opkg
    /// writes it) that no package installed on request needs any more. Held packages, and
    /// what they need, stay.
    Autoremove {
        /// Print what would be removed and change nothing.
        #[arg(long, visible_alias = "dry-run")]
        noaction: bool,
    },
    /// List the packages the feeds offer, or with --installed the installed ones.
    List(ListArgs),
    /// Show the installed and available stanzas of a package. The installed one names the
    /// keys that vouched for it: Signed-By (the developer key) and Prokit-Feed-Key (the key
    /// that signed the feed's index).
    Info(InfoArgs),
    /// Check every installed file (or those of the given packages) against the SHA-256
    /// recorded at install: reports changed and missing files (exit 1), and conffiles whose
    /// content differs from the status file's hash separately (reported, not an error).
    ///
    /// Files of packages that another tool (opkg) installed or upgraded have no prokit record:
    /// they are counted as "not verifiable", never as checked, and the exit status is 3 when
    /// nothing is wrong but such files remain. --from-feed makes their records from the
    /// packages themselves, fetched through the verified index. Exit status: 0 every file
    /// verified; 1 changed or missing files; 3 some files not verifiable.
    Verify(VerifyArgs),
    /// The trusted keyring: install the first trust, refresh it from the feeds (for cron),
    /// report on it.
    #[command(subcommand)]
    Keyring(KeyringCmd),
    /// Credentials for private feeds, kept in <root>/etc/prokit/auth.conf.d/FEED.conf (mode
    /// 0600, apt's auth.conf format; <root>/etc/prokit/auth.conf is read too). A credential
    /// is sent only to the host and path of its feed, only over https (or http to
    /// 127.0.0.1), never along a redirect; files others can read are refused.
    ///
    /// Example: prokit auth set private --token-file /run/secrets/feed-token
    ///
    /// Example: prokit auth set private --login alice --password-file /run/secrets/pw
    #[command(subcommand)]
    Auth(AuthCmd),
    /// List the files an installed package owns.
    Files {
        #[arg(value_name = "PKG")]
        package: String,
    },
    /// Which installed package owns a path: FILE-GLOB (`*`, `?`) matched against whole
    /// paths, or, without a `/`, against file names too.
    ///
    /// Example: prokit search '/usr/bin/*'
    Search {
        #[arg(value_name = "FILE-GLOB")]
        glob: String,
    },
    /// The installed packages that depend on PKG (or on what it provides); -r follows the
    /// chain (what depends on those, and so on).
    Whatdepends {
        /// Recursively.
        #[arg(short = 'r', long)]
        recursive: bool,
        #[arg(value_name = "PKG")]
        package: String,
    },
    /// The packages, installed or in the verified feeds, that are or provide NAME.
    Whatprovides {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// The Depends and Pre-Depends of PKG: the installed version, or else the newest the
    /// feeds offer.
    Depends {
        #[arg(value_name = "PKG")]
        package: String,
    },
    /// Compare two versions as opkg does; exit 0 when `V1 OP V2` holds, 1 when not. OP is
    /// one of <= >= << >> = (and < > as opkg reads them: <= and >=).
    ///
    /// Example: prokit compare-versions 1.2.0-r1 '<<' 1.2.0-r2 && echo older
    #[command(alias = "compare_versions")]
    CompareVersions { v1: String, op: String, v2: String },
    /// Print the accepted architectures and their priorities (`arch` lines), as opkg does.
    #[command(alias = "print_architecture")]
    PrintArchitecture,
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: prokit completions bash > /etc/bash_completion.d/prokit
    Completions {
        #[arg(value_enum)]
        shell: cli_support::Shell,
    },
    /// Write the man pages (prokit.1 and one per subcommand, prokit-install.1, …) into DIR.
    ///
    /// Example: prokit man /usr/local/share/man/man1
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// The audit trail: every security decision (feeds verified or refused, keyrings
    /// updated, packages verified, refused, installed, upgraded, removed, policy decisions)
    /// is one JSON line in <root>/var/log/prokit/audit.jsonl (`option audit_log PATH`, or
    /// `off`), each carrying the SHA-256 of the line before it.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Make a root filesystem in one shot (for build hosts; no root privileges needed):
    /// create ROOT, write its etc/opkg.conf and trusted keys, update, install PKG..., and
    /// optionally write a reproducible tarball (same inputs + SOURCE_DATE_EPOCH give the same
    /// bytes).
    Bootstrap(BootstrapArgs),
}

impl Command {
    /// The packages an install, review or bootstrap names, packed into one text
    /// ([`RequestList`]), with clap's strings freed: a bootstrap can name thousands, and
    /// they would otherwise be held through the whole install. Empty for other commands.
    fn take_requests(&mut self) -> RequestList {
        match self {
            Command::Install(InstallCmd { packages, .. })
            | Command::Review(ReviewCmd { packages, .. })
            | Command::Bootstrap(BootstrapArgs { packages, .. }) => {
                RequestList::new(std::mem::take(packages))
            }
            _ => RequestList::default(),
        }
    }
}

/// The requests as a message lists them.
fn joined(requested: &RequestList) -> String {
    requested.iter().collect::<Vec<_>>().join(", ")
}

#[derive(Args)]
struct InstallCmd {
    // Empty once `main` has taken them (`Command::take_requests`).
    #[arg(required = true, value_name = "PKG")]
    packages: Vec<String>,
    /// Print what each package will do (scripts, setuid files, devices, services, files
    /// taken over, ...; with -v each script's text) before installing it. On a terminal the
    /// review is always shown and asked about when a package requests more than plain
    /// files; --json prints it as one JSON document.
    #[arg(long)]
    review: bool,
    /// Do not ask: install after the review (the policy in etc/prokit/policy.conf still
    /// decides).
    #[arg(short = 'y', long)]
    yes: bool,
    #[command(flatten)]
    args: InstallArgs,
}

#[derive(Args)]
struct UpgradeCmd {
    #[arg(value_name = "PKG")]
    packages: Vec<String>,
    /// Do not ask: upgrade after the review (the policy still decides).
    #[arg(short = 'y', long)]
    yes: bool,
    #[command(flatten)]
    args: InstallArgs,
}

#[derive(Args)]
struct ReviewCmd {
    // Empty once `main` has taken them (`Command::take_requests`).
    #[arg(required = true, value_name = "PKG")]
    packages: Vec<String>,
    #[command(flatten)]
    args: InstallArgs,
}

#[derive(Args)]
struct RemoveArgs {
    #[arg(required = true, value_name = "PKG")]
    packages: Vec<String>,
    /// Remove even when other installed packages depend on them.
    #[arg(long)]
    force_depends: bool,
    /// Print what would be removed and change nothing.
    #[arg(long, visible_alias = "dry-run")]
    noaction: bool,
    /// Then remove the packages installed only as their dependencies that nothing else
    /// needs (as `prokit autoremove`).
    #[arg(long)]
    autoremove: bool,
    /// Maintainer scripts: run (the default for --root /, a device changing itself: as opkg,
    /// a failing postinst leaves the package unpacked for `prokit configure`), offline
    /// (another root, IPKG_INSTROOT=<root>, as OpenWrt's image build; a failure rolls the
    /// package back) or skip (the default for any other root; recorded in the database).
    #[arg(long, value_enum)]
    scripts: Option<Scripts>,
}

#[derive(Args)]
struct ListArgs {
    /// Installed packages only (not a `deinstall`/`not-installed` entry).
    #[arg(long)]
    installed: bool,
    /// Only names matching this glob (`*`, `?`), as opkg's `list PATTERN`.
    #[arg(value_name = "PATTERN")]
    pattern: Option<String>,
}

#[derive(Args)]
struct InfoArgs {
    /// A package name, or a glob (`*`, `?`) over names.
    #[arg(value_name = "PKG")]
    package: String,
}

#[derive(Args)]
struct VerifyArgs {
    #[arg(value_name = "PKG")]
    packages: Vec<String>,
    /// For packages without records, fetch the installed version's package through the
    /// verified feed index (the download cache first), compare every installed file with
    /// the package's own bytes, and keep the records for next time.
    #[arg(long)]
    from_feed: bool,
    /// Instead of the files: check the developer key each installed package was verified
    /// with (Signed-By in the status file) against the trusted keyring today, listing the
    /// packages whose key was revoked or retired since (exit 1 when one was revoked).
    #[arg(long, conflicts_with = "from_feed")]
    signatures: bool,
}

#[derive(Args)]
struct BootstrapArgs {
    #[arg(value_name = "ROOT")]
    target: PathBuf,
    /// A feed, NAME=URL (file://, http:// or https://); repeat for several.
    #[arg(long = "feed", value_name = "NAME=URL", required = true)]
    feeds: Vec<String>,
    /// A usign public key trusted for the feeds; repeat for several.
    #[arg(
        long = "pubkey",
        value_name = "FILE",
        required_unless_present = "keyring"
    )]
    pubkeys: Vec<PathBuf>,
    /// Trust a keyring instead (a keyring package or a `keyring` manifest with its .sig):
    /// its active feed keys, refreshed later by `prokit keyring refresh`.
    #[arg(long, value_name = "FILE|PKG", requires = "root_fingerprint")]
    keyring: Option<PathBuf>,
    /// The root key fingerprint you confirm for --keyring (never trust on first use).
    #[arg(long, value_name = "FP", requires = "keyring")]
    root_fingerprint: Option<String>,
    /// Architecture accepted, with an optional priority (higher wins): --arch all:1
    /// --arch x86_64:10. Without any, every architecture in the feeds is accepted.
    #[arg(long = "arch", value_name = "ARCH[:PRIO]")]
    arch: Vec<String>,
    /// Write a reproducible tarball of the root here (the root's audit log is left out:
    /// it records how the image was made, with times and pids).
    #[arg(long, value_name = "OUT.tar", conflicts_with_all = ["noaction", "download_only"])]
    tar: Option<PathBuf>,
    /// The new root's audit log (`option audit_log`): a path inside the root, or `off`
    /// (default var/log/prokit/audit.jsonl).
    #[arg(long, value_name = "PATH|off")]
    audit_log: Option<String>,
    // Empty once `main` has taken them (`Command::take_requests`).
    #[arg(required = true, value_name = "PKG")]
    packages: Vec<String>,
    #[command(flatten)]
    args: InstallArgs,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the log's hash chain: every line a record, each `prev` the SHA-256 of the line
    /// before, each record's own `hash`. Exit status: 0 the chain verifies (torn lines that a
    /// later record acknowledges are noted); 1 a line was changed, removed, inserted or moved
    /// (the first such line is named, with the hash expected and found); 2 the log cannot be
    /// read (missing, unreadable); 3 only the last line is torn (a write cut short; the next
    /// append repairs it).
    ///
    /// Example: prokit --root ./rootfs audit verify
    Verify {
        /// A log file on this host instead of the root's (read as given).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print the log for humans (or with --json, each record as its JSON line).
    ///
    /// Example: prokit audit show --since 2026-12-01 --event 'package-*'
    Show {
        /// A log file on this host instead of the root's.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Only records at or after DATE (YYYY-MM-DD, or RFC 3339 such as
        /// 2026-12-05T10:00:00Z).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only these events (a glob: package-*, feed-refused).
        #[arg(long, value_name = "NAME")]
        event: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuthCmd {
    /// Write FEED's credential (replacing an earlier one): a bearer token, or a login and
    /// password, each read from the first line of a file (one trailing newline removed; an
    /// empty file is refused). Secrets are never taken from the command line.
    Set(AuthSetArgs),
    /// Show every credential: the machine it is for, where it is written, the login; never
    /// a secret.
    List,
    /// Remove FEED's credential file.
    Remove {
        #[arg(value_name = "FEED")]
        feed: String,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("secret").required(true).args(["token_file", "password_file"])))]
struct AuthSetArgs {
    /// The feed (a `src`/`src/gz` name of opkg.conf).
    #[arg(value_name = "FEED")]
    feed: String,
    /// A bearer token (sent as `Authorization: Bearer`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The login for basic auth (with --password-file).
    #[arg(long, value_name = "USER", requires = "password_file")]
    login: Option<String>,
    /// The password for basic auth (with --login).
    #[arg(long, value_name = "FILE", requires = "login")]
    password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeyringCmd {
    /// Install the first trust: a keyring package or manifest, signed by the root key whose
    /// fingerprint you confirm (a mismatch is refused). Adds `option keyring NAME` to
    /// <root>/etc/opkg.conf; from then on `prokit update` trusts exactly the keyring's active
    /// feed keys.
    Init(KeyringInitArgs),
    /// Update the feeds, fetch the newest keyring package, verify the whole chain from the
    /// trusted serial (thresholds, revocations, rollback, forks, expiry) and apply it
    /// atomically. Prints "updated to serial N" or "already at serial N"; exits non-zero
    /// with the reason on any refusal, changing nothing. Safe to run from cron: concurrent
    /// runs serialise.
    Refresh,
    /// Print the trusted keyrings' keys, roles, states and expiries; exit 1 when anything
    /// expires within --warn-days days.
    Status(KeyringStatusArgs),
}

#[derive(Args)]
struct KeyringInitArgs {
    #[arg(long, value_name = "FILE|PKG")]
    keyring: PathBuf,
    #[arg(long, value_name = "FP")]
    root_fingerprint: String,
}

#[derive(Args)]
struct KeyringStatusArgs {
    #[arg(long, value_name = "N", default_value_t = 30)]
    warn_days: u32,
}

fn parse_fp(text: &str) -> Result<feeds::usign::Fingerprint> {
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a key fingerprint (16 hex digits)"))
}

fn date(t: i64) -> String {
    feeds::release::format_date(t)
}

/// Draws progress on stderr.
struct Reporter {
    quiet: bool,
    verbose: bool,
    /// stderr is a terminal: downloads show a progress line there (plain lines otherwise).
    terminal: bool,
    bar: std::sync::OnceLock<indicatif::ProgressBar>,
    fetched: std::sync::atomic::AtomicU64,
    cached: std::sync::atomic::AtomicU64,
}

impl Reporter {
    /// The progress line, made on the first download (never with -q or off a terminal).
    fn bar(&self) -> Option<&indicatif::ProgressBar> {
        if self.quiet || !self.terminal {
            return None;
        }
        Some(self.bar.get_or_init(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        }))
    }

    /// Prints through the progress line when there is one, so that neither garbles the other.
    fn print(&self, f: impl FnOnce()) {
        match self.bar.get() {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Reporter {
    fn message(&self, text: &str) {
        if !self.quiet {
            self.print(|| eprintln!("{text}"));
        }
    }
    fn downloaded(&self, file: &str, cached: bool) {
        use std::sync::atomic::Ordering;
        let n = self.fetched.fetch_add(1, Ordering::Relaxed) + 1;
        let c = self.cached.fetch_add(u64::from(cached), Ordering::Relaxed) + u64::from(cached);
        if self.verbose {
            let how = if cached { "cached" } else { "downloaded" };
            self.print(|| eprintln!("{how} {file}"));
        }
        if let Some(bar) = self.bar() {
            bar.set_message(format!(
                "{n} packages downloaded and verified ({c} from the cache)"
            ));
        }
    }
    fn installed(&self, r: &InstallReport) {
        if !self.quiet {
            // A closed stdout must not stop an install half-way: the line is dropped.
            self.print(|| {
                let _ = match &r.upgraded_from {
                    Some(old) if *old == r.version => {
                        cli_support::outln!("Reinstalled {} {}", r.name, r.version)
                    }
                    Some(old) => {
                        cli_support::outln!("Upgraded {} {} -> {}", r.name, old, r.version)
                    }
                    None => cli_support::outln!("Installed {} {}", r.name, r.version),
                };
            });
        }
    }
}

fn parse_arch(a: &str) -> Result<(String, u32)> {
    match a.split_once(':') {
        Some((name, prio)) => Ok((
            name.to_string(),
            prio.parse()
                .with_context(|| format!("--arch {a}: priority {prio:?} is not a number"))?,
        )),
        None => Ok((a.to_string(), 1)),
    }
}

/// `SOURCE_DATE_EPOCH`, read by the one strict reader both binaries share: a value that is
/// not a date is an error naming it, never silently ignored.
fn source_date_epoch() -> Result<Option<i64>> {
    Ok(feeds::release::source_date_epoch()?)
}

impl Cli {
    fn reporter(&self) -> Reporter {
        use std::io::IsTerminal;
        Reporter {
            quiet: self.quiet,
            verbose: self.verbose,
            terminal: std::io::stderr().is_terminal() && !self.json,
            bar: std::sync::OnceLock::new(),
            fetched: Default::default(),
            cached: Default::default(),
        }
    }

    /// The library's options for the root at `root`, with the install flags when given.
    fn options(&self, root: &Path, args: Option<&InstallArgs>) -> Result<Options> {
        let mut o = Options::new(root.to_path_buf());
        o.conf = self.conf.clone();
        o.cache_dir = self.cache_dir.clone();
        o.ca_file = self.ca_file.clone();
        if let Some(t) = source_date_epoch()? {
            o.installed_time = t;
        }
        if let Some(a) = args {
            o.assume_installed = a.assume_installed.clone();
            o.scripts = script_mode(a.scripts, root);
            o.allow_special = a.allow_special;
            o.allow_trust_changes = a.allow_trust_changes;
            o.jobs = a.jobs.max(1);
            o.keep_cache = a.keep_cache;
            o.force_hold = a.force_hold;
            o.force_reinstall = a.force_reinstall;
            o.force_overwrite = a.force_overwrite;
            o.install_recommends = !a.no_install_recommends;
            o.download_only = a.download_only;
            // The cache is what --download-only is for.
            o.keep_cache |= a.download_only;
        }
        Ok(o)
    }

    /// A client of `--root`; what opening it found worth a warning goes to stderr.
    fn client(&self, args: Option<&InstallArgs>) -> Result<Client> {
        self.open_client(self.options(&self.root, args)?)
    }

    /// Opens the client with `opts`, printing what opening the root found worth a warning.
    fn open_client(&self, opts: Options) -> Result<Client> {
        let client = Client::open(opts)?;
        if !self.quiet {
            for w in client.warnings() {
                eprintln!("warning: {w}");
            }
        }
        Ok(client)
    }
}

fn main() -> ExitCode {
    cli_support::tune_allocator();
    cli_support::limit_arenas(2);
    let mut cli = Cli::parse();
    let requested = cli.command.take_requests();
    match run(&cli, requested) {
        Ok(code) => code,
        // `prokit list | head`: the reader went away; that is a normal end.
        Err(e) if cli_support::is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli_support::error_message(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

/// `requested`: the packages an install, review or bootstrap names ([`Command::take_requests`]).
fn run(cli: &Cli, requested: RequestList) -> Result<ExitCode> {
    match &cli.command {
        Command::Update => cmd_update(cli),
        Command::Install(a) => cmd_install(cli, a, &requested),
        Command::Review(a) => cmd_review(cli, a, &requested),
        Command::Remove(a) => cmd_remove(cli, a),
        Command::Autoremove { noaction } => cmd_autoremove(cli, *noaction),
        Command::Upgrade(a) => cmd_upgrade(cli, a),
        Command::ListUpgradable => cmd_list_upgradable(cli),
        Command::Download { packages } => cmd_download(cli, packages),
        Command::Flag { flag, packages } => cmd_flag(cli, flag, packages),
        Command::Configure { packages, scripts } => cmd_configure(cli, packages, *scripts),
        Command::List(a) => cmd_list(cli, a),
        Command::Info(a) => cmd_info(cli, a),
        Command::Verify(a) => cmd_verify(cli, a),
        Command::Keyring(KeyringCmd::Init(a)) => cmd_keyring_init(cli, a),
        Command::Keyring(KeyringCmd::Refresh) => cmd_keyring_refresh(cli),
        Command::Keyring(KeyringCmd::Status(a)) => cmd_keyring_status(cli, a),
        Command::Bootstrap(a) => cmd_bootstrap(cli, a, requested),
        Command::Files { package } => cmd_files(cli, package),
        Command::Search { glob } => cmd_search(cli, glob),
        Command::Whatdepends { recursive, package } => cmd_whatdepends(cli, package, *recursive),
        Command::Whatprovides { name } => cmd_whatprovides(cli, name),
        Command::Depends { package } => cmd_depends(cli, package),
        Command::CompareVersions { v1, op, v2 } => cmd_compare_versions(v1, op, v2),
        Command::PrintArchitecture => cmd_print_architecture(cli),
        Command::Completions { shell } => {
            cli_support::write_completions(&mut <Cli as clap::CommandFactory>::command(), *shell)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            for p in cli_support::write_man_pages(&<Cli as clap::CommandFactory>::command(), dir)
                .with_context(|| dir.display().to_string())?
            {
                cli_support::outln!("{}", p.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Auth(AuthCmd::Set(a)) => cmd_auth_set(cli, a),
        Command::Auth(AuthCmd::List) => cmd_auth_list(cli),
        Command::Auth(AuthCmd::Remove { feed }) => cmd_auth_remove(cli, feed),
        Command::Audit(AuditCmd::Verify { file }) => cmd_audit_verify(cli, file.as_deref()),
        Command::Audit(AuditCmd::Show { file, since, event }) => {
            cmd_audit_show(cli, file.as_deref(), since.as_deref(), event.as_deref())
        }
    }
}

/// A value as one line of JSON on standard output.
fn print_json(value: &impl Serialize) -> Result<()> {
    cli_support::outln!("{}", serde_json::to_string(value)?)?;
    Ok(())
}

/// One feed of `prokit --json update`; the field order is the key order.
#[derive(Serialize)]
#[serde(untagged)]
enum UpdateJson<'a> {
    Updated {
        feed: &'a str,
        ok: bool,
        packages: usize,
        unchanged: bool,
        fingerprint: Option<&'a str>,
        /// The URL (the feed's or a mirror's) whose index was accepted.
        served_by: Option<&'a str>,
        skipped: Vec<SkippedJson<'a>>,
    },
    Failed {
        feed: &'a str,
        ok: bool,
        error: String,
        skipped: Vec<SkippedJson<'a>>,
    },
}

#[derive(Serialize)]
struct SkippedJson<'a> {
    url: &'a str,
    reason: &'a str,
}

fn cmd_update(cli: &Cli) -> Result<ExitCode> {
    let outcomes = cli.client(None)?.update()?;
    let mut failed = 0;
    let mut json = Vec::new();
    for o in &outcomes {
        let skipped: Vec<SkippedJson> = o
            .skipped
            .iter()
            .map(|(url, reason)| SkippedJson { url, reason })
            .collect();
        let mirrored = !o.skipped.is_empty();
        match &o.result {
            Ok(r) => {
                if !cli.quiet && !cli.json {
                    for (url, reason) in &o.skipped {
                        eprintln!("warning: feed {}: {url} skipped: {reason}", o.name);
                    }
                }
                if !cli.quiet && !cli.json {
                    let by = r
                        .fingerprint
                        .as_deref()
                        .map(|f| format!(", signed by {f}"))
                        .unwrap_or_default();
                    let from = match (&o.served_by, mirrored) {
                        (Some(url), true) => format!(", from mirror {url}"),
                        (Some(url), false) if cli.verbose => format!(", from {url}"),
                        _ => String::new(),
                    };
                    let state = if r.unchanged { "unchanged" } else { "updated" };
                    cli_support::outln!("{}: {state}, {} packages{by}{from}", o.name, r.packages)?;
                }
                json.push(UpdateJson::Updated {
                    feed: &o.name,
                    ok: true,
                    packages: r.packages,
                    unchanged: r.unchanged,
                    fingerprint: r.fingerprint.as_deref(),
                    served_by: o.served_by.as_deref(),
                    skipped,
                });
            }
            Err(e) => {
                failed += 1;
                if o.skipped.len() > 1 {
                    eprintln!(
                        "error: feed {}: every URL failed ({} tried):",
                        o.name,
                        o.skipped.len()
                    );
                    for (url, reason) in &o.skipped {
                        eprintln!("  {url}: {reason}");
                    }
                } else {
                    eprintln!("error: {e}");
                }
                json.push(UpdateJson::Failed {
                    feed: &o.name,
                    ok: false,
                    error: e.to_string(),
                    skipped,
                });
            }
        }
    }
    if cli.json {
        print_json(&json)?;
    }
    if failed > 0 {
        eprintln!(
            "prokit: {failed} of {} feeds failed to update; their last good index is kept",
            outcomes.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `install` shows and asks before changing anything (`client::Gate`).
struct ReviewGate<'a> {
    cli: &'a Cli,
    /// Print the reviews (--review, -v, --json, or a terminal).
    show: bool,
    /// Ask on the terminal when a package requests more than plain files.
    ask: bool,
    /// `prokit review`: show, then stop with nothing changed.
    only: bool,
    shown: Vec<Review>,
}

impl client::Gate for ReviewGate<'_> {
    fn wants_review(&self) -> bool {
        self.show || self.ask || self.only
    }

    fn review_only(&self) -> bool {
        self.only
    }

    fn confirm(&mut self, reviews: &[Review]) -> bool {
        self.shown = reviews.to_vec();
        if !self.cli.json && (self.show || self.ask) {
            // Asked without --review: only what needs an answer is shown.
            let mut plain = 0;
            for r in reviews {
                if !self.show && !r.requests_permissions() {
                    plain += 1;
                    continue;
                }
                // A closed stdout must not decide the answer: the text is dropped.
                let _ = cli_support::write_stdout(format_args!(
                    "{}",
                    review::render(r, self.cli.verbose)
                ));
            }
            if plain > 0 {
                let _ = cli_support::outln!("{plain} more packages place plain files only");
            }
        }
        if self.cli.json && !self.only {
            let _ = print_json(&ReviewJson::new(reviews));
        }
        if self.only {
            return false;
        }
        if self.ask && reviews.iter().any(Review::requests_permissions) {
            return ask_yes_no("Install these packages with the permissions listed above?");
        }
        true
    }
}

/// One `--json` review document: what a UI needs for an "this app requests …" prompt.
#[derive(Serialize)]
struct ReviewJson<'a> {
    requests_permissions: bool,
    packages: &'a [Review],
}

impl<'a> ReviewJson<'a> {
    fn new(packages: &'a [Review]) -> Self {
        ReviewJson {
            requests_permissions: packages.iter().any(Review::requests_permissions),
            packages,
        }
    }
}

/// Asks on the terminal; anything but y/yes is no.
fn ask_yes_no(question: &str) -> bool {
    use std::io::Write;
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn cmd_install(cli: &Cli, a: &InstallCmd, requested: &RequestList) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut gate = ReviewGate {
        cli,
        show: a.review || cli.json || cli.verbose,
        ask: terminal && !a.yes,
        only: false,
        shown: Vec::new(),
    };
    let client = cli.client(Some(&a.args))?;
    if a.args.noaction {
        print_plan(cli, &client.plan(requested, false, &cli.reporter())?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let installed = client.install_gated(requested, &cli.reporter(), &mut gate)?;
    if a.args.download_only {
        return Ok(ExitCode::SUCCESS);
    }
    if installed == 0 && !cli.quiet {
        cli_support::outln!("Nothing to do: {} already installed", joined(requested))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_upgrade(cli: &Cli, a: &UpgradeCmd) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut gate = ReviewGate {
        cli,
        show: cli.json || cli.verbose,
        ask: terminal && !a.yes,
        only: false,
        shown: Vec::new(),
    };
    let client = cli.client(Some(&a.args))?;
    if a.args.noaction {
        let (targets, held) = client.upgrade_targets(&a.packages, &cli.reporter())?;
        for h in &held {
            eprintln!(
                "Not upgrading {} {} to {}: held",
                h.name, h.installed, h.available
            );
        }
        let plan = if targets.is_empty() {
            client::PlanReport {
                steps: Vec::new(),
                removes: Vec::new(),
                already_installed: Vec::new(),
            }
        } else {
            client.plan(&RequestList::new(targets), true, &cli.reporter())?
        };
        print_plan(cli, &plan)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (upgraded, held) = client.upgrade_gated(&a.packages, &cli.reporter(), &mut gate)?;
    if a.args.download_only {
        return Ok(ExitCode::SUCCESS);
    }
    if !cli.quiet {
        for h in &held {
            eprintln!(
                "Not upgrading {} {} to {}: held (prokit flag ok {} releases it)",
                h.name, h.installed, h.available, h.name
            );
        }
        if upgraded == 0 {
            cli_support::outln!("Nothing to upgrade")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_autoremove(cli: &Cli, noaction: bool) -> Result<ExitCode> {
    let client = cli.client(None)?;
    autoremove_with(cli, &client, noaction)
}

fn autoremove_with(cli: &Cli, client: &Client, noaction: bool) -> Result<ExitCode> {
    let orphans = client.orphans()?;
    if noaction {
        if cli.json {
            print_json(&orphans)?;
        } else {
            for o in &orphans {
                cli_support::outln!("Would remove {o} (no longer needed)")?;
            }
            cli_support::outln!("Nothing was changed (--noaction).")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if orphans.is_empty() {
        if !cli.quiet {
            cli_support::outln!("Nothing to remove: every auto-installed package is needed")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    for r in client.remove(&orphans, false, &cli.reporter())? {
        if !cli.quiet {
            cli_support::outln!("Removed {} (no longer needed)", r.name)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan of `--noaction`.
fn print_plan(cli: &Cli, plan: &client::PlanReport) -> Result<()> {
    if cli.json {
        return print_json(plan);
    }
    for r in &plan.removes {
        cli_support::outln!("Would remove {r} (replaced)")?;
    }
    for s in &plan.steps {
        let why = if s.auto && s.from.is_none() {
            ", dependency"
        } else {
            ""
        };
        match &s.from {
            Some(from) => cli_support::outln!(
                "Would upgrade {} {from} -> {} (feed {}, {} bytes{why})",
                s.name,
                s.version,
                s.feed,
                s.size
            )?,
            None => cli_support::outln!(
                "Would install {} {} (feed {}, {} bytes{why})",
                s.name,
                s.version,
                s.feed,
                s.size
            )?,
        }
    }
    for a in &plan.already_installed {
        cli_support::outln!("{a} is already installed at that version")?;
    }
    let total: u64 = plan.steps.iter().map(|s| s.size).sum();
    cli_support::outln!(
        "{} package(s) to download, {total} bytes; nothing was changed (--noaction).",
        plan.steps.len()
    )?;
    Ok(())
}

/// `prokit download PKG…` into the current directory.
fn cmd_download(cli: &Cli, packages: &[String]) -> Result<ExitCode> {
    let dir = std::env::current_dir()?;
    for path in cli
        .client(None)?
        .download_to(packages, &dir, &cli.reporter())?
    {
        if !cli.quiet {
            cli_support::outln!("Downloaded {}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_list_upgradable(cli: &Cli) -> Result<ExitCode> {
    let list = cli.client(None)?.upgradable(&cli.reporter())?;
    if cli.json {
        print_json(&list)?;
    } else {
        for u in &list {
            let held = if u.held { " [held]" } else { "" };
            cli_support::outln!("{} - {} - {}{held}", u.name, u.installed, u.available)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_flag(cli: &Cli, flag: &str, packages: &[String]) -> Result<ExitCode> {
    cli.client(None)?.flag(flag, packages)?;
    if !cli.quiet {
        for p in packages {
            cli_support::outln!("Setting flags for package {p} to {flag}.")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_configure(cli: &Cli, packages: &[String], scripts: Option<Scripts>) -> Result<ExitCode> {
    let mut o = cli.options(&cli.root, None)?;
    o.scripts = match script_mode(scripts, &cli.root) {
        // Configuring another root means running its scripts for it.
        ScriptMode::Skip => ScriptMode::Offline,
        m => m,
    };
    let client = cli.open_client(o)?;
    let done = client.configure(packages)?;
    if cli.json {
        cli_support::outln!("{}", serde_json::json!({ "configured": done }))?;
    } else if !cli.quiet {
        for p in &done {
            cli_support::outln!("Configuring {p}.")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_review(cli: &Cli, a: &ReviewCmd, requested: &RequestList) -> Result<ExitCode> {
    let mut gate = ReviewGate {
        cli,
        show: true,
        ask: false,
        only: true,
        shown: Vec::new(),
    };
    match cli
        .client(Some(&a.args))?
        .install_gated(requested, &cli.reporter(), &mut gate)
    {
        Err(client::ClientError::Declined) => {
            if cli.json {
                print_json(&ReviewJson::new(&gate.shown))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => {
            if !cli.quiet {
                cli_support::outln!("Nothing to review: {} already installed", joined(requested))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

fn cmd_remove(cli: &Cli, a: &RemoveArgs) -> Result<ExitCode> {
    let mut o = cli.options(&cli.root, None)?;
    o.scripts = script_mode(a.scripts, &cli.root);
    let client = Client::open(o)?;
    if a.noaction {
        let plan = client.remove_plan(&a.packages, a.force_depends, &cli.reporter())?;
        if cli.json {
            let items: Vec<serde_json::Value> = plan
                .iter()
                .map(|(n, v, f)| serde_json::json!({ "name": n, "version": v, "files": f }))
                .collect();
            print_json(&items)?;
        } else {
            for (n, v, f) in &plan {
                cli_support::outln!("Would remove {n} {v} ({f} files)")?;
            }
            cli_support::outln!("Nothing was changed (--noaction).")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let autoremove = a.autoremove;
    for r in client.remove(&a.packages, a.force_depends, &cli.reporter())? {
        if !cli.quiet {
            cli_support::outln!("Removed {}", r.name)?;
            for c in &r.kept_conffiles {
                cli_support::outln!("  kept modified conffile {c}")?;
            }
        }
    }
    if autoremove {
        return autoremove_with(cli, &client, false);
    }
    Ok(ExitCode::SUCCESS)
}

/// One package of `prokit --json list`.
#[derive(Serialize)]
struct ListJson<'a> {
    package: &'a str,
    version: &'a str,
    architecture: &'a str,
    feed: Option<&'a str>,
    installed: bool,
    summary: &'a str,
}

impl<'a> From<&'a ListEntry> for ListJson<'a> {
    fn from(e: &'a ListEntry) -> Self {
        ListJson {
            package: &e.name,
            version: &e.version,
            architecture: &e.architecture,
            feed: e.feed.as_deref(),
            installed: e.installed,
            summary: &e.summary,
        }
    }
}

fn cmd_list(cli: &Cli, a: &ListArgs) -> Result<ExitCode> {
    let mut list = cli.client(None)?.list(a.installed, &cli.reporter())?;
    if let Some(p) = &a.pattern {
        list.retain(|e| prokit::query::glob_matches(p, &e.name));
    }
    if cli.json {
        print_json(&list.iter().map(ListJson::from).collect::<Vec<_>>())?;
    } else {
        for e in &list {
            let mark = if e.installed && e.feed.is_some() {
                " [installed]"
            } else {
                ""
            };
            if e.summary.is_empty() {
                cli_support::outln!("{} - {}{mark}", e.name, e.version)?;
            } else {
                cli_support::outln!("{} - {} - {}{mark}", e.name, e.version, e.summary)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One stanza of `prokit --json info`: `feed` is null for the installed one.
#[derive(Serialize)]
struct InfoJson<'a> {
    feed: Option<&'a str>,
    stanza: String,
}

fn cmd_info(cli: &Cli, a: &InfoArgs) -> Result<ExitCode> {
    let found = cli.client(None)?.info(&a.package, &cli.reporter())?;
    if found.is_empty() {
        bail!("package {} is neither installed nor in any feed", a.package);
    }
    if cli.json {
        let items: Vec<InfoJson> = found
            .iter()
            .map(|(feed, p)| InfoJson {
                feed: feed.as_deref(),
                stanza: p.to_text(),
            })
            .collect();
        print_json(&items)?;
    } else {
        for (feed, p) in &found {
            match feed {
                None => cli_support::outln!("# installed")?,
                Some(f) => cli_support::outln!("# feed {f}")?,
            }
            cli_support::outln!("{}", p.to_text())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `prokit --json verify`; the field order is the key order.
#[derive(Serialize)]
struct VerifyJson<'a> {
    ok: bool,
    complete: bool,
    checked: usize,
    dirs: usize,
    changed: Vec<FileJson<'a>>,
    missing: Vec<FileJson<'a>>,
    conffiles_changed: Vec<FileJson<'a>>,
    unverifiable: Vec<FileJson<'a>>,
    recorded_from_feed: Vec<RecordedJson<'a>>,
}

/// An installed file and its package.
#[derive(Serialize)]
struct FileJson<'a> {
    package: &'a str,
    path: &'a str,
}

impl<'a> VerifyJson<'a> {
    fn new(r: &'a VerifyReport, recorded: &'a [Recorded]) -> Self {
        VerifyJson {
            ok: r.ok(),
            complete: r.complete(),
            checked: r.checked,
            dirs: r.dirs,
            changed: FileJson::list(&r.changed),
            missing: FileJson::list(&r.missing),
            conffiles_changed: FileJson::list(&r.conffiles_changed),
            unverifiable: FileJson::list(&r.unverifiable),
            recorded_from_feed: recorded.iter().map(RecordedJson::from).collect(),
        }
    }
}

impl<'a> FileJson<'a> {
    fn list(files: &'a [(String, String)]) -> Vec<Self> {
        files
            .iter()
            .map(|(package, path)| FileJson { package, path })
            .collect()
    }
}

/// A package whose records `--from-feed` made: `feed` when it did, `error` when it could not.
#[derive(Serialize)]
struct RecordedJson<'a> {
    package: &'a str,
    version: &'a str,
    recorded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    feed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<'a> From<&'a Recorded> for RecordedJson<'a> {
    fn from(x: &'a Recorded) -> Self {
        RecordedJson {
            package: &x.package,
            version: &x.version,
            recorded: x.result.is_ok(),
            feed: x.result.as_deref().ok(),
            error: x.result.as_deref().err().map(String::as_str),
        }
    }
}

fn cmd_verify(cli: &Cli, a: &VerifyArgs) -> Result<ExitCode> {
    let client = cli.client(None)?;
    let only = (!a.packages.is_empty()).then_some(a.packages.as_slice());
    if a.signatures {
        let findings = client.verify_signatures(only)?;
        for f in &findings {
            cli_support::outln!(
                "{}: {} {}: {}",
                if f.revoked { "REVOKED" } else { "warning" },
                f.package,
                f.version,
                f.reason
            )?;
        }
        let revoked = findings.iter().filter(|f| f.revoked).count();
        if !cli.quiet {
            eprintln!(
                "prokit: developer signatures: {revoked} revoked, {} other warnings",
                findings.len() - revoked
            );
        }
        return Ok(if revoked > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let (r, recorded) = if a.from_feed {
        client.verify_from_feed(only, &cli.reporter())?
    } else {
        (client.verify(only)?, Vec::new())
    };
    if cli.json {
        print_json(&VerifyJson::new(&r, &recorded))?;
    } else {
        for (p, f) in &r.changed {
            cli_support::outln!("changed: {f} ({p})")?;
        }
        for (p, f) in &r.missing {
            cli_support::outln!("missing: {f} ({p})")?;
        }
        for (p, f) in &r.conffiles_changed {
            cli_support::outln!("conffile modified: {f} ({p})")?;
        }
        for x in &recorded {
            if let Err(why) = &x.result {
                eprintln!("prokit: {} {}: {why}", x.package, x.version);
            }
        }
        if cli.verbose {
            for (p, f) in &r.unverifiable {
                cli_support::outln!("not verifiable: {f} ({p})")?;
            }
        }
        if !cli.quiet {
            cli_support::outln!(
                "{} files checked: {} changed, {} missing, {} conffiles modified ({} directories)",
                r.checked,
                r.changed.len(),
                r.missing.len(),
                r.conffiles_changed.len(),
                r.dirs
            )?;
        }
        if !r.complete() {
            let pkgs = r.unverifiable_packages();
            eprintln!(
                "{} files not verifiable: installed by another tool (no prokit record) in {} package{}: {}; `prokit verify --from-feed` checks them against the feed",
                r.unverifiable.len(),
                pkgs.len(),
                if pkgs.len() == 1 { "" } else { "s" },
                pkgs.join(", ")
            );
        }
    }
    Ok(if !r.ok() {
        ExitCode::from(1)
    } else if !r.complete() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// The log to read: FILE as given, or the root's (opened through the root).
fn audit_source(cli: &Cli, file: Option<&Path>) -> Result<(std::fs::File, PathBuf)> {
    if let Some(f) = file {
        let opened =
            std::fs::File::open(f).with_context(|| format!("{}: cannot open", f.display()))?;
        return Ok((opened, f.to_path_buf()));
    }
    cli.client(None)?.open_audit_log()?.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no audit log (nothing recorded yet, or option audit_log off)",
            cli.root.display()
        )
    })
}

fn cmd_audit_verify(cli: &Cli, file: Option<&Path>) -> Result<ExitCode> {
    // Exit 2 when the log cannot be read at all: 1 says it was tampered with.
    let (f, path) = match audit_source(cli, file) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {}", cli_support::error_message(e.as_ref()));
            return Ok(ExitCode::from(2));
        }
    };
    match audit_log::verify_from(std::io::BufReader::new(f), &path) {
        Ok(report) => {
            for note in report.notes() {
                eprintln!("note: {}: {note}", path.display());
            }
            if !cli.quiet {
                cli_support::outln!(
                    "{}: {} records, chain verifies; last line's SHA-256 {}",
                    path.display(),
                    report.records,
                    report.last_hash
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ audit_log::Error::TornLastLine { .. }) => {
            eprintln!("prokit: {e}");
            Ok(ExitCode::from(3))
        }
        Err(e @ audit_log::Error::Fs(_)) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("prokit: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn cmd_audit_show(
    cli: &Cli,
    file: Option<&Path>,
    since: Option<&str>,
    event: Option<&str>,
) -> Result<ExitCode> {
    let (f, path) = audit_source(cli, file)?;
    let mut filter = audit_log::Filter::default();
    if let Some(s) = since {
        filter = filter.since(s).with_context(|| format!("--since {s:?}"))?;
    }
    if let Some(e) = event {
        filter = filter.event(e);
    }
    let listing = audit_log::read_from(std::io::BufReader::new(f), &path)?;
    for r in listing.records.iter().filter(|r| filter.matches(r)) {
        if cli.json {
            cli_support::outln!("{}", r.raw)?;
        } else {
            cli_support::outln!("{}", audit_log::human(r))?;
        }
    }
    for line in &listing.skipped {
        eprintln!(
            "note: {}: line {line} is not a record (torn or damaged; see prokit audit verify)",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_keyring_init(cli: &Cli, a: &KeyringInitArgs) -> Result<ExitCode> {
    let o = cli.options(&cli.root, None)?;
    let fp = parse_fp(&a.root_fingerprint)?;
    let result = prokit::keyring::init(&o.root, &a.keyring, fp, o.now);
    // The decision goes to the root's audit trail (a root that cannot be opened has none).
    if let Ok(client) = cli.client(None) {
        let outcome = result.as_ref().map_err(|e| e.to_string());
        if let Err(e) = client.audit_keyring_init(outcome, &fp.to_string()) {
            if result.is_ok() {
                return Err(e.into());
            }
            eprintln!("warning: {e}");
        }
    }
    let r = result?;
    if !cli.quiet {
        cli_support::outln!(
            "trusting keyring {} serial {} ({} feed keys written)",
            r.name,
            r.serial,
            r.keys_written.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_keyring_refresh(cli: &Cli) -> Result<ExitCode> {
    let r = cli.client(None)?.refresh_keyring(&cli.reporter())?;
    if !cli.quiet {
        match r.from {
            Some(from) => cli_support::outln!(
                "keyring {}: updated to serial {} (from {from})",
                r.name,
                r.serial
            )?,
            None => cli_support::outln!("keyring {}: already at serial {}", r.name, r.serial)?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_files(cli: &Cli, package: &str) -> Result<ExitCode> {
    let db = cli.client(None)?.installed_db()?;
    let files = prokit::query::files(&db, package)?;
    if cli.json {
        print_json(&files)?;
    } else {
        if !cli.quiet {
            cli_support::outln!("Package {package} is installed and has these files:")?;
        }
        for f in &files {
            cli_support::outln!("{f}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_search(cli: &Cli, glob: &str) -> Result<ExitCode> {
    let db = cli.client(None)?.installed_db()?;
    let hits = prokit::query::search(&db, glob)?;
    if cli.json {
        let items: Vec<serde_json::Value> = hits
            .iter()
            .map(|(p, f)| serde_json::json!({ "package": p, "path": f }))
            .collect();
        print_json(&items)?;
    } else {
        for (p, f) in &hits {
            cli_support::outln!("{p} - {f}")?;
        }
    }
    // As grep: no match is exit status 1.
    Ok(if hits.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_whatdepends(cli: &Cli, package: &str, recursive: bool) -> Result<ExitCode> {
    let db = cli.client(None)?.installed_db()?;
    let found = prokit::query::whatdepends(&db, package, recursive)?;
    if cli.json {
        print_json(&found)?;
    } else {
        if !cli.quiet {
            cli_support::outln!("What depends on {package}:")?;
        }
        for p in &found {
            cli_support::outln!("\t{p}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_whatprovides(cli: &Cli, name: &str) -> Result<ExitCode> {
    let client = cli.client(None)?;
    let db = client.installed_db()?;
    let available = client.available(&cli.reporter())?;
    let found = prokit::query::whatprovides(&db, &available, name)?;
    if cli.json {
        let items: Vec<serde_json::Value> = found
            .iter()
            .map(|(p, v, w)| serde_json::json!({ "package": p, "version": v, "where": w }))
            .collect();
        print_json(&items)?;
    } else {
        if !cli.quiet {
            cli_support::outln!("What provides {name}:")?;
        }
        for (p, v, w) in &found {
            cli_support::outln!("\t{p} {v} ({w})")?;
        }
    }
    Ok(if found.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_depends(cli: &Cli, package: &str) -> Result<ExitCode> {
    let client = cli.client(None)?;
    let db = client.installed_db()?;
    let installed = db.installed(package)?.map(std::borrow::Cow::into_owned);
    let stanza = match installed {
        Some(p) => p,
        None => client
            .best_offer(package, &cli.reporter())?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "package {package} is neither installed nor offered for this machine's architectures by any feed"
                )
            })?,
    };
    let deps = prokit::query::depends(&stanza);
    if cli.json {
        print_json(&deps)?;
    } else {
        cli_support::outln!("{package} depends on:")?;
        for d in &deps {
            cli_support::outln!("\t{d}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_compare_versions(v1: &str, op: &str, v2: &str) -> Result<ExitCode> {
    match prokit::query::compare_versions(v1, op, v2) {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::from(1)),
        // Neither true nor false: exit 2, so that a script's `if` cannot take it for either.
        Err(e) => {
            eprintln!("error: compare-versions: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn cmd_print_architecture(cli: &Cli) -> Result<ExitCode> {
    let client = cli.client(None)?;
    let archs = client.architectures();
    if cli.json {
        let items: Vec<serde_json::Value> = archs
            .iter()
            .map(|(a, p)| serde_json::json!({ "arch": a, "priority": p }))
            .collect();
        print_json(&items)?;
    } else {
        for (a, p) in archs {
            cli_support::outln!("arch {a} {p}")?;
        }
        if archs.is_empty() && !cli.quiet {
            eprintln!("no arch lines: every architecture is accepted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The root and its configuration, for the auth commands (no credentials read: a broken
/// credentials file must not stop its own repair).
fn auth_root(cli: &Cli) -> Result<(safe_fs::Root, prokit::config::Config)> {
    let config = prokit::config::Config::load(&cli.root, cli.conf.as_deref())?;
    Ok((safe_fs::Root::open(&cli.root)?, config))
}

fn read_secret_file(path: &Path) -> Result<prokit::auth::Secret> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    prokit::auth::secret_from_file(&bytes, &path.display().to_string()).map_err(anyhow::Error::msg)
}

fn cmd_auth_set(cli: &Cli, a: &AuthSetArgs) -> Result<ExitCode> {
    use prokit::auth::Credential;
    let (root, config) = auth_root(cli)?;
    let Some(source) = config.sources.iter().find(|s| s.name == a.feed) else {
        bail!(
            "no feed {:?} in {}/etc/opkg.conf (the feeds: {})",
            a.feed,
            cli.root.display(),
            config
                .sources
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let credential = match (&a.token_file, &a.login, &a.password_file) {
        (Some(t), _, _) => Credential::Bearer {
            token: read_secret_file(t)?,
        },
        (None, Some(login), Some(p)) => Credential::Basic {
            login: login.clone(),
            password: read_secret_file(p)?,
        },
        _ => bail!("give --token-file FILE, or --login USER with --password-file FILE"),
    };
    let (file, machine) = prokit::auth::set(&root, &a.feed, &source.url, &credential)?;
    if !cli.quiet {
        cli_support::outln!(
            "{file}: {} for {machine} (feed {}), mode 0600",
            credential.masked(),
            a.feed
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_auth_list(cli: &Cli) -> Result<ExitCode> {
    let root = safe_fs::Root::open(&cli.root)?;
    let creds = prokit::auth::Credentials::load(&root)?;
    if cli.json {
        let entries: Vec<serde_json::Value> = creds
            .entries()
            .iter()
            .map(|e| {
                let (kind, login) = match &e.credential {
                    prokit::auth::Credential::Basic { login, .. } => ("basic", Some(login)),
                    prokit::auth::Credential::Bearer { .. } => ("token", None),
                };
                serde_json::json!({
                    "machine": e.machine.text,
                    "file": e.origin,
                    "kind": kind,
                    "login": login,
                })
            })
            .collect();
        cli_support::outln!("{}", serde_json::to_string(&entries)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for e in creds.entries() {
        cli_support::outln!(
            "machine {} {} ({})",
            e.machine.text,
            e.credential.masked(),
            e.origin
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_auth_remove(cli: &Cli, feed: &str) -> Result<ExitCode> {
    let root = safe_fs::Root::open(&cli.root)?;
    if !prokit::auth::remove(&root, feed)? {
        bail!(
            "no credentials file for feed {feed} (/{})",
            prokit::auth::feed_file(feed)
        );
    }
    if !cli.quiet {
        cli_support::outln!("/{}: removed", prokit::auth::feed_file(feed))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_keyring_status(cli: &Cli, a: &KeyringStatusArgs) -> Result<ExitCode> {
    let o = cli.options(&cli.root, None)?;
    let reports = prokit::keyring::status(&o.root, a.warn_days, o.now)?;
    if reports.is_empty() {
        bail!(
            "no trusted keyring in {}: run `prokit keyring init`",
            o.root.display()
        );
    }
    let mut ok = true;
    for r in &reports {
        ok &= r.ok();
        cli_support::outln!(
            "keyring {} serial {}, dated {}, expires {}{}; root threshold {}",
            r.name,
            r.serial,
            date(r.date),
            date(r.expires),
            if r.expiring { " (SOON)" } else { "" },
            r.root_threshold
        )?;
        for k in &r.keys {
            let until = k
                .not_after
                .map(|t| format!(", not after {}", date(t)))
                .unwrap_or_default();
            let soon = if k.expiring { " (EXPIRES SOON)" } else { "" };
            let scope = match (&k.scope, k.role.as_str()) {
                (Some(s), _) => format!(", packages {s}"),
                (None, "developer") => ", any package".to_string(),
                _ => String::new(),
            };
            cli_support::outln!(
                "  {} {} {}{scope}{until}{soon}",
                k.fingerprint,
                k.role,
                k.status
            )?;
        }
    }
    if !ok {
        eprintln!("prokit: something expires within {} days", a.warn_days);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_bootstrap(cli: &Cli, a: &BootstrapArgs, requested: RequestList) -> Result<ExitCode> {
    let feeds = a
        .feeds
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(n, u)| (n.to_string(), u.to_string()))
                .with_context(|| format!("--feed {f}: expected NAME=URL"))
        })
        .collect::<Result<Vec<_>>>()?;
    let arch = a
        .arch
        .iter()
        .map(|a| parse_arch(a))
        .collect::<Result<Vec<_>>>()?;
    let keyring = match (&a.keyring, &a.root_fingerprint) {
        (Some(k), Some(fp)) => Some((k.clone(), parse_fp(fp)?)),
        _ => None,
    };
    let b = Bootstrap {
        feeds,
        keyring,
        pubkeys: a.pubkeys.clone(),
        arch,
        packages: requested,
        tar: a.tar.clone(),
        tar_mtime: source_date_epoch()?.unwrap_or(0).max(0) as u64,
        audit_log: a.audit_log.clone(),
    };
    let options = cli.options(&a.target, Some(&a.args))?;
    if a.args.noaction {
        print_plan(cli, &client::bootstrap_plan(options, b, &cli.reporter())?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let installed = client::bootstrap(options, b, &cli.reporter())?;
    if a.args.download_only {
        if !cli.quiet {
            eprintln!(
                "prepared {} and downloaded its packages; nothing was installed (--download-only)",
                a.target.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !cli.quiet {
        eprintln!(
            "bootstrapped {} with {} package{}{}",
            a.target.display(),
            installed,
            if installed == 1 { "" } else { "s" },
            a.tar
                .as_ref()
                .map(|t| format!("; tarball {}", t.display()))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn update_json_has_the_keys_of_each_outcome_in_order() {
        let feeds = [
            UpdateJson::Updated {
                feed: "a",
                ok: true,
                packages: 3,
                unchanged: false,
                fingerprint: Some("53715f35adf4b2d5"),
                served_by: Some("http://a.example/feed"),
                skipped: vec![],
            },
            UpdateJson::Updated {
                feed: "b",
                ok: true,
                packages: 0,
                unchanged: true,
                fingerprint: None,
                served_by: Some("http://m2.example/b"),
                skipped: vec![SkippedJson {
                    url: "http://m1.example/b",
                    reason: "timed out",
                }],
            },
            UpdateJson::Failed {
                feed: "c",
                ok: false,
                error: "Packages.sig: starts with \"<html>\t\"\nx".into(),
                skipped: vec![],
            },
        ];
        assert_eq!(
            json(&feeds),
            concat!(
                r#"[{"feed":"a","ok":true,"packages":3,"unchanged":false,"fingerprint":"53715f35adf4b2d5","served_by":"http://a.example/feed","skipped":[]},"#,
                r#"{"feed":"b","ok":true,"packages":0,"unchanged":true,"fingerprint":null,"served_by":"http://m2.example/b","skipped":[{"url":"http://m1.example/b","reason":"timed out"}]},"#,
                r#"{"feed":"c","ok":false,"error":"Packages.sig: starts with \"<html>\t\"\nx","skipped":[]}]"#
            )
        );
    }

    #[test]
    fn list_and_info_json_have_null_for_the_installed_side() {
        let entries = [
            ListEntry {
                name: "hello".into(),
                version: "1.2.0-r1".into(),
                architecture: "all".into(),
                feed: Some("demo".into()),
                installed: true,
                summary: "Prints a \"friendly\" greeting.".into(),
            },
            ListEntry {
                name: "libgreet".into(),
                version: "0.9.4-r2".into(),
                architecture: "all".into(),
                feed: None,
                installed: true,
                summary: String::new(),
            },
        ];
        assert_eq!(
            json(&entries.iter().map(ListJson::from).collect::<Vec<_>>()),
            concat!(
                r#"[{"package":"hello","version":"1.2.0-r1","architecture":"all","feed":"demo","installed":true,"summary":"Prints a \"friendly\" greeting."},"#,
                r#"{"package":"libgreet","version":"0.9.4-r2","architecture":"all","feed":null,"installed":true,"summary":""}]"#
            )
        );
        let info = [InfoJson {
            feed: None,
            stanza: "Package: hello\nVersion: 1\n".into(),
        }];
        assert_eq!(
            json(&info),
            r#"[{"feed":null,"stanza":"Package: hello\nVersion: 1\n"}]"#
        );
    }

    #[test]
    fn verify_json_lists_files_and_what_from_feed_recorded() {
        let pair = |p: &str, f: &str| (p.to_string(), f.to_string());
        let r = VerifyReport {
            checked: 2,
            dirs: 9,
            changed: vec![pair("hello", "/usr/bin/hello")],
            missing: vec![pair("hello-doc", "/usr/share/doc/hello/README")],
            conffiles_changed: vec![pair("a", "/etc/a.conf")],
            unverifiable: vec![pair("b", "/usr/bin/b")],
        };
        let recorded = [
            Recorded {
                package: "a".into(),
                version: "2.0".into(),
                result: Ok("main".into()),
            },
            Recorded {
                package: "b".into(),
                version: "1.0".into(),
                result: Err("not in any feed".into()),
            },
        ];
        assert_eq!(
            json(&VerifyJson::new(&r, &recorded)),
            concat!(
                r#"{"ok":false,"complete":false,"checked":2,"dirs":9,"#,
                r#""changed":[{"package":"hello","path":"/usr/bin/hello"}],"#,
                r#""missing":[{"package":"hello-doc","path":"/usr/share/doc/hello/README"}],"#,
                r#""conffiles_changed":[{"package":"a","path":"/etc/a.conf"}],"#,
                r#""unverifiable":[{"package":"b","path":"/usr/bin/b"}],"#,
                r#""recorded_from_feed":[{"package":"a","version":"2.0","recorded":true,"feed":"main"},"#,
                r#"{"package":"b","version":"1.0","recorded":false,"error":"not in any feed"}]}"#
            )
        );
        assert_eq!(
            json(&VerifyJson::new(&VerifyReport::default(), &[])),
            r#"{"ok":true,"complete":true,"checked":0,"dirs":0,"changed":[],"missing":[],"conffiles_changed":[],"unverifiable":[],"recorded_from_feed":[]}"#
        );
    }
}
