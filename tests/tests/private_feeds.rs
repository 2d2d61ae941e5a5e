//! Private feeds behind real nginx (issue 14, docs/trust-model.md §13): TLS from a throwaway
//! CA made with openssl, one location behind `auth_basic` (archman's SHA-512-crypt htpasswd),
//! one behind archman's bearer-token map. prokit updates and installs with the right
//! credentials; with none, a wrong one or a rolled-away one it fails with the 401 message and
//! changes nothing; after `archman token roll` + `nginx -s reload` + `prokit auth set` it
//! works again. A redirect to another host carries no credential, credentials files others
//! can read are refused, and no secret appears in anything a run printed or wrote.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{Fixture, archman};
use e2e::{bin, have_tool, run, throwaway_ca};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx with its own prefix and configuration, in the foreground; stopped on drop.
struct Nginx {
    child: Child,
    prefix: PathBuf,
    conf: PathBuf,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path, server: &str) -> Nginx {
        let prefix = dir.join("nginx");
        for d in ["logs", "tmp"] {
            fs::create_dir_all(prefix.join(d)).unwrap();
        }
        let port = free_port();
        let user = if rustix_uid_is_root() {
            "user root root;\n"
        } else {
            ""
        };
        let p = prefix.display();
        let conf = prefix.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "{user}daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log info;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log {p}/logs/access.log;\n  client_body_temp_path {p}/tmp/body;\n  proxy_temp_path {p}/tmp/proxy;\n  fastcgi_temp_path {p}/tmp/fastcgi;\n  uwsgi_temp_path {p}/tmp/uwsgi;\n  scgi_temp_path {p}/tmp/scgi;\n  default_type application/octet-stream;\n\
                 {}\n}}\n",
                server.replace("PORT", &port.to_string())
            ),
        )
        .unwrap();
        let (ok, _, err) = run(Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-t"));
        assert!(ok, "nginx -t: {err}");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx");
        let n = Nginx {
            child,
            prefix,
            conf,
            port,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "nginx did not start: {}",
            fs::read_to_string(n.prefix.join("logs/error.log")).unwrap_or_default()
        );
    }

    /// `nginx -s reload`, then waits until the new workers answer.
    fn reload(&self) {
        let (ok, _, err) = run(Command::new("nginx")
            .arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "reload"]));
        assert!(ok, "nginx -s reload: {err}");
        // The old workers finish; new ones read the new files. Give them a moment.
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rustix_uid_is_root() -> bool {
    // The owner of a file this process just made is its effective uid.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x");
    fs::write(&f, "").unwrap();
    use std::os::unix::fs::MetadataExt;
    fs::metadata(&f).unwrap().uid() == 0
}

/// A plain HTTP server on another port that records every request head it gets and answers
/// 404: "another host" for the redirect.
fn recording_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            s.lock().unwrap().push(head);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (port, seen)
}

/// Every run's output, kept to be searched for secrets at the end.
struct Transcript(String, PathBuf);

impl Transcript {
    /// `prokit --root ROOT --ca-file CA ARGS`.
    fn prokit(&mut self, root: &Path, args: &[&str]) -> (bool, String) {
        let (ok, out, err) = run(Command::new(bin("prokit"))
            .arg("--root")
            .arg(root)
            .arg("--ca-file")
            .arg(&self.1)
            .args(args));
        self.0.push_str(&out);
        self.0.push_str(&err);
        (ok, format!("{out}{err}"))
    }
}

/// Every file under `dir` (but the credentials files) as bytes, for the secret search.
fn files_under(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        let p = e.path();
        let is_auth = p.to_string_lossy().contains("etc/prokit/auth.conf");
        if e.file_type().is_file() && !is_auth {
            let mut bytes = Vec::new();
            if let Ok(mut f) = fs::File::open(p) {
                let _ = f.read_to_end(&mut bytes);
            }
            out.push((p.to_path_buf(), bytes));
        }
    }
}

