//! `archman usign …`: a drop-in replacement for OpenWrt's `usign` command line. Scripts can
//! swap `usign` for `archman usign` and keep their flags, output, files and exit codes; the key
//! and signature work is done by [`feeds::usign`].
//!
//! Matched from usign's `main.c` (openwrt/usign, commit c4c72b1; line numbers below are of that
//! file):
//! - options parsed as glibc `getopt(argc, argv, "FGSVc:m:P:p:qs:x:")` does (line 371):
//!   clustered flags (`-qV`), attached or separate values (`-mfile`, `-m file`, a value may
//!   start with `-`), `--` ends the options, operands are skipped (GNU permutation; with
//!   `POSIXLY_CORRECT` set, parsing stops at the first operand), the last of a repeated option
//!   wins; an unknown option or a missing value prints glibc's message (`usign: invalid option
//!   -- 'z'`, `usign: option requires an argument -- 'm'`) and the usage text;
//! - exactly one of `-V -S -F -G`; a second one, none, or a command without the options it
//!   needs prints the usage text to stderr and exits 1 (lines 358-364, 423-444);
//! - `-x` defaults to `<message>.sig`; `-m -` without `-x` is an error for every command
//!   (lines 411-421);
//! - `-` as a file reads stdin or writes stdout (`-V -m -`, `-x -`, `-p -`, `-s -`), except
//!   the message of `-S`, which usign opens as a path (line 235);
//! - line 1 of a key or signature file is skipped unread, whatever it says, even empty
//!   (`get_file`, lines 118-128); the data after it is base64 with whitespace skipped
//!   anywhere, as [`feeds::usign`] reads it;
//! - fingerprints are 16 lower-case hex digits, zero-padded (`"%016"PRIx64`): in the comments
//!   written (line 152), in the `-P dir/<fingerprint>` name (line 180) and from `-F`
//!   (line 279);
//! - `-V` prints `OK` or `verification failed` on **stderr** (nothing under `-q`; `-q` also
//!   silences "Cannot open file" errors, as usign's `file_error` does, line 91);
//! - `-S` writes `untrusted comment: signed by key <fp>` (or `-c`) and the signature;
//! - `-G` writes the secret key (`private key <fp>`) and then the public key
//!   (`public key <fp>`), `-c` replacing both comments; like usign's `fopen(name, "w")`
//!   (line 105) it replaces existing files and creates new ones with mode 0666 less the
//!   umask, the secret key included (`archman keygen` is the careful command: 0600, no
//!   overwriting);
//! - `-F` prints the fingerprint of the one `-s`, `-p` or `-x` (or `-m`'s `.sig`) file; a file
//!   that does not decode fails silently (line 277);
//! - usign's error texts (`Cannot open file '…' for reading`, `Premature end of file`,
//!   `Failed to decode signature`, …) and exit status 1 for every failure.
//!
//! Deviations, each on purpose:
//! - files are parsed by [`feeds::usign`], which checks more than usign: the algorithm bytes
//!   for `-F` too, the secret key's KDF algorithm, checksum and public half, and for `-V -p`
//!   that the signature's fingerprint is the key's; it refuses a NUL byte on line 1, anything
//!   but whitespace after the data (usign ignores what follows a NUL byte or its 510-byte
//!   read) and files over [`MAX_FILE_LEN`] bytes. What usign would accept but we do not fails
//!   the way a bad file fails in usign;
//! - `-P dir` also finds a key under its unpadded name, as usign stored keys before 2020
//!   (after the 16-digit name; a missing key is reported under the 16-digit name);
//! - `-S -x` naming a file that holds a secret key is refused (usign would truncate it);
//! - `-G -s - -p -` writes both keys to stdout (usign closes stdout after the secret key,
//!   line 155, and the public key is lost);
//! - an empty message can be signed (usign's `mmap` of an empty file fails);
//! - `-c` with a line break is refused (usign writes a file that does not decode), and so is
//!   one over [`MAX_COMMENT_LEN`] bytes (longer than signify writes; [`feeds::usign`] reads
//!   it cut to that length); write errors are reported (usign ignores them).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

use feeds::usign::{
    self, COMMENT_HEADER, Fingerprint, MAX_COMMENT_LEN, MAX_FILE_LEN, PublicKey, SecretKey,
    Signature,
};

/// The program name in the usage text and in getopt's messages (usign's `argv[0]`).
pub const PROG: &str = "usign";

