//! deb822 paragraphs: `ParagraphReader` over arbitrary bytes.
//!
//! Asserts:
//! - every paragraph the reader yields is non-empty, its field names are valid and lookups
//!   find each field by its own name;
//! - each paragraph writes back (`write_to`) to text that parses (`Paragraph::parse_bytes`)
//!   to an equal paragraph, and `to_text` is the same text;
//! - the paragraphs read before any error, written back separated by blank lines, stream back
//!   to the same list without error;
//! - `Paragraph::set` with a field's own trimmed value either refuses it or yields a paragraph
//!   that round-trips;
//! - `Paragraph::set` with an arbitrary name/value (the input's first line, and the rest)
//!   either refuses it or yields a paragraph that round-trips to the same field.
#![no_main]

use feeds::control::{Paragraph, ParagraphReader, is_valid_field_name};
use libfuzzer_sys::fuzz_target;

fn round_trip(p: &Paragraph) {
    let mut out = Vec::new();
    p.write_to(&mut out);
    assert_eq!(
        p.to_text().as_bytes(),
        &out[..],
        "to_text differs from write_to"
    );
    match Paragraph::parse_bytes(&out) {
        Ok(again) => assert_eq!(
            &again,
            p,
            "re-parsed paragraph differs; text {:?}",
            p.to_text()
        ),
        Err(e) => panic!(
            "written paragraph does not re-parse: {e}; text {:?}",
            p.to_text()
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut good = Vec::new();
    for item in ParagraphReader::new(data) {
        let Ok(p) = item else { break };
        assert!(!p.is_empty(), "reader yielded an empty paragraph");
        for f in p.fields() {
            assert!(
                is_valid_field_name(f.name()),
                "bad field name {:?} accepted",
                f.name()
            );
            assert_eq!(p.field(f.name()), Some(f), "lookup by own name fails");
            assert_eq!(p.get(&f.name().to_ascii_uppercase()), Some(f.value()));
        }
        round_trip(&p);

        // Setting a field to its own (trimmed) value must keep the paragraph well-formed.
        if let Some(f) = p.fields().next() {
            let mut edited = p.clone();
            if edited.set(f.name(), f.value()).is_ok() {
                round_trip(&edited);
                assert_eq!(edited.get(f.name()), Some(f.value()));
            }
        }
        good.push(p);
    }

    // The whole stream, written back, reads back to the same paragraphs.
    if !good.is_empty() {
        let mut out = Vec::new();
        for (i, p) in good.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            p.write_to(&mut out);
        }
        let again: Result<Vec<_>, _> = ParagraphReader::new(&out[..]).collect();
        match again {
            Ok(again) => assert_eq!(again, good, "stream round trip differs"),
            Err(e) => panic!("written stream does not re-parse: {e}"),
        }
    }

    // Building a field in code: whatever `set` accepts must survive a round trip.
    if let Ok(text) = std::str::from_utf8(data) {
        let (name, value) = text.split_once('\n').unwrap_or((text, ""));
        let mut p = Paragraph::new();
        if p.set(name, value).is_ok() {
            round_trip(&p);
            let trimmed =
                value.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n');
            assert_eq!(
                p.get(name),
                Some(trimmed),
                "set value reads back differently"
            );
        }
    }
});
