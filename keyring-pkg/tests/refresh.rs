//! Applying keyrings to a root as `prokit keyring refresh` does: every refusal leaves the root
//! unchanged; keys are synced (revoked keys removed whoever put them there, unrelated files
//! left alone); interrupted runs leave the old state; refreshes serialise on the lock.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::{Arc, Barrier};

use common::*;
use feeds::usign::SecretKey;
use keyring_pkg::accept::{accept_chain, accept_initial};
use keyring_pkg::apply::{self, ApplyError, KEYS_DIR, STATE_DIR, apply, load_trusted, lock};
use keyring_pkg::{Role, SignedKeyring, Status};

struct World {
    root: SecretKey,
    a: SecretKey,
    b: SecretKey,
    /// Serial 1 (A), 2 (+B), 3 (A revoked).
    chain: Vec<SignedKeyring>,
}

fn world() -> World {
    let [root, a, b] = [key(), key(), key()];
    let k1 = keyring(1, &[&root], &[&a]);
    let k2 = next(&k1, |k| add(k, &b, Role::Feed));
    let k3 = next(&k2, |k| set_status(k, &a, Status::Revoked));
    World {
        chain: vec![
            signed(&k1, &[&root]),
            signed(&k2, &[&root]),
            signed(&k3, &[&root]),
        ],
        root,
        a,
        b,
    }
}

fn keys_dir(root: &Path) -> std::path::PathBuf {
    root.join(KEYS_DIR)
}

#[test]
fn every_refusal_leaves_the_root_unchanged() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    bootstrap(root, &w.chain[0], w.root.fingerprint());
    refresh(root, [&w.chain[1]], NOW).unwrap();
    // Some other files in the keys directory, to be left as they are.
    fs::write(keys_dir(root).join("openwrt-release"), b"unrelated").unwrap();
    let before = snapshot(root);

    let evil = key();
    let k2 = w.chain[1].keyring();
    let attacks: Vec<(&str, Vec<SignedKeyring>)> = vec![
        ("rollback", vec![w.chain[0].clone()]),
        (
            "fork",
            vec![signed(
                &next(w.chain[0].keyring(), |k| add(k, &evil, Role::Feed)),
                &[&w.root],
            )],
        ),
        (
            "below threshold",
            vec![signed(&next(k2, |k| add(k, &evil, Role::Feed)), &[])],
        ),
        (
            "signed by a feed key",
            vec![signed(&next(k2, |k| add(k, &evil, Role::Feed)), &[&w.b])],
        ),
        (
            "signed by an unknown key",
            vec![signed(&next(k2, |k| add(k, &evil, Role::Feed)), &[&evil])],
        ),
        (
            "missing step",
            vec![signed(&next(&next(k2, |_| {}), |_| {}), &[&w.root])],
        ),
        (
            "expired",
            vec![signed(
                &next(k2, |k| {
                    k.set_date(NOW - 10 * DAY);
                    k.set_expires(NOW - DAY)
                }),
                &[&w.root],
            )],
        ),
        ("revoked key reactivated", {
            let k3 = w.chain[2].keyring();
            let k4 = next(k3, |k| set_status(k, &w.a, Status::Active));
            vec![w.chain[2].clone(), signed(&k4, &[&w.root])]
        }),
    ];
    for (what, offered) in &attacks {
        let err = refresh(root, offered, NOW);
        assert!(err.is_err(), "{what} was accepted");
        assert_eq!(snapshot(root), before, "{what} changed the root");
    }
}

#[test]
fn a_revoked_key_planted_by_another_tool_is_removed() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    bootstrap(root, &w.chain[0], w.root.fingerprint());
    refresh(root, [&w.chain[1], &w.chain[2]], NOW).unwrap();
    assert_eq!(key_files(root), names_of(&[&w.b]));
    // Another tool puts A back: under usign's name with other content, under the unpadded
    // name of usign before 2020, and under an unrelated name with A's real key file. An
    // unrelated key stays.
    let keys = keys_dir(root);
    fs::write(keys.join(name_of(&w.a)), b"garbage").unwrap();
    fs::write(keys.join(w.a.fingerprint().unpadded()), b"garbage").unwrap();
    fs::write(keys.join("copied-key"), w.a.public_key().to_file_bytes()).unwrap();
    let other = key().public_key();
    fs::write(
        keys.join(other.fingerprint().to_string()),
        other.to_file_bytes(),
    )
    .unwrap();
    // And corrupts B's file.
    fs::write(keys.join(name_of(&w.b)), b"corrupt").unwrap();

    // A refresh that finds nothing new still syncs the keys.
    let report = refresh(root, [&w.chain[2]], NOW).unwrap();
    assert!(!report.state_replaced);
    assert_eq!(report.keys_written, vec![w.b.fingerprint()]);
    let mut want = names_of(&[&w.b]);
    want.push(other.fingerprint().to_string());
    want.sort();
    assert_eq!(key_files(root), want);
    assert_eq!(
        fs::read(keys.join(name_of(&w.b))).unwrap(),
        w.b.public_key().to_file_bytes()
    );
}

