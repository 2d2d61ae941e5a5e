//! The `archman` command line: parses arguments, calls the `archman` library, prints. `main`
//! only parses, dispatches to one `cmd_*` function per subcommand and maps errors to the exit
//! status.
//!
//! Standard output closed early (`archman check --json FEED | head -c 100`) ends the program
//! quietly with status 0, as in other Unix tools: the reader has what it wanted.

// The command line's edge: the one place in this crate that prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use archman::index::{
    self, CacheMode, DateSource, DeveloperMode, DeveloperPolicy, IndexOptions, OpenPgpMode, Profile,
};
use archman::keygen;
use archman::keys::{self, FingerprintOf, KeySource, Trust};
use clap::{Args, Parser, Subcommand, ValueEnum};
use feeds::usign::{PublicKey, SecretKey};
use serde::Serialize;

/// Archive manager for opkg/apt package feeds.
///
/// Key files are usign/signify compatible: keys made here work with `usign` and
/// `signify-openbsd`, and theirs work here.
#[derive(Parser)]
#[command(name = "archman", version, about, long_about)]
struct Cli {
    /// Append what `index` decides (the feed published with each file's SHA-256 and the key,
    /// packages refused) to this audit log: one JSON line per event, each carrying the SHA-256
    /// of the line before (check it with `prokit audit verify FILE`). Default:
    /// $ARCHMAN_AUDIT_LOG when set; none otherwise.
    #[arg(long, global = true, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Index a feed: read every package under FEED_DIR and publish Packages, Packages.gz,
    /// Release (and with --key, Packages.sig and Release.sig) atomically.
    ///
    /// Packages are *.ipk, *.opk and *.deb files anywhere under FEED_DIR (symlinks to files
    /// inside the feed are followed; directory symlinks are not). A cache keyed by path,
    /// size, mtime, ctime and inode means a re-run reads only new or changed packages, and
    /// writes nothing when the index would not change. It lives outside the feed, in
    /// $XDG_CACHE_HOME/archman/ (default ~/.cache/archman/), authenticated with a per-user
    /// key kept there (cache.key, 0600), so that whoever can write the feed cannot make
    /// archman sign what it never read; FEED_DIR/.archman-cache of older versions is not
    /// read.
    ///
    /// One run at a time: each holds a lock on FEED_DIR/.archman-lock, and a second run waits
    /// for the first (or fails at once with --no-wait).
    ///
    /// Release dates strictly increase, because clients refuse a Release whose Date is older
    /// than the last one they accepted, or equal to it with other contents: a Date from the
    /// clock that is not past the published Release's (two runs in one second) is moved to
    /// one second after it, with a warning. SOURCE_DATE_EPOCH fixes the Date and is never
    /// moved: when it is not later than the published Release's Date (and the Release
    /// differs), the run is refused with nothing changed, as it is when the clock is more than
    /// 5 minutes behind the published Date; --allow-date-rollback publishes anyway.
    ///
    /// With --profile openwrt, every ar .ipk is reported: OpenWrt's opkg (opkg-lede) cannot
    /// install it (see `archman build --help`).
    ///
    /// Exit status: 0 published (or already up to date); 1 error, nothing changed;
    /// 3 published with bad packages left out (--skip-bad).
    ///
    /// Example: archman index --key feed.sec --valid-for 7d /srv/feed
    Index(IndexArgs),
    /// Verify a published feed: signatures, Release hashes and sizes, every Filename present
    /// with the indexed Size and SHA256, no package file left out of the index, and every
    /// Depends/Pre-Depends satisfiable inside the feed (plus --assume-installed). Each ar
    /// .ipk is a warning: OpenWrt's opkg (opkg-lede) cannot install it.
    ///
    /// Exit status: 0 when the feed is consistent (warnings allowed), 1 otherwise.
    ///
    /// Example: archman check -P /etc/opkg/keys --assume-installed libc,kernel /srv/feed
    Check(CheckArgs),
    /// Build an .ipk from PKG_DIR/CONTROL/control (+ scripts, conffiles) and the data tree
    /// under PKG_DIR, as OpenWrt's ipkg-build does, reproducibly.
    ///
    /// The file is named <Package>_<Version>_<Architecture>.ipk. Entries are sorted, owned
    /// by 0:0, and dated SOURCE_DATE_EPOCH (default: the newest mtime under PKG_DIR).
    ///
    /// Example: archman build ./hello ./feed
    Build(BuildArgs),
    /// usign's own interface: the flags, messages and exit codes of OpenWrt's usign
    /// (-V -S -F -G with -m -p -P -s -x -c -q), so scripts can swap `usign` for
    /// `archman usign`. Run `archman usign` alone for usign's usage text.
    #[command(disable_help_flag = true)]
    Usign(UsignArgs),
    /// Make a usign key pair and print its fingerprint (key number); the secret key is
    /// written 0600. The key is random, derived from a secret, or imported from PEM.
    ///
    /// Random (the default): a new key and key number, as usign -G makes them.
    ///
    /// Derived, for CI (--seed-env VAR, --seed-file FILE): the same secret always makes the
    /// same key, key number and files, so a pipeline can re-create its signing key from a
    /// stored secret instead of storing a key file. The secret must be at least 32 bytes
    /// (make one with `openssl rand -hex 32`); it is never printed nor written. The Ed25519
    /// seed is HKDF-SHA-256 of the secret (salt "archman usign key derivation v1", info
    /// "archman keygen seed v1"), the key number HKDF-SHA-256 of the public key (info
    /// "archman key number v1"): docs/formats.md §4.6.
    ///
    /// Imported (--import-pem FILE): an Ed25519 private key in PKCS#8 PEM, as `openssl
    /// genpkey -algorithm ed25519` writes it. PEM has no key number: it is derived from the
    /// public key as above, so one PEM key always gets the same one.
    ///
    /// With --passphrase-file or --ask the secret key file is protected by a passphrase as
    /// signify protects it (bcrypt_pbkdf, 42 rounds); archman sign and sign-package then need
    /// --passphrase-file, and signify-openbsd asks for it.
    ///
    /// Example: archman keygen -s feed.sec -p feed.pub -c "example feed key"
    ///
    /// Example: archman keygen --seed-env CI_KEY_SEED -s feed.sec -p feed.pub
    ///
    /// Example: archman keygen --import-pem ed25519.pem -s feed.sec -p feed.pub --ask
    Keygen(KeygenArgs),
    /// Sign a file with a usign secret key (-s) or a PEM key (--pem); the signature goes to
    /// <FILE>.sig unless -x is given.
    ///
    /// Example: archman sign -s feed.sec -m Packages
    ///
    /// Example: archman sign -s feed.sec --passphrase-file /run/secrets/feed.pass -m Packages
    ///
    /// Example: archman sign --pem ed25519.pem -m Packages
    Sign(SignArgs),
    /// Verify a signature with a public key (-p) or a key directory (-P); exit 1 if it fails.
    ///
    /// Example: archman verify -m Packages -P /etc/opkg/keys
    Verify(VerifyArgs),
    /// Sign package files as their developer: writes <PKG>.sig, a detached usign signature
    /// over the file's bytes (ar or tar.gz .ipk, .deb), which `usign -V -m PKG` and
    /// `signify -V -m PKG -x PKG.sig` verify too. The store checks it at `archman index
    /// --developer-signatures` and clients at install, against the developer keys of the
    /// keyring (archman keyring add-key --role developer).
    ///
    /// Example: archman sign-package -s dev.sec luci-app-pbr_1.2_all.ipk
    SignPackage(SignPackageArgs),
    /// Check developer signatures (<PKG>.sig) on package files: against a public key (-p), a
    /// key directory (-P), or a keyring directory (--keyring: an active developer key whose
    /// scope covers the package's name). Every package is checked; the exit status is 1 if
    /// any fails, each failure naming the package, the key and why.
    ///
    /// Example: archman verify-package --keyring ./keyring luci-app-pbr_1.2_all.ipk
    VerifyPackage(VerifyPackageArgs),
    /// Convert keys to other formats (archman keygen --import-pem reads PEM).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Print the fingerprint of a secret key, public key or signature.
    Fingerprint {
        #[command(flatten)]
        of: FingerprintArgs,
    },
    /// Maintain the feed keyring (root keys sign keyrings, feed keys sign feeds) and build it
    /// as a package. Each change starts a new serial (once per change, not per signature);
    /// each root-key holder then signs it separately, offline.
    #[command(subcommand)]
    Keyring(KeyringCmd),
    /// Access tokens for a private feed, and the nginx lines that accept them: each client
    /// name gets a random token (DIR/NAME.token, 0600); DIR/nginx-bearer.conf (a `map` of
    /// the bearer tokens, include it in http {}) and DIR/htpasswd (SHA-512-crypt, for
    /// auth_basic_user_file) are rewritten on every change. Rolling a token replaces it and
    /// drops the old one from both files: reload nginx and the old token is refused; give
    /// the client the new one with `prokit auth set FEED --token-file FILE`.
    ///
    /// Example: archman token new --name device-17 --dir /etc/nginx/feed-tokens --out device-17.token
    ///
    /// Example: archman token roll --name device-17 --dir /etc/nginx/feed-tokens --out device-17.token
    #[command(subcommand)]
    Token(TokenCmd),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: archman completions bash > /etc/bash_completion.d/archman
    Completions {
        #[arg(value_enum)]
        shell: cli_support::Shell,
    },
    /// Write the man pages (archman.1 and one per subcommand, archman-index.1, …) into DIR.
    ///
    /// Example: archman man /usr/local/share/man/man1
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Make a token for a new client name (a name that has one is refused: roll it).
    New(TokenArgs),
    /// Replace a name's token; the server files no longer accept the old one.
    Roll(TokenArgs),
    /// Remove a name's token from the directory and the server files.
    Remove(TokenArgs),
    /// List the names that have a token (never the tokens).
    List {
        /// The token directory.
        #[arg(long, value_name = "DIR", default_value = "archman-tokens")]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct TokenArgs {
    /// The client's name (letters, digits, '.', '_', '-').
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The token directory (made 0700 when missing).
    #[arg(long, value_name = "DIR", default_value = "archman-tokens")]
    dir: PathBuf,
    /// Also write the token here (0600; replaced), for handing to the client.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Write a usign key as PEM for OpenSSL and other tools: a secret key (-s) as PKCS#8
    /// (-----BEGIN PRIVATE KEY-----, written 0600; an existing file is replaced only with
    /// --force), a public key (-p) as SubjectPublicKeyInfo (-----BEGIN PUBLIC KEY-----).
    ///
    /// PEM has no key number and no comment. Read back (keygen --import-pem, sign --pem) a
    /// key gets the key number derived from its public key: the one it had if archman derived
    /// or imported it, a different one for a random key (a note on stderr says which).
    ///
    /// Example: archman key export --pem -p feed.pub -o feed.pub.pem
    ///
    /// Example: archman key export --pem -s feed.sec -o feed.pem
    ///
    /// With --openpgp, the feed key's OpenPGP certificate for apt: the public key in the form
    /// `signed-by=` reads (binary, for /usr/share/keyrings/NAME.gpg; --armor for an .asc),
    /// self-signed, so it is made from the secret key (-s). The OpenPGP key is the same
    /// Ed25519 key with a fixed creation time (2000-01-01), so its fingerprint never changes
    /// and `archman index --key` signs InRelease/Release.gpg with it.
    ///
    /// Example: archman key export --openpgp -s feed.sec --name demo -o demo-archive-keyring.gpg
    Export(KeyExportArgs),
}

#[derive(Subcommand)]
enum KeyringCmd {
    /// Create keyring NAME serial 1 in DIR, signed by every root key given.
    Init {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "NAME")]
        name: String,
        /// A root key's secret key file (repeat; each signs serial 1).
        #[arg(long = "root-key", value_name = "SEC", required = true)]
        root_keys: Vec<PathBuf>,
        /// A feed key's public key file (repeat).
        #[arg(long = "feed-key", value_name = "PUB")]
        feed_keys: Vec<PathBuf>,
        /// Root signatures required on each new serial.
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        /// How long the keyring stays valid (e.g. 365d).
        #[arg(long, value_name = "DURATION", value_parser = index::parse_duration, default_value = "365d")]
        expires: i64,
    },
    /// Add an active root, feed or developer key.
    AddKey {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// For a developer key: the package names it may sign, as globs (`*` any run of
        /// characters, `?` one), comma-separated: 'luci-app-*,pbr'. Without it the key may
        /// sign any package.
        #[arg(long, value_name = "GLOBS")]
        packages: Option<String>,
        #[arg(value_name = "PUB")]
        public: PathBuf,
    },
    /// Set a developer key's package scope (comma-separated globs, or --any): how the roots
    /// move a package name from one developer to another. archman index refuses a name
    /// signed by a new key while the key that signed it before may still sign it, unless the
    /// new key's scope lists the name itself.
    ///
    /// Example: archman keyring set-scope ring 0123456789abcdef 'luci-app-*,pbr'
    SetScope {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(value_name = "FP")]
        fingerprint: String,
        #[arg(value_name = "GLOBS", required_unless_present = "any")]
        packages: Option<String>,
        /// No scope: the key may sign any package.
        #[arg(long, conflicts_with = "packages")]
        any: bool,
    },
    /// Retire a key: no longer trusted, not a compromise.
    Retire {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(value_name = "FP")]
        fingerprint: String,
    },
    /// Revoke a key: never trusted again, removed from every client's keys directory.
    Revoke {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(value_name = "FP")]
        fingerprint: String,
    },
    /// Set the number of root signatures each new serial needs.
    SetThreshold {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(value_name = "N")]
        threshold: u32,
    },
    /// Renew the keyring: it expires DURATION from now.
    SetExpires {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(value_name = "DURATION", value_parser = index::parse_duration)]
        expires: i64,
    },
    /// Add a root key's signature to the current serial (never bumps the serial).
    Sign {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(short = 's', value_name = "ROOT_SEC")]
        secret: PathBuf,
    },
    /// Build <name>-keyring_<serial>_all.ipk with the full history into OUT_DIR; refuses a
    /// keyring whose signatures do not meet its own rules.
    ///
    /// With --deb, also <name>-archive-keyring_<serial>_all.deb for apt users: it installs
    /// /usr/share/keyrings/<name>-archive-keyring.gpg with the OpenPGP certificate of every
    /// usable feed key of the serial (retired, revoked and expired keys left out), the file
    /// `deb [signed-by=…]` names. Each such key needs its certificate in DIR (keyring
    /// add-openpgp).
    ///
    /// Example: archman keyring build ring out/ --deb
    Build {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(value_name = "OUT_DIR")]
        out: PathBuf,
        /// Also build the archive keyring .deb for apt.
        #[arg(long)]
        deb: bool,
    },
    /// Keep a feed key's OpenPGP certificate in DIR (openpgp/<fp>.gpg) for `build --deb`.
    /// The certificate is self-signed, so its holder makes it: from the feed secret key
    /// (-s), or a file `archman key export --openpgp -s FEED_SEC` wrote. Refused unless its
    /// key is a feed key of the keyring. The keyring's serial does not change.
    ///
    /// Example: archman keyring add-openpgp ring -s feed.sec --name demo
    ///
    /// Example: archman keyring add-openpgp ring feed.gpg
    AddOpenpgp {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Certificate files (binary or armored).
        #[arg(value_name = "CERT", required_unless_present = "secret")]
        certs: Vec<PathBuf>,
        /// Make the certificate from this feed secret key instead.
        #[arg(short = 's', value_name = "FEED_SEC", conflicts_with = "certs")]
        secret: Option<PathBuf>,
        /// With -s: the name in the certificate's user ID (default: the keyring's name).
        #[arg(long, value_name = "NAME", requires = "secret")]
        name: Option<String>,
        /// With -s: the passphrase of a protected key, the first line of FILE.
        #[arg(long, value_name = "FILE", requires = "secret")]
        passphrase_file: Option<PathBuf>,
    },
    /// Print the keyring: serial, threshold, keys, roles, states, expiries, signatures.
    Show {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    /// Signs keyring serials (kept offline).
    Root,
    /// Signs the feed's index (Packages, Release).
    Feed,
    /// Signs package files (archman sign-package), within its --packages scope.
    Developer,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeveloperArg {
    Off,
    Check,
    Require,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Gzipped tar: OpenWrt's opkg (opkg-lede) and prokit read it.
    Tgz,
    /// ar: prokit and dpkg-deb read it; opkg-lede cannot install it.
    Ar,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProfileArg {
    /// Packages with every field, sorted by package, version, architecture.
    Full,
    /// OpenWrt's layout: Packages.manifest, stripped Packages, usign padding.
    Openwrt,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    /// The index files in the feed directory (`deb URL ./`; opkg's `src/gz NAME URL`).
    Flat,
    /// A Debian archive: dists/SUITE/… (`deb URL SUITE COMPONENT`).
    Debian,
}

#[derive(Args)]
struct IndexArgs {
    /// The feed directory.
    feed_dir: PathBuf,
    /// usign secret key: also write Packages.sig and Release.sig.
    #[arg(long, value_name = "SECRET_KEY")]
    key: Option<PathBuf>,
    /// The passphrase of a protected --key: the first line of FILE, its newline stripped as
    /// signify reads one line.
    ///
    /// Example: archman index --key feed.sec --passphrase-file /run/secrets/feed.pass /srv/feed
    #[arg(long, value_name = "FILE", requires = "key")]
    passphrase_file: Option<PathBuf>,
    /// With --key, also sign for apt: InRelease (the Release clear-signed) and Release.gpg
    /// (detached), OpenPGP, by the same key (see `archman key export --openpgp`). The default
    /// does so when the feed holds a .deb.
    #[arg(long, requires = "key", conflicts_with = "no_openpgp")]
    openpgp: bool,
    /// Never write InRelease/Release.gpg (an existing pair is removed).
    #[arg(long)]
    no_openpgp: bool,
    /// Index layout.
    #[arg(long, value_enum, default_value = "full")]
    profile: ProfileArg,
    /// Archive layout: flat (Packages, Release… in FEED_DIR: `deb URL ./`) or debian
    /// (dists/SUITE/COMPONENT/binary-ARCH/Packages{,.gz,.xz} with by-hash copies, and
    /// dists/SUITE/{Release,InRelease,Release.gpg}: `deb URL SUITE COMPONENT`). The packages
    /// stay where they are in FEED_DIR (pool/ by convention).
    ///
    /// Example: archman index --layout debian --suite stable --codename demo --key feed.sec /srv/archive
    #[arg(long, value_enum, default_value = "flat")]
    layout: LayoutArg,
    /// With --layout debian: the suite (required; the directory under dists/).
    #[arg(long, value_name = "NAME", required_if_eq("layout", "debian"))]
    suite: Option<String>,
    /// With --layout debian: the Release's Codename (sources may name the suite by either).
    #[arg(long, value_name = "NAME", requires = "suite")]
    codename: Option<String>,
    /// With --layout debian: the component.
    #[arg(long, value_name = "NAME", default_value = "main")]
    component: String,
    /// With --layout debian: the architectures published besides all (default: those of
    /// the packages).
    #[arg(long = "arch", value_name = "A,...", value_delimiter = ',')]
    archs: Vec<String>,
    /// With --layout debian: keep the by-hash copies of the last N Releases, so a client
    /// that read an older InRelease while a publish ran still finds what it names.
    #[arg(long, value_name = "N", default_value_t = 3)]
    by_hash_keep: usize,
    /// Add MD5Sum fields (for old opkg).
    #[arg(long)]
    md5: bool,
    /// Set Release Valid-Until this long after Date (e.g. 90m, 12h, 7d, 2w).
    #[arg(long, value_name = "DURATION", value_parser = index::parse_duration)]
    valid_for: Option<i64>,
    /// Origin and Label of the Release (default: the feed directory's name).
    #[arg(long, value_name = "NAME")]
    origin: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Stanza text to hold in memory (e.g. 8M, 512K, 0); past it, stanzas go to a file
    /// without a name beside the cache (or in $TMPDIR) and are read back when the index is
    /// written. Bounds memory on feeds of tens of thousands of packages.
    #[arg(long, value_name = "SIZE", value_parser = index::parse_size, default_value = "8M")]
    stanza_memory: usize,
    /// Read every package; neither use nor update the cache.
    #[arg(long)]
    no_cache: bool,
    /// Cache file (default: $XDG_CACHE_HOME/archman/<feed path hash>/cache, with
    /// ~/.cache for $XDG_CACHE_HOME when it is unset).
    #[arg(long, value_name = "PATH", conflicts_with = "no_cache")]
    cache: Option<PathBuf>,
    /// Fail at once (exit status 1) when another archman index is running on the feed,
    /// instead of waiting for it.
    #[arg(long)]
    no_wait: bool,
    /// Publish the good packages even when some are bad (exit status 3).
    #[arg(long)]
    skip_bad: bool,
    /// Re-sign the Release with a new Date even when the index is unchanged
    /// (run it from cron with --valid-for to keep the feed fresh).
    #[arg(long)]
    refresh: bool,
    /// Publish even when the Release Date (SOURCE_DATE_EPOCH, or a clock more than 5 minutes
    /// behind) is not later than the published Release's. Clients that have the published
    /// Release refuse the new one as a rollback or replay until a later one is published.
    #[arg(long)]
    allow_date_rollback: bool,
    /// Developer signatures (<PKG>.sig, from `archman sign-package`): off (not read), check
    /// (a package that has one must verify), require (every package must have one that
    /// verifies). A signature counts by an active developer key of --keyring whose scope
    /// covers the package name; a package failing that is a bad package (the feed is not
    /// changed; --skip-bad leaves it out). The full profile publishes `Signed-By` and
    /// `Signature` in the package's stanza; --profile openwrt checks but does not publish
    /// them (its Packages stays OpenWrt's).
    #[arg(long, value_enum, default_value = "off", value_name = "MODE")]
    developer_signatures: DeveloperArg,
    /// The keyring directory (archman keyring init) whose developer keys count: its newest
    /// serial that carries its root signatures.
    #[arg(long, value_name = "DIR")]
    keyring: Option<PathBuf>,
    /// No progress bar, no summary.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// List each package file as it is handled.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// The feed directory.
    feed_dir: PathBuf,
    #[command(flatten)]
    trust: OptionalTrust,
    /// Packages to treat as available (from other feeds or the base system), comma-separated.
    #[arg(long, value_name = "PKG,...", value_delimiter = ',')]
    assume_installed: Vec<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Print only the summary line (and nothing on success).
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Args)]
struct BuildArgs {
    /// Directory with CONTROL/control and the files to install.
    pkg_dir: PathBuf,
    /// Where to write the package (default: the current directory).
    out_dir: Option<PathBuf>,
    /// Container. tgz: a gzipped tar, as OpenWrt's ipkg-build makes; read by OpenWrt's
    /// opkg (opkg-lede) and prokit. ar: the Debian layout, as opkg-utils' opkg-build
    /// makes; read by prokit and dpkg-deb, but NOT by opkg-lede, which reads only the
    /// gzipped tar (it pipes the file through gzip -d): installing an ar .ipk fails with
    /// "Malformed package file", and from a feed it reports success but installs no files.
    #[arg(long, value_enum, default_value = "tgz")]
    format: Format,
}

#[derive(Args)]
struct UsignArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<std::ffi::OsString>,
}

