//! Stock apt verifies archman's feeds natively (issue 13, docs/trust-model.md §11): the feed key
//! that signs `Packages.sig`/`Release.sig` for opkg also signs `InRelease` and `Release.gpg`
//! as an OpenPGP key derived from the same secret; `archman key export --openpgp` writes the
//! key apt's `signed-by=` names. Real apt (a private state directory, no `trusted=yes`
//! anywhere) over HTTP on 127.0.0.1: `apt-get update` and a verified download succeed, and each
//! attack fails with apt's own message. gpgv checks both signature files directly.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::archman;
use e2e::{HttpServer, have_tool, run};

/// A `.deb` of `arch` built by the real dpkg-deb into `dest`, from a source tree made under
/// `work`.
fn build_deb(dest: &Path, work: &Path, name: &str, version: &str, arch: &str) -> PathBuf {
    let src = work.join(format!("src-{name}-{version}-{arch}"));
    fs::create_dir_all(src.join("DEBIAN")).unwrap();
    fs::create_dir_all(src.join("usr/share").join(name)).unwrap();
    fs::write(
        src.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: T <t@example.org>\nDescription: {name} for apt\n"
        ),
    )
    .unwrap();
    fs::write(src.join("usr/share").join(name).join("data"), name).unwrap();
    fs::create_dir_all(dest).unwrap();
    let file = dest.join(format!("{name}_{version}_{arch}.deb"));
    let (ok, _, err) = run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-b"])
        .arg(&src)
        .arg(&file));
    assert!(ok, "dpkg-deb: {err}");
    file
}

/// An `Architecture: all` `.deb` in the flat feed `out`.
fn deb(out: &Path, name: &str, version: &str) -> PathBuf {
    build_deb(out, out.parent().unwrap(), name, version, "all")
}

/// apt with every directory of its own under `dir`: nothing of the host's apt is read or
/// written, and no privileges are dropped (the tests may run as root).
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(dir: &Path) -> Apt {
        for d in [
            "state/lists/partial",
            "cache/archives/partial",
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
            "etc/trusted.gpg.d",
            "log",
        ] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(dir.join("status"), "").unwrap();
        let d = dir.display();
        fs::write(
            dir.join("apt.conf"),
            format!(
                "Dir \"/\";\nDir::State \"{d}/state/\";\nDir::State::status \"{d}/status\";\n\
                 Dir::Cache \"{d}/cache/\";\nDir::Etc \"{d}/etc/\";\n\
                 Dir::Etc::SourceList \"{d}/etc/sources.list\";\n\
                 Dir::Etc::SourceParts \"{d}/etc/sources.list.d/\";\n\
                 Dir::Etc::Parts \"{d}/etc/apt.conf.d/\";\n\
                 Dir::Etc::Preferences \"{d}/etc/preferences\";\n\
                 Dir::Etc::PreferencesParts \"{d}/etc/preferences.d/\";\n\
                 Dir::Etc::Trusted \"{d}/etc/trusted.gpg\";\n\
                 Dir::Etc::TrustedParts \"{d}/etc/trusted.gpg.d/\";\n\
                 Dir::Log \"{d}/log/\";\nAPT::Sandbox::User \"root\";\n\
                 Debug::NoLocking \"true\";\nAcquire::Languages \"none\";\n\
                 APT::Architecture \"amd64\";\n"
            ),
        )
        .unwrap();
        Apt {
            dir: dir.to_path_buf(),
        }
    }

    /// Points apt at `line` (one sources.list line) and forgets what it fetched before.
    fn source(&self, line: &str) {
        fs::write(self.dir.join("etc/sources.list"), format!("{line}\n")).unwrap();
        let _ = fs::remove_dir_all(self.dir.join("state/lists"));
        fs::create_dir_all(self.dir.join("state/lists/partial")).unwrap();
    }

    /// `apt-get ARGS`: (success, stdout + stderr).
    fn get(&self, args: &[&str]) -> (bool, String) {
        let (ok, out, err) = run(Command::new("apt-get")
            .args(args)
            .env("APT_CONFIG", self.dir.join("apt.conf"))
            .env("LC_ALL", "C"));
        (ok, format!("{out}{err}"))
    }
}