#[test]
fn a_key_with_a_leading_zero_nibble_is_installed_padded_and_removed_under_both_names() {
    let root_key = key();
    let zero = SecretKey::from_seed([5; 32], "0b26f36ae0f4106d".parse().unwrap()).unwrap();
    let k1 = keyring(1, &[&root_key], &[&zero]);
    let k2 = next(&k1, |k| set_status(k, &zero, Status::Revoked));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    bootstrap(root, &signed(&k1, &[&root_key]), root_key.fingerprint());
    // One file, under the name usign -V -P looks up ("%016"PRIx64, usign main.c line 180),
    // with usign -G's comment (line 152).
    assert_eq!(key_files(root), ["0b26f36ae0f4106d"]);
    let file = fs::read_to_string(keys_dir(root).join("0b26f36ae0f4106d")).unwrap();
    assert!(
        file.starts_with("untrusted comment: public key 0b26f36ae0f4106d\n"),
        "{file}"
    );
    let keydir = feeds::usign::KeyDir::new(keys_dir(root));
    let sig = zero.sign(b"Packages").unwrap();
    assert_eq!(keydir.verify(b"Packages", &sig).unwrap(), zero.public_key());
    // A copy under the unpadded name (usign before 2020, or an earlier keyring package) is
    // left while the key is trusted, and removed with it.
    fs::write(keys_dir(root).join("b26f36ae0f4106d"), &file).unwrap();
    refresh(root, [&signed(&k1, &[&root_key])], NOW).unwrap();
    assert_eq!(key_files(root), ["0b26f36ae0f4106d", "b26f36ae0f4106d"]);
    let report = refresh(root, [&signed(&k2, &[&root_key])], NOW).unwrap();
    assert_eq!(report.keys_removed.len(), 2);
    assert!(key_files(root).is_empty());
}

#[test]
fn a_feed_key_that_expires_is_removed_at_the_next_refresh() {
    let [root_key, a, b] = [key(), key(), key()];
    let mut k = keyring(1, &[&root_key], &[&a, &b]);
    k.key_mut(a.fingerprint()).unwrap().not_after = Some(NOW + DAY);
    let one = signed(&k, &[&root_key]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    bootstrap(root, &one, root_key.fingerprint());
    assert_eq!(key_files(root), names_of(&[&a, &b]));
    let report = refresh(root, [&one], NOW + 2 * DAY).unwrap();
    assert_eq!(report.keys_removed.len(), names_of(&[&a]).len());
    assert_eq!(key_files(root), names_of(&[&b]));
}

#[test]
fn keys_dropped_from_the_keyring_are_removed() {
    let [root_key, a, b] = [key(), key(), key()];
    let k1 = keyring(1, &[&root_key], &[&a, &b]);
    let k2 = next(&k1, |k| set_status(k, &a, Status::Retired));
    let k3 = next(&k2, |k| {
        k.remove_key(a.fingerprint());
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    bootstrap(root, &signed(&k1, &[&root_key]), root_key.fingerprint());
    // Put A back by hand after it was retired, then apply the serial that no longer lists it.
    refresh(root, [&signed(&k2, &[&root_key])], NOW).unwrap();
    fs::write(
        keys_dir(root).join(name_of(&a)),
        a.public_key().to_file_bytes(),
    )
    .unwrap();
    refresh(root, [&signed(&k3, &[&root_key])], NOW).unwrap();
    assert_eq!(key_files(root), names_of(&[&b]));
}

#[test]
fn a_half_written_staging_directory_from_a_killed_run_is_ignored_then_cleaned() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    bootstrap(root, &w.chain[0], w.root.fingerprint());
    let state = root.join(STATE_DIR);
    // What kill -9 in the middle of writing serial 2 leaves: a partial staging directory, a
    // temporary link next to it, and a temporary key file.
    let staged = state.join(".example_2_00112233deadbeef");
    fs::create_dir(&staged).unwrap();
    fs::write(staged.join("keyring"), &w.chain[1].bytes()[..40]).unwrap();
    symlink(
        ".example_2_00112233deadbeef",
        state.join(".example_link_00112233deadbeef"),
    )
    .unwrap();
    let tmp_key = keys_dir(root).join(format!(".{}.tmp-0011223344556677", name_of(&w.b)));
    fs::write(&tmp_key, b"half").unwrap();
    // Readers still see serial 1, complete.
    assert_eq!(load_trusted(root, "example").unwrap().unwrap(), w.chain[0]);
    // The next run cleans up and applies.
    refresh(root, [&w.chain[1]], NOW).unwrap();
    assert_eq!(load_trusted(root, "example").unwrap().unwrap(), w.chain[1]);
    assert!(!staged.exists());
    assert!(!tmp_key.exists());
    let entries: Vec<String> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 3, "{entries:?}"); // .lock, example, one state directory
}

#[test]
fn a_stale_acceptance_is_refused_after_another_refresh_applied() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    bootstrap(root, &w.chain[0], w.root.fingerprint());
    // Process 1 reads serial 1 and accepts serial 2 without holding the lock...
    let stale = accept_chain(&w.chain[0], [&w.chain[1]], NOW).unwrap();
    // ...meanwhile process 2 applies serial 3.
    refresh(root, [&w.chain[1], &w.chain[2]], NOW).unwrap();
    let before = snapshot(root);
    let guard = lock(root).unwrap();
    let err = apply(&guard, &stale, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::StateChanged {
                expected: Some(1),
                found: Some(3),
                ..
            }
        ),
        "{err}"
    );
    drop(guard);
    assert_eq!(snapshot(root), before);
}

