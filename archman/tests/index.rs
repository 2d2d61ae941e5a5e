//! `archman index` through the real binary: OpenWrt's index reproduced byte for byte, peers
//! (signify, apt) reading what we publish, bad inputs refused with the feed untouched,
//! determinism, the incremental cache, and kill -9 at any moment.

// Tests say on stderr what they skipped or measured.
#![allow(clippy::print_stderr)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use feeds::build::PackageBuilder;
use feeds::package::Container;

const ARCHMAN: &str = env!("CARGO_BIN_EXE_archman");

fn archman(args: &[&str], dir: &Path) -> Output {
    archman_at(args, dir, Some(EPOCH))
}

/// The default Release Date of these tests (Sun, 22 Nov 2026 02:40:00 UTC).
const EPOCH: i64 = 1795315200;

/// `archman ARGS DIR` with SOURCE_DATE_EPOCH `epoch`, or with the Date from the clock (None).
fn archman_at(args: &[&str], dir: &Path, epoch: Option<i64>) -> Output {
    let mut cmd = Command::new(ARCHMAN);
    cmd.args(args).arg(dir).env("XDG_CACHE_HOME", xdg(dir));
    match epoch {
        Some(e) => cmd.env("SOURCE_DATE_EPOCH", e.to_string()),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    cmd.output().unwrap()
}

/// The cache home of the runs on feed `dir`: beside it, in the test's temporary directory.
fn xdg(dir: &Path) -> std::path::PathBuf {
    dir.parent().unwrap().join("xdg-cache")
}

/// Where `archman index` keeps the cache of feed `dir`.
fn cache_of(dir: &Path) -> std::path::PathBuf {
    archman::cache::default_path(&xdg(dir), &dir.canonicalize().unwrap())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn pkg(name: &str, version: &str, depends: Option<&str>) -> Vec<u8> {
    let deps = depends
        .map(|d| format!("Depends: {d}\n"))
        .unwrap_or_default();
    PackageBuilder::new(format!(
        "Package: {name}\nVersion: {version}\n{deps}Architecture: all\nMaintainer: T <t@example.org>\nDescription:  The {name} package.\n"
    ))
    .file(&format!("usr/share/{name}/data"), 0o644, format!("{name} {version}\n"))
    .build()
    .unwrap()
}

/// A feed of `n` small packages, written in the order given by `order`.
fn make_feed(dir: &Path, names: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    for n in names {
        fs::write(
            dir.join(format!("{n}_1.0-1_all.ipk")),
            pkg(n, "1.0-1", None),
        )
        .unwrap();
    }
}

/// A new key pair in `dir`: (secret key, public key).
fn keygen(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    e2e::archman_keygen(Path::new(ARCHMAN), dir)
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("Packages") || n.starts_with("Release")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn reproduces_openwrts_index_of_a_real_feed_byte_for_byte() {
    let Some(real) = e2e::real_dir() else { return };
    let src = real.join("feeds/stangri+repo.openwrt.melmac.ca");
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    fs::create_dir(&feed).unwrap();
    for e in fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ipk") {
            fs::copy(&p, feed.join(p.file_name().unwrap())).unwrap();
        }
    }
    let o = archman(&["index", "-q", "--profile", "openwrt"], &feed);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["Packages", "Packages.manifest"] {
        assert!(
            fs::read(feed.join(f)).unwrap() == fs::read(src.join(f)).unwrap(),
            "{f} differs from OpenWrt's"
        );
    }
    // Packages.gz holds the same bytes (its deflate stream is ours, not gzip's).
    let gz = fs::read(feed.join("Packages.gz")).unwrap();
    let plain = feeds::index::gunzip(&gz, &Default::default()).unwrap();
    assert_eq!(plain, fs::read(src.join("Packages")).unwrap());
}

#[test]
fn the_openwrt_padding_rule() {
    // (64 + size) % 128 in {110, 111} gets "\n\n" appended, exactly like OpenWrt's Makefile.
    for size in 0..600usize {
        let manifest = vec![b'x'; size];
        let out = archman::index::openwrt_packages(&manifest);
        let padded = matches!((64 + size) % 128, 110 | 111);
        assert_eq!(out.len(), size + if padded { 2 } else { 0 }, "size {size}");
    }
    let m = b"Package: a\nMaintainer: x\nSource: y\nSourceName: z\nSourceDateEpoch: 1\nRequire-User: r\nLicenseFiles: l\nLicense: MIT\nDescription: d\n Source: kept (continuation)\n";
    assert_eq!(
        archman::index::openwrt_packages(m),
        b"Package: a\nLicense: MIT\nDescription: d\n Source: kept (continuation)\n"
    );
}

#[test]
fn signatures_verify_with_signify() {
    if !e2e::have_tool("signify-openbsd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["alpha", "beta"]);
    let (sec, public) = keygen(tmp.path());
    let o = archman(
        &[
            "index",
            "-q",
            "--valid-for",
            "7d",
            "--key",
            sec.to_str().unwrap(),
        ],
        &feed,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (msg, sig) in [("Packages", "Packages.sig"), ("Release", "Release.sig")] {
        let o = Command::new("signify-openbsd")
            .args(["-V", "-q", "-p"])
            .arg(&public)
            .arg("-m")
            .arg(feed.join(msg))
            .arg("-x")
            .arg(feed.join(sig))
            .output()
            .unwrap();
        assert!(o.status.success(), "signify refused {sig}: {}", stderr(&o));
    }
    let release = fs::read_to_string(feed.join("Release")).unwrap();
    assert!(
        release.contains("Date: Sun, 22 Nov 2026 02:40:00 UTC\n"),
        "{release}"
    );
    assert!(
        release.contains("Valid-Until: Sun, 29 Nov 2026 02:40:00 UTC\n"),
        "{release}"
    );
    let r = feeds::release::Release::parse(&release).unwrap();
    for f in ["Packages", "Packages.gz"] {
        let data = fs::read(feed.join(f)).unwrap();
        assert_eq!(r.file(f).unwrap().size, data.len() as u64);
    }
}

#[test]
fn apt_reads_a_feed_of_dpkg_deb_packages() {
    if !e2e::have_tool("dpkg-deb") || !e2e::have_tool("apt-get") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    fs::create_dir_all(feed.join("pool")).unwrap();
    for (name, dep) in [("hello-apt", "libhello-apt (>= 1.0)"), ("libhello-apt", "")] {
        let root = tmp.path().join(format!("src-{name}"));
        fs::create_dir_all(root.join("DEBIAN")).unwrap();
        fs::create_dir_all(root.join("usr/share/doc").join(name)).unwrap();
        let depends = if dep.is_empty() {
            String::new()
        } else {
            format!("Depends: {dep}\n")
        };
        fs::write(
            root.join("DEBIAN/control"),
            format!("Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: T <t@example.org>\n{depends}Description: test {name}\n long text\n"),
        )
        .unwrap();
        fs::write(root.join("usr/share/doc").join(name).join("README"), "hi\n").unwrap();
        let o = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&root)
            .arg(feed.join("pool").join(format!("{name}_1.0-1_all.deb")))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = archman(&["index", "-q"], &feed);
    assert!(o.status.success(), "{}", stderr(&o));

    // A private apt: its own state, cache, lists and sources.
    let apt = tmp.path().join("apt");
    for d in [
        "etc/apt/sources.list.d",
        "etc/apt/preferences.d",
        "etc/apt/apt.conf.d",
        "state/lists/partial",
        "cache/archives/partial",
        "log",
    ] {
        fs::create_dir_all(apt.join(d)).unwrap();
    }
    fs::write(apt.join("state/status"), "").unwrap();
    fs::write(
        apt.join("etc/apt/sources.list"),
        format!("deb [trusted=yes] file:{} ./\n", feed.display()),
    )
    .unwrap();
    let conf = apt.join("apt.conf");
    fs::write(
        &conf,
        format!(
            "Dir \"{a}/\";\nDir::Etc \"{a}/etc/apt/\";\nDir::State \"{a}/state/\";\nDir::State::status \"{a}/state/status\";\nDir::Cache \"{a}/cache/\";\nDir::Log \"{a}/log/\";\nDebug::NoLocking \"1\";\nAPT::Architecture \"amd64\";\nAPT::Sandbox::User \"root\";\nAcquire::Languages \"none\";\n",
            a = apt.display()
        ),
    )
    .unwrap();
    let apt_cmd = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .env("APT_CONFIG", &conf)
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };
    let o = apt_cmd(&["apt-get", "update"]);
    assert!(
        o.status.success(),
        "apt-get update: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let o = apt_cmd(&["apt-cache", "show", "hello-apt"]);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        shown.contains("Filename: pool/hello-apt_1.0-1_all.deb"),
        "{shown}"
    );
    assert!(shown.contains("Depends: libhello-apt (>= 1.0)"), "{shown}");
    let o = apt_cmd(&["apt-get", "download", "hello-apt"]);
    assert!(o.status.success(), "apt-get download: {}", stderr(&o));
    assert!(tmp.path().join("hello-apt_1.0-1_all.deb").exists());

    // Corrupt the published package (same size): apt's hash check refuses it.
    let deb = feed.join("pool/libhello-apt_1.0-1_all.deb");
    let mut bytes = fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&deb, bytes).unwrap();
    let o = apt_cmd(&["apt-get", "download", "libhello-apt"]);
    assert!(
        !o.status.success(),
        "apt-get downloaded a corrupted package"
    );
    assert!(
        stderr(&o).contains("Hash Sum mismatch") || stderr(&o).contains("hash"),
        "{}",
        stderr(&o)
    );
}

/// Each bad input: named in the error, exit 1, and the published feed untouched.
#[test]
fn bad_packages_are_reported_and_the_feed_is_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["good"]);
    let o = archman(&["index", "-q"], &feed);
    assert!(o.status.success());
    let before = snapshot(&feed);

    let good = pkg("victim", "1", None);
    let no_field = |field: &str| {
        let text: String = "Package: nofield\nVersion: 1\nArchitecture: all\n"
            .lines()
            .filter(|l| !l.starts_with(field))
            .map(|l| format!("{l}\n"))
            .collect();
        PackageBuilder::new(text).build().unwrap()
    };
    let mut two_gb = b"!<arch>\n".to_vec();
    two_gb.extend_from_slice(
        format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            "control.tar.gz", 0, 0, 0, 100644, 2_000_000_000u64
        )
        .as_bytes(),
    );
    two_gb.extend_from_slice(b"tiny");
    let no_control = {
        // An ar ipk with only debian-binary and data.tar.gz.
        let mut b = b"!<arch>\n".to_vec();
        for (n, body) in [
            ("debian-binary", &b"2.0\n"[..]),
            ("data.tar.gz", &feeds::index::gzip(&[0u8; 1024])[..]),
        ] {
            b.extend_from_slice(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    n,
                    0,
                    0,
                    0,
                    100644,
                    body.len()
                )
                .as_bytes(),
            );
            b.extend_from_slice(body);
            if body.len() % 2 == 1 {
                b.push(b'\n');
            }
        }
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated_1_all.ipk",
            good[..good.len() / 2].to_vec(),
            "ends early",
        ),
        ("nocontrol_1_all.ipk", no_control, "no control.tar member"),
        (
            "nopkg_1_all.ipk",
            no_field("Package"),
            "missing Package field",
        ),
        (
            "nover_1_all.ipk",
            no_field("Version"),
            "missing Version field",
        ),
        (
            "noarch_1_all.ipk",
            no_field("Architecture"),
            "missing Architecture field",
        ),
        (
            "text_1_all.ipk",
            b"<html>404 not found</html>\n".to_vec(),
            "not a package",
        ),
        (
            "huge_1_all.ipk",
            two_gb,
            "control.tar.gz: more than 16777216 bytes",
        ),
    ];
    for (name, bytes, expect) in cases {
        let path = feed.join(name);
        fs::write(&path, bytes).unwrap();
        let o = archman(&["index", "-q"], &feed);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(name) && err.contains(expect),
            "{name}: expected {expect:?} in:\n{err}"
        );
        assert!(err.contains("the feed was not changed"), "{err}");
        assert_eq!(snapshot(&feed), before, "{name}: the feed changed");
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn skip_bad_publishes_the_rest_with_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["one", "two"]);
    fs::write(
        feed.join("broken_1_all.ipk"),
        b"garbage that is long enough",
    )
    .unwrap();
    let o = archman(&["index", "-q", "--skip-bad"], &feed);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("broken_1_all.ipk: not a package"),
        "{}",
        stderr(&o)
    );
    let idx = fs::read_to_string(feed.join("Packages")).unwrap();
    assert_eq!(idx.matches("Package: ").count(), 2, "{idx}");
}

