//! `archman usign …` through the real binary, against what OpenWrt's usign does.
//!
//! The reference is usign's `main.c` at commit c4c72b1 (openwrt/usign); line numbers below are
//! of that file. [`usign_table`] runs each case in a fresh directory holding [`fixture`] and
//! compares the exit status, stdout, stderr and every file created or changed (bytes and mode)
//! with what usign c4c72b1 gives for the same case; each expectation was checked against a
//! usign built from that commit, and is written here as a literal. Set `USIGN` to the path of
//! such a usign to run the table against it instead of `archman usign`.
//!
//! The keys have fixed seeds, so signatures (deterministic Ed25519) are literal too: A is RFC
//! 8032 section 7.1 TEST 1's key with fingerprint `0123456789abcdef` (a leading zero nibble), B
//! has `fedcba9876543210`, C `000000000000c0de`. Every file was written by usign itself (the
//! secret keys with a zero salt).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use feeds::usign::{PublicKey, SecretKey};

const A_SEC: &str = "untrusted comment: private key 0123456789abcdef\n\
    RWRCSwAAAAAAAAAAAAAAAAAAAAAAAAAASulvySzYtIABI0VniavN751hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n";
const A_PUB: &str = "untrusted comment: public key 0123456789abcdef\n\
    RWQBI0VniavN79damAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea\n";
const B_SEC: &str = "untrusted comment: private key fedcba9876543210\n\
    RWRCSwAAAAAAAAAAAAAAAAAAAAAAAAAA1i/y6IMYKTj+3LqYdlQyEEJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCIVL40Zt5HSRFMkLhXy6rbLfP+ntqXtMAl5YOBpiB2xI=\n";
const B_PUB: &str = "untrusted comment: public key fedcba9876543210\n\
    RWT+3LqYdlQyECFS+NGbeR0kRTJC4V8uq2y3z/p7al7TAJeWDgaYgdsS\n";
const C_SEC: &str = "untrusted comment: private key 000000000000c0de\n\
    RWRCSwAAAAAAAAAAAAAAAAAAAAAAAAAAVIOqvDobh+YAAAAAAADA3gwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMC1E62bSSQBXKCQLtB5BE06xdvsIwbwaUjBDajrbjny0=\n";
const C_PUB: &str = "untrusted comment: public key 000000000000c0de\n\
    RWQAAAAAAADA3gtROtm0kkAVygkC7QeQRNOsXb7CMG8GlIwQ2o62458t\n";

const MSG: &str = "Package: hello\n";
/// `usign -S -m msg -s a.sec` (and the same by B and C): the comment pads the fingerprint
/// (`"%016"PRIx64`, line 152).
const MSG_A_SIG: &str = "untrusted comment: signed by key 0123456789abcdef\n\
    RWQBI0VniavN73N/lRBQVVCOKUMrElX1zYu9nkMdVX12TeG4U9BlaijiMXMipvpGuuLIvjJRTVVf/cYsYBY1rbX0ToFbn7z0swY=\n";
const MSG_B_SIG: &str = "untrusted comment: signed by key fedcba9876543210\n\
    RWT+3LqYdlQyEJ5c+iinkUpUZh5zG1PTCdocqt+CY3nd365OW7arplBepiw8qHgeNUfzbXktfYm8KODuaIkpVmorBJarYhz3JwY=\n";
const MSG_C_SIG: &str = "untrusted comment: signed by key 000000000000c0de\n\
    RWQAAAAAAADA3hLPHN+pGQoXiHHze2wVAhTijA7C6++z+5J6LRe+CuVAQjYKS2RbWwg1Fp7UKbGyAGVy9QvM5+yPJU/yh8K2NwM=\n";
const TAMPERED: &str = "Package: hellp\n";
const TAMPERED_A_SIG: &str = "untrusted comment: signed by key 0123456789abcdef\n\
    RWQBI0VniavN79VfudOiEJhNqRfLNmGLIiRjFtcKzhtDC4OdY7NI/zibACWeK9ZVwUW62agYgxMISXu0NMI3BSmKoJH4rt6f+gU=\n";

/// usign's usage text (lines 338-353) with `argv[0]` "usign".
macro_rules! usage {
    () => {
        "Usage: usign <command> <options>\n\
         Commands:\n  \
         -V:\t\t\tverify (needs at least -m and -p|-P)\n  \
         -S:\t\t\tsign (needs at least -m and -s)\n  \
         -F:\t\t\tprint key fingerprint of public/secret key or signature\n  \
         -G:\t\t\tgenerate a new keypair (needs at least -p and -s)\n\
         Options:\n  \
         -c <comment>: \tadd comment to keys\n  \
         -m <file>:\t\tmessage file\n  \
         -p <file>:\t\tpublic key file (verify/fingerprint only)\n  \
         -P <path>:\t\tpublic key directory (verify only)\n  \
         -q:\t\t\tquiet (do not print verification result, use return code only)\n  \
         -s <file>:\t\tsecret key file (sign/fingerprint only)\n  \
         -x <file>:\t\tsignature file (defaults to <message file>.sig)\n\
         \n"
    };
}

