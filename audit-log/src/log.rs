//! [`Log`]: an audit log open for appending.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use safe_fs::{Dir, FsError, Root, lock_exclusive};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::record::{
    CHAIN_RESTARTED, MAX_LINE, RESERVED_FIELDS, parse, sha256, write_line, writer_fields,
};
use crate::time::format_rfc3339;

/// The mode of a log file this crate creates.
pub const LOG_MODE: u32 = 0o640;

/// How much of the end of the file is read first to find its last line.
const TAIL_CHUNK: u64 = 8 * 1024;

/// An audit log open for appending — or a disabled one ([`Log::disabled`]), whose appends do
/// nothing, so that callers need no `Option`.
///
/// Each [`Log::append`] writes one record in one `write(2)` under an exclusive `flock(2)`;
/// nothing is fsynced until [`Log::sync`] or [`Log::finish`], which a command calls once at
/// its end. A `Log` dropped without them has still written every record (the kernel has
/// them); only a power cut can then lose the last ones.
#[derive(Debug)]
pub struct Log {
    inner: Option<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Opened `O_RDWR | O_APPEND | O_NOFOLLOW`.
    file: File,
    /// The file's directory, fsynced once when the file was created.
    dir: Dir,
    dir_needs_sync: bool,
    /// Records written since the last fsync.
    dirty: bool,
    /// The file's size after this process's last append; `None` before the first append or
    /// after a failed one. Any other size means someone else appended: read the tail again.
    end: Option<u64>,
    /// The SHA-256 of the file's last line, when `end` is known.
    last_hash: [u8; 32],
    /// `"tool":…,"version":…,"user":…,"host":…,"pid":…`.
    writer: String,
    buf: Vec<u8>,
}

/// The last line of a log, as the next append needs it.
enum Tail {
    /// An empty file: the chain starts from zeros.
    Empty,
    /// The last line is a record ending in a newline: its SHA-256.
    Record([u8; 32]),
    /// The last line is not a record: a write cut short (`torn`: no newline ends it) or
    /// something else. It is line `line_no`; the chain restarts from its SHA-256.
    Broken {
        hash: [u8; 32],
        line_no: u64,
        torn: bool,
    },
}

impl Log {
    /// Opens (creating it with mode 0640, and its missing parent directories with mode 0755)
    /// the log at `path` — a path of the caller's own: symlinks among its directories are
    /// followed, but not one at the file itself. `tool` and `version` go into every record.
    pub fn open(path: &Path, tool: &str, version: &str) -> Result<Log, Error> {
        let (parent, name) = crate::read::dir_and_name(path)?;
        let dir = open_dir_creating(parent)?;
        Log::open_in(dir, name, path.to_path_buf(), tool, version)
    }

    /// Opens (creating it as [`Log::open`] does) the log at `rel` inside `root`: the path is
    /// resolved as a chroot would ([`Root::open_dir`]), so no symlink can lead it outside the
    /// root, and the file itself is never reached through a symlink.
    pub fn open_in_root(root: &Root, rel: &str, tool: &str, version: &str) -> Result<Log, Error> {
        let at = root.path().join(rel.trim_start_matches('/'));
        let rel = Root::confine(rel).map_err(|e| {
            FsError::new(
                &at,
                "open",
                io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
            )
        })?;
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", &rel));
        if name.is_empty() {
            return Err(FsError::new(
                &at,
                "open",
                io::Error::new(io::ErrorKind::IsADirectory, "the root is a directory"),
            )
            .into());
        }
        let dir = root.open_dir(parent, true)?;
        let path = dir.path().join(name);
        Log::open_in(dir, name, path, tool, version)
    }

    fn open_in(
        dir: Dir,
        name: &str,
        path: PathBuf,
        tool: &str,
        version: &str,
    ) -> Result<Log, Error> {
        let (file, created) = dir.open_append(name, LOG_MODE)?;
        let writer = writer_fields(
            tool,
            version,
            &user_name(),
            &host_name(),
            std::process::id(),
        );
        Ok(Log {
            inner: Some(Inner {
                path,
                file,
                dir,
                dir_needs_sync: created,
                dirty: false,
                end: None,
                last_hash: [0; 32],
                writer,
                buf: Vec::new(),
            }),
        })
    }

    /// A log that records nothing: every method succeeds and does nothing.
    pub fn disabled() -> Log {
        Log { inner: None }
    }

    /// False for a [`Log::disabled`] one.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The log's path (`None` when disabled).
    pub fn path(&self) -> Option<&Path> {
        self.inner.as_ref().map(|i| i.path.as_path())
    }

