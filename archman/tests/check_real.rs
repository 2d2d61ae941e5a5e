//! `archman::check` against real published feeds (`../shared/real/feeds`) and against
//! synthetic feeds built here, one test per kind of damage.

// Tests say on stderr what they skipped or measured.
#![allow(clippy::print_stderr)]

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use archman::check::{CheckError, CheckOptions, FindingKind, Report, Severity, Trust, check_feed};
use feeds::control::Paragraph;
use feeds::index::{HashFields, PackagesFile, gzip, sort_stanzas, stanza_for, write_packages};
use feeds::package::{Package, ReadOptions};
use feeds::release::{FileHash, Release};
use feeds::usign::{PublicKey, SecretKey};

/// The (kind, file) pairs of a report, to pin exactly what it found.
fn kinds(report: &Report) -> BTreeSet<(FindingKind, Option<String>)> {
    report
        .findings
        .iter()
        .map(|f| (f.kind, f.file.clone()))
        .collect()
}

fn pair(kind: FindingKind, file: &str) -> (FindingKind, Option<String>) {
    (kind, Some(file.to_string()))
}

fn message(report: &Report, kind: FindingKind) -> String {
    let found: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(found.len(), 1, "one {kind} finding expected in\n{report}");
    found[0].to_string()
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// Real feeds

/// What stangri's packages need from the OpenWrt base feeds (computed by hand from the
/// `Depends` fields: every name that is neither a package of the feed nor provided by one).
const STANGRI_EXTERNAL: [&str; 35] = [
    "coreutils-sleep",
    "curl",
    "https-dns-proxy",
    "ip-full",
    "ipset",
    "iptables",
    "iptables-mod-ipopt",
    "iptables-mod-tee",
    "iwinfo",
    "jshn",
    "jsonfilter",
    "kmod-ipt-ipset",
    "kmod-nft-core",
    "kmod-nft-nat",
    "libc",
    "luci-base",
    "luci-compat",
    "luci-lua-runtime",
    "luci-mod-admin-full",
    "nebula",
    "nebula-proto",
    "nftables-json",
    "python-light",
    "python-pip",
    "relayd",
    "resolveip",
    "rpcd-mod-ucode",
    "ucode",
    "ucode-mod-fs",
    "ucode-mod-ubus",
    "ucode-mod-uci",
    "ucode-mod-uloop",
    "uhttpd",
    "uhttpd-mod-ubus",
    "wget",
];

#[test]
fn stangri_feed_is_clean_with_its_base_dependencies_assumed() {
    let Some(real) = e2e::real_dir() else { return };
    let feed = real.join("feeds/stangri+repo.openwrt.melmac.ca");
    let key = real.join("keys/thirdparty/7ffc7517c4cc0c56");
    let keydir = real.join("keys/thirdparty");
    for trust in [Trust::Key(&key), Trust::Dir(&keydir)] {
        let opts = CheckOptions {
            trust: Some(trust),
            assume_installed: strings(&STANGRI_EXTERNAL),
            ..CheckOptions::default()
        };
        let report = check_feed(&feed, &opts).unwrap();
        assert!(report.findings.is_empty(), "{report}");
        assert!(report.ok());
        assert_eq!(report.packages, 31);
        assert_eq!(report.files_checked, 31);
        let verified: Vec<String> = report
            .signatures_verified
            .iter()
            .map(|(f, fp)| format!("{f} {fp}"))
            .collect();
        assert_eq!(verified, ["Packages.sig 7ffc7517c4cc0c56"]);
        let text = report.to_string();
        assert!(text.starts_with("OK: "), "{text}");
        assert!(text.contains("signatures verified: Packages.sig by key 7ffc7517c4cc0c56"));
    }
}

#[test]
fn stangri_feed_without_assumptions_lists_exactly_its_external_dependencies() {
    let Some(real) = e2e::real_dir() else { return };
    let feed = real.join("feeds/stangri+repo.openwrt.melmac.ca");
    let key = real.join("keys/thirdparty/7ffc7517c4cc0c56");
    let opts = CheckOptions {
        trust: Some(Trust::Key(&key)),
        ..CheckOptions::default()
    };
    let report = check_feed(&feed, &opts).unwrap();
    assert!(!report.ok());
    let mut missing = BTreeSet::new();
    for f in &report.findings {
        assert_eq!(f.kind, FindingKind::UnsatisfiedDependency, "{}", f.message);
        let (_, wanted) = f
            .message
            .split_once(": Depends: ")
            .expect("names the field");
        let name = wanted
            .strip_suffix(": no such package in the feed")
            .expect("says the feed has none");
        missing.insert(name.to_string());
    }
    let expected: BTreeSet<String> = STANGRI_EXTERNAL.iter().map(|s| s.to_string()).collect();
    assert_eq!(missing, expected);
    // In-feed dependencies (pbr, adblock-fast, vpnbypass, ...) are satisfied: one finding per
    // (package, external name), not more.
    let one =
        "Packages: luci-app-pbr 1.2.2-r14 (all): Depends: luci-base: no such package in the feed";
    assert!(report.findings.iter().any(|f| f.message == one), "{report}");
    assert!(
        !report.findings.iter().any(|f| f.message.contains(": pbr:")),
        "{report}"
    );
}

#[test]
fn up_n_atom_feed_reports_its_stale_and_misplaced_entries() {
    let Some(real) = e2e::real_dir() else { return };
    let feed = real.join("feeds/up-n-atom+repo.openwrt.eleventwentytwo.com");
    let key = feed.join("c54a05f852ed0b42");
    let opts = CheckOptions {
        trust: Some(Trust::Key(&key)),
        // What kmod-bnx2x needs from the base feed; the kernel relation must parse.
        assume_installed: strings(&[
            "kernel",
            "bnx2x-firmware",
            "kmod-lib-crc32c",
            "kmod-mdio",
            "kmod-ptp",
            "kmod-lib-zlib-inflate",
        ]),
        ..CheckOptions::default()
    };
    let report = check_feed(&feed, &opts).unwrap();
    let new = "kmod-bnx2x_5.10.138-1_x86_64.ipk";
    let old = "kmod-bnx2x_5.4.188-1_x86_64.ipk";
    let expected = BTreeSet::from([
        pair(FindingKind::FileMissing, &format!("staging_dir/repo/{new}")),
        pair(FindingKind::FileMissing, &format!("staging_dir/repo/{old}")),
        pair(FindingKind::NotInIndex, new),
        pair(FindingKind::NotInIndex, old),
    ]);
    assert_eq!(kinds(&report), expected, "{report}");
    assert_eq!(report.findings.len(), 4);
    assert_eq!(
        report.signatures_verified[0].0, "Packages.sig",
        "signature verifies"
    );
    assert_eq!(report.packages, 2);
    assert_eq!(report.files_checked, 0);
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "staging_dir/repo/{old}: missing (a file {old} exists at the feed root: size 302143, index says 302126)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "staging_dir/repo/{new}: missing (a file {new} exists at the feed root with the indexed Size and SHA256sum)"
        )),
        "{text}"
    );
    assert!(text.starts_with("error: "), "{text}");
}

