//! The `prokit` command line: parses arguments, calls `prokit::client`, prints, and maps
//! errors to exit codes (0 success, 1 failure, 2 usage).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use prokit::client::{self, Bootstrap, Client, Options, Progress};
use prokit::install::{InstallReport, ScriptMode};

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
}

impl From<Scripts> for ScriptMode {
    fn from(s: Scripts) -> Self {
        match s {
            Scripts::Skip => ScriptMode::Skip,
            Scripts::Offline => ScriptMode::Offline,
        }
    }
}

#[derive(clap::Args, Clone)]
struct InstallArgs {
    /// Treat these names as installed (comma-separated; what OpenWrt feeds leave out, e.g.
    /// libc,kernel).
    #[arg(long, value_name = "PKG,...", value_delimiter = ',')]
    assume_installed: Vec<String>,
    /// Maintainer scripts: skip (default) or offline.
    #[arg(long, value_enum, default_value = "skip")]
    scripts: Scripts,
    /// Allow setuid/setgid files and device nodes in packages.
    #[arg(long)]
    allow_special: bool,
    /// Parallel downloads.
    #[arg(long, short = 'j', default_value_t = 4)]
    jobs: usize,
    /// Keep downloaded packages in the cache after installing them.
    #[arg(long)]
    keep_cache: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch and verify every configured feed. A feed that fails keeps its last good index;
    /// the exit status is 1 when any feed failed, and each failure names the feed, the file,
    /// the reason and the key fingerprint.
    Update,
    /// Resolve, download, verify and install packages (NAME or NAME=VERSION). An unsatisfiable
    /// request fails before anything is downloaded, with the chain that explains it.
    Install {
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
        #[command(flatten)]
        args: InstallArgs,
    },
    /// Remove installed packages (modified conffiles are kept).
    Remove {
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
        /// Remove even when other installed packages depend on them.
        #[arg(long)]
        force_depends: bool,
        /// Maintainer scripts: skip (default) or offline.
        #[arg(long, value_enum, default_value = "skip")]
        scripts: Scripts,
    },
    /// List the packages the feeds offer, or with --installed the installed ones.
    List {
        #[arg(long)]
        installed: bool,
    },
    /// Show the installed and available stanzas of a package.
    Info {
        #[arg(value_name = "PKG")]
        package: String,
    },
    /// Check every installed file (or those of the given packages) against the SHA-256
    /// recorded at install: reports changed and missing files (exit 1), and conffiles whose
    /// content differs from the status file's hash separately (reported, not an error).
    ///
    /// Files of packages that another tool (opkg) installed or upgraded have no prokit record:
    /// they are counted as "not verifiable", never as checked, and the exit status is 3 when
    /// nothing is wrong but such files remain. --from-feed makes their records from the
    /// packages themselves, fetched through the verified index. Exit status: 0 every file
    /// verified; 1 changed or missing files; 3 some files not verifiable.
    Verify {
        #[arg(value_name = "PKG")]
        packages: Vec<String>,
        /// For packages without records, fetch the installed version's package through the
        /// verified feed index (the download cache first), compare every installed file with
        /// the package's own bytes, and keep the records for next time.
        #[arg(long)]
        from_feed: bool,
    },
    /// The trusted keyring: install the first trust, refresh it from the feeds (for cron),
    /// report on it.
    #[command(subcommand)]
    Keyring(KeyringCmd),
    /// Make a root filesystem in one shot (for build hosts; no root privileges needed):
    /// create ROOT, write its etc/opkg.conf and trusted keys, update, install PKG..., and
    /// optionally write a reproducible tarball (same inputs + SOURCE_DATE_EPOCH give the same
    /// bytes).
    Bootstrap {
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
        /// Write a reproducible tarball of the root here.
        #[arg(long, value_name = "OUT.tar")]
        tar: Option<PathBuf>,
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
        #[command(flatten)]
        args: InstallArgs,
    },
}

