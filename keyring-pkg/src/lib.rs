//! `keyring-pkg` owns the feed keyring kept as a package (docs/formats.md §5,
//! docs/trust-model.md): which keys may sign what, how that changes over time, and how a
//! client moves from one keyring to the next without ever trusting a rollback, a fork, a
//! revoked key or too few root signatures.
//!
//! - [`manifest`]: the `keyring` file (deb822): header (`Keyring`, `Serial`, `Date`, `Expires`,
//!   `Root-Threshold`) and one stanza per key (`Fingerprint`, `Public-Key`,
//!   `Role: root|feed|developer`, `Status: active|retired|revoked`, `Packages` (a developer
//!   key's scope), `Not-After`, `Comment`); strict parsing, canonical
//!   writing;
//! - [`signatures`]: `keyring.sig`, several usign signature blocks over one manifest, counted per
//!   distinct active, unexpired root key; [`SignedKeyring`] binds manifest bytes and blocks;
//! - [`accept`]: the trust rules — a keyring meets its own threshold ([`check_self`]); a step
//!   n → n+1 is signed by the threshold of the old roots **and** of the new ones and keeps every
//!   revocation ([`check_step`]); the serial-by-serial chain walk with rollback, fork and gap
//!   refusal ([`accept_chain`]); explicit bootstrap ([`accept_initial`]); and which feed keys a
//!   keyring lets sign feeds ([`feed_key_state`], [`trusted_feed_keys`], [`distrusted_keys`]);
//! - [`developer`]: developer signatures on package files, the second signing layer: a
//!   detached usign signature counts by an active developer key whose `Packages` scope covers
//!   the package name ([`developer::check`]);
//! - [`package`]: the reproducible `<name>-keyring_<serial>_all.ipk` (gzipped-tar container,
//!   opkg-lede installable) with `etc/opkg/keys/<fp>`, the keyring and its full history;
//!   building refuses a keyring that fails its own rules; reading is bounded and path-checked;
//! - [`workdir`]: the maintainer's keyring directory that `archman keyring` drives (init,
//!   add-key, retire, revoke, set-threshold, sign, show, build), with the rule "one serial per
//!   change, not per signature";
//! - [`mod@apply`]: a root's trusted state under `var/lib/prokit/keyrings/<name>/`, swapped in
//!   atomically, `etc/opkg/keys/` kept in sync (revoked and retired keys removed whoever put
//!   them there), and the lock that serialises refreshes.
//!
//! The crate never prints and never exits: every failure is a typed error whose message names
//! the keyring, serial, file, key and what was expected. Time is always an argument (`now`,
//! seconds since the epoch; [`unix_now`] reads the clock) so that every rule is testable.
//! Every file is written to a temporary name in its directory, fsynced and renamed.

pub mod accept;
pub mod apply;
pub mod archive;
pub mod developer;
pub mod manifest;
pub mod package;
pub mod signatures;
pub mod workdir;

pub use accept::{
    FeedKeyState, Refusal, Verified, accept_chain, accept_initial, check_self, check_step,
    distrusted_keys, feed_key_state, trusted_feed_keys,
};
pub use apply::{ApplyError, ApplyReport, KeyringLock, apply, load_trusted, lock};
pub use developer::DeveloperError;
pub use manifest::{KeyEntry, Keyring, ManifestError, Role, Scope, Status};
pub use package::{KeyringPackage, build_package, read_keyring_package};
pub use signatures::{SignatureSet, SignedKeyring, Tally};

/// The current time in seconds since the epoch (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