/// A file name that is not UTF-8 cannot be a `Filename` clients fetch: it is a bad package,
/// named with its bytes escaped, in a directory or in the file name itself.
#[test]
fn a_package_file_name_that_is_not_utf8_is_refused_naming_it() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["good"]);
    let o = archman(&["index", "-q"], &feed);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&feed);
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9_1.0-1_all.ipk");
    fs::write(feed.join(name), pkg("cafe", "1.0-1", None)).unwrap();
    let dir = std::ffi::OsStr::from_bytes(b"pool-\xff");
    fs::create_dir(feed.join(dir)).unwrap();
    fs::write(
        feed.join(dir).join("deep_1.0-1_all.ipk"),
        pkg("deep", "1.0-1", None),
    )
    .unwrap();
    let o = archman(&["index"], &feed);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for shown in [
        "\"caf\\xE9_1.0-1_all.ipk\"",
        "\"pool-\\xFF/deep_1.0-1_all.ipk\"",
    ] {
        assert!(
            err.contains(&format!(
                "the file name {shown} is not valid UTF-8, so the index cannot name it in a Filename that clients can fetch; rename the file"
            )),
            "{shown} in:\n{err}"
        );
    }
    assert_eq!(snapshot(&feed), before);
    // --skip-bad publishes the others and says which were left out.
    let o = archman(&["index", "--skip-bad", "--json"], &feed);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("caf\u{fffd}_1.0-1_all.ipk: the file name"),
        "{}",
        stderr(&o)
    );
    let idx = fs::read_to_string(feed.join("Packages")).unwrap();
    assert_eq!(idx.matches("Package: ").count(), 1, "{idx}");
    assert!(idx.contains("Package: good\n"), "{idx}");
}