#[test]
fn garycannex_feed_misses_domoticz_and_does_list_luci_app_iedussl() {
    let Some(real) = e2e::real_dir() else { return };
    let feed = real.join("feeds/GaryCannex+7688_repo");
    let opts = CheckOptions {
        assume_installed: strings(&[
            "libc",
            "libncurses",
            "coreutils",
            "boost",
            "boost-date_time",
            "boost-system",
            "boost-thread",
            "libcurl",
            "libmosquittopp",
            "libopenssl",
            "libopenzwave",
            "libsqlite3",
            "libstdcpp",
            "zlib",
            "luci-mod-admin-full",
            "luci-lib-nixio",
        ]),
        ..CheckOptions::default()
    };
    let report = check_feed(&feed, &opts).unwrap();
    let expected = BTreeSet::from([
        (FindingKind::SignatureUnchecked, None),
        pair(
            FindingKind::FileMissing,
            "domoticz_3.8153-4_mipsel_24kc.ipk",
        ),
    ]);
    assert_eq!(kinds(&report), expected, "{report}");
    let warning = &report.findings[0];
    assert_eq!(warning.severity, Severity::Warning);
    assert!(
        warning.message.contains("signatures not checked"),
        "{}",
        warning.message
    );
    // shared/real/README.md says the index lacks luci-app-ieduSSL: it does not. The index
    // lists it with the file's Size and SHA256sum, so it is neither a stray nor a mismatch.
    assert_eq!(report.packages, 13);
    assert_eq!(report.files_checked, 12);
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.message.contains("ieduSSL")),
        "{report}"
    );
    let packages = fs::read_to_string(feed.join("Packages")).unwrap();
    assert!(packages.contains("Filename: luci-app-ieduSSL_1.0-1_mipsel_24kc.ipk\n"));
}

#[test]
fn packages_gz_only_feed_signed_with_signify_verifies() {
    let Some(real) = e2e::real_dir() else { return };
    let feed = real.join("feeds/ac7v4+unregulatoried");
    let key = feed.join("unregulatory.pub");
    let opts = CheckOptions {
        trust: Some(Trust::Key(&key)),
        assume_installed: strings(&["libc"]),
        ..CheckOptions::default()
    };
    let report = check_feed(&feed, &opts).unwrap();
    // The signature covers the gunzipped index; the package itself was not published.
    assert_eq!(report.signatures_verified.len(), 1, "{report}");
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(
            FindingKind::FileMissing,
            "wireless-regdb_9999.0001_all.ipk"
        )]),
        "{report}"
    );
    assert!(report.findings[0].message.contains("listed in Packages.gz"));
}

// ---------------------------------------------------------------------------------------
// Synthetic feeds

