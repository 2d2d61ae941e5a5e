//! The `Packages` index: building stanzas from packages, and reading and writing whole
//! indexes, plain or gzipped.
//!
//! A stanza is the package's control paragraph, verbatim and in its own order, with
//! `Filename`, `Size`, (`MD5Sum`,) `SHA256sum` inserted before `Description` — OpenWrt's
//! layout, which apt reads too. Indexes are sorted by (Package, Version, Architecture,
//! Filename) so their bytes do not depend on scan order or thread count.

use std::cmp::Ordering;
use std::io::{Read, Write};

use crate::control::{ControlError, FieldError, Paragraph, ParagraphReader};
use crate::limits::{Bounded, Counting, LimitError, Limits};
use crate::package::Package;
use crate::version::Version;

/// The fields every stanza needs, besides a SHA-256 (`SHA256sum` for opkg, `SHA256` for apt:
/// apt refuses MD5-only indexes and does not read `SHA256sum`).
pub const REQUIRED_FIELDS: [&str; 5] = ["Package", "Version", "Architecture", "Filename", "Size"];

/// The fields the index adds to a control paragraph.
pub const INDEX_FIELDS: [&str; 5] = ["Filename", "Size", "MD5Sum", "SHA256sum", "SHA256"];

/// Which hash fields a stanza carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashFields {
    /// `MD5Sum` (old opkg).
    pub md5: bool,
    /// `SHA256` besides `SHA256sum`: apt reads only `SHA256`, opkg only `SHA256sum`.
    pub apt: bool,
}

/// The SHA-256 of a stanza: `SHA256sum` (opkg) or `SHA256` (apt).
pub fn stanza_sha256(p: &Paragraph) -> Option<&str> {
    p.get("SHA256sum").or_else(|| p.get("SHA256"))
}

/// What is wrong with an index or a stanza.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("{0}")]
    Syntax(#[from] ControlError),
    #[error("Filename {0:?} leaves the feed (absolute, empty, or has a `..` component)")]
    FilenameOutsideFeed(String),
    #[error("stanza for {package:?}: missing {field} field")]
    MissingField {
        package: String,
        field: &'static str,
    },
    #[error("stanza for {package:?}: bad {field}: {value:?}")]
    BadField {
        package: String,
        field: &'static str,
        value: String,
    },
    #[error("stanza for {package:?}: {source}")]
    Field {
        package: String,
        #[source]
        source: FieldError,
    },
    #[error("bad gzip data: {0}")]
    Gzip(String),
    #[error("index larger than {0} bytes")]
    TooLarge(u64),
    #[error("gzip data expands more than {0}:1 (decompression bomb?)")]
    Bomb(u64),
}

/// Refuses a `Filename` that would leave the feed directory.
pub fn check_filename(name: &str) -> Result<(), IndexError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.chars().any(char::is_control)
        || name.split('/').any(|c| c == "..");
    if bad {
        return Err(IndexError::FilenameOutsideFeed(name.to_string()));
    }
    Ok(())
}

/// Builds the index stanza of a package whose control paragraph is `control`: any index
/// fields it already carries are dropped, then `Filename`, `Size`, `MD5Sum` (when given),
/// `SHA256sum` and, with `apt`, `SHA256` go just before `Description` (at the end when there
/// is none).
pub fn build_stanza(
    control: &Paragraph,
    filename: &str,
    size: u64,
    sha256_hex: &str,
    md5_hex: Option<&str>,
    apt: bool,
) -> Result<Paragraph, IndexError> {
    check_filename(filename)?;
    let mut p = control.clone();
    for f in INDEX_FIELDS {
        p.remove(f);
    }
    let package = p.get("Package").unwrap_or("").to_string();
    let size = size.to_string();
    let mut fields = vec![("Filename", filename), ("Size", &size)];
    if let Some(md5) = md5_hex {
        fields.push(("MD5Sum", md5));
    }
    fields.push(("SHA256sum", sha256_hex));
    if apt {
        fields.push(("SHA256", sha256_hex));
    }
    for (name, value) in fields {
        p.insert_before("Description", name, value)
            .map_err(|source| IndexError::Field {
                package: package.clone(),
                source,
            })?;
    }
    check_stanza(&p)?;
    Ok(p)
}

