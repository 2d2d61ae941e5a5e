use super::*;
use crate::build::PackageBuilder;
use std::io::Write;

const CONTROL: &str = "Package: hello\nVersion: 1.0-r1\nDepends: libc\nArchitecture: all\nInstalled-Size: 12\nDescription:  Says hello.\n";

fn builder() -> PackageBuilder {
    PackageBuilder::new(CONTROL)
        .control_file("postinst", 0o755, "#!/bin/sh\nexit 0\n")
        .control_file("conffiles", 0o644, "/etc/hello.conf\n\n")
        .dir("etc", 0o755)
        .file("etc/hello.conf", 0o644, "greeting=hi\n")
        .file("usr/bin/hello", 0o755, "#!/bin/sh\necho hi\n")
        .symlink("usr/bin/hi", "hello")
}

fn read(bytes: &[u8]) -> Result<Package, PackageError> {
    read_package(bytes, &ReadOptions::default(), None)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// An `ar` archive of the given members, as GNU ar writes it.
pub(crate) fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, body) in members {
        writeln!(
            out,
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`",
            name,
            0,
            0,
            0,
            100644,
            body.len()
        )
        .unwrap();
        out.extend_from_slice(body);
        if body.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// A gzipped tar of regular files.
pub(crate) fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, *body).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn plain_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, name, *body).unwrap();
    }
    tar.into_inner().unwrap()
}

fn data_entries(bytes: &[u8]) -> (Package, Vec<String>) {
    let mut names = Vec::new();
    let mut visit = |tar: &mut DataTar<'_>| {
        tar.for_each_entry(|e| -> Result<(), io::Error> {
            let mut body = String::new();
            e.read_to_string(&mut body)?;
            names.push(format!(
                "{} {}",
                String::from_utf8_lossy(&e.path_bytes()),
                body.len()
            ));
            Ok(())
        })
        .map(|_| ())
    };
    let pkg = read_package(
        bytes,
        &ReadOptions {
            md5: true,
            ..Default::default()
        },
        Some(&mut visit),
    )
    .unwrap();
    (pkg, names)
}

#[test]
fn reads_both_ipk_containers_in_one_pass() {
    for container in [Container::TarGz, Container::Ar] {
        let bytes = builder()
            .container(container)
            .mtime(1_700_000_000)
            .build()
            .unwrap();
        let (pkg, entries) = data_entries(&bytes);
        assert_eq!(pkg.container, container);
        assert_eq!(pkg.control_text, CONTROL);
        assert_eq!(pkg.name(), "hello");
        assert_eq!(pkg.version(), "1.0-r1");
        assert_eq!(pkg.architecture(), "all");
        assert_eq!(pkg.conffiles(), ["/etc/hello.conf"]);
        assert_eq!(pkg.scripts(), ["postinst"]);
        assert_eq!(pkg.control_file("postinst").unwrap().mode, 0o755);
        assert_eq!(pkg.size, bytes.len() as u64);
        assert_eq!(pkg.sha256, sha256(&bytes));
        assert_eq!(
            pkg.md5_hex().unwrap(),
            hex::encode(<Md5 as Digest>::digest(&bytes))
        );
        assert_eq!(pkg.control_member, "control.tar.gz");
        assert_eq!(pkg.data_member, "data.tar.gz");
        assert_eq!(
            entries,
            [
                "./ 0",
                "./etc/ 0",
                "./etc/hello.conf 12",
                "./usr/bin/hello 18",
                "./usr/bin/hi 0"
            ]
        );
        // Without a visitor the data member is only hashed.
        let plain = read(&bytes).unwrap();
        assert_eq!(plain.sha256, pkg.sha256);
        assert!(plain.md5.is_none());
    }
}

#[test]
fn a_decoded_package_walks_like_one_read_from_its_file() {
    for container in [Container::TarGz, Container::Ar] {
        let bytes = builder().container(container).build().unwrap();
        let (read, entries) = data_entries(&bytes);
        let decoded = decode_package(&bytes[..], &ReadOptions::default(), 1 << 20)
            .unwrap()
            .expect("small enough");
        assert_eq!(decoded.package.sha256, read.sha256);
        assert_eq!(decoded.package.size, read.size);
        assert_eq!(decoded.package.control_text, read.control_text);
        assert_eq!(decoded.package.data_member, "data.tar.gz");
        // Walked twice: the same entries each time.
        for _ in 0..2 {
            let mut names = Vec::new();
            let shared = decoded.data_tar().clone();
            decoded
                .visit_data(&mut |tar: &mut DataTar<'_>| {
                    assert_eq!(tar.member(), "data.tar.gz");
                    tar.for_each_entry(|e| -> Result<(), io::Error> {
                        let range = entry_data_range(e);
                        let mut body = String::new();
                        e.read_to_string(&mut body)?;
                        // A file's contents are where its range says in the shared tar.
                        match range {
                            Some(r) => assert_eq!(&shared[r], body.as_bytes()),
                            None => assert!(!e.header().entry_type().is_file()),
                        }
                        names.push(format!(
                            "{} {}",
                            String::from_utf8_lossy(&e.path_bytes()),
                            body.len()
                        ));
                        Ok(())
                    })
                    .map(|_| ())
                })
                .unwrap();
            assert_eq!(names, entries);
        }
        // A data tar bigger than allowed in memory is not kept (and not an error); a damaged
        // package is still an error.
        let data_len = decoded.data_len() as u64;
        assert!(
            decode_package(&bytes[..], &ReadOptions::default(), data_len - 1)
                .unwrap()
                .is_none()
        );
        assert!(
            decode_package(&bytes[..bytes.len() / 2], &ReadOptions::default(), 1 << 20).is_err()
        );
        // The entry limit still holds for a walk from memory.
        let few = ReadOptions {
            limits: Limits {
                max_data_entries: 2,
                ..Limits::default()
            },
            ..ReadOptions::default()
        };
        let decoded = decode_package(&bytes[..], &few, 1 << 20).unwrap().unwrap();
        let err = decoded
            .visit_data(&mut |tar: &mut DataTar<'_>| {
                tar.for_each_entry(|_| -> Result<(), io::Error> { Ok(()) })
                    .map(|_| ())
            })
            .unwrap_err();
        assert!(matches!(err, PackageError::Limit { limit: 2, .. }), "{err}");
    }
}

#[test]
fn entry_data_ranges_count_the_extension_headers_before_a_file() {
    // Long names take a GNU long-name entry or a pax header before the file's own header.
    let long = format!("usr/share/{}/file", "d".repeat(120));
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, body: &[u8], pax: bool| {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        if pax {
            b.append_pax_extensions([("path", name.as_bytes())])
                .unwrap();
            h.set_path("short").unwrap();
            h.set_cksum();
            b.append(&h, body).unwrap();
        } else {
            b.append_data(&mut h, name, body).unwrap();
        }
    };
    add("a", b"first", false);
    add(&long, &[7u8; 1000], false);
    add(&long.replace("file", "other"), b"third", true);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    b.append_data(&mut h, "dir/", io::empty()).unwrap();
    let bytes = b.into_inner().unwrap();
    let mut archive = tar::Archive::new(Box::new(&bytes[..]) as Box<dyn Read>);
    let mut seen = 0;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let range = entry_data_range(&e);
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        match range {
            Some(r) => {
                assert_eq!(&bytes[r], &body[..]);
                seen += 1;
            }
            None => assert_eq!(e.header().entry_type(), tar::EntryType::Directory),
        }
    }
    assert_eq!(seen, 3);
}

#[test]
fn builds_reproducibly() {
    let a = builder().mtime(5).build().unwrap();
    let b = builder().mtime(5).build().unwrap();
    assert_eq!(a, b);
    assert_ne!(a, builder().mtime(6).build().unwrap());
}

#[test]
fn reads_every_member_compression() {
    let control = tar_gz(&[("./control", CONTROL.as_bytes())]);
    let data_tar = plain_tar(&[("./usr/share/x", b"xyz")]);
    let xz = {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(&data_tar).unwrap();
        e.finish().unwrap()
    };
    let bz = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(&data_tar).unwrap();
        e.finish().unwrap()
    };
    let zst = ruzstd::encoding::compress_to_vec(
        &data_tar[..],
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    let plain_control = plain_tar(&[("control", CONTROL.as_bytes())]);
    for (cname, cbody, dname, dbody) in [
        ("control.tar.gz", &control, "data.tar.xz", &xz),
        ("control.tar", &plain_control, "data.tar.bz2", &bz),
        ("control.tar.gz", &control, "data.tar.zst", &zst),
        ("control.tar.gz", &control, "data.tar", &data_tar),
    ] {
        let bytes = ar(&[("debian-binary", b"2.0\n"), (cname, cbody), (dname, dbody)]);
        let (pkg, entries) = data_entries(&bytes);
        assert_eq!(pkg.data_member, dname);
        assert_eq!(pkg.control_member, cname);
        assert_eq!(entries, ["usr/share/x 3"], "{dname}");
    }
}

#[test]
fn gnu_and_bsd_member_names() {
    let control = tar_gz(&[("./control", CONTROL.as_bytes())]);
    let data = tar_gz(&[]);
    let gnu = ar(&[
        ("debian-binary/", b"2.0\n"),
        ("data.tar.gz/", &data),
        ("control.tar.gz/", &control),
    ]);
    assert_eq!(read(&gnu).unwrap().name(), "hello");
    // BSD: `#1/<len>` then the name at the start of the body.
    let mut body = b"control.tar.gz".to_vec();
    body.extend_from_slice(&control);
    let bsd = ar(&[("#1/14", &body), ("data.tar.gz", &data)]);
    assert_eq!(read(&bsd).unwrap().control_member, "control.tar.gz");
}

fn err(bytes: &[u8]) -> String {
    read(bytes).unwrap_err().to_string()
}

#[test]
fn missing_parts_are_named() {
    let control = tar_gz(&[("./control", CONTROL.as_bytes())]);
    let data = tar_gz(&[]);
    assert_eq!(err(&ar(&[("data.tar.gz", &data)])), "no control.tar member");
    assert_eq!(
        err(&ar(&[("control.tar.gz", &control)])),
        "no data.tar member"
    );
    let no_control_file = tar_gz(&[("./postinst", b"x")]);
    assert_eq!(
        err(&ar(&[
            ("control.tar.gz", &no_control_file),
            ("data.tar.gz", &data)
        ])),
        "control.tar.gz: no control file"
    );
    for field in ["Package", "Version", "Architecture"] {
        let text: String = CONTROL
            .lines()
            .filter(|l| !l.starts_with(field))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = tar_gz(&[("./control", text.as_bytes())]);
        assert_eq!(
            err(&ar(&[("control.tar.gz", &c), ("data.tar.gz", &data)])),
            format!("control.tar.gz: control: missing {field} field")
        );
    }
    assert_eq!(
        err(b"hello world, this is not a package"),
        "not a package (neither an ar archive nor a gzip stream)"
    );
    assert!(err(b"").starts_with("truncated"));
}

#[test]
fn bad_control_contents() {
    let data = tar_gz(&[]);
    let case = |control: &[u8]| {
        let c = tar_gz(&[("./control", control)]);
        err(&ar(&[("control.tar.gz", &c), ("data.tar.gz", &data)]))
    };
    assert_eq!(
        case(b"Package: a\nPackage: b\n"),
        "control.tar.gz: control: line 2: duplicate field `Package`"
    );
    assert_eq!(
        case(b"Package: a\nVersion: 1\n\xff\n"),
        "control.tar.gz: control: line 3: not valid UTF-8"
    );
    assert_eq!(
        case(b"Package: ../evil\nVersion: 1\nArchitecture: all\n"),
        "control.tar.gz: control: bad Package \"../evil\": must start with a letter or digit and hold only letters, digits and + - . _"
    );
    assert!(
        case(b"Package: a\nVersion: 1:\nArchitecture: all\n")
            .starts_with("control.tar.gz: control: bad Version \"1:\"")
    );
    assert_eq!(
        err(&ar(&[
            ("debian-binary", b"3.0\n"),
            (
                "control.tar.gz",
                &tar_gz(&[("./control", CONTROL.as_bytes())])
            ),
            ("data.tar.gz", &data)
        ])),
        "debian-binary: unsupported format version \"3.0\" (expected 2.x)"
    );
}

#[test]
fn every_truncation_is_an_error() {
    for container in [Container::TarGz, Container::Ar] {
        let bytes = builder().container(container).build().unwrap();
        for cut in (0..bytes.len() - 1).step_by(7) {
            assert!(
                read(&bytes[..cut]).is_err(),
                "{container:?} cut at {cut} of {}",
                bytes.len()
            );
        }
    }
}

#[test]
fn huge_declared_sizes_do_not_allocate() {
    let control = tar_gz(&[("./control", CONTROL.as_bytes())]);
    // An ar member that claims 2 GB in a tiny file.
    let mut bytes = ar(&[("control.tar.gz", &control)]);
    bytes.extend_from_slice(
        format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            "data.tar.gz", 0, 0, 0, 100644, 2_000_000_000u64
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(b"short");
    let e = err(&bytes);
    assert!(
        e.starts_with("truncated: ar member \"data.tar.gz\" declares 2000000000 bytes"),
        "{e}"
    );
    // A control member over its bound is refused before it is read.
    let mut bytes = b"!<arch>\n".to_vec();
    bytes.extend_from_slice(
        format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            "control.tar.gz", 0, 0, 0, 100644, 2_000_000_000u64
        )
        .as_bytes(),
    );
    assert_eq!(err(&bytes), "control.tar.gz: more than 16777216 bytes");
    // Sizes that are not numbers.
    let mut bytes = b"!<arch>\n".to_vec();
    bytes.extend_from_slice(
        format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            "data.tar.gz", 0, 0, 0, 100644, "-5"
        )
        .as_bytes(),
    );
    assert_eq!(err(&bytes), "bad ar archive: bad member size at offset 8");
}