#[test]
fn duplicate_packages_name_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["dup"]);
    fs::create_dir(feed.join("sub")).unwrap();
    fs::write(feed.join("sub/dup-copy.ipk"), pkg("dup", "1.0-1", None)).unwrap();
    let o = archman(&["index", "-q"], &feed);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("dup_1.0-1_all.ipk and sub/dup-copy.ipk are both dup 1.0-1 all"),
        "{e}"
    );
    assert!(!feed.join("Packages").exists());
}

#[test]
fn symlinks_loops_and_escapes() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["real"]);
    // A directory loop is not followed; a link to a package inside is indexed under its name.
    std::os::unix::fs::symlink("..", feed.join("loop")).unwrap();
    fs::create_dir(feed.join("sub")).unwrap();
    std::os::unix::fs::symlink("../sub", feed.join("sub/again")).unwrap();
    std::os::unix::fs::symlink("real_1.0-1_all.ipk", feed.join("latest.ipk")).unwrap();
    fs::write(
        feed.join("sub/other_1.0-1_all.ipk"),
        pkg("other", "1.0-1", None),
    )
    .unwrap();
    let o = archman(&["index", "-q"], &feed);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a duplicate through the link: {}",
        stderr(&o)
    );
    fs::remove_file(feed.join("latest.ipk")).unwrap();
    let o = archman(&["index", "-q"], &feed);
    assert!(o.status.success(), "{}", stderr(&o));
    let idx = fs::read_to_string(feed.join("Packages")).unwrap();
    assert!(idx.contains("Filename: sub/other_1.0-1_all.ipk\n"), "{idx}");
    assert_eq!(idx.matches("Package: ").count(), 2);
    // A file symlink loop and a link out of the tree are bad files.
    std::os::unix::fs::symlink("b.ipk", feed.join("a.ipk")).unwrap();
    std::os::unix::fs::symlink("a.ipk", feed.join("b.ipk")).unwrap();
    let outside = tmp.path().join("outside_1_all.ipk");
    fs::write(&outside, pkg("outside", "1", None)).unwrap();
    std::os::unix::fs::symlink(&outside, feed.join("escape.ipk")).unwrap();
    let o = archman(&["index", "-q"], &feed);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("a.ipk: broken symlink or symlink loop"), "{e}");
    assert!(
        e.contains("escape.ipk: symlink points outside the feed"),
        "{e}"
    );
}

#[test]
fn unreadable_files_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["ok"]);
    let secret = feed.join("secret_1_all.ipk");
    fs::write(&secret, pkg("secret", "1", None)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads anything: run archman as `nobody` in that case.
    let is_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let o = if is_root {
        if !e2e::have_tool("setpriv") {
            return;
        }
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(&feed, fs::Permissions::from_mode(0o777)).unwrap();
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                ARCHMAN,
                "index",
                "-q",
            ])
            .arg(&feed)
            .output()
            .unwrap()
    } else {
        archman(&["index", "-q"], &feed)
    };
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("secret_1_all.ipk: read error: Permission denied"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn output_does_not_depend_on_jobs_or_scan_order() {
    let tmp = tempfile::tempdir().unwrap();
    let names = [
        "zeta", "alpha", "mid", "beta", "omega", "kappa", "delta", "eps",
    ];
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    make_feed(&a, &names);
    let mut reversed = names;
    reversed.reverse();
    make_feed(&b, &reversed);
    // Same feed name so Origin matches.
    let o = archman(
        &["index", "-q", "--no-cache", "--jobs", "1", "--origin", "t"],
        &a,
    );
    assert!(o.status.success());
    let o = archman(
        &["index", "-q", "--no-cache", "--jobs", "4", "--origin", "t"],
        &b,
    );
    assert!(o.status.success());
    assert_eq!(snapshot(&a), snapshot(&b));
    let idx = fs::read_to_string(a.join("Packages")).unwrap();
    let order: Vec<&str> = idx
        .lines()
        .filter_map(|l| l.strip_prefix("Package: "))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

/// Stanzas past `--stanza-memory` go to a file without a name and are read back from it when
/// the index is hashed, compressed, signed, compared and written, and when the cache is
/// written: the feed published is the same, byte for byte, whether all, some or none of them
/// stayed in memory — from scratch, from the cache, after a change and after a removal — and
/// nothing of the file is left behind.
#[test]
fn stanzas_kept_outside_memory_publish_the_same_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let (sec, public) = keygen(tmp.path());
    let names: Vec<String> = (0..300).map(|i| format!("p{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // Every stanza in memory (the default), none, and the first few only.
    let budgets = ["8M", "0", "2K"];
    let feeds: Vec<_> = budgets
        .iter()
        .map(|b| {
            let feed = tmp.path().join(format!("feed-{b}"));
            make_feed(&feed, &names);
            feed
        })
        .collect();
    let run = |feed: &Path, budget: &str, epoch: i64| {
        let args = [
            "index",
            "--json",
            "--origin",
            "t",
            "--key",
            sec.to_str().unwrap(),
            "--stanza-memory",
            budget,
        ];
        let o = archman_at(&args, feed, Some(epoch));
        assert!(o.status.success(), "{budget}: {}", stderr(&o));
        json(&o)
    };
    let all_same = |what: &str| {
        let want = snapshot(&feeds[0]);
        assert!(want.iter().any(|(n, _)| n == "Packages.gz"));
        for f in &feeds[1..] {
            assert!(snapshot(f) == want, "{what}: {} differs", f.display());
        }
        let packages = fs::read(feeds[1].join("Packages")).unwrap();
        let sig = feeds::usign::Signature::read_path(&feeds[1].join("Packages.sig")).unwrap();
        feeds::usign::PublicKey::read_path(&public)
            .unwrap()
            .verify(&packages, &sig)
            .unwrap();
    };
    for (f, b) in feeds.iter().zip(budgets) {
        assert!(run(f, b, EPOCH).contains("\"read\":300,\"cached\":0"));
    }
    all_same("from scratch");
    // From the cache (with the stanzas loaded from it spilled), one package replaced.
    for (f, b) in feeds.iter().zip(budgets) {
        fs::write(
            f.join("p150_1.0-1_all.ipk"),
            pkg("p150", "1.0-1", Some("p001")),
        )
        .unwrap();
        let out = run(f, b, EPOCH + 3600);
        assert!(out.contains("\"read\":1,\"cached\":299"), "{b}: {out}");
    }
    all_same("one package replaced");
    // One removed, one added.
    for (f, b) in feeds.iter().zip(budgets) {
        fs::remove_file(f.join("p007_1.0-1_all.ipk")).unwrap();
        fs::write(f.join("zz_1.0-1_all.ipk"), pkg("zz", "1.0-1", None)).unwrap();
        let out = run(f, b, EPOCH + 7200);
        assert!(out.contains("\"read\":1,\"cached\":299"), "{b}: {out}");
    }
    all_same("one removed, one added");
    let text = fs::read_to_string(feeds[1].join("Packages")).unwrap();
    assert!(text.contains("Package: zz\n") && !text.contains("Package: p007\n"));
    // Nothing changed: nothing read, nothing written.
    for (f, b) in feeds.iter().zip(budgets) {
        let out = run(f, b, EPOCH + 7200);
        assert!(out.contains("\"read\":0,\"cached\":300"), "{b}: {out}");
        assert!(out.contains("\"unchanged\":true"), "{b}: {out}");
    }
    // The spill was beside the cache, without a name: the cache directories hold the same
    // files whatever the budget.
    let files = |feed: &Path| {
        let mut names: Vec<String> = walkdir::WalkDir::new(xdg(feed))
            .into_iter()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("feed-"))
            .collect();
        names.sort();
        names
    };
    let dirs: Vec<Vec<String>> = feeds.iter().map(|f| files(f)).collect();
    assert!(dirs.iter().all(|d| d.len() == dirs[0].len()), "{dirs:?}");
}

/// When the file for stanzas outside memory cannot be made (no cache, and `$TMPDIR` does not
/// exist), the run fails before publishing, saying why, and the published feed is as it was.
#[test]
fn a_spill_that_cannot_be_written_fails_the_run_and_leaves_the_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["a", "b", "c"]);
    let o = archman(&["index", "-q", "--no-cache"], &feed);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&feed);
    fs::write(feed.join("d_1.0-1_all.ipk"), pkg("d", "1.0-1", None)).unwrap();
    let o = Command::new(ARCHMAN)
        .args(["index", "-q", "--no-cache", "--stanza-memory", "0"])
        .arg(&feed)
        .env("SOURCE_DATE_EPOCH", (EPOCH + 60).to_string())
        .env("TMPDIR", tmp.path().join("no such directory"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("error: stanzas kept in a temporary file: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&feed), before);
    assert!(
        fs::read_dir(&feed).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".archman-tmp")),
        "no temporaries left"
    );
}

