//! Which developer key signed each published version of each package name of a feed: the
//! record behind key consistency (docs/trust-model.md §9). Once a name was published signed
//! by one developer key, any version signed by another — newer, older or the same version
//! re-signed — is a bad package until the roots transfer the name ([`transferred`]): a version
//! published before must keep its signer, a new one must have the signer of the newest.
//!
//! The record is kept beside the index cache, outside the feed (whoever can write the feed
//! must not be able to rewrite it), authenticated with the cache's per-host key:
//!
//! ```text
//! archman-signers 1
//! feed <feed id>
//! <name> <16-hex fingerprint> <version>
//! ...
//! mac <HMAC-SHA256 hex over everything above>
//! ```
//!
//! When it is missing (first run, a lost cache, `--no-cache`) it is rebuilt from the published
//! `Packages`, trusted only when its `Packages.sig` verifies with the key this run signs with.

use std::io::{BufRead, BufReader};
use std::path::Path;

use feeds::usign::{Fingerprint, PublicKey, Signature};
use feeds::version::Version;
use keyring_pkg::Keyring;

use crate::cache::CacheKey;

const MAGIC: &str = "archman-signers 1";
const MAX_LEN: u64 = 64 << 20;

/// (package name, version) → the developer key that signed that published version: a list
/// in (name, version text) order. (A map of maps took ~500 bytes a package: 30 MB at 60,000.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signers {
    list: Vec<(Box<str>, Box<str>, Fingerprint)>,
}

/// The version sort of version text (unparsable text sorts first, by its text).
fn version_key(v: &str) -> (Option<Version>, &str) {
    (Version::parse(v).ok(), v)
}

impl Signers {
    /// The key `version` of `name` must be signed by unless the name was transferred: the
    /// key of that very version when it was published before, else the key of the newest
    /// version published. `None` for a name never published signed.
    pub fn previous_for(&self, name: &str, version: &str) -> Option<Fingerprint> {
        let versions = self.versions(name);
        if let Some((_, _, fp)) = versions.iter().find(|(_, v, _)| &**v == version) {
            return Some(*fp);
        }
        versions
            .iter()
            .max_by(|a, b| version_key(&a.1).cmp(&version_key(&b.1)))
            .map(|(_, _, fp)| *fp)
    }

    /// The entries of `name`.
    fn versions(&self, name: &str) -> &[(Box<str>, Box<str>, Fingerprint)] {
        let start = self.list.partition_point(|(n, _, _)| &**n < name);
        let end = start + self.list[start..].partition_point(|(n, _, _)| &**n == name);
        &self.list[start..end]
    }

    /// Records that `name` `version` was published signed by `fp`.
    pub fn publish(&mut self, name: &str, version: &str, fp: Fingerprint) {
        // In order as a published index or a record lists them: appended.
        let at = self
            .list
            .partition_point(|(n, v, _)| (&**n, &**v) < (name, version));
        match self.list.get_mut(at) {
            Some(e) if (&*e.0, &*e.1) == (name, version) => e.2 = fp,
            _ => self.list.insert(at, (name.into(), version.into(), fp)),
        }
    }

