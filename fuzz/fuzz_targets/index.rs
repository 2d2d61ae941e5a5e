//! `Packages` indexes: `PackagesFile::parse` over arbitrary bytes, and `parse_gz` /
//! `gunzip` over the same bytes under small limits.
//!
//! Asserts:
//! - a parsed file writes back (`to_bytes`) to bytes that parse to the same stanzas, and
//!   writing that again gives the same bytes (the written form is a fixed point);
//! - `compare_stanzas` is antisymmetric and reflexive; `sort_stanzas` does not panic;
//! - `check_stanza` never panics, and for a stanza it accepts, `build_stanza` with the
//!   stanza's own Filename/Size/SHA-256/MD5Sum (and `SHA256` when present) succeeds and passes `check_stanza`;
//! - `gunzip(gzip(x)) == x`.
#![no_main]

use std::cmp::Ordering;

use feeds::index::{
    PackagesFile, build_stanza, check_stanza, compare_stanzas, gunzip, gzip, sort_stanzas,
    stanza_sha256,
};
use feeds::limits::Limits;
use libfuzzer_sys::fuzz_target;

fn limits() -> Limits {
    Limits {
        max_index: 4 << 20,
        ratio_grace: 1 << 20,
        ..Limits::default()
    }
}

fn check_file(file: &PackagesFile) {
    let bytes = file.to_bytes();
    let again = match PackagesFile::parse(&bytes) {
        Ok(f) => f,
        Err(e) => panic!("written index does not re-parse: {e}"),
    };
    assert_eq!(again.stanzas, file.stanzas, "re-parsed stanzas differ");
    assert_eq!(
        again.to_bytes(),
        bytes,
        "written index is not a fixed point"
    );

    let stanzas = &file.stanzas[..file.stanzas.len().min(8)];
    for a in stanzas {
        assert_eq!(compare_stanzas(a, a), Ordering::Equal);
        for b in stanzas {
            assert_eq!(compare_stanzas(a, b), compare_stanzas(b, a).reverse());
        }
        if check_stanza(a).is_ok() {
            let get = |f| a.get(f).unwrap_or("");
            let size: u64 = get("Size").parse().expect("checked Size parses");
            let sha = stanza_sha256(a).expect("checked stanza has a SHA-256");
            let apt = a.contains("SHA256");
            let built = build_stanza(a, get("Filename"), size, sha, a.get("MD5Sum"), apt);
            match built {
                Ok(s) => check_stanza(&s).expect("built stanza passes check_stanza"),
                Err(e) => panic!("build_stanza refuses a stanza check_stanza accepts: {e}"),
            }
        }
    }
    let mut sorted = stanzas.to_vec();
    sort_stanzas(&mut sorted);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = PackagesFile::parse(data) {
        check_file(&file);
    }
    if let Ok(file) = PackagesFile::parse_gz(data, &limits()) {
        check_file(&file);
    }
    if data.len() <= 4096 {
        assert_eq!(
            gunzip(&gzip(data), &limits()).expect("gzip output gunzips"),
            data
        );
    }
});
