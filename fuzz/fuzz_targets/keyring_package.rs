//! Keyring packages (`<name>-keyring_<serial>_all.ipk`):
//! `keyring_pkg::package::read_keyring_package_from` over arbitrary bytes (the reader is
//! bounded by the crate's own limits).
//!
//! Asserts, when a package is read: the name is the package name without `-keyring`, every
//! keyring in it (current and history) has that name, the history holds only serials older
//! than the current one, each under its own serial, and every manifest re-parses from its
//! bytes; every key file is an active feed key of the current keyring, filed under one of its
//! `key_file_names`. `candidates` yields the history then the current keyring.
//!
//! Seeds: `seed.sh` builds keyring packages with `tar` (gzipped-tar container, as
//! `build_package` writes them): current serial only, and with a history and key files.
#![no_main]

use keyring_pkg::manifest::{Keyring, Role, Status};
use keyring_pkg::package::{key_file_names, read_keyring_package_from};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pkg) = read_keyring_package_from(data) else {
        return;
    };
    assert_eq!(pkg.current.name(), pkg.name);
    let current = pkg.current.serial();
    for (&serial, k) in &pkg.history {
        assert_eq!(k.serial(), serial);
        assert!(
            serial < current,
            "history serial {serial} >= current {current}"
        );
        assert_eq!(k.name(), pkg.name);
    }
    for k in pkg.candidates() {
        let again = Keyring::parse(k.bytes()).expect("a read manifest re-parses");
        assert_eq!(&again, k.keyring());
        assert_eq!(k.keyring().to_bytes().ok().as_deref(), Some(k.bytes()));
    }
    assert_eq!(pkg.candidates().count(), pkg.history.len() + 1);
    assert_eq!(pkg.candidates().last().map(|k| k.serial()), Some(current));
    for (file, key) in &pkg.key_files {
        assert!(key_file_names(key.fingerprint()).contains(file));
        let entry = pkg
            .current
            .keyring()
            .key(key.fingerprint())
            .expect("key file of a listed key");
        assert_eq!(entry.role, Role::Feed);
        assert_eq!(entry.status, Status::Active);
        assert_eq!(entry.public_key.as_bytes(), key.as_bytes());
    }
});
