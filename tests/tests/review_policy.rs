//! The permission review and the install policy over real HTTP (issue 12,
//! docs/trust-model.md §10): `prokit review` lists every permission a package requests,
//! read from the verified package file; `etc/prokit/policy.conf` refuses each denied class
//! with nothing changed in the root or outside it; `allow keys` refuses a package vouched
//! for by another trusted key; a terminal install asks, and "n" changes nothing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Fixture, prokit, status_of};
use e2e::{HttpServer, bin, have_tool, run};
use feeds::build::PackageBuilder;

/// One data entry of a hand-made package: (path, type, mode, contents).
type Entry<'a> = (&'a str, tar::EntryType, u32, &'a [u8]);

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mode, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_path(path).unwrap();
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OpenWrt-style .ipk (gzipped tar of debian-binary, data.tar.gz, control.tar.gz) whose
/// data tar holds exactly `data`: device nodes and FIFOs, which `feeds::build` does not make.
fn raw_ipk(control: &str, control_files: &[(&str, u32, &[u8])], data: &[Entry]) -> Vec<u8> {
    use tar::EntryType as T;
    let mut ctl: Vec<Entry> = vec![("./control", T::Regular, 0o644, control.as_bytes())];
    let names: Vec<String> = control_files
        .iter()
        .map(|(n, _, _)| format!("./{n}"))
        .collect();
    for ((_, mode, body), name) in control_files.iter().zip(&names) {
        ctl.push((name, T::Regular, *mode, body));
    }
    let data_gz = feeds::index::gzip(&tar_of(data));
    let control_gz = feeds::index::gzip(&tar_of(&ctl));
    feeds::index::gzip(&tar_of(&[
        ("./debian-binary", T::Regular, 0o644, b"2.0\n"),
        ("./data.tar.gz", T::Regular, 0o644, &data_gz),
        ("./control.tar.gz", T::Regular, 0o644, &control_gz),
    ]))
}

fn control(name: &str, extra: &str) -> String {
    format!("Package: {name}\nVersion: 1.0\nArchitecture: all\n{extra}Description: {name}\n")
}

/// A package with one plain file.
fn plain(f: &Fixture, name: &str) {
    f.add(
        name,
        "1.0",
        "",
        &[(&format!("usr/share/{name}/data"), name)],
        None,
    );
}

/// Everything under `dir`: path → kind, mode and contents (what "nothing changed" compares).
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            // The download cache, lock files and the audit log (which records the refusal)
            // may change; the installed state may not.
            if rel.starts_with("var/cache") || rel.ends_with("lock") || rel.starts_with("var/log") {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.is_dir() {
                stack.push(p.clone());
                format!("dir {:o}", m.mode())
            } else if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else {
                format!("{:o} {:?}", m.mode(), fs::read(&p).unwrap())
            };
            out.insert(rel, what);
        }
    }
    out
}

/// A fixture serving `owner` (a plain package) and a root bootstrapped with it, trusting the
/// fixture's key.
struct Scene {
    f: Fixture,
    server: HttpServer,
    root: std::path::PathBuf,
    sentinel: std::path::PathBuf,
}

fn scene(add: impl FnOnce(&Fixture)) -> Option<Scene> {
    let f = Fixture::new();
    f.add(
        "owner",
        "1.0",
        "",
        &[("usr/share/shared", "owned by owner")],
        None,
    );
    add(&f);
    f.index();
    let server = HttpServer::serve(&f.feed)?;
    let root = f.tmp.path().join("root");
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            root.to_str().unwrap(),
            "--feed",
            &format!("main={}", server.url("")),
            "--pubkey",
            f.public.to_str().unwrap(),
            "owner",
        ],
    );
    assert!(ok, "{out}{err}");
    let sentinel = f.tmp.path().join("outside-sentinel");
    fs::write(&sentinel, "untouched").unwrap();
    Some(Scene {
        f,
        server,
        root,
        sentinel,
    })
}

