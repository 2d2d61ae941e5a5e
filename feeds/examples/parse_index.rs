//! Times parsing and re-writing a `Packages` file with `feeds::index::PackagesFile`:
//! prints the stanza count and the median of N runs in milliseconds.
//!
//! usage: parse_index <PACKAGES> [RUNS]     (used by bench/parse-index)

// A command-line tool: its output is the point.
#![allow(clippy::print_stdout)]

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: parse_index <PACKAGES> [RUNS]")?;
    let runs: usize = args.get(2).map(|r| r.parse()).transpose()?.unwrap_or(11);
    let bytes = std::fs::read(path)?;
    let mut parse_ms = Vec::new();
    let mut write_ms = Vec::new();
    let mut count = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let file = feeds::index::PackagesFile::parse(&bytes)?;
        parse_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let out = file.to_bytes();
        write_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if out != bytes {
            return Err(format!("{path}: does not write back byte for byte").into());
        }
        count = file.stanzas.len();
    }
    parse_ms.sort_by(f64::total_cmp);
    write_ms.sort_by(f64::total_cmp);
    println!(
        "{count} stanzas, {} bytes: parse {:.1} ms, write {:.1} ms (median of {runs})",
        bytes.len(),
        parse_ms[runs / 2],
        write_ms[runs / 2]
    );
    Ok(())
}
