//! Deterministic Ed25519 signing, with the signature checked before it is returned.
//!
//! [`sign`] is RFC 8032 §5.1.6, as usign and signify sign: the same bytes any RFC 8032 signer
//! gives (tests compare with ed25519-compact and with signify). A usign signature covers the
//! whole message, so signing a `Packages` of megabytes that way is three SHA-512 passes over
//! it: the nonce `r = H(prefix ‖ M)`, the challenge `k = H(R ‖ A ‖ M)`, and the check's own
//! `k' = H(R ‖ A ‖ M)`. The last two depend only on `R`, so they run side by side on two
//! threads; the check then verifies `[S]B = R + [k']A` with `k'` computed independently of
//! the signer's `k`.
//!
//! [`sign_via_sha256_unless`], for the index that `archman index` signs on every change,
//! derives the secret nonce from the message's SHA-256 instead of from the message: one
//! SHA-256 pass (which the `Release` needs anyway, and which it hands to its caller) in place
//! of a SHA-512 pass. Verifiers cannot tell the difference — any secret nonce makes a valid
//! signature — and the signatures stay deterministic (docs/formats.md §4.7 says why this is
//! safe). It may be started before it is known to be needed, and given up.

use crate::usign::Message;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a signature was not made.
#[derive(Debug)]
pub(crate) enum SignError {
    /// The public key is not a point of the curve.
    BadPublicKey,
    /// The finished signature does not verify (a fault, or a public key not of this seed).
    SelfCheck,
    /// The message could not be read (it is held outside memory).
    Read(std::io::Error),
}

