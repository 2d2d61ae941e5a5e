//! `archman index --layout debian`: the feed published as a Debian archive, the tree apt reads
//! with `deb URL SUITE COMPONENT` (docs/formats.md §7):
//!
//! ```text
//! dists/<suite>/Release, InRelease, Release.gpg, Release.sig
//! dists/<suite>/<component>/binary-<arch>/Packages, Packages.gz, Packages.xz
//! dists/<suite>/<component>/binary-<arch>/by-hash/SHA256/<sha256 of each of them>
//! ```
//!
//! The packages stay where they are in the feed tree (`pool/` by convention); `Filename` is
//! their path from the archive root. Each `binary-<arch>/Packages` lists that architecture's
//! packages and the `Architecture: all` ones (`No-Support-for-Architecture-all: Packages`, as
//! Debian's own archive does); `binary-all` lists the latter alone.
//!
//! Publishing order (docs/crash-safety.md §2.5): the by-hash copies first (new names, nothing
//! a client reads changes), then the indexes and the Release group under one journal, as the
//! flat layout publishes. A client that read the old InRelease while this ran fetches by
//! hash (`Acquire-By-Hash: yes`) and finds every file it names: the copies of the last
//! `keep` Releases stay, older ones are removed afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use feeds::release::{Archive, FileHash, Release};
use feeds::usign::SecretKey;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{
    Body, IndexError, IndexOptions, Known, Outputs, Progress, Summary, Written, file_hash, io_err,
    publish_files, recover, settle_date, sync_dir, temp_name, write_temp,
};

/// `--layout debian --suite … [--codename …] [--component …] [--arch …]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianLayout {
    pub suite: String,
    pub codename: Option<String>,
    pub component: String,
    /// The architectures published besides `all`; empty: those of the packages.
    pub archs: Vec<String>,
    /// How many Releases' by-hash copies are kept (the current one included).
    pub by_hash_keep: usize,
}

/// The record of which by-hash copies each of the last Releases named, in the suite
/// directory: one `release <Date>` line per Release, newest last, each followed by the
/// `<dir> <sha256>` lines of its indexes.
const HISTORY: &str = ".archman-by-hash";

/// The index files of the three compressions, in publish order (`Packages` last: a client
/// that reads the plain file while the others change never mixes generations of one file).
const INDEX_NAMES: [&str; 3] = ["Packages.xz", "Packages.gz", "Packages"];

impl DebianLayout {
    /// Checks the names that become directory names and Release fields.
    pub fn check(&self) -> Result<(), IndexError> {
        let ok = |what: &str, v: &str| {
            let good = !v.is_empty()
                && !v.starts_with(['.', '-'])
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-~".contains(&b));
            if good {
                Ok(())
            } else {
                Err(IndexError::Layout(format!(
                    "{what} {v:?}: use letters, digits and . _ + - ~ (not first . or -)"
                )))
            }
        };
        ok("--suite", &self.suite)?;
        if let Some(c) = &self.codename {
            ok("--codename", c)?;
        }
        ok("--component", &self.component)?;
        for a in &self.archs {
            ok("--arch", a)?;
            if a == "all" {
                return Err(IndexError::Layout(
                    "--arch all: binary-all is always published; name the machine architectures"
                        .into(),
                ));
            }
        }
        if self.by_hash_keep == 0 {
            return Err(IndexError::Layout(
                "--by-hash-keep 0: the current Release's copies are always kept (1 or more)".into(),
            ));
        }
        Ok(())
    }
}