/// Release `Date` of the synthetic feeds; checks run one day later.
const DATE: i64 = 1_795_315_200;
const NOW: i64 = DATE + 86_400;

/// A feed in a temporary directory (`<tmp>/feed`, so `<tmp>` is "outside"), with its key.
struct Feed {
    tmp: tempfile::TempDir,
    root: PathBuf,
    secret: SecretKey,
    public: PathBuf,
}

impl Feed {
    /// A feed of packages `(name, version, arch, extra control fields)`, indexed and signed,
    /// with a Release valid for a week.
    fn new(packages: &[(&str, &str, &str, &str)]) -> Feed {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("feed");
        fs::create_dir(&root).unwrap();
        let (secret, pk) = SecretKey::generate(None).unwrap();
        let public = tmp.path().join("feed.pub");
        fs::write(&public, pk.to_file_bytes()).unwrap();
        let feed = Feed {
            tmp,
            root,
            secret,
            public,
        };
        for (name, version, arch, extra) in packages {
            feed.add_package(name, version, arch, extra);
        }
        feed.publish(&feed.stanzas());
        feed
    }

    fn add_package(&self, name: &str, version: &str, arch: &str, extra: &str) -> String {
        let control = format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n{extra}Description: Test package {name}.\n"
        );
        let ipk = feeds::build::PackageBuilder::new(control)
            .file(&format!("usr/share/{name}/data"), 0o644, name.repeat(50))
            .build()
            .unwrap();
        let filename = format!("{name}_{version}_{arch}.ipk");
        fs::write(self.root.join(&filename), ipk).unwrap();
        filename
    }

    /// Index stanzas of every `.ipk` at the feed root.
    fn stanzas(&self) -> Vec<Paragraph> {
        let mut stanzas = Vec::new();
        for entry in fs::read_dir(&self.root).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".ipk") {
                let pkg = Package::open(&self.root.join(&name), &ReadOptions::default()).unwrap();
                stanzas.push(
                    stanza_for(
                        &pkg,
                        &name,
                        HashFields {
                            md5: false,
                            apt: true,
                        },
                    )
                    .unwrap(),
                );
            }
        }
        sort_stanzas(&mut stanzas);
        stanzas
    }

    /// Writes and signs Packages, Packages.gz, Release.
    fn publish(&self, stanzas: &[Paragraph]) {
        self.publish_bytes(&write_packages(stanzas));
    }

    fn publish_bytes(&self, packages: &[u8]) {
        self.write("Packages", packages);
        self.write("Packages.gz", &gzip(packages));
        self.sign("Packages");
        self.write_release(Some(DATE + 7 * 86_400));
    }

    fn write_release(&self, valid_until: Option<i64>) {
        let release = Release {
            archive: None,
            origin: Some("test".into()),
            label: Some("test".into()),
            date: DATE,
            valid_until,
            architectures: vec!["all".into(), "x86_64".into()],
            sha256: ["Packages", "Packages.gz"]
                .iter()
                .map(|name| self.hash_entry(name))
                .collect(),
        };
        self.write("Release", release.to_text().as_bytes());
        self.sign("Release");
    }

    fn hash_entry(&self, name: &str) -> FileHash {
        use sha2::Digest;
        let data = self.read(name);
        FileHash {
            sha256: format!("{:x}", sha2::Sha256::digest(&data)),
            size: data.len() as u64,
            name: name.to_string(),
        }
    }

    fn sign(&self, name: &str) {
        let sig = self.secret.sign(&self.read(name)).unwrap();
        self.write(&format!("{name}.sig"), &sig.to_file_bytes());
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).unwrap()
    }

    fn write(&self, name: &str, data: &[u8]) {
        let path = self.path(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    fn check_with(&self, trust: Option<Trust<'_>>, assume: &[&str]) -> Report {
        let opts = CheckOptions {
            trust,
            assume_installed: strings(assume),
            now: Some(NOW),
            ..CheckOptions::default()
        };
        check_feed(&self.root, &opts).unwrap()
    }

    fn check(&self) -> Report {
        self.check_with(Some(Trust::Key(&self.public)), &[])
    }
}

/// A small feed whose dependencies all resolve inside it.
fn clean_feed() -> Feed {
    Feed::new(&[
        (
            "kernel",
            "5.10.138-1-789565457d2f287975d7d943ddbe4eeb",
            "x86_64",
            "",
        ),
        (
            "kmod-foo",
            "5.10.138-1",
            "x86_64",
            "Depends: kernel (=5.10.138-1-789565457d2f287975d7d943ddbe4eeb), libfoo (>= 1.2)\n",
        ),
        ("libfoo", "1.2.3-1", "x86_64", ""),
        ("foo-data", "1.0", "all", "Pre-Depends: libfoo:any\n"),
    ])
}

#[test]
fn clean_synthetic_feed_passes() {
    let feed = clean_feed();
    let report = feed.check();
    assert!(report.findings.is_empty(), "{report}");
    assert!(report.ok());
    assert_eq!((report.packages, report.files_checked), (4, 4));
    let files: Vec<&str> = report
        .signatures_verified
        .iter()
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(files, ["Packages.sig", "Release.sig"]);

    // The same with a key directory, usign style (the key file named by its fingerprint).
    let keys = feed.tmp.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let fp = PublicKey::read_path(&feed.public).unwrap().fingerprint();
    fs::copy(&feed.public, keys.join(fp.to_string())).unwrap();
    let report = feed.check_with(Some(Trust::Dir(&keys)), &[]);
    assert!(report.findings.is_empty(), "{report}");
    assert_eq!(report.signatures_verified.len(), 2);

    let json = report.to_json();
    assert!(json.starts_with("{\"feed\":"), "{json}");
    assert!(
        json.contains("\"ok\":true,\"packages\":4,\"files_checked\":4,\"errors\":0,\"warnings\":0")
    );
    assert!(json.contains(&format!("{{\"file\":\"Release.sig\",\"key\":\"{fp}\"}}")));
    assert!(json.ends_with("\"findings\":[]}"), "{json}");
}

#[test]
fn without_a_key_signatures_are_reported_unchecked_but_ok() {
    let feed = clean_feed();
    let report = feed.check_with(None, &[]);
    assert!(report.ok(), "{report}");
    assert_eq!(
        kinds(&report),
        BTreeSet::from([(FindingKind::SignatureUnchecked, None)])
    );
    assert_eq!(report.findings[0].severity, Severity::Warning);
    assert_eq!(
        report.findings[0].message,
        "signatures not checked: no key given (-p or -P); the feed has Packages.sig and Release.sig"
    );
    let text = report.to_string();
    assert!(text.contains("signatures NOT verified"), "{text}");
    assert!(text.contains("0 errors, 1 warning\n"), "{text}");
    let json = report.to_json();
    assert!(json.contains("\"ok\":true"), "{json}");
    assert!(json.contains(
        "\"severity\":\"warning\",\"kind\":\"signature-unchecked\",\"file\":null,\"package\":null"
    ));
}

#[test]
fn tampered_packages_fails_its_signature_and_release() {
    let feed = clean_feed();
    let text = String::from_utf8(feed.read("Packages")).unwrap();
    let evil = text.replace("Test package libfoo", "Evil package libfoo");
    assert_ne!(text, evil);
    feed.write("Packages", evil.as_bytes());
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([
            pair(FindingKind::SignatureInvalid, "Packages.sig"),
            pair(FindingKind::IndexMismatch, "Packages.gz"),
            pair(FindingKind::ReleaseMismatch, "Packages"),
        ]),
        "{report}"
    );
    let sig = message(&report, FindingKind::SignatureInvalid);
    assert!(
        sig.starts_with("Packages.sig: bad signature by key"),
        "{sig}"
    );
    let rel = message(&report, FindingKind::ReleaseMismatch);
    assert!(rel.starts_with("Release: Packages: SHA256 "), "{rel}");
    assert!(rel.contains(", Release says "), "{rel}");
}