/// usign's usage text, printed to stderr on every usage error (exit status 1).
pub const USAGE: &str = concat!(
    "Usage: usign <command> <options>\n",
    "Commands:\n",
    "  -V:\t\t\tverify (needs at least -m and -p|-P)\n",
    "  -S:\t\t\tsign (needs at least -m and -s)\n",
    "  -F:\t\t\tprint key fingerprint of public/secret key or signature\n",
    "  -G:\t\t\tgenerate a new keypair (needs at least -p and -s)\n",
    "Options:\n",
    "  -c <comment>: \tadd comment to keys\n",
    "  -m <file>:\t\tmessage file\n",
    "  -p <file>:\t\tpublic key file (verify/fingerprint only)\n",
    "  -P <path>:\t\tpublic key directory (verify only)\n",
    "  -q:\t\t\tquiet (do not print verification result, use return code only)\n",
    "  -s <file>:\t\tsecret key file (sign/fingerprint only)\n",
    "  -x <file>:\t\tsignature file (defaults to <message file>.sig)\n",
    "\n",
);

/// The command letter given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `-V`
    Verify,
    /// `-S`
    Sign,
    /// `-F`
    Fingerprint,
    /// `-G`
    Generate,
}

/// The parsed command line; each value is the raw argument.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub command: Option<Command>,
    /// `-c`
    pub comment: Option<OsString>,
    /// `-m`
    pub message: Option<OsString>,
    /// `-P`
    pub pubkey_dir: Option<OsString>,
    /// `-p`
    pub pubkey: Option<OsString>,
    /// `-s`
    pub seckey: Option<OsString>,
    /// `-x`
    pub sigfile: Option<OsString>,
    /// `-q`
    pub quiet: bool,
}

/// Parsing stopped at a bad argument; usign prints its usage text and exits 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("invalid option -- '{}'", char::from(*.0))]
    InvalidOption(u8),
    #[error("option requires an argument -- '{}'", char::from(*.0))]
    MissingArgument(u8),
    #[error("more than one command")]
    SecondCommand,
}

/// Parses `args` (without the program name) as glibc's `getopt` with usign's option string.
/// Operands are skipped (GNU permutation), or end the options if `posixly_correct`.
pub fn parse_args(args: &[OsString], posixly_correct: bool) -> Result<Options, UsageError> {
    let mut opts = Options::default();
    let mut next = 0;
    while let Some(arg) = args.get(next) {
        next += 1;
        let arg = arg.as_bytes();
        if arg == b"--" {
            break;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            if posixly_correct {
                break;
            }
            continue;
        }
        for (at, &letter) in arg.iter().enumerate().skip(1) {
            let command = match letter {
                b'V' => Command::Verify,
                b'S' => Command::Sign,
                b'F' => Command::Fingerprint,
                b'G' => Command::Generate,
                b'q' => {
                    opts.quiet = true;
                    continue;
                }
                b'c' | b'm' | b'P' | b'p' | b's' | b'x' => {
                    let value = if at + 1 < arg.len() {
                        OsStr::from_bytes(&arg[at + 1..]).to_owned()
                    } else {
                        let value = args.get(next).ok_or(UsageError::MissingArgument(letter))?;
                        next += 1;
                        value.clone()
                    };
                    let slot = match letter {
                        b'c' => &mut opts.comment,
                        b'm' => &mut opts.message,
                        b'P' => &mut opts.pubkey_dir,
                        b'p' => &mut opts.pubkey,
                        b's' => &mut opts.seckey,
                        _ => &mut opts.sigfile,
                    };
                    *slot = Some(value);
                    break;
                }
                _ => return Err(UsageError::InvalidOption(letter)),
            };
            if opts.command.is_some() {
                return Err(UsageError::SecondCommand);
            }
            opts.command = Some(command);
        }
    }
    Ok(opts)
}

/// Runs `usign` with `args` (the arguments after `usign`): reads `stdin` for `-` inputs, writes
/// `-` outputs and `-F` to `out`, messages to `err`; returns the exit status (0 or 1).
pub fn run<I, S>(args: I, stdin: &mut dyn Read, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let posixly_correct = std::env::var_os("POSIXLY_CORRECT").is_some();
    let code = match parse_args(&args, posixly_correct) {
        Err(usage) => {
            let _ = report_usage_error(usage, err);
            1
        }
        Ok(opts) => match execute(&opts, stdin, out, err) {
            Ok(()) => 0,
            Err(fail) => {
                let silenced = opts.quiet && opts.command == Some(Command::Verify);
                let _ = fail.report(silenced, err);
                1
            }
        },
    };
    let _ = out.flush();
    let _ = err.flush();
    code
}