/// The stanza for a package read from disk, published as `filename` (relative to the feed).
pub fn stanza_for(
    pkg: &Package,
    filename: &str,
    hashes: HashFields,
) -> Result<Paragraph, IndexError> {
    let md5_hex = if hashes.md5 { pkg.md5_hex() } else { None };
    build_stanza(
        &pkg.control,
        filename,
        pkg.size,
        &pkg.sha256_hex(),
        md5_hex.as_deref(),
        hashes.apt,
    )
}

/// Checks that a stanza has what apt and opkg need: the required fields, a numeric `Size`,
/// a 64-hex-digit `SHA256sum` or `SHA256` (equal when both are present), a parseable
/// `Version` and a `Filename` inside the feed.
pub fn check_stanza(p: &Paragraph) -> Result<(), IndexError> {
    let package = p.get("Package").unwrap_or("").to_string();
    for field in REQUIRED_FIELDS {
        if p.get(field).is_none_or(str::is_empty) {
            return Err(IndexError::MissingField { package, field });
        }
    }
    if stanza_sha256(p).is_none_or(str::is_empty) {
        return Err(IndexError::MissingField {
            package,
            field: "SHA256sum",
        });
    }
    let bad = |field, value: &str| IndexError::BadField {
        package: package.clone(),
        field,
        value: value.to_string(),
    };
    let size = p.get("Size").unwrap_or("");
    if size.parse::<u64>().is_err() {
        return Err(bad("Size", size));
    }
    let sha = stanza_sha256(p).unwrap_or("");
    if !is_hex(sha, 64) {
        return Err(bad("SHA256sum", sha));
    }
    if let (Some(a), Some(b)) = (p.get("SHA256sum"), p.get("SHA256"))
        && !a.eq_ignore_ascii_case(b)
    {
        return Err(bad("SHA256", b));
    }
    if let Some(md5) = p.get("MD5Sum")
        && !is_hex(md5, 32)
    {
        return Err(bad("MD5Sum", md5));
    }
    let version = p.get("Version").unwrap_or("");
    if Version::parse(version).is_err() {
        return Err(bad("Version", version));
    }
    check_filename(p.get("Filename").unwrap_or(""))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What [`sort_stanzas`] orders by: (Package, Version in dpkg order, Architecture, Filename);
/// a version that does not parse sorts by its text after those that do.
///
/// Its values are kept apart, not in one allocation: archman's workers make these and its
/// main thread copies them, and one block of the four values' size left more of the main
/// heap unusable than the smaller blocks do (bench/README.md, "Memory": a full index of
/// 10,000 packages peaked 2–5 MiB higher).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SortKey {
    package: String,
    unparsed_version: bool,
    version: Option<Version>,
    version_text: String,
    architecture: String,
    filename: String,
}

impl SortKey {
    /// The key of a stanza with these field values.
    pub fn new(package: &str, version: &str, architecture: &str, filename: &str) -> SortKey {
        let parsed = Version::parse(version).ok();
        SortKey {
            package: package.to_string(),
            unparsed_version: parsed.is_none(),
            version: parsed,
            version_text: version.to_string(),
            architecture: architecture.to_string(),
            filename: filename.to_string(),
        }
    }

    /// The `Package` value.
    pub fn package(&self) -> &str {
        &self.package
    }

    /// The `Version` value as written.
    pub fn version(&self) -> &str {
        &self.version_text
    }

    /// The `Architecture` value.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The `Filename` value.
    pub fn filename(&self) -> &str {
        &self.filename
    }
}

/// The sort key of a stanza (compute it once per stanza: `sort_by_cached_key`).
pub fn sort_key(p: &Paragraph) -> SortKey {
    let field = |f| p.get(f).unwrap_or("");
    SortKey::new(
        field("Package"),
        field("Version"),
        field("Architecture"),
        field("Filename"),
    )
}

