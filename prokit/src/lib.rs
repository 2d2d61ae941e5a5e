//! `prokit` — the feed client library: configuration (`config`), fetching (`fetch`), feed
//! verification and the stored indexes (`feed`), dependency resolution (`resolve`), verified
//! parallel downloads (`download`), the opkg-compatible installed database (`status`), safe
//! unpacking (`unpack`), installing and removing (`install`), checking an installed root
//! (`verify`), reproducible root tarballs (`rootfs`), and the operations that tie them
//! together (`client`). The `prokit` binary is a thin command line over `client`.
//!
//! The library never prints or exits; it reports progress through [`client::Progress`] and
//! returns typed errors that name the feed, URL, file or package concerned.

pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod download;
pub mod feed;
pub mod fetch;
pub mod install;
pub mod keyring;
mod planned;
pub mod policy;
pub mod query;
mod read_ahead;
pub mod resolve;
pub mod review;
pub mod rootfs;
mod scratch_log;
mod scratch_table;
mod stanza_store;
mod texts;
// The database lock (fcntl(2) open file description locks, flock(2)).
#[allow(unsafe_code)]
pub mod status;
// openat(2) and the other *at calls that confine every write to the root.
#[allow(unsafe_code)]
pub mod unpack;
mod verdicts;
pub mod verify;
