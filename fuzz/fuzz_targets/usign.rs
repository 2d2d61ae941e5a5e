//! usign/signify files: parse arbitrary bytes as a public key, a secret key (no passphrase,
//! so an encrypted key stops at `Error::Encrypted` and the bcrypt KDF is not run) and a
//! signature.
//!
//! Asserts, for whatever parses: `to_file_bytes` re-parses to an equal value (for a secret
//! key: same fingerprint, comment, public key and file bytes), and re-encoding that is a
//! fixed point. A parsed secret key signs a message (the input) with a signature its public
//! key verifies; verifying with a parsed public key and signature never panics.
#![no_main]

use feeds::usign::{PublicKey, SecretKey, Signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let public = PublicKey::parse(data).ok();
    if let Some(pk) = &public {
        let bytes = pk.to_file_bytes();
        let again = match PublicKey::parse(&bytes) {
            Ok(k) => k,
            Err(e) => panic!(
                "re-encoded public key does not parse: {e}; bytes {:?}",
                bytes.escape_ascii().to_string()
            ),
        };
        assert_eq!(&again, pk, "public key round trip differs");
        assert_eq!(again.to_file_bytes(), bytes);
        assert_eq!(
            pk.fingerprint()
                .to_string()
                .parse::<feeds::usign::Fingerprint>()
                .ok(),
            Some(pk.fingerprint())
        );
    }

    if let Ok(sk) = SecretKey::parse(data, None) {
        let bytes = sk.to_file_bytes();
        let again = match SecretKey::parse(&bytes, None) {
            Ok(k) => k,
            Err(e) => panic!(
                "re-encoded secret key does not parse: {e}; bytes {:?}",
                bytes.escape_ascii().to_string()
            ),
        };
        assert_eq!(again.fingerprint(), sk.fingerprint());
        assert_eq!(
            again.comment(),
            sk.comment(),
            "secret key comment round trip differs"
        );
        assert_eq!(again.public_key(), sk.public_key());
        assert_eq!(again.to_file_bytes(), bytes);
        let sig = sk.sign(data).expect("a parsed key signs");
        sk.public_key()
            .verify(data, &sig)
            .expect("own signature verifies");
    }

    if let Ok(sig) = Signature::parse(data) {
        let bytes = sig.to_file_bytes();
        let again = match Signature::parse(&bytes) {
            Ok(s) => s,
            Err(e) => panic!(
                "re-encoded signature does not parse: {e}; bytes {:?}",
                bytes.escape_ascii().to_string()
            ),
        };
        assert_eq!(again, sig, "signature round trip differs");
        assert_eq!(again.to_file_bytes(), bytes);
        if let Some(pk) = &public {
            let _ = pk.verify(data, &sig);
        }
    }
});
