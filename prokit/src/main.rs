//! The `prokit` command line. Its commands (update, install, remove, list, info, verify,
//! bootstrap, keyring) arrive with the prokit and keyring issues; today it only describes
//! itself.

use clap::Parser;

/// Client for signed opkg feeds: fetch and verify feeds, resolve dependencies, verify every
/// package, install into a root filesystem with an opkg-compatible status database, and
/// bootstrap a rootfs on a build host.
///
/// No commands are available yet in this version.
#[derive(Parser)]
#[command(name = "prokit", version, about, long_about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    println!("prokit: no commands yet; see `prokit --help`");
}