fn json(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn incremental_runs_read_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["a", "b", "c"]);
    let o = archman(&["index", "--json"], &feed);
    assert!(json(&o).contains("\"read\":3,\"cached\":0"), "{}", json(&o));
    let mtime = |f: &str| fs::metadata(feed.join(f)).unwrap().modified().unwrap();
    let before = (mtime("Packages"), mtime("Release"));
    std::thread::sleep(std::time::Duration::from_millis(20));

    // Unchanged: nothing read, nothing written (even with a different Date).
    let o = Command::new(ARCHMAN)
        .args(["index", "--json"])
        .arg(&feed)
        .env("XDG_CACHE_HOME", xdg(&feed))
        .env("SOURCE_DATE_EPOCH", "1795400000")
        .output()
        .unwrap();
    assert!(json(&o).contains("\"read\":0,\"cached\":3"), "{}", json(&o));
    assert!(
        json(&o).contains("\"written\":[],\"unchanged\":true"),
        "{}",
        json(&o)
    );
    assert_eq!((mtime("Packages"), mtime("Release")), before);

    // One package replaced: only it is read (the Release dated an hour later: a Date is
    // never reused for other contents).
    fs::write(feed.join("b_1.0-1_all.ipk"), pkg("b", "1.0-1", Some("a"))).unwrap();
    let o = archman_at(&["index", "--json"], &feed, Some(EPOCH + 3600));
    assert!(json(&o).contains("\"read\":1,\"cached\":2"), "{}", json(&o));
    assert!(
        fs::read_to_string(feed.join("Packages"))
            .unwrap()
            .contains("Depends: a\n")
    );

    // --refresh re-signs with a new Date although nothing changed.
    let o = Command::new(ARCHMAN)
        .args(["index", "--json", "--refresh"])
        .arg(&feed)
        .env("XDG_CACHE_HOME", xdg(&feed))
        .env("SOURCE_DATE_EPOCH", "1795400000")
        .output()
        .unwrap();
    assert!(json(&o).contains("\"read\":0"), "{}", json(&o));
    assert!(
        fs::read_to_string(feed.join("Release"))
            .unwrap()
            .contains("Date: Mon, 23 Nov 2026")
    );

    // A damaged cache is ignored with a warning, and the result is still right.
    let cache = cache_of(&feed);
    let mut bytes = fs::read(&cache).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    fs::write(&cache, bytes).unwrap();
    let good = fs::read(feed.join("Packages")).unwrap();
    let o = archman(&["index", "--json"], &feed);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains(&format!("cache {}: ", cache.display()))
            && stderr(&o).contains("; ignoring it"),
        "{}",
        stderr(&o)
    );
    assert!(json(&o).contains("\"read\":3"), "{}", json(&o));
    assert_eq!(fs::read(feed.join("Packages")).unwrap(), good);

    // A cache from another feed is not trusted.
    let other = tmp.path().join("other");
    make_feed(&other, &["a", "b", "c"]);
    fs::create_dir_all(cache_of(&other).parent().unwrap()).unwrap();
    fs::copy(&cache, cache_of(&other)).unwrap();
    let o = archman(&["index", "--json"], &other);
    assert!(
        stderr(&o).contains("not an archman cache for this feed"),
        "{}",
        stderr(&o)
    );
    assert!(json(&o).contains("\"read\":3"), "{}", json(&o));
}