#[derive(Subcommand)]
enum KeyringCmd {
    /// Install the first trust: a keyring package or manifest, signed by the root key whose
    /// fingerprint you confirm (a mismatch is refused). Adds `option keyring NAME` to
    /// <root>/etc/opkg.conf; from then on `prokit update` trusts exactly the keyring's active
    /// feed keys.
    Init {
        #[arg(long, value_name = "FILE|PKG")]
        keyring: PathBuf,
        #[arg(long, value_name = "FP")]
        root_fingerprint: String,
    },
    /// Update the feeds, fetch the newest keyring package, verify the whole chain from the
    /// trusted serial (thresholds, revocations, rollback, forks, expiry) and apply it
    /// atomically. Prints "updated to serial N" or "already at serial N"; exits non-zero
    /// with the reason on any refusal, changing nothing. Safe to run from cron: concurrent
    /// runs serialise.
    Refresh,
    /// Print the trusted keyrings' keys, roles, states and expiries; exit 1 when anything
    /// expires within --warn-days days.
    Status {
        #[arg(long, value_name = "N", default_value_t = 30)]
        warn_days: u32,
    },
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
}

impl Progress for Reporter {
    fn message(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }
    fn downloaded(&self, file: &str, cached: bool) {
        if self.verbose {
            let how = if cached { "cached" } else { "downloaded" };
            eprintln!("{how} {file}");
        }
    }
    fn installed(&self, r: &InstallReport) {
        if !self.quiet {
            // A closed stdout must not stop an install half-way: the line is dropped.
            let _ = match &r.upgraded_from {
                Some(old) => cli_support::outln!("Upgraded {} {} -> {}", r.name, old, r.version),
                None => cli_support::outln!("Installed {} {}", r.name, r.version),
            };
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

fn options(cli: &Cli, root: PathBuf, args: Option<&InstallArgs>) -> Result<Options> {
    let mut o = Options::new(root);
    o.conf = cli.conf.clone();
    o.cache_dir = cli.cache_dir.clone();
    o.ca_file = cli.ca_file.clone();
    if let Some(t) = source_date_epoch()? {
        o.installed_time = t;
    }
    if let Some(a) = args {
        o.assume_installed = a.assume_installed.clone();
        o.scripts = a.scripts.into();
        o.allow_special = a.allow_special;
        o.jobs = a.jobs.max(1);
        o.keep_cache = a.keep_cache;
    }
    Ok(o)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let reporter = Reporter {
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    match &cli.command {
        Command::Update => {
            let client = Client::open(options(&cli, cli.root.clone(), None)?)?;
            let outcomes = client.update()?;
            let mut failed = 0;
            let mut json = Vec::new();
            for o in &outcomes {
                match &o.result {
                    Ok(r) => {
                        if !cli.quiet && !cli.json {
                            let by = r
                                .fingerprint
                                .as_deref()
                                .map(|f| format!(", signed by {f}"))
                                .unwrap_or_default();
                            let state = if r.unchanged { "unchanged" } else { "updated" };
                            cli_support::outln!(
                                "{}: {state}, {} packages{by}",
                                o.name,
                                r.packages
                            )?;
                        }
                        json.push(format!(
                            "{{\"feed\":{},\"ok\":true,\"packages\":{},\"unchanged\":{},\"fingerprint\":{}}}",
                            json_str(&o.name),
                            r.packages,
                            r.unchanged,
                            r.fingerprint.as_deref().map(json_str).unwrap_or("null".into())
                        ));
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("error: {e}");
                        json.push(format!(
                            "{{\"feed\":{},\"ok\":false,\"error\":{}}}",
                            json_str(&o.name),
                            json_str(&e.to_string())
                        ));
                    }
                }
            }
            if cli.json {
                cli_support::outln!("[{}]", json.join(","))?;
            }
            if failed > 0 {
                eprintln!(
                    "prokit: {failed} of {} feeds failed to update; their last good index is kept",
                    outcomes.len()
                );
                return Ok(ExitCode::from(1));
            }
        }
        Command::Install { packages, args } => {
            let client = Client::open(options(&cli, cli.root.clone(), Some(args))?)?;
            let reports = client.install(packages, &reporter)?;
            if reports.is_empty() && !cli.quiet {
                cli_support::outln!("Nothing to do: {} already installed", packages.join(", "))?;
            }
        }
        Command::Remove {
            packages,
            force_depends,
            scripts,
        } => {
            let mut o = options(&cli, cli.root.clone(), None)?;
            o.scripts = (*scripts).into();
            let client = Client::open(o)?;
            for r in client.remove(packages, *force_depends, &reporter)? {
                if !cli.quiet {
                    cli_support::outln!("Removed {}", r.name)?;
                    for c in &r.kept_conffiles {
                        cli_support::outln!("  kept modified conffile {c}")?;
                    }
                }
            }
        }
        Command::List { installed } => {
            let client = Client::open(options(&cli, cli.root.clone(), None)?)?;
            let list = client.list(*installed, &reporter)?;
            if cli.json {
                let items: Vec<String> = list
                    .iter()
                    .map(|e| {
                        format!(
                            "{{\"package\":{},\"version\":{},\"architecture\":{},\"feed\":{},\"installed\":{},\"summary\":{}}}",
                            json_str(&e.name),
                            json_str(&e.version),
                            json_str(&e.architecture),
                            e.feed.as_deref().map(json_str).unwrap_or("null".into()),
                            e.installed,
                            json_str(&e.summary)
                        )
                    })
                    .collect();
                cli_support::outln!("[{}]", items.join(","))?;
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
        }
        Command::Info { package } => {
            let client = Client::open(options(&cli, cli.root.clone(), None)?)?;
            let found = client.info(package, &reporter)?;
            if found.is_empty() {
                bail!("package {package} is neither installed nor in any feed");
            }
            if cli.json {
                let items: Vec<String> = found
                    .iter()
                    .map(|(feed, p)| {
                        format!(
                            "{{\"feed\":{},\"stanza\":{}}}",
                            feed.as_deref().map(json_str).unwrap_or("null".into()),
                            json_str(&p.to_text())
                        )
                    })
                    .collect();
                cli_support::outln!("[{}]", items.join(","))?;
            } else {
                for (feed, p) in &found {
                    match feed {
                        None => cli_support::outln!("# installed")?,
                        Some(f) => cli_support::outln!("# feed {f}")?,
                    }
                    cli_support::outln!("{}", p.to_text())?;
                }
            }
        }
        Command::Verify {
            packages,
            from_feed,
        } => {
            let client = Client::open(options(&cli, cli.root.clone(), None)?)?;
            let only = (!packages.is_empty()).then_some(packages.as_slice());
            let (r, recorded) = if *from_feed {
                client.verify_from_feed(only, &reporter)?
            } else {
                (client.verify(only)?, Vec::new())
            };
            if cli.json {
                let pairs = |v: &[(String, String)]| {
                    let items: Vec<String> = v
                        .iter()
                        .map(|(p, f)| {
                            format!("{{\"package\":{},\"path\":{}}}", json_str(p), json_str(f))
                        })
                        .collect();
                    format!("[{}]", items.join(","))
                };
                let recorded: Vec<String> = recorded
                    .iter()
                    .map(|x| {
                        let (ok, what) = match &x.result {
                            Ok(feed) => (true, format!("\"feed\":{}", json_str(feed))),
                            Err(why) => (false, format!("\"error\":{}", json_str(why))),
                        };
                        format!(
                            "{{\"package\":{},\"version\":{},\"recorded\":{ok},{what}}}",
                            json_str(&x.package),
                            json_str(&x.version)
                        )
                    })
                    .collect();
                cli_support::outln!(
                    "{{\"ok\":{},\"complete\":{},\"checked\":{},\"dirs\":{},\"changed\":{},\"missing\":{},\"conffiles_changed\":{},\"unverifiable\":{},\"recorded_from_feed\":[{}]}}",
                    r.ok(),
                    r.complete(),
                    r.checked,
                    r.dirs,
                    pairs(&r.changed),
                    pairs(&r.missing),
                    pairs(&r.conffiles_changed),
                    pairs(&r.unverifiable),
                    recorded.join(",")
                )?;
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
            if !r.ok() {
                return Ok(ExitCode::from(1));
            }
            if !r.complete() {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Keyring(KeyringCmd::Init {
            keyring,
            root_fingerprint,
        }) => {
            let o = options(&cli, cli.root.clone(), None)?;
            let r = prokit::keyring::init(&o.root, keyring, parse_fp(root_fingerprint)?, o.now)?;
            if !cli.quiet {
                cli_support::outln!(
                    "trusting keyring {} serial {} ({} feed keys written)",
                    r.name,
                    r.serial,
                    r.keys_written.len()
                )?;
            }
        }
        Command::Keyring(KeyringCmd::Refresh) => {
            let client = Client::open(options(&cli, cli.root.clone(), None)?)?;
            let r = client.refresh_keyring(&reporter)?;
            if !cli.quiet {
                match r.from {
                    Some(from) => cli_support::outln!(
                        "keyring {}: updated to serial {} (from {from})",
                        r.name,
                        r.serial
                    )?,
                    None => {
                        cli_support::outln!("keyring {}: already at serial {}", r.name, r.serial)?
                    }
                }
            }
        }
        Command::Keyring(KeyringCmd::Status { warn_days }) => {
            let o = options(&cli, cli.root.clone(), None)?;
            let reports = prokit::keyring::status(&o.root, *warn_days, o.now)?;
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
                    cli_support::outln!(
                        "  {} {} {}{until}{soon}",
                        k.fingerprint,
                        k.role,
                        k.status
                    )?;
                }
            }
            if !ok {
                eprintln!("prokit: something expires within {warn_days} days");
                return Ok(ExitCode::from(1));
            }
        }
        Command::Bootstrap {
            target,
            feeds,
            pubkeys,
            arch,
            tar,
            packages,
            args,
            keyring,
            root_fingerprint,
        } => {
            let feeds = feeds
                .iter()
                .map(|f| {
                    f.split_once('=')
                        .map(|(n, u)| (n.to_string(), u.to_string()))
                        .with_context(|| format!("--feed {f}: expected NAME=URL"))
                })
                .collect::<Result<Vec<_>>>()?;
            let arch = arch
                .iter()
                .map(|a| parse_arch(a))
                .collect::<Result<Vec<_>>>()?;
            let keyring = match (keyring, root_fingerprint) {
                (Some(k), Some(fp)) => Some((k.clone(), parse_fp(fp)?)),
                _ => None,
            };
            let b = Bootstrap {
                feeds,
                keyring,
                pubkeys: pubkeys.clone(),
                arch,
                packages: packages.clone(),
                tar: tar.clone(),
                tar_mtime: source_date_epoch()?.unwrap_or(0).max(0) as u64,
            };
            let reports =
                client::bootstrap(options(&cli, target.clone(), Some(args))?, &b, &reporter)?;
            if !cli.quiet {
                eprintln!(
                    "bootstrapped {} with {} package{}{}",
                    target.display(),
                    reports.len(),
                    if reports.len() == 1 { "" } else { "s" },
                    tar.as_ref()
                        .map(|t| format!("; tarball {}", t.display()))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // `prokit list | head`: the reader went away; that is a normal end.
        Err(e) if cli_support::is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli_support::error_message(e.as_ref()));
            ExitCode::from(1)
        }
    }
}
