//! The client side of the keyring (docs/trust-model.md §3–6): installing the first trust explicitly
//! (`prokit keyring init`, `prokit bootstrap --keyring`), refreshing it from the feeds
//! (`prokit keyring refresh`, see [`crate::client::Client::refresh_keyring`]), reporting on
//! it (`prokit keyring status`), and the feed trust a keyring gives `prokit update`: exactly
//! its active, unexpired feed keys, with every other key it knows refused with the reason.
//! The rules themselves live in `keyring-pkg`.

use std::fs;
use std::path::{Path, PathBuf};

use feeds::usign::Fingerprint;
use keyring_pkg::accept::{self, Refusal};
use keyring_pkg::apply::{self, ApplyError, ApplyReport};
use keyring_pkg::manifest::Status;
use keyring_pkg::package::{self, ReadFileError};
use keyring_pkg::signatures::SignedKeyring;

use crate::config::Config;
use crate::feed::Trust;

/// Why a keyring operation failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Package(#[from] ReadFileError),
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error(
        "keyring {0:?} is named in the configuration (option keyring) but not trusted yet: run `prokit keyring init --keyring FILE --root-fingerprint FP` first"
    )]
    NotTrusted(String),
    #[error("no keyring is configured: add `option keyring NAME` (prokit keyring init does)")]
    NotConfigured,
    #[error("no feed offers {package} (the keyring package of keyring {name})")]
    NoPackage { name: String, package: String },
}

/// Reads a keyring to trust: a keyring package (`*.ipk`), or a `keyring` manifest with its
/// signatures in `<FILE>.sig` (or `keyring.sig` beside a file named `keyring`).
pub fn read_source(path: &Path) -> Result<SignedKeyring, KeyringError> {
    if path.extension().is_some_and(|e| e == "ipk") {
        return Ok(package::read_keyring_package(path)?.current);
    }
    let file_err = |p: &Path, reason: String| KeyringError::File {
        path: p.to_path_buf(),
        reason,
    };
    let read = |p: &Path| -> Result<Vec<u8>, KeyringError> {
        let meta = fs::metadata(p).map_err(|e| file_err(p, e.to_string()))?;
        if meta.len() > 1 << 20 {
            return Err(file_err(p, "larger than 1 MiB: not a keyring".into()));
        }
        fs::read(p).map_err(|e| file_err(p, e.to_string()))
    };
    let manifest = read(path)?;
    let mut sig_path = PathBuf::from(format!("{}.sig", path.display()));
    if !sig_path.exists() && path.file_name().is_some_and(|n| n == "keyring") {
        sig_path = path.with_file_name("keyring.sig");
    }
    let sigs = read(&sig_path)?;
    SignedKeyring::parse(&manifest, &sigs).map_err(|e| file_err(path, e.to_string()))
}

/// Installs the first trust into `root`: the keyring at `source` must pass its own rules and
/// be signed by the root key the user confirmed (`root_fp`). Adds `option keyring NAME` to
/// the root's opkg.conf when missing.
pub fn init(
    root: &Path,
    source: &Path,
    root_fp: Fingerprint,
    now: i64,
) -> Result<ApplyReport, KeyringError> {
    let candidate = read_source(source)?;
    let verified = accept::accept_initial(&candidate, Some(root_fp), now)?;
    fs::create_dir_all(root).map_err(|e| KeyringError::File {
        path: root.to_path_buf(),
        reason: e.to_string(),
    })?;
    let lock = apply::lock(root)?;
    let report = apply::apply(&lock, &verified, now)?;
    name_in_config(root, candidate.name())?;
    Ok(report)
}

/// Makes sure `<root>/etc/opkg.conf` names keyring `name` (`option keyring NAME`). The file
/// is read and replaced through the root ([`safe_fs::Root`]), never through a symlink out.
pub fn name_in_config(root: &Path, name: &str) -> Result<(), KeyringError> {
    let path = root.join("etc/opkg.conf");
    let fail = |reason: String| KeyringError::File {
        path: path.clone(),
        reason,
    };
    let r = safe_fs::Root::open(root).map_err(|e| fail(e.to_string()))?;
    let bytes = r
        .read_file("etc/opkg.conf", 1 << 20)
        .map_err(|e| fail(e.to_string()))?
        .unwrap_or_default();
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
    let config =
        Config::parse(&text, &path.display().to_string()).map_err(|e| fail(e.to_string()))?;
    if config.option("keyring") == Some(name) {
        return Ok(());
    }
    let mut out: String = text
        .lines()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            !(w.len() >= 2 && w[0] == "option" && w[1] == "keyring")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("option keyring {name}\n"));
    r.write_atomic(
        "etc/opkg.conf",
        out.as_bytes(),
        safe_fs::WriteOptions::default(),
    )
    .map_err(|e| fail(e.to_string()))
}

/// The feed trust keyring `name` gives: its active, unexpired feed keys; every other key it
/// lists is refused with the reason.
pub fn trust(root: &Path, name: &str, now: i64) -> Result<Trust, KeyringError> {
    let k =
        apply::load_trusted(root, name)?.ok_or_else(|| KeyringError::NotTrusted(name.into()))?;
    let keyring = k.keyring();
    Ok(Trust {
        keys: accept::trusted_feed_keys(keyring, now)
            .into_iter()
            .cloned()
            .collect(),
        distrusted: accept::distrusted_keys(keyring, now)
            .into_iter()
            .map(|u| (u.fingerprint.to_string(), u.reason.to_string()))
            .collect(),
        require_signature: true,
        require_release: false,
        scope: None,
    })
}