/// Orders two stanzas as [`sort_stanzas`] does.
pub fn compare_stanzas(a: &Paragraph, b: &Paragraph) -> Ordering {
    sort_key(a).cmp(&sort_key(b))
}

/// Sorts stanzas deterministically (see [`compare_stanzas`]).
pub fn sort_stanzas(stanzas: &mut [Paragraph]) {
    stanzas.sort_by_cached_key(sort_key);
}

/// A whole `Packages` file: its stanzas and the layout details needed to write it back
/// byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagesFile {
    /// The stanzas, in file order.
    pub stanzas: Vec<Paragraph>,
    /// Blank lines after the last stanza (1 in a canonical file, 3 with OpenWrt's padding).
    pub trailing_blank_lines: usize,
    /// Whether the file ends with a newline.
    pub final_newline: bool,
}

impl PackagesFile {
    /// A canonical file of these stanzas (each followed by one blank line).
    pub fn new(stanzas: Vec<Paragraph>) -> Self {
        PackagesFile {
            stanzas,
            trailing_blank_lines: 1,
            final_newline: true,
        }
    }

    /// Parses an uncompressed `Packages` file.
    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        Self::read_from(bytes).0
    }

    /// Parses a `Packages` file from `input`, and gives the input back with whatever the
    /// parser did not take (the rest of a file that failed to parse).
    pub fn read_from<R: std::io::BufRead>(input: R) -> (Result<Self, IndexError>, R) {
        let mut reader = ParagraphReader::new(input);
        let file = reader
            .by_ref()
            .collect::<Result<Vec<_>, _>>()
            .map(|stanzas| PackagesFile {
                stanzas,
                trailing_blank_lines: reader.trailing_blank_lines(),
                final_newline: reader.ended_with_newline(),
            })
            .map_err(IndexError::from);
        (file, reader.into_inner())
    }

    /// Parses a gzipped `Packages.gz`, bounded by `limits.max_index` and the ratio limit.
    pub fn parse_gz(bytes: &[u8], limits: &Limits) -> Result<Self, IndexError> {
        Self::parse(&gunzip(bytes, limits)?)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, s) in self.stanzas.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            s.write_to(&mut out);
        }
        out.extend(std::iter::repeat_n(b'\n', self.trailing_blank_lines));
        if !self.final_newline && out.last() == Some(&b'\n') {
            out.pop();
        }
        out
    }
}

/// The canonical bytes of an index of these stanzas, in the order given.
pub fn write_packages(stanzas: &[Paragraph]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in stanzas {
        s.write_to(&mut out);
        out.push(b'\n');
    }
    out
}

/// Gzips `data` deterministically, as `gzip -9n` does (no name, mtime 0).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    // OS byte 3 (Unix), as `gzip -n` writes it on the systems that publish feeds.
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(Vec::new(), flate2::Compression::new(6));
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// `data` xz-compressed (preset 6, CRC-64, as `xz` writes by default): the `Packages.xz` of
/// a Debian archive layout.
pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Gunzips `data`, bounded by `limits.max_index` and the decompression ratio limit.
pub fn gunzip(data: &[u8], limits: &Limits) -> Result<Vec<u8>, IndexError> {
    let mut out = Vec::new();
    gunzip_reader(data, limits)
        .read_to_end(&mut out)
        .map_err(|e| gunzip_error(&e))?;
    Ok(out)
}

/// [`gunzip`] as a stream: `data` decompressed as it is read, within the same bounds (size
/// and ratio), so that an index need never be whole in memory. A read error means what
/// [`gunzip_error`] says.
pub fn gunzip_reader<'a, R: Read + 'a>(data: R, limits: &Limits) -> impl Read + 'a {
    let (counting, count) = Counting::new(data);
    let dec = flate2::read::MultiGzDecoder::new(counting);
    Bounded::new(dec, limits.max_index).with_ratio(count, limits.max_ratio, limits.ratio_grace)
}

