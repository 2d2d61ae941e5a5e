//! `.deb` packages built by the real `dpkg-deb` read correctly, and the stanza we build for
//! each agrees with `dpkg-scanpackages` on every field both write.

use e2e as common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use feeds::control::{Paragraph, parse_paragraphs};
use feeds::index;
use feeds::package::{Container, DataTar, ReadOptions, read_package_file};

const CONTROL: &str = "Package: hello-deb
Version: 2:1.4.2~rc1-3
Architecture: amd64
Maintainer: Jane Doe <jane@example.org>
Installed-Size: 12
Depends: libc6 (>= 2.36), foo | bar (<< 3)
Section: utils
Priority: optional
Description: a greeting program
 It says hello.
 .
 Twice, with feeling.
";

fn build_deb(dir: &Path, compression: &str) -> std::path::PathBuf {
    let root = dir.join(format!("root-{compression}"));
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("DEBIAN/control"), CONTROL).unwrap();
    fs::write(root.join("DEBIAN/conffiles"), "/etc/hello.conf\n").unwrap();
    fs::write(root.join("DEBIAN/postinst"), "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(
        root.join("DEBIAN/postinst"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::write(root.join("etc/hello.conf"), "loud=yes\n").unwrap();
    fs::write(root.join("usr/bin/hello"), vec![b'x'; 5000]).unwrap();
    let out = dir.join(format!("hello-deb_{compression}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
        .arg(&root)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "dpkg-deb: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    out
}

#[test]
fn dpkg_deb_packages_read_and_agree_with_dpkg_scanpackages() {
    if !common::have_tool("dpkg-deb") || !common::have_tool("dpkg-scanpackages") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pool = tmp.path().join("pool");
    fs::create_dir_all(&pool).unwrap();
    for compression in ["gzip", "xz", "zstd"] {
        let deb = build_deb(tmp.path(), compression);
        let name = deb.file_name().unwrap().to_str().unwrap().to_string();
        let mut files = Vec::new();
        let mut visit = |tar: &mut DataTar<'_>| {
            tar.for_each_entry(|e| -> std::io::Result<()> {
                let mut body = Vec::new();
                std::io::Read::read_to_end(e, &mut body)?;
                files.push((
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    body.len(),
                ));
                Ok(())
            })?;
            Ok(())
        };
        let opts = ReadOptions {
            md5: true,
            ..Default::default()
        };
        let pkg = read_package_file(&deb, &opts, Some(&mut visit)).unwrap();
        assert_eq!(pkg.container, Container::Ar);
        let suffix = match compression {
            "gzip" => ".gz",
            "xz" => ".xz",
            _ => ".zst",
        };
        assert_eq!(pkg.data_member, format!("data.tar{suffix}"));
        assert_eq!(pkg.control_member, format!("control.tar{suffix}"));
        assert_eq!(pkg.control_text, CONTROL);
        assert_eq!(pkg.conffiles(), ["/etc/hello.conf"]);
        assert_eq!(pkg.scripts(), ["postinst"]);
        assert!(
            files.contains(&("./usr/bin/hello".to_string(), 5000)),
            "{files:?}"
        );
        assert!(
            files.contains(&("./etc/hello.conf".to_string(), 9)),
            "{files:?}"
        );

        // Our stanza against dpkg-scanpackages' for the same file.
        fs::copy(&deb, pool.join(&name)).unwrap();
        let filename = format!("pool/{name}");
        let ours = index::stanza_for(
            &pkg,
            &filename,
            index::HashFields {
                md5: true,
                apt: true,
            },
        )
        .unwrap();
        let out = Command::new("dpkg-scanpackages")
            .args(["-m", "pool", "/dev/null"])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: Vec<Paragraph> =
            parse_paragraphs(&String::from_utf8(out.stdout).unwrap()).unwrap();
        let theirs = theirs
            .into_iter()
            .find(|p| p.get("Filename") == Some(filename.as_str()))
            .unwrap_or_else(|| panic!("dpkg-scanpackages did not list {filename}"));
        assert_same_on_shared_fields(&ours, &theirs);
        fs::remove_file(pool.join(&name)).unwrap();
    }
}

/// Every field both stanzas carry has the same value (dpkg-scanpackages calls SHA256sum
/// `SHA256` and MD5Sum `MD5sum`), and the fields that matter are all shared.
fn assert_same_on_shared_fields(ours: &Paragraph, theirs: &Paragraph) {
    let alias = |n: &str| match n.to_ascii_lowercase().as_str() {
        "sha256" => "sha256sum".to_string(),
        other => other.to_string(),
    };
    let map = |p: &Paragraph| -> BTreeMap<String, String> {
        p.fields()
            .map(|f| (alias(f.name()), f.value().to_string()))
            .collect()
    };
    let (a, b) = (map(ours), map(theirs));
    let mut shared = Vec::new();
    for (k, v) in &a {
        if let Some(w) = b.get(k) {
            assert_eq!(v, w, "field {k} differs");
            shared.push(k.as_str());
        }
    }
    for must in [
        "package",
        "version",
        "architecture",
        "maintainer",
        "depends",
        "filename",
        "size",
        "md5sum",
        "sha256sum",
        "description",
        "installed-size",
    ] {
        assert!(
            shared.contains(&must),
            "{must} not shared: ours {a:?} theirs {b:?}"
        );
    }
}
