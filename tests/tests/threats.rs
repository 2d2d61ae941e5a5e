//! docs/threats.md: each threat the client must defeat, mounted against the real `prokit` binary
//! over real HTTP on 127.0.0.1, with a feed made by `archman`. Each test shows the attack fail
//! with a clear message and nothing changed (#13, the keyring attacks, live with the keyring
//! scenarios).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Fixture, now, prokit, snapshot, status_of};
use e2e::{HttpServer, bin, run};

/// A feed with a small dependency chain, indexed and served, and a root bootstrapped from it
/// with `app` installed.
struct Scene {
    f: Fixture,
    server: HttpServer,
    root: PathBuf,
}

impl Scene {
    fn new() -> Option<Scene> {
        let f = Fixture::new();
        f.add("lib", "1.0", "", &[("usr/lib/lib.so", "lib 1.0")], None);
        f.add(
            "app",
            "1.0",
            "Depends: lib\n",
            &[("usr/bin/app", "app 1.0")],
            None,
        );
        let server = HttpServer::serve(&f.feed)?;
        let root = f.tmp.path().join("root");
        // Dated an hour ago (see Fixture::index), so that later indexes are strictly newer.
        f.index();
        Some(Scene { f, server, root })
    }

    fn root(&self) -> &str {
        self.root.to_str().unwrap()
    }

    /// `prokit bootstrap` of `pkgs` from this feed into the scene's root.
    fn bootstrap(&self, pkgs: &[&str]) -> (bool, String, String) {
        let feed = format!("main={}", self.server.url(""));
        let mut args = vec![
            "bootstrap",
            self.root(),
            "--feed",
            &feed,
            "--pubkey",
            self.f.public.to_str().unwrap(),
        ];
        args.extend_from_slice(pkgs);
        prokit(None, &args)
    }

    fn update(&self) -> (bool, String, String) {
        prokit(Some(self.root()), &["update"])
    }

    fn list(&self) -> String {
        let (ok, out, err) = prokit(Some(self.root()), &["list"]);
        assert!(ok, "{err}");
        out
    }

    /// The stored index of the feed (what a failed update must leave alone).
    fn stored_index(&self) -> Vec<u8> {
        fs::read(self.root.join("var/opkg-lists/main")).unwrap()
    }

    /// Re-indexes the feed with its Date at `epoch`. The attacks publish stale or back-dated
    /// feeds on purpose, so archman's refusal to move a Release's Date back is overridden.
    fn index_at(&self, epoch: i64, extra: &[&str]) {
        let (ok, _, err) = run(Command::new(bin("archman"))
            .args(["index", "-q", "--refresh", "--allow-date-rollback", "--key"])
            .arg(&self.f.sec)
            .args(extra)
            .arg(&self.f.feed)
            .env("SOURCE_DATE_EPOCH", epoch.to_string()));
        assert!(ok, "archman index: {err}");
    }
}

fn copy_feed_files(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for n in [
        "Packages",
        "Packages.gz",
        "Packages.sig",
        "Release",
        "Release.sig",
    ] {
        if from.join(n).exists() {
            fs::copy(from.join(n), to.join(n)).unwrap();
        }
    }
}