/// What a read error of [`gunzip_reader`] means.
pub fn gunzip_error(e: &std::io::Error) -> IndexError {
    match LimitError::from_io(e) {
        Some(LimitError::TooLarge { limit }) => IndexError::TooLarge(limit),
        Some(LimitError::Ratio { ratio }) => IndexError::Bomb(ratio),
        None => IndexError::Gzip(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "74b0b6c47e9bb1d8dddbefb00cc9da65b2d884b0f3f77321ef65e3f27d4133f8";

    fn control() -> Paragraph {
        Paragraph::parse(
            "Package: foo\nVersion: 1.0-1\nArchitecture: all\nDescription:  Foo.\n more\n",
        )
        .unwrap()
    }

    #[test]
    fn stanza_layout_is_openwrts() {
        let s = build_stanza(&control(), "foo_1.0-1_all.ipk", 123, SHA, None, false).unwrap();
        assert_eq!(
            s.to_text(),
            format!(
                "Package: foo\nVersion: 1.0-1\nArchitecture: all\nFilename: foo_1.0-1_all.ipk\nSize: 123\nSHA256sum: {SHA}\nDescription:  Foo.\n more\n"
            )
        );
        let md5 = "0123456789abcdef0123456789abcdef";
        let s = build_stanza(&control(), "foo.ipk", 1, SHA, Some(md5), true).unwrap();
        let names: Vec<_> = s.fields().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "Package",
                "Version",
                "Architecture",
                "Filename",
                "Size",
                "MD5Sum",
                "SHA256sum",
                "SHA256",
                "Description"
            ]
        );
        // No Description: appended at the end; stale index fields are replaced.
        let mut c =
            Paragraph::parse("Package: a\nVersion: 1\nArchitecture: all\nSize: 999\n").unwrap();
        c.set("Filename", "elsewhere.ipk").unwrap();
        let s = build_stanza(&c, "a.ipk", 5, SHA, None, false).unwrap();
        assert_eq!(
            s.to_text(),
            format!(
                "Package: a\nVersion: 1\nArchitecture: all\nFilename: a.ipk\nSize: 5\nSHA256sum: {SHA}\n"
            )
        );
    }

    #[test]
    fn filenames_must_stay_inside() {
        for bad in [
            "",
            "/etc/passwd",
            "../x.ipk",
            "a/../../x.ipk",
            "a/..",
            "a\\b",
            "a\nb",
        ] {
            assert!(
                matches!(check_filename(bad), Err(IndexError::FilenameOutsideFeed(_))),
                "{bad:?}"
            );
            assert!(build_stanza(&control(), bad, 1, SHA, None, false).is_err());
        }
        for good in ["a.ipk", "pool/main/a.ipk", "./a.ipk", "a..b.ipk"] {
            check_filename(good).unwrap();
        }
    }

    #[test]
    fn stanzas_are_checked() {
        let p = |t: &str| Paragraph::parse(t).unwrap();
        let full = format!(
            "Package: a\nVersion: 1\nArchitecture: all\nFilename: a.ipk\nSize: 1\nSHA256sum: {SHA}\n"
        );
        check_stanza(&p(&full)).unwrap();
        let e = check_stanza(&p(&full.replace(
            &format!("SHA256sum: {SHA}\n"),
            "MD5Sum: 0123456789abcdef0123456789abcdef\n",
        )));
        assert_eq!(
            e.unwrap_err().to_string(),
            "stanza for \"a\": missing SHA256sum field"
        );
        let e = check_stanza(&p(&full.replace("Size: 1", "Size: -1")));
        assert_eq!(
            e.unwrap_err().to_string(),
            "stanza for \"a\": bad Size: \"-1\""
        );
        assert!(check_stanza(&p(&full.replace(SHA, "abc"))).is_err());
        // apt's name for the field is accepted; both must agree when both are present.
        check_stanza(&p(&full.replace("SHA256sum:", "SHA256:"))).unwrap();
        let both = format!("{full}SHA256: {}\n", "0".repeat(64));
        assert_eq!(
            check_stanza(&p(&both)).unwrap_err().to_string(),
            format!("stanza for \"a\": bad SHA256: \"{}\"", "0".repeat(64))
        );
    }

    #[test]
    fn sorting_is_deterministic_and_dpkg_ordered() {
        let mk = |pkg: &str, ver: &str, arch: &str, file: &str| {
            Paragraph::parse(&format!(
                "Package: {pkg}\nVersion: {ver}\nArchitecture: {arch}\nFilename: {file}\n"
            ))
            .unwrap()
        };
        let mut v = vec![
            mk("b", "1.0", "all", "b1"),
            mk("a", "1.10", "all", "a10"),
            mk("a", "1.9", "x86_64", "a9x"),
            mk("a", "1.9", "all", "a9"),
            mk("a", "1.9~rc1", "all", "a9rc"),
            mk("a", "1.9", "all", "a9-dup"),
        ];
        sort_stanzas(&mut v);
        let files: Vec<_> = v.iter().map(|p| p.get("Filename").unwrap()).collect();
        assert_eq!(files, ["a9rc", "a9", "a9-dup", "a9x", "a10", "b1"]);
    }

    #[test]
    fn sort_keys_put_parsed_versions_first_and_let_the_text_break_ties() {
        let k = |ver: &str, file: &str| SortKey::new("a", ver, "all", file);
        let key = SortKey::new("pkg", "1:2.0-3", "x86_64", "pool/p.ipk");
        assert_eq!(
            [
                key.package(),
                key.version(),
                key.architecture(),
                key.filename()
            ],
            ["pkg", "1:2.0-3", "x86_64", "pool/p.ipk"]
        );
        let mut keys = [
            k("not a version", "n"),
            k("1:0.1", "epoch"),
            k("1.00", "b"),
            k("1.0", "c"),
            k("", "empty"),
            k("1.0", "a"),
        ];
        keys.sort();
        let files: Vec<_> = keys.iter().map(SortKey::filename).collect();
        // 1.0 and 1.00 are the same version to dpkg: their text orders them.
        assert_eq!(files, ["a", "c", "b", "epoch", "empty", "n"]);
        assert_eq!(k("1.0", "a"), k("1.0", "a"));
        assert_ne!(k("1.0", "a"), k("1.00", "a"));
    }

    #[test]
    fn packages_files_round_trip() {
        let text = "A: 1\nB: x\n y\n\nA: 2\n\n";
        let f = PackagesFile::parse(text.as_bytes()).unwrap();
        assert_eq!(f.stanzas.len(), 2);
        assert_eq!(f.to_bytes(), text.as_bytes());
        assert_eq!(write_packages(&f.stanzas), text.as_bytes());
        for odd in ["A: 1\n\nA: 2\n", "A: 1\n\nA: 2", "A: 1\n\nA: 2\n\n\n\n", ""] {
            assert_eq!(
                PackagesFile::parse(odd.as_bytes()).unwrap().to_bytes(),
                odd.as_bytes()
            );
        }
        let e = PackagesFile::parse(b"A: 1\n\nA 2\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3: line has no colon (expected `Field: value`)"
        );
    }

    #[test]
    fn gzip_is_deterministic_and_bounded() {
        let data = write_packages(&[control()]);
        let gz = gzip(&data);
        assert_eq!(gz, gzip(&data));
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "mtime 0");
        assert_eq!(gz[3] & 0x08, 0, "no file name");
        assert_eq!(gunzip(&gz, &Limits::default()).unwrap(), data);
        let f = PackagesFile::parse_gz(&gz, &Limits::default()).unwrap();
        assert_eq!(f.stanzas, [control()]);

        let limits = Limits {
            max_index: 10,
            ..Limits::default()
        };
        assert_eq!(gunzip(&gz, &limits), Err(IndexError::TooLarge(10)));
        let bomb = gzip(&vec![b'\n'; 32 << 20]);
        assert!(matches!(
            gunzip(&bomb, &Limits::default()),
            Err(IndexError::Bomb(_))
        ));
        assert!(matches!(
            gunzip(b"not gzip", &Limits::default()),
            Err(IndexError::Gzip(_))
        ));
    }
}