#[test]
fn tampered_release_fails_its_signature() {
    let feed = clean_feed();
    let text = String::from_utf8(feed.read("Release")).unwrap();
    feed.write(
        "Release",
        text.replace("Origin: test", "Origin: evil").as_bytes(),
    );
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::SignatureInvalid, "Release.sig")]),
        "{report}"
    );
    assert!(message(&report, FindingKind::SignatureInvalid).contains("(over Release)"));
}

#[test]
fn release_size_or_hash_mismatch_for_packages_gz() {
    // Packages.gz recompressed: still the same index, but not what Release lists.
    let feed = clean_feed();
    let listed = feed.hash_entry("Packages.gz").size;
    let packages = feed.read("Packages");
    // A second, empty gzip member: gunzips to the same index, but other bytes.
    let mut enc = gzip(&packages);
    enc.extend_from_slice(&gzip(b""));
    feed.write("Packages.gz", &enc);
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::ReleaseMismatch, "Packages.gz")]),
        "{report}"
    );
    assert_eq!(
        message(&report, FindingKind::ReleaseMismatch),
        format!(
            "Release: Packages.gz: size {}, Release says {listed}",
            enc.len()
        )
    );

    // A (signed) Release listing the right size but another SHA-256.
    let feed = clean_feed();
    let text = String::from_utf8(feed.read("Release")).unwrap();
    let real = feed.hash_entry("Packages.gz").sha256;
    let fake = "0".repeat(64);
    feed.write("Release", text.replace(&real, &fake).as_bytes());
    feed.sign("Release");
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::ReleaseMismatch, "Packages.gz")]),
        "{report}"
    );
    assert_eq!(
        message(&report, FindingKind::ReleaseMismatch),
        format!("Release: Packages.gz: SHA256 {real}, Release says {fake}")
    );
}