#[test]
fn a_small_change_appends_to_the_cache_and_a_cut_append_costs_only_a_reread() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    let names: Vec<String> = (0..40).map(|i| format!("p{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    make_feed(&feed, &names);
    assert!(archman(&["index", "-q"], &feed).status.success());
    let cache = cache_of(&feed);
    let before = fs::read(&cache).unwrap();

    // One package rebuilt: its record is appended, the rest of the file is left alone.
    let changed = feed.join("p07_1.0-1_all.ipk");
    fs::write(&changed, pkg("p07", "1.0-1", Some("p08"))).unwrap();
    let later = Some(EPOCH + 60);
    let o = archman_at(&["index", "--json"], &feed, later);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(json(&o).contains("\"read\":1"), "{}", json(&o));
    let after = fs::read(&cache).unwrap();
    assert!(
        after.starts_with(&before),
        "the cache was rewritten, not appended to"
    );
    assert!(after.len() - before.len() < before.len() / 10);
    let packages = fs::read(feed.join("Packages")).unwrap();
    assert!(String::from_utf8_lossy(&packages).contains("Depends: p08"));

    // An append cut short (a crash mid-write) is dropped with a warning: only the package
    // it described is read again, and the feed comes out the same.
    fs::write(&cache, &after[..after.len() - 3]).unwrap();
    fs::write(&changed, pkg("p07", "1.0-1", Some("p08"))).unwrap();
    let o = archman_at(&["index", "--json", "--refresh"], &feed, later);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "cache {}: ignoring its damaged end",
            cache.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(json(&o).contains("\"read\":1"), "{}", json(&o));
    assert_eq!(fs::read(feed.join("Packages")).unwrap(), packages);
    // That run rewrote the damaged cache whole; the next run reads nothing.
    let o = archman(&["index", "--json"], &feed);
    assert!(json(&o).contains("\"read\":0"), "{}", json(&o));
    assert!(!stderr(&o).contains("cache"), "{}", stderr(&o));
}

#[test]
fn a_published_file_changed_behind_our_back_is_republished() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["a", "b", "c"]);
    let (key, _) = keygen(tmp.path());
    let key = key.to_str().unwrap();
    assert!(
        archman(&["index", "-q", "--key", key], &feed)
            .status
            .success()
    );
    let good = snapshot(&feed);
    // An up-to-date feed is recognised without rewriting anything...
    let o = archman(&["index", "--json", "--key", key], &feed);
    assert!(json(&o).contains("\"written\":[]"), "{}", json(&o));
    // ...but each published file damaged (same size, new contents) is noticed and the feed
    // is restored, even though no package changed.
    for name in [
        "Packages",
        "Packages.gz",
        "Packages.sig",
        "Release",
        "Release.sig",
    ] {
        let path = feed.join(name);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let o = archman(&["index", "--json", "--key", key], &feed);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(snapshot(&feed), good, "{name} was not restored");
    }
}

/// The feed is consistent: Packages.sig verifies Packages, and Release lists the sizes and
/// hashes of the index files on disk.
fn consistent(feed: &Path, public: &feeds::usign::PublicKey) -> Result<(), String> {
    let packages = fs::read(feed.join("Packages")).map_err(|e| e.to_string())?;
    let sig = feeds::usign::Signature::read_path(&feed.join("Packages.sig"))
        .map_err(|e| e.to_string())?;
    public.verify(&packages, &sig).map_err(|e| e.to_string())?;
    let release = fs::read(feed.join("Release")).map_err(|e| e.to_string())?;
    let rsig =
        feeds::usign::Signature::read_path(&feed.join("Release.sig")).map_err(|e| e.to_string())?;
    public.verify(&release, &rsig).map_err(|e| e.to_string())?;
    let r = feeds::release::Release::parse(std::str::from_utf8(&release).unwrap())
        .map_err(|e| e.to_string())?;
    for f in &r.sha256 {
        let data = fs::read(feed.join(&f.name)).map_err(|e| e.to_string())?;
        use sha2::Digest;
        if hex::encode(sha2::Sha256::digest(&data)) != f.sha256 {
            return Err(format!("{} does not match Release", f.name));
        }
    }
    Ok(())
}

#[test]
fn kill_9_at_any_moment_leaves_a_complete_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    let names: Vec<String> = (0..120).map(|i| format!("pkg{i:03}")).collect();
    make_feed(&feed, &names.iter().map(String::as_str).collect::<Vec<_>>());
    let (sec, public) = keygen(tmp.path());
    let public = feeds::usign::PublicKey::read_path(&public).unwrap();
    let key = sec.to_str().unwrap().to_string();
    let o = archman(&["index", "-q", "--key", &key], &feed);
    assert!(o.status.success(), "{}", stderr(&o));
    consistent(&feed, &public).unwrap();

    let mut killed_mid_publish = 0;
    for round in 0..40u64 {
        // Change the feed so every run publishes, then kill the run after a varying delay.
        fs::write(
            feed.join("pkg000_1.0-1_all.ipk"),
            pkg("pkg000", "1.0-1", Some(&format!("dep{round}"))),
        )
        .unwrap();
        // Dated by the clock, like the rerun below: runs within one second move the Date on.
        let mut child = Command::new(ARCHMAN)
            .args(["index", "-q", "--no-cache", "--key", &key])
            .arg(&feed)
            .env_remove("SOURCE_DATE_EPOCH")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(round * 1500));
        let _ = child.kill();
        let _ = child.wait();
        if feed.join(archman::index::JOURNAL).exists() {
            killed_mid_publish += 1;
        } else {
            // No publish in progress: what readers see is a complete feed, old or new.
            consistent(&feed, &public).unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        // The next run finishes or cleans up, and the feed is complete again.
        let o = archman_at(&["index", "-q", "--key", &key], &feed, None);
        assert!(o.status.success(), "{}", stderr(&o));
        consistent(&feed, &public).unwrap_or_else(|e| panic!("round {round} after rerun: {e}"));
        assert!(fs::read_dir(&feed).unwrap().all(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".archman-tmp")
        }));
    }
    eprintln!("{killed_mid_publish} of 40 kills landed inside a publish");
}

/// Holds the lock of feed `dir` as another `archman index` would, until dropped.
fn hold_lock(dir: &Path) -> fs::File {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(archman::index::LOCK))
        .unwrap();
    f.lock().unwrap();
    f
}