/// Makes `dir/rel` (each component a real directory, never a symlink: a symlink planted in
/// the feed would send the index files elsewhere) and returns it.
fn make_dirs(dir: &Path, rel: &str) -> Result<PathBuf, IndexError> {
    let mut path = dir.to_path_buf();
    for part in rel.split('/') {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(IndexError::Io {
                    path: path.clone(),
                    source: io::Error::other(
                        "not a directory (a symlink or file where the archive layout needs a directory)",
                    ),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(io_err(&path))?;
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(path)
}

/// One `binary-<arch>` directory's Packages text.
struct ArchIndex {
    /// `<component>/binary-<arch>`, relative to the suite directory.
    rel: String,
    packages: Vec<u8>,
}

fn arch_indexes(
    known: &[Known],
    layout: &DebianLayout,
    warn: &mut dyn FnMut(String),
) -> Result<(Vec<String>, Vec<ArchIndex>), IndexError> {
    let mut order: Vec<&Known> = known.iter().collect();
    order.sort_by(|a, b| a.key.cmp(&b.key));
    let found: BTreeSet<&str> = order
        .iter()
        .map(|k| k.key.architecture())
        .filter(|a| *a != "all")
        .collect();
    let archs: Vec<String> = if layout.archs.is_empty() {
        found.iter().map(|a| a.to_string()).collect()
    } else {
        for a in found
            .iter()
            .filter(|a| !layout.archs.iter().any(|x| x == *a))
        {
            warn(format!(
                "packages of architecture {a} are not published: --arch does not name it"
            ));
        }
        layout.archs.clone()
    };
    let text = |pred: &dyn Fn(&str) -> bool| {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for k in order.iter().filter(|k| pred(k.key.architecture())) {
            let stanza = k.entry.stanza.text(&mut buf).map_err(IndexError::Spill)?;
            out.extend_from_slice(stanza.as_bytes());
            out.push(b'\n');
        }
        Ok::<_, IndexError>(out)
    };
    let mut out = vec![ArchIndex {
        rel: format!("{}/binary-all", layout.component),
        packages: text(&|a| a == "all")?,
    }];
    for arch in &archs {
        out.push(ArchIndex {
            rel: format!("{}/binary-{arch}", layout.component),
            packages: text(&|a| a == "all" || a == arch)?,
        });
    }
    Ok((archs, out))
}

/// The Release fields other than the hashes and dates.
fn release_template(
    opts: &IndexOptions,
    feed_name: &str,
    layout: &DebianLayout,
    archs: &[String],
) -> Release {
    let origin = opts.origin.clone().unwrap_or_else(|| feed_name.to_string());
    let mut architectures = vec!["all".to_string()];
    architectures.extend(archs.iter().cloned());
    Release {
        origin: Some(origin.clone()),
        label: Some(origin),
        date: 0,
        valid_until: None,
        architectures,
        sha256: Vec::new(),
        archive: Some(Archive {
            suite: layout.suite.clone(),
            codename: layout.codename.clone(),
            components: vec![layout.component.clone()],
            acquire_by_hash: true,
            all_in_arch_indexes: !archs.is_empty(),
        }),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// True when the published Release of `suite_dir` already lists exactly these indexes (by
/// the hash of each plain `Packages`, every listed file on disk as listed) with the same
/// fields and the same signatures.
fn unchanged(
    suite_dir: &Path,
    template: &Release,
    indexes: &[ArchIndex],
    opts: &IndexOptions,
    key: Option<&SecretKey>,
    openpgp: bool,
) -> bool {
    let Some(old) = fs::read_to_string(suite_dir.join("Release"))
        .ok()
        .and_then(|t| Release::parse(&t).ok())
    else {
        return false;
    };
    let same_fields = old.origin == template.origin
        && old.label == template.label
        && old.architectures == template.architectures
        && old.archive == template.archive
        && old.valid_until.map(|v| v - old.date) == opts.valid_for
        && old.sha256.len() == indexes.len() * INDEX_NAMES.len();
    let same_indexes = indexes.iter().all(|ix| {
        old.file(&format!("{}/Packages", ix.rel))
            .is_some_and(|f| f.sha256 == sha256_hex(&ix.packages))
    });
    if !(same_fields && same_indexes) {
        return false;
    }
    let on_disk = old.sha256.iter().all(|f| {
        fs::read(suite_dir.join(&f.name))
            .is_ok_and(|d| d.len() as u64 == f.size && sha256_hex(&d) == f.sha256)
    });
    let same_signing = match key {
        None => !suite_dir.join("Release.sig").exists(),
        Some(k) => feeds::usign::Signature::read_path(&suite_dir.join("Release.sig"))
            .is_ok_and(|sig| sig.fingerprint() == k.fingerprint()),
    };
    let same_openpgp = ["InRelease", "Release.gpg"]
        .iter()
        .all(|n| suite_dir.join(n).exists() == openpgp);
    on_disk && same_signing && same_openpgp
}

/// Writes `data` as `by_hash/<hash>` unless a file of that name already holds it.
fn write_by_hash(by_hash: &Path, tag: &str, hash: &str, data: &[u8]) -> Result<bool, IndexError> {
    let dest = by_hash.join(hash);
    if fs::read(&dest).is_ok_and(|d| sha256_hex(&d) == hash) {
        return Ok(false);
    }
    let tmp = write_temp(by_hash, tag, hash, data, true)?;
    fs::rename(&tmp, &dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(&tmp)(e)
    })?;
    Ok(true)
}

/// The by-hash history: per Release (oldest first), its `(index dir, sha256)` pairs.
type History = Vec<Vec<(String, String)>>;

fn read_history(suite_dir: &Path) -> Option<History> {
    let text = fs::read_to_string(suite_dir.join(HISTORY)).ok()?;
    let mut out: History = Vec::new();
    for line in text.lines() {
        if line.starts_with("release ") {
            out.push(Vec::new());
            continue;
        }
        let (dir, hash) = line.split_once(' ')?;
        let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid || !super::journal_name_ok(&format!("{dir}/Packages")) {
            return None;
        }
        out.last_mut()?.push((dir.to_string(), hash.to_string()));
    }
    Some(out)
}

fn history_text(history: &History) -> String {
    let mut out = String::new();
    for (i, gen_) in history.iter().enumerate() {
        out.push_str(&format!("release {i}\n"));
        for (dir, hash) in gen_ {
            out.push_str(&format!("{dir} {hash}\n"));
        }
    }
    out
}

/// The `(index dir, sha256)` pairs a Release lists.
fn release_pairs(release: &Release) -> Vec<(String, String)> {
    release
        .sha256
        .iter()
        .filter_map(|f| {
            let (dir, base) = f.name.rsplit_once('/')?;
            INDEX_NAMES
                .contains(&base)
                .then(|| (dir.to_string(), f.sha256.clone()))
        })
        .collect()
}

/// Publishes the Debian layout of `known` under `dir/dists/<suite>`.
#[allow(clippy::too_many_arguments)]
pub(super) fn publish(
    dir: &Path,
    layout: &DebianLayout,
    known: &[Known],
    opts: &IndexOptions,
    feed_name: &str,
    key: Option<&SecretKey>,
    openpgp: Option<&usign_openpgp::Signer>,
    tag: &str,
    progress: &dyn Progress,
    summary: &mut Summary,
) -> Result<(), IndexError> {
    layout.check()?;
    let suite_rel = format!("dists/{}", layout.suite);
    let suite_dir = make_dirs(dir, &suite_rel)?;
    if recover(&suite_dir)? {
        let w = format!(
            "{}: finished or cleaned up an interrupted earlier run",
            suite_dir.display()
        );
        progress.warn(&w);
        summary.warnings.push(w);
    }
    let mut warnings = Vec::new();
    let (archs, indexes) = arch_indexes(known, layout, &mut |w| warnings.push(w))?;
    for w in warnings {
        progress.warn(&w);
        summary.warnings.push(w);
    }
    let template = release_template(opts, feed_name, layout, &archs);
    let mut index_dirs = Vec::new();
    for ix in &indexes {
        let d = make_dirs(&suite_dir, &format!("{}/by-hash/SHA256", ix.rel))?;
        // Temporaries of a run killed before its journal was complete.
        for sub in [suite_dir.join(&ix.rel), d.clone()] {
            for e in fs::read_dir(&sub).map_err(io_err(&sub))?.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&temp_name(None, ""))
                {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        index_dirs.push(d);
    }
    if !opts.refresh
        && unchanged(
            &suite_dir,
            &template,
            &indexes,
            opts,
            key,
            openpgp.is_some(),
        )
    {
        return Ok(());
    }

    // Compress, in parallel: xz is the slow one. Each text moves into the files (no copy).
    let files: Vec<(String, Vec<u8>)> = indexes
        .into_par_iter()
        .flat_map_iter(|ix| {
            let xz = feeds::index::xz(&ix.packages);
            let gz = feeds::index_gz::gzip_index(&ix.packages);
            [
                (format!("{}/Packages.xz", ix.rel), xz),
                (format!("{}/Packages.gz", ix.rel), gz),
                (format!("{}/Packages", ix.rel), ix.packages),
            ]
        })
        .collect();
    let mut hashes: Vec<FileHash> = files.iter().map(|(n, d)| file_hash(n, d)).collect();
    hashes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Outputs {
        files: Vec::new(),
        checked_sig: None,
        release: Release {
            sha256: hashes,
            ..template
        },
        parts: Default::default(),
        gz_stats: Default::default(),
    };
    let date = settle_date(&suite_dir, &out, opts, key, progress, &mut summary.warnings)?;
    out.seal(date, opts.valid_for, key, openpgp)?;

    // 1. The by-hash copies: new names only.
    for (name, data) in &files {
        let (rel, _) = name.rsplit_once('/').unwrap_or(("", name));
        let by_hash = suite_dir.join(rel).join("by-hash/SHA256");
        write_by_hash(&by_hash, tag, &sha256_hex(data), data)?;
    }
    for d in &index_dirs {
        sync_dir(d)?;
    }
    // 2. The indexes and the Release group, under one journal.
    let mut all: Vec<(String, Body<'_>)> = files
        .into_iter()
        .map(|(n, d)| (n, Body::Bytes(d)))
        .collect();
    all.extend(out.files.into_iter().map(|(n, d)| (n.to_string(), d)));
    publish_files(&suite_dir, tag, &all, Written::default())?;
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for stale in ["Release.sig", "InRelease", "Release.gpg"] {
        if !names.contains(&stale) {
            let _ = fs::remove_file(suite_dir.join(stale));
        }
    }
    summary.written = names.iter().map(|n| format!("{suite_rel}/{n}")).collect();
    if let Some(codename) = layout.codename.as_deref().filter(|c| *c != layout.suite) {
        link_codename(dir, codename, &layout.suite, progress, summary);
    }
    summary.date = Some(date);

    // 3. Forget by-hash copies no Release of the last `keep` names.
    let published = Release::parse(&String::from_utf8_lossy(
        all.iter()
            .find(|(n, _)| n == "Release")
            .and_then(|(_, d)| d.as_bytes())
            .unwrap_or_default(),
    ))
    .map_err(|e| IndexError::Layout(format!("the Release just written does not parse: {e}")))?;
    prune_by_hash(
        &suite_dir,
        tag,
        &published,
        layout.by_hash_keep,
        &index_dirs,
        progress,
        summary,
    );
    Ok(())
}

/// `dists/<codename>` → `<suite>`, as Debian links `dists/stable` to `dists/bookworm`, so
/// that sources naming the codename find the same Release. Made once; anything else already
/// there is left alone, with a warning.
fn link_codename(
    dir: &Path,
    codename: &str,
    suite: &str,
    progress: &dyn Progress,
    summary: &mut Summary,
) {
    let link = dir.join("dists").join(codename);
    let problem = match fs::read_link(&link) {
        Ok(target) if target == Path::new(suite) => return,
        Ok(target) => format!("a symlink to {}", target.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match std::os::unix::fs::symlink(suite, &link) {
                Ok(()) => return,
                Err(e) => e.to_string(),
            }
        }
        Err(_) => "not a symlink".into(),
    };
    let w = format!(
        "{}: {problem}, so sources that name the codename {codename} do not reach suite {suite}",
        link.display()
    );
    progress.warn(&w);
    summary.warnings.push(w);
}

/// Records this Release in the history and removes the by-hash copies that none of the last
/// `keep` Releases names. Without a readable history nothing is removed (a copy a client may
/// still want is never guessed away); the history starts again from this Release.
fn prune_by_hash(
    suite_dir: &Path,
    tag: &str,
    published: &Release,
    keep: usize,
    index_dirs: &[PathBuf],
    progress: &dyn Progress,
    summary: &mut Summary,
) {
    let previous = read_history(suite_dir);
    let had_history = previous.is_some();
    let mut history = previous.unwrap_or_default();
    history.push(release_pairs(published));
    let drop = history.len().saturating_sub(keep);
    history.drain(..drop);
    let path = suite_dir.join(HISTORY);
    if let Err(e) = super::replace_via_temp(
        suite_dir,
        tag,
        &path,
        history_text(&history).as_bytes(),
        true,
    ) {
        let w = format!("by-hash history not updated: {e}; old by-hash copies are kept");
        progress.warn(&w);
        summary.warnings.push(w);
        return;
    }
    if !had_history {
        return;
    }
    let mut kept: BTreeMap<PathBuf, BTreeSet<&str>> = BTreeMap::new();
    for (dir, hash) in history.iter().flatten() {
        kept.entry(suite_dir.join(dir).join("by-hash/SHA256"))
            .or_default()
            .insert(hash);
    }
    for d in index_dirs {
        let Ok(entries) = fs::read_dir(d) else {
            continue;
        };
        let keep_here = kept.get(d);
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_copy = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if is_copy && !keep_here.is_some_and(|k| k.contains(name.as_str())) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}
