//! Developer signatures on package files (`archman sign-package`, `archman verify-package`;
//! docs/trust-model.md §9): a detached usign signature `PKG.ipk.sig` over the package file's
//! bytes, checked either against plain keys (like `usign -V`) or against a keyring, where it
//! counts only by an active developer key whose scope covers the package's name.

use std::path::{Path, PathBuf};

use feeds::package::{Package, ReadOptions, read_package};
use feeds::usign::{self, Fingerprint, KeyDir, PublicKey, SecretKey, Signature};
use keyring_pkg::{DeveloperError, Keyring};

use crate::keys::default_sig_path;

/// Signing or checking a package signature failed; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum DevSigError {
    #[error(transparent)]
    Read(safe_fs::FsError),
    #[error("{}: no such file", path.display())]
    Missing { path: PathBuf },
    #[error("{}: not a package: {reason}", path.display())]
    NotAPackage { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Signature {
        path: PathBuf,
        #[source]
        source: usign::Error,
    },
    #[error("{}: {source}", path.display())]
    Verify {
        path: PathBuf,
        #[source]
        source: usign::VerifyError,
    },
    #[error("{}: {source}", path.display())]
    Developer {
        path: PathBuf,
        #[source]
        source: DeveloperError,
    },
    #[error(transparent)]
    Key(#[from] usign::Error),
}

/// What a package signature is checked against.
pub enum PackageTrust<'a> {
    /// One public key (`-p`): any signature by it.
    Key(&'a PublicKey),
    /// A key directory (`-P`): any signature by a key in it.
    Dir(&'a Path),
    /// A keyring: an active developer key whose scope covers the package (`--keyring`).
    Keyring(&'a Keyring, i64),
}

/// A package file read whole, with the identity its control file gives.
pub struct PackageFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub package: Package,
}

impl std::fmt::Debug for PackageFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageFile")
            .field("path", &self.path)
            .field("bytes", &self.bytes.len())
            .field("package", &self.package.name())
            .finish()
    }
}

/// The largest package file signed or checked (the index's own bound).
const MAX_PACKAGE: u64 = 1 << 30;

/// Reads the package file `path`: it must parse as a package (ar or tar.gz `.ipk`, `.deb`).
pub fn read_package_file(path: &Path) -> Result<PackageFile, DevSigError> {
    let bytes = safe_fs::read_bounded(path, MAX_PACKAGE)
        .map_err(DevSigError::Read)?
        .ok_or_else(|| DevSigError::Missing {
            path: path.to_path_buf(),
        })?;
    let package = read_package(&bytes[..], &ReadOptions::default(), None).map_err(|e| {
        DevSigError::NotAPackage {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    Ok(PackageFile {
        path: path.to_path_buf(),
        bytes,
        package,
    })
}

/// Signs the package file `pkg` with `key`, writing `<pkg>.sig` (atomically); returns the
/// package read and the signature file.
pub fn sign_package(key: &SecretKey, pkg: &Path) -> Result<(PackageFile, PathBuf), DevSigError> {
    let file = read_package_file(pkg)?;
    let sig_path = default_sig_path(pkg);
    key.sign(&file.bytes)?
        .write_path(&sig_path)
        .map_err(|source| DevSigError::Signature {
            path: sig_path.clone(),
            source,
        })?;
    Ok((file, sig_path))
}

/// Checks the signature `sig` (default `<pkg>.sig`) over the package file `pkg`; returns the
/// package and the signing key's fingerprint.
pub fn verify_package(
    pkg: &Path,
    sig: Option<&Path>,
    trust: &PackageTrust<'_>,
) -> Result<(PackageFile, Fingerprint), DevSigError> {
    let file = read_package_file(pkg)?;
    let sig_path = sig.map_or_else(|| default_sig_path(pkg), Path::to_path_buf);
    let signature = Signature::read_path(&sig_path).map_err(|source| DevSigError::Signature {
        path: sig_path.clone(),
        source,
    })?;
    let verify_error = |source| DevSigError::Verify {
        path: sig_path.clone(),
        source,
    };
    let fp = match trust {
        PackageTrust::Key(k) => {
            k.verify(&file.bytes, &signature).map_err(verify_error)?;
            signature.fingerprint()
        }
        PackageTrust::Dir(d) => KeyDir::new(*d)
            .verify(&file.bytes, &signature)
            .map_err(verify_error)?
            .fingerprint(),
        PackageTrust::Keyring(k, now) => {
            keyring_pkg::developer::check(k, file.package.name(), &file.bytes, &signature, *now)
                .map_err(|source| DevSigError::Developer {
                    path: sig_path.clone(),
                    source,
                })?
        }
    };
    Ok((file, fp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use feeds::build::PackageBuilder;
    use keyring_pkg::{KeyEntry, Role, Scope};

    fn pkg(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(format!("{name}_1.0_all.ipk"));
        let bytes = PackageBuilder::new(format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\nDescription: x\n"
        ))
        .file("usr/bin/x", 0o755, b"x".to_vec())
        .build()
        .unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn sign_then_verify_by_key_and_by_keyring_scope() {
        let dir = tempfile::tempdir().unwrap();
        let (dev, dev_pub) = SecretKey::generate(None).unwrap();
        let (root, _) = SecretKey::generate(None).unwrap();
        let p = pkg(dir.path(), "luci-app-x");
        let (file, sig) = sign_package(&dev, &p).unwrap();
        assert_eq!(file.package.name(), "luci-app-x");
        assert_eq!(sig, dir.path().join("luci-app-x_1.0_all.ipk.sig"));
        let (_, fp) = verify_package(&p, None, &PackageTrust::Key(&dev_pub)).unwrap();
        assert_eq!(fp, dev.fingerprint());
        let now = 1_800_000_000;
        let mut k = Keyring::new("demo", 1, now, now + 100, 1).unwrap();
        k.add_key(KeyEntry::new(&root.public_key(), Role::Root))
            .unwrap();
        let mut e = KeyEntry::new(&dev_pub, Role::Developer);
        e.scope = Some(Scope::parse("luci-app-*").unwrap());
        k.add_key(e).unwrap();
        verify_package(&p, None, &PackageTrust::Keyring(&k, now)).unwrap();
        // Out of scope: named.
        let other = pkg(dir.path(), "dnsmasq");
        sign_package(&dev, &other).unwrap();
        let err = verify_package(&other, None, &PackageTrust::Keyring(&k, now))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("package dnsmasq: outside the scope of developer key"),
            "{err}"
        );
        // A signature over another file.
        std::fs::copy(default_sig_path(&other), default_sig_path(&p)).unwrap();
        let err = verify_package(&p, None, &PackageTrust::Key(&dev_pub))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad signature"), "{err}");
        // A .sig that is not a signature.
        std::fs::write(default_sig_path(&p), "<html>portal</html>\n").unwrap();
        let err = verify_package(&p, None, &PackageTrust::Key(&dev_pub))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&default_sig_path(&p).display().to_string()),
            "{err}"
        );
        // Not a package: nothing signed.
        let junk = dir.path().join("junk.ipk");
        std::fs::write(&junk, "not a package").unwrap();
        let err = sign_package(&dev, &junk).err().unwrap().to_string();
        assert!(err.contains("junk.ipk: not a package"), "{err}");
        assert!(!default_sig_path(&junk).exists());
    }
}
