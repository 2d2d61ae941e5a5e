//! usign-compatible key operations: generate a key pair, sign a file, verify a signature
//! against a key or a key directory, show fingerprints. Files are byte-compatible with
//! `usign` and OpenBSD `signify`.

use std::fs;
use std::path::{Path, PathBuf};

use feeds::usign::{self, Fingerprint, KeyDir, PublicKey, SecretKey, Signature, VerifyError};

/// A key operation failed; the message names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Usign(#[from] usign::Error),
    #[error("{}: {source}", path.display())]
    Verify {
        path: PathBuf,
        #[source]
        source: VerifyError,
    },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the trusted public keys come from.
pub enum Trust<'a> {
    /// One public key file (`-p`).
    Key(&'a Path),
    /// A directory of keys named by fingerprint (`-P`, like `/etc/opkg/keys`).
    Dir(&'a Path),
}

/// The signature file usign uses by default for `message`: `<message>.sig`.
pub fn default_sig_path(message: &Path) -> PathBuf {
    let mut s = message.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Generates a key pair and writes both files (the secret one 0600, never over an existing
/// file unless `force`). Returns the new key's fingerprint.
pub fn keygen(
    secret: &Path,
    public: &Path,
    comment: Option<&str>,
    force: bool,
) -> Result<Fingerprint, KeyError> {
    let (sk, pk) = SecretKey::generate(comment)?;
    if !force && public.exists() {
        return Err(usign::Error::Exists {
            path: public.to_path_buf(),
        }
        .into());
    }
    sk.write_path(secret, None, force)?;
    pk.write_path(public)?;
    Ok(sk.fingerprint())
}

/// Signs `message` with `secret`, writing the signature to `sig` (atomically).
pub fn sign(secret: &Path, message: &Path, sig: &Path) -> Result<Fingerprint, KeyError> {
    let sk = SecretKey::read_path(secret, None)?;
    let data = read(message)?;
    sk.sign(&data)?.write_path(sig)?;
    Ok(sk.fingerprint())
}

/// Verifies the signature `sig` over `message`; returns the fingerprint of the key that made it.
pub fn verify(message: &Path, trust: Trust<'_>, sig: &Path) -> Result<Fingerprint, KeyError> {
    let signature = Signature::read_path(sig)?;
    let data = read(message)?;
    let checked = match trust {
        Trust::Key(p) => PublicKey::read_path(p)?.verify(&data, &signature),
        Trust::Dir(d) => KeyDir::new(d).verify(&data, &signature).map(|_| ()),
    };
    checked.map_err(|source| KeyError::Verify {
        path: sig.to_path_buf(),
        source,
    })?;
    Ok(signature.fingerprint())
}

/// The fingerprint recorded in a secret key, public key or signature file.
pub enum FingerprintOf<'a> {
    Secret(&'a Path),
    Public(&'a Path),
    Signature(&'a Path),
}

/// Reads the fingerprint out of a key or signature file.
pub fn fingerprint(of: FingerprintOf<'_>) -> Result<Fingerprint, KeyError> {
    Ok(match of {
        FingerprintOf::Secret(p) => SecretKey::read_path(p, None)?.fingerprint(),
        FingerprintOf::Public(p) => PublicKey::read_path(p)?.fingerprint(),
        FingerprintOf::Signature(p) => Signature::read_path(p)?.fingerprint(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_sign_verify_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (sec, public) = (dir.path().join("k.sec"), dir.path().join("k.pub"));
        let fp = keygen(&sec, &public, None, false).unwrap();
        let msg = dir.path().join("Packages");
        fs::write(&msg, "Package: a\n").unwrap();
        let sig = default_sig_path(&msg);
        assert_eq!(sig, dir.path().join("Packages.sig"));
        assert_eq!(sign(&sec, &msg, &sig).unwrap(), fp);
        assert_eq!(verify(&msg, Trust::Key(&public), &sig).unwrap(), fp);
        // Key directories are looked up by fingerprint.
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).unwrap();
        fs::copy(&public, keys.join(fp.to_string())).unwrap();
        assert_eq!(verify(&msg, Trust::Dir(&keys), &sig).unwrap(), fp);
        for of in [
            FingerprintOf::Secret(&sec),
            FingerprintOf::Public(&public),
            FingerprintOf::Signature(&sig),
        ] {
            assert_eq!(fingerprint(of).unwrap(), fp);
        }
        // A changed message fails, naming the signature file.
        fs::write(&msg, "Package: b\n").unwrap();
        let e = verify(&msg, Trust::Key(&public), &sig)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&sig.display().to_string()), "{e}");
        assert!(e.contains("bad signature"), "{e}");
        // keygen never overwrites without force.
        assert!(keygen(&sec, &public, None, false).is_err());
        assert_ne!(keygen(&sec, &public, Some("new"), true).unwrap(), fp);
    }
}