/// A flat feed of two `.deb`s indexed and signed by archman, its key exported for apt.
struct Feed {
    tmp: tempfile::TempDir,
    feed: PathBuf,
    sec: PathBuf,
    keyring: PathBuf,
}

fn feed() -> Feed {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    fs::create_dir(&feed).unwrap();
    deb(&feed, "hello-apt", "1.0");
    deb(&feed, "other-apt", "2.0");
    let (sec, public) = (tmp.path().join("feed.sec"), tmp.path().join("feed.pub"));
    let (ok, _, err) = archman(&[
        "keygen",
        "-s",
        sec.to_str().unwrap(),
        "-p",
        public.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = archman(&[
        "index",
        "-q",
        "--valid-for",
        "7d",
        "--key",
        sec.to_str().unwrap(),
        feed.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let keyring = tmp.path().join("feed-archive-keyring.gpg");
    let (ok, _, err) = archman(&[
        "key",
        "export",
        "--openpgp",
        "-s",
        sec.to_str().unwrap(),
        "-o",
        keyring.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    Feed {
        tmp,
        feed,
        sec,
        keyring,
    }
}

fn have_apt() -> bool {
    have_tool("apt-get") && have_tool("dpkg-deb") && have_tool("gpgv") && have_tool("gpg")
}

#[test]
fn gpgv_verifies_inrelease_and_release_gpg_with_the_exported_key() {
    if !have_apt() {
        return;
    }
    let f = feed();
    // The certificate's fingerprint, as gpg computes it: the one gpgv and sqv report.
    let listing = run(Command::new("gpg")
        .args(["--homedir"])
        .arg(f.tmp.path())
        .args(["--with-colons", "--show-keys"])
        .arg(&f.keyring));
    let fingerprint = listing
        .1
        .lines()
        .find_map(|l| l.strip_prefix("fpr:::::::::"))
        .map(|l| l.trim_end_matches(':').to_string())
        .unwrap_or_else(|| panic!("gpg --show-keys: {}", listing.2));
    for file in ["InRelease", "Release.gpg"] {
        assert!(f.feed.join(file).is_file(), "{file} not written");
    }
    let gpgv = |args: &[&Path]| {
        let mut cmd = Command::new("gpgv");
        cmd.arg("--keyring").arg(&f.keyring).args(args);
        run(&mut cmd)
    };
    let (ok, _, err) = gpgv(&[&f.feed.join("InRelease")]);
    assert!(ok && err.contains("Good signature"), "{err}");
    assert!(err.contains(&fingerprint), "{err}");
    let (ok, _, err) = gpgv(&[&f.feed.join("Release.gpg"), &f.feed.join("Release")]);
    assert!(ok && err.contains("Good signature"), "{err}");
    // InRelease carries exactly the Release that Release.sig and Release.gpg sign.
    let inrelease = fs::read_to_string(f.feed.join("InRelease")).unwrap();
    let release = fs::read_to_string(f.feed.join("Release")).unwrap();
    let body = inrelease
        .split_once("\n\n")
        .unwrap()
        .1
        .split("\n-----BEGIN PGP SIGNATURE-----")
        .next()
        .unwrap();
    assert_eq!(format!("{body}\n"), release);
    // sqv (Sequoia's verifier, which newer apt runs instead of gpgv): Debian 12's sqv 1.1.0
    // reads detached signatures only, so InRelease is checked as apt splits it (the signed
    // text without its last line break, and the signature block).
    if have_tool("sqv") {
        let sig_block = &inrelease[inrelease.find("-----BEGIN PGP SIGNATURE-----").unwrap()..];
        let (text, sig) = (f.tmp.path().join("ir.text"), f.tmp.path().join("ir.sig"));
        fs::write(&text, body).unwrap();
        fs::write(&sig, sig_block).unwrap();
        for (sig, data) in [
            (&sig, &text),
            (&f.feed.join("Release.gpg"), &f.feed.join("Release")),
        ] {
            let (ok, out, err) = run(Command::new("sqv")
                .arg("--keyring")
                .arg(&f.keyring)
                .arg(sig)
                .arg(data));
            assert!(ok, "sqv {}: {err}", sig.display());
            assert!(out.contains(&fingerprint), "sqv names the key: {out}");
        }
        fs::write(&text, body.replace("Origin:", "Origin: x")).unwrap();
        let (ok, _, err) = run(Command::new("sqv")
            .arg("--keyring")
            .arg(&f.keyring)
            .arg(&sig)
            .arg(&text));
        assert!(!ok && err.contains("manipulated"), "{err}");
    }
    // A Release edited after signing.
    let edited = f.tmp.path().join("Release.edited");
    fs::write(&edited, release.replace("Origin:", "Origin: x")).unwrap();
    let (ok, _, err) = gpgv(&[&f.feed.join("Release.gpg"), &edited]);
    assert!(!ok && err.contains("BAD signature"), "{err}");
}

#[test]
fn apt_updates_and_downloads_from_the_feed_with_signed_by_and_refuses_each_attack() {
    if !have_apt() {
        return;
    }
    let f = feed();
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let apt = Apt::new(&f.tmp.path().join("apt"));
    let line = format!(
        "deb [signed-by={}] {} ./",
        f.keyring.display(),
        server.url("")
    );
    apt.source(&line);
    let (ok, out) = apt.get(&["update"]);
    assert!(ok, "{out}");
    assert!(!out.contains("W:") && !out.contains("E:"), "{out}");
    assert!(out.contains("InRelease"), "{out}");
    let (ok, out) = apt.get(&["install", "-y", "--download-only", "hello-apt"]);
    assert!(ok, "{out}");
    assert!(
        apt.dir
            .join("cache/archives/hello-apt_1.0_all.deb")
            .is_file(),
        "{out}"
    );

    // The deb822 `.sources` form says the same.
    fs::write(apt.dir.join("etc/sources.list"), "").unwrap();
    fs::write(
        apt.dir.join("etc/sources.list.d/feed.sources"),
        format!(
            "Types: deb\nURIs: {}\nSuites: ./\nSigned-By: {}\n",
            server.url(""),
            f.keyring.display()
        ),
    )
    .unwrap();
    let _ = fs::remove_dir_all(apt.dir.join("state/lists"));
    fs::create_dir_all(apt.dir.join("state/lists/partial")).unwrap();
    let (ok, out) = apt.get(&["update"]);
    assert!(ok && !out.contains("W:"), "{out}");
    fs::remove_file(apt.dir.join("etc/sources.list.d/feed.sources")).unwrap();

    // A key that is not the feed's in signed-by.
    let (other_sec, other_pub) = (f.tmp.path().join("o.sec"), f.tmp.path().join("o.pub"));
    let (ok, _, err) = archman(&[
        "keygen",
        "-s",
        other_sec.to_str().unwrap(),
        "-p",
        other_pub.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let other = f.tmp.path().join("other.gpg");
    let (ok, _, err) = archman(&[
        "key",
        "export",
        "--openpgp",
        "-s",
        other_sec.to_str().unwrap(),
        "-o",
        other.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    apt.source(&format!(
        "deb [signed-by={}] {} ./",
        other.display(),
        server.url("")
    ));
    let (_, out) = apt.get(&["update"]);
    assert!(out.contains("NO_PUBKEY"), "{out}");
    assert!(out.contains("is not signed"), "{out}");

    // A Release edited after signing: InRelease's signature no longer matches.
    let inrelease = f.feed.join("InRelease");
    let good = fs::read_to_string(&inrelease).unwrap();
    fs::write(&inrelease, good.replacen("Origin: ", "Origin: evil-", 1)).unwrap();
    apt.source(&line);
    let (_, out) = apt.get(&["update"]);
    assert!(
        out.contains("BADSIG") || out.contains("invalid signature"),
        "{out}"
    );
    fs::write(&inrelease, &good).unwrap();

    // A Packages changed after publishing: its hash no longer matches the signed Release.
    let gz = f.feed.join("Packages.gz");
    let saved = fs::read(&gz).unwrap();
    let changed = {
        let text = fs::read_to_string(f.feed.join("Packages")).unwrap();
        feeds::index::gzip(text.replace("for apt", "for evil").as_bytes())
    };
    fs::write(&gz, &changed).unwrap();
    fs::write(
        f.feed.join("Packages"),
        fs::read_to_string(f.feed.join("Packages"))
            .unwrap()
            .replace("for apt", "for evil"),
    )
    .unwrap();
    apt.source(&line);
    let (ok, out) = apt.get(&["update"]);
    assert!(!ok || out.contains("E:"), "{out}");
    assert!(
        out.contains("Hash Sum mismatch") || out.contains("File has unexpected size"),
        "{out}"
    );
    fs::write(&gz, saved).unwrap();

    // An expired Valid-Until: a feed dated two days ago, valid for one.
    let old = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 2 * 86400)
        .to_string();
    let expired = f.tmp.path().join("expired");
    fs::create_dir(&expired).unwrap();
    deb(&expired, "hello-apt", "1.0");
    let (ok, _, err) = run(Command::new(e2e::bin("archman"))
        .args(["index", "-q", "--valid-for", "1d", "--key"])
        .arg(&f.sec)
        .arg(&expired)
        .env("SOURCE_DATE_EPOCH", &old));
    assert!(ok, "{err}");
    let Some(server2) = HttpServer::serve(&expired) else {
        return;
    };
    apt.source(&format!(
        "deb [signed-by={}] {} ./",
        f.keyring.display(),
        server2.url("")
    ));
    let (_, out) = apt.get(&["update"]);
    assert!(out.contains("is expired (invalid since"), "{out}");
    drop(server);
}

/// A `.deb` of `arch` in `archive/pool/main`.
fn pool_deb(archive: &Path, name: &str, version: &str, arch: &str) -> PathBuf {
    build_deb(
        &archive.join("pool/main"),
        archive.parent().unwrap(),
        name,
        version,
        arch,
    )
}

/// `archman index --layout debian --suite stable --codename demo` at `epoch`.
fn index_archive(archive: &Path, sec: &Path, epoch: u64) {
    let (ok, _, err) = run(Command::new(e2e::bin("archman"))
        .args([
            "index",
            "-q",
            "--layout",
            "debian",
            "--suite",
            "stable",
            "--codename",
            "demo",
            "--valid-for",
            "7d",
            "--key",
        ])
        .arg(sec)
        .arg(archive)
        .env("SOURCE_DATE_EPOCH", epoch.to_string()));
    assert!(ok, "{err}");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn apt_reads_the_debian_layout_and_by_hash_carries_a_client_across_a_publish() {
    if !have_apt() {
        return;
    }
    let f = feed();
    let archive = f.tmp.path().join("archive");
    pool_deb(&archive, "hello-apt", "1.0", "all");
    pool_deb(&archive, "tool-apt", "1.0", "amd64");
    let t0 = now() - 600;
    index_archive(&archive, &f.sec, t0);
    let Some(server) = HttpServer::serve(&archive) else {
        return;
    };
    let apt = Apt::new(&f.tmp.path().join("apt-debian"));
    // By suite and by codename.
    for dist in ["stable", "demo"] {
        apt.source(&format!(
            "deb [signed-by={}] {} {dist} main",
            f.keyring.display(),
            server.url("")
        ));
        let (ok, out) = apt.get(&["update"]);
        assert!(ok, "{out}");
        assert!(!out.contains("W:") && !out.contains("E:"), "{out}");
        assert!(out.contains(&format!("{dist} InRelease")), "{out}");
    }
    let (ok, out) = apt.get(&["install", "-y", "--download-only", "hello-apt", "tool-apt"]);
    assert!(ok, "{out}");
    for file in ["hello-apt_1.0_all.deb", "tool-apt_1.0_amd64.deb"] {
        assert!(apt.dir.join("cache/archives").join(file).is_file(), "{out}");
    }

    // A client that read InRelease just before a publish and fetches the indexes just after
    // it: served the old InRelease with the new tree, it finds every index it names by hash.
    let suite = archive.join("dists/stable");
    let old: Vec<(&str, Vec<u8>)> = ["InRelease", "Release", "Release.gpg"]
        .into_iter()
        .map(|n| (n, fs::read(suite.join(n)).unwrap()))
        .collect();
    pool_deb(&archive, "newer-apt", "1.0", "all");
    index_archive(&archive, &f.sec, t0 + 60);
    let new_inrelease = fs::read(suite.join("InRelease")).unwrap();
    assert_ne!(new_inrelease, old[0].1, "the publish changed nothing");
    for (n, d) in &old {
        fs::write(suite.join(n), d).unwrap();
    }
    apt.source(&format!(
        "deb [signed-by={}] {} stable main",
        f.keyring.display(),
        server.url("")
    ));
    let (ok, out) = apt.get(&["update"]);
    assert!(ok && !out.contains("E:") && !out.contains("W:"), "{out}");
    let (ok, out) = apt.get(&["install", "-y", "--download-only", "hello-apt"]);
    assert!(ok, "{out}");
    // What it read is the old generation, complete: the new package is not in it.
    let (ok, out) = apt.get(&["install", "-y", "--download-only", "newer-apt"]);
    assert!(
        !ok && out.contains("Unable to locate package newer-apt"),
        "{out}"
    );

    // Without the by-hash copies the same client fails: they are what carried it across.
    for arch in ["all", "amd64"] {
        fs::remove_dir_all(suite.join(format!("main/binary-{arch}/by-hash"))).unwrap();
    }
    apt.source(&format!(
        "deb [signed-by={}] {} stable main",
        f.keyring.display(),
        server.url("")
    ));
    // (apt falls back from the missing by-hash name to the plain one, which is the new
    // generation: "File has unexpected size … Mirror sync in progress?")
    let (_, out) = apt.get(&["update"]);
    assert!(
        out.contains("Mirror sync in progress?") || out.contains("Hash Sum mismatch"),
        "{out}"
    );
    drop(server);
}

/// `archman ARGS`, asserting success; its stdout.
fn archman_ok(args: &[&str]) -> String {
    let (ok, out, err) = archman(args);
    assert!(ok, "archman {args:?}: {err}");
    out
}

/// A key pair made by `archman keygen` in `dir`: (secret path, public path, fingerprint).
fn key_pair(dir: &Path, name: &str) -> (String, String, String) {
    let (sec, public) = (
        dir.join(format!("{name}.sec")),
        dir.join(format!("{name}.pub")),
    );
    archman_ok(&[
        "keygen",
        "-s",
        sec.to_str().unwrap(),
        "-p",
        public.to_str().unwrap(),
    ]);
    let fp = feeds::usign::PublicKey::read_path(&public)
        .unwrap()
        .fingerprint()
        .to_string();
    (
        sec.to_str().unwrap().into(),
        public.to_str().unwrap().into(),
        fp,
    )
}

/// Installs `deb` into the dpkg root `root` with the real dpkg.
fn dpkg_install(root: &Path, deb: &Path) {
    for d in ["var/lib/dpkg/updates", "var/lib/dpkg/info", "var/log"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let status = root.join("var/lib/dpkg/status");
    if !status.exists() {
        fs::write(&status, "").unwrap();
    }
    let (ok, out, err) = run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-not-root", "--log=/dev/null", "-i"])
        .arg(deb));
    assert!(ok, "dpkg -i {}: {out}{err}", deb.display());
}

#[test]
fn the_archive_keyring_deb_is_what_apt_trusts_across_a_key_rotation() {
    if !have_apt() || !have_tool("dpkg") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (root_sec, _, _) = key_pair(d, "root");
    let (old_sec, old_pub, old_fp) = key_pair(d, "feed-old");
    let (new_sec, new_pub, _) = key_pair(d, "feed-new");
    let ring = d.join("ring");
    let ring = ring.to_str().unwrap();
    let out = d.join("out");
    let out_s = out.to_str().unwrap();
    archman_ok(&[
        "keyring",
        "init",
        "--name",
        "demo",
        "--root-key",
        &root_sec,
        "--feed-key",
        &old_pub,
        ring,
    ]);
    // No certificate yet: the .deb is refused, saying how to add one, and nothing is written.
    let (ok, _, err) = archman(&["keyring", "build", ring, out_s, "--deb"]);
    assert!(
        !ok && err.contains(&format!("feed key {old_fp} has no OpenPGP certificate")),
        "{err}"
    );
    assert!(!out.join("demo-keyring_1_all.ipk").exists());
    archman_ok(&["keyring", "add-openpgp", ring, "-s", &old_sec]);
    // A certificate of a key that is not a feed key of the ring is refused.
    let stranger = d.join("stranger.gpg");
    archman_ok(&[
        "key",
        "export",
        "--openpgp",
        "-s",
        &new_sec,
        "-o",
        stranger.to_str().unwrap(),
    ]);
    let (ok, _, err) = archman(&["keyring", "add-openpgp", ring, stranger.to_str().unwrap()]);
    assert!(
        !ok && err.contains("is no feed key of keyring demo"),
        "{err}"
    );
    archman_ok(&["keyring", "build", ring, out_s, "--deb"]);
    let deb1 = out.join("demo-archive-keyring_1_all.deb");
    let first = fs::read(&deb1).unwrap();
    // Reproducible: built again, the same bytes.
    archman_ok(&["keyring", "build", ring, out_s, "--deb"]);
    assert_eq!(fs::read(&deb1).unwrap(), first);
    let (ok, info, err) = run(Command::new("dpkg-deb").arg("-I").arg(&deb1));
    assert!(
        ok && info.contains("Package: demo-archive-keyring"),
        "{err}"
    );

    let system = d.join("system");
    dpkg_install(&system, &deb1);
    let keyring_file = system.join("usr/share/keyrings/demo-archive-keyring.gpg");
    assert!(keyring_file.is_file());

    // A feed signed by the old key: apt trusts it through the installed file alone.
    let feed = d.join("feed");
    fs::create_dir(&feed).unwrap();
    deb(&feed, "hello-apt", "1.0");
    let index = |feed: &Path, sec: &str, epoch: u64| {
        let (ok, _, err) = run(Command::new(e2e::bin("archman"))
            .args(["index", "-q", "--valid-for", "7d", "--key", sec])
            .arg(feed)
            .env("SOURCE_DATE_EPOCH", epoch.to_string()));
        assert!(ok, "{err}");
    };
    let t0 = now() - 3600;
    index(&feed, &old_sec, t0);
    let Some(server) = HttpServer::serve(&feed) else {
        return;
    };
    let apt = Apt::new(&d.join("apt"));
    let line = format!(
        "deb [signed-by={}] {} ./",
        keyring_file.display(),
        server.url("")
    );
    apt.source(&line);
    let (ok, out_text) = apt.get(&["update"]);
    assert!(
        ok && !out_text.contains("W:") && !out_text.contains("E:"),
        "{out_text}"
    );

    // Rotation: serial 2 adds the new feed key and retires the old one.
    archman_ok(&["keyring", "add-key", ring, "--role", "feed", &new_pub]);
    archman_ok(&["keyring", "retire", ring, &old_fp]);
    archman_ok(&["keyring", "sign", ring, "-s", &root_sec]);
    archman_ok(&["keyring", "add-openpgp", ring, stranger.to_str().unwrap()]);
    archman_ok(&["keyring", "build", ring, out_s, "--deb"]);
    let deb2 = out.join("demo-archive-keyring_2_all.deb");
    dpkg_install(&system, &deb2);
    // The upgrade replaced the file: only the new key is in it.
    let (_, listing, _) = run(Command::new("gpg")
        .arg("--homedir")
        .arg(d)
        .args(["--with-colons", "--show-keys"])
        .arg(&keyring_file));
    assert_eq!(
        listing.matches("\npub:").count() + usize::from(listing.starts_with("pub:")),
        1,
        "{listing}"
    );

    // The feed still signed by the retired key is refused...
    apt.source(&line);
    let (_, out_text) = apt.get(&["update"]);
    assert!(out_text.contains("NO_PUBKEY"), "{out_text}");
    // ...and once signed by the new key, accepted.
    index(&feed, &new_sec, t0 + 60);
    apt.source(&line);
    let (ok, out_text) = apt.get(&["update"]);
    assert!(
        ok && !out_text.contains("W:") && !out_text.contains("E:"),
        "{out_text}"
    );
    let (ok, out_text) = apt.get(&["install", "-y", "--download-only", "hello-apt"]);
    assert!(ok, "{out_text}");
    drop(server);
}

#[test]
fn openpgp_signatures_follow_the_feed_and_a_protected_key_makes_them() {
    if !have_apt() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(d.join("pass"), "correct horse\n").unwrap();
    let (sec, public) = (d.join("p.sec"), d.join("p.pub"));
    let (ok, _, err) = run(Command::new(e2e::bin("archman"))
        .args(["keygen", "--passphrase-file"])
        .arg(d.join("pass"))
        .arg("-s")
        .arg(&sec)
        .arg("-p")
        .arg(&public));
    assert!(ok, "{err}");
    let feed = d.join("feed");
    fs::create_dir(&feed).unwrap();
    // An opkg-only feed (an .ipk): no OpenPGP signatures unless asked for.
    fs::write(
        feed.join("opkg-only_1.0_all.ipk"),
        feeds::build::PackageBuilder::new(
            "Package: opkg-only\nVersion: 1.0\nArchitecture: all\nDescription: x\n",
        )
        .file("usr/share/x", 0o644, "x")
        .build()
        .unwrap(),
    )
    .unwrap();
    let mut epoch = now() - 3600;
    let mut index = |extra: &[&str]| {
        epoch += 10;
        let (ok, out, err) = run(Command::new(e2e::bin("archman"))
            .args(["index", "--json", "--passphrase-file"])
            .arg(d.join("pass"))
            .arg("--key")
            .arg(&sec)
            .args(extra)
            .arg(&feed)
            .env("SOURCE_DATE_EPOCH", epoch.to_string()));
        assert!(ok, "{err}");
        out
    };
    index(&[]);
    assert!(!feed.join("InRelease").exists() && !feed.join("Release.gpg").exists());
    let out = index(&["--openpgp"]);
    assert!(out.contains("\"openpgp_fingerprint\""), "{out}");
    assert!(feed.join("InRelease").exists());
    index(&["--no-openpgp"]);
    assert!(!feed.join("InRelease").exists() && !feed.join("Release.gpg").exists());
    // The feed gains its first .deb: the next run signs for apt by itself.
    deb(&feed, "hello-apt", "1.0");
    index(&[]);
    let cert = d.join("p.gpg");
    let (ok, _, err) = run(Command::new(e2e::bin("archman"))
        .args(["key", "export", "--openpgp", "--passphrase-file"])
        .arg(d.join("pass"))
        .arg("-s")
        .arg(&sec)
        .arg("-o")
        .arg(&cert));
    assert!(ok, "{err}");
    let (ok, _, err) = run(Command::new("gpgv")
        .arg("--keyring")
        .arg(&cert)
        .arg(feed.join("InRelease")));
    assert!(ok && err.contains("Good signature"), "{err}");
    // Nothing new: nothing rewritten, the signatures stay.
    let before = fs::read(feed.join("InRelease")).unwrap();
    let out = index(&[]);
    assert!(out.contains("\"written\":[]"), "{out}");
    assert_eq!(fs::read(feed.join("InRelease")).unwrap(), before);
    // An OpenPGP key cannot be exported from a public key: it needs its self-signature.
    let (ok, _, err) = run(Command::new(e2e::bin("archman"))
        .args(["key", "export", "--openpgp", "-p"])
        .arg(&public)
        .arg("-o")
        .arg(d.join("bare.gpg")));
    assert!(
        !ok && err.contains("must be self-signed by its secret key"),
        "{err}"
    );
    assert!(!d.join("bare.gpg").exists());
}