#[test]
fn decompression_bombs_are_stopped() {
    // 64 MiB of zeros as the control tar's only file: it compresses about 1000:1.
    let zeros = vec![0u8; 64 << 20];
    let bomb = tar_gz(&[("./control", &zeros)]);
    let data = tar_gz(&[]);
    let e = err(&ar(&[("control.tar.gz", &bomb), ("data.tar.gz", &data)]));
    assert!(e.contains("more than") || e.contains("bomb"), "{e}");

    // In the data tar, with tight limits: the ratio bound trips.
    let data_bomb = tar_gz(&[("./zeros", &zeros)]);
    let control = tar_gz(&[("./control", CONTROL.as_bytes())]);
    let bytes = ar(&[("control.tar.gz", &control), ("data.tar.gz", &data_bomb)]);
    let opts = ReadOptions {
        limits: Limits {
            max_ratio: 100,
            ratio_grace: 1 << 20,
            ..Limits::default()
        },
        md5: false,
        sha256_known: None,
    };
    let mut visit = |tar: &mut DataTar<'_>| {
        tar.for_each_entry(|e| io::copy(e, &mut io::sink()).map(|_| ()))
            .map(|_| ())
    };
    let e = read_package(&bytes[..], &opts, Some(&mut visit))
        .unwrap_err()
        .to_string();
    assert!(e.contains("decompression bomb"), "{e}");
}