#[test]
fn concurrent_refreshes_serialise_on_the_lock() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    bootstrap(&root, &w.chain[0], w.root.fingerprint());
    let offered = Arc::new(vec![w.chain[1].clone(), w.chain[2].clone()]);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (root, offered, barrier) = (root.clone(), offered.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                refresh(&root, offered.iter(), NOW).map(|r| r.state_replaced)
            })
        })
        .collect();
    let replaced: Vec<bool> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(replaced.iter().filter(|r| **r).count(), 1, "{replaced:?}");
    assert_eq!(load_trusted(&root, "example").unwrap().unwrap(), w.chain[2]);
    assert_eq!(key_files(&root), names_of(&[&w.b]));
}

#[test]
fn try_lock_sees_a_held_lock() {
    let dir = tempfile::tempdir().unwrap();
    let held = lock(dir.path()).unwrap();
    assert!(apply::try_lock(dir.path()).unwrap().is_none());
    drop(held);
    assert!(apply::try_lock(dir.path()).unwrap().is_some());
}

#[test]
fn symlinks_in_the_root_cannot_lead_writes_outside_it() {
    let w = world();
    let host = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("etc")).unwrap();
    // An absolute link as a package could ship it: /etc/opkg -> <host dir>.
    symlink(host.path(), root.join("etc/opkg")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    symlink("/tmp", root.join("var")).unwrap();
    bootstrap(root, &w.chain[0], w.root.fingerprint());
    assert_eq!(
        fs::read_dir(host.path()).unwrap().count(),
        0,
        "wrote outside the root"
    );
    // The writes landed inside the root, where the links lead when the root is `/`.
    assert!(
        root.join(host.path().strip_prefix("/").unwrap())
            .join("keys")
            .is_dir()
    );
    assert!(root.join("tmp/lib/prokit/keyrings/example").exists());
    assert_eq!(load_trusted(root, "example").unwrap().unwrap(), w.chain[0]);
}

#[test]
fn first_trust_from_a_keyring_with_the_wrong_root_fingerprint_is_refused() {
    let w = world();
    let err = accept_initial(&w.chain[0], Some(w.a.fingerprint()), NOW).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not one of its active, unexpired root keys"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    assert!(load_trusted(dir.path(), "example").unwrap().is_none());
    assert!(apply::trusted_names(dir.path()).unwrap().is_empty());
    bootstrap(dir.path(), &w.chain[0], w.root.fingerprint());
    assert_eq!(apply::trusted_names(dir.path()).unwrap(), vec!["example"]);
}

#[test]
fn readers_without_the_lock_always_see_a_complete_keyring_while_applies_run() {
    let root_key = key();
    let mut k = keyring(1, &[&root_key], &[&key()]);
    let mut chain = vec![signed(&k, &[&root_key])];
    for _ in 0..200 {
        k = next(&k, |_| {});
        chain.push(signed(&k, &[&root_key]));
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    bootstrap(&root, &chain[0], root_key.fingerprint());
    let writer = {
        let (root, chain) = (root.clone(), chain.clone());
        std::thread::spawn(move || {
            for step in &chain[1..] {
                refresh(&root, [step], NOW).unwrap();
            }
        })
    };
    let mut seen = 1;
    while seen < 201 {
        let current = load_trusted(&root, "example").unwrap().unwrap();
        assert!(current.serial() >= seen, "went back from {seen}");
        assert_eq!(&current, &chain[current.serial() as usize - 1]);
        seen = current.serial();
    }
    writer.join().unwrap();
}
