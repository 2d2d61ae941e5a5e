//! usign-compatible key operations: generate a key pair (random, derived from a secret, or
//! imported from PEM), sign a file, verify a signature against a key or a key directory,
//! show fingerprints, export keys as PEM. Key files are byte-compatible with `usign` and
//! OpenBSD `signify`; the ways of making a key are in [`crate::keygen`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use feeds::usign::{self, Fingerprint, KeyDir, PublicKey, SecretKey, Signature, VerifyError};
use safe_fs::WriteOptions;

use crate::keygen::{KeygenError, Secret};

/// A key operation failed; the message names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Usign(#[from] usign::Error),
    #[error(transparent)]
    Keygen(#[from] KeygenError),
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
    #[error("{}: secret key is passphrase-protected; give --passphrase-file FILE", path.display())]
    NeedsPassphrase { path: PathBuf },
    #[error("{}: already exists; not overwriting a private key without --force", path.display())]
    Exists { path: PathBuf },
    #[error(transparent)]
    Write(#[from] safe_fs::FsError),
    #[error("OpenPGP: {0}")]
    OpenPgp(#[from] usign_openpgp::Error),
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

/// Where `archman keygen` gets the key pair from.
#[derive(Debug)]
pub enum KeySource<'a> {
    /// Random, key number included, as `usign -G` makes it.
    Random,
    /// Derived from a secret (`--seed-env`, `--seed-file`): the same secret, the same files.
    Derived(&'a Secret),
    /// An existing key: an Ed25519 private key read from PKCS#8 PEM (`--import-pem`,
    /// [`crate::keygen::read_pem`]), numbered by [`crate::keygen::key_number`].
    Imported(SecretKey),
}

/// The key files `archman keygen` writes, and how.
#[derive(Debug, Clone, Copy)]
pub struct KeyFiles<'a> {
    pub secret: &'a Path,
    pub public: &'a Path,
    /// Replaces the default comments of both files.
    pub comment: Option<&'a str>,
    /// Protects the secret key file (bcrypt_pbkdf, 42 rounds, fresh salt: as signify does).
    pub passphrase: Option<&'a [u8]>,
    /// Replace existing files.
    pub force: bool,
}

/// Makes a key pair from `source` and writes both files (the secret one 0600, never over an
/// existing file unless `force`). Returns the key's fingerprint.
pub fn keygen(source: KeySource<'_>, files: &KeyFiles<'_>) -> Result<Fingerprint, KeyError> {
    let (sk, pk) = match source {
        KeySource::Random => SecretKey::generate(files.comment)?,
        KeySource::Derived(secret) => with_comment(secret.derive_key()?, files.comment)?,
        KeySource::Imported(key) => with_comment(key, files.comment)?,
    };
    check_new(files)?;
    sk.write_path(files.secret, files.passphrase, files.force)?;
    pk.write_path(files.public)?;
    Ok(sk.fingerprint())
}

/// Without `force`, an error when either key file exists (checked again when the secret key
/// is created): lets a caller fail before asking for a passphrase.
pub fn check_new(files: &KeyFiles<'_>) -> Result<(), KeyError> {
    if files.force {
        return Ok(());
    }
    for path in [files.secret, files.public] {
        if path.symlink_metadata().is_ok() {
            return Err(usign::Error::Exists { path: path.into() }.into());
        }
    }
    Ok(())
}

fn with_comment(
    sk: SecretKey,
    comment: Option<&str>,
) -> Result<(SecretKey, PublicKey), usign::Error> {
    let pk = sk.public_key();
    match comment {
        None => Ok((sk, pk)),
        Some(c) => Ok((sk.with_comment(c)?, pk.with_comment(c)?)),
    }
}

/// Reads a secret key file; a passphrase-protected one needs `passphrase`
/// ([`KeyError::NeedsPassphrase`] without it), an unprotected one ignores it.
pub fn read_secret(path: &Path, passphrase: Option<&[u8]>) -> Result<SecretKey, KeyError> {
    SecretKey::read_path(path, passphrase).map_err(|e| match e.root() {
        usign::Error::Encrypted { .. } => KeyError::NeedsPassphrase { path: path.into() },
        _ => e.into(),
    })
}

/// Signs `message` with `key`, writing the signature to `sig` (atomically).
pub fn sign(key: &SecretKey, message: &Path, sig: &Path) -> Result<Fingerprint, KeyError> {
    let data = read(message)?;
    key.sign(&data)?.write_path(sig)?;
    Ok(key.fingerprint())
}

/// Writes `key` as PKCS#8 PEM to `out`, mode 0600, atomically; an existing file only with
/// `force`.
pub fn export_secret_pem(key: &SecretKey, out: &Path, force: bool) -> Result<(), KeyError> {
    let pem = key.to_pkcs8_pem();
    let opts = WriteOptions::default().mode(0o600);
    if force {
        safe_fs::write_atomic(out, pem.as_bytes(), opts)?;
        return Ok(());
    }
    safe_fs::write_new(out, pem.as_bytes(), opts).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => KeyError::Exists { path: out.into() },
        _ => e.into(),
    })
}

/// Writes `key` as SubjectPublicKeyInfo PEM to `out`, mode 0644, atomically.
pub fn export_public_pem(key: &PublicKey, out: &Path) -> Result<(), KeyError> {
    safe_fs::write_atomic(out, key.to_spki_pem().as_bytes(), WriteOptions::default())?;
    Ok(())
}