fn report_usage_error(usage: UsageError, err: &mut dyn Write) -> io::Result<()> {
    let (text, letter) = match usage {
        UsageError::InvalidOption(letter) => ("invalid option", letter),
        UsageError::MissingArgument(letter) => ("option requires an argument", letter),
        UsageError::SecondCommand => return err.write_all(USAGE.as_bytes()),
    };
    // the letter as the raw byte, as glibc prints it
    let line = [
        format!("{PROG}: {text} -- '").as_bytes(),
        &[letter],
        b"'\n",
        USAGE.as_bytes(),
    ]
    .concat();
    err.write_all(&line)
}

/// Why a command failed (exit status 1), and what usign prints for it.
#[derive(Debug)]
enum Fail {
    /// An optional line, then the usage text.
    Usage(Option<&'static str>),
    /// usign's `file_error`; silent under `-q` when verifying.
    Open { path: OsString, write: bool },
    /// `verification failed`; silent under `-q`.
    Verification,
    /// A message printed whatever `-q` says (already ending in a newline).
    Say(Vec<u8>),
    /// Nothing printed (`-F` of a file that does not decode).
    Silent,
}

impl Fail {
    fn say(text: &str) -> Fail {
        Fail::Say(format!("{text}\n").into_bytes())
    }

    /// `before'<path>'after` and a newline.
    fn about(before: &str, path: &OsStr, after: &str) -> Fail {
        Fail::Say(
            [
                before.as_bytes(),
                b"'",
                path.as_bytes(),
                b"'",
                after.as_bytes(),
                b"\n",
            ]
            .concat(),
        )
    }

