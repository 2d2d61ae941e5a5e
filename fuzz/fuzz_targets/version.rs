//! Debian/opkg versions: parse arbitrary text and check the ordering laws.
//!
//! The input is split on `\n` into up to three candidate versions. Asserts:
//! - a parsed version prints (`Display`) as its trimmed input, and that text re-parses to an
//!   equal version with the same parts;
//! - `cmp` is reflexive, antisymmetric (`cmp(a, b) == cmp(b, a).reverse()`) and transitive
//!   over the versions that parse, and agrees with `==`, `<` and `version::compare`;
//! - versions that compare equal hash alike.
#![no_main]

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use feeds::version::{Version, compare};
use libfuzzer_sys::fuzz_target;

fn hash_of(v: &Version) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parts: Vec<&str> = text.splitn(3, '\n').collect();
    let mut versions = Vec::new();
    for part in &parts {
        let Ok(v) = Version::parse(part) else {
            continue;
        };
        // Display round trip.
        let shown = v.to_string();
        assert_eq!(shown, v.as_str());
        let again = Version::parse(&shown).expect("a printed version re-parses");
        assert_eq!(again.cmp(&v), Ordering::Equal);
        assert_eq!(
            (again.epoch(), again.upstream(), again.revision()),
            (v.epoch(), v.upstream(), v.revision())
        );
        assert_eq!(v.cmp(&v), Ordering::Equal, "not reflexive: {v}");
        versions.push((*part, v));
    }
    for (ta, a) in &versions {
        for (tb, b) in &versions {
            let ab = a.cmp(b);
            let ba = b.cmp(a);
            assert_eq!(ab, ba.reverse(), "not antisymmetric: {a} vs {b}");
            assert_eq!(compare(ta, tb).unwrap(), ab);
            assert_eq!(a == b, ab == Ordering::Equal);
            assert_eq!(a < b, ab == Ordering::Less);
            if ab == Ordering::Equal {
                assert_eq!(
                    hash_of(a),
                    hash_of(b),
                    "equal versions hash differently: {a} {b}"
                );
            }
            for (_, c) in &versions {
                if ab != Ordering::Greater && b.cmp(c) != Ordering::Greater {
                    assert_ne!(
                        a.cmp(c),
                        Ordering::Greater,
                        "not transitive: {a} <= {b} <= {c}"
                    );
                }
            }
        }
    }
});
