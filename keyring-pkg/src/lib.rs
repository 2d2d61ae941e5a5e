//! `keyring-pkg` will own the keyring kept as a package (DESIGN.md §3.5, §4): the manifest
//! model, root and feed key roles, rotation, revocation, expiry, root thresholds, the
//! serial-by-serial chain walk with rollback and fork protection, building the keyring
//! package, and applying an accepted keyring to a root atomically.
//!
//! Nothing is implemented yet: the keyring issue fills this crate. It exists now so that the
//! workspace has its final shape and `archman`/`prokit` can depend on it.