    fn report(&self, silenced: bool, err: &mut dyn Write) -> io::Result<()> {
        match self {
            Fail::Usage(note) => {
                if let Some(note) = note {
                    writeln!(err, "{note}")?;
                }
                err.write_all(USAGE.as_bytes())
            }
            Fail::Open { .. } | Fail::Verification if silenced => Ok(()),
            Fail::Open { path, write } => {
                let mode = if *write { "writing" } else { "reading" };
                let line = [
                    b"Cannot open file '",
                    path.as_bytes(),
                    format!("' for {mode}\n").as_bytes(),
                ]
                .concat();
                err.write_all(&line)
            }
            Fail::Verification => err.write_all(b"verification failed\n"),
            Fail::Say(text) => err.write_all(text),
            Fail::Silent => Ok(()),
        }
    }
}

fn execute(
    opts: &Options,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Fail> {
    let mut sigfile = opts.sigfile.clone();
    if let (None, Some(message)) = (&sigfile, &opts.message) {
        if message == "-" {
            return Err(Fail::say(
                "Need signature file when reading message from stdin",
            ));
        }
        let mut name = message.clone();
        name.push(".sig");
        sigfile = Some(name);
    }
    let Some(command) = opts.command else {
        return Err(Fail::Usage(None));
    };
    match command {
        Command::Verify => match (&opts.message, &sigfile) {
            (Some(message), Some(sigfile))
                if opts.pubkey.is_some() || opts.pubkey_dir.is_some() =>
            {
                verify(opts, message, sigfile, stdin, err)
            }
            _ => Err(Fail::Usage(None)),
        },
        Command::Sign => match (&opts.seckey, &opts.message, &sigfile) {
            (Some(seckey), Some(message), Some(sigfile)) => {
                sign(opts, seckey, message, sigfile, stdin, out)
            }
            _ => Err(Fail::Usage(None)),
        },
        Command::Fingerprint => {
            let given = [&opts.seckey, &opts.pubkey, &sigfile];
            if given.iter().filter(|file| file.is_some()).count() != 1 {
                return Err(Fail::Usage(Some("Need one secret/public key or signature")));
            }
            fingerprint(opts, sigfile.as_deref(), stdin, out)
        }
        Command::Generate => match (&opts.seckey, &opts.pubkey) {
            (Some(seckey), Some(pubkey)) => generate(opts, seckey, pubkey, out),
            _ => Err(Fail::Usage(None)),
        },
    }
}

fn verify(
    opts: &Options,
    message: &OsStr,
    sigfile: &OsStr,
    stdin: &mut dyn Read,
    err: &mut dyn Write,
) -> Result<(), Fail> {
    // usign opens the message first, and reads it last
    let message_file = if message == "-" {
        None
    } else {
        Some(File::open(message).map_err(|_| open_failed(message, false))?)
    };
    let signature = Signature::parse(&read_key_file(sigfile, stdin)?)
        .map_err(|_| Fail::say("Failed to decode signature"))?;
    let key_bytes = match (&opts.pubkey, &opts.pubkey_dir) {
        (Some(pubkey), _) => read_key_file(pubkey, stdin)?,
        (None, Some(dir)) => read_key_in_dir(dir, signature.fingerprint())?,
        (None, None) => return Err(Fail::Usage(None)),
    };
    let public =
        PublicKey::parse(&key_bytes).map_err(|_| Fail::say("Failed to decode public key"))?;
    let mut data = Vec::new();
    let read = match message_file {
        Some(mut file) => file.read_to_end(&mut data),
        None => stdin.read_to_end(&mut data),
    };
    read.map_err(|_| open_failed(message, false))?;
    public
        .verify(&data, &signature)
        .map_err(|_| Fail::Verification)?;
    if !opts.quiet {
        let _ = err.write_all(b"OK\n");
    }
    Ok(())
}

fn sign(
    opts: &Options,
    seckey: &OsStr,
    message: &OsStr,
    sigfile: &OsStr,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let comment = checked_comment(opts)?;
    let secret = match SecretKey::parse(&read_key_file(seckey, stdin)?, None) {
        Ok(secret) => secret,
        Err(usign::Error::Encrypted { .. }) => {
            return Err(Fail::say(
                "Password protected secret keys are not supported",
            ));
        }
        Err(_) => return Err(Fail::say("Failed to decode secret key")),
    };
    // usign maps the message file by name, `-` included
    let data = fs::read(message)
        .map_err(|e| Fail::say(&format!("Cannot open message file: {}", strerror(&e))))?;
    let signature = secret
        .sign(&data)
        .map_err(|e| Fail::say(&format!("Failed to sign: {e}")))?;
    let default = format!("signed by key {}", secret.fingerprint());
    let bytes = with_comment(
        &signature.to_file_bytes(),
        comment.unwrap_or(default.as_bytes()),
    );
    refuse_secret_overwrite(sigfile, "signature")?;
    write_output(sigfile, &bytes, out)
}

fn fingerprint(
    opts: &Options,
    sigfile: Option<&OsStr>,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let fp = if let Some(seckey) = &opts.seckey {
        let bytes = read_key_file(seckey, stdin)?;
        match SecretKey::parse(&bytes, None) {
            Ok(secret) => Some(secret.fingerprint()),
            // usign reads the fingerprint of a passphrase-protected key too
            Err(usign::Error::Encrypted { .. }) => encrypted_fingerprint(&bytes),
            Err(_) => None,
        }
    } else if let Some(pubkey) = &opts.pubkey {
        PublicKey::parse(&read_key_file(pubkey, stdin)?)
            .ok()
            .map(|key| key.fingerprint())
    } else if let Some(sigfile) = sigfile {
        Signature::parse(&read_key_file(sigfile, stdin)?)
            .ok()
            .map(|sig| sig.fingerprint())
    } else {
        None
    };
    let fp = fp.ok_or(Fail::Silent)?;
    writeln!(out, "{fp}")
        .and_then(|()| out.flush())
        .map_err(|e| Fail::say(&format!("Cannot write to standard output: {e}")))
}

fn generate(
    opts: &Options,
    seckey: &OsStr,
    pubkey: &OsStr,
    out: &mut dyn Write,
) -> Result<(), Fail> {
    let comment = checked_comment(opts)?;
    let (secret, public) =
        SecretKey::generate(None).map_err(|_| Fail::say("Can't read data from /dev/urandom"))?;
    let fp = secret.fingerprint();
    let secret_comment = format!("private key {fp}");
    let public_comment = format!("public key {fp}");
    let secret_bytes = with_comment(
        &secret.to_file_bytes(),
        comment.unwrap_or(secret_comment.as_bytes()),
    );
    let public_bytes = with_comment(
        &public.to_file_bytes(),
        comment.unwrap_or(public_comment.as_bytes()),
    );
    // as usign does (lines 323 and 331): the secret key, then the public key, each replacing
    // what is there
    write_output(seckey, &secret_bytes, out)?;
    write_output(pubkey, &public_bytes, out)
}

/// The `-c` comment as bytes, if one was given: usign writes it verbatim, but a line break
/// would make the file unreadable, and a longer one than signify writes would read back cut.
fn checked_comment(opts: &Options) -> Result<Option<&[u8]>, Fail> {
    let Some(comment) = &opts.comment else {
        return Ok(None);
    };
    let comment = comment.as_bytes();
    if comment.contains(&b'\n') || comment.contains(&b'\r') {
        return Err(Fail::say("Comment must not contain a line break"));
    }
    if comment.len() > MAX_COMMENT_LEN {
        return Err(Fail::say(&format!(
            "Comment is {} bytes, more than the {MAX_COMMENT_LEN} allowed",
            comment.len()
        )));
    }
    Ok(Some(comment))
}

/// A file as [`feeds::usign`] writes it, with line 1 replaced by `comment`.
fn with_comment(file: &[u8], comment: &[u8]) -> Vec<u8> {
    let data = file
        .iter()
        .position(|&b| b == b'\n')
        .map_or(file, |end| &file[end + 1..]);
    [COMMENT_HEADER.as_bytes(), comment, b"\n", data].concat()
}

fn open_failed(path: &OsStr, write: bool) -> Fail {
    Fail::Open {
        path: path.to_owned(),
        write,
    }
}

/// Reads a key or signature file (`-` is stdin), at most one byte more than any valid one.
/// Like usign: a file that cannot be opened is "Cannot open file", one without a complete
/// first line (or that cannot be read) is "Premature end of file".
fn read_key_file(name: &OsStr, stdin: &mut dyn Read) -> Result<Vec<u8>, Fail> {
    if name == "-" {
        read_key(stdin)
    } else {
        read_key(File::open(name).map_err(|_| open_failed(name, false))?)
    }
}

fn read_key(mut from: impl Read) -> Result<Vec<u8>, Fail> {
    let mut bytes = Vec::new();
    let read = from
        .by_ref()
        .take(MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes);
    if read.is_err() || (bytes.len() <= MAX_FILE_LEN && !bytes.contains(&b'\n')) {
        return Err(Fail::say("Premature end of file"));
    }
    Ok(bytes)
}

/// The key named by `fp` in `dir`: usign's `<dir>/<16-digit fp>` (`main.c` line 180), else the
/// unpadded name pre-2020 usign used; a missing key is reported under usign's name.
fn read_key_in_dir(dir: &OsStr, fp: Fingerprint) -> Result<Vec<u8>, Fail> {
    let in_dir = |name: String| {
        let mut path = dir.to_owned();
        path.push("/");
        path.push(name);
        path
    };
    let padded = in_dir(fp.to_string());
    let unpadded = in_dir(fp.unpadded());
    let file = match File::open(&padded) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && padded != unpadded => {
            File::open(&unpadded).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => open_failed(&padded, false),
                _ => open_failed(&unpadded, false),
            })?
        }
        opened => opened.map_err(|_| open_failed(&padded, false))?,
    };
    read_key(file)
}