#[test]
fn threat_01_tampered_package_is_refused_before_unpacking() {
    let Some(s) = Scene::new() else { return };
    let victim = s.f.feed.join("lib_1.0_all.ipk");
    let mut bytes = fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    fs::write(&victim, bytes).unwrap();
    let (ok, out, err) = s.bootstrap(&["app"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("lib_1.0_all.ipk") && err.contains("SHA-256"),
        "{err}"
    );
    assert!(!s.root.join("usr/lib/lib.so").exists());
    assert!(!s.root.join("usr/bin/app").exists());
    assert_eq!(status_of(&s.root, "lib"), "");
}

#[test]
fn threat_01_package_longer_than_indexed_size_is_cut_off() {
    let Some(s) = Scene::new() else { return };
    let victim = s.f.feed.join("lib_1.0_all.ipk");
    let mut bytes = fs::read(&victim).unwrap();
    bytes.extend(std::iter::repeat_n(0u8, 1 << 20));
    fs::write(&victim, bytes).unwrap();
    let (ok, _, err) = s.bootstrap(&["app"]);
    assert!(!ok);
    assert!(err.contains("lib_1.0_all.ipk"), "{err}");
    assert_eq!(status_of(&s.root, "lib"), "");
}

/// `prokit install` unpacks packages as they arrive but commits nothing before every one is
/// downloaded and verified (docs/crash-safety.md §5.1, "The gate"): a tampered package later
/// in the install leaves the root exactly as it was, the packages staged before it included.
#[test]
fn threat_01_a_tampered_package_later_in_an_install_leaves_the_root_untouched() {
    let Some(s) = Scene::new() else { return };
    let (ok, _, err) = s.bootstrap(&["lib"]);
    assert!(ok, "{err}");
    s.f.add(
        "first",
        "1.0",
        "",
        &[("usr/share/first/data", "first")],
        None,
    );
    s.f.add(
        "second",
        "1.0",
        "Depends: first\n",
        &[("usr/bin/second", "second")],
        None,
    );
    s.f.index();
    let (ok, _, err) = s.update();
    assert!(ok, "{err}");
    let victim = s.f.feed.join("second_1.0_all.ipk");
    let mut bytes = fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    fs::write(&victim, bytes).unwrap();
    // The download cache and the audit trail record the attempt; nothing else may change.
    let state = |root: &Path| {
        let mut snap = snapshot(root);
        let keep = |k: &String| !k.contains("var/cache/prokit") && !k.contains("var/log/prokit");
        snap.retain(|k, _| keep(k));
        snap
    };
    let before = state(&s.root);
    let (ok, out, err) = prokit(Some(s.root()), &["install", "second"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("second_1.0_all.ipk") && err.contains("SHA-256"),
        "{err}"
    );
    assert_eq!(state(&s.root), before);
    assert_eq!(status_of(&s.root, "first"), "");
    assert_eq!(status_of(&s.root, "second"), "");
}

#[test]
fn threat_02_tampered_packages_index_is_refused() {
    let Some(s) = Scene::new() else { return };
    assert!(s.bootstrap(&["lib"]).0);
    let good = s.stored_index();
    // A new version slipped into the index without the key.
    let text = fs::read_to_string(s.f.feed.join("Packages")).unwrap();
    let evil = text.replace("Version: 1.0", "Version: 9.9");
    fs::write(s.f.feed.join("Packages"), &evil).unwrap();
    fs::write(
        s.f.feed.join("Packages.gz"),
        feeds::index::gzip(evil.as_bytes()),
    )
    .unwrap();
    let (ok, _, err) = s.update();
    assert!(!ok);
    assert!(err.contains("main") && err.contains("Packages"), "{err}");
    assert_eq!(s.stored_index(), good);
    assert!(!s.list().contains("9.9"));
}

#[test]
fn threat_03_stripped_signature_is_refused() {
    let Some(s) = Scene::new() else { return };
    fs::remove_file(s.f.feed.join("Packages.sig")).unwrap();
    let (ok, _, err) = s.bootstrap(&["lib"]);
    assert!(!ok);
    assert!(err.contains("Packages.sig"), "{err}");
    assert!(!s.root.join("usr/lib/lib.so").exists());
}

#[test]
fn threat_03_a_feed_seen_with_a_release_never_goes_back_to_none() {
    let Some(s) = Scene::new() else { return };
    assert!(s.bootstrap(&["lib"]).0);
    let good = s.stored_index();
    fs::remove_file(s.f.feed.join("Release")).unwrap();
    fs::remove_file(s.f.feed.join("Release.sig")).unwrap();
    let (ok, _, err) = s.update();
    assert!(!ok);
    assert!(err.contains("Release"), "{err}");
    assert_eq!(s.stored_index(), good);
}

#[test]
fn threat_04_feed_signed_by_an_unknown_key_is_refused_with_its_fingerprint() {
    let Some(s) = Scene::new() else { return };
    let other = Fixture::new();
    // Re-sign with a key the root does not trust.
    let (ok, _, err) = run(Command::new(bin("archman"))
        .args(["index", "-q", "--refresh", "--key"])
        .arg(&other.sec)
        .arg(&s.f.feed));
    assert!(ok, "{err}");
    let (ok, _, err) = s.bootstrap(&["lib"]);
    assert!(!ok);
    assert!(err.contains(&other.fingerprint()), "{err}");
    assert!(!s.root.join("usr/lib/lib.so").exists());
}

#[test]
fn threat_05_replayed_older_release_is_refused() {
    let Some(s) = Scene::new() else { return };
    let t = now();
    s.index_at(t - 1800, &["--valid-for", "7d"]);
    let old = s.f.tmp.path().join("old");
    copy_feed_files(&s.f.feed, &old);
    s.f.add("lib", "1.1", "", &[("usr/lib/lib.so", "lib 1.1")], None);
    s.index_at(t - 60, &["--valid-for", "7d"]);
    assert!(s.bootstrap(&["lib"]).0);
    let good = s.stored_index();
    // The mirror serves yesterday's signed feed again (the one without lib 1.1's fix).
    copy_feed_files(&old, &s.f.feed);
    let (ok, _, err) = s.update();
    assert!(!ok);
    assert!(err.contains("Date") || err.contains("older"), "{err}");
    assert_eq!(s.stored_index(), good);
}

#[test]
fn threat_06_frozen_feed_past_valid_until_is_refused_as_expired() {
    let Some(s) = Scene::new() else { return };
    s.index_at(now() - 10 * 86400, &["--valid-for", "7d"]);
    let (ok, _, err) = s.bootstrap(&["lib"]);
    assert!(!ok);
    assert!(err.contains("expired"), "{err}");
    assert!(!s.root.join("usr/lib/lib.so").exists());
}

#[test]
fn threat_07_release_dated_in_the_future_is_refused() {
    let Some(s) = Scene::new() else { return };
    s.index_at(now() + 86400, &["--valid-for", "7d"]);
    let (ok, _, err) = s.bootstrap(&["lib"]);
    assert!(!ok);
    assert!(err.contains("future"), "{err}");
}

#[test]
fn threat_08_endless_index_download_is_cut_off() {
    let Some(s) = Scene::new() else { return };
    // A 4 GiB "Packages.gz" (sparse): the client must stop at its bound, not fill the disk.
    let f = fs::File::create(s.f.feed.join("Packages.gz")).unwrap();
    f.set_len(4 << 30).unwrap();
    let started = std::time::Instant::now();
    let (ok, _, err) = s.bootstrap(&["lib"]);
    assert!(!ok);
    assert!(err.contains("Packages.gz"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!s.root.join("var/opkg-lists/main").exists());
}

#[test]
fn threat_09_decompression_bomb_index_is_refused() {
    let Some(s) = Scene::new() else { return };
    // 512 MiB of newlines in about 500 KiB of gzip.
    let (ok, _, err) = run(Command::new("sh").arg("-c").arg(format!(
        "head -c 536870912 /dev/zero | tr '\\0' '\\n' | gzip -9 > '{}'",
        s.f.feed.join("Packages.gz").display()
    )));
    assert!(ok, "{err}");
    let (ok, _, err) = s.bootstrap(&["lib"]);
    assert!(!ok);
    assert!(err.contains("Packages.gz"), "{err}");
    assert!(err.contains("decompression bomb"), "{err}");
    assert!(!s.root.join("var/opkg-lists/main").exists());
}

/// A minimal ustar writer for archives the builders refuse to make.
fn raw_tar(entries: &[(&str, u8, &[u8], &str, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link, mode) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |v: u64, w: usize| format!("{v:0w$o}\0", w = w - 1);
        h[100..108].copy_from_slice(octal(*mode as u64, 8).as_bytes());
        h[108..116].copy_from_slice(octal(0, 8).as_bytes());
        h[116..124].copy_from_slice(octal(0, 8).as_bytes());
        h[124..136].copy_from_slice(octal(data.len() as u64, 12).as_bytes());
        h[136..148].copy_from_slice(octal(1_700_000_000, 12).as_bytes());
        h[156] = *kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// An OpenWrt-style .ipk (gzipped tar) whose data tar holds `entries` verbatim.
fn evil_ipk(name: &str, entries: &[(&str, u8, &[u8], &str, u32)]) -> Vec<u8> {
    let control = format!(
        "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: x <x@example.org>\nDescription: evil\n"
    );
    let control_tgz = feeds::index::gzip(&raw_tar(&[(
        "./control",
        b'0',
        control.as_bytes(),
        "",
        0o644,
    )]));
    let data_tgz = feeds::index::gzip(&raw_tar(entries));
    feeds::index::gzip(&raw_tar(&[
        ("./debian-binary", b'0', b"2.0\n", "", 0o644),
        ("./data.tar.gz", b'0', &data_tgz, "", 0o644),
        ("./control.tar.gz", b'0', &control_tgz, "", 0o644),
    ]))
}

fn refuses_evil_package(entries: &[(&str, u8, &[u8], &str, u32)], outside: &Path) -> String {
    let Some(s) = Scene::new() else {
        return String::new();
    };
    s.f.write("evil_1.0_all.ipk", &evil_ipk("evil", entries));
    s.f.index();
    let (ok, out, err) = s.bootstrap(&["evil"]);
    assert!(!ok, "{out}");
    assert!(err.contains("evil"), "{err}");
    assert!(!outside.exists(), "{} was written", outside.display());
    assert_eq!(status_of(&s.root, "evil"), "");
    err
}

#[test]
fn threat_10_path_traversal_with_dotdot_writes_nothing_outside_the_root() {
    let target = std::env::temp_dir().join(format!("prokit-escape-{}", std::process::id()));
    let name = format!("./../../../../../../../..{}", target.display());
    refuses_evil_package(&[(&name, b'0', b"pwned", "", 0o644)], &target);
}

#[test]
fn threat_10_absolute_path_writes_nothing_outside_the_root() {
    let target = std::env::temp_dir().join(format!("prokit-abs-{}", std::process::id()));
    let name = target.display().to_string();
    refuses_evil_package(&[(&name, b'0', b"pwned", "", 0o644)], &target);
}

#[test]
fn threat_10_write_through_a_symlink_in_the_same_package_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("pwned");
    let dir = outside.path().to_str().unwrap().to_string();
    refuses_evil_package(
        &[
            ("./escape", b'2', b"", &dir, 0o777),
            ("./escape/pwned", b'0', b"pwned", "", 0o644),
        ],
        &target,
    );
}

#[test]
fn threat_10_write_through_a_symlink_already_in_the_root_is_refused() {
    let Some(s) = Scene::new() else { return };
    let outside = tempfile::tempdir().unwrap();
    assert!(s.bootstrap(&["lib"]).0);
    // Something (another tool, an earlier package) left a symlink pointing out of the root.
    std::os::unix::fs::symlink(outside.path(), s.root.join("usr/share")).unwrap();
    s.f.add("doc", "1.0", "", &[("usr/share/doc/readme", "pwned")], None);
    s.f.index();
    assert!(s.update().0);
    let (ok, _, err) = prokit(Some(s.root()), &["install", "doc"]);
    assert!(!ok);
    assert!(err.contains("usr/share"), "{err}");
    assert!(!outside.path().join("doc/readme").exists());
    assert_eq!(status_of(&s.root, "doc"), "");
}

#[test]
fn threat_11_filename_leaving_the_feed_is_refused() {
    let Some(s) = Scene::new() else { return };
    // A validly signed index whose Filename points outside the feed (a maintainer mistake or
    // a compromised build): the client must not follow it.
    for n in ["Release", "Release.sig"] {
        fs::remove_file(s.f.feed.join(n)).unwrap();
    }
    let text = fs::read_to_string(s.f.feed.join("Packages")).unwrap();
    let evil = text.replace(
        "Filename: lib_1.0_all.ipk",
        "Filename: ../../etc/lib_1.0_all.ipk",
    );
    assert_ne!(evil, text);
    fs::write(s.f.feed.join("Packages"), &evil).unwrap();
    fs::write(
        s.f.feed.join("Packages.gz"),
        feeds::index::gzip(evil.as_bytes()),
    )
    .unwrap();
    let (ok, _, err) = run(Command::new(bin("archman"))
        .args(["sign", "-s"])
        .arg(&s.f.sec)
        .arg("-m")
        .arg(s.f.feed.join("Packages")));
    assert!(ok, "{err}");
    let (ok, _, err) = s.bootstrap(&["lib"]);
    assert!(!ok);
    assert!(err.contains("../../etc/lib_1.0_all.ipk"), "{err}");
    assert!(!s.root.join("usr/lib/lib.so").exists());
}

#[test]
fn threat_12_unsatisfiable_dependencies_fail_before_download_with_the_chain() {
    let Some(s) = Scene::new() else { return };
    s.f.add(
        "tool",
        "1.0",
        "Depends: lib (>= 2.0)\n",
        &[("usr/bin/tool", "t")],
        None,
    );
    s.f.index();
    let (ok, _, err) = s.bootstrap(&["tool"]);
    assert!(!ok);
    assert!(
        err.contains("tool") && err.contains("lib (>= 2.0)") && err.contains("1.0"),
        "{err}"
    );
    let cache = s.root.join("var/cache/prokit");
    assert!(!cache.exists() || fs::read_dir(&cache).unwrap().next().is_none());
}

#[test]
fn threat_14_html_page_served_as_signature_keeps_the_last_good_index() {
    let Some(s) = Scene::new() else { return };
    assert!(s.bootstrap(&["lib"]).0);
    let good = s.stored_index();
    s.f.add("lib", "2.0", "", &[("usr/lib/lib.so", "lib 2.0")], None);
    s.index_at(now(), &["--valid-for", "7d"]);
    fs::write(
        s.f.feed.join("Packages.sig"),
        "<!DOCTYPE html>\n<html><body>Captive portal: please log in</body></html>\n",
    )
    .unwrap();
    let (ok, _, err) = s.update();
    assert!(!ok);
    assert!(
        err.contains("Packages.sig") && err.contains("signature"),
        "{err}"
    );
    assert_eq!(s.stored_index(), good);
    // The last good index is still usable.
    assert!(s.list().contains("lib - 1.0"));
}

#[test]
fn threat_15_setuid_and_device_files_are_not_created_unless_allowed() {
    let Some(s) = Scene::new() else { return };
    s.f.write(
        "suid_1.0_all.ipk",
        &evil_ipk(
            "suid",
            &[("./usr/bin/su", b'0', b"#!/bin/sh\n", "", 0o4755)],
        ),
    );
    s.f.write(
        "dev_1.0_all.ipk",
        &evil_ipk("dev", &[("./dev/sda", b'3', b"", "", 0o600)]),
    );
    s.f.index();
    assert!(s.bootstrap(&["lib"]).0);
    let (ok, _, err) = prokit(Some(s.root()), &["install", "suid"]);
    assert!(!ok);
    assert!(
        err.contains("usr/bin/su") && err.contains("setuid"),
        "{err}"
    );
    assert!(!s.root.join("usr/bin/su").exists());
    let (ok, _, err) = prokit(Some(s.root()), &["install", "dev"]);
    assert!(!ok);
    assert!(err.contains("dev/sda"), "{err}");
    assert!(!s.root.join("dev/sda").exists());
    // Explicitly allowed, the setuid file is installed.
    let (ok, _, err) = prokit(Some(s.root()), &["install", "--allow-special", "suid"]);
    assert!(ok, "{err}");
    assert!(s.root.join("usr/bin/su").is_file());
}

#[test]
fn threat_16_kill_9_during_install_leaves_old_or_new_state() {
    let Some(s) = Scene::new() else { return };
    for i in 0..40 {
        s.f.add(
            &format!("p{i:02}"),
            "1.0",
            "",
            &[(&format!("usr/share/p{i:02}/data"), &"x".repeat(20_000))],
            None,
        );
    }
    s.f.index();
    assert!(s.bootstrap(&["lib"]).0);
    let names: Vec<String> = (0..40).map(|i| format!("p{i:02}")).collect();
    for delay_ms in [5u64, 20, 40, 80, 120, 200] {
        let mut child = Command::new(bin("prokit"))
            .arg("--root")
            .arg(&s.root)
            .arg("install")
            .args(&names)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever state the kill left: the status file parses, and every package it lists
        // is complete on disk.
        let (ok, out, err) = prokit(Some(s.root()), &["verify"]);
        assert!(ok, "after a kill at {delay_ms} ms: {out}{err}");
        // A rerun finishes the job.
        let install: Vec<&str> = ["install"]
            .into_iter()
            .chain(names.iter().map(String::as_str))
            .collect();
        let (ok, out, err) = prokit(Some(s.root()), &install);
        assert!(ok, "rerun after a kill at {delay_ms} ms: {out}{err}");
        let (ok, out, err) = prokit(Some(s.root()), &["verify"]);
        assert!(ok, "{out}{err}");
        let remove: Vec<&str> = ["remove"]
            .into_iter()
            .chain(names.iter().map(String::as_str))
            .collect();
        let (ok, _, err) = prokit(Some(s.root()), &remove);
        assert!(ok, "{err}");
    }
}
