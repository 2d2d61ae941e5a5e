//! `keyring.sig`: `keyring_pkg::signatures::SignatureSet::parse` over arbitrary bytes.
//!
//! Asserts, when the bytes parse: `to_bytes` re-parses to an equal set (same blocks in the
//! same order) and is a fixed point; the set holds at most `MAX_SIGNATURE_BLOCKS` blocks and
//! `fingerprints` has one entry per distinct block key. `insert` of each block again replaces
//! (never adds) and leaves one block per key; the result still round-trips.
//!
//! Seeds: `seed.sh` writes one- and two-block files (usign signature files concatenated) and an
//! empty one.
#![no_main]

use keyring_pkg::signatures::{MAX_SIGNATURE_BLOCKS, SignatureSet};
use libfuzzer_sys::fuzz_target;

fn round_trip(set: &SignatureSet) {
    let bytes = set.to_bytes();
    let again = match SignatureSet::parse(&bytes) {
        Ok(s) => s,
        Err(e) => panic!(
            "written signatures do not re-parse: {e}; bytes {:?}",
            bytes.escape_ascii().to_string()
        ),
    };
    assert_eq!(&again, set, "signature set round trip differs");
    assert_eq!(again.to_bytes(), bytes, "to_bytes is not a fixed point");
}

fuzz_target!(|data: &[u8]| {
    let Ok(set) = SignatureSet::parse(data) else {
        return;
    };
    assert!(set.len() <= MAX_SIGNATURE_BLOCKS);
    assert_eq!(set.is_empty(), data.is_empty());
    round_trip(&set);

    let mut deduped = set.clone();
    for sig in set.signatures() {
        assert!(
            deduped
                .insert(sig.clone())
                .expect("insert of a present key")
        );
    }
    assert_eq!(deduped.len(), set.fingerprints().len());
    round_trip(&deduped);
});