#[derive(Args)]
struct KeygenArgs {
    /// Secret key file to create.
    #[arg(short = 's', value_name = "SEC")]
    secret: PathBuf,
    /// Public key file to create.
    #[arg(short = 'p', value_name = "PUB")]
    public: PathBuf,
    /// Comment for both files (default: "private key <fp>" / "public key <fp>").
    #[arg(short = 'c', value_name = "COMMENT")]
    comment: Option<String>,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    source: KeySourceArgs,
    #[command(flatten)]
    protect: ProtectArgs,
}

/// Where the key comes from (random when none is given).
#[derive(Args)]
#[group(multiple = false)]
struct KeySourceArgs {
    /// Derive the key from the secret in environment variable VAR: its bytes exactly, at
    /// least 32 of them. The same secret always makes the same key and files.
    ///
    /// Example: archman keygen --seed-env CI_KEY_SEED -s feed.sec -p feed.pub
    #[arg(long, value_name = "VAR")]
    seed_env: Option<String>,
    /// Derive the key from the secret in FILE: the file's bytes exactly, a trailing newline
    /// included (so `printf %s "$S" >FILE` and `echo "$S" >FILE` make different keys), at
    /// least 32 of them; a pipe is read too.
    ///
    /// Example: archman keygen --seed-file /run/secrets/key-seed -s feed.sec -p feed.pub
    #[arg(long, value_name = "FILE")]
    seed_file: Option<PathBuf>,
    /// Import an Ed25519 private key in PKCS#8 PEM (made by `openssl genpkey -algorithm
    /// ed25519 -out FILE`); its key number is derived from its public key.
    ///
    /// Example: archman keygen --import-pem ed25519.pem -s feed.sec -p feed.pub
    #[arg(long, value_name = "FILE")]
    import_pem: Option<PathBuf>,
}