/// Writes the OpenPGP certificate of `key` (binary, or armored with `armor`) to `out`, mode
/// 0644, atomically; returns its OpenPGP fingerprint.
pub fn export_openpgp(
    key: &SecretKey,
    name: Option<&str>,
    armor: bool,
    out: &Path,
) -> Result<String, KeyError> {
    let signer = usign_openpgp::Signer::from_seed(&key.seed())?;
    let cert = signer.certificate(&usign_openpgp::user_id(
        name,
        &key.fingerprint().to_string(),
    ))?;
    let bytes = if armor {
        cert.to_armored()?.into_bytes()
    } else {
        cert.to_binary()?
    };
    safe_fs::write_atomic(out, &bytes, WriteOptions::default())?;
    Ok(cert.fingerprint())
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
    use crate::keygen;
    use std::os::unix::fs::PermissionsExt;

    fn files<'a>(sec: &'a Path, public: &'a Path) -> KeyFiles<'a> {
        KeyFiles {
            secret: sec,
            public,
            comment: None,
            passphrase: None,
            force: false,
        }
    }

    #[test]
    fn keygen_sign_verify_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (sec, public) = (dir.path().join("k.sec"), dir.path().join("k.pub"));
        let fp = keygen(KeySource::Random, &files(&sec, &public)).unwrap();
        let msg = dir.path().join("Packages");
        fs::write(&msg, "Package: a\n").unwrap();
        let sig = default_sig_path(&msg);
        assert_eq!(sig, dir.path().join("Packages.sig"));
        let key = read_secret(&sec, None).unwrap();
        assert_eq!(sign(&key, &msg, &sig).unwrap(), fp);
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
        assert!(keygen(KeySource::Random, &files(&sec, &public)).is_err());
        let forced = KeyFiles {
            comment: Some("new"),
            force: true,
            ..files(&sec, &public)
        };
        assert_ne!(keygen(KeySource::Random, &forced).unwrap(), fp);
    }

    #[test]
    fn derived_and_imported_keys_have_reproducible_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let secret = Secret::new(
            b"0123456789abcdef0123456789abcdef".to_vec(),
            keygen::SecretOrigin::Env("S".into()),
        )
        .unwrap();
        let fp = keygen(
            KeySource::Derived(&secret),
            &files(&p("a.sec"), &p("a.pub")),
        )
        .unwrap();
        let again = keygen(
            KeySource::Derived(&secret),
            &files(&p("b.sec"), &p("b.pub")),
        )
        .unwrap();
        assert_eq!(fp, again);
        for (a, b) in [("a.sec", "b.sec"), ("a.pub", "b.pub")] {
            assert_eq!(fs::read(p(a)).unwrap(), fs::read(p(b)).unwrap(), "{a}");
        }
        // exported to PEM and imported back: the same key number, the same files
        let key = read_secret(&p("a.sec"), None).unwrap();
        export_secret_pem(&key, &p("a.pem"), false).unwrap();
        let mode = fs::metadata(p("a.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = export_secret_pem(&key, &p("a.pem"), false).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        export_secret_pem(&key, &p("a.pem"), true).unwrap();
        let pem = keygen::read_pem(&p("a.pem")).unwrap();
        let imported = keygen(KeySource::Imported(pem), &files(&p("c.sec"), &p("c.pub"))).unwrap();
        assert_eq!(imported, fp);
        assert_eq!(fs::read(p("c.sec")).unwrap(), fs::read(p("a.sec")).unwrap());
        assert_eq!(fs::read(p("c.pub")).unwrap(), fs::read(p("a.pub")).unwrap());
        export_public_pem(&key.public_key(), &p("a.pub.pem")).unwrap();
        assert!(
            fs::read_to_string(p("a.pub.pem"))
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
        // a comment replaces both default comments
        let (d_sec, d_pub) = (p("d.sec"), p("d.pub"));
        let commented = KeyFiles {
            comment: Some("ci key"),
            ..files(&d_sec, &d_pub)
        };
        keygen(KeySource::Derived(&secret), &commented).unwrap();
        assert!(
            fs::read_to_string(p("d.pub"))
                .unwrap()
                .starts_with("untrusted comment: ci key\n")
        );
        assert!(
            fs::read_to_string(p("d.sec"))
                .unwrap()
                .starts_with("untrusted comment: ci key\n")
        );
    }

    #[test]
    fn protected_keys_need_their_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let (sec, public) = (dir.path().join("feed.sec"), dir.path().join("feed.pub"));
        let protected = KeyFiles {
            passphrase: Some(b"correct horse"),
            ..files(&sec, &public)
        };
        let fp = keygen(KeySource::Random, &protected).unwrap();
        let err = read_secret(&sec, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: secret key is passphrase-protected; give --passphrase-file FILE",
                sec.display()
            )
        );
        let wrong = read_secret(&sec, Some(b"wrong horse"))
            .unwrap_err()
            .to_string();
        assert!(wrong.starts_with(&sec.display().to_string()), "{wrong}");
        assert!(wrong.contains("wrong passphrase"), "{wrong}");
        assert_eq!(
            read_secret(&sec, Some(b"correct horse"))
                .unwrap()
                .fingerprint(),
            fp
        );
    }
}