/// Refuses to truncate `path` when it holds a secret key (usign would).
fn refuse_secret_overwrite(path: &OsStr, what: &str) -> Result<(), Fail> {
    if path == "-" {
        return Ok(());
    }
    let Ok(file) = File::open(path) else {
        return Ok(());
    };
    // only regular files: reading a FIFO would block
    if !file.metadata().is_ok_and(|meta| meta.is_file()) {
        return Ok(());
    }
    let mut bytes = Vec::new();
    let _ = file.take(MAX_FILE_LEN as u64 + 1).read_to_end(&mut bytes);
    match SecretKey::parse(&bytes, None) {
        Ok(_) | Err(usign::Error::Encrypted { .. }) => Err(Fail::about(
            &format!("Refusing to write the {what} over the secret key file "),
            path,
            "",
        )),
        Err(_) => Ok(()),
    }
}

/// Writes a key or signature as usign does (`fopen(name, "w")`, `main.c` line 105: an existing
/// file is truncated, a new one gets mode 0666 less the umask; `-` is stdout).
fn write_output(name: &OsStr, bytes: &[u8], out: &mut dyn Write) -> Result<(), Fail> {
    if name == "-" {
        return out
            .write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|e| Fail::say(&format!("Cannot write to standard output: {e}")));
    }
    let mut file = File::create(name).map_err(|_| open_failed(name, true))?;
    file.write_all(bytes).map_err(|e| write_failed(name, &e))
}