#[test]
fn a_second_run_waits_for_the_first_or_fails_at_once_with_no_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["a", "b"]);
    let lock = hold_lock(&feed);
    let lock_path = feed.join(".archman-lock");

    // --no-wait: exit 1 at once, naming the lock, the feed unchanged.
    let o = archman(&["index", "--no-wait"], &feed);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "error: {}: another archman index holds this lock (on {}); the feed was not changed",
            lock_path.display(),
            feed.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(!feed.join("Packages").exists());

    // Without it: the run waits, says so after a second, and publishes once the lock is
    // released.
    let child = Command::new(ARCHMAN)
        .args(["index"])
        .arg(&feed)
        .env("XDG_CACHE_HOME", xdg(&feed))
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1600));
    assert!(!feed.join("Packages").exists(), "the run did not wait");
    drop(lock);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "waiting for another archman index on {} (lock {})",
            feed.display(),
            lock_path.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(feed.join("Packages").exists());
    // The lock file stays (deleting it could let two runs in); nothing else is left over.
    let mut dot: Vec<String> = fs::read_dir(&feed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    dot.sort();
    assert_eq!(dot, [".archman-lock"]);
    // A quick run that finds the lock free says nothing about waiting.
    let o = archman(&["index"], &feed);
    assert!(!stderr(&o).contains("waiting"), "{}", stderr(&o));
}

/// A journal left by a killed run names its temporaries, tagged by that run; the next run
/// rolls it forward. A journal from before temporaries were tagged still works.
#[test]
fn an_interrupted_publish_is_rolled_forward_tagged_or_not() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["a"]);
    assert!(archman(&["index", "-q"], &feed).status.success());
    let good = fs::read(feed.join("Packages")).unwrap();
    for (tag, tmp_name) in [
        (Some("123-abcdef01"), ".archman-tmp.123-abcdef01.Packages.x"),
        (None, ".archman-tmp.Packages.x"),
    ] {
        // `Packages.x`, a name no run writes: what the roll-forward put there stays to see.
        let marker = format!("rolled forward ({tag:?})\n");
        fs::write(feed.join(tmp_name), &marker).unwrap();
        let journal = match tag {
            Some(t) => format!("tmp {t}\nPackages.x\nEND\n"),
            None => "Packages.x\nEND\n".to_string(),
        };
        fs::write(feed.join(archman::index::JOURNAL), journal).unwrap();
        // A temporary of another run, killed before its journal was written: removed.
        fs::write(feed.join(".archman-tmp.9-00000000.Release"), "x").unwrap();
        let out = archman(&["index"], &feed);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("finished or cleaned up an interrupted earlier run"),
            "{}",
            stderr(&out)
        );
        assert_eq!(fs::read_to_string(feed.join("Packages.x")).unwrap(), marker);
        let names: Vec<String> = fs::read_dir(&feed)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".archman-tmp")),
            "{names:?}"
        );
        assert!(!feed.join(archman::index::JOURNAL).exists());
        assert_eq!(fs::read(feed.join("Packages")).unwrap(), good);
        fs::remove_file(feed.join("Packages.x")).unwrap();
    }
}

#[test]
fn build_makes_reproducible_ipks_and_refuses_bad_control() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("hello");
    fs::create_dir_all(src.join("CONTROL")).unwrap();
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    fs::write(
        src.join("CONTROL/control"),
        "Package: hello\nVersion: 1:2.0-r1\nArchitecture: all\nDescription:  hi\n",
    )
    .unwrap();
    fs::write(src.join("CONTROL/postinst"), "#!/bin/sh\nexit 0\n").unwrap();
    fs::write(src.join("usr/bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
    std::os::unix::fs::symlink("hello", src.join("usr/bin/hi")).unwrap();
    let build = |out: &Path, format: &str| {
        Command::new(ARCHMAN)
            .args(["build", "--format", format])
            .arg(&src)
            .arg(out)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap()
    };
    let o = build(&tmp.path().join("o1"), "tgz");
    assert!(o.status.success(), "{}", stderr(&o));
    let path = tmp.path().join("o1/hello_2.0-r1_all.ipk");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        path.display().to_string()
    );
    assert!(build(&tmp.path().join("o2"), "tgz").status.success());
    assert_eq!(
        fs::read(&path).unwrap(),
        fs::read(tmp.path().join("o2/hello_2.0-r1_all.ipk")).unwrap()
    );
    let p = feeds::package::Package::open(&path, &Default::default()).unwrap();
    assert_eq!(p.container, Container::TarGz);
    assert_eq!(p.scripts(), ["postinst"]);
    assert_eq!(p.control_file("postinst").unwrap().mode, 0o755);
    assert!(build(&tmp.path().join("o3"), "ar").status.success());
    let p = feeds::package::Package::open(
        &tmp.path().join("o3/hello_2.0-r1_all.ipk"),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(p.container, Container::Ar);
    // GNU tar reads it and sees ./-prefixed, root-owned entries.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -xzOf {} ./data.tar.gz | tar -tzv",
            path.display()
        ))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing.contains("0/0")
            && listing.contains("./usr/bin/hello")
            && listing.contains("./usr/bin/hi -> hello"),
        "{listing}"
    );

    fs::write(
        src.join("CONTROL/control"),
        "Package: hello\nArchitecture: all\n",
    )
    .unwrap();
    let o = build(&tmp.path().join("o4"), "tgz");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("CONTROL/control") && stderr(&o).contains("missing Version field"),
        "{}",
        stderr(&o)
    );
    fs::write(
        src.join("CONTROL/control"),
        "Package: Bad Name\nVersion: 1\nArchitecture: all\n",
    )
    .unwrap();
    let o = build(&tmp.path().join("o4"), "tgz");
    assert!(
        stderr(&o).contains("bad Package \"Bad Name\""),
        "{}",
        stderr(&o)
    );
    assert!(
        !tmp.path().join("o4").read_dir().unwrap().any(|_| true),
        "a failed build left files behind"
    );
}

// ---------------------------------------------------------------------------------------
// Release dates: each new Release is dated strictly later than the one it replaces, because
// clients refuse an older Date, and an equal Date on other contents, as a replay (prokit's
// rule, `prokit/src/feed.rs`).

use archman::index::{DateConflict, DateSource, MAX_DATE_AHEAD, NextDate, next_release_date};

#[test]
fn the_date_rule_without_a_published_release_or_with_a_later_date() {
    for source in [DateSource::Clock, DateSource::Fixed] {
        assert_eq!(
            next_release_date(EPOCH, source, None, false, false),
            Ok(NextDate::AsRequested(EPOCH))
        );
        assert_eq!(
            next_release_date(EPOCH + 1, source, Some(EPOCH), false, false),
            Ok(NextDate::AsRequested(EPOCH + 1))
        );
        // The very same Release again (an unchanged --refresh within the second) stays as is.
        assert_eq!(
            next_release_date(EPOCH, source, Some(EPOCH), true, false),
            Ok(NextDate::AsRequested(EPOCH))
        );
    }
}