/// Line 2 (the base64) of a two-line file.
fn line2(file: &str) -> &str {
    file.lines().nth(1).unwrap()
}

/// The directory every case starts from: (path, mode, bytes); a path ending in `/` is a
/// directory.
fn fixture() -> Vec<(String, u32, Vec<u8>)> {
    let sig = line2(MSG_A_SIG);
    let mut files: Vec<(&str, u32, Vec<u8>)> = vec![
        ("a.sec", 0o600, A_SEC.into()),
        ("a.pub", 0o644, A_PUB.into()),
        ("b.sec", 0o600, B_SEC.into()),
        ("b.pub", 0o644, B_PUB.into()),
        ("c.sec", 0o600, C_SEC.into()),
        ("c.pub", 0o644, C_PUB.into()),
        ("msg", 0o644, MSG.into()),
        ("msg.sig", 0o644, MSG_A_SIG.into()),
        ("msg.b.sig", 0o644, MSG_B_SIG.into()),
        ("msg.c.sig", 0o644, MSG_C_SIG.into()),
        ("tampered", 0o644, TAMPERED.into()),
        ("sig+pub", 0o644, format!("{MSG_A_SIG}{A_PUB}").into()),
        // usign's key directory: the 16-digit names it looks up (line 180)
        ("keys/", 0o755, vec![]),
        ("keys/0123456789abcdef", 0o644, A_PUB.into()),
        ("keys/000000000000c0de", 0o644, C_PUB.into()),
        ("nokeys/", 0o755, vec![]),
        ("badkeys/", 0o755, vec![]),
        ("badkeys/0123456789abcdef", 0o644, b"not a key\n".to_vec()),
        // line 1 is skipped unread (lines 118-128); base64 skips whitespace (base64.c)
        ("odd/", 0o755, vec![]),
        ("odd/empty.sig", 0o644, format!("\n{sig}\n").into()),
        (
            "odd/bare.sig",
            0o644,
            format!("signed by key 0123456789abcdef\n{sig}\n").into(),
        ),
        ("odd/html.sig", 0o644, format!("<html>\n{sig}\n").into()),
        (
            "odd/long.sig",
            0o644,
            format!("{}\n{sig}\n", "c".repeat(2000)).into(),
        ),
        (
            "odd/crlf.sig",
            0o644,
            MSG_A_SIG.replace('\n', "\r\n").into(),
        ),
        (
            "odd/blank-lines.sig",
            0o644,
            format!("{MSG_A_SIG}\n \n\t\n").into(),
        ),
        (
            "odd/split.sig",
            0o644,
            format!("x\n{}\n{}\n", &sig[..50], &sig[50..]).into(),
        ),
        (
            "odd/no-final-newline.sig",
            0o644,
            MSG_A_SIG.trim_end().into(),
        ),
        (
            "odd/empty.pub",
            0o644,
            format!("\n{}\n", line2(A_PUB)).into(),
        ),
        (
            "odd/empty.sec",
            0o600,
            format!("\n{}\n", line2(A_SEC)).into(),
        ),
        // what usign refuses
        ("bad/", 0o755, vec![]),
        (
            "bad/page.sig",
            0o644,
            b"<!DOCTYPE html>\n<html><body>503 Service Unavailable</body></html>\n".to_vec(),
        ),
        ("bad/one-line.sig", 0o644, sig.into()),
        (
            "bad/comment-only.sig",
            0o644,
            b"untrusted comment: signed by key 0123456789abcdef\n".to_vec(),
        ),
        (
            "bad/two-sigs.sig",
            0o644,
            format!("{MSG_A_SIG}{MSG_A_SIG}").into(),
        ),
        (
            "bad/nul.sig",
            0o644,
            format!("untrusted\0comment\n{sig}\n").into(),
        ),
        (
            "bad/short.sig",
            0o644,
            format!("x\n{}=\n", &sig[..96]).into(),
        ),
    ];
    files.sort_by(|a, b| a.0.cmp(b.0));
    files
        .into_iter()
        .map(|(path, mode, bytes)| (path.to_owned(), mode, bytes))
        .collect()
}

/// What a stream or file must hold.
#[derive(Debug)]
enum Want {
    Exact(&'static str),
    /// Keys usign `-G` made (random), one file after another: the comment of each (one ending
    /// in a space is followed by the 16-digit fingerprint) and whether it is the secret key.
    Generated(&'static [(&'static str, bool)]),
}
use Want::{Exact, Generated};

struct Case {
    args: &'static [&'static str],
    /// A fixture file fed to stdin ("" for none).
    stdin: &'static str,
    code: i32,
    stdout: Want,
    stderr: &'static str,
    /// Every file created or changed: (path, mode, content). New files get 0666 less the
    /// umask (027 here): usign creates them with `fopen(…, "w")` (line 105).
    files: &'static [(&'static str, u32, Want)],
}

const NONE: &[(&str, u32, Want)] = &[];