/// How the new secret key file is protected (not at all when none is given).
#[derive(Args)]
#[group(multiple = false)]
struct ProtectArgs {
    /// Protect the secret key with the passphrase on the first line of FILE (the line's
    /// newline is not part of it, as signify reads one line); signify-compatible
    /// bcrypt_pbkdf, 42 rounds.
    ///
    /// Example: archman keygen -s feed.sec -p feed.pub --passphrase-file /run/secrets/feed.pass
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Protect the secret key with a passphrase typed twice on the terminal (/dev/tty, not
    /// echoed); an error when there is no terminal.
    ///
    /// Example: archman keygen -s feed.sec -p feed.pub --ask
    #[arg(long)]
    ask: bool,
}

#[derive(Args)]
struct SignArgs {
    #[command(flatten)]
    key: SigningKeyArgs,
    /// The passphrase of a protected secret key (-s): the first line of FILE, its newline
    /// stripped as signify reads one line.
    ///
    /// Example: archman sign -s feed.sec --passphrase-file /run/secrets/feed.pass -m Packages
    #[arg(long, value_name = "FILE", conflicts_with = "pem")]
    passphrase_file: Option<PathBuf>,
    /// The file to sign.
    #[arg(short = 'm', value_name = "FILE")]
    message: PathBuf,
    /// Signature file (default <FILE>.sig).
    #[arg(short = 'x', value_name = "SIG")]
    sig: Option<PathBuf>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct SigningKeyArgs {
    /// usign/signify secret key file.
    #[arg(short = 's', value_name = "SEC")]
    secret: Option<PathBuf>,
    /// Sign with an Ed25519 private key in PKCS#8 PEM (openssl genpkey -algorithm ed25519)
    /// instead. The signature's key number is derived from the public key, as keygen
    /// --import-pem derives it, so the public key that command writes verifies it.
    ///
    /// Example: archman sign --pem ed25519.pem -m Packages
    #[arg(long, value_name = "KEY.pem")]
    pem: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("format").required(true).args(["pem", "openpgp"])))]