/// The package that requests every permission the review knows.
fn everything(f: &Fixture) {
    use tar::EntryType as T;
    let bytes = raw_ipk(
        &control(
            "everything",
            "Replaces: owner\nRequire-User: ntp=123:ntp=123\n",
        ),
        &[
            ("postinst", 0o755, b"#!/bin/sh\nuser_add ntp 123\n"),
            ("conffiles", 0o644, b"/etc/config/everything\n"),
        ],
        &[
            ("./usr/", T::Directory, 0o755, b""),
            ("./usr/bin/plain", T::Regular, 0o755, b"plain"),
            ("./usr/bin/su", T::Regular, 0o4755, b"su"),
            ("./usr/bin/wall", T::Regular, 0o2755, b"wall"),
            ("./dev/console", T::Char, 0o600, b""),
            ("./dev/initctl", T::Fifo, 0o600, b""),
            ("./opt/thing/data", T::Regular, 0o644, b"data"),
            ("./etc/init.d/everything", T::Regular, 0o755, b"#!/bin/sh\n"),
            (
                "./etc/config/everything",
                T::Regular,
                0o644,
                b"option x 1\n",
            ),
            ("./usr/share/shared", T::Regular, 0o644, b"taken over"),
        ],
    );
    f.write("everything_1.0_all.ipk", &bytes);
}