fn write_failed(name: &OsStr, e: &io::Error) -> Fail {
    Fail::about("Cannot write file ", name, &format!(": {}", strerror(e)))
}

/// The fingerprint of a passphrase-protected secret key file that [`SecretKey::parse`] has
/// validated (it then reports [`usign::Error::Encrypted`]): bytes 32..40 of the 104-byte blob,
/// read from base64 characters 40..56 of the data after line 1, whitespace skipped (blob bytes
/// 30..42).
fn encrypted_fingerprint(file: &[u8]) -> Option<Fingerprint> {
    let start = file.iter().position(|&b| b == b'\n')? + 1;
    let data: Vec<u8> = file[start..]
        .iter()
        .copied()
        .filter(|&b| !matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))
        .collect();
    let mut bits: u128 = 0;
    for &c in data.get(40..56)? {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = bits << 6 | u128::from(value);
    }
    // 96 bits: blob bytes 30..42 in the low 12 bytes; the fingerprint is bytes 32..40
    let bytes = bits.to_be_bytes();
    let mut fp = [0; 8];
    fp.copy_from_slice(&bytes[6..14]);
    Some(Fingerprint::new(fp))
}

/// The text `perror` prints for `e`: the OS message without Rust's ` (os error N)`.
fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map_or_else(|| text.clone(), str::to_owned),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn parse(list: &[&str]) -> Result<Options, UsageError> {
        parse_args(&args(list), false)
    }

    fn os(s: &str) -> Option<OsString> {
        Some(s.into())
    }

    /// Runs with in-memory streams: (exit status, stdout, stderr).
    fn run_with(list: &[&str], stdin: &[u8]) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(list.iter().copied(), &mut &stdin[..], &mut out, &mut err);
        let text = |bytes| String::from_utf8(bytes).unwrap();
        (code, text(out), text(err))
    }

    #[test]
    fn separate_and_attached_values() {
        let opts = parse(&["-V", "-m", "Packages", "-pkey.pub", "-x", "-", "-q"]).unwrap();
        assert_eq!(
            opts,
            Options {
                command: Some(Command::Verify),
                message: os("Packages"),
                pubkey: os("key.pub"),
                sigfile: os("-"),
                quiet: true,
                ..Options::default()
            }
        );
    }

    #[test]
    fn clustered_flags() {
        let opts = parse(&["-qV", "-P/etc/opkg/keys", "-mPackages"]).unwrap();
        assert_eq!(opts.command, Some(Command::Verify));
        assert!(opts.quiet);
        assert_eq!(opts.pubkey_dir, os("/etc/opkg/keys"));
        assert_eq!(opts.message, os("Packages"));
        // a value-taking letter ends the cluster, taking the rest or the next argument
        let opts = parse(&["-qSs", "k.sec", "-qmmsg"]).unwrap();
        assert_eq!(opts.command, Some(Command::Sign));
        assert_eq!(opts.seckey, os("k.sec"));
        assert_eq!(opts.message, os("msg"));
        let opts = parse(&["-Gc", "my key", "-sk.sec", "-pk.pub"]).unwrap();
        assert_eq!(opts.comment, os("my key"));
        let opts = parse(&["-Gcq"]).unwrap();
        assert_eq!((opts.comment, opts.quiet), (os("q"), false));
    }

    #[test]
    fn values_may_look_like_options() {
        let opts = parse(&["-V", "-x", "-q", "-m", "--", "-c", "-V"]).unwrap();
        assert_eq!(opts.sigfile, os("-q"));
        assert_eq!(opts.message, os("--"));
        assert_eq!(opts.comment, os("-V"));
        assert!(!opts.quiet);
        assert_eq!(opts.command, Some(Command::Verify));
        // an empty value is a value
        assert_eq!(parse(&["-c", ""]).unwrap().comment, os(""));
    }

    #[test]
    fn last_value_wins() {
        let opts = parse(&["-m", "a", "-S", "-m", "b", "-ma"]).unwrap();
        assert_eq!(opts.message, os("a"));
        let opts = parse(&["-x", "a", "-x", "b"]).unwrap();
        assert_eq!(opts.sigfile, os("b"));
    }

    #[test]
    fn missing_values() {
        for letter in ["c", "m", "P", "p", "s", "x"] {
            let flag = format!("-{letter}");
            assert_eq!(
                parse(&["-V", &flag]),
                Err(UsageError::MissingArgument(letter.as_bytes()[0])),
                "{flag}"
            );
        }
        assert_eq!(parse(&["-qm"]), Err(UsageError::MissingArgument(b'm')));
    }

    #[test]
    fn unknown_flags() {
        assert_eq!(parse(&["-z"]), Err(UsageError::InvalidOption(b'z')));
        assert_eq!(parse(&["-Vz"]), Err(UsageError::InvalidOption(b'z')));
        // long options are not getopt's: `--help` is the unknown option '-'
        assert_eq!(parse(&["--help"]), Err(UsageError::InvalidOption(b'-')));
        assert_eq!(parse(&["-:"]), Err(UsageError::InvalidOption(b':')));
        assert_eq!(parse(&["-v"]), Err(UsageError::InvalidOption(b'v')));
        // the first problem wins
        assert_eq!(
            parse(&["-z", "-V", "-S"]),
            Err(UsageError::InvalidOption(b'z'))
        );
        assert_eq!(
            UsageError::InvalidOption(b'z').to_string(),
            "invalid option -- 'z'"
        );
    }

    #[test]
    fn two_commands() {
        for list in [&["-V", "-S"][..], &["-VS"], &["-V", "-V"], &["-GF"]] {
            assert_eq!(parse(list), Err(UsageError::SecondCommand), "{list:?}");
        }
        assert_eq!(parse(&["-V", "-S", "-z"]), Err(UsageError::SecondCommand));
    }

    #[test]
    fn no_command() {
        assert_eq!(parse(&[]).unwrap(), Options::default());
        let opts = parse(&["-m", "msg", "-q"]).unwrap();
        assert_eq!(opts.command, None);
    }

    #[test]
    fn operands_and_double_dash() {
        // GNU getopt skips operands and keeps parsing
        let opts = parse(&["Packages", "-V", "-", "", "-mmsg"]).unwrap();
        assert_eq!(opts.command, Some(Command::Verify));
        assert_eq!(opts.message, os("msg"));
        // POSIXLY_CORRECT stops at the first operand
        let opts = parse_args(&args(&["-q", "Packages", "-V"]), true).unwrap();
        assert_eq!((opts.command, opts.quiet), (None, true));
        // `--` ends the options
        let opts = parse(&["-S", "--", "-V", "-z"]).unwrap();
        assert_eq!(opts.command, Some(Command::Sign));
    }

    #[test]
    fn raw_bytes_kept() {
        let list = vec![
            OsString::from("-V"),
            OsString::from_vec(b"-m\xff\xfe".to_vec()),
            OsString::from_vec(b"-\xe9".to_vec()),
        ];
        assert_eq!(
            parse_args(&list, false),
            Err(UsageError::InvalidOption(0xe9))
        );
        let opts = parse_args(&list[..2], false).unwrap();
        assert_eq!(opts.message.unwrap().into_vec(), b"\xff\xfe");
    }

    #[test]
    fn usage_errors_print_usign_text() {
        assert_eq!(run_with(&[], b""), (1, String::new(), USAGE.into()));
        assert_eq!(
            run_with(&["-V", "-S"], b""),
            (1, String::new(), USAGE.into())
        );
        let (code, out, err) = run_with(&["-V", "-z"], b"");
        assert_eq!((code, out.as_str()), (1, ""));
        assert_eq!(err, format!("usign: invalid option -- 'z'\n{USAGE}"));
        let (code, _, err) = run_with(&["-Vm"], b"");
        assert_eq!(code, 1);
        assert_eq!(
            err,
            format!("usign: option requires an argument -- 'm'\n{USAGE}")
        );
        // a command without what it needs
        for list in [
            &["-V", "-m", "msg"][..],
            &["-V", "-p", "k.pub"],
            &["-S", "-m", "msg"],
            &["-S", "-s", "k.sec", "-x", "msg.sig"],
            &["-G", "-s", "k.sec"],
            &["-G", "-p", "k.pub"],
            &["-q", "-m", "msg"],
        ] {
            assert_eq!(
                run_with(list, b""),
                (1, String::new(), USAGE.into()),
                "{list:?}"
            );
        }
        for list in [
            &["-F"][..],
            &["-F", "-s", "a", "-p", "b"],
            &["-F", "-p", "b", "-m", "msg"],
        ] {
            let (code, _, err) = run_with(list, b"");
            assert_eq!(code, 1);
            assert_eq!(
                err,
                format!("Need one secret/public key or signature\n{USAGE}"),
                "{list:?}"
            );
        }
        assert!(USAGE.starts_with("Usage: usign <command> <options>\nCommands:\n  -V:\t\t\t"));
        assert!(USAGE.ends_with(".sig)\n\n"));
    }

    #[test]
    fn message_from_stdin_needs_a_signature_file() {
        for list in [
            &["-V", "-m", "-", "-p", "k.pub"][..],
            &["-S", "-m-", "-s", "k.sec"],
            &["-m", "-"],
        ] {
            assert_eq!(
                run_with(list, b""),
                (
                    1,
                    String::new(),
                    "Need signature file when reading message from stdin\n".into()
                ),
                "{list:?}"
            );
        }
    }

    #[test]
    fn stdin_and_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let (sec, public) = (path("k.sec"), path("k.pub"));
        // both keys to stdout: secret first
        let (code, out, _) = run_with(&["-G", "-s", "-", "-p", "-"], b"");
        assert_eq!(code, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("untrusted comment: private key "));
        assert!(lines[2].starts_with("untrusted comment: public key "));

        assert_eq!(run_with(&["-G", "-s", &sec, "-p", &public], b"").0, 0);
        let (_, fp, _) = run_with(&["-F", "-p", &public], b"");
        // the signature to stdout, the key from stdin
        let key = fs::read(&sec).unwrap();
        fs::write(path("msg"), b"hello\n").unwrap();
        let (code, sig, err) = run_with(&["-S", "-m", &path("msg"), "-s-", "-x-"], &key);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            sig.lines().next().unwrap(),
            format!("untrusted comment: signed by key {}", fp.trim_end())
        );
        fs::write(path("msg.sig"), &sig).unwrap();
        // the message from stdin
        let verify = ["-V", "-m", "-", "-x", &path("msg.sig"), "-p", &public];
        assert_eq!(
            run_with(&verify, b"hello\n"),
            (0, String::new(), "OK\n".into())
        );
        assert_eq!(
            run_with(&verify, b"hello!\n"),
            (1, String::new(), "verification failed\n".into())
        );
        // the signature or the key from stdin
        let verify = ["-V", "-m", &path("msg"), "-x", "-", "-p", &public];
        assert_eq!(run_with(&verify, sig.as_bytes()).0, 0);
        let verify = ["-V", "-m", &path("msg"), "-p", "-"];
        assert_eq!(run_with(&verify, &fs::read(&public).unwrap()).0, 0);
        assert_eq!(run_with(&["-F", "-x", "-"], sig.as_bytes()).1, fp);
        // stdin without a complete first line
        assert_eq!(
            run_with(&["-F", "-p", "-"], b"untrusted comment: x"),
            (1, String::new(), "Premature end of file\n".into())
        );
    }

    #[test]
    fn fingerprint_of_a_protected_secret_key() {
        let fp = Fingerprint::new([0x0b, 0x26, 0xf3, 0x6a, 0xe0, 0xf4, 0x10, 0x6d]);
        let key = SecretKey::from_seed([7; 32], fp).unwrap();
        let file = key.to_encrypted_file_bytes(b"pw").unwrap();
        assert!(matches!(
            SecretKey::parse(&file, None),
            Err(usign::Error::Encrypted { .. })
        ));
        assert_eq!(encrypted_fingerprint(&file), Some(fp));
        // and of an unprotected one, by the same arithmetic
        assert_eq!(encrypted_fingerprint(&key.to_file_bytes()), Some(fp));
        let file = String::from_utf8(file).unwrap();
        let (code, out, err) = run_with(&["-F", "-s", "-"], file.as_bytes());
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (0, "0b26f36ae0f4106d\n", "")
        );
        // signing with it is refused as usign refuses it
        let (code, _, err) = run_with(&["-S", "-s", "-", "-m", "msg", "-x", "-"], file.as_bytes());
        assert_eq!(code, 1);
        assert_eq!(err, "Password protected secret keys are not supported\n");
    }

    #[test]
    fn helpers() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(strerror(&e), "No such file or directory");
        let e = io::Error::other("custom");
        assert_eq!(strerror(&e), "custom");
        assert_eq!(
            with_comment(b"untrusted comment: old\nRWQ=\n", b""),
            b"untrusted comment: \nRWQ=\n"
        );
    }
}
