//! archman's index cache (`archman::cache::Cache::load`, its only public parser entry point),
//! over a file written from the input into a temporary directory.
//!
//! The cache is authenticated (an HMAC-SHA256 chain under a per-host key), so input taken as
//! the whole file rarely gets past the first MAC. The first byte therefore chooses:
//! - even: the rest is the whole file, as anyone could have written it;
//! - odd: the rest is the records of one segment, wrapped here in a genuine header and MAC
//!   under the target's fixed key, so the records are parsed and applied as if archman had
//!   written them (every record kind, lengths, hashes, overrides, the stanza chunks).
//!
//! Asserts: nothing panics; a cache that loads is written out again by `Cache::to_bytes` and
//! that loads to the same cache (what one run saves, the next reads back).
//!
//! The file is `<tmp>/archman-cache-fuzz-<pid>`, one per process, overwritten on every run
//! (left behind in the temporary directory when the fuzzer exits).
//!
//! Seeds: `seed.sh` writes segments of records like those archman writes (entries with
//! stanzas, gone paths, the checked signature and the published files).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use archman::cache::{Cache, CacheKey};
use libfuzzer_sys::fuzz_target;

const FEED: &str = "/srv/feed md5=0 profile=Full";
const MAGIC: &str = "archman-cache 6";

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("archman-cache-fuzz-{}", std::process::id()))
    })
}

fn key() -> CacheKey {
    CacheKey::from_bytes([0x5a; 32])
}

/// A cache file whose one segment holds `records`, authenticated with `key`.
fn wrapped(records: &[u8], key: &CacheKey) -> Vec<u8> {
    let header = format!("{MAGIC}\n{}\n{FEED}\n", FEED.len());
    let chain = key.mac(header.as_bytes());
    let mac = key.mac(&[&chain[..], records].concat());
    let mut file = header.into_bytes();
    file.extend_from_slice(records);
    file.extend_from_slice(format!("END {}\n", hex(&mac)).as_bytes());
    file
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = key();
    let file = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        wrapped(rest, &key)
    };
    let p = path();
    std::fs::write(p, &file).expect("writing the temporary cache");
    let Ok(loaded) = Cache::load(p, FEED, &key) else {
        return;
    };
    let again = loaded.cache.to_bytes(FEED, &key);
    std::fs::write(p, &again).expect("writing the temporary cache");
    let reloaded = Cache::load(p, FEED, &key).expect("a cache archman wrote loads");
    assert_eq!(reloaded.cache, loaded.cache, "the cache changed when written and read back");
});
