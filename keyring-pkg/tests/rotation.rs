//! The rotation story of docs/trust-model.md §7 end to end at library level: the maintainer's directory
//! (what `archman keyring` drives) → the keyring package → a client root (what `prokit keyring
//! init/refresh` does).

mod common;

use std::fs;
use std::path::Path;

use common::*;
use keyring_pkg::accept::{FeedKeyState, accept_initial, feed_key_state};
use keyring_pkg::apply::{apply, load_trusted, lock};
use keyring_pkg::package::{KeyringPackage, read_keyring_package};
use keyring_pkg::workdir;
use keyring_pkg::{Role, SignedKeyring};

fn build(dir: &Path, out: &Path, now: i64) -> KeyringPackage {
    let path = workdir::build(dir, out, 1_700_000_000, now).unwrap();
    read_keyring_package(&path).unwrap()
}

fn refresh_from(root: &Path, pkg: &KeyringPackage, now: i64) -> keyring_pkg::ApplyReport {
    let candidates: Vec<&SignedKeyring> = pkg.candidates().collect();
    refresh(root, candidates, now).unwrap()
}

#[test]
fn feed_key_rotation_add_publish_switch_revoke() {
    let maint = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let client = tempfile::tempdir().unwrap();
    let (d, root) = (maint.path(), client.path());
    let [r, a, b] = [key(), key(), key()];

    // Serial 1: root R, feed key A. The client bootstraps with R's fingerprint.
    workdir::init(
        d,
        "example",
        std::slice::from_ref(&r),
        &[a.public_key()],
        1,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    let pkg1 = build(d, out.path(), NOW);
    {
        let guard = lock(root).unwrap();
        let v = accept_initial(&pkg1.current, Some(r.fingerprint()), NOW).unwrap();
        let report = apply(&guard, &v, NOW).unwrap();
        assert_eq!((report.previous, report.serial), (None, 1));
    }
    assert_eq!(key_files(root), names_of(&[&a]));
    assert_eq!(
        fs::read(root.join("etc/opkg/keys").join(name_of(&a))).unwrap(),
        a.public_key().to_file_bytes()
    );

    // 1) Serial 2 adds feed key B, signed by the root; published.
    let change = workdir::add_key(d, Role::Feed, &b.public_key(), NOW + DAY).unwrap();
    assert_eq!(change.serial, 2);
    workdir::sign(d, &r, NOW + DAY).unwrap();
    let pkg2 = build(d, out.path(), NOW + DAY);
    assert!(out.path().join("example-keyring_2_all.ipk").exists());

    // 2) Clients refresh and learn B (A still trusted: the feed is still signed by it).
    let report = refresh_from(root, &pkg2, NOW + DAY);
    assert_eq!((report.previous, report.serial), (Some(1), 2));
    assert_eq!(key_files(root), names_of(&[&a, &b]));
    let trusted = load_trusted(root, "example").unwrap().unwrap();
    assert!(matches!(
        feed_key_state(trusted.keyring(), b.fingerprint(), NOW + DAY),
        FeedKeyState::Trusted(_)
    ));
    // Refreshing again: already at serial 2, nothing replaced.
    let again = refresh_from(root, &pkg2, NOW + DAY);
    assert!(!again.state_replaced);

    // 3) The feed switches to B (nothing to do in the keyring). 4) Serial 3 revokes A.
    workdir::revoke(d, a.fingerprint(), NOW + 2 * DAY).unwrap();
    workdir::sign(d, &r, NOW + 2 * DAY).unwrap();
    let pkg3 = build(d, out.path(), NOW + 2 * DAY);
    let report = refresh_from(root, &pkg3, NOW + 2 * DAY);
    assert_eq!(report.serial, 3);
    let mut removed = report.keys_removed.clone();
    removed.sort();
    let want: Vec<_> = names_of(&[&a])
        .iter()
        .map(|n| root.join("etc/opkg/keys").join(n))
        .collect();
    assert_eq!(removed, want);
    assert_eq!(key_files(root), names_of(&[&b]));
    let trusted = load_trusted(root, "example").unwrap().unwrap();
    let FeedKeyState::NotTrusted(why) = feed_key_state(trusted.keyring(), a.fingerprint(), NOW)
    else {
        panic!("revoked key still trusted")
    };
    assert_eq!(
        why.to_string(),
        format!(
            "key {} is not trusted: revoked in keyring example serial 3",
            a.fingerprint()
        )
    );

    // A client still at serial 1 jumps to 3 through the package's history.
    let late = tempfile::tempdir().unwrap();
    bootstrap(late.path(), &pkg1.current, r.fingerprint());
    let report = refresh_from(late.path(), &pkg3, NOW + 2 * DAY);
    assert_eq!((report.previous, report.serial), (Some(1), 3));
    assert_eq!(key_files(late.path()), names_of(&[&b]));

    // Offering the old package to an up-to-date client is a rollback: refused, nothing changes.
    let before = snapshot(root);
    let err = refresh(root, pkg2.candidates().collect::<Vec<_>>(), NOW + 2 * DAY).unwrap_err();
    assert!(format!("{err:?}").contains("Rollback"), "{err:?}");
    assert_eq!(snapshot(root), before);
}

#[test]
fn root_key_handover_with_two_of_three() {
    // Roots R1..R3 (2 of 3). Serial 2 replaces R2 and R3 by R4 and R5: the old holders and the
    // new ones each sign, separately, offline.
    let maint = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let client = tempfile::tempdir().unwrap();
    let (d, root) = (maint.path(), client.path());
    let roots = keys(5);
    let feed = key();
    workdir::init(
        d,
        "example",
        &roots[..3],
        &[feed.public_key()],
        2,
        YEAR as u64,
        NOW,
    )
    .unwrap();
    let pkg1 = build(d, out.path(), NOW);
    bootstrap(root, &pkg1.current, roots[0].fingerprint());

    workdir::add_key(d, Role::Root, &roots[3].public_key(), NOW).unwrap();
    workdir::add_key(d, Role::Root, &roots[4].public_key(), NOW).unwrap();
    workdir::retire(d, roots[1].fingerprint(), NOW).unwrap();
    workdir::retire(d, roots[2].fingerprint(), NOW).unwrap();
    // Old holders first: the keyring is not yet publishable (new threshold unmet).
    workdir::sign(d, &roots[1], NOW).unwrap();
    let s = workdir::sign(d, &roots[2], NOW).unwrap();
    assert!(s.previous.unwrap().is_met());
    assert!(!s.own.is_met());
    assert!(workdir::build(d, out.path(), 0, NOW).is_err());
    workdir::sign(d, &roots[3], NOW).unwrap();
    let s = workdir::sign(d, &roots[4], NOW).unwrap();
    assert!(s.own.is_met());
    let pkg2 = build(d, out.path(), NOW);
    assert_eq!(refresh_from(root, &pkg2, NOW).serial, 2);
    assert_eq!(key_files(root), names_of(&[&feed]));
}
