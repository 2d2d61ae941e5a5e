//! Packages: `feeds::package::read_package` over arbitrary bytes, with a data visitor that
//! drains every entry of the data tar, under modest limits so a run stays fast.
//!
//! Asserts, besides "no panic, no hang, no huge allocation":
//! - when a package is read, its `size` is the input length and its `sha256` (and `md5`) are
//!   those of the input;
//! - its `control_text` parses to its `control` paragraph, which has non-empty `Package`,
//!   `Version` and `Architecture` fields, a valid name and a parseable version;
//! - `feeds::index::stanza_for` builds a stanza for it that passes `check_stanza` and
//!   round-trips through `write_to`/`Paragraph::parse_bytes`.
#![no_main]

use std::io::{self, Read};

use feeds::control::Paragraph;
use feeds::limits::Limits;
use feeds::package::{DataTar, ReadOptions, is_valid_package_name, read_package};
use feeds::version::Version;
use libfuzzer_sys::fuzz_target;
use md5::Md5;
use sha2::{Digest, Sha256};

fn limits() -> Limits {
    Limits {
        max_package_size: 1 << 20,
        max_members: 16,
        max_control_member: 1 << 20,
        max_control_tar: 1 << 20,
        max_control_file: 256 << 10,
        max_control_entries: 256,
        max_data_entries: 4096,
        max_data_tar: 8 << 20,
        max_index: 8 << 20,
        max_ratio: 1000,
        ratio_grace: 1 << 20,
    }
}

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions {
        md5: true,
        limits: limits(),
        ..Default::default()
    };
    let mut entries = 0u64;
    let mut visit = |tar: &mut DataTar<'_>| {
        let _ = tar.member();
        let n = tar.for_each_entry(|e| -> Result<(), io::Error> {
            let _ = e.path_bytes();
            let _ = e.link_name_bytes();
            let _ = e.header().entry_type();
            let _ = e.header().mode();
            let mut buf = [0u8; 8192];
            loop {
                if e.read(&mut buf)? == 0 {
                    break;
                }
            }
            Ok(())
        })?;
        entries += n;
        Ok(())
    };
    let Ok(pkg) = read_package(data, &opts, Some(&mut visit)) else {
        return;
    };

    assert_eq!(pkg.size, data.len() as u64, "size is not the input length");
    let sha: [u8; 32] = Sha256::digest(data).into();
    assert_eq!(pkg.sha256, sha, "sha256 is not that of the input");
    let md5: [u8; 16] = Md5::digest(data).into();
    assert_eq!(pkg.md5, Some(md5), "md5 is not that of the input");

    let reparsed = Paragraph::parse(&pkg.control_text).expect("control_text re-parses");
    assert_eq!(reparsed, pkg.control);
    assert!(!pkg.name().is_empty() && is_valid_package_name(pkg.name()));
    assert!(!pkg.architecture().is_empty());
    Version::parse(pkg.version()).expect("package version parses");
    let _ = pkg.conffiles();
    let _ = pkg.scripts();
    assert!(
        pkg.control_file("control").is_none(),
        "control file listed among members"
    );

    let hashes = feeds::index::HashFields {
        md5: true,
        apt: true,
    };
    match feeds::index::stanza_for(&pkg, "pkg.ipk", hashes) {
        Ok(stanza) => {
            feeds::index::check_stanza(&stanza).expect("built stanza passes check_stanza");
            let mut out = Vec::new();
            stanza.write_to(&mut out);
            let again = Paragraph::parse_bytes(&out).expect("built stanza re-parses");
            assert_eq!(again, stanza);
        }
        Err(e) => panic!("no stanza for a package that was read: {e}"),
    }
});
