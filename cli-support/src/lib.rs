//! `cli-support` owns what the two binaries, `archman` and `prokit`, share at their edge and
//! nothing else: the one format in which an error is shown, and the rule that a closed
//! standard output (`prokit list | head`) is a normal end, not a failure (as ripgrep does);
//! and the shell completions and man pages both generate from their clap definitions.

use std::error::Error;
use std::io;

/// The message of an error and its causes, outermost first, joined by `": "`. A cause whose
/// text the message already shows is left out, so errors that print their source themselves
/// (`"{path}: {source}"`) and errors that only chain it read the same, and nothing is said
/// twice (`… (os error 2): No such file or directory (os error 2)`).
pub fn error_message(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// True when `err` or one of its causes is an I/O error of kind `BrokenPipe`: the reader of
/// standard output went away, which ends the program normally.
pub fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    let mut cur: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::BrokenPipe
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Writes `text` to standard output and flushes it. Any failure names standard output and
/// keeps its kind, so a closed pipe is still recognised by [`is_broken_pipe`] (instead of the
/// panic `println!` gives).
pub fn write_stdout(text: std::fmt::Arguments<'_>) -> io::Result<()> {
    use std::io::Write;
    let mut out = io::stdout().lock();
    out.write_fmt(text)
        .and_then(|()| out.flush())
        .map_err(|e| io::Error::new(e.kind(), format!("standard output: {e}")))
}

/// A line to standard output through [`write_stdout`]; evaluates to `io::Result<()>`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(::std::format_args!("{}\n", ::std::format_args!($($arg)*)))
    };
}

/// The shells `completions` writes for.
pub use clap_complete::Shell;

/// Writes `cmd`'s completion script for `shell` to standard output.
pub fn write_completions(cmd: &mut clap::Command, shell: Shell) -> io::Result<()> {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, cmd, name, &mut out);
    io::Write::write_all(&mut io::stdout().lock(), &out)
}

/// Writes the man pages of `cmd` and of each of its subcommands (`archman-index.1`, …, as
/// git names its pages) into `dir`; returns the files written.
pub fn write_man_pages(
    cmd: &clap::Command,
    dir: &std::path::Path,
) -> io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut pages = vec![(cmd.get_name().to_string(), cmd.clone())];
    let mut i = 0;
    while i < pages.len() {
        let (name, page) = pages[i].clone();
        for sub in page.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let sub_name = format!("{name}-{}", sub.get_name());
            pages.push((sub_name.clone(), sub.clone().name(sub_name)));
        }
        i += 1;
    }
    for (name, page) in pages {
        let mut bytes = Vec::new();
        clap_mangen::Man::new(page).render(&mut bytes)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, bytes)?;
        written.push(path);
    }
    Ok(written)
}

/// Sets up the C allocator for a tool that builds and drops buffers of megabytes (an index,
/// a cache read whole): with glibc, allocations of 256 KiB and more always get pages of their
/// own and give them back when freed. By default glibc raises that threshold to the largest
/// block freed so far, after which such buffers come from the heap and their pages stay
/// counted in the peak RSS (bench/README.md, issue 16). Below it (the 128 KiB read buffer of
/// each package, a decompressor's state) the heap is reused: a threshold at 128 KiB made every
/// package read map and zero fresh pages, a full index of 10,000 packages 30 % slower. Does
/// nothing with other C libraries.
#[allow(unsafe_code)]
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; called before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// Caps how many heaps ("arenas") glibc's allocator keeps for threads at `arenas`, for a tool
/// whose threads allocate little and rarely (prokit's download and unpack workers reuse their
/// buffers). By default glibc gives each new thread a heap of its own, up to eight per core;
/// each keeps the pages its thread touched, and with more packages to install they touched
/// more of them: 0.8 MiB of six such heaps at 10,000 packages against 0.3 MiB at 300. With
/// two, the workers share one heap beside the main thread's; the peak RSS of a bootstrap of
/// 10,000 packages fell by ~1 MiB, its time did not move (bench/README.md, issue 16). Call
/// it before any thread starts. Does nothing with other C libraries.
#[allow(unsafe_code)]
pub fn limit_arenas(arenas: u16) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; called before any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, libc::c_int::from(arenas.max(1)));
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// The size from which [`tune_allocator`] gives an allocation pages of its own.
pub const MMAP_THRESHOLD: usize = 256 * 1024;

/// The size of a buffer made for each file read in parts (a package being unpacked or having
/// its signature checked): below [`MMAP_THRESHOLD`], so that the next file's buffer reuses
/// the heap's memory instead of mapping and zeroing fresh pages (at 10,000 packages, 10,000
/// `mmap`/`munmap` pairs of 260 KiB each).
pub const READ_BUFFER: usize = 128 * 1024;

/// Gives the heap's free pages back to the system (glibc's `malloc_trim`): for a long run that
/// frees much of what a phase built before the next phase builds again (prokit commits a group
/// of packages, then unpacks the next), so that the peak RSS follows what is live rather than
/// every hole the allocator kept. Does nothing with other C libraries.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: only asks the allocator to return free pages; no memory is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrap(&'static str, io::Error, bool);

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.2 {
                write!(f, "{}: {}", self.0, self.1)
            } else {
                f.write_str(self.0)
            }
        }
    }

    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = Wrap("x.conf", io::Error::from_raw_os_error(2), true);
        assert_eq!(
            error_message(&e),
            "x.conf: No such file or directory (os error 2)"
        );
        let e = Wrap("x.conf", io::Error::from_raw_os_error(2), false);
        assert_eq!(
            error_message(&e),
            "x.conf: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_stdout_error_keeps_its_kind() {
        let e = io::Error::new(io::ErrorKind::BrokenPipe, "x");
        let e = io::Error::new(e.kind(), format!("standard output: {e}"));
        assert!(is_broken_pipe(&e));
    }

    #[test]
    fn broken_pipe_is_found_among_the_causes() {
        let e = Wrap("stdout", io::Error::from(io::ErrorKind::BrokenPipe), false);
        assert!(is_broken_pipe(&e));
        let e = Wrap("stdout", io::Error::from(io::ErrorKind::NotFound), false);
        assert!(!is_broken_pipe(&e));
    }
}
