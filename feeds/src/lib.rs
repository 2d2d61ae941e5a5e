//! `feeds` owns the on-disk formats of opkg and apt package feeds, and nothing else:
//!
//! - [`control`]: deb822 paragraphs (ordered fields, case-insensitive lookup, continuation
//!   lines), a streaming reader over many paragraphs and a byte-exact writer;
//! - [`version`]: Debian/opkg versions `[epoch:]upstream[-revision]`, ordered as dpkg orders them;
//! - [`relation`]: `Depends`-style relation fields (`a (>= 1.0) | b, c:any [amd64]`);
//! - [`package`]: reading `.ipk` (gzipped tar or `ar`) and `.deb` packages in one bounded pass
//!   that also hashes the file;
//! - [`index`]: `Packages` stanzas and files (plain and gzipped);
//! - [`release`]: the feed `Release` file;
//! - [`usign`]: usign/signify Ed25519 keys, signatures and fingerprints;
//! - [`limits`]: the bounds every reader enforces.
//!
//! The library never prints and never exits: every failure is a typed error that names what
//! was wrong (the member, the field, the line).

pub mod build;
pub mod control;
mod ed25519_sign;
mod ed25519_verify;
pub mod glob;
pub mod index;
pub mod index_gz;
pub mod limits;
pub mod package;
pub mod relation;
pub mod release;
pub mod usign;
pub mod version;