fn case(args: &'static [&'static str], code: i32, stdout: Want, stderr: &'static str) -> Case {
    Case {
        args,
        stdin: "",
        code,
        stdout,
        stderr,
        files: NONE,
    }
}

fn verified(args: &'static [&'static str]) -> Case {
    case(args, 0, Exact(""), "OK\n")
}

fn fails(args: &'static [&'static str], stderr: &'static str) -> Case {
    case(args, 1, Exact(""), stderr)
}

fn with_stdin(mut c: Case, stdin: &'static str) -> Case {
    c.stdin = stdin;
    c
}

fn writes(mut c: Case, files: &'static [(&'static str, u32, Want)]) -> Case {
    c.files = files;
    c
}

fn cases() -> Vec<Case> {
    vec![
        // -V: OK and failures on stderr (lines 174-207)
        verified(&["-V", "-m", "msg", "-p", "a.pub"]),
        verified(&["-V", "-mmsg", "-pa.pub", "-xmsg.sig"]),
        verified(&["-Vp", "a.pub", "-m", "msg"]),
        case(&["-V", "-q", "-m", "msg", "-p", "a.pub"], 0, Exact(""), ""),
        verified(&["-V", "-m", "msg", "-x", "msg.c.sig", "-p", "c.pub"]),
        fails(
            &["-V", "-m", "tampered", "-x", "msg.sig", "-p", "a.pub"],
            "verification failed\n",
        ),
        fails(
            &["-V", "-q", "-m", "tampered", "-x", "msg.sig", "-p", "a.pub"],
            "",
        ),
        // the wrong key
        fails(&["-V", "-m", "msg", "-p", "b.pub"], "verification failed\n"),
        fails(&["-qV", "-m", "msg", "-p", "b.pub"], ""),
        // -p wins over -P (line 179)
        fails(
            &["-V", "-m", "msg", "-P", "keys", "-p", "b.pub"],
            "verification failed\n",
        ),
        // -P DIR reads DIR/<16-digit fingerprint> (line 180)
        verified(&["-V", "-m", "msg", "-P", "keys"]),
        verified(&["-V", "-m", "msg", "-x", "msg.c.sig", "-P", "keys"]),
        fails(
            &["-V", "-m", "msg", "-x", "msg.b.sig", "-P", "keys"],
            "Cannot open file 'keys/fedcba9876543210' for reading\n",
        ),
        fails(
            &["-V", "-m", "msg", "-P", "nokeys"],
            "Cannot open file 'nokeys/0123456789abcdef' for reading\n",
        ),
        fails(
            &["-V", "-m", "msg", "-x", "msg.c.sig", "-P", "nokeys/"],
            "Cannot open file 'nokeys//000000000000c0de' for reading\n",
        ),
        // -q silences "Cannot open file" when verifying (line 91)
        fails(&["-V", "-q", "-m", "msg", "-P", "nokeys"], ""),
        fails(
            &["-V", "-m", "msg", "-P", "badkeys"],
            "Failed to decode public key\n",
        ),
        fails(
            &["-V", "-m", "nope", "-p", "a.pub"],
            "Cannot open file 'nope' for reading\n",
        ),
        fails(&["-V", "-q", "-m", "nope", "-p", "a.pub"], ""),
        fails(
            &["-V", "-m", "msg", "-x", "nope.sig", "-p", "a.pub"],
            "Cannot open file 'nope.sig' for reading\n",
        ),
        fails(
            &["-V", "-m", "msg", "-p", "nope.pub"],
            "Cannot open file 'nope.pub' for reading\n",
        ),
        fails(
            &["-V", "-m", "msg", "-x", "a.pub", "-p", "a.pub"],
            "Failed to decode signature\n",
        ),
        fails(
            &["-V", "-m", "msg", "-p", "msg.sig"],
            "Failed to decode public key\n",
        ),
        // stdin: the message, the signature or the key
        with_stdin(
            verified(&["-V", "-m", "-", "-x", "msg.sig", "-p", "a.pub"]),
            "msg",
        ),
        with_stdin(
            fails(
                &["-V", "-m", "-", "-x", "msg.sig", "-p", "a.pub"],
                "verification failed\n",
            ),
            "tampered",
        ),
        with_stdin(
            verified(&["-V", "-m", "msg", "-x", "-", "-p", "a.pub"]),
            "msg.sig",
        ),
        with_stdin(verified(&["-V", "-m", "msg", "-p", "-"]), "a.pub"),
        // usign reads 510 bytes after line 1 of the signature: the key that follows spoils it
        with_stdin(
            fails(
                &["-V", "-m", "msg", "-x", "-", "-p", "-"],
                "Failed to decode signature\n",
            ),
            "sig+pub",
        ),
        fails(
            &["-V", "-m", "-", "-p", "a.pub"],
            "Need signature file when reading message from stdin\n",
        ),
        // line 1 is anything (lines 118-128); whitespace in the base64 is skipped
        verified(&["-V", "-m", "msg", "-x", "odd/empty.sig", "-p", "a.pub"]),
        verified(&["-V", "-m", "msg", "-x", "odd/bare.sig", "-p", "a.pub"]),
        verified(&["-V", "-m", "msg", "-x", "odd/html.sig", "-p", "a.pub"]),
        verified(&["-V", "-m", "msg", "-x", "odd/long.sig", "-p", "a.pub"]),
        verified(&["-V", "-m", "msg", "-x", "odd/crlf.sig", "-p", "a.pub"]),
        verified(&[
            "-V",
            "-m",
            "msg",
            "-x",
            "odd/blank-lines.sig",
            "-p",
            "a.pub",
        ]),
        verified(&["-V", "-m", "msg", "-x", "odd/split.sig", "-p", "a.pub"]),
        verified(&[
            "-V",
            "-m",
            "msg",
            "-x",
            "odd/no-final-newline.sig",
            "-p",
            "a.pub",
        ]),
        verified(&["-V", "-m", "msg", "-p", "odd/empty.pub"]),
        verified(&["-V", "-m", "msg", "-x", "odd/empty.sig", "-P", "keys"]),
        // and what it refuses
        fails(
            &["-V", "-m", "msg", "-x", "bad/page.sig", "-p", "a.pub"],
            "Failed to decode signature\n",
        ),
        fails(
            &[
                "-V",
                "-q",
                "-m",
                "msg",
                "-x",
                "bad/one-line.sig",
                "-p",
                "a.pub",
            ],
            "Premature end of file\n",
        ),
        fails(
            &[
                "-V",
                "-m",
                "msg",
                "-x",
                "bad/comment-only.sig",
                "-p",
                "a.pub",
            ],
            "Failed to decode signature\n",
        ),
        fails(
            &["-V", "-m", "msg", "-x", "bad/two-sigs.sig", "-p", "a.pub"],
            "Failed to decode signature\n",
        ),
        fails(
            &["-V", "-m", "msg", "-x", "bad/nul.sig", "-p", "a.pub"],
            "Failed to decode signature\n",
        ),
        fails(
            &["-V", "-m", "msg", "-x", "bad/short.sig", "-p", "a.pub"],
            "Failed to decode signature\n",
        ),
        // -S: the signature, its comment padding the fingerprint (line 152)
        writes(
            case(&["-S", "-m", "tampered", "-s", "a.sec"], 0, Exact(""), ""),
            &[("tampered.sig", 0o640, Exact(TAMPERED_A_SIG))],
        ),
        writes(
            case(
                &["-S", "-m", "msg", "-s", "a.sec", "-x", "out.sig"],
                0,
                Exact(""),
                "",
            ),
            &[("out.sig", 0o640, Exact(MSG_A_SIG))],
        ),
        case(
            &["-S", "-m", "msg", "-s", "c.sec", "-x", "-"],
            0,
            Exact(MSG_C_SIG),
            "",
        ),
        writes(
            case(
                &["-S", "-m", "msg", "-s", "b.sec", "-x", "msg.sig"],
                0,
                Exact(""),
                "",
            ),
            &[("msg.sig", 0o644, Exact(MSG_B_SIG))],
        ),
        writes(
            case(
                &[
                    "-S", "-c", "feed key", "-m", "msg", "-s", "a.sec", "-x", "out.sig",
                ],
                0,
                Exact(""),
                "",
            ),
            &[(
                "out.sig",
                0o640,
                Exact(
                    "untrusted comment: feed key\n\
                     RWQBI0VniavN73N/lRBQVVCOKUMrElX1zYu9nkMdVX12TeG4U9BlaijiMXMipvpGuuLIvjJRTVVf/cYsYBY1rbX0ToFbn7z0swY=\n",
                ),
            )],
        ),
        with_stdin(
            writes(
                case(
                    &["-S", "-m", "msg", "-s", "-", "-x", "out.sig"],
                    0,
                    Exact(""),
                    "",
                ),
                &[("out.sig", 0o640, Exact(MSG_A_SIG))],
            ),
            "a.sec",
        ),
        writes(
            case(
                &["-S", "-m", "msg", "-s", "odd/empty.sec", "-x", "out.sig"],
                0,
                Exact(""),
                "",
            ),
            &[("out.sig", 0o640, Exact(MSG_A_SIG))],
        ),
        fails(
            &["-S", "-m", "msg", "-s", "a.pub", "-x", "out.sig"],
            "Failed to decode secret key\n",
        ),
        fails(
            &["-S", "-m", "nope", "-s", "a.sec"],
            "Cannot open message file: No such file or directory\n",
        ),
        // -q does not silence other commands (line 91)
        fails(
            &["-S", "-q", "-m", "msg", "-s", "nope.sec"],
            "Cannot open file 'nope.sec' for reading\n",
        ),
        fails(
            &["-S", "-m", "msg", "-s", "a.sec", "-x", "nodir/out.sig"],
            "Cannot open file 'nodir/out.sig' for writing\n",
        ),
        // -F: 16 digits (line 279)
        case(&["-F", "-p", "a.pub"], 0, Exact("0123456789abcdef\n"), ""),
        case(&["-F", "-s", "a.sec"], 0, Exact("0123456789abcdef\n"), ""),
        case(&["-F", "-x", "msg.sig"], 0, Exact("0123456789abcdef\n"), ""),
        case(&["-F", "-m", "msg"], 0, Exact("0123456789abcdef\n"), ""),
        case(&["-F", "-p", "c.pub"], 0, Exact("000000000000c0de\n"), ""),
        case(&["-F", "-s", "c.sec"], 0, Exact("000000000000c0de\n"), ""),
        case(&["-F", "-p", "b.pub"], 0, Exact("fedcba9876543210\n"), ""),
        with_stdin(
            case(&["-F", "-x", "-"], 0, Exact("000000000000c0de\n"), ""),
            "msg.c.sig",
        ),
        case(
            &["-F", "-x", "odd/empty.sig"],
            0,
            Exact("0123456789abcdef\n"),
            "",
        ),
        case(
            &["-F", "-s", "odd/empty.sec"],
            0,
            Exact("0123456789abcdef\n"),
            "",
        ),
        // a file that does not decode: exit 1, nothing printed (line 277)
        fails(&["-F", "-p", "msg.sig"], ""),
        fails(&["-F", "-x", "bad/page.sig"], ""),
        fails(
            &["-F", "-q", "-p", "nope.pub"],
            "Cannot open file 'nope.pub' for reading\n",
        ),
        fails(&["-F", "-p", "bad/one-line.sig"], "Premature end of file\n"),
        fails(
            &["-F"],
            concat!("Need one secret/public key or signature\n", usage!()),
        ),
        fails(
            &["-F", "-p", "a.pub", "-s", "a.sec"],
            concat!("Need one secret/public key or signature\n", usage!()),
        ),
        // -G: the secret key, then the public key, replacing what is there (lines 323, 331)
        writes(
            case(&["-G", "-s", "new.sec", "-p", "new.pub"], 0, Exact(""), ""),
            &[
                ("new.pub", 0o640, Generated(&[("public key ", false)])),
                ("new.sec", 0o640, Generated(&[("private key ", true)])),
            ],
        ),
        writes(
            case(
                &["-G", "-c", "my key", "-s", "new.sec", "-p", "new.pub"],
                0,
                Exact(""),
                "",
            ),
            &[
                ("new.pub", 0o640, Generated(&[("my key", false)])),
                ("new.sec", 0o640, Generated(&[("my key", true)])),
            ],
        ),
        writes(
            case(&["-G", "-s", "a.sec", "-p", "a.pub"], 0, Exact(""), ""),
            &[
                ("a.pub", 0o644, Generated(&[("public key ", false)])),
                ("a.sec", 0o600, Generated(&[("private key ", true)])),
            ],
        ),
        writes(
            case(&["-G", "-s", "a.sec", "-p", "a.sec"], 0, Exact(""), ""),
            &[("a.sec", 0o600, Generated(&[("public key ", false)]))],
        ),
        writes(
            case(
                &["-G", "-s", "-", "-p", "new.pub"],
                0,
                Generated(&[("private key ", true)]),
                "",
            ),
            &[("new.pub", 0o640, Generated(&[("public key ", false)]))],
        ),
        writes(
            case(
                &["-G", "-s", "new.sec", "-p", "-"],
                0,
                Generated(&[("public key ", false)]),
                "",
            ),
            &[("new.sec", 0o640, Generated(&[("private key ", true)]))],
        ),
        fails(
            &["-G", "-s", "nodir/k.sec", "-p", "k.pub"],
            "Cannot open file 'nodir/k.sec' for writing\n",
        ),
        writes(
            fails(
                &["-G", "-s", "k.sec", "-p", "nodir/k.pub"],
                "Cannot open file 'nodir/k.pub' for writing\n",
            ),
            &[("k.sec", 0o640, Generated(&[("private key ", true)]))],
        ),
        // usage errors (lines 336-364, 371-409, 423-444)
        fails(&[], usage!()),
        fails(&["-V", "-S"], usage!()),
        fails(&["-V", "-m", "msg"], usage!()),
        fails(&["-S", "-m", "msg"], usage!()),
        fails(&["-G", "-s", "new.sec"], usage!()),
        fails(&["-q", "-m", "msg"], usage!()),
        fails(&["-z"], concat!("usign: invalid option -- 'z'\n", usage!())),
        fails(
            &["-V", "-p", "a.pub", "-m"],
            concat!("usign: option requires an argument -- 'm'\n", usage!()),
        ),
    ]
}

