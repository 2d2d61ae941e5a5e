//! `cli-support` owns what the two binaries, `archman` and `prokit`, share at their edge and
//! nothing else: the one format in which an error is shown, and the rule that a closed
//! standard output (`prokit list | head`) is a normal end, not a failure (as ripgrep does).

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
