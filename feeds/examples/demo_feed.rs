//! Builds a signed feed from package source trees with nothing but the `feeds` library:
//! each `<src>/<pkg>/CONTROL/control` plus its data tree becomes a reproducible `.ipk`, the
//! packages are read back (one pass, hashed), and `Packages`, `Packages.gz`, `Release` and
//! their usign signatures are written.
//!
//! usage: demo_feed <SRC_DIR> <FEED_DIR> <SECRET_KEY>
//!
//! `archman build` and `archman index` do this job for real (with parallelism, caching and
//! atomic publishing); this example shows the library calls underneath.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use feeds::build::{PackageBuilder, Source};
use feeds::index::{self, PackagesFile};
use feeds::package::{Package, ReadOptions};
use feeds::release::{FileHash, Release};
use feeds::usign::SecretKey;
use sha2::{Digest, Sha256};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn add_tree(mut b: PackageBuilder, root: &Path, dir: &Path) -> Result<PackageBuilder> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
        if rel == "CONTROL" {
            continue;
        }
        let mode = e.metadata()?.permissions().mode() & 0o7777;
        if e.file_type()?.is_dir() {
            b = add_tree(b.dir(&rel, mode), root, &path)?;
        } else {
            b = b.entry(feeds::build::DataEntry {
                path: rel,
                mode,
                kind: feeds::build::EntryKind::File(Source::Path(path)),
            });
        }
    }
    Ok(b)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, src, out, key] = &args[..] else {
        return Err("usage: demo_feed <SRC_DIR> <FEED_DIR> <SECRET_KEY>".into());
    };
    let (src, out) = (Path::new(src), Path::new(out));
    let epoch: u64 = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse()?,
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    };
    fs::create_dir_all(out)?;
    let mut stanzas = Vec::new();
    let mut dirs: Vec<_> = fs::read_dir(src)?.collect::<std::io::Result<_>>()?;
    dirs.sort_by_key(|e| e.file_name());
    for d in dirs {
        let pkg_dir = d.path();
        let control = fs::read(pkg_dir.join("CONTROL/control"))?;
        let mut b = PackageBuilder::new(control).mtime(epoch);
        for f in fs::read_dir(pkg_dir.join("CONTROL"))? {
            let f = f?;
            if f.file_name() != "control" {
                let mode = f.metadata()?.permissions().mode() & 0o7777;
                b = b.control_file(&f.file_name().to_string_lossy(), mode, fs::read(f.path())?);
            }
        }
        let b = add_tree(b, &pkg_dir, &pkg_dir)?;
        let tmp = out.join(".new.ipk");
        fs::write(&tmp, b.build()?)?;
        let pkg = Package::open(&tmp, &ReadOptions::default())?;
        let name = format!(
            "{}_{}_{}.ipk",
            pkg.name(),
            pkg.version(),
            pkg.architecture()
        );
        fs::rename(&tmp, out.join(&name))?;
        println!(
            "built {name} ({} bytes, sha256 {})",
            pkg.size,
            pkg.sha256_hex()
        );
        stanzas.push(index::stanza_for(
            &pkg,
            &name,
            index::HashFields {
                md5: false,
                apt: true,
            },
        )?);
    }
    index::sort_stanzas(&mut stanzas);
    let packages = PackagesFile::new(stanzas).to_bytes();
    let packages_gz = index::gzip(&packages);
    let hash = |name: &str, data: &[u8]| FileHash {
        sha256: hex::encode(Sha256::digest(data)),
        size: data.len() as u64,
        name: name.to_string(),
    };
    let release = Release {
        origin: Some("demo".into()),
        label: Some("demo".into()),
        date: epoch as i64,
        valid_until: Some(epoch as i64 + 7 * 86_400),
        architectures: vec!["all".into()],
        sha256: vec![
            hash("Packages", &packages),
            hash("Packages.gz", &packages_gz),
        ],
    };
    let sk = SecretKey::read_path(Path::new(key), None)?;
    let release_text = release.to_text();
    for (name, data) in [
        ("Packages", &packages[..]),
        ("Packages.gz", &packages_gz[..]),
        ("Release", release_text.as_bytes()),
    ] {
        fs::write(out.join(name), data)?;
    }
    sk.sign(&packages)?.write_path(&out.join("Packages.sig"))?;
    sk.sign(release_text.as_bytes())?
        .write_path(&out.join("Release.sig"))?;
    println!(
        "wrote Packages, Packages.gz, Release, signed by key {}",
        sk.fingerprint()
    );
    Ok(())
}
