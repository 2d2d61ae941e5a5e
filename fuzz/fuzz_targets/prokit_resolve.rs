//! Dependency resolution: a `prokit::resolve::Universe` built from the input read as a small
//! `Packages` text, then `resolve` of a request for the first package name.
//!
//! The input is split into paragraphs with `feeds::control::ParagraphReader` (reading stops at
//! the first error; at most 64 paragraphs). A paragraph with a `Status` field is added as an
//! installed package (`add_installed`), every other one as available (`add_available`, feed
//! `fuzz`, or `fuzz2` for odd paragraphs so that feed order matters); errors are ignored.
//! `libc` and `kernel` are assumed installed, as OpenWrt indexes leave them out. The
//! step budget is lowered to 20 000 so that a run stays short (the budget is what bounds the
//! search).
//!
//! Asserts: no panic and no hang; a plan installs each package name at most once, and only
//! names an accepted stanza offered. `reverse_dependents` of each installed name never
//! panics.
//!
//! Seeds: `seed.sh` copies the fixtures' `Packages` files (the fuzzer works on their first
//! paragraphs) and writes small hand-made universes (alternatives, provides, conflicts +
//! replaces, an installed package to upgrade, a Pre-Depends cycle).
#![no_main]

use std::collections::HashSet;

use feeds::control::ParagraphReader;
use libfuzzer_sys::fuzz_target;
use prokit::resolve::{Request, RequestList, Universe};

const MAX_PARAGRAPHS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let mut universe = Universe::new(&[]);
    universe.set_step_budget(20_000);
    universe.assume_installed("libc");
    universe.assume_installed("kernel");
    let mut first = None;
    let mut installed = Vec::new();
    let mut available = HashSet::new();
    for (i, item) in ParagraphReader::new(data).take(MAX_PARAGRAPHS).enumerate() {
        let Ok(p) = item else { break };
        if let Some(name) = p.get("Package")
            && first.is_none()
        {
            first = Some(name.to_string());
        }
        if p.get("Status").is_some() {
            let name = p.get("Package").unwrap_or("").to_string();
            if universe.add_installed(p).is_ok() {
                installed.push(name);
            }
        } else {
            let feed = if i % 2 == 0 { "fuzz" } else { "fuzz2" };
            let name = p.get("Package").unwrap_or("").to_string();
            if universe.add_available(p, feed, i % 2).is_ok() {
                available.insert(name);
            }
        }
    }
    for name in &installed {
        let _ = universe.reverse_dependents(name);
    }
    let Some(name) = first else { return };
    if Request::parse(&name).is_err() {
        return;
    }
    let Ok(plan) = universe.resolve(&RequestList::of(&[name])) else {
        return;
    };
    let mut seen = HashSet::new();
    for step in &plan.steps {
        assert!(
            seen.insert(step.name()),
            "plan installs {} twice: {plan:?}",
            step.name()
        );
        // Every step is a package some accepted stanza offered (the step's stanza keeps only
        // the fields read after resolution: not the name).
        assert!(
            available.contains(step.name()),
            "plan installs {}, which no stanza offered: {plan:?}",
            step.name()
        );
    }
});
