//! Developer signatures across the real binaries (issue 11, docs/trust-model.md §9): a
//! keyring with scoped developer keys (`archman keyring add-key --role developer
//! --packages`), `archman sign-package` and `archman verify-package`, and signify-openbsd
//! verifying the detached signature with the developer's public key.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fixture, archman, prokit, status_of};
use e2e::{HttpServer, bin, have_tool, run};

fn keygen(dir: &Path, name: &str) -> (String, String) {
    let (sec, public) = (
        dir.join(format!("{name}.sec")),
        dir.join(format!("{name}.pub")),
    );
    let (ok, _, err) = archman(&[
        "keygen",
        "-s",
        sec.to_str().unwrap(),
        "-p",
        public.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    (sec.display().to_string(), public.display().to_string())
}

/// Builds `<name>_1.0_all.ipk` in `out` with `archman build`.
fn package(dir: &Path, out: &Path, name: &str) -> PathBuf {
    let src = dir.join(format!("src-{name}"));
    fs::create_dir_all(src.join("CONTROL")).unwrap();
    fs::create_dir_all(src.join("usr/share").join(name)).unwrap();
    fs::write(
        src.join("CONTROL/control"),
        format!("Package: {name}\nVersion: 1.0\nArchitecture: all\nDescription: {name}\n"),
    )
    .unwrap();
    fs::write(src.join("usr/share").join(name).join("data"), name).unwrap();
    let (ok, stdout, err) = run(Command::new(bin("archman"))
        .arg("build")
        .arg(&src)
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1795315200"));
    assert!(ok, "{err}");
    PathBuf::from(stdout.trim())
}

#[test]
fn scoped_developer_keys_sign_and_verify_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (root_sec, _) = keygen(t, "root");
    let (a_sec, a_pub) = keygen(t, "devA");
    let (b_sec, b_pub) = keygen(t, "devB");
    let ring = t.join("ring");
    let ring_s = ring.to_str().unwrap();
    let (ok, _, err) = archman(&[
        "keyring",
        "init",
        ring_s,
        "--name",
        "demo",
        "--root-key",
        &root_sec,
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        ring_s,
        "--role",
        "developer",
        "--packages",
        "luci-app-*",
        &a_pub,
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        ring_s,
        "--role",
        "developer",
        "--packages",
        "pbr",
        &b_pub,
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = archman(&["keyring", "show", ring_s]);
    assert!(ok, "{err}");
    assert!(
        out.contains("developer active, packages luci-app-*")
            && out.contains("developer active, packages pbr"),
        "{out}"
    );
    let manifest = fs::read_to_string(ring.join("keyring")).unwrap_or_default();
    let listed = fs::read_dir(&ring)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    // Bad scopes and scopes on other roles are refused, naming what is wrong.
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        ring_s,
        "--role",
        "developer",
        "--packages",
        "luci-[a]",
        &a_pub,
    ]);
    assert!(
        !ok && err.contains("--packages \"luci-[a]\": glob \"luci-[a]\" holds '['"),
        "{err}"
    );
    let (ok, _, err) = archman(&[
        "keyring",
        "add-key",
        ring_s,
        "--role",
        "feed",
        "--packages",
        "x",
        &a_pub,
    ]);
    assert!(
        !ok && err.contains("only a developer key has a package scope"),
        "{err}"
    );
    let after = fs::read_to_string(ring.join("keyring")).unwrap_or_default();
    assert_eq!(
        after, manifest,
        "a refused add-key changed the keyring ({listed:?})"
    );

    let feed = t.join("feed");
    let app = package(t, &feed, "luci-app-x");
    let pbr = package(t, &feed, "pbr");
    let other = package(t, &feed, "dnsmasq");
    let (ok, out, err) = archman(&["sign-package", "-s", &a_sec, app.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("luci-app-x 1.0 signed by developer key"),
        "{out}"
    );
    let (ok, _, err) = archman(&[
        "sign-package",
        "-s",
        &b_sec,
        pbr.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let sig = |p: &Path| PathBuf::from(format!("{}.sig", p.display()));
    assert!(sig(&app).exists() && sig(&pbr).exists() && sig(&other).exists());

    // The keyring decides: A may sign luci-app-*, B only pbr.
    let (ok, out, err) = archman(&[
        "verify-package",
        "--keyring",
        ring_s,
        app.to_str().unwrap(),
        pbr.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches("OK: ").count(), 2, "{out}");
    let (ok, out, err) = archman(&[
        "verify-package",
        "--keyring",
        ring_s,
        app.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}{err}");
    assert!(out.contains("OK: ") && out.contains("luci-app-x"), "{out}");
    assert!(
        err.contains("package dnsmasq: outside the scope of developer key")
            && err.contains("(it may sign pbr; keyring demo serial"),
        "{err}"
    );
    assert!(err.contains("1 of 2 package signatures failed"), "{err}");
    // A plain key says nothing of scopes.
    let (ok, _, err) = archman(&["verify-package", "-p", &b_pub, other.to_str().unwrap()]);
    assert!(ok, "{err}");

    // signify-openbsd verifies the same detached signature with the developer's key.
    if have_tool("signify-openbsd") {
        let (ok, _, err) = run(Command::new("signify-openbsd")
            .args(["-V", "-q", "-p", &a_pub, "-x"])
            .arg(sig(&app))
            .arg("-m")
            .arg(&app));
        assert!(ok, "signify -V: {err}");
    }

    // A signature over another file, a .sig that is not a signature, a tampered package.
    fs::copy(sig(&pbr), sig(&app)).unwrap();
    let (ok, _, err) = archman(&["verify-package", "-p", &b_pub, app.to_str().unwrap()]);
    assert!(!ok && err.contains("bad signature by key"), "{err}");
    // Through the keyring, B's signature on A's package is out of B's scope first.
    let (ok, _, err) = archman(&["verify-package", "--keyring", ring_s, app.to_str().unwrap()]);
    assert!(
        !ok && err.contains("package luci-app-x: outside the scope of developer key"),
        "{err}"
    );
    fs::write(sig(&app), "<html>captive portal</html>\n").unwrap();
    let (ok, _, err) = archman(&["verify-package", "-p", &a_pub, app.to_str().unwrap()]);
    assert!(
        !ok && err.contains(&format!("{}.sig", app.display())),
        "{err}"
    );
    let mut bytes = fs::read(&pbr).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    fs::write(&pbr, bytes).unwrap();
    let (ok, _, err) = archman(&["verify-package", "-p", &b_pub, pbr.to_str().unwrap()]);
    assert!(!ok, "a tampered package verified");
    assert!(err.contains("pbr"), "{err}");
}

/// Reads `Packages` of `feed` into (package, stanza text) pairs.
fn stanzas(feed: &Path) -> Vec<(String, String)> {
    fs::read_to_string(feed.join("Packages"))
        .unwrap_or_default()
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let name = s
                .lines()
                .find_map(|l| l.strip_prefix("Package: "))
                .unwrap_or_default()
                .to_string();
            (name, s.to_string())
        })
        .collect()
}

#[test]
fn store_index_checks_developer_signatures_against_the_keyring() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (root_sec, _) = keygen(t, "root");
    let (feed_sec, _) = keygen(t, "feed");
    let (a_sec, a_pub) = keygen(t, "devA");
    let (b_sec, b_pub) = keygen(t, "devB");
    let ring = t.join("ring");
    let ring_s = ring.to_str().unwrap();
    for args in [
        vec![
            "keyring",
            "init",
            ring_s,
            "--name",
            "demo",
            "--root-key",
            &root_sec,
        ],
        vec![
            "keyring",
            "add-key",
            ring_s,
            "--role",
            "developer",
            "--packages",
            "luci-app-*",
            &a_pub,
        ],
        vec![
            "keyring",
            "add-key",
            ring_s,
            "--role",
            "developer",
            "--packages",
            "pbr",
            &b_pub,
        ],
        vec!["keyring", "sign", ring_s, "-s", &root_sec],
    ] {
        let (ok, _, err) = archman(&args);
        assert!(ok, "{args:?}: {err}");
    }
    let feed = t.join("feed");
    let feed_s = feed.to_str().unwrap();
    let app = package(t, &feed, "luci-app-x");
    let pbr = package(t, &feed, "pbr");
    let other = package(t, &feed, "dnsmasq");
    for (key, pkg) in [(&a_sec, &app), (&b_sec, &pbr), (&b_sec, &other)] {
        let (ok, _, err) = archman(&["sign-package", "-s", key, pkg.to_str().unwrap()]);
        assert!(ok, "{err}");
    }
    let index = |extra: &[&str]| {
        let mut args = vec![
            "index",
            "-q",
            "--key",
            &feed_sec,
            "--developer-signatures",
            "require",
            "--keyring",
            ring_s,
        ];
        args.extend_from_slice(extra);
        args.push(feed_s);
        archman(&args)
    };
    // B signed dnsmasq, outside B's scope: a bad package; the feed is not written.
    let (ok, out, err) = index(&[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("dnsmasq_1.0_all.ipk")
            && err.contains("package dnsmasq: outside the scope of developer key"),
        "{err}"
    );
    assert!(!feed.join("Packages").exists());
    // --skip-bad publishes the rest, each stanza carrying its developer signature.
    let (ok, _, err) = index(&["--skip-bad"]);
    assert!(!ok, "exit 3 expected: {err}");
    let published = stanzas(&feed);
    let names: Vec<&str> = published.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["luci-app-x", "pbr"]);
    let sig_line = |p: &Path| {
        fs::read_to_string(format!("{}.sig", p.display()))
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string()
    };
    let a_fp = fs::read_to_string(&a_pub).unwrap();
    let a_fp = a_fp
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let app_stanza = &published[0].1;
    assert!(
        app_stanza.contains("\nSHA256: ")
            && app_stanza.contains(&format!(
                "\nSigned-By: {a_fp}\nSignature: {}\nDescription: ",
                sig_line(&app)
            )),
        "{app_stanza}"
    );
    for (_, stanza) in &published {
        opkg_lede_skips_the_developer_fields(stanza);
    }
    // Unsigned under require, and a package claiming a signature in its own control file.
    fs::remove_file(&other).unwrap();
    fs::remove_file(format!("{}.sig", other.display())).unwrap();
    let unsigned = package(t, &feed, "luci-app-unsigned");
    let (ok, _, err) = index(&[]);
    assert!(!ok);
    assert!(
        err.contains("luci-app-unsigned_1.0_all.ipk") && err.contains("no developer signature"),
        "{err}"
    );
    fs::remove_file(&unsigned).unwrap();
    // Nothing changed since the last publish: the cached stanzas (signatures included) are
    // used, and the output is the same.
    let before = fs::read(feed.join("Packages")).unwrap();
    let (ok, _, err) = index(&[]);
    assert!(ok, "{err}");
    assert_eq!(fs::read(feed.join("Packages")).unwrap(), before);
    // The roots revoke A: the next index refuses A's package although its stanza is cached.
    let a_fp_arg = a_fp.clone();
    for args in [
        vec!["keyring", "revoke", ring_s, &a_fp_arg],
        vec!["keyring", "sign", ring_s, "-s", &root_sec],
    ] {
        let (ok, _, err) = archman(&args);
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, _, err) = index(&[]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "package luci-app-x: developer key {a_fp} revoked in keyring demo serial 3"
        )),
        "{err}"
    );
    assert_eq!(
        fs::read(feed.join("Packages")).unwrap(),
        before,
        "a refused run changed the feed"
    );
}

fn fingerprint(public: &str) -> String {
    feeds::usign::PublicKey::read_path(Path::new(public))
        .unwrap()
        .fingerprint()
        .to_string()
}

/// The store over HTTP: two developers with scoped keys, one feed key, one root; a
/// malicious store's forged stanzas refused by the client; a revocation reaching clients.
#[test]
fn store_scenario_two_developers_forged_stanzas_and_a_revocation_over_http() {
    let f = Fixture::new();
    let t = f.tmp.path();
    let (root_sec, _) = keygen(t, "root");
    let (a_sec, a_pub) = keygen(t, "devA");
    let (b_sec, b_pub) = keygen(t, "devB");
    let (x_sec, x_pub) = keygen(t, "stranger");
    let ring = t.join("ring");
    let ring_s = ring.to_str().unwrap().to_string();
    let feed_pub = f.public.to_str().unwrap().to_string();
    for args in [
        vec![
            "keyring",
            "init",
            &ring_s,
            "--name",
            "demo",
            "--root-key",
            &root_sec,
            "--feed-key",
            &feed_pub,
        ],
        vec![
            "keyring",
            "add-key",
            &ring_s,
            "--role",
            "developer",
            "--packages",
            "luci-app-*",
            &a_pub,
        ],
        vec![
            "keyring",
            "add-key",
            &ring_s,
            "--role",
            "developer",
            "--packages",
            "pbr",
            &b_pub,
        ],
        vec!["keyring", "sign", &ring_s, "-s", &root_sec],
    ] {
        let (ok, _, err) = archman(&args);
        assert!(ok, "{args:?}: {err}");
    }
    let sign = |sec: &str, p: &Path| {
        let (ok, _, err) = archman(&["sign-package", "-s", sec, p.to_str().unwrap()]);
        assert!(ok, "{err}");
    };
    let x = f.add("luci-app-x", "1.0", "", &[("usr/share/x", "x")], None);
    let y = f.add("luci-app-y", "1.0", "", &[("usr/share/y", "y")], None);
    let pbr = f.add("pbr", "1.0", "", &[("usr/share/pbr", "pbr")], None);
    sign(&a_sec, &x);
    sign(&a_sec, &y);
    sign(&b_sec, &pbr);
    let (ok, _, err) = archman(&["keyring", "build", &ring_s, f.feed.to_str().unwrap()]);
    assert!(ok, "{err}");
    f.index_with(&["--developer-signatures", "require", "--keyring", &ring_s]);
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = t.join("root");
    let root_s = root.to_str().unwrap().to_string();
    let keyring_pkg = f.feed.join("demo-keyring_2_all.ipk");
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            &root_s,
            "--feed",
            &format!("main={}", server.url("")),
            "--keyring",
            keyring_pkg.to_str().unwrap(),
            "--root-fingerprint",
            &fingerprint(&fingerprint_pub(t, "root")),
            "luci-app-x",
            "pbr",
        ],
    );
    assert!(ok, "{out}{err}");
    // Each installed package records the developer key that vouched for it.
    assert!(
        status_of(&root, "luci-app-x").contains(&format!("Signed-By: {}", fingerprint(&a_pub)))
    );
    assert!(status_of(&root, "pbr").contains(&format!("Signed-By: {}", fingerprint(&b_pub))));
    // prokit info names both keys that vouched for the installed version.
    let (ok, out, err) = prokit(Some(&root_s), &["info", "luci-app-x"]);
    assert!(ok, "{err}");
    let installed = out.split("# feed").next().unwrap_or_default();
    assert!(
        installed.contains(&format!("Signed-By: {}", fingerprint(&a_pub)))
            && installed.contains(&format!("Prokit-Feed-Key: {}", f.fingerprint())),
        "{out}"
    );
    let conf = root.join("etc/opkg.conf");
    let with_option = |opt: &str| {
        let text = fs::read_to_string(&conf).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("option developer_signatures"))
            .collect();
        fs::write(
            &conf,
            format!("{}\noption developer_signatures {opt}\n", kept.join("\n")),
        )
        .unwrap();
    };
    with_option("require");

    // A malicious store with the feed key: a stanza whose Signature is by a key the roots
    // never listed (the store's own keyring says otherwise), and an unsigned package.
    let (evil_root_sec, _) = keygen(t, "evilroot");
    let evil_ring = t.join("evil-ring");
    let evil_ring_s = evil_ring.to_str().unwrap().to_string();
    for args in [
        vec![
            "keyring",
            "init",
            &evil_ring_s,
            "--name",
            "demo",
            "--root-key",
            &evil_root_sec,
            "--feed-key",
            &feed_pub,
        ],
        vec![
            "keyring",
            "add-key",
            &evil_ring_s,
            "--role",
            "developer",
            &x_pub,
        ],
        vec![
            "keyring",
            "add-key",
            &evil_ring_s,
            "--role",
            "developer",
            &a_pub,
        ],
        vec![
            "keyring",
            "add-key",
            &evil_ring_s,
            "--role",
            "developer",
            &b_pub,
        ],
        vec!["keyring", "sign", &evil_ring_s, "-s", &evil_root_sec],
    ] {
        let (ok, _, err) = archman(&args);
        assert!(ok, "{args:?}: {err}");
    }
    let evil = f.add(
        "luci-app-evil",
        "1.0",
        "",
        &[("usr/share/evil", "evil")],
        None,
    );
    sign(&x_sec, &evil);
    f.index_with(&["--developer-signatures", "check", "--keyring", &evil_ring_s]);
    let packages = fs::read_to_string(f.feed.join("Packages")).unwrap();
    assert!(
        packages.contains(&format!("Signed-By: {}", fingerprint(&x_pub))),
        "{packages}"
    );
    let (ok, out, err) = prokit(Some(&root_s), &["update"]);
    assert!(ok, "{out}{err}");
    let before = fs::read_to_string(root.join("usr/lib/opkg/status")).unwrap();
    let (ok, out, err) = prokit(Some(&root_s), &["install", "luci-app-evil"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("refused luci-app-evil 1.0")
            && err.contains(&format!(
                "package luci-app-evil: developer key {} is not in keyring demo serial 2",
                fingerprint(&x_pub)
            )),
        "{err}"
    );
    assert!(!root.join("usr/share/evil").exists());
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/opkg/status")).unwrap(),
        before
    );
    // Unsigned, under require.
    fs::remove_file(format!("{}.sig", evil.display())).unwrap();
    f.index_with(&["--developer-signatures", "check", "--keyring", &ring_s]);
    let (ok, out, err) = prokit(Some(&root_s), &["update"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = prokit(Some(&root_s), &["install", "luci-app-evil"]);
    assert!(!ok);
    assert!(
        err.contains("gives it no developer signature, and option developer_signatures require"),
        "{err}"
    );
    fs::remove_file(&evil).unwrap();

    // The roots revoke A in serial 3; the store (lagging, or hostile) still publishes A's
    // packages with A's signatures. After a refresh, A's packages are refused and the
    // installed one is flagged.
    let old_ring = t.join("ring-2");
    let (ok, _, err) = run(Command::new("cp").arg("-a").arg(&ring).arg(&old_ring));
    assert!(ok, "{err}");
    for args in [
        vec!["keyring", "revoke", &ring_s, &fingerprint(&a_pub)],
        vec!["keyring", "sign", &ring_s, "-s", &root_sec],
    ] {
        let (ok, _, err) = archman(&args);
        assert!(ok, "{args:?}: {err}");
    }
    let (ok, _, err) = archman(&["keyring", "build", &ring_s, f.feed.to_str().unwrap()]);
    assert!(ok, "{err}");
    f.index_with(&[
        "--developer-signatures",
        "require",
        "--keyring",
        old_ring.to_str().unwrap(),
    ]);
    let (ok, out, err) = prokit(Some(&root_s), &["keyring", "refresh"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = prokit(Some(&root_s), &["verify", "--signatures"]);
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains(&format!(
            "REVOKED: luci-app-x 1.0: package luci-app-x: developer key {} revoked in keyring demo serial 3",
            fingerprint(&a_pub)
        )) && !out.contains("pbr"),
        "{out}"
    );
    let (ok, _, err) = prokit(Some(&root_s), &["install", "luci-app-y"]);
    assert!(!ok);
    assert!(err.contains("revoked in keyring demo serial 3"), "{err}");
    assert!(!root.join("usr/share/y").exists());
    // B's package is untouched by A's revocation.
    let (ok, out, err) = prokit(Some(&root_s), &["verify", "--signatures", "pbr"]);
    assert!(ok, "{out}{err}");
}

fn fingerprint_pub(dir: &Path, name: &str) -> String {
    dir.join(format!("{name}.pub")).display().to_string()
}

/// opkg-lede (openwrt/opkg-lede 38eccbb) reads `Packages` with `pkg_parse_line`
/// (`libopkg/pkg_parse.c`), which dispatches on a line's first character: under `case 'S'`
/// (lines 311–325) only `Section`, `SHA256sum`, `Size`, `Source`, `Status` and `Suggests` are
/// recognised, so `Signed-By:` and `Signature:` reach `break` having set nothing, and the
/// description and conffiles continuation flags are reset after them (lines 366–371). They are
/// therefore skipped as long as each is a single line and none of them is read as a
/// continuation — what this checks of a published stanza. Checked by hand with opkg-cl built
/// from 38eccbb: `update` and `install` from a feed carrying both fields install the package,
/// and `opkg info` shows it without them.
fn opkg_lede_skips_the_developer_fields(stanza: &str) {
    const OPKG_S_FIELDS: [&str; 6] = [
        "Section",
        "SHA256sum",
        "Size",
        "Source",
        "Status",
        "Suggests",
    ];
    let lines: Vec<&str> = stanza.lines().collect();
    for field in ["Signed-By", "Signature"] {
        assert!(!OPKG_S_FIELDS.contains(&field));
        let i = lines
            .iter()
            .position(|l| l.starts_with(&format!("{field}: ")))
            .unwrap_or_else(|| panic!("no {field} in {stanza}"));
        // One line: the next line starts a field, it is not a continuation.
        assert!(
            lines
                .get(i + 1)
                .is_none_or(|n| !n.starts_with(' ') && !n.starts_with('\t')),
            "{stanza}"
        );
        // Before Description, whose continuation lines opkg collects.
        let d = lines.iter().position(|l| l.starts_with("Description:"));
        assert!(d.is_none_or(|d| i < d), "{stanza}");
    }
}

/// Key consistency: once luci-app-x was published signed by A, version 1.1 signed by C (also
/// active and in scope) is refused until the roots transfer the name; the record lives beside
/// the cache and is rebuilt from the signed published index when the cache is gone.
#[test]
fn a_name_keeps_its_developer_key_until_the_keyring_transfers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let xdg = t.join("xdg");
    let (root_sec, _) = keygen(t, "root");
    let (feed_sec, _) = keygen(t, "feed");
    let (a_sec, a_pub) = keygen(t, "devA");
    let (c_sec, c_pub) = keygen(t, "devC");
    let ring = t.join("ring");
    let ring_s = ring.to_str().unwrap().to_string();
    let keyring = |args: &[&str]| {
        let mut all = vec!["keyring"];
        all.extend_from_slice(args);
        let (ok, _, err) = archman(&all);
        assert!(ok, "{all:?}: {err}");
    };
    keyring(&["init", &ring_s, "--name", "demo", "--root-key", &root_sec]);
    keyring(&[
        "add-key",
        &ring_s,
        "--role",
        "developer",
        "--packages",
        "luci-app-*",
        &a_pub,
    ]);
    keyring(&[
        "add-key",
        &ring_s,
        "--role",
        "developer",
        "--packages",
        "luci-*",
        &c_pub,
    ]);
    keyring(&["sign", &ring_s, "-s", &root_sec]);
    let feed = t.join("feed");
    let feed_s = feed.to_str().unwrap().to_string();
    let sign = |sec: &str, p: &Path| {
        let (ok, _, err) = archman(&["sign-package", "-s", sec, p.to_str().unwrap()]);
        assert!(ok, "{err}");
    };
    let build = |version: &str| {
        let src = t.join(format!("src-{version}"));
        fs::create_dir_all(src.join("CONTROL")).unwrap();
        fs::write(
            src.join("CONTROL/control"),
            format!("Package: luci-app-x\nVersion: {version}\nArchitecture: all\nDescription: x\n"),
        )
        .unwrap();
        fs::create_dir_all(src.join("usr/share/x")).unwrap();
        fs::write(src.join("usr/share/x/v"), version).unwrap();
        let (ok, out, err) = run(Command::new(bin("archman"))
            .arg("build")
            .arg(&src)
            .arg(&feed)
            .env("SOURCE_DATE_EPOCH", "1795315200"));
        assert!(ok, "{err}");
        PathBuf::from(out.trim())
    };
    let index = || {
        run(Command::new(bin("archman"))
            .args([
                "index",
                "-q",
                "--key",
                &feed_sec,
                "--developer-signatures",
                "require",
            ])
            .args(["--keyring", &ring_s, &feed_s])
            .env("XDG_CACHE_HOME", &xdg))
    };
    let v1 = build("1.0");
    sign(&a_sec, &v1);
    let (ok, _, err) = index();
    assert!(ok, "{err}");
    let v2 = build("1.1");
    sign(&c_sec, &v2);
    let (ok, _, err) = index();
    assert!(!ok);
    let (fa, fc) = (fingerprint(&a_pub), fingerprint(&c_pub));
    let refusal = format!(
        "package luci-app-x 1.1 is signed by developer key {fc}, but its published versions were signed by {fa}"
    );
    assert!(
        err.contains("luci-app-x_1.1_all.ipk") && err.contains(&refusal),
        "{err}"
    );
    // Nor an older version: 0.9 signed by C is C's claim on A's name just the same.
    let v0 = build("0.9");
    sign(&c_sec, &v0);
    let (ok, _, err) = index();
    assert!(
        !ok && err.contains("package luci-app-x 0.9 is signed by developer key"),
        "{err}"
    );
    fs::remove_file(&v0).unwrap();
    // The cache (and the record beside it) lost: rebuilt from the signed published index.
    fs::remove_dir_all(&xdg).unwrap();
    let (ok, _, err) = index();
    assert!(!ok && err.contains(&refusal), "{err}");
    // The roots list the name itself in C's scope: C's 1.1 is accepted beside A's 1.0.
    let (ok, _, err) = archman(&["keyring", "set-scope", &ring_s, &fa, "luci-app-[x"]);
    assert!(!ok && err.contains("holds '['"), "{err}");
    keyring(&["set-scope", &ring_s, &fc, "luci-*,luci-app-x"]);
    keyring(&["sign", &ring_s, "-s", &root_sec]);
    let (ok, _, err) = index();
    assert!(ok, "{err}");
    let packages = fs::read_to_string(feed.join("Packages")).unwrap();
    assert!(
        packages.contains("Version: 1.0") && packages.contains("Version: 1.1"),
        "{packages}"
    );
    // The roots take the name from A (retired): C's version is published, A's 1.0 no longer.
    keyring(&["retire", &ring_s, &fa]);
    keyring(&["sign", &ring_s, "-s", &root_sec]);
    fs::remove_file(&v1).unwrap();
    let (ok, _, err) = index();
    assert!(ok, "{err}");
    let packages = fs::read_to_string(feed.join("Packages")).unwrap();
    assert!(
        packages.contains("Version: 1.1") && packages.contains(&format!("Signed-By: {fc}")),
        "{packages}"
    );
}

/// Stanzas a store with the feed key writes by hand: a `Signature` that does not decode, and
/// one whose `Signed-By` names another key than the signature's. Each is refused naming the
/// package and why, and nothing is installed.
#[test]
fn forged_signature_fields_in_a_signed_index_are_refused() {
    let f = Fixture::new();
    let t = f.tmp.path();
    let (root_sec, _) = keygen(t, "root");
    let (a_sec, a_pub) = keygen(t, "devA");
    let ring = t.join("ring");
    let ring_s = ring.to_str().unwrap().to_string();
    let feed_pub = f.public.to_str().unwrap().to_string();
    for args in [
        vec![
            "keyring",
            "init",
            &ring_s,
            "--name",
            "demo",
            "--root-key",
            &root_sec,
            "--feed-key",
            &feed_pub,
        ],
        vec!["keyring", "add-key", &ring_s, "--role", "developer", &a_pub],
        vec!["keyring", "sign", &ring_s, "-s", &root_sec],
        vec!["keyring", "build", &ring_s, f.feed.to_str().unwrap()],
    ] {
        let (ok, _, err) = archman(&args);
        assert!(ok, "{args:?}: {err}");
    }
    for name in ["app-one", "app-two"] {
        let p = f.add(
            name,
            "1.0",
            "",
            &[(&format!("usr/share/{name}"), name)],
            None,
        );
        let (ok, _, err) = archman(&["sign-package", "-s", &a_sec, p.to_str().unwrap()]);
        assert!(ok, "{err}");
    }
    f.index_with(&["--developer-signatures", "require", "--keyring", &ring_s]);
    // The store rewrites the stanzas and signs the result with the feed key; no Release.
    let packages = fs::read_to_string(f.feed.join("Packages")).unwrap();
    let a_fp = fingerprint(&a_pub);
    let mut forged = String::new();
    for stanza in packages.split_inclusive("\n\n") {
        let stanza = if stanza.contains("Package: app-one\n") {
            let line = stanza
                .lines()
                .find(|l| l.starts_with("Signature: "))
                .unwrap();
            stanza.replace(line, "Signature: not-base64!")
        } else if stanza.contains("Package: app-two\n") {
            stanza.replace(&format!("Signed-By: {a_fp}"), "Signed-By: 0123456789abcdef")
        } else {
            stanza.to_string()
        };
        forged.push_str(&stanza);
    }
    fs::write(f.feed.join("Packages"), &forged).unwrap();
    let gz = Command::new("gzip")
        .args(["-9n", "-c"])
        .arg(f.feed.join("Packages"))
        .output()
        .unwrap();
    fs::write(f.feed.join("Packages.gz"), gz.stdout).unwrap();
    for file in ["Release", "Release.sig", "Packages.sig"] {
        let _ = fs::remove_file(f.feed.join(file));
    }
    let (ok, _, err) = archman(&[
        "sign",
        "-s",
        f.sec.to_str().unwrap(),
        "-m",
        f.feed.join("Packages").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let Some(server) = HttpServer::serve(&f.feed) else {
        return;
    };
    let root = t.join("root");
    let root_s = root.to_str().unwrap().to_string();
    let keyring_pkg = f.feed.join("demo-keyring_2_all.ipk");
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            &root_s,
            "--feed",
            &format!("main={}", server.url("")),
            "--keyring",
            keyring_pkg.to_str().unwrap(),
            "--root-fingerprint",
            &fingerprint(&fingerprint_pub(t, "root")),
            "demo-keyring",
        ],
    );
    assert!(ok, "{out}{err}");
    let status = fs::read_to_string(root.join("usr/lib/opkg/status")).unwrap();
    let (ok, _, err) = prokit(Some(&root_s), &["install", "app-one"]);
    assert!(!ok);
    assert!(
        err.contains("refused app-one 1.0")
            && err.contains(
                "package app-one: its Signature field in the index of feed \"main\" does not decode"
            ),
        "{err}"
    );
    let (ok, _, err) = prokit(Some(&root_s), &["install", "app-two"]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "package app-two: the index of feed \"main\" says Signed-By \"0123456789abcdef\", but its Signature is by key {a_fp}"
        )),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/opkg/status")).unwrap(),
        status
    );
    assert!(!root.join("usr/share/app-one").exists() && !root.join("usr/share/app-two").exists());
}