#[test]
fn the_date_rule_moves_a_clock_date_past_the_published_one() {
    let moved =
        |now, published| next_release_date(now, DateSource::Clock, Some(published), false, false);
    // Two publishes in one second: the second is dated one second later.
    assert_eq!(
        moved(EPOCH, EPOCH),
        Ok(NextDate::Moved {
            date: EPOCH + 1,
            published: EPOCH
        })
    );
    // A third in the same second goes one second further.
    assert_eq!(moved(EPOCH, EPOCH + 1).map(NextDate::date), Ok(EPOCH + 2));
    // As far as MAX_DATE_AHEAD seconds ahead of the clock...
    let published = EPOCH + MAX_DATE_AHEAD - 1;
    assert_eq!(
        moved(EPOCH, published).map(NextDate::date),
        Ok(EPOCH + MAX_DATE_AHEAD)
    );
    // ...and no further: a clock that far behind the published Date is refused.
    let published = EPOCH + MAX_DATE_AHEAD;
    assert_eq!(
        moved(EPOCH, published),
        Err(DateConflict::ClockBehind {
            now: EPOCH,
            published
        })
    );
    // Unless the rollback is allowed: then it is dated now, as asked.
    assert_eq!(
        next_release_date(EPOCH, DateSource::Clock, Some(published), false, true),
        Ok(NextDate::RolledBack {
            date: EPOCH,
            published
        })
    );
    // Allowing the rollback does not stop a move that suffices.
    assert_eq!(
        next_release_date(EPOCH, DateSource::Clock, Some(EPOCH), false, true),
        Ok(NextDate::Moved {
            date: EPOCH + 1,
            published: EPOCH
        })
    );
}

#[test]
fn the_date_rule_never_moves_a_fixed_date() {
    let fixed = |date, published, same, allow| {
        next_release_date(date, DateSource::Fixed, Some(published), same, allow)
    };
    assert_eq!(
        fixed(EPOCH - 1, EPOCH, false, false),
        Err(DateConflict::Older {
            requested: EPOCH - 1,
            published: EPOCH
        })
    );
    // An older fixed Date that would republish the same bytes cannot be: the Date differs.
    assert!(fixed(EPOCH - 1, EPOCH, true, false).is_err());
    assert_eq!(
        fixed(EPOCH, EPOCH, false, false),
        Err(DateConflict::SameDate { date: EPOCH })
    );
    for requested in [EPOCH - 3600, EPOCH] {
        assert_eq!(
            fixed(requested, EPOCH, false, true),
            Ok(NextDate::RolledBack {
                date: requested,
                published: EPOCH
            })
        );
    }
    // The messages say what clients would do, and what to do about it.
    let older = DateConflict::Older {
        requested: EPOCH - 60,
        published: EPOCH,
    };
    assert_eq!(
        older.to_string(),
        "the new Release's Date Sun, 22 Nov 2026 02:39:00 UTC (SOURCE_DATE_EPOCH) is older than \
         the published Release's Date Sun, 22 Nov 2026 02:40:00 UTC: clients that have the \
         published Release would refuse the new one as a rollback"
    );
    assert!(older.advice().contains("--allow-date-rollback"));
    let same = DateConflict::SameDate { date: EPOCH }.to_string();
    assert!(same.contains("as a replay"), "{same}");
    let behind = DateConflict::ClockBehind {
        now: EPOCH,
        published: EPOCH + 3600,
    };
    assert!(
        behind
            .to_string()
            .contains("3600 s ahead of this machine's clock"),
        "{behind}"
    );
    assert!(behind.advice().starts_with("check the clock"));
}

/// The name and SHA-256 of every file of the feed directory (hidden ones too), for "nothing
/// changed" comparisons.
fn everything(dir: &Path) -> Vec<(String, String)> {
    use sha2::Digest;
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                hex::encode(sha2::Sha256::digest(fs::read(&p).unwrap())),
            )
        })
        .collect();
    v.sort();
    v
}

fn release(feed: &Path) -> feeds::release::Release {
    feeds::release::Release::parse(&fs::read_to_string(feed.join("Release")).unwrap()).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_clock_date_not_past_the_published_one_is_moved_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["a"]);
    // The published Release is dated a minute ahead of the clock (a publish in this same
    // second looks the same, only closer): the next one is dated one second after it.
    let ahead = now() + 60;
    let o = archman_at(&["index", "-q", "--valid-for", "1d"], &feed, Some(ahead));
    assert!(o.status.success(), "{}", stderr(&o));
    make_feed(&feed, &["b"]);
    let o = archman_at(&["index", "--valid-for", "1d"], &feed, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = release(&feed);
    assert_eq!(r.date, ahead + 1);
    assert_eq!(r.valid_until, Some(ahead + 1 + 86_400));
    let want = format!(
        "warning: {}: Release Date moved to {} (1 s after the published Release's Date {}) so clients accept it as newer",
        feed.join("Release").display(),
        feeds::release::format_date(ahead + 1),
        feeds::release::format_date(ahead)
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    // A later clock needs no move, and says nothing about it.
    make_feed(&feed, &["c"]);
    let later = ahead + 120;
    let o = archman_at(&["index"], &feed, Some(later));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_eq!(release(&feed).date, later);

    // A clock more than MAX_DATE_AHEAD behind the published Date is refused, nothing changed.
    let far = now() + 3600;
    make_feed(&feed, &["d"]);
    assert!(
        archman_at(&["index", "-q"], &feed, Some(far))
            .status
            .success()
    );
    make_feed(&feed, &["e"]);
    let before = everything(&feed);
    let o = archman_at(&["index"], &feed, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "error: {}: refusing to publish: the published Release's Date {}",
            feed.join("Release").display(),
            feeds::release::format_date(far)
        )) && err.contains("ahead of this machine's clock")
            && err.contains("the feed was not changed (check the clock"),
        "{err}"
    );
    assert_eq!(everything(&feed), before);
    // --allow-date-rollback publishes it dated now.
    let o = archman_at(&["index", "--allow-date-rollback"], &feed, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(release(&feed).date < far);
    assert!(
        stderr(&o).contains("--allow-date-rollback"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_fixed_date_not_later_than_the_published_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["a", "b"]);
    let (key, _) = keygen(tmp.path());
    let key = key.to_str().unwrap();
    assert!(
        archman(&["index", "-q", "--key", key], &feed)
            .status
            .success()
    );
    let published = everything(&feed);

    // Nothing changed: nothing to publish, so an older Date is no matter.
    let o = archman_at(&["index", "--key", key], &feed, Some(EPOCH - 60));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(everything(&feed), published);
    // Re-signing the same Release at the same Date gives the same bytes: allowed.
    let files = snapshot(&feed);
    let o = archman(&["index", "--refresh", "--key", key], &feed);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("wrote Packages.gz") && !stderr(&o).contains("warning"),
        "{}",
        stderr(&o)
    );
    assert!(
        snapshot(&feed) == files,
        "the same Release was not rewritten as it was"
    );

    make_feed(&feed, &["c"]);
    let before = everything(&feed);
    // Older: refused, and nothing in the feed directory changed (not even the cache).
    let o = archman_at(&["index", "--key", key], &feed, Some(EPOCH - 60));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {}: refusing to publish: the new Release's Date Sun, 22 Nov 2026 02:39:00 UTC (SOURCE_DATE_EPOCH) is older than the published Release's Date Sun, 22 Nov 2026 02:40:00 UTC: clients that have the published Release would refuse the new one as a rollback; the feed was not changed (raise SOURCE_DATE_EPOCH past the published Date, or pass --allow-date-rollback to publish it anyway)",
            feed.join("Release").display()
        )
    );
    assert_eq!(everything(&feed), before);
    // Equal, with other contents: refused as what clients would call a replay.
    let o = archman(&["index", "--key", key], &feed);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("as a replay"), "{}", stderr(&o));
    assert_eq!(everything(&feed), before);
    // Later: published as asked, with no warning.
    let o = archman_at(&["index", "--key", key], &feed, Some(EPOCH + 1));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_eq!(release(&feed).date, EPOCH + 1);
    // Allowed: published at the older Date, with a warning that says what clients will do.
    make_feed(&feed, &["d"]);
    let o = archman_at(
        &["index", "--allow-date-rollback", "--key", key],
        &feed,
        Some(EPOCH - 60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(release(&feed).date, EPOCH - 60);
    assert!(
        stderr(&o).contains("not later than the published Release's Date")
            && stderr(&o).contains("refuse this one"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreadable_published_release_is_reported_and_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["a"]);
    assert!(archman(&["index", "-q"], &feed).status.success());
    // No client accepted this Release (none can parse it), so it does not hold the feed back.
    fs::write(feed.join("Release"), "Date: yesterday\n").unwrap();
    let o = archman_at(&["index"], &feed, Some(EPOCH - 3600));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "warning: {}: bad date in Date",
            feed.join("Release").display()
        )) && stderr(&o).contains("the new one's Date is not checked against it"),
        "{}",
        stderr(&o)
    );
    assert_eq!(release(&feed).date, EPOCH - 3600);
}