struct KeyExportArgs {
    /// Write PEM.
    #[arg(long)]
    pem: bool,
    /// Write the OpenPGP certificate apt's signed-by= reads (needs -s: the certificate is
    /// self-signed).
    #[arg(long)]
    openpgp: bool,
    /// With --openpgp: ASCII armor (.asc) instead of binary (.gpg).
    #[arg(long, requires = "openpgp")]
    armor: bool,
    /// With --openpgp: the name in the certificate's user ID, `NAME feed key (usign FP)`.
    #[arg(long, value_name = "NAME", requires = "openpgp")]
    name: Option<String>,
    #[command(flatten)]
    key: ExportKeyArgs,
    /// The passphrase of a protected secret key (-s): the first line of FILE, its newline
    /// stripped.
    ///
    /// Example: archman key export --pem -s feed.sec --passphrase-file feed.pass -o feed.pem
    #[arg(long, value_name = "FILE", requires = "secret")]
    passphrase_file: Option<PathBuf>,
    /// The file to write.
    #[arg(short = 'o', value_name = "FILE")]
    out: PathBuf,
    /// Replace an existing private key file (-s); a public key file is always replaced.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct ExportKeyArgs {
    /// usign/signify secret key: written as PKCS#8 (-----BEGIN PRIVATE KEY-----), 0600.
    #[arg(short = 's', value_name = "SEC")]
    secret: Option<PathBuf>,
    /// usign/signify public key: written as SubjectPublicKeyInfo (-----BEGIN PUBLIC KEY-----).
    #[arg(short = 'p', value_name = "PUB")]
    public: Option<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    /// The signed file.
    #[arg(short = 'm', value_name = "FILE")]
    message: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    /// Signature file (default <FILE>.sig).
    #[arg(short = 'x', value_name = "SIG")]
    sig: Option<PathBuf>,
    /// Print nothing on success.
    #[arg(short = 'q')]
    quiet: bool,
}

#[derive(Args)]
struct SignPackageArgs {
    /// The developer's secret key.
    #[arg(short = 's', value_name = "SEC")]
    secret: PathBuf,
    /// The passphrase of a protected secret key: the first line of FILE, its newline
    /// stripped as signify reads one line.
    ///
    /// Example: archman sign-package -s dev.sec --passphrase-file dev.pass hello_1.0_all.ipk
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Package files to sign.
    #[arg(value_name = "PKG", required = true)]
    packages: Vec<PathBuf>,
}