/// The program under test: `archman usign`, or the usign named by `USIGN` (run as `usign`,
/// its `argv[0]` in the usage text).
fn program() -> (OsString, Vec<&'static str>, Option<&'static Path>) {
    static BIN: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        let usign = std::env::var_os("USIGN")?;
        let bin = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(usign, bin.path().join("usign")).unwrap();
        Some(bin)
    });
    match bin {
        Some(bin) => ("usign".into(), vec![], Some(bin.path())),
        None => (env!("CARGO_BIN_EXE_archman").into(), vec!["usign"], None),
    }
}

/// Runs `args` in `dir` with umask 027 and `stdin`.
fn run_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let (program, prefix, path) = program();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 027 && exec \"$0\" \"$@\"")
        .arg(program)
        .args(prefix)
        .args(args)
        .current_dir(dir)
        .env_remove("POSIXLY_CORRECT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(bin) = path {
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![bin.to_path_buf()];
        paths.extend(std::env::split_paths(&old));
        command.env("PATH", std::env::join_paths(paths).unwrap());
    }
    let mut child = command.spawn().expect("run usign");
    let mut input = child.stdin.take().unwrap();
    // a command that does not read stdin may exit first: ignore a broken pipe
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait for usign")
}

/// Every file under `dir` (relative path, mode, bytes); directories end in `/`.
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.insert(format!("{name}/"), (mode, vec![]));
                walk(root, &path, out);
            } else {
                out.insert(name, (mode, fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Checks `bytes` against `want`; returns the fingerprints of generated keys.
fn check(what: &str, bytes: &[u8], want: &Want) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    match want {
        Exact(expected) => {
            assert_eq!(text, *expected, "{what}");
            vec![]
        }
        Generated(files) => {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            assert_eq!(lines.len(), 2 * files.len(), "{what}: {text:?}");
            let mut fps = Vec::new();
            for (file, (comment, secret)) in lines.chunks(2).zip(files.iter()) {
                let file = file.concat();
                let (fp, got) = if *secret {
                    let key = SecretKey::parse(file.as_bytes(), None)
                        .unwrap_or_else(|e| panic!("{what}: {e}: {file:?}"));
                    (key.fingerprint().to_string(), key.comment().to_owned())
                } else {
                    let key = PublicKey::parse(file.as_bytes())
                        .unwrap_or_else(|e| panic!("{what}: {e}: {file:?}"));
                    (key.fingerprint().to_string(), key.comment().to_owned())
                };
                let expected = match comment.strip_suffix(' ') {
                    Some(prefix) => format!("{prefix} {fp}"),
                    None => (*comment).to_owned(),
                };
                assert!(
                    file.starts_with(&format!("untrusted comment: {expected}\n")),
                    "{what}: {file:?}"
                );
                assert_eq!(got, expected, "{what}");
                fps.push(fp);
            }
            fps
        }
    }
}

#[test]
fn usign_table() {
    let cases = cases();
    assert!(cases.len() >= 45, "{} cases", cases.len());
    let fixture = fixture();
    let failed: Vec<String> = cases
        .iter()
        .enumerate()
        .filter_map(|(at, case)| {
            std::panic::catch_unwind(|| run_case(at, case, &fixture))
                .err()
                .map(|_| format!("case {at}: usign {:?}", case.args))
        })
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:#?}", failed.len());
}

/// Runs one case in a fresh copy of `fixture`, panicking on a difference.
fn run_case(at: usize, case: &Case, fixture: &[(String, u32, Vec<u8>)]) {
    {
        let label = format!("case {at}: usign {:?}", case.args);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for (path, mode, bytes) in fixture {
            let full = dir.join(path);
            if path.ends_with('/') {
                fs::create_dir(&full).unwrap();
            } else {
                fs::write(&full, bytes).unwrap();
            }
            fs::set_permissions(&full, fs::Permissions::from_mode(*mode)).unwrap();
        }
        let before = snapshot(dir);
        let stdin = match case.stdin {
            "" => vec![],
            name => fs::read(dir.join(name)).unwrap(),
        };
        let out = run_in(dir, case.args, &stdin);
        assert_eq!(out.status.code(), Some(case.code), "{label}: {out:?}");
        let mut fps = check(&format!("{label}: stdout"), &out.stdout, &case.stdout);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            case.stderr,
            "{label}: stderr"
        );
        let after = snapshot(dir);
        for path in before.keys() {
            assert!(after.contains_key(path), "{label}: {path} was removed");
        }
        let changed: Vec<&String> = after
            .iter()
            .filter(|(path, now)| before.get(*path) != Some(now))
            .map(|(path, _)| path)
            .collect();
        let expected: Vec<&str> = case.files.iter().map(|f| f.0).collect();
        assert_eq!(changed, expected, "{label}: files written");
        for (path, mode, want) in case.files {
            let (got_mode, bytes) = &after[*path];
            assert_eq!(*got_mode, *mode, "{label}: mode of {path}");
            fps.extend(check(&format!("{label}: {path}"), bytes, want));
        }
        // the keys of one -G are one pair
        fps.dedup();
        assert!(fps.len() <= 1, "{label}: fingerprints {fps:?}");
        if let (Some(sec), Some(public)) = (after.get("new.sec"), after.get("new.pub")) {
            let sec = SecretKey::parse(&sec.1, None).unwrap();
            assert_eq!(
                sec.public_key().as_bytes(),
                PublicKey::parse(&public.1).unwrap().as_bytes()
            );
        }
    }
}

/// Runs `archman usign <args>` in `dir` with `stdin` (whatever `USIGN` says).
fn usign_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_archman"))
        .arg("usign")
        .args(args)
        .current_dir(dir)
        .env_remove("POSIXLY_CORRECT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run archman");
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait for archman")
}