#[test]
fn private_feeds_behind_nginx_with_basic_auth_and_rolled_bearer_tokens() {
    for tool in ["nginx", "openssl"] {
        if !have_tool(tool) {
            return;
        }
    }
    let fx = Fixture::new();
    fx.add(
        "hello",
        "1.0",
        "",
        &[("usr/share/hello/data", "hello\n")],
        None,
    );
    fx.index();
    let d = fx.tmp.path();
    let (ca, cert, key) = throwaway_ca(d);
    let tokens = d.join("tokens");
    let dev_token = d.join("dev.token");
    let (ok, out, err) = archman(&[
        "token",
        "new",
        "--name",
        "dev",
        "--dir",
        tokens.to_str().unwrap(),
        "--out",
        dev_token.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("include ") && out.contains("auth_basic_user_file"),
        "{out}"
    );
    let secret = |p: &Path| fs::read_to_string(p).unwrap().trim().to_string();
    let first_token = secret(&dev_token);

    let (other_port, other_seen) = recording_server();
    let feed = fx.feed.display();
    let t = tokens.display();
    let nginx = Nginx::start(
        d,
        &format!(
            "include {t}/nginx-bearer.conf;\n\
             server {{\n  listen 127.0.0.1:PORT ssl;\n  ssl_certificate {};\n  ssl_certificate_key {};\n\
               location /basic/ {{ alias {feed}/; auth_basic \"feed\"; auth_basic_user_file {t}/htpasswd; }}\n\
               location /bearer/ {{ alias {feed}/; if ($archman_token_ok = 0) {{ return 401; }} }}\n\
               location /moved/ {{ if ($archman_token_ok = 0) {{ return 401; }} return 302 http://127.0.0.1:{other_port}/elsewhere/; }}\n\
             }}",
            cert.display(),
            key.display()
        ),
    );
    let base = format!("https://127.0.0.1:{}", nginx.port);

    let root = d.join("root");
    fs::create_dir_all(root.join("etc/opkg/keys")).unwrap();
    fs::copy(
        &fx.public,
        root.join("etc/opkg/keys").join(fx.fingerprint()),
    )
    .unwrap();
    fs::write(
        root.join("etc/opkg.conf"),
        format!("src/gz basic {base}/basic\nsrc/gz bearer {base}/bearer\ndest root /\n"),
    )
    .unwrap();
    let r = root.as_path();
    // The throwaway CA is trusted for these runs only (--ca-file), as a test host would.
    let mut tr = Transcript(String::new(), ca.clone());

    // No credentials: each feed fails with the 401 message, and nothing is stored.
    let (ok, out) = tr.prokit(r, &["update"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "{base}/bearer/Packages.gz: 401 Unauthorized: the server wants credentials and none are configured"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{base}/basic/Packages.gz: 401 Unauthorized")),
        "{out}"
    );
    let lists = root.join("var/opkg-lists");
    assert!(!lists.join("bearer").exists() && !lists.join("basic").exists());

    // The credentials, set as a client would: a token for one feed, login + password for the
    // other (the token file ends in a newline, which is not part of the token).
    let (ok, out) = tr.prokit(
        r,
        &[
            "auth",
            "set",
            "bearer",
            "--token-file",
            dev_token.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("token *** for 127.0.0.1:"), "{out}");
    let (ok, out) = tr.prokit(
        r,
        &[
            "auth",
            "set",
            "basic",
            "--login",
            "dev",
            "--password-file",
            dev_token.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("login dev password ***"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let bearer_conf = root.join("etc/prokit/auth.conf.d/bearer.conf");
    assert_eq!(
        fs::metadata(&bearer_conf).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (ok, out) = tr.prokit(r, &["update"]);
    assert!(ok, "{out}");
    let (ok, out) = tr.prokit(r, &["install", "hello"]);
    assert!(ok, "{out}");
    assert!(root.join("usr/share/hello/data").is_file());
    let (ok, out) = tr.prokit(r, &["auth", "list"]);
    assert!(
        ok && out.contains("token ***") && out.contains("login dev password ***"),
        "{out}"
    );

    // A wrong token: the 401 names the machine; the stored index stays as it was.
    let stored = fs::read(lists.join("bearer")).unwrap();
    let wrong = d.join("wrong.token");
    fs::write(&wrong, "not-the-token\n").unwrap();
    tr.prokit(
        r,
        &[
            "auth",
            "set",
            "bearer",
            "--token-file",
            wrong.to_str().unwrap(),
        ],
    );
    let (ok, out) = tr.prokit(r, &["update"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "401 Unauthorized: the credentials for 127.0.0.1:{}/bearer were refused; roll them with prokit auth set",
            nginx.port
        )),
        "{out}"
    );
    assert_eq!(fs::read(lists.join("bearer")).unwrap(), stored);

    // The roll: a new token out, nginx reloaded — the old token is refused, then the client
    // gets the new one and works again.
    tr.prokit(
        r,
        &[
            "auth",
            "set",
            "bearer",
            "--token-file",
            dev_token.to_str().unwrap(),
        ],
    );
    let (ok, out, err) = archman(&[
        "token",
        "roll",
        "--name",
        "dev",
        "--dir",
        tokens.to_str().unwrap(),
        "--out",
        dev_token.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let second_token = secret(&dev_token);
    assert_ne!(first_token, second_token);
    nginx.reload();
    let (ok, out) = tr.prokit(r, &["update"]);
    assert!(
        !ok && out.contains("were refused; roll them with prokit auth set"),
        "{out}"
    );
    tr.prokit(
        r,
        &[
            "auth",
            "set",
            "bearer",
            "--token-file",
            dev_token.to_str().unwrap(),
        ],
    );
    tr.prokit(
        r,
        &[
            "auth",
            "set",
            "basic",
            "--login",
            "dev",
            "--password-file",
            dev_token.to_str().unwrap(),
        ],
    );
    let (ok, out) = tr.prokit(r, &["update"]);
    assert!(ok, "{out}");

    // A redirect to another host: followed, but the credential stays behind.
    let moved = d.join("moved.conf");
    fs::write(&moved, format!("src/gz moved {base}/moved\n")).unwrap();
    fs::create_dir_all(root.join("etc/opkg")).unwrap();
    fs::copy(&moved, root.join("etc/opkg/moved.conf")).unwrap();
    tr.prokit(
        r,
        &[
            "auth",
            "set",
            "moved",
            "--token-file",
            dev_token.to_str().unwrap(),
        ],
    );
    let (ok, out) = tr.prokit(r, &["update"]);
    assert!(!ok, "{out}");
    let heads = other_seen.lock().unwrap().clone();
    assert!(!heads.is_empty(), "the redirect was not followed: {out}");
    for h in &heads {
        assert!(!h.to_ascii_lowercase().contains("authorization"), "{h}");
    }
    fs::remove_file(root.join("etc/opkg/moved.conf")).unwrap();
    tr.prokit(r, &["auth", "remove", "moved"]);

    // Credentials files others can read are refused, as ssh refuses such a key.
    fs::set_permissions(&bearer_conf, fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = tr.prokit(r, &["update"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "refusing to read credentials from /etc/prokit/auth.conf.d/bearer.conf: mode 0644"
        ),
        "{out}"
    );
    fs::set_permissions(&bearer_conf, fs::Permissions::from_mode(0o600)).unwrap();
    // A malformed line is named by its number (and never quoted with its secret).
    let auth_conf = root.join("etc/prokit/auth.conf");
    fs::write(
        &auth_conf,
        "# mine\nmachine example.org login u\n passwd hunter2\n",
    )
    .unwrap();
    fs::set_permissions(&auth_conf, fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, out) = tr.prokit(r, &["update"]);
    assert!(
        !ok && out.contains("/etc/prokit/auth.conf:3: unknown word \"passwd\""),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
    fs::remove_file(&auth_conf).unwrap();
    // An empty token file is refused, and nothing is written.
    let empty = d.join("empty.token");
    fs::write(&empty, "\n").unwrap();
    let before = fs::read(&bearer_conf).unwrap();
    let (ok, out) = tr.prokit(
        r,
        &[
            "auth",
            "set",
            "bearer",
            "--token-file",
            empty.to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("empty; a secret is needed"), "{out}");
    assert_eq!(fs::read(&bearer_conf).unwrap(), before);

    // Credentials in the URL (what opkg-lede understands) still work, with a warning.
    fs::remove_file(root.join("etc/prokit/auth.conf.d/basic.conf")).unwrap();
    let conf = fs::read_to_string(root.join("etc/opkg.conf")).unwrap();
    fs::write(
        root.join("etc/opkg.conf"),
        conf.replace(
            &format!("{base}/basic"),
            &format!("https://dev:{second_token}@127.0.0.1:{}/basic", nginx.port),
        ),
    )
    .unwrap();
    let (ok, out) = tr.prokit(r, &["update"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("warning: feed basic: credentials in its URL in opkg.conf"),
        "{out}"
    );
    let (ok, out) = tr.prokit(r, &["--json", "update"]);
    assert!(ok, "{out}");
    fs::write(root.join("etc/opkg.conf"), conf).unwrap();

    // No secret anywhere: not in anything printed, not in any file of the root (the lists,
    // the state, the status database, the audit log) but the credentials files.
    let mut files = Vec::new();
    files_under(&root, &mut files);
    for s in [
        &first_token,
        &second_token,
        &"not-the-token".to_string(),
        &"hunter2".to_string(),
    ] {
        assert!(!tr.0.contains(s.as_str()), "a secret was printed");
        for (p, bytes) in &files {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "a secret is in {}",
                p.display()
            );
        }
    }
    drop(nginx);
}
