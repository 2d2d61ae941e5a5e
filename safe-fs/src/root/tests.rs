//! Escape attempts against [`Root`], one per attack. Each keeps sentinel files outside the
//! root and checks that nothing outside was read, written or removed.

use super::*;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const OPTS: WriteOptions = WriteOptions {
    mode: 0o644,
    sync: false,
};

/// A root, and a directory outside it holding `sentinel` ("outside") and nothing else.
struct Fixture {
    _root_dir: tempfile::TempDir,
    outside: tempfile::TempDir,
    root: Root,
}

impl Fixture {
    fn new() -> Fixture {
        let root_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("sentinel"), b"outside").unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        Fixture {
            _root_dir: root_dir,
            outside,
            root,
        }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    /// The outside directory's absolute path (canonical, as a symlink target).
    fn outside(&self) -> PathBuf {
        fs::canonicalize(self.outside.path()).unwrap()
    }

    /// Where the outside directory's absolute path lands inside the root.
    fn outside_in_root(&self) -> PathBuf {
        self.path().join(self.outside().strip_prefix("/").unwrap())
    }

    /// Fails unless the outside directory still holds exactly the sentinel, unchanged.
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(self.outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("sentinel")]);
        assert_eq!(
            fs::read(self.outside.path().join("sentinel")).unwrap(),
            b"outside"
        );
    }

    /// A `../../..` chain long enough to climb to `/` from anywhere in the root.
    fn climb(&self) -> String {
        "../".repeat(self.path().components().count() + 3)
    }
}

#[test]
fn confine_table() {
    for (input, want) in [
        ("", Some("")),
        ("/", Some("")),
        (".", Some("")),
        ("/var/opkg-lists", Some("var/opkg-lists")),
        ("var/opkg-lists/", Some("var/opkg-lists")),
        ("//var//./opkg-lists", Some("var/opkg-lists")),
        ("var/lib/../opkg-lists", Some("var/opkg-lists")),
        ("var/..", Some("")),
        ("a/b/../../c", Some("c")),
        ("..", None),
        ("/..", None),
        ("../etc", None),
        ("var/../../etc", None),
        ("a/./../..", None),
    ] {
        assert_eq!(Root::confine(input).ok().as_deref(), want, "{input:?}");
    }
    assert!(matches!(
        Root::confine("../x"),
        Err(ConfineError::Escapes { .. })
    ));
    assert!(matches!(
        Root::confine("a\0b"),
        Err(ConfineError::Nul { .. })
    ));
    assert_eq!(
        Root::confine("/../etc").unwrap_err().to_string(),
        "\"/../etc\": `..` climbs above the root"
    );
}

#[test]
fn a_configured_path_that_climbs_is_refused_before_touching_anything() {
    let f = Fixture::new();
    let err = f.root.open_dir("../x", true).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("`..` climbs above the root"),
        "{err}"
    );
    let climb = format!("{}{}", f.climb(), f.outside().join("new").display());
    assert!(f.root.write_atomic(&climb, b"x", OPTS).is_err());
    assert!(f.root.read_file(&climb, 100).is_err());
    f.assert_outside_untouched();
}

#[test]
fn symlink_to_absolute_host_path_resolves_inside_root() {
    let f = Fixture::new();
    fs::create_dir(f.path().join("etc")).unwrap();
    symlink(f.outside(), f.path().join("etc/opkg")).unwrap();
    let keys = f.root.resolve_dir("etc/opkg/keys", true).unwrap();
    assert_eq!(keys, f.outside_in_root().join("keys"));
    assert!(keys.is_dir());
    f.root
        .write_atomic("etc/opkg/keys/abc", b"key", OPTS)
        .unwrap();
    assert_eq!(fs::read(keys.join("abc")).unwrap(), b"key");
    // Reading through the link finds the root's copy, not the host's sentinel.
    assert_eq!(f.root.read_file("etc/opkg/sentinel", 100).unwrap(), None);
    f.assert_outside_untouched();
}

#[test]
fn dotdot_symlink_cannot_climb_above_root() {
    let f = Fixture::new();
    fs::create_dir_all(f.path().join("a/b")).unwrap();
    let target = format!("{}{}", f.climb(), f.outside().display());
    symlink(&target, f.path().join("a/b/up")).unwrap();
    let dir = f.root.resolve_dir("a/b/up", true).unwrap();
    assert_eq!(dir, f.outside_in_root());
    f.root.write_atomic("a/b/up/planted", b"x", OPTS).unwrap();
    assert_eq!(f.root.read_file("a/b/up/sentinel", 100).unwrap(), None);
    // `..` at the root stays at the root, whether the link starts at `/` or not.
    symlink("/../../..", f.path().join("slash")).unwrap();
    assert_eq!(f.root.resolve_dir("slash", false).unwrap(), f.path());
    symlink("b/../../../../..", f.path().join("a/deep")).unwrap();
    assert_eq!(
        f.root.resolve_dir("a/deep/a/b", false).unwrap(),
        f.path().join("a/b")
    );
    f.assert_outside_untouched();
}