#[test]
fn release_must_list_the_index_files_and_not_be_expired() {
    let feed = clean_feed();
    feed.write_release(Some(DATE + 3600));
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::ReleaseExpired, "Release")]),
        "{report}"
    );
    assert_eq!(
        message(&report, FindingKind::ReleaseExpired),
        "Release: expired: Valid-Until Sun, 22 Nov 2026 03:40:00 UTC is in the past (now Mon, 23 Nov 2026 02:40:00 UTC)"
    );

    // A Release that omits Packages.gz.
    feed.write_release(Some(DATE + 7 * 86_400));
    let text = String::from_utf8(feed.read("Release")).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.ends_with(" Packages.gz"))
        .map(|l| format!("{l}\n"))
        .collect();
    feed.write("Release", kept.as_bytes());
    feed.sign("Release");
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::ReleaseUnlisted, "Packages.gz")]),
        "{report}"
    );
}

#[test]
fn modified_package_is_a_hash_mismatch() {
    let feed = clean_feed();
    let name = "libfoo_1.2.3-1_x86_64.ipk";
    let mut data = feed.read(name);
    let last = data.len() - 1;
    data[last] ^= 0xff;
    feed.write(name, &data);
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::HashMismatch, name)]),
        "{report}"
    );
    let msg = message(&report, FindingKind::HashMismatch);
    assert!(msg.starts_with(&format!("{name}: SHA256 ")), "{msg}");
    assert!(
        msg.ends_with("; listed in Packages for libfoo 1.2.3-1"),
        "{msg}"
    );
    assert_eq!(report.findings[0].package.as_deref(), Some("libfoo"));
}

#[test]
fn truncated_package_is_a_size_mismatch() {
    let feed = clean_feed();
    let name = "libfoo_1.2.3-1_x86_64.ipk";
    let data = feed.read(name);
    feed.write(name, &data[..100]);
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::SizeMismatch, name)]),
        "{report}"
    );
    assert_eq!(
        message(&report, FindingKind::SizeMismatch),
        format!(
            "{name}: size 100, index says {}; listed in Packages for libfoo 1.2.3-1",
            data.len()
        )
    );
}

#[test]
fn missing_package_file() {
    let feed = clean_feed();
    fs::remove_file(feed.path("foo-data_1.0_all.ipk")).unwrap();
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::FileMissing, "foo-data_1.0_all.ipk")]),
        "{report}"
    );
    assert_eq!(
        message(&report, FindingKind::FileMissing),
        "foo-data_1.0_all.ipk: missing; listed in Packages for foo-data 1.0"
    );
    assert_eq!(report.files_checked, 3);
}

/// opkg-lede (OpenWrt's opkg, 38eccbb) has no `ar` reader: `deb_extract` pipes the whole
/// package file through `gzip -d` and walks a tar (libbb/unarchive.c:560-564). An ar `.ipk`
/// thus yields an empty control file, which `pkg_parse_from_stream` turns into 1
/// (libopkg/pkg_parse.c:389-392) and `pkg_init_from_file` reports as "Malformed package
/// file" (libopkg/pkg.c:398); installed from a feed, `pkg_extract_data_files_to_dir`
/// (libopkg/pkg_extract.c:57-66, called at libopkg/opkg_install.c:1081) extracts nothing and
/// returns 0 (`*err = 0`, libbb/unarchive.c:532), so opkg reports success with no files.
#[test]
fn an_ar_ipk_is_a_warning_that_opkg_lede_cannot_install_it() {
    let feed = clean_feed();
    let ar = |name: &str| {
        feeds::build::PackageBuilder::new(format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\nDescription: Test package {name}.\n"
        ))
        .container(feeds::package::Container::Ar)
        .file(&format!("usr/share/{name}/data"), 0o644, name.repeat(50))
        .build()
        .unwrap()
    };
    // An ar .ipk, and an ar .deb (the container apt expects: no warning).
    feed.write("pool/arpkg_1.0_all.ipk", &ar("arpkg"));
    feed.write("arpkg-deb_1.0_all.deb", &ar("arpkg-deb"));
    let mut stanzas = feed.stanzas();
    for name in ["pool/arpkg_1.0_all.ipk", "arpkg-deb_1.0_all.deb"] {
        let pkg = Package::open(&feed.path(name), &ReadOptions::default()).unwrap();
        let fields = HashFields {
            md5: false,
            apt: true,
        };
        stanzas.push(stanza_for(&pkg, name, fields).unwrap());
    }
    sort_stanzas(&mut stanzas);
    feed.publish(&stanzas);
    let report = feed.check();
    assert!(report.ok(), "{report}");
    // The gzipped-tar .ipk files of the clean feed are not reported; the ar .ipk is, once.
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::ArIpk, "pool/arpkg_1.0_all.ipk")]),
        "{report}"
    );
    assert_eq!(report.findings[0].severity, Severity::Warning);
    assert_eq!(report.findings[0].package.as_deref(), Some("arpkg"));
    let msg = message(&report, FindingKind::ArIpk);
    assert!(
        msg.starts_with(
            "pool/arpkg_1.0_all.ipk: an ar .ipk, which OpenWrt's opkg (opkg-lede) cannot install"
        ) && msg.contains("Malformed package file")
            && msg.contains("installs no files")
            && msg.ends_with("; listed in Packages for arpkg 1.0"),
        "{msg}"
    );
    assert_eq!(report.files_checked, 6);
    let json = report.to_json();
    assert!(json.contains("\"kind\":\"ar-ipk\""), "{json}");
}

