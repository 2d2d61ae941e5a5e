//! The `archman` command line: parses arguments, calls the `archman` library, prints.

use std::path::PathBuf;
use std::process::ExitCode;

use archman::keys::{self, FingerprintOf, Trust};
use clap::{Args, Parser, Subcommand};

/// Archive manager for opkg/apt package feeds.
///
/// Key files are usign/signify compatible: keys made here work with `usign` and
/// `signify-openbsd`, and theirs work here.
#[derive(Parser)]
#[command(name = "archman", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a usign key pair (secret key written 0600).
    ///
    /// Example: archman keygen -s feed.sec -p feed.pub -c "example feed key"
    Keygen {
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
    },
    /// Sign a file; the signature goes to <FILE>.sig unless -x is given.
    ///
    /// Example: archman sign -s feed.sec -m Packages
    Sign {
        #[arg(short = 's', value_name = "SEC")]
        secret: PathBuf,
        /// The file to sign.
        #[arg(short = 'm', value_name = "FILE")]
        message: PathBuf,
        /// Signature file (default <FILE>.sig).
        #[arg(short = 'x', value_name = "SIG")]
        sig: Option<PathBuf>,
    },
    /// Verify a signature with a public key (-p) or a key directory (-P); exit 1 if it fails.
    ///
    /// Example: archman verify -m Packages -P /etc/opkg/keys
    Verify {
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
    },
    /// Print the fingerprint of a secret key, public key or signature.
    Fingerprint {
        #[command(flatten)]
        of: FingerprintArgs,
    },
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
#[group(required = true, multiple = false)]
struct FingerprintArgs {
    #[arg(short = 's', value_name = "SEC")]
    secret: Option<PathBuf>,
    #[arg(short = 'p', value_name = "PUB")]
    public: Option<PathBuf>,
    #[arg(short = 'x', value_name = "SIG")]
    sig: Option<PathBuf>,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen {
            secret,
            public,
            comment,
            force,
        } => {
            let fp = keys::keygen(&secret, &public, comment.as_deref(), force)?;
            println!("{fp}");
        }
        Command::Sign {
            secret,
            message,
            sig,
        } => {
            let sig = sig.unwrap_or_else(|| keys::default_sig_path(&message));
            keys::sign(&secret, &message, &sig)?;
        }
        Command::Verify {
            message,
            trust,
            sig,
            quiet,
        } => {
            let sig = sig.unwrap_or_else(|| keys::default_sig_path(&message));
            let trust = match (&trust.public, &trust.keydir) {
                (Some(p), _) => Trust::Key(p),
                (None, Some(d)) => Trust::Dir(d),
                (None, None) => unreachable!("clap requires -p or -P"),
            };
            let fp = keys::verify(&message, trust, &sig)?;
            if !quiet {
                println!("OK: {} signed by key {fp}", message.display());
            }
        }
        Command::Fingerprint { of } => {
            let of = match (&of.secret, &of.public, &of.sig) {
                (Some(s), _, _) => FingerprintOf::Secret(s),
                (_, Some(p), _) => FingerprintOf::Public(p),
                (_, _, Some(x)) => FingerprintOf::Signature(x),
                _ => unreachable!("clap requires one of -s -p -x"),
            };
            println!("{}", keys::fingerprint(of)?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