    /// [`Signers::publish`] of many, in any order: appended, then one (stable) sort, the
    /// last given for a version winning — not an insertion into the list for each.
    pub fn publish_all<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a str, &'a str, Fingerprint)>,
    ) {
        self.list.extend(
            entries
                .into_iter()
                .map(|(n, v, fp)| (n.into(), v.into(), fp)),
        );
        self.list.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        self.list.dedup_by(|later, kept| {
            let same = (&later.0, &later.1) == (&kept.0, &kept.1);
            if same {
                kept.2 = later.2;
            }
            same
        });
    }

    fn body(&self, feed_id: &str) -> String {
        let mut out = format!("{MAGIC}\nfeed {feed_id}\n");
        for (name, version, fp) in &self.list {
            out.push_str(&format!("{name} {fp} {version}\n"));
        }
        out
    }

    /// The file's bytes, MAC included.
    pub fn to_bytes(&self, feed_id: &str, key: &CacheKey) -> Vec<u8> {
        let body = self.body(feed_id);
        let mac = hex::encode(key.mac(body.as_bytes()));
        format!("{body}mac {mac}\n").into_bytes()
    }

    /// Reads the record at `path`: `Ok(None)` when there is none; an error (for a warning)
    /// when it is not this feed's, does not parse, or fails its MAC.
    pub fn load(path: &Path, feed_id: &str, key: &CacheKey) -> Result<Option<Signers>, String> {
        let bytes = match safe_fs::read_bounded(path, MAX_LEN) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let Some((body, mac_line)) = text.trim_end_matches('\n').rsplit_once('\n') else {
            return Err("truncated".into());
        };
        let body = format!("{body}\n");
        let want = hex::encode(key.mac(body.as_bytes()));
        if mac_line != format!("mac {want}") {
            return Err("its MAC does not verify (changed, or made with another key)".into());
        }
        let mut lines = body.lines();
        if lines.next() != Some(MAGIC) || lines.next() != Some(&format!("feed {feed_id}")) {
            return Err("made for another feed or format".into());
        }
        let mut record = Signers::default();
        for l in lines {
            let mut f = l.splitn(3, ' ');
            let (Some(name), Some(fp), Some(version)) = (f.next(), f.next(), f.next()) else {
                return Err(format!("bad line {l:?}"));
            };
            let fp = fp.parse().map_err(|_| format!("bad fingerprint {fp:?}"))?;
            record.publish(name, version, fp);
        }
        Ok(Some(record))
    }

    /// The record a published index gives: each stanza's `Package` and `Signed-By`, from
    /// `Packages` only when `Packages.sig` verifies with `public` (this run's own key).
    /// Read as a stream (a feed's `Packages` is tens of megabytes), the signature checked on
    /// the way, and nothing of it used unless it verifies.
    pub fn from_published(feed: &Path, public: &PublicKey) -> Option<Signers> {
        let sig = safe_fs::read_bounded(&feed.join("Packages.sig"), 4096).ok()??;
        let sig = Signature::parse(&sig).ok()?;
        let mut verifier = public.verifier(&sig).ok()?;
        let packages = safe_fs::open_bounded(&feed.join("Packages"), MAX_LEN).ok()??;
        let mut input = BufReader::with_capacity(64 << 10, packages);
        let mut out = Signers::default();
        // The first Package, Version and Signed-By of the stanza being read.
        let mut fields: [Option<String>; 3] = Default::default();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = input.read_until(b'\n', &mut line).ok()?;
            verifier.update(&line);
            let text = std::str::from_utf8(&line).ok()?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            if text.is_empty() {
                if let [Some(name), Some(version), Some(fp)] = &fields
                    && let Ok(fp) = fp.trim().parse()
                {
                    out.publish(name.trim(), version.trim(), fp);
                }
                fields = Default::default();
            } else {
                for (i, name) in ["Package: ", "Version: ", "Signed-By: "].iter().enumerate() {
                    if let Some(v) = text.strip_prefix(name) {
                        fields[i].get_or_insert_with(|| v.to_string());
                    }
                }
            }
            if n == 0 {
                break;
            }
        }
        verifier.finish().ok()?;
        Some(out)
    }
}