#[test]
fn stray_package_files_are_not_in_the_index() {
    let feed = clean_feed();
    feed.write("pool/extra/stray_1.0_all.ipk", b"whatever");
    feed.write("other.deb", b"whatever");
    feed.write("notes.txt", b"not a package");
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([
            pair(FindingKind::NotInIndex, "other.deb"),
            pair(FindingKind::NotInIndex, "pool/extra/stray_1.0_all.ipk"),
        ]),
        "{report}"
    );
    assert!(report.findings.iter().any(|f| f.message
        == "pool/extra/stray_1.0_all.ipk: package file not in the index (no stanza has this Filename)"));

    // archman index's own files in the feed (its lock, a journal and temporaries of a run in
    // progress, the cache older versions kept there) are not package files.
    let feed = clean_feed();
    for name in [
        ".archman-lock",
        ".archman-cache",
        ".archman-publish",
        ".archman-tmp.123-0badcafe.Packages",
    ] {
        feed.write(name, b"");
    }
    let report = feed.check();
    assert!(report.findings.is_empty(), "{report}");

    // A package file whose name is not UTF-8: no Filename can name it, and the report says so.
    use std::os::unix::ffi::OsStrExt;
    let feed = clean_feed();
    let raw = std::ffi::OsStr::from_bytes(b"caf\xe9_1.0_all.ipk");
    fs::create_dir_all(feed.path("pool")).unwrap();
    fs::write(feed.path("pool").join(raw), b"whatever").unwrap();
    let report = feed.check();
    assert_eq!(
        message(&report, FindingKind::NotInIndex),
        "pool/caf\u{fffd}_1.0_all.ipk: package file not in the index: its name \"pool/caf\\xE9_1.0_all.ipk\" is not valid UTF-8, so no Filename can name it (archman index refuses it; rename the file)"
    );
    assert!(!report.ok());

    // OpenWrt's index rule (archman index --profile openwrt) leaves kernel_* and libc_* out
    // on purpose: a warning, not an error.
    let feed = clean_feed();
    feed.write("kernel_5.10.138-1_x86_64.ipk", b"whatever");
    let report = feed.check();
    assert!(report.ok(), "{report}");
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(
            FindingKind::NotInIndex,
            "kernel_5.10.138-1_x86_64.ipk"
        )])
    );
    assert_eq!(report.findings[0].severity, Severity::Warning);
}

#[test]
fn filename_leaving_the_feed_is_refused_and_nothing_outside_is_read() {
    let feed = clean_feed();
    let name = "foo-data_1.0_all.ipk";
    // Move the package out of the feed and point the (signed) index at it.
    let outside = feed.tmp.path().join("outside.ipk");
    fs::rename(feed.path(name), &outside).unwrap();
    let mut stanzas = PackagesFile::parse(&feed.read("Packages")).unwrap().stanzas;
    for s in &mut stanzas {
        if s.get("Filename") == Some(name) {
            s.set("Filename", "../outside.ipk").unwrap();
        }
    }
    feed.publish(&stanzas);
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::FilenameOutside, "../outside.ipk")]),
        "{report}"
    );
    let msg = message(&report, FindingKind::FilenameOutside);
    assert!(
        msg.starts_with("Packages: foo-data 1.0: Filename \"../outside.ipk\" leaves the feed"),
        "{msg}"
    );
    assert!(msg.ends_with("; not read"), "{msg}");
    // Only the three packages inside were opened; the outside one would have matched.
    assert_eq!(report.files_checked, 3);

    // The same through a symlink inside the feed.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("../outside.ipk", feed.path("link.ipk")).unwrap();
        for s in &mut stanzas {
            if s.get("Filename") == Some("../outside.ipk") {
                s.set("Filename", "link.ipk").unwrap();
            }
        }
        feed.publish(&stanzas);
        let report = feed.check();
        assert_eq!(
            kinds(&report),
            BTreeSet::from([pair(FindingKind::FilenameOutside, "link.ipk")]),
            "{report}"
        );
        let msg = message(&report, FindingKind::FilenameOutside);
        let target = outside.canonicalize().unwrap();
        assert_eq!(
            msg,
            format!(
                "link.ipk: resolves to {}, outside the feed; not read; listed in Packages for foo-data 1.0",
                target.display()
            )
        );
        assert_eq!(report.files_checked, 3);
    }
}

