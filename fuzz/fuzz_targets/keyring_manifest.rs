//! The keyring manifest (`keyring`): `keyring_pkg::manifest::Keyring::parse` over arbitrary
//! bytes.
//!
//! Asserts, when the bytes parse: `to_bytes` succeeds and gives back the input byte for byte
//! (the crate accepts only its canonical form), `validate` passes, and the bytes re-parse to an
//! equal keyring. Each key's fingerprint is the one of its public key, and its usign key file
//! (`key_file_bytes`) parses back to the same public key.
//!
//! Seeds: `seed.sh` writes manifests in canonical form (one root key; two roots and a feed
//! key with Not-After and Comment; retired and revoked keys).
#![no_main]

use feeds::usign::PublicKey;
use keyring_pkg::manifest::Keyring;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(k) = Keyring::parse(data) else {
        return;
    };
    k.validate().expect("a parsed keyring validates");
    let bytes = match k.to_bytes() {
        Ok(b) => b,
        Err(e) => panic!("parsed keyring does not write: {e}"),
    };
    assert!(
        bytes == data,
        "to_bytes differs from the input:\n input {:?}\nwritten {:?}",
        data.escape_ascii().to_string(),
        bytes.escape_ascii().to_string()
    );
    let again = Keyring::parse(&bytes).expect("written keyring re-parses");
    assert_eq!(again, k);
    assert!(k.len() <= keyring_pkg::manifest::MAX_KEYS);
    for key in k.keys() {
        assert_eq!(k.key(key.fingerprint()), Some(key));
        let file = key.key_file_bytes();
        let pk = PublicKey::parse(&file).expect("key file parses");
        assert_eq!(pk.fingerprint(), key.fingerprint());
        assert_eq!(pk.as_bytes(), key.public_key.as_bytes());
    }
});