// ---------------------------------------------------------------------------------------
// ar .ipk files: opkg-lede (OpenWrt's opkg, 38eccbb) has no ar reader. `deb_extract` pipes
// the whole package file through `gzip -d` and walks a tar (libbb/unarchive.c:560-564), so an
// ar .ipk gives an empty control file: "Malformed package file" (libopkg/pkg.c:398, after
// libopkg/pkg_parse.c:389-392) on a direct install, and from a feed an extraction of nothing
// that returns 0 (libbb/unarchive.c:532, libopkg/pkg_extract.c:57-66 called at
// libopkg/opkg_install.c:1081): success, no files.

fn ar_pkg(name: &str) -> Vec<u8> {
    PackageBuilder::new(format!(
        "Package: {name}\nVersion: 1.0-1\nArchitecture: all\nDescription:  The {name} package.\n"
    ))
    .container(Container::Ar)
    .file(
        &format!("usr/share/{name}/data"),
        0o644,
        format!("{name}\n"),
    )
    .build()
    .unwrap()
}

#[test]
fn the_openwrt_profile_warns_about_each_ar_ipk_on_every_run() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    make_feed(&feed, &["tgz"]);
    fs::create_dir(feed.join("pool")).unwrap();
    fs::write(feed.join("pool/two_1.0-1_all.ipk"), ar_pkg("two")).unwrap();
    fs::write(feed.join("one_1.0-1_all.ipk"), ar_pkg("one")).unwrap();
    let warned = |o: &Output| -> Vec<String> {
        stderr(o)
            .lines()
            .filter(|l| l.contains("ar .ipk"))
            .map(str::to_string)
            .collect()
    };
    let want: Vec<String> = ["one_1.0-1_all.ipk", "pool/two_1.0-1_all.ipk"]
        .iter()
        .map(|f| {
            format!(
                "warning: {}: {}",
                feed.join(f).display(),
                archman::index::AR_IPK_WARNING
            )
        })
        .collect();
    let o = archman(&["index", "--profile", "openwrt"], &feed);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(warned(&o), want);
    assert!(
        want[0].contains("OpenWrt's opkg (opkg-lede) cannot install")
            && want[0].contains("Malformed package file")
            && want[0].contains("installs no files")
    );
    // They are still indexed: prokit and dpkg-deb read them.
    let packages = fs::read_to_string(feed.join("Packages")).unwrap();
    assert!(packages.contains("Package: one") && packages.contains("Package: two"));
    // From the cache, nothing read, the same warnings.
    let o = archman(&["index", "--profile", "openwrt", "--json"], &feed);
    assert!(json(&o).contains("\"read\":0"), "{}", json(&o));
    assert_eq!(warned(&o), want);
    // The full profile (prokit, opkg-utils, apt) has no such reader problem: no warning.
    let full = tmp.path().join("full");
    make_feed(&full, &["tgz"]);
    fs::write(full.join("one_1.0-1_all.ipk"), ar_pkg("one")).unwrap();
    let o = archman(&["index"], &full);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(warned(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn build_help_says_which_clients_read_each_container_and_dpkg_deb_agrees() {
    let o = Command::new(ARCHMAN)
        .args(["build", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        help.contains("ar: the Debian layout, as opkg-utils' opkg-build makes; read by prokit and dpkg-deb, but NOT by opkg-lede")
            && help.contains("\"Malformed package file\"")
            && help.contains("tgz: a gzipped tar, as OpenWrt's ipkg-build makes; read by OpenWrt's opkg (opkg-lede) and prokit"),
        "{help}"
    );
    if !e2e::have_tool("dpkg-deb") {
        return;
    }
    // What the help says of dpkg-deb, checked: it reads the ar .ipk, and not the tgz one.
    let tmp = tempfile::tempdir().unwrap();
    let (ar, tgz) = (tmp.path().join("ar.ipk"), tmp.path().join("tgz.ipk"));
    fs::write(&ar, ar_pkg("one")).unwrap();
    fs::write(&tgz, pkg("one", "1.0-1", None)).unwrap();
    let info = |p: &Path| {
        Command::new("dpkg-deb")
            .arg("-f")
            .arg(p)
            .arg("Package")
            .output()
            .unwrap()
    };
    let o = info(&ar);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "one");
    let o = info(&tgz);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a Debian format archive"),
        "{}",
        stderr(&o)
    );
    // And prokit's reader (feeds::package) reads both.
    for p in [&ar, &tgz] {
        assert_eq!(
            feeds::package::Package::open(p, &Default::default())
                .unwrap()
                .name(),
            "one"
        );
    }
}