/// Whether the keyring moved the name `name` from key `old` to key `new`: `new`'s scope lists
/// the name itself (not only a glob covering it), or `old` may no longer sign it (revoked,
/// retired, expired, gone, or its scope narrowed).
pub fn transferred(
    keyring: &Keyring,
    name: &str,
    old: Fingerprint,
    new: Fingerprint,
    now: i64,
) -> bool {
    let listed = keyring
        .key(new)
        .and_then(|k| k.scope.as_ref())
        .is_some_and(|s| s.globs().iter().any(|g| g == name));
    listed || keyring_pkg::developer::check_key(keyring, name, old, now).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use feeds::usign::SecretKey;
    use keyring_pkg::{KeyEntry, Role, Scope};

    #[test]
    fn record_round_trips_and_refuses_tampering_or_another_feed() {
        let dir = tempfile::tempdir().unwrap();
        let key = CacheKey::from_bytes([7; 32]);
        let mut s = Signers::default();
        s.publish("pbr", "1.0", Fingerprint::new([1; 8]));
        s.publish("luci-app-x", "2.0-r1", Fingerprint::new([2; 8]));
        // A new version, newer or older, must have the newest one's signer; a published one
        // its own.
        assert_eq!(s.previous_for("pbr", "1.1"), Some(Fingerprint::new([1; 8])));
        assert_eq!(s.previous_for("pbr", "0.9"), Some(Fingerprint::new([1; 8])));
        s.publish("pbr", "1.2", Fingerprint::new([4; 8]));
        assert_eq!(s.previous_for("pbr", "1.0"), Some(Fingerprint::new([1; 8])));
        assert_eq!(s.previous_for("pbr", "1.1"), Some(Fingerprint::new([4; 8])));
        assert_eq!(s.previous_for("luci", "1.0"), None);
        // Many at once, in any order, the later of two for one version kept: the same record.
        let mut all = Signers::default();
        all.publish("pbr", "1.0", Fingerprint::new([9; 8]));
        all.publish_all([
            ("pbr", "1.2", Fingerprint::new([4; 8])),
            ("luci-app-x", "2.0-r1", Fingerprint::new([2; 8])),
            ("pbr", "1.0", Fingerprint::new([5; 8])),
            ("pbr", "1.0", Fingerprint::new([1; 8])),
        ]);
        assert_eq!(all, s);
        let p = dir.path().join("signers");
        std::fs::write(&p, s.to_bytes("/srv/feed", &key)).unwrap();
        assert_eq!(
            Signers::load(&p, "/srv/feed", &key).unwrap(),
            Some(s.clone())
        );
        assert!(Signers::load(&p, "/srv/other", &key).is_err());
        assert!(Signers::load(&p, "/srv/feed", &CacheKey::from_bytes([8; 32])).is_err());
        let forged = String::from_utf8(s.to_bytes("/srv/feed", &key))
            .unwrap()
            .replace("pbr 0101010101010101", "pbr 0303030303030303");
        assert_ne!(
            forged,
            String::from_utf8(s.to_bytes("/srv/feed", &key)).unwrap()
        );
        std::fs::write(&p, forged).unwrap();
        assert!(
            Signers::load(&p, "/srv/feed", &key)
                .unwrap_err()
                .contains("MAC")
        );
        assert_eq!(
            Signers::load(&dir.path().join("none"), "/srv/feed", &key),
            Ok(None)
        );
    }

    #[test]
    fn the_record_of_a_published_index_is_used_only_when_its_signature_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (key, other) = (
            SecretKey::generate(None).unwrap().0,
            SecretKey::generate(None).unwrap().0,
        );
        let packages = "Package: b\nVersion: 1\nSigned-By: 0202020202020202\nDescription: x\n \
                        Package: not-a-field\n\nPackage: a\nVersion: 2\nDescription: unsigned\n\n\
                        Package: a\nVersion: 1\nSigned-By: 0101010101010101\n";
        std::fs::write(dir.path().join("Packages"), packages).unwrap();
        let sign = |k: &SecretKey| {
            let sig = k.sign(packages.as_bytes()).unwrap().to_file_bytes();
            std::fs::write(dir.path().join("Packages.sig"), sig).unwrap();
        };
        sign(&key);
        let mut want = Signers::default();
        want.publish("a", "1", Fingerprint::new([1; 8]));
        want.publish("b", "1", Fingerprint::new([2; 8]));
        let got = Signers::from_published(dir.path(), &key.public_key());
        assert_eq!(got, Some(want));
        // Signed by another key, or changed since it was signed: not used.
        assert_eq!(
            Signers::from_published(dir.path(), &other.public_key()),
            None
        );
        sign(&other);
        assert_eq!(Signers::from_published(dir.path(), &key.public_key()), None);
        sign(&key);
        std::fs::write(
            dir.path().join("Packages"),
            packages.replace("0101", "0303"),
        )
        .unwrap();
        assert_eq!(Signers::from_published(dir.path(), &key.public_key()), None);
        std::fs::remove_file(dir.path().join("Packages")).unwrap();
        assert_eq!(Signers::from_published(dir.path(), &key.public_key()), None);
    }

    #[test]
    fn a_name_moves_to_another_key_only_when_the_roots_say_so() {
        let now = 1_800_000_000;
        let root = SecretKey::generate(None).unwrap().0;
        let (a, b) = (
            SecretKey::generate(None).unwrap().0,
            SecretKey::generate(None).unwrap().0,
        );
        let mut k = Keyring::new("demo", 1, now, now + 100, 1).unwrap();
        k.add_key(KeyEntry::new(&root.public_key(), Role::Root))
            .unwrap();
        for (key, scope) in [(&a, "luci-app-*"), (&b, "luci-*")] {
            let mut e = KeyEntry::new(&key.public_key(), Role::Developer);
            e.scope = Some(Scope::parse(scope).unwrap());
            k.add_key(e).unwrap();
        }
        let (fa, fb) = (a.fingerprint(), b.fingerprint());
        // Both may sign luci-app-x; A did first: B may not take it over.
        assert!(!transferred(&k, "luci-app-x", fa, fb, now));
        // The roots list the name itself for B.
        k.key_mut(fb).unwrap().scope = Some(Scope::parse("luci-*, luci-app-x").unwrap());
        assert!(transferred(&k, "luci-app-x", fa, fb, now));
        // Or take it out of A's hands.
        k.key_mut(fb).unwrap().scope = Some(Scope::parse("luci-*").unwrap());
        k.key_mut(fa).unwrap().status = keyring_pkg::Status::Retired;
        assert!(transferred(&k, "luci-app-x", fa, fb, now));
    }
}