#[test]
fn counts_are_bounded() {
    let control = tar_gz(&[("./control", CONTROL.as_bytes())]);
    let data = tar_gz(&[]);
    let mut members = vec![
        ("control.tar.gz", control.as_slice()),
        ("data.tar.gz", data.as_slice()),
    ];
    members.extend(std::iter::repeat_n(("_extra", &b"x"[..]), 20));
    assert_eq!(err(&ar(&members)), "package: more than 16 members");

    let many: Vec<(String, Vec<u8>)> = (0..1100).map(|i| (format!("./f{i}"), vec![])).collect();
    let mut files: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    files.push(("./control", CONTROL.as_bytes()));
    let c = tar_gz(&files);
    assert_eq!(
        err(&ar(&[("control.tar.gz", &c), ("data.tar.gz", &data)])),
        "control.tar.gz: more than 1024 entries"
    );

    let d = tar_gz(&files);
    let opts = ReadOptions {
        limits: Limits {
            max_data_entries: 10,
            ..Limits::default()
        },
        md5: false,
        sha256_known: None,
    };
    let mut visit =
        |tar: &mut DataTar<'_>| tar.for_each_entry(|_| Ok::<(), io::Error>(())).map(|_| ());
    let e = read_package(
        &ar(&[("control.tar.gz", &control), ("data.tar.gz", &d)])[..],
        &opts,
        Some(&mut visit),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "data.tar.gz: more than 10 entries");
}

