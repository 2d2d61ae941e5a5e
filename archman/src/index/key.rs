//! The key that orders a feed's index — `Package`, `Version`, `Architecture`, and the path
//! (`Filename`) — kept for every package of a run. The four values of many packages share
//! one text: a key is a handle into it, not four strings and a parsed version of its own
//! (at 60,000 packages that was ~20 MB; issue 16: memory). It orders exactly as
//! `feeds::index::SortKey` does.

use std::cmp::Ordering;
use std::sync::Arc;

use feeds::version::Version;

#[derive(Clone)]
pub(crate) struct PackedKey {
    text: Arc<str>,
    /// Where the values start and end in `text`: package `[0]..[1]`, version `[1]..[2]`,
    /// architecture `[2]..[3]`, filename `[3]..[4]`.
    bounds: [u32; 5],
}

impl PackedKey {
    /// The key of a stanza with these values, in a text of its own.
    pub(crate) fn new(package: &str, version: &str, architecture: &str, filename: &str) -> Self {
        PackedKey::pack([[package, version, architecture, filename]])
            .pop()
            .expect("one key")
    }

    /// The keys of these values, all in one text.
    pub(crate) fn pack<'a>(values: impl IntoIterator<Item = [&'a str; 4]>) -> Vec<PackedKey> {
        let values: Vec<[&str; 4]> = values.into_iter().collect();
        let mut text = String::with_capacity(values.iter().flatten().map(|v| v.len()).sum());
        let mut bounds = Vec::with_capacity(values.len());
        for v in &values {
            let mut b = [0u32; 5];
            b[0] = text.len() as u32;
            for (i, part) in v.iter().enumerate() {
                text.push_str(part);
                b[i + 1] = text.len() as u32;
            }
            bounds.push(b);
        }
        let text: Arc<str> = Arc::from(text);
        bounds
            .into_iter()
            .map(|bounds| PackedKey {
                text: Arc::clone(&text),
                bounds,
            })
            .collect()
    }

    fn part(&self, i: usize) -> &str {
        &self.text[self.bounds[i] as usize..self.bounds[i + 1] as usize]
    }

    /// The four values, as [`PackedKey::pack`] takes them.
    pub(crate) fn values(&self) -> [&str; 4] {
        [self.part(0), self.part(1), self.part(2), self.part(3)]
    }

    pub(crate) fn package(&self) -> &str {
        self.part(0)
    }

    pub(crate) fn version(&self) -> &str {
        self.part(1)
    }

    pub(crate) fn architecture(&self) -> &str {
        self.part(2)
    }

    pub(crate) fn filename(&self) -> &str {
        self.part(3)
    }
}

impl PartialEq for PackedKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PackedKey {}

impl PartialOrd for PackedKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `SortKey`'s order: package; then a version dpkg can parse before one it cannot, parsed
/// versions in dpkg's order, the version text; architecture; filename. Versions are parsed
/// only when the packages are the same, which few are.
impl Ord for PackedKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.package()
            .cmp(other.package())
            .then_with(|| {
                let parsed = |k: &PackedKey| {
                    let v = Version::parse(k.version()).ok();
                    (v.is_none(), v)
                };
                parsed(self).cmp(&parsed(other))
            })
            .then_with(|| self.version().cmp(other.version()))
            .then_with(|| self.architecture().cmp(other.architecture()))
            .then_with(|| self.filename().cmp(other.filename()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feeds::index::SortKey;

    #[test]
    fn orders_as_the_sort_key_does() {
        let values: Vec<[&str; 4]> = vec![
            ["a", "1.0", "all", "a_1.0_all.ipk"],
            ["a", "1.0-1", "all", "x/a.ipk"],
            ["a", "1:0.1", "all", "a.ipk"],
            ["a", "1.0~rc1", "all", "a.ipk"],
            ["a", "not a version!", "all", "a.ipk"],
            ["a", "", "all", "a.ipk"],
            ["a", "1.0", "arm", "a.ipk"],
            ["a", "1.0", "all", "b.ipk"],
            ["a", "01.0", "all", "a.ipk"],
            ["b", "0", "all", "b.ipk"],
            ["ab", "0", "all", "ab.ipk"],
            ["B", "0", "all", "B.ipk"],
        ];
        let packed = PackedKey::pack(values.iter().copied());
        for (i, a) in values.iter().enumerate() {
            assert_eq!(packed[i].values(), *a);
            assert_eq!(PackedKey::new(a[0], a[1], a[2], a[3]).values(), *a);
            for (j, b) in values.iter().enumerate() {
                let want =
                    SortKey::new(a[0], a[1], a[2], a[3]).cmp(&SortKey::new(b[0], b[1], b[2], b[3]));
                assert_eq!(packed[i].cmp(&packed[j]), want, "{a:?} vs {b:?}");
            }
        }
    }
}
