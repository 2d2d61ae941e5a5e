//! `archman` is the archive manager that feed maintainers run after every build. This crate
//! owns its operations; `main.rs` only parses arguments, calls them and prints.
//!
//! Today it holds the usign-compatible key operations ([`keys`]); the feed indexer, the
//! checker, the package builder and the keyring commands follow in their issues.

pub mod keys;