#[test]
fn unsatisfiable_versioned_dependency_shows_wanted_and_available() {
    let feed = Feed::new(&[
        (
            "a",
            "1.0",
            "x86_64",
            "Depends: b (>= 2), libc (>= 99), c | d (<< 1)\n",
        ),
        ("b", "1.0", "x86_64", ""),
        ("c", "3", "arm", ""),
        ("d", "1.5", "all", ""),
    ]);
    let report = feed.check_with(Some(Trust::Key(&feed.public)), &["libc"]);
    let found: Vec<&str> = report.findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(
        found,
        [
            "Packages: a 1.0 (x86_64): Depends: b (>= 2) but the feed has b 1.0",
            "Packages: a 1.0 (x86_64): Depends: c | d (<< 1): c but the feed has c 3 for arm only; d (<< 1) but the feed has d 1.5",
        ],
        "{report}"
    );
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.kind == FindingKind::UnsatisfiedDependency
                && f.package.as_deref() == Some("a")
                && f.file.as_deref() == Some("Packages"))
    );

    // A name absent from the feed.
    let feed = Feed::new(&[("a", "1.0", "all", "Depends: nowhere\n")]);
    let report = feed.check();
    assert_eq!(
        message(&report, FindingKind::UnsatisfiedDependency),
        "Packages: a 1.0 (all): Depends: nowhere: no such package in the feed"
    );

    // A relation that does not parse.
    let feed = Feed::new(&[("a", "1.0", "all", "Depends: b (>= )\n")]);
    let report = feed.check();
    assert_eq!(
        message(&report, FindingKind::BadRelation),
        "Packages: a 1.0 (all): Depends: missing version after the operator in \"b (>= )\""
    );
}

#[test]
fn dependencies_satisfied_through_provides() {
    let feed = Feed::new(&[
        ("app", "1.0", "x86_64", "Depends: virt, vv (>= 2), plain\n"),
        (
            "impl",
            "1.0",
            "x86_64",
            "Provides: virt, vv (= 2.5), plain\n",
        ),
    ]);
    let report = feed.check();
    assert!(report.findings.is_empty(), "{report}");

    // An unversioned Provides does not satisfy a versioned relation.
    let feed = Feed::new(&[
        ("app", "1.0", "all", "Depends: virt (>= 1)\n"),
        ("impl", "2.0", "all", "Provides: virt\n"),
    ]);
    let report = feed.check();
    assert_eq!(
        message(&report, FindingKind::UnsatisfiedDependency),
        "Packages: app 1.0 (all): Depends: virt (>= 1) but the feed has virt (unversioned) provided by impl 2.0"
    );
}

#[test]
fn duplicate_stanzas_are_an_error() {
    let feed = clean_feed();
    let mut stanzas = feed.stanzas();
    let dup = stanzas
        .iter()
        .find(|s| s.get("Package") == Some("libfoo"))
        .unwrap()
        .clone();
    stanzas.push(dup);
    sort_stanzas(&mut stanzas);
    feed.publish(&stanzas);
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(
            FindingKind::DuplicateStanza,
            "libfoo_1.2.3-1_x86_64.ipk"
        )]),
        "{report}"
    );
    assert_eq!(
        message(&report, FindingKind::DuplicateStanza),
        "Packages: libfoo 1.2.3-1 (x86_64) is listed twice (stanzas 4 and 5, Filenames libfoo_1.2.3-1_x86_64.ipk and libfoo_1.2.3-1_x86_64.ipk)"
    );
}

#[test]
fn signature_by_an_unknown_key_fails_with_a_key_dir() {
    let feed = clean_feed();
    let keys = feed.tmp.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let (_, other) = SecretKey::generate(None).unwrap();
    fs::write(
        keys.join(other.fingerprint().to_string()),
        other.to_file_bytes(),
    )
    .unwrap();
    let report = feed.check_with(Some(Trust::Dir(&keys)), &[]);
    assert_eq!(
        kinds(&report),
        BTreeSet::from([
            pair(FindingKind::SignatureInvalid, "Packages.sig"),
            pair(FindingKind::SignatureInvalid, "Release.sig"),
        ]),
        "{report}"
    );
    let fp = feed.secret.fingerprint();
    assert_eq!(
        report.findings[0].message,
        format!(
            "Packages.sig: no public key {fp} in {} (over Packages)",
            keys.display()
        )
    );
    assert!(report.signatures_verified.is_empty());

    // With -p, a key that is not the signer's.
    let wrong = feed.tmp.path().join("wrong.pub");
    fs::write(&wrong, other.to_file_bytes()).unwrap();
    let report = feed.check_with(Some(Trust::Key(&wrong)), &[]);
    assert!(
        report.findings[0].message.contains(&format!(
            "signature is by key {fp}, but the public key is {}",
            other.fingerprint()
        )),
        "{report}"
    );
}