#[test]
fn duplicates_are_refused() {
    let control = tar_gz(&[("./control", CONTROL.as_bytes())]);
    let data = tar_gz(&[]);
    assert_eq!(
        err(&ar(&[
            ("control.tar.gz", &control),
            ("control.tar.xz", &control),
            ("data.tar.gz", &data)
        ])),
        "two control.tar.xz members"
    );
    let c2 = tar_gz(&[
        ("./control", CONTROL.as_bytes()),
        ("control", CONTROL.as_bytes()),
    ]);
    assert_eq!(
        err(&ar(&[("control.tar.gz", &c2), ("data.tar.gz", &data)])),
        "two control.tar.gz: control members"
    );
}

#[test]
fn visitor_errors_stop_the_read() {
    let bytes = builder().build().unwrap();
    let mut visit = |tar: &mut DataTar<'_>| {
        tar.for_each_entry(|e| {
            if e.path().map(|p| p.ends_with("hello")).unwrap_or(false) {
                return Err("refusing hello".into());
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
        .map(|_| ())
    };
    let e = read_package(&bytes[..], &ReadOptions::default(), Some(&mut visit)).unwrap_err();
    assert_eq!(e.to_string(), "data: refusing hello");
}

#[test]
fn file_errors_carry_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pool/foo_1.0_all.ipk");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, b"!<arch>\n").unwrap();
    let e = Package::open(&p, &ReadOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: no control.tar member", p.display())
    );
    let e = Package::open(&dir.path().join("absent.ipk"), &ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("absent.ipk: read error"), "{e}");
}

#[test]
fn a_package_read_nofollow_is_never_read_through_a_symlink_nor_from_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("elsewhere.ipk");
    std::fs::write(&real, builder().build().unwrap()).unwrap();
    let opts = ReadOptions::default();
    // A regular file reads as read_package_file reads it.
    let p = read_package_file_nofollow(&real, &opts, None).unwrap();
    assert_eq!(p.name(), "hello");
    // A symlink to a good package is refused, and the error names the link and why.
    let link = dir.path().join("cache/hello_1.0_all.ipk");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert!(
        read_package_file(&link, &opts, None).is_ok(),
        "the plain read follows it"
    );
    let e = read_package_file_nofollow(&link, &opts, None).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("{}: ", link.display()))
            && e.to_string().contains("symbolic link"),
        "{e}"
    );
    // A FIFO is refused at once, not waited on.
    let fifo = dir.path().join("cache/fifo.ipk");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let e = read_package_file_nofollow(&fifo, &opts, None).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = read_package_file_nofollow(&dir.path().join("absent.ipk"), &opts, None).unwrap_err();
    assert!(e.to_string().contains("absent.ipk"), "{e}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]
    #[test]
    fn mutated_packages_never_panic(
        container in proptest::sample::select(vec![Container::TarGz, Container::Ar]),
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..6),
        cut in proptest::prelude::any::<usize>(),
    ) {
        let mut bytes = builder().container(container).build().unwrap();
        for (at, v) in flips {
            let i = at % bytes.len();
            bytes[i] ^= v | 1;
        }
        bytes.truncate(1 + cut % bytes.len());
        let mut visit = |tar: &mut DataTar<'_>| {
            tar.for_each_entry(|e| io::copy(e, &mut io::sink()).map(|_| ())).map(|_| ())
        };
        let _ = read_package(&bytes[..], &ReadOptions::default(), Some(&mut visit));
    }
}

#[test]
fn a_known_sha256_is_reported_without_hashing_again_and_every_bound_still_holds() {
    let control = tar_gz(&[("./control", CONTROL.as_bytes())]);
    let data = tar_gz(&[("./usr/bin/x", b"x".as_slice())]);
    let bytes = ar(&[("control.tar.gz", &control), ("data.tar.gz", &data)]);
    let hashed = read_package(&bytes[..], &ReadOptions::default(), None).unwrap();
    assert_eq!(hashed.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
    // The digest the caller took over these bytes is the package's.
    let known = [7u8; 32];
    let opts = ReadOptions {
        sha256_known: Some(known),
        ..Default::default()
    };
    let p = read_package(&bytes[..], &opts, None).unwrap();
    assert_eq!((p.sha256, p.size), (known, hashed.size));
    // Bounds are checked all the same.
    let tight = ReadOptions {
        sha256_known: Some(known),
        limits: Limits {
            max_package_size: 100,
            ..Limits::default()
        },
        ..Default::default()
    };
    assert!(read_package(&bytes[..], &tight, None).is_err());
}