impl PartialEq for SignError {
    fn eq(&self, other: &SignError) -> bool {
        match (self, other) {
            (SignError::Read(a), SignError::Read(b)) => a.kind() == b.kind(),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

/// Feeds `message` to `h`, in slices of at most 64 KiB, looking at `cancel` before each;
/// `None` when it was set.
fn hash_all<D: Digest>(
    mut h: D,
    message: &(impl Message + ?Sized),
    cancel: &AtomicBool,
) -> Result<Option<sha2::digest::Output<D>>, SignError> {
    let mut cancelled = false;
    message
        .each_piece(&mut |piece| {
            for chunk in piece.chunks(1 << 16) {
                if cancel.load(Ordering::Relaxed) {
                    cancelled = true;
                    return false;
                }
                h.update(chunk);
            }
            true
        })
        .map_err(SignError::Read)?;
    Ok((!cancelled).then(|| h.finalize()))
}

fn challenge(
    r: &[u8; 32],
    a: &[u8; 32],
    message: &(impl Message + ?Sized),
    cancel: &AtomicBool,
) -> Result<Option<Scalar>, SignError> {
    let h = Sha512::new().chain_update(r).chain_update(a);
    Ok(hash_all(h, message, cancel)?.map(|d| Scalar::from_bytes_mod_order_wide(&d.into())))
}

/// Signs the message that is the concatenation of `message` (pieces, so that a large index is
/// never copied into one buffer) with the key of `seed` whose public key is `public`; checks
/// the signature against `public` before returning it.
pub(crate) fn sign(
    seed: &[u8; 32],
    public: &[u8; 32],
    message: &[&[u8]],
) -> Result<[u8; 64], SignError> {
    let never = AtomicBool::new(false);
    let (a_point, s, prefix) = expand(seed, public)?;
    let nonce =
        hash_all(Sha512::new().chain_update(prefix), message, &never)?.expect("never cancelled");
    let r = Scalar::from_bytes_mod_order_wide(&nonce.into());
    complete(public, &a_point, &s, &r, message, &never).map(|s| s.expect("never cancelled"))
}

/// What the nonce of [`sign_via_sha256_unless`] hashes before the secret prefix. Being longer
/// than the prefix and public, it keeps the two nonce inputs apart: RFC 8032 hashes
/// `prefix ‖ M`, this `NONCE_TAG ‖ prefix ‖ SHA-256(M)`, and they could only be equal were the
/// secret prefix the first 32 bytes of this text.
const NONCE_TAG: &[u8] = b"archman index signature: Ed25519 nonce from SHA-256(M), version 1";
const _: () = assert!(NONCE_TAG.len() > 32);

/// Signs `message` as [`sign`] does, but for the nonce: `r = SHA-512(NONCE_TAG ‖ prefix
/// ‖ SHA-256(M)) mod L`. The SHA-256 of the message is computed here, over exactly the
/// pieces signed, and handed to `digest` as soon as it is known (before the challenge pass).
/// Returns the signature; `Ok(None)` when `cancel` was set.
pub(crate) fn sign_via_sha256_unless(
    seed: &[u8; 32],
    public: &[u8; 32],
    message: &(impl Message + ?Sized),
    cancel: &AtomicBool,
    digest: impl FnOnce(&[u8; 32]),
) -> Result<Option<[u8; 64]>, SignError> {
    let (a_point, s, prefix) = expand(seed, public)?;
    let Some(d) = hash_all(sha2::Sha256::new(), message, cancel)? else {
        return Ok(None);
    };
    let d: [u8; 32] = d.into();
    digest(&d);
    let nonce = Sha512::new()
        .chain_update(NONCE_TAG)
        .chain_update(prefix)
        .chain_update(d)
        .finalize();
    let r = Scalar::from_bytes_mod_order_wide(&nonce.into());
    complete(public, &a_point, &s, &r, message, cancel)
}

/// The public point, the secret scalar and the nonce prefix of `seed` (RFC 8032 §5.1.5).
fn expand(
    seed: &[u8; 32],
    public: &[u8; 32],
) -> Result<(EdwardsPoint, Scalar, [u8; 32]), SignError> {
    let a_point = CompressedEdwardsY(*public)
        .decompress()
        .ok_or(SignError::BadPublicKey)?;
    let h = Sha512::digest(seed);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&h[..32]);
    s_bytes[0] &= 248;
    s_bytes[31] &= 127;
    s_bytes[31] |= 64;
    let mut prefix = [0u8; 32];
    prefix.copy_from_slice(&h[32..]);
    Ok((a_point, Scalar::from_bytes_mod_order(s_bytes), prefix))
}

/// The signature with nonce `r`: `R`, the challenge and the check's challenge side by side,
/// `S`, and the check `[S]B - [k']A = R`.
fn complete(
    public: &[u8; 32],
    a_point: &EdwardsPoint,
    s: &Scalar,
    r: &Scalar,
    message: &(impl Message + ?Sized),
    cancel: &AtomicBool,
) -> Result<Option<[u8; 64]>, SignError> {
    let big_r = EdwardsPoint::mul_base(r).compress().to_bytes();
    // The signer's challenge and the check's, computed apart from each other.
    let (k, k_check) = std::thread::scope(|scope| {
        let check = scope.spawn(|| challenge(&big_r, public, message, cancel));
        let k = challenge(&big_r, public, message, cancel);
        (k, check.join())
    });
    let k_check = k_check.map_err(|_| SignError::SelfCheck)??;
    let (Some(k), Some(k_check)) = (k?, k_check) else {
        return Ok(None);
    };
    let big_s = k * s + r;
    // [S]B - [k']A must be R.
    let back = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k_check, &-*a_point, &big_s);
    if back.compress().to_bytes() != big_r {
        return Err(SignError::SelfCheck);
    }
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(&big_s.to_bytes());
    Ok(Some(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_those_of_rfc_8032() {
        // RFC 8032, 7.1, TEST 2 (one-byte message).
        let seed: [u8; 32] =
            hex::decode("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
                .unwrap()
                .try_into()
                .unwrap();
        let public: [u8; 32] =
            hex::decode("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
                .unwrap()
                .try_into()
                .unwrap();
        let sig = sign(&seed, &public, &[&[0x72]]).unwrap();
        assert_eq!(
            hex::encode(sig),
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        );
    }

    #[test]
    fn signatures_match_ed25519_compact_and_a_wrong_public_key_fails_the_check() {
        for (i, len) in [0usize, 1, 111, 112, 113, 128, 4096, 100_000]
            .into_iter()
            .enumerate()
        {
            let seed = [i as u8 + 1; 32];
            let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
            let msg: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
            let ours = sign(&seed, &kp.pk, &[&msg]).unwrap();
            assert_eq!(ours, *kp.sk.sign(&msg, None), "len {len}");
            // In pieces, the same message gives the same signature.
            let (a, b) = msg.split_at(len / 3);
            assert_eq!(sign(&seed, &kp.pk, &[a, &[], b]).unwrap(), ours);
            let other = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([99; 32]));
            assert_eq!(sign(&seed, &other.pk, &[&msg]), Err(SignError::SelfCheck));
        }
        let not_a_point = (2u8..)
            .map(|b| {
                let mut y = [0u8; 32];
                y[0] = b;
                y
            })
            .find(|y| CompressedEdwardsY(*y).decompress().is_none())
            .unwrap();
        assert_eq!(
            sign(&[1; 32], &not_a_point, &[b"x"]),
            Err(SignError::BadPublicKey)
        );
    }

    #[test]
    fn a_signature_with_the_nonce_from_sha256_verifies_is_deterministic_and_hands_over_the_digest()
    {
        let go = AtomicBool::new(false);
        for (i, len) in [0usize, 1, 127, 128, 65_537, 300_000]
            .into_iter()
            .enumerate()
        {
            let seed = [i as u8 + 7; 32];
            let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
            let msg: Vec<u8> = (0..len).map(|j| (j * 13 + i) as u8).collect();
            let (a, b) = msg.split_at(len / 2);
            let mut seen = None;
            let sig = sign_via_sha256_unless(&seed, &kp.pk, &[a, b], &go, |d| seen = Some(*d))
                .unwrap()
                .unwrap();
            let want: [u8; 32] = sha2::Sha256::digest(&msg).into();
            assert_eq!(seen, Some(want), "len {len}");
            kp.pk
                .verify(&msg, &ed25519_compact::Signature::new(sig))
                .unwrap_or_else(|e| panic!("len {len}: {e}"));
            // The same key and message give the same bytes; RFC 8032's nonce gives others.
            let again = sign_via_sha256_unless(&seed, &kp.pk, &[&msg], &go, |_| {});
            assert_eq!(again, Ok(Some(sig)));
            assert_ne!(sig, *kp.sk.sign(&msg, None));
            // A signature over other bytes does not verify.
            let mut other = msg.clone();
            other.push(1);
            assert!(
                kp.pk
                    .verify(&other, &ed25519_compact::Signature::new(sig))
                    .is_err()
            );
        }
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([5; 32]));
        let stop = AtomicBool::new(true);
        let mut called = false;
        assert_eq!(
            sign_via_sha256_unless(&[5; 32], &kp.pk, &[b"x"], &stop, |_| called = true),
            Ok(None)
        );
        assert!(!called);
        let wrong = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([6; 32]));
        assert_eq!(
            sign_via_sha256_unless(
                &[5; 32],
                &wrong.pk,
                &[b"x"],
                &AtomicBool::new(false),
                |_| {}
            ),
            Err(SignError::SelfCheck)
        );
    }

    #[test]
    fn a_cancelled_signature_is_none_and_an_uncancelled_one_is_the_signature() {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([3; 32]));
        let msg = vec![7u8; 300_000];
        assert_eq!(sign(&[3; 32], &kp.pk, &[&msg]), Ok(*kp.sk.sign(&msg, None)));
        let go = AtomicBool::new(false);
        assert!(matches!(
            sign_via_sha256_unless(&[3; 32], &kp.pk, &[&msg], &go, |_| {}),
            Ok(Some(_))
        ));
        let stop = AtomicBool::new(true);
        assert_eq!(
            sign_via_sha256_unless(&[3; 32], &kp.pk, &[&msg], &stop, |_| {}),
            Ok(None)
        );
    }
}