#[test]
fn relative_symlink_inside_root_is_followed() {
    // OpenWrt's `/var -> /tmp` and the relative `var -> tmp`.
    let f = Fixture::new();
    symlink("tmp", f.path().join("var")).unwrap();
    assert_eq!(
        f.root.resolve_dir("/var/lib/prokit", true).unwrap(),
        f.path().join("tmp/lib/prokit")
    );
    fs::remove_file(f.path().join("var")).unwrap();
    symlink("/tmp", f.path().join("var")).unwrap();
    f.root
        .write_atomic("var/opkg-lists/x", b"list", OPTS)
        .unwrap();
    assert_eq!(
        fs::read(f.path().join("tmp/opkg-lists/x")).unwrap(),
        b"list"
    );
    assert_eq!(
        f.root.read_file("/var/opkg-lists/x", 100).unwrap().unwrap(),
        b"list"
    );
}

#[test]
fn final_symlink_to_host_file_is_not_read() {
    let f = Fixture::new();
    fs::create_dir(f.path().join("etc")).unwrap();
    let host_file = f.outside().join("sentinel");
    symlink(&host_file, f.path().join("etc/shadow")).unwrap();
    assert_eq!(f.root.read_file("etc/shadow", 100).unwrap(), None);
    assert!(f.root.open_file("etc/shadow").unwrap().is_none());
    // The same absolute target inside the root is what the link means there.
    let inside = f.outside_in_root();
    fs::create_dir_all(&inside).unwrap();
    fs::write(inside.join("sentinel"), b"inside").unwrap();
    assert_eq!(
        f.root.read_file("etc/shadow", 100).unwrap().unwrap(),
        b"inside"
    );
    // A relative `..` chain from the final link stays inside too.
    let up = format!("{}{}", f.climb(), host_file.display());
    symlink(&up, f.path().join("etc/up")).unwrap();
    assert_eq!(f.root.read_file("etc/up", 100).unwrap().unwrap(), b"inside");
    f.assert_outside_untouched();
}