fn usign(dir: &Path, args: &[&str]) -> Output {
    usign_in(dir, args, b"")
}

/// (exit status, stdout, stderr)
fn result(output: &Output) -> (i32, String, String) {
    (
        output.status.code().expect("exit status"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "failed: {:?}", result(&output));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn first_line(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

fn second_line(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// Where `archman usign` differs from usign c4c72b1 on purpose; each comment states what usign
/// does.
#[test]
fn deviations_from_usign() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (name, bytes) in [
        ("a.sec", A_SEC),
        ("a.pub", A_PUB),
        ("msg", MSG),
        ("msg.sig", MSG_A_SIG),
    ] {
        fs::write(dir.join(name), bytes).unwrap();
    }

    // -P finds a key under the unpadded name of usign before 2020; usign c4c72b1 opens only
    // the 16-digit name and fails: "Cannot open file 'old/0123456789abcdef' for reading"
    fs::create_dir(dir.join("old")).unwrap();
    fs::write(dir.join("old/123456789abcdef"), A_PUB).unwrap();
    assert_eq!(
        result(&usign(dir, &["-V", "-m", "msg", "-P", "old"])),
        (0, String::new(), "OK\n".into())
    );

    // -G -s - -p - prints both keys; usign's write_file closes stdout after the secret key
    // (line 155) and the public key is lost
    let out = ok(usign(dir, &["-G", "-s", "-", "-p", "-"]));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let secret = SecretKey::parse(text.as_bytes(), None).unwrap_err();
    assert!(secret.to_string().contains("after line 2"), "{secret}");
    let secret =
        SecretKey::parse(format!("{}\n{}\n", lines[0], lines[1]).as_bytes(), None).unwrap();
    let public = PublicKey::parse(format!("{}\n{}\n", lines[2], lines[3]).as_bytes()).unwrap();
    assert_eq!(secret.public_key().as_bytes(), public.as_bytes());
    assert_eq!(
        lines[2],
        format!("untrusted comment: public key {}", public.fingerprint())
    );

    // -S -x naming a secret key file is refused; usign replaces the key with the signature
    assert_eq!(
        result(&usign(
            dir,
            &["-S", "-m", "msg", "-s", "a.sec", "-x", "a.sec"]
        )),
        (
            1,
            String::new(),
            "Refusing to write the signature over the secret key file 'a.sec'\n".into()
        )
    );
    assert_eq!(fs::read_to_string(dir.join("a.sec")).unwrap(), A_SEC);

    // an empty message is signed; usign's mmap fails: "Cannot open message file: Invalid
    // argument". RFC 8032 TEST 1's signature of the empty message:
    fs::write(dir.join("empty"), b"").unwrap();
    ok(usign(dir, &["-S", "-m", "empty", "-s", "a.sec"]));
    assert_eq!(
        fs::read_to_string(dir.join("empty.sig")).unwrap(),
        "untrusted comment: signed by key 0123456789abcdef\n\
         RWQBI0VniavN7+VWQwDDYKxykIbizIBugoqEh38euOXZdNhz4GUiSQFVX7iCFZCjO6zGHjlwHPm0a9Jb9fBZW74kZVFBQ456EAs=\n"
    );

    // a comment with a line break is refused; usign writes it, and the file it writes does not
    // decode ("Failed to decode signature")
    assert_eq!(
        result(&usign(
            dir,
            &[
                "-S", "-m", "msg", "-s", "a.sec", "-x", "nl.sig", "-c", "a\nb"
            ]
        )),
        (
            1,
            String::new(),
            "Comment must not contain a line break\n".into()
        )
    );
    assert!(!dir.join("nl.sig").exists());

    // -F checks the algorithm bytes; usign prints the fingerprint of this key ("Xd")
    fs::write(
        dir.join("xd.pub"),
        "untrusted comment: x\nWGQBI0VniavN79damAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea\n",
    )
    .unwrap();
    assert_eq!(
        result(&usign(dir, &["-F", "-p", "xd.pub"])),
        (1, String::new(), String::new())
    );

    // anything but whitespace after the data is refused; usign stops reading at a NUL byte
    fs::write(dir.join("nul.sig"), format!("{MSG_A_SIG}\0junk")).unwrap();
    assert_eq!(
        result(&usign(
            dir,
            &["-V", "-m", "msg", "-x", "nul.sig", "-p", "a.pub"]
        )),
        (1, String::new(), "Failed to decode signature\n".into())
    );
}

fn signify(dir: &Path, args: &[&str]) -> Output {
    Command::new("signify-openbsd")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run signify-openbsd")
}

/// Files made by real usign and real signify, from `../shared/real`.
#[test]
fn real_usign_and_signify_files() {
    let Some(real) = e2e::real_dir() else {
        return;
    };
    let feed = real.join("feeds/stangri+repo.openwrt.melmac.ca");
    let keys = real.join("keys/thirdparty");
    let (feed_s, keys_s) = (feed.to_str().unwrap(), keys.to_str().unwrap());
    let packages = format!("{feed_s}/Packages");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // opkg's call: usign -V -q -m Packages -P /etc/opkg/keys (-x defaults to Packages.sig)
    assert_eq!(
        result(&usign(dir, &["-V", "-m", &packages, "-P", keys_s])),
        (0, String::new(), "OK\n".into())
    );
    assert_eq!(
        result(&usign(dir, &["-F", "-m", &packages])),
        (0, "7ffc7517c4cc0c56\n".into(), String::new())
    );
    let mut tampered = fs::read(&packages).unwrap();
    tampered.push(b'\n');
    fs::write(dir.join("Packages"), tampered).unwrap();
    let sig = format!("{feed_s}/Packages.sig");
    assert_eq!(
        result(&usign(
            dir,
            &["-V", "-m", "Packages", "-x", &sig, "-P", keys_s]
        )),
        (1, String::new(), "verification failed\n".into())
    );

    // OpenWrt's key 0b26f36ae0f4106d: usign prints all 16 digits (line 279)
    let key = real.join("keys/openwrt-usign/0b26f36ae0f4106d");
    assert_eq!(
        stdout(&ok(usign(dir, &["-F", "-p", key.to_str().unwrap()]))),
        "0b26f36ae0f4106d\n"
    );

    // a feed signed by signify (comment "verify with unregulatory.pub")
    let feed = real.join("feeds/ac7v4+unregulatoried");
    let (message, sig, key) = (
        format!("{}/Packages.txt", feed.display()),
        format!("{}/Packages.sig", feed.display()),
        format!("{}/unregulatory.pub", feed.display()),
    );
    assert_eq!(
        result(&usign(dir, &["-V", "-m", &message, "-x", &sig, "-p", &key])),
        (0, String::new(), "OK\n".into())
    );
}

#[test]
fn signify_interop() {
    if !e2e::have_tool("signify-openbsd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let message = b"Package: hello\nVersion: 1.0\n\n";
    fs::write(dir.join("msg"), message).unwrap();

    // signify verifies `archman usign -S`
    ok(usign(dir, &["-G", "-s", "k.sec", "-p", "k.pub"]));
    ok(usign(dir, &["-S", "-m", "msg", "-s", "k.sec"]));
    let out = ok(signify(
        dir,
        &["-V", "-p", "k.pub", "-m", "msg", "-x", "msg.sig"],
    ));
    assert_eq!(stdout(&out), "Signature Verified\n");
    // signify signs with our key and gets our (deterministic) signature
    ok(signify(
        dir,
        &["-S", "-s", "k.sec", "-m", "msg", "-x", "theirs.sig"],
    ));
    assert_eq!(
        second_line(&dir.join("theirs.sig")),
        second_line(&dir.join("msg.sig"))
    );

    // `archman usign -V` verifies signify's signature with signify's key
    ok(signify(dir, &["-G", "-n", "-p", "s.pub", "-s", "s.sec"]));
    ok(signify(
        dir,
        &["-S", "-s", "s.sec", "-m", "msg", "-x", "s.sig"],
    ));
    assert_eq!(
        result(&usign(
            dir,
            &["-V", "-m", "msg", "-x", "s.sig", "-p", "s.pub"]
        )),
        (0, String::new(), "OK\n".into())
    );
    // and signs with signify's secret key, byte for byte as signify does
    ok(usign(
        dir,
        &["-S", "-m", "msg", "-s", "s.sec", "-x", "ours.sig"],
    ));
    assert_eq!(
        second_line(&dir.join("ours.sig")),
        second_line(&dir.join("s.sig"))
    );
    let fp = stdout(&ok(usign(dir, &["-F", "-p", "s.pub"])));
    assert_eq!(stdout(&ok(usign(dir, &["-F", "-x", "s.sig"]))), fp);
    assert_eq!(
        first_line(&dir.join("ours.sig")),
        format!("untrusted comment: signed by key {}", fp.trim_end())
    );
    // a key directory named the usign way holds signify's key too
    fs::create_dir(dir.join("keys")).unwrap();
    fs::copy(dir.join("s.pub"), dir.join("keys").join(fp.trim_end())).unwrap();
    ok(usign(
        dir,
        &["-V", "-q", "-m", "msg", "-x", "s.sig", "-P", "keys"],
    ));
    // a changed message fails for both tools
    fs::write(dir.join("msg"), b"Package: hello\nVersion: 1.1\n\n").unwrap();
    assert_eq!(
        result(&usign(
            dir,
            &["-V", "-m", "msg", "-x", "s.sig", "-p", "s.pub"]
        )),
        (1, String::new(), "verification failed\n".into())
    );
    assert!(
        !signify(
            dir,
            &["-V", "-q", "-p", "k.pub", "-m", "msg", "-x", "msg.sig"]
        )
        .status
        .success()
    );
}
