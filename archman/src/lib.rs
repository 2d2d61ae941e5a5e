//! `archman` is the archive manager that feed maintainers run after every build. This crate
//! owns its operations; `main.rs` only parses arguments, calls them and prints.
//!
//! - [`index`]: scan a feed, read packages in parallel (or from the [`cache`]), publish the
//!   signed index atomically;
//! - [`check`]: verify a published feed (signatures, Release, files, strays, dependencies);
//! - [`usign_compat`]: OpenWrt usign's command-line interface;
//! - [`build`]: the `ipkg-build` equivalent;
//! - [`keys`]: usign-compatible key generation, signing, verification, fingerprints;
//! - [`keygen`]: keys derived from a secret (HKDF) or read from PEM, passphrase files;
//! - [`tty`]: passphrases typed on the terminal with echo off (`keygen --ask`);
//! - [`devsig`]: developer signatures on package files (sign-package, verify-package);
//! - [`signers`]: which developer key signed each package name last (key consistency);
//! - [`spill`]: stanza text past the memory budget, kept in a file without a name.

pub mod build;
// geteuid(2): the cache key must belong to the user running archman.
#[allow(unsafe_code)]
pub mod cache;
pub mod check;
pub mod devsig;
pub mod gz_parts;
pub mod index;
pub mod keygen;
pub mod keys;
pub mod signers;
pub mod spill;
pub mod token;
pub mod tty;
pub mod usign_compat;