#[test]
#[allow(unsafe_code)] // mkfifo(3)
fn final_symlink_to_a_directory_or_fifo_is_not_read_as_a_file() {
    let f = Fixture::new();
    symlink("/", f.path().join("root-link")).unwrap();
    let err = f.root.read_file("root-link", 100).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    fs::create_dir(f.path().join("d")).unwrap();
    symlink("d/", f.path().join("d-link")).unwrap();
    assert!(f.root.read_file("d-link", 100).is_err());
    let fifo = std::ffi::CString::new(f.path().join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let err = f.root.read_file("fifo", 100).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    fs::write(f.path().join("big"), b"12345").unwrap();
    let err = f.root.read_file("big", 4).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
}

#[test]
fn write_through_final_symlink_replaces_the_link_not_the_target() {
    let f = Fixture::new();
    fs::create_dir(f.path().join("etc")).unwrap();
    symlink(f.outside().join("sentinel"), f.path().join("etc/opkg.conf")).unwrap();
    f.root.write_atomic("etc/opkg.conf", b"conf", OPTS).unwrap();
    let meta = fs::symlink_metadata(f.path().join("etc/opkg.conf")).unwrap();
    assert!(meta.is_file());
    assert_eq!(fs::read(f.path().join("etc/opkg.conf")).unwrap(), b"conf");
    f.assert_outside_untouched();
}

#[test]
fn write_through_a_directory_symlink_to_the_host_lands_inside() {
    let f = Fixture::new();
    symlink(f.outside(), f.path().join("etc")).unwrap();
    f.root
        .write_atomic_with("etc/sentinel", OPTS, |file| {
            std::io::Write::write_all(file, b"mine")
        })
        .unwrap();
    assert_eq!(
        fs::read(f.outside_in_root().join("sentinel")).unwrap(),
        b"mine"
    );
    f.assert_outside_untouched();
}

#[test]
fn remove_through_a_symlinked_directory_cannot_delete_outside() {
    let f = Fixture::new();
    symlink(f.outside(), f.path().join("d")).unwrap();
    assert!(!f.root.remove_file("d/sentinel").unwrap());
    // A final symlink is removed itself.
    symlink(f.outside().join("sentinel"), f.path().join("link")).unwrap();
    assert!(f.root.remove_file("link").unwrap());
    assert!(fs::symlink_metadata(f.path().join("link")).is_err());
    assert!(!f.root.remove_file("none/x").unwrap());
    f.assert_outside_untouched();
}

#[test]
fn symlink_loops_and_long_chains_stop_after_40_hops() {
    let f = Fixture::new();
    symlink("b", f.path().join("a")).unwrap();
    symlink("a", f.path().join("b")).unwrap();
    let err = f.root.open_dir("a/x", true).unwrap_err();
    assert_eq!(err.io_error().raw_os_error(), Some(libc::ELOOP), "{err}");
    assert!(f.root.read_file("a", 100).is_err());
    fs::create_dir(f.path().join("target")).unwrap();
    let mut previous = "target".to_string();
    for i in 1..=41 {
        let name = format!("l{i}");
        symlink(&previous, f.path().join(&name)).unwrap();
        previous = name;
    }
    assert_eq!(
        f.root.resolve_dir("l40", false).unwrap(),
        f.path().join("target")
    );
    assert!(f.root.resolve_dir("l41", false).is_err());
}

#[test]
fn a_file_on_the_way_is_not_a_directory() {
    let f = Fixture::new();
    fs::write(f.path().join("file"), b"").unwrap();
    let err = f.root.open_dir("file/x", true).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
    assert_eq!(err.path, f.path().join("file"));
    assert!(f.root.write_atomic("file/x", b"", OPTS).is_err());
    assert!(f.root.read_file("file/x", 10).is_err());
}

#[test]
fn missing_directories_are_not_found_or_created_with_mode_0755() {
    let f = Fixture::new();
    let err = f.root.open_dir("a/b", false).unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.path, f.path().join("a"));
    assert_eq!(f.root.read_file("a/b/c", 10).unwrap(), None);
    let dir = f.root.open_dir("a/b", true).unwrap();
    assert_eq!(dir.path(), f.path().join("a/b"));
    for d in ["a", "a/b"] {
        let mode = fs::metadata(f.path().join(d)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755, "{d}");
    }
}

#[test]
fn the_root_itself() {
    let f = Fixture::new();
    assert_eq!(f.root.resolve_dir("/", false).unwrap(), f.path());
    assert_eq!(f.root.resolve_dir("", false).unwrap(), f.path());
    assert_eq!(
        f.root.read_file("/", 10).unwrap_err().kind(),
        io::ErrorKind::IsADirectory
    );
    assert!(f.root.write_atomic("", b"", OPTS).is_err());
    let err = Root::open(&f.path().join("none")).unwrap_err();
    assert!(err.is_not_found());
    fs::write(f.path().join("file"), b"").unwrap();
    let err = Root::open(&f.path().join("file")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
}

#[test]
fn swap_race_cannot_redirect_outside() {
    let f = Fixture::new();
    fs::write(f.outside.path().join("secret"), b"host secret").unwrap();
    fs::create_dir(f.path().join("a")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = Arc::clone(&stop);
        let root = f.path().to_path_buf();
        let targets = [
            f.outside().into_os_string(),
            OsString::from(format!("{}{}", f.climb(), f.outside().display())),
        ];
        std::thread::spawn(move || {
            let (a, real) = (root.join("a"), root.join("a.real"));
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Move the directory away, put a link to the host in its place, then undo.
                let _ = fs::rename(&a, &real);
                let _ = symlink(&targets[(swaps % 2) as usize], &a);
                std::thread::yield_now();
                if fs::symlink_metadata(&a).is_ok_and(|m| m.is_symlink()) {
                    let _ = fs::remove_file(&a);
                }
                let _ = fs::rename(&real, &a);
                swaps += 1;
            }
            swaps
        })
    };
    let mut written = 0;
    for i in 0..500 {
        if f.root
            .write_atomic("a/f", format!("{i}").as_bytes(), OPTS)
            .is_ok()
        {
            written += 1;
        }
        if let Ok(Some(bytes)) = f.root.read_file("a/secret", 100) {
            panic!("read {bytes:?} from outside the root");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(written > 0 && swaps > 0, "written {written}, swaps {swaps}");
    // Every write landed in the root's `a` (or `a.real`), or where a link's target resolves
    // inside the root; nothing outside.
    fs::remove_file(f.outside.path().join("secret")).unwrap();
    f.assert_outside_untouched();
}
