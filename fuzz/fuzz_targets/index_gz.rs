//! `Packages.gz` from runs of stanzas (`feeds::index_gz`) over arbitrary text.
//!
//! Asserts:
//! - `runs` covers the text in order with non-empty ranges, each ending after a blank line
//!   (but the last);
//! - `gzip_index` is one gzip member that a single-member decoder inflates to the text;
//! - assembling the parts of the runs gives the same bytes as `gzip_index`.
#![no_main]

use std::io::Read;

use feeds::index_gz::{assemble, deflate_run, gzip_index, runs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(256 << 10)];
    let r = runs(data);
    let mut at = 0;
    for (i, x) in r.iter().enumerate() {
        assert_eq!(x.start, at, "runs leave a gap");
        assert!(x.end > x.start, "an empty run");
        assert!(
            i + 1 == r.len() || data[..x.end].ends_with(b"\n\n"),
            "a run ends inside a stanza"
        );
        at = x.end;
    }
    assert_eq!(at, data.len(), "runs do not cover the text");
    let gz = gzip_index(data);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .expect("Packages.gz inflates");
    assert_eq!(out, data, "Packages.gz inflates to other text");
    let parts: Vec<Vec<u8>> = r.iter().map(|x| deflate_run(&data[x.clone()])).collect();
    assert_eq!(assemble(data, &parts), gz, "assembled parts differ");
});