#[test]
fn review_lists_every_permission_of_a_package_carrying_all_of_them() {
    let Some(s) = scene(everything) else { return };
    let r = s.root.to_str().unwrap();
    let before = snapshot(&s.root);
    let (ok, out, err) = prokit(Some(r), &["-v", "review", "everything"]);
    assert!(ok, "{out}{err}");
    for needle in [
        "everything 1.0 (all) from feed \"main\"",
        &format!("vouched for by feed key {}", s.f.fingerprint()),
        "runs script postinst (",
        "| user_add ntp 123",
        "setuid /usr/bin/su (mode 4755)",
        "setgid /usr/bin/wall (mode 2755)",
        "character device /dev/console (mode 600)",
        "fifo /dev/initctl (mode 600)",
        "file outside /etc /usr /lib /www /bin /sbin: /opt/thing/data",
        "takes over /usr/share/shared from owner",
        "adds service /etc/init.d/everything",
        "users/groups: Require-User: ntp=123:ntp=123",
        "users/groups: postinst runs user_add",
        "conffile /etc/config/everything",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    // Review changes nothing.
    assert_eq!(snapshot(&s.root), before);

    // The same as a document a UI can render.
    let (ok, out, err) = prokit(Some(r), &["--json", "review", "everything"]);
    assert!(ok, "{out}{err}");
    for needle in [
        "\"requests_permissions\":true",
        "\"name\":\"everything\"",
        "\"setid\":[{\"path\":\"/usr/bin/su\",\"what\":\"setuid\",\"mode\":\"4755\"}",
        "\"takes_over\":[{\"path\":\"/usr/share/shared\",\"owner\":\"owner\"}]",
        "\"services\":[\"/etc/init.d/everything\"]",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    assert_eq!(out.lines().count(), 1, "one JSON document: {out}");

    // install --review shows it too, then installs (no terminal: nothing asks).
    let (ok, out, err) = prokit(
        Some(r),
        &["install", "--review", "--allow-special", "everything"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("setuid /usr/bin/su"), "{out}");
    assert!(out.contains("Installed everything 1.0"), "{out}");
    assert_eq!(fs::read_to_string(&s.sentinel).unwrap(), "untouched");
}

/// One policy rule and the package it must refuse.
struct Case {
    policy: &'static str,
    package: &'static str,
    why: &'static str,
}

#[test]
fn policy_refuses_each_denied_class_with_nothing_changed() {
    let Some(s) = scene(|f| {
        let b = |name: &str| PackageBuilder::new(control(name, "")).mtime(1_700_000_000);
        let suid = b("suid").file("usr/bin/suid", 0o4755, b"x".to_vec());
        f.write("suid_1.0_all.ipk", &suid.build().unwrap());
        use tar::EntryType as T;
        let dev = raw_ipk(
            &control("devnode", ""),
            &[],
            &[("./dev/sda9", T::Block, 0o600, b"")],
        );
        f.write("devnode_1.0_all.ipk", &dev);
        let scripted = b("scripted")
            .file("usr/share/scripted", 0o644, b"s".to_vec())
            .control_file("postinst", 0o755, b"#!/bin/sh\ntrue\n".to_vec());
        f.write("scripted_1.0_all.ipk", &scripted.build().unwrap());
        let base = b("base-scripted")
            .file("usr/share/base-scripted", 0o644, b"s".to_vec())
            .control_file("postinst", 0o755, b"#!/bin/sh\ntrue\n".to_vec());
        f.write("base-scripted_1.0_all.ipk", &base.build().unwrap());
        plain(f, "telnetd");
        plain(f, "unsigned-app");
    }) else {
        return;
    };
    let r = s.root.to_str().unwrap();
    let cases = [
        Case {
            policy: "deny setuid\n",
            package: "suid",
            why: "/usr/bin/suid is setuid (mode 4755)",
        },
        Case {
            policy: "# no device nodes\ndeny devices\n",
            package: "devnode",
            why: "/dev/sda9 is a block device",
        },
        Case {
            policy: "deny scripts\nallow scripts base-*\n",
            package: "scripted",
            why: "carries maintainer scripts (postinst)",
        },
        Case {
            policy: "deny packages telnet* *-dev\n",
            package: "telnetd",
            why: "telnetd matches telnet*, *-dev",
        },
        Case {
            policy: "require developer-signature\n",
            package: "unsigned-app",
            why: "no verified developer signature",
        },
    ];
    fs::create_dir_all(s.root.join("etc/prokit")).unwrap();
    for c in &cases {
        fs::write(s.root.join("etc/prokit/policy.conf"), c.policy).unwrap();
        let before = snapshot(&s.root);
        // --allow-special: the policy, not the unpacker's default, must be what refuses.
        let (ok, out, err) = prokit(Some(r), &["install", "--allow-special", c.package]);
        assert!(!ok, "{}: installed\n{out}{err}", c.policy);
        let rule = c.policy.lines().rfind(|l| !l.starts_with('#')).unwrap();
        let line = c.policy.lines().position(|l| l == rule).unwrap() + 1;
        let want = format!(
            "refused {} 1.0 by policy /etc/prokit/policy.conf:{line} \"{rule}\": {}; nothing was changed",
            c.package, c.why
        );
        // The last rule line is the one refusing in every case but scripts (line 1).
        let want = if c.package == "scripted" {
            want.replace(":2 \"allow scripts base-*\"", ":1 \"deny scripts\"")
        } else {
            want
        };
        assert!(err.contains(&want), "{want:?} not in:\n{err}");
        assert_eq!(snapshot(&s.root), before, "{}", c.policy);
        assert!(!status_of(&s.root, c.package).contains("installed"));
        assert_eq!(fs::read_to_string(&s.sentinel).unwrap(), "untouched");
    }
    // An allowed exception goes through the same policy.
    fs::write(
        s.root.join("etc/prokit/policy.conf"),
        "deny scripts\nallow scripts base-*\ndeny setuid\n",
    )
    .unwrap();
    let (ok, out, err) = prokit(Some(r), &["install", "base-scripted"]);
    assert!(ok, "{out}{err}");
    // A typo is an error naming the line, never a weaker policy.
    fs::write(
        s.root.join("etc/prokit/policy.conf"),
        "deny setuid\ndeny sudo\n",
    )
    .unwrap();
    let (ok, _, err) = prokit(Some(r), &["install", "telnetd"]);
    assert!(!ok);
    assert!(
        err.contains("etc/prokit/policy.conf:2: unknown rule \"deny sudo\""),
        "{err}"
    );
    assert!(!status_of(&s.root, "telnetd").contains("installed"));
}

#[test]
fn allow_keys_refuses_a_package_vouched_for_by_another_trusted_key() {
    // Two feeds, each signed by its own key; the root trusts both.
    let a = Fixture::new();
    plain(&a, "from-a");
    a.index();
    let b = Fixture::new();
    plain(&b, "from-b");
    b.index();
    let (Some(sa), Some(sb)) = (HttpServer::serve(&a.feed), HttpServer::serve(&b.feed)) else {
        return;
    };
    let root = a.tmp.path().join("root");
    let r = root.to_str().unwrap();
    let (ok, out, err) = prokit(
        None,
        &[
            "bootstrap",
            r,
            "--feed",
            &format!("a={}", sa.url("")),
            "--feed",
            &format!("b={}", sb.url("")),
            "--pubkey",
            a.public.to_str().unwrap(),
            "--pubkey",
            b.public.to_str().unwrap(),
            "from-a",
        ],
    );
    assert!(ok, "{out}{err}");
    fs::create_dir_all(root.join("etc/prokit")).unwrap();
    fs::write(
        root.join("etc/prokit/policy.conf"),
        format!("allow keys {}\n", a.fingerprint()),
    )
    .unwrap();
    let before = snapshot(&root);
    let (ok, _, err) = prokit(Some(r), &["install", "from-b"]);
    assert!(!ok);
    let want = format!(
        "refused from-b 1.0 by policy /etc/prokit/policy.conf:1 \"allow keys {}\": vouched for by feed key {}, which is not listed",
        a.fingerprint(),
        b.fingerprint()
    );
    assert!(err.contains(&want), "{want:?} not in:\n{err}");
    assert_eq!(snapshot(&root), before);
    // A package from the listed key's feed installs.
    plain(&a, "more-a");
    a.index();
    let (ok, out, err) = prokit(Some(r), &["update"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = prokit(Some(r), &["install", "more-a"]);
    assert!(ok, "{out}{err}");
}

#[test]
fn a_terminal_install_asks_and_no_changes_nothing() {
    // `script` (util-linux) gives prokit a terminal; its stdin answers the question.
    if !have_tool("script") {
        return;
    }
    let Some(s) = scene(everything) else { return };
    let before = snapshot(&s.root);
    let cmd = format!(
        "{} --root {} install --allow-special everything",
        bin("prokit").display(),
        s.root.display()
    );
    let answer = |text: &str| {
        let mut child = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = answer("n\n");
    assert!(!ok, "{out}");
    assert!(out.contains("setuid /usr/bin/su"), "{out}");
    assert!(out.contains("[y/N]"), "{out}");
    assert!(
        out.contains("the review was declined; nothing was changed"),
        "{out}"
    );
    assert_eq!(snapshot(&s.root), before);
    let (ok, out) = answer("y\n");
    assert!(ok, "{out}");
    assert!(out.contains("Installed everything 1.0"), "{out}");
    // -y never asks.
    let (ok, _, err) = run(Command::new(bin("prokit")).args([
        "--root",
        s.root.to_str().unwrap(),
        "install",
        "-y",
        "owner",
    ]));
    assert!(ok, "{err}");
    drop(s.server);
}

#[test]
fn threat_19_a_package_cannot_rewrite_the_policy_or_the_audit_log() {
    let Some(s) = scene(|f| {
        f.add(
            "unpolicy",
            "1.0",
            "",
            &[("etc/prokit/policy.conf", "# nothing denied\n")],
            None,
        );
        f.add(
            "unaudit",
            "1.0",
            "",
            &[("var/log/prokit/audit.jsonl", "{}\n")],
            None,
        );
    }) else {
        return;
    };
    let r = s.root.to_str().unwrap();
    fs::create_dir_all(s.root.join("etc/prokit")).unwrap();
    fs::write(s.root.join("etc/prokit/policy.conf"), "deny setuid\n").unwrap();
    let log = s.root.join("var/log/prokit/audit.jsonl");
    for (pkg, why) in [
        ("unpolicy", "prokit's install policy (/etc/prokit)"),
        (
            "unaudit",
            "a package may never write the package manager's state",
        ),
    ] {
        let before = snapshot(&s.root);
        let log_before = fs::read(&log).unwrap();
        let (ok, out, err) = prokit(Some(r), &["install", pkg]);
        assert!(!ok, "{pkg}: installed\n{out}{err}");
        assert!(err.contains(why), "{why:?} not in:\n{err}");
        assert_eq!(snapshot(&s.root), before, "{pkg}");
        // The log only grew: the refusal was appended to it, nothing replaced it.
        let after = fs::read(&log).unwrap();
        assert!(after.starts_with(&log_before) && after.len() > log_before.len());
        assert_eq!(
            fs::read_to_string(s.root.join("etc/prokit/policy.conf")).unwrap(),
            "deny setuid\n"
        );
        assert_eq!(fs::read_to_string(&s.sentinel).unwrap(), "untouched");
    }
    // The review says so before anything is downloaded into place.
    let (ok, out, err) = prokit(Some(r), &["review", "unpolicy"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("changes trust: /etc/prokit/policy.conf"),
        "{out}"
    );
    let (ok, out, err) = prokit(Some(r), &["audit", "verify"]);
    assert!(ok, "{out}{err}");
}
