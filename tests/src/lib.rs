//! Support for the workspace's tests (the end-to-end tests in `tests/tests/` and the
//! integration tests of `feeds` and `archman`): locating the workspace's binaries, the
//! real-world samples beside the checkout, and peer tools. It depends on nothing, so every
//! crate can use it as a dev-dependency. Outside CI a missing sample
//! folder or peer tool skips a test with a visible message; under CI (`CI` set) it fails it.

// The visible message of a skipped test ("SKIPPED: ...") goes to stderr.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The path of a workspace binary (`archman`, `prokit`), built by `cargo build --bins`
/// (the README's test command, `scripts/test`, does that before `cargo test`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// `../shared/real` beside the checkout, or `None` (after printing why) outside CI.
pub fn real_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/real");
    if dir.is_dir() {
        return Some(dir.canonicalize().expect("canonicalize shared/real"));
    }
    if std::env::var_os("CI").is_some() {
        panic!("{} is missing, and CI must have it", dir.display());
    }
    eprintln!("SKIPPED: {} is absent (not under CI)", dir.display());
    None
}

/// True when `tool` is on the PATH; outside CI a missing tool skips with a message, under CI
/// it fails the test.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("peer tool `{tool}` is not installed, and CI must have it (see .ci/run)");
    }
    eprintln!("SKIPPED: peer tool `{tool}` is not installed (not under CI)");
    false
}

/// A new usign key pair made by `archman keygen` (the binary at `archman`) in `dir`:
/// (`dir/k.sec`, `dir/k.pub`). Panics, with archman's message, when it fails.
pub fn archman_keygen(archman: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let (sec, public) = (dir.join("k.sec"), dir.join("k.pub"));
    let (ok, _, err) = run(Command::new(archman)
        .args(["keygen", "-s"])
        .arg(&sec)
        .arg("-p")
        .arg(&public));
    assert!(ok, "archman keygen: {err}");
    (sec, public)
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A real HTTP server (Python's http.server, as `python3 -m http.server` runs it) serving a
/// directory on 127.0.0.1, stopped when dropped. Tests that fetch go through it, as a device
/// would.
pub struct HttpServer {
    child: std::process::Child,
    port: u16,
}

impl HttpServer {
    /// Serves `dir`; `None` (after a message) when python3 is missing outside CI.
    pub fn serve(dir: &Path) -> Option<HttpServer> {
        if !have_tool("python3") {
            return None;
        }
        // The server binds port 0 and says which port it got: choosing a free port first and
        // handing it over raced with other tests' servers (a connect could reach another
        // test's server that had taken the port meanwhile).
        const SERVE: &str = "import functools, http.server, sys\n\
            h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
            s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n\
            print(s.server_address[1], flush=True)\n\
            s.serve_forever()\n";
        let mut child = Command::new("python3")
            .args(["-c", SERVE])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn python3 http.server");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        }
        if let Ok(port) = line.trim().parse::<u16>() {
            return Some(HttpServer { child, port });
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("could not start an HTTP server for {}", dir.display());
    }

    /// `http://127.0.0.1:<port>` followed by `path` (which starts with `/` or is empty).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let (ok, _, err) = run(Command::new("openssl").args(args).current_dir(dir));
    assert!(ok, "openssl {args:?}: {err}");
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with `openssl` in `dir` (good for
/// two days): (ca.pem, leaf.pem, leaf.key).
pub fn throwaway_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=throwaway CA",
    ]);
    openssl(dir, &ca);
    let mut leaf = vec!["req"];
    leaf.extend(ec);
    leaf.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &leaf);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}