#[derive(Args)]
struct VerifyPackageArgs {
    #[command(flatten)]
    trust: PackageTrustArgs,
    /// Print nothing for packages that verify.
    #[arg(short = 'q')]
    quiet: bool,
    /// Package files to check (each against <PKG>.sig).
    #[arg(value_name = "PKG", required = true)]
    packages: Vec<PathBuf>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct PackageTrustArgs {
    /// Public key file.
    #[arg(short = 'p', value_name = "PUB")]
    public: Option<PathBuf>,
    /// Directory of public keys named by fingerprint.
    #[arg(short = 'P', value_name = "KEYDIR")]
    keydir: Option<PathBuf>,
    /// A keyring directory (archman keyring init): its current serial's developer keys.
    #[arg(long, value_name = "DIR")]
    keyring: Option<PathBuf>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct TrustArgs {
    /// Public key file.
    #[arg(short = 'p', value_name = "PUB")]
    public: Option<PathBuf>,
    /// Directory of public keys named by fingerprint (like /etc/opkg/keys).
    #[arg(short = 'P', value_name = "KEYDIR")]
    keydir: Option<PathBuf>,
}

#[derive(Args)]
#[group(required = false, multiple = false)]
struct OptionalTrust {
    /// Public key that must have signed Packages and Release.
    #[arg(short = 'p', value_name = "PUBKEY")]
    public: Option<PathBuf>,
    /// Directory of trusted keys named by fingerprint (like /etc/opkg/keys).
    #[arg(short = 'P', value_name = "KEYDIR")]
    keydir: Option<PathBuf>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct FingerprintArgs {
    #[arg(short = 's', value_name = "SEC")]
    secret: Option<PathBuf>,
    #[arg(short = 'p', value_name = "PUB")]
    public: Option<PathBuf>,
    #[arg(short = 'x', value_name = "SIG")]
    sig: Option<PathBuf>,
}

/// Draws index progress on stderr: a bar on a terminal, file names with -v.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    verbose: bool,
    quiet: bool,
}

impl index::Progress for Reporter {
    fn start(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }
    fn file(&self, path: &str, cached: bool) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        if self.verbose {
            let line = format!("{} {path}", if cached { "cached" } else { "read  " });
            match &self.bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
    }
    fn warn(&self, message: &str) {
        if !self.quiet {
            eprintln!("warning: {message}");
        }
    }
    fn note(&self, message: &str) {
        if !self.quiet {
            match &self.bar {
                Some(bar) => bar.println(message),
                None => eprintln!("{message}"),
            }
        }
    }
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Standard output for `archman usign`, which reports its own write errors: once the reader
/// is gone, the rest of the output is dropped as if written, so that the command ends as it
/// would have (status and messages) rather than with "Cannot write to standard output".
struct ClosedPipeSink<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> ClosedPipeSink<W> {
    fn new(inner: W) -> Self {
        ClosedPipeSink {
            inner,
            closed: false,
        }
    }
}

impl<W: Write> Write for ClosedPipeSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

/// A line to standard output ([`cli_support::outln`]): returns from the function with its
/// error (a closed pipe ends the program quietly in `main`).
macro_rules! outln {
    ($($arg:tt)*) => {
        cli_support::outln!($($arg)*)?
    };
}

fn main() -> ExitCode {
    cli_support::tune_allocator();
    match run(Cli::parse()) {
        Ok(code) => code,
        // A closed standard output (`archman check --json | head`) is a normal end.
        Err(e) if cli_support::is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli_support::error_message(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let audit = cli.audit_log.or_else(|| {
        std::env::var_os("ARCHMAN_AUDIT_LOG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    match cli.command {
        Command::Index(a) => cmd_index(a, audit.as_deref()),
        Command::Check(a) => cmd_check(a),
        Command::Usign(a) => cmd_usign(a),
        Command::Build(a) => cmd_build(a),
        Command::Keygen(a) => cmd_keygen(a),
        Command::Sign(a) => cmd_sign(a),
        Command::Verify(a) => cmd_verify(a),
        Command::SignPackage(a) => cmd_sign_package(a),
        Command::VerifyPackage(a) => cmd_verify_package(a),
        Command::Key(KeyCmd::Export(a)) => cmd_key_export(a),
        Command::Token(t) => cmd_token(t),
        Command::Completions { shell } => {
            cli_support::write_completions(&mut <Cli as clap::CommandFactory>::command(), shell)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            for p in cli_support::write_man_pages(&<Cli as clap::CommandFactory>::command(), &dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
            {
                outln!("{}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fingerprint { of } => cmd_fingerprint(of),
        Command::Keyring(cmd) => cmd_keyring(cmd),
    }
}

/// `archman index --json`: one object on one line; the field order is the key order.
#[derive(Serialize)]
struct IndexJson<'a> {
    feed: String,
    packages: usize,
    read: usize,
    cached: usize,
    bad: Vec<BadJson<'a>>,
    written: &'a [String],
    unchanged: bool,
    fingerprint: Option<&'a str>,
    /// The OpenPGP fingerprint of InRelease/Release.gpg's key, when they are written.
    #[serde(skip_serializing_if = "Option::is_none")]
    openpgp_fingerprint: Option<&'a str>,
    /// When Packages.gz was written: its runs of stanzas, and how many were compressed (the
    /// others reused from the last run).
    #[serde(skip_serializing_if = "Option::is_none")]
    packages_gz_runs: Option<GzRunsJson>,
    /// Wall-clock seconds, to the millisecond.
    seconds: f64,
}

#[derive(Serialize)]
struct GzRunsJson {
    total: usize,
    compressed: usize,
}

#[derive(Serialize)]
struct BadJson<'a> {
    path: &'a str,
    reason: &'a str,
}

impl<'a> IndexJson<'a> {
    fn new(feed_dir: &Path, s: &'a index::Summary, elapsed: std::time::Duration) -> Self {
        IndexJson {
            feed: feed_dir.display().to_string(),
            packages: s.packages,
            read: s.read,
            cached: s.cached,
            bad: s
                .bad
                .iter()
                .map(|b| BadJson {
                    path: &b.path,
                    reason: &b.reason,
                })
                .collect(),
            written: &s.written,
            unchanged: s.written.is_empty(),
            fingerprint: s.fingerprint.as_deref(),
            openpgp_fingerprint: s.openpgp_fingerprint.as_deref(),
            packages_gz_runs: s
                .gz_runs
                .map(|(compressed, total)| GzRunsJson { total, compressed }),
            seconds: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        }
    }
}

/// A value as one line of JSON on standard output.
fn print_json(value: &impl Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// The events of one `archman index` run for the audit log (`--audit-log`).
fn audit_index(
    log: &Path,
    feed: &Path,
    outcome: &Result<index::Summary, index::IndexError>,
) -> Result<()> {
    let mut log = audit_log::Log::open(log, "archman", env!("CARGO_PKG_VERSION"))?;
    let feed_s = feed.display().to_string();
    let refused = |log: &mut audit_log::Log, bad: &[index::BadFile]| -> Result<()> {
        for b in bad {
            log.append(
                "package-refused",
                &serde_json::json!({ "feed": feed_s, "file": b.path, "reason": b.reason }),
            )?;
        }
        Ok(())
    };
    match outcome {
        Ok(s) => {
            refused(&mut log, &s.bad)?;
            if s.written.is_empty() {
                log.append(
                    "feed-unchanged",
                    &serde_json::json!({ "feed": feed_s, "packages": s.packages }),
                )?;
            } else {
                let mut files = Vec::new();
                for name in &s.written {
                    let bytes = std::fs::read(feed.join(name)).with_context(|| {
                        format!("{}: cannot read back", feed.join(name).display())
                    })?;
                    files.push(serde_json::json!({
                        "name": name,
                        "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                    }));
                }
                log.append(
                    "feed-published",
                    &serde_json::json!({
                        "feed": feed_s,
                        "files": files,
                        "key": s.fingerprint,
                        "openpgp_key": s.openpgp_fingerprint,
                        "packages": s.packages,
                        "read": s.read,
                        "cached": s.cached,
                        "release_date": s.date.map(audit_log::format_rfc3339),
                    }),
                )?;
            }
        }
        Err(e) => {
            if let index::IndexError::BadPackages(bad) = e {
                refused(&mut log, bad)?;
            }
            log.append(
                "feed-not-published",
                &serde_json::json!({ "feed": feed_s, "reason": e.to_string() }),
            )?;
        }
    }
    log.finish()?;
    Ok(())
}

fn cmd_index(a: IndexArgs, audit: Option<&Path>) -> Result<ExitCode> {
    let (date, date_source) = match feeds::release::source_date_epoch()? {
        Some(d) => (d, DateSource::Fixed),
        None => (feeds::release::unix_now(), DateSource::Clock),
    };
    let now = feeds::release::unix_now();
    let developer = DeveloperPolicy {
        mode: match a.developer_signatures {
            DeveloperArg::Off => DeveloperMode::Off,
            DeveloperArg::Check => DeveloperMode::Check,
            DeveloperArg::Require => DeveloperMode::Require,
        },
        keyring: match (&a.keyring, a.developer_signatures) {
            (_, DeveloperArg::Off) => None,
            (None, _) => anyhow::bail!(
                "--developer-signatures check|require needs --keyring DIR (the keyring with the developer keys)"
            ),
            (Some(dir), _) => Some(published_keyring(dir)?),
        },
        now,
    };
    // The key is read here first for the clear errors of archman sign (a protected key
    // without --passphrase-file, a wrong passphrase) before the feed is locked or read.
    let key_passphrase = passphrase_from(a.passphrase_file.as_deref())?;
    if let Some(key) = &a.key {
        keys::read_secret(key, key_passphrase.as_deref())?;
    }
    let debian = match a.layout {
        LayoutArg::Flat => {
            if a.suite.is_some() || !a.archs.is_empty() {
                anyhow::bail!("--suite and --arch belong to --layout debian");
            }
            None
        }
        LayoutArg::Debian => {
            if matches!(a.profile, ProfileArg::Openwrt) {
                anyhow::bail!(
                    "--layout debian publishes apt's archive; --profile openwrt is OpenWrt's flat feed"
                );
            }
            let layout = index::DebianLayout {
                suite: a.suite.clone().unwrap_or_default(),
                codename: a.codename.clone(),
                component: a.component.clone(),
                archs: a.archs.clone(),
                by_hash_keep: a.by_hash_keep,
            };
            layout.check()?;
            Some(layout)
        }
    };
    let opts = IndexOptions {
        debian,
        developer,
        openpgp: match (a.openpgp, a.no_openpgp) {
            (true, _) => OpenPgpMode::Always,
            (_, true) => OpenPgpMode::Never,
            _ => OpenPgpMode::Auto,
        },
        key: a.key,
        key_passphrase,
        profile: match a.profile {
            ProfileArg::Full => Profile::Full,
            ProfileArg::Openwrt => Profile::OpenWrt,
        },
        md5: a.md5,
        valid_for: a.valid_for,
        origin: a.origin,
        jobs: a.jobs,
        stanza_memory: a.stanza_memory,
        cache: match (a.no_cache, a.cache) {
            (true, _) => CacheMode::Off,
            (false, path) => CacheMode::On {
                home: archman::cache::cache_home(),
                path,
            },
        },
        wait: !a.no_wait,
        skip_bad: a.skip_bad,
        date,
        date_source,
        allow_date_rollback: a.allow_date_rollback,
        refresh: a.refresh,
    };
    let bar = (!a.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} packages {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let reporter = Reporter {
        bar,
        verbose: a.verbose,
        quiet: a.quiet,
    };
    let started = std::time::Instant::now();
    let outcome = index::index_feed(&a.feed_dir, &opts, &reporter);
    if let Some(log) = audit {
        audit_index(log, &a.feed_dir, &outcome)?;
    }
    let s = outcome?;
    for b in &s.bad {
        eprintln!(
            "error: {}: {}",
            a.feed_dir.join(&b.path).display(),
            b.reason
        );
    }
    if a.json {
        print_json(&IndexJson::new(&a.feed_dir, &s, started.elapsed()))?;
    } else if !a.quiet {
        let what = if s.written.is_empty() {
            "unchanged".to_string()
        } else {
            format!("wrote {}", s.written.join(", "))
        };
        let signed = s
            .fingerprint
            .as_deref()
            .map(|f| match &s.openpgp_fingerprint {
                Some(o) => format!(", signed by key {f} (OpenPGP {o})"),
                None => format!(", signed by key {f}"),
            })
            .unwrap_or_default();
        eprintln!(
            "{}: {} packages ({} read, {} cached), {what}{signed} in {:.2}s",
            a.feed_dir.display(),
            s.packages,
            s.read,
            s.cached,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(if s.bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn cmd_check(a: CheckArgs) -> Result<ExitCode> {
    use archman::check;
    let trust = match (&a.trust.public, &a.trust.keydir) {
        (Some(p), _) => Some(check::Trust::Key(p)),
        (None, Some(d)) => Some(check::Trust::Dir(d)),
        (None, None) => None,
    };
    let opts = check::CheckOptions {
        trust,
        assume_installed: a.assume_installed,
        ..Default::default()
    };
    let report = check::check_feed(&a.feed_dir, &opts)?;
    if a.json {
        outln!("{}", report.to_json());
    } else if !a.quiet || !report.ok() {
        cli_support::write_stdout(format_args!("{report}"))?;
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cmd_usign(a: UsignArgs) -> Result<ExitCode> {
    let code = archman::usign_compat::run(
        a.args,
        &mut std::io::stdin().lock(),
        &mut ClosedPipeSink::new(std::io::stdout().lock()),
        &mut std::io::stderr().lock(),
    );
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn newest_mtime(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.path().symlink_metadata().ok())
        .map(|m| m.mtime().max(0) as u64)
        .max()
        .unwrap_or(0)
}

fn cmd_build(a: BuildArgs) -> Result<ExitCode> {
    let mtime = match feeds::release::source_date_epoch()? {
        Some(d) => d as u64,
        None => newest_mtime(&a.pkg_dir),
    };
    let container = match a.format {
        Format::Tgz => feeds::package::Container::TarGz,
        Format::Ar => feeds::package::Container::Ar,
    };
    let out = archman::build::build(
        &a.pkg_dir,
        a.out_dir.as_deref().unwrap_or(Path::new(".")),
        container,
        mtime,
    )?;
    outln!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn cmd_keygen(a: KeygenArgs) -> Result<ExitCode> {
    // Everything that can fail is read before a passphrase is asked for.
    let secret = match (&a.source.seed_env, &a.source.seed_file) {
        (Some(var), _) => Some(keygen::Secret::from_env(var)?),
        (None, Some(file)) => Some(keygen::Secret::from_file(file)?),
        (None, None) => None,
    };
    let source = match (&secret, &a.source.import_pem) {
        (Some(secret), _) => KeySource::Derived(secret),
        (None, Some(pem)) => KeySource::Imported(keygen::read_pem(pem)?),
        (None, None) => KeySource::Random,
    };
    let mut files = keys::KeyFiles {
        secret: &a.secret,
        public: &a.public,
        comment: a.comment.as_deref(),
        passphrase: None,
        force: a.force,
    };
    keys::check_new(&files)?;
    let passphrase = match (&a.protect.passphrase_file, a.protect.ask) {
        (Some(file), _) => Some(keygen::read_passphrase_file(file)?),
        (None, true) => Some(ask_new_passphrase()?),
        (None, false) => None,
    };
    files.passphrase = passphrase.as_deref();
    let fp = keys::keygen(source, &files)?;
    outln!("{fp}");
    Ok(ExitCode::SUCCESS)
}

/// `archman keygen --ask`: a new passphrase, typed twice on the terminal with echo off.
fn ask_new_passphrase() -> Result<Vec<u8>> {
    let ask = |e: archman::tty::TtyError| match e {
        archman::tty::TtyError::NoTerminal(_) => {
            anyhow::anyhow!("--ask: {e}; give --passphrase-file FILE instead")
        }
        _ => anyhow::anyhow!("--ask: reading the passphrase: {e}; no key was written"),
    };
    let mut tty = archman::tty::Tty::open().map_err(ask)?;
    let first = tty.read_passphrase("passphrase: ").map_err(ask)?;
    if first.is_empty() {
        anyhow::bail!("--ask: empty passphrase; no key was written");
    }
    let second = tty.read_passphrase("confirm passphrase: ").map_err(ask)?;
    if first != second {
        anyhow::bail!("--ask: the passphrases differ; no key was written");
    }
    Ok(first)
}

/// The passphrase in `--passphrase-file FILE`, if given.
fn passphrase_from(file: Option<&Path>) -> Result<Option<Vec<u8>>> {
    Ok(file.map(keygen::read_passphrase_file).transpose()?)
}

fn cmd_sign(a: SignArgs) -> Result<ExitCode> {
    let sig = a.sig.unwrap_or_else(|| keys::default_sig_path(&a.message));
    let key = match (&a.key.secret, &a.key.pem) {
        (Some(sec), _) => {
            let passphrase = passphrase_from(a.passphrase_file.as_deref())?;
            keys::read_secret(sec, passphrase.as_deref())?
        }
        (None, Some(pem)) => keygen::read_pem(pem)?,
        (None, None) => unreachable!("clap requires -s or --pem"),
    };
    keys::sign(&key, &a.message, &sig)?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_key_export(a: KeyExportArgs) -> Result<ExitCode> {
    if a.openpgp {
        return cmd_key_export_openpgp(a);
    }
    match (&a.key.secret, &a.key.public) {
        (Some(sec), _) => {
            let passphrase = passphrase_from(a.passphrase_file.as_deref())?;
            let key = keys::read_secret(sec, passphrase.as_deref())?;
            keys::export_secret_pem(&key, &a.out, a.force)?;
            let derived = keygen::key_number(key.public_key().as_bytes());
            if derived != key.fingerprint() {
                eprintln!(
                    "note: PEM has no key number: read back (keygen --import-pem, sign --pem) \
                     this key gets key number {derived}, not {}",
                    key.fingerprint()
                );
            }
        }
        (None, Some(public)) => keys::export_public_pem(&PublicKey::read_path(public)?, &a.out)?,
        (None, None) => unreachable!("clap requires -s or -p"),
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_key_export_openpgp(a: KeyExportArgs) -> Result<ExitCode> {
    let Some(sec) = &a.key.secret else {
        let public = a.key.public.as_deref().unwrap_or(Path::new("-"));
        anyhow::bail!(
            "{}: an OpenPGP certificate must be self-signed by its secret key (gpgv and apt \
             refuse a bare public key: \"Can't check signature: Bad public key\"); give the \
             secret key with -s, or for a keyring package use archman keyring add-openpgp",
            public.display()
        );
    };
    let passphrase = passphrase_from(a.passphrase_file.as_deref())?;
    let key = keys::read_secret(sec, passphrase.as_deref())?;
    let fp = keys::export_openpgp(&key, a.name.as_deref(), a.armor, &a.out)?;
    eprintln!(
        "{}: OpenPGP certificate {fp} of usign key {}",
        a.out.display(),
        key.fingerprint()
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_token(cmd: TokenCmd) -> Result<ExitCode> {
    use archman::token::{NGINX_VARIABLE, TokenDir};
    let (a, verb) = match cmd {
        TokenCmd::List { dir } => {
            for (name, _) in TokenDir::open(&dir)?.tokens()? {
                outln!("{name}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        TokenCmd::Remove(a) => {
            TokenDir::open(&a.dir)?.remove(&a.name)?;
            outln!(
                "token {} removed; reload the server (nginx -s reload) and it is refused",
                a.name
            );
            return Ok(ExitCode::SUCCESS);
        }
        TokenCmd::New(a) => (a, "new"),
        TokenCmd::Roll(a) => (a, "roll"),
    };
    let dir = TokenDir::open(&a.dir)?;
    let w = if verb == "new" {
        dir.new_token(&a.name)?
    } else {
        dir.roll(&a.name)?
    };
    if let Some(out) = &a.out {
        safe_fs::write_atomic(
            out,
            format!("{}\n", w.token.expose()).as_bytes(),
            safe_fs::WriteOptions::default().mode(0o600),
        )?;
    }
    let abs = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    outln!(
        "token {} {}: {}{}",
        w.name,
        if verb == "new" {
            "made"
        } else {
            "rolled (the old one is dropped)"
        },
        w.token_file.display(),
        a.out
            .as_ref()
            .map(|o| format!(" and {}", o.display()))
            .unwrap_or_default()
    );
    outln!("nginx, bearer tokens: in http {{}}:");
    outln!("    include {};", abs(&w.bearer_file).display());
    outln!("  and in the feed's location:");
    outln!("    if ({NGINX_VARIABLE} = 0) {{ return 401; }}");
    outln!(
        "nginx, basic auth (login {}, the token as password):",
        w.name
    );
    outln!("    auth_basic \"feed\";");
    outln!(
        "    auth_basic_user_file {};",
        abs(&w.htpasswd_file).display()
    );
    outln!("  its line: {}", w.htpasswd_line);
    outln!("then: nginx -s reload; on the client: prokit auth set FEED --token-file FILE");
    Ok(ExitCode::SUCCESS)
}

fn cmd_verify(a: VerifyArgs) -> Result<ExitCode> {
    let sig = a.sig.unwrap_or_else(|| keys::default_sig_path(&a.message));
    let trust = match (&a.trust.public, &a.trust.keydir) {
        (Some(p), _) => Trust::Key(p),
        (None, Some(d)) => Trust::Dir(d),
        (None, None) => unreachable!("clap requires -p or -P"),
    };
    let fp = keys::verify(&a.message, trust, &sig)?;
    if !a.quiet {
        outln!("OK: {} signed by key {fp}", a.message.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The newest serial of the keyring directory `dir` that carries its root signatures (the
/// current one, or the one before a draft).
fn published_keyring(dir: &Path) -> Result<keyring_pkg::Keyring> {
    let wd = keyring_pkg::workdir::Workdir::open(dir)?;
    if wd.is_complete() {
        return Ok(wd.current().keyring().clone());
    }
    match wd.previous() {
        Some(p) => Ok(p.keyring().clone()),
        None => anyhow::bail!(
            "{}: keyring serial {} is not signed yet (archman keyring sign {} -s ROOT_SEC)",
            dir.display(),
            wd.current().serial(),
            dir.display()
        ),
    }
}

fn cmd_sign_package(a: SignPackageArgs) -> Result<ExitCode> {
    let passphrase = passphrase_from(a.passphrase_file.as_deref())?;
    let key = keys::read_secret(&a.secret, passphrase.as_deref())?;
    for p in &a.packages {
        let (file, sig) = archman::devsig::sign_package(&key, p)?;
        outln!(
            "{}: {} {} signed by developer key {}",
            sig.display(),
            file.package.name(),
            file.package.version(),
            key.fingerprint()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_verify_package(a: VerifyPackageArgs) -> Result<ExitCode> {
    use archman::devsig::{PackageTrust, verify_package};
    let now = feeds::release::unix_now();
    let (public, keyring);
    let trust = match (&a.trust.public, &a.trust.keydir, &a.trust.keyring) {
        (Some(p), _, _) => {
            public = PublicKey::read_path(p)?;
            PackageTrust::Key(&public)
        }
        (_, Some(d), _) => PackageTrust::Dir(d),
        (_, _, Some(dir)) => {
            keyring = keyring_pkg::workdir::Workdir::open(dir)?
                .current()
                .keyring()
                .clone();
            PackageTrust::Keyring(&keyring, now)
        }
        _ => unreachable!("clap requires -p, -P or --keyring"),
    };
    let mut failed = 0;
    for p in &a.packages {
        match verify_package(p, None, &trust) {
            Ok((file, fp)) => {
                if !a.quiet {
                    outln!(
                        "OK: {}: {} {} signed by developer key {fp}",
                        p.display(),
                        file.package.name(),
                        file.package.version()
                    );
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("archman: {}", cli_support::error_message(&e));
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "archman: {failed} of {} package signatures failed",
            a.packages.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_fingerprint(of: FingerprintArgs) -> Result<ExitCode> {
    let of = match (&of.secret, &of.public, &of.sig) {
        (Some(s), _, _) => FingerprintOf::Secret(s),
        (_, Some(p), _) => FingerprintOf::Public(p),
        (_, _, Some(x)) => FingerprintOf::Signature(x),
        _ => unreachable!("clap requires one of -s -p -x"),
    };
    outln!("{}", keys::fingerprint(of)?);
    Ok(ExitCode::SUCCESS)
}

fn cmd_keyring(cmd: KeyringCmd) -> Result<ExitCode> {
    use keyring_pkg::manifest::{KeyEntry, Role, Scope};
    use keyring_pkg::workdir;
    let now = feeds::release::unix_now();
    match cmd {
        KeyringCmd::Init {
            dir,
            name,
            root_keys,
            feed_keys,
            threshold,
            expires,
        } => {
            let roots = root_keys
                .iter()
                .map(|p| SecretKey::read_path(p, None))
                .collect::<Result<Vec<_>, _>>()?;
            let feeds = feed_keys
                .iter()
                .map(|p| PublicKey::read_path(p))
                .collect::<Result<Vec<_>, _>>()?;
            let k = workdir::init(&dir, &name, &roots, &feeds, threshold, expires as u64, now)?;
            outln!(
                "keyring {name} serial {} in {}: {} root keys, {} feed keys, threshold {threshold}",
                k.serial(),
                dir.display(),
                roots.len(),
                feeds.len()
            );
        }
        KeyringCmd::AddKey {
            dir,
            role,
            packages,
            public,
        } => {
            let key = PublicKey::read_path(&public)?;
            let role = match role {
                RoleArg::Root => Role::Root,
                RoleArg::Feed => Role::Feed,
                RoleArg::Developer => Role::Developer,
            };
            let mut entry = KeyEntry::new(&key, role);
            if let Some(globs) = packages {
                if role != Role::Developer {
                    anyhow::bail!("--packages: only a developer key has a package scope");
                }
                entry.scope = Some(
                    Scope::parse(&globs)
                        .map_err(|e| anyhow::anyhow!("--packages {globs:?}: {e}"))?,
                );
            }
            describe_change(&workdir::add_key_entry(&dir, entry, now)?)?;
        }
        KeyringCmd::SetScope {
            dir,
            fingerprint,
            packages,
            any: _,
        } => {
            let scope = packages
                .map(|g| Scope::parse(&g).map_err(|e| anyhow::anyhow!("{g:?}: {e}")))
                .transpose()?;
            describe_change(&workdir::set_scope(
                &dir,
                parse_fp(&fingerprint)?,
                scope,
                now,
            )?)?
        }
        KeyringCmd::Retire { dir, fingerprint } => {
            describe_change(&workdir::retire(&dir, parse_fp(&fingerprint)?, now)?)?
        }
        KeyringCmd::Revoke { dir, fingerprint } => {
            describe_change(&workdir::revoke(&dir, parse_fp(&fingerprint)?, now)?)?
        }
        KeyringCmd::SetThreshold { dir, threshold } => {
            describe_change(&workdir::set_threshold(&dir, threshold, now)?)?
        }
        KeyringCmd::SetExpires { dir, expires } => {
            describe_change(&workdir::set_expires(&dir, expires as u64, now)?)?
        }
        KeyringCmd::Sign { dir, secret } => {
            let key = SecretKey::read_path(&secret, None)?;
            let s = workdir::sign(&dir, &key, now)?;
            outln!(
                "serial {} signed by {}{}; {}",
                s.serial,
                s.fingerprint,
                if s.replaced {
                    " (replacing its earlier signature)"
                } else {
                    ""
                },
                s.own.describe()
            );
            if let Some(prev) = &s.previous {
                outln!("against serial {}: {}", s.serial - 1, prev.describe());
            }
        }
        KeyringCmd::AddOpenpgp {
            dir,
            certs,
            secret,
            name,
            passphrase_file,
        } => {
            let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
            if let Some(sec) = &secret {
                let passphrase = passphrase_from(passphrase_file.as_deref())?;
                let key = keys::read_secret(sec, passphrase.as_deref())?;
                let ring = workdir::Workdir::open(&dir)?;
                let name = name.unwrap_or_else(|| ring.current().name().to_string());
                let signer = usign_openpgp::Signer::from_seed(&key.seed())?;
                let cert = signer.certificate(&usign_openpgp::user_id(
                    Some(&name),
                    &key.fingerprint().to_string(),
                ))?;
                blobs.push((sec.display().to_string(), cert.to_binary()?));
            }
            for c in &certs {
                let bytes =
                    std::fs::read(c).map_err(|e| anyhow::anyhow!("{}: {e}", c.display()))?;
                blobs.push((c.display().to_string(), bytes));
            }
            for (from, bytes) in blobs {
                let added = workdir::add_openpgp(&dir, &bytes)
                    .map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
                outln!(
                    "{}: OpenPGP certificate {} of feed key {} ({})",
                    added.path.display(),
                    added.openpgp,
                    added.fingerprint,
                    added.user_ids.join(", ")
                );
            }
        }
        KeyringCmd::Build { dir, out, deb } => {
            let mtime = match feeds::release::source_date_epoch()? {
                Some(m) => m as u64,
                None => workdir::Workdir::open(&dir)?
                    .current()
                    .keyring()
                    .date()
                    .max(0) as u64,
            };
            std::fs::create_dir_all(&out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
            for path in workdir::build_all(&dir, &out, mtime, now, deb)? {
                outln!("{}", path.display());
            }
        }
        KeyringCmd::Show { dir } => outln!("{}", workdir::show(&dir, now)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_fp(text: &str) -> Result<feeds::usign::Fingerprint> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a key fingerprint (16 hex digits)"))
}

fn describe_change(c: &keyring_pkg::workdir::Change) -> Result<()> {
    if let Some(old) = c.archived {
        outln!(
            "serial {old} archived to history/; serial {} started",
            c.serial
        );
    }
    if !c.discarded_signatures.is_empty() {
        let fps: Vec<String> = c
            .discarded_signatures
            .iter()
            .map(|f| f.to_string())
            .collect();
        outln!(
            "dropped signatures of the changed draft by: {}",
            fps.join(", ")
        );
    }
    outln!(
        "serial {} changed; it needs root signatures: archman keyring sign DIR -s ROOT_SEC",
        c.serial
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn index_json_has_every_key_in_order_on_one_line() {
        let s = index::Summary {
            packages: 3,
            read: 1,
            cached: 2,
            bad: vec![index::BadFile {
                path: "we\"ird\\name.ipk".into(),
                reason: "truncated:\n4 bytes".into(),
            }],
            written: vec!["Packages".into(), "Release".into()],
            fingerprint: Some("5b6ecababdf793fb".into()),
            ..Default::default()
        };
        let json = IndexJson::new(Path::new("fe\"ed"), &s, Duration::from_micros(6_499));
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            concat!(
                r#"{"feed":"fe\"ed","packages":3,"read":1,"cached":2,"#,
                r#""bad":[{"path":"we\"ird\\name.ipk","reason":"truncated:\n4 bytes"}],"#,
                r#""written":["Packages","Release"],"unchanged":false,"#,
                r#""fingerprint":"5b6ecababdf793fb","seconds":0.006}"#
            )
        );
    }

    #[test]
    fn an_unchanged_unsigned_feed_has_null_fingerprint_and_no_writes() {
        let s = index::Summary::default();
        let json = IndexJson::new(Path::new("."), &s, Duration::from_millis(1500));
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"feed":".","packages":0,"read":0,"cached":0,"bad":[],"written":[],"unchanged":true,"fingerprint":null,"seconds":1.5}"#
        );
    }
}