    /// Appends the record of `event` (`package-installed`) with `fields`, which must serialize
    /// to a JSON object whose keys are not in [`RESERVED_FIELDS`] (`serde_json::json!({...})`,
    /// a `serde_json::Map`, or a struct deriving `Serialize`). The event `chain-restarted` is
    /// the log's own. Put URLs through [`url_without_credentials`](crate::url_without_credentials)
    /// first: the log is readable by its group (mode 0640), and kept for good.
    pub fn append<T: serde::Serialize + ?Sized>(
        &mut self,
        event: &str,
        fields: &T,
    ) -> Result<(), Error> {
        self.append_at(crate::time::now(), event, fields)
    }

    /// Appends several records as [`Log::append`] appends one, in order, chained, in one
    /// `write(2)` under one lock (one record's checks failing appends none of them).
    pub fn append_many(&mut self, records: &[(String, Value)]) -> Result<(), Error> {
        let Some(inner) = &mut self.inner else {
            return Ok(());
        };
        if records.is_empty() {
            return Ok(());
        }
        let mut checked = Vec::with_capacity(records.len());
        for (event, fields) in records {
            checked.push((event.as_str(), check_fields(&inner.path, event, fields)?));
        }
        append_checked(inner, crate::time::now(), &checked)
    }

    /// [`Log::append`] with the record's time given (seconds since 1970-01-01 UTC).
    pub(crate) fn append_at<T: serde::Serialize + ?Sized>(
        &mut self,
        time: i64,
        event: &str,
        fields: &T,
    ) -> Result<(), Error> {
        let Some(inner) = &mut self.inner else {
            return Ok(());
        };
        let fields = check_fields(&inner.path, event, fields)?;
        append_checked(inner, time, &[(event, fields)])
    }

    /// Makes every record appended so far durable: fsyncs the file (`fdatasync`) if anything
    /// was appended since the last sync, and its directory once if the file was created.
    pub fn sync(&mut self) -> Result<(), Error> {
        let Some(inner) = &mut self.inner else {
            return Ok(());
        };
        if inner.dirty {
            inner
                .file
                .sync_data()
                .map_err(|e| FsError::new(&inner.path, "sync", e))?;
            inner.dirty = false;
        }
        if inner.dir_needs_sync {
            inner.dir.sync()?;
            inner.dir_needs_sync = false;
        }
        Ok(())
    }

    /// [`Log::sync`], then closes the log: once per command, at its end.
    pub fn finish(mut self) -> Result<(), Error> {
        self.sync()
    }
}

/// The fields of a record of `event` as a JSON object, checked: an object, no reserved key,
/// not the log's own event.
fn check_fields<T: serde::Serialize + ?Sized>(
    path: &Path,
    event: &str,
    fields: &T,
) -> Result<Map<String, Value>, Error> {
    let bad = |reason: String| Error::BadEvent {
        path: path.to_path_buf(),
        event: event.to_string(),
        reason,
    };
    if event == CHAIN_RESTARTED {
        return Err(bad(format!("the event {CHAIN_RESTARTED} is the log's own")));
    }
    let fields = match serde_json::to_value(fields) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(bad("its fields are not a JSON object".into())),
        Err(e) => return Err(bad(format!("its fields do not serialize: {e}"))),
    };
    if let Some(k) = RESERVED_FIELDS.iter().find(|k| fields.contains_key(**k)) {
        return Err(bad(format!("the field name {k:?} is reserved")));
    }
    Ok(fields)
}

/// Appends checked records at `time` (seconds since 1970-01-01 UTC).
fn append_checked(
    inner: &mut Inner,
    time: i64,
    records: &[(&str, Map<String, Value>)],
) -> Result<(), Error> {
    inner
        .append(&format_rfc3339(time), records)
        .map_err(|e| match e {
            AppendError::Error(e) => e,
            AppendError::TooLong(event, len) => Error::BadEvent {
                path: inner.path.clone(),
                event,
                reason: format!(
                    "the record would be {len} bytes, more than the {MAX_LINE} a line may have"
                ),
            },
        })
}

enum AppendError {
    Error(Error),
    TooLong(String, usize),
}

impl From<Error> for AppendError {
    fn from(e: Error) -> Self {
        AppendError::Error(e)
    }
}

impl From<FsError> for AppendError {
    fn from(e: FsError) -> Self {
        AppendError::Error(e.into())
    }
}