/// One key line of `prokit keyring status`.
#[derive(Debug, Clone)]
pub struct KeyLine {
    pub fingerprint: String,
    pub role: String,
    pub status: String,
    /// A developer key's package-name scope (`luci-app-*, pbr`), if it has one.
    pub scope: Option<String>,
    pub not_after: Option<i64>,
    /// Active and expiring within the warning window (or already expired).
    pub expiring: bool,
}

/// What `prokit keyring status` reports about one trusted keyring.
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub name: String,
    pub serial: u64,
    pub date: i64,
    pub expires: i64,
    pub root_threshold: u32,
    pub keys: Vec<KeyLine>,
    /// The keyring itself expires within the window.
    pub expiring: bool,
}

impl StatusReport {
    /// True when nothing expires within the window.
    pub fn ok(&self) -> bool {
        !self.expiring && !self.keys.iter().any(|k| k.expiring)
    }
}

/// The trusted keyrings of `root`, with what expires within `warn_days` days of `now`.
pub fn status(root: &Path, warn_days: u32, now: i64) -> Result<Vec<StatusReport>, KeyringError> {
    let horizon = now + i64::from(warn_days) * 86400;
    let mut out = Vec::new();
    for name in apply::trusted_names(root)? {
        let Some(k) = apply::load_trusted(root, &name)? else {
            continue;
        };
        let keyring = k.keyring();
        let keys = keyring
            .keys()
            .map(|e| KeyLine {
                fingerprint: e.public_key.fingerprint().to_string(),
                role: e.role.to_string(),
                status: e.status.to_string(),
                scope: e.scope.as_ref().map(|s| s.to_string()),
                not_after: e.not_after,
                expiring: e.status == Status::Active && e.not_after.is_some_and(|t| t <= horizon),
            })
            .collect();
        out.push(StatusReport {
            name: name.clone(),
            serial: keyring.serial(),
            date: keyring.date(),
            expires: keyring.expires(),
            root_threshold: keyring.root_threshold(),
            keys,
            expiring: keyring.expires() <= horizon,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use feeds::usign::SecretKey;

    fn make(dir: &Path, now: i64) -> (SecretKey, SecretKey) {
        let root = SecretKey::generate(None).unwrap().0;
        let feed = SecretKey::generate(None).unwrap().0;
        keyring_pkg::workdir::init(
            dir,
            "test",
            std::slice::from_ref(&root),
            &[feed.public_key()],
            1,
            10 * 86400,
            now,
        )
        .unwrap();
        (root, feed)
    }

    #[test]
    fn init_trusts_the_feed_keys_and_names_the_keyring_in_opkg_conf() {
        let t = tempfile::tempdir().unwrap();
        let now = 1_800_000_000;
        let (root_key, feed) = make(&t.path().join("ring"), now);
        let root = t.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/opkg.conf"), "src/gz a http://a\n").unwrap();
        // A wrong root fingerprint is refused and nothing is trusted.
        let other = SecretKey::generate(None).unwrap().0.fingerprint();
        let e = init(&root, &t.path().join("ring/keyring"), other, now).unwrap_err();
        assert!(e.to_string().contains(&other.to_string()), "{e}");
        assert!(matches!(
            trust(&root, "test", now),
            Err(KeyringError::NotTrusted(_))
        ));
        init(
            &root,
            &t.path().join("ring/keyring"),
            root_key.fingerprint(),
            now,
        )
        .unwrap();
        let conf = fs::read_to_string(root.join("etc/opkg.conf")).unwrap();
        assert_eq!(conf, "src/gz a http://a\noption keyring test\n");
        let tr = trust(&root, "test", now).unwrap();
        assert_eq!(tr.keys.len(), 1);
        assert_eq!(tr.keys[0].fingerprint(), feed.fingerprint());
        // The root key signs keyrings, not feeds.
        assert!(
            tr.distrusted
                .iter()
                .any(|(fp, _)| *fp == root_key.fingerprint().to_string())
        );
        assert!(
            root.join("etc/opkg/keys")
                .join(feed.fingerprint().to_string())
                .is_file()
                || root
                    .join("etc/opkg/keys")
                    .join(feed.fingerprint().unpadded())
                    .is_file()
        );
    }

    #[test]
    fn status_warns_before_expiry() {
        let t = tempfile::tempdir().unwrap();
        let now = 1_800_000_000;
        let (root_key, _) = make(&t.path().join("ring"), now);
        let root = t.path().join("root");
        init(
            &root,
            &t.path().join("ring/keyring"),
            root_key.fingerprint(),
            now,
        )
        .unwrap();
        let r = status(&root, 5, now).unwrap();
        assert_eq!(r.len(), 1);
        assert!(r[0].ok(), "expires in 10 days, warning window 5");
        let r = status(&root, 30, now).unwrap();
        assert!(!r[0].ok() && r[0].expiring);
    }
}