#[test]
fn missing_or_garbage_signatures_with_a_key() {
    let feed = clean_feed();
    fs::remove_file(feed.path("Packages.sig")).unwrap();
    feed.write("Release.sig", b"<html>not found</html>\n");
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([
            pair(FindingKind::SignatureMissing, "Packages.sig"),
            pair(FindingKind::SignatureInvalid, "Release.sig"),
        ]),
        "{report}"
    );
    assert_eq!(
        report.findings[0].message,
        "Packages.sig: missing; a key was given, so Packages must be signed"
    );
    assert!(
        report.findings[1]
            .message
            .starts_with("Release.sig: signature: ")
    );

    // Release.sig left without its Release.
    let feed = clean_feed();
    fs::remove_file(feed.path("Release")).unwrap();
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::ReleaseInvalid, "Release")]),
        "{report}"
    );
}

#[test]
fn index_files_must_agree_and_parse() {
    // Only Packages.gz: it is the index.
    let feed = clean_feed();
    let packages = feed.read("Packages");
    fs::remove_file(feed.path("Packages")).unwrap();
    fs::remove_file(feed.path("Release")).unwrap();
    fs::remove_file(feed.path("Release.sig")).unwrap();
    let report = feed.check();
    assert!(report.findings.is_empty(), "{report}");
    assert_eq!(report.packages, 4);

    // A manifest that disagrees, and a Packages.gz that is not gzip.
    feed.write("Packages", &packages);
    let text = String::from_utf8(packages.clone()).unwrap();
    feed.write(
        "Packages.manifest",
        text.replace("Version: 1.0\n", "Version: 1.1\n").as_bytes(),
    );
    feed.write("Packages.gz", b"not gzip");
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([
            pair(FindingKind::IndexUnreadable, "Packages.gz"),
            pair(FindingKind::ManifestMismatch, "Packages.manifest"),
        ]),
        "{report}"
    );
    let manifest: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::ManifestMismatch)
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(
        manifest,
        [
            "Packages.manifest: lists foo-data 1.1 (all) as foo-data_1.0_all.ipk, which Packages does not",
            "Packages.manifest: lacks foo-data 1.0 (all) as foo-data_1.0_all.ipk, which Packages lists",
        ]
    );

    // A syntax error names the file and line.
    let feed = clean_feed();
    let mut bad = feed.read("Packages");
    bad.extend_from_slice(b"Package: x\nno colon here\n");
    feed.publish_bytes(&bad);
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::IndexSyntax, "Packages")]),
        "{report}"
    );
    let line = String::from_utf8(bad).unwrap().lines().count();
    assert_eq!(
        message(&report, FindingKind::IndexSyntax),
        format!("Packages: line {line}: line has no colon (expected `Field: value`)")
    );

    // libfoo's stanza with only apt's SHA256 is complete; with neither hash it is not.
    let feed = clean_feed();
    let text = String::from_utf8(feed.read("Packages")).unwrap();
    let without = |prefix: &str| {
        let mut out = String::new();
        let mut in_libfoo = false;
        for l in text.lines() {
            if l.starts_with("Package: ") {
                in_libfoo = l == "Package: libfoo";
            }
            if !(in_libfoo && l.starts_with(prefix)) {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    };
    feed.publish_bytes(without("SHA256sum:").as_bytes());
    let report = feed.check();
    assert!(report.findings.is_empty(), "{report}");
    feed.publish_bytes(without("SHA256").as_bytes());
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::BadStanza, "libfoo_1.2.3-1_x86_64.ipk")]),
        "{report}"
    );
    assert_eq!(
        message(&report, FindingKind::BadStanza),
        "Packages: stanza 4: stanza for \"libfoo\": missing SHA256sum field"
    );
}

#[test]
fn cannot_start_without_a_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = CheckOptions::default();
    let e = check_feed(&tmp.path().join("nope"), &opts).unwrap_err();
    assert!(matches!(e, CheckError::Dir { .. }), "{e}");
    let e = check_feed(tmp.path(), &opts).unwrap_err();
    assert!(matches!(e, CheckError::NoIndex(_)), "{e}");
    assert!(
        e.to_string()
            .ends_with(": no Packages or Packages.gz (not a feed?)")
    );
    fs::write(tmp.path().join("Packages"), "").unwrap();
    let key = tmp.path().join("missing.pub");
    let opts = CheckOptions {
        trust: Some(Trust::Key(&key)),
        ..CheckOptions::default()
    };
    assert!(matches!(
        check_feed(tmp.path(), &opts),
        Err(CheckError::Key(_))
    ));
}

#[cfg(unix)]
#[test]
fn a_fifo_in_place_of_a_package_is_reported_not_opened() {
    let feed = clean_feed();
    let name = "foo-data_1.0_all.ipk";
    fs::remove_file(feed.path(name)).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(feed.path(name))
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        eprintln!("SKIPPED: mkfifo is not available");
        return;
    }
    // Opening a FIFO for reading would block this test forever.
    let report = feed.check();
    assert_eq!(
        kinds(&report),
        BTreeSet::from([pair(FindingKind::FileUnreadable, name)]),
        "{report}"
    );
    assert_eq!(
        message(&report, FindingKind::FileUnreadable),
        format!("{name}: not a regular file; listed in Packages for foo-data 1.0")
    );
}