impl Inner {
    fn append(
        &mut self,
        time: &str,
        records: &[(&str, Map<String, Value>)],
    ) -> Result<(), AppendError> {
        let _lock = lock_exclusive(&self.file, &self.path)?;
        let size = self
            .file
            .metadata()
            .map_err(|e| FsError::new(&self.path, "stat", e))?
            .len();
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut prev = self.last_hash;
        if self.end != Some(size) {
            // First append, or someone else appended since ours: find the last line.
            match read_tail(&self.file, &self.path, size)? {
                Tail::Empty => prev = [0; 32],
                Tail::Record(hash) => prev = hash,
                Tail::Broken {
                    hash,
                    line_no,
                    torn,
                } => {
                    // A write cut short: end it, and say so in a record chained to it — in the
                    // same write as the record itself.
                    let reason = if torn {
                        buf.push(b'\n');
                        format!("torn last line {line_no}")
                    } else {
                        format!("last line {line_no} is not a record")
                    };
                    let mut restart = Map::new();
                    restart.insert("reason".into(), reason.into());
                    restart.insert("torn_line".into(), line_no.into());
                    prev = write_line(
                        &mut buf,
                        &hash,
                        time,
                        &self.writer,
                        CHAIN_RESTARTED,
                        &restart,
                    );
                    buf.push(b'\n');
                }
            }
        }
        let mut hash = prev;
        for (event, fields) in records {
            let start = buf.len();
            hash = write_line(&mut buf, &hash, time, &self.writer, event, fields);
            let len = buf.len() - start;
            if len > MAX_LINE {
                self.buf = buf;
                return Err(AppendError::TooLong(event.to_string(), len));
            }
            buf.push(b'\n');
        }
        // One write(2) in all but the rarest cases; under the lock and O_APPEND, nothing can
        // come between the pieces of a short write.
        let written = (&self.file).write_all(&buf);
        self.end = None;
        written.map_err(|e| FsError::new(&self.path, "append to", e))?;
        self.end = Some(size + buf.len() as u64);
        self.last_hash = hash;
        self.dirty = true;
        self.buf = buf;
        Ok(())
    }
}

/// Reads the last line of the log (`size` bytes): at most [`MAX_LINE`] of it, from the end.
fn read_tail(file: &File, path: &Path, size: u64) -> Result<Tail, Error> {
    if size == 0 {
        return Ok(Tail::Empty);
    }
    // The last line, its newline, and the newline before it.
    let limit = size.min(MAX_LINE as u64 + 2);
    let mut len = size.min(TAIL_CHUNK);
    loop {
        let mut buf = vec![0; len as usize];
        file.read_exact_at(&mut buf, size - len)
            .map_err(|e| FsError::new(path, "read", e))?;
        let terminated = buf.last() == Some(&b'\n');
        let content = if terminated {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        };
        let line = match content.iter().rposition(|&b| b == b'\n') {
            Some(i) => &content[i + 1..],
            None if len == size => content,
            None if len < limit => {
                len = (len * 8).min(limit);
                continue;
            }
            None => {
                return Err(Error::LastLineTooLong {
                    path: path.to_path_buf(),
                    max: MAX_LINE,
                });
            }
        };
        if line.len() > MAX_LINE {
            return Err(Error::LastLineTooLong {
                path: path.to_path_buf(),
                max: MAX_LINE,
            });
        }
        let hash = sha256(line);
        if terminated && parse(line).is_ok() {
            return Ok(Tail::Record(hash));
        }
        // Rare: the line number costs a read of the whole file.
        let newlines = count_newlines(file, path, size)?;
        return Ok(Tail::Broken {
            hash,
            line_no: if terminated { newlines } else { newlines + 1 },
            torn: !terminated,
        });
    }
}

/// The number of newlines in the first `size` bytes of `file`.
fn count_newlines(file: &File, path: &Path, size: u64) -> Result<u64, Error> {
    let mut buf = vec![0; 64 * 1024];
    let (mut at, mut count) = (0u64, 0u64);
    while at < size {
        let n = (size - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|e| FsError::new(path, "read", e))?;
        count += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        at += n as u64;
    }
    Ok(count)
}

/// Opens the directory `path`, creating it and its missing parents with mode 0755 (each new
/// one's parent fsynced, so that it survives a crash).
fn open_dir_creating(path: &Path) -> Result<Dir, FsError> {
    match Dir::open(path) {
        Err(e) if e.is_not_found() => {}
        other => return other,
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Dir::open(path);
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let Some(name) = name.to_str() else {
        return Err(FsError::new(
            path,
            "create directory",
            io::Error::new(io::ErrorKind::InvalidInput, "the name is not UTF-8"),
        ));
    };
    let up = open_dir_creating(parent)?;
    match up.create_dir(name, 0o755) {
        Ok(dir) => {
            up.sync()?;
            Ok(dir)
        }
        // Made meanwhile by someone else.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Dir::open(path),
        Err(e) => Err(e),
    }
}

/// The name of the user this process runs as (the owner of `/proc/self`), from the host's
/// `/etc/passwd`; the number when it has none; `unknown` without `/proc`.
fn user_name() -> String {
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "unknown".into();
    };
    let passwd = safe_fs::read_bounded(Path::new("/etc/passwd"), 16 << 20)
        .ok()
        .flatten()
        .unwrap_or_default();
    passwd_name(&String::from_utf8_lossy(&passwd), uid).unwrap_or_else(|| uid.to_string())
}

/// The first name of `uid` in a passwd file.
fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// The host's name (`/proc/sys/kernel/hostname`), `unknown` when it cannot be read.
fn host_name() -> String {
    safe_fs::read_bounded(Path::new("/proc/sys/kernel/hostname"), 4096)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests;
