//! Relation fields: `parse_relations` over arbitrary text.
//!
//! Asserts, when the field parses:
//! - `format_relations` output re-parses to an equal value, and formatting that again gives
//!   the same text (the canonical form is a fixed point);
//! - each group and each relation also round-trips through its own `Display`/`parse`;
//! - a relation with a constraint is satisfied by its own name at its own version exactly
//!   when the operator accepts `Equal`, and `satisfied_by` never panics.
#![no_main]

use std::cmp::Ordering;

use feeds::relation::{Alternatives, Relation, format_relations, parse_relations};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(field) = parse_relations(text) else {
        return;
    };
    let formatted = format_relations(&field);
    let again = match parse_relations(&formatted) {
        Ok(again) => again,
        Err(e) => panic!("formatted relations do not re-parse: {e}; formatted {formatted:?}"),
    };
    assert_eq!(
        again, field,
        "re-parsed relations differ; formatted {formatted:?}"
    );
    assert_eq!(
        format_relations(&again),
        formatted,
        "canonical form is not a fixed point"
    );

    for group in &field {
        assert!(!group.relations().is_empty(), "empty alternative group");
        let shown = group.to_string();
        assert_eq!(
            Alternatives::parse(&shown).as_ref(),
            Ok(group),
            "group {shown:?}"
        );
        for r in group.relations() {
            let shown = r.to_string();
            assert_eq!(
                Relation::parse(&shown).as_ref(),
                Ok(r),
                "relation {shown:?}"
            );
            if let Some((op, v)) = r.constraint() {
                assert_eq!(r.matches_constraint(v), op.matches(Ordering::Equal));
                let _ = r.satisfied_by(r.name(), Some(v));
            }
            let _ = r.satisfied_by(r.name(), None);
            let _ = group.satisfied_by(r.name(), None);
        }
    }
});
