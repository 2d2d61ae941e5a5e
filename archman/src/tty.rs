//! Passphrases typed on the terminal (`archman keygen --ask`), read as signify's
//! readpassphrase(3) reads them: from `/dev/tty`, never standard input; echo turned off and
//! input typed ahead discarded *before* the prompt is shown, so that nothing typed after it
//! can appear on the screen; the terminal's settings restored however the reading ends. The
//! prompts are the only thing written, and only to `/dev/tty`.
//!
//! The terminal is put in non-canonical mode without signals for the read, so that the line is
//! edited here (backspace, ^U) and ^C is seen here as well: the settings are restored and an
//! error returned, where a SIGINT would leave the terminal without echo.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};

use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex, Termios};

/// Reading a passphrase from the terminal failed.
#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    #[error("no terminal to ask on (/dev/tty: {0})")]
    NoTerminal(#[source] io::Error),
    #[error("/dev/tty: {0}")]
    Io(#[from] io::Error),
    #[error("interrupted")]
    Interrupted,
    #[error("end of input before the passphrase's end of line")]
    EndOfInput,
}

/// The process's controlling terminal.
pub struct Tty {
    file: File,
}

impl Tty {
    /// Opens `/dev/tty`; an error when the process has no controlling terminal.
    pub fn open() -> Result<Tty, TtyError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map(|file| Tty { file })
            .map_err(TtyError::NoTerminal)
    }

    /// Shows `prompt` and reads one line without echo (see the module documentation).
    pub fn read_passphrase(&mut self, prompt: &str) -> Result<Vec<u8>, TtyError> {
        let saved = termios::tcgetattr(&self.file).map_err(io::Error::from)?;
        let mut quiet = saved.clone();
        quiet
            .local_modes
            .remove(LocalModes::ECHO | LocalModes::ECHONL | LocalModes::ICANON | LocalModes::ISIG);
        quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
        quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
        // TCSAFLUSH: what was typed before the prompt is dropped, unseen and unread.
        termios::tcsetattr(&self.file, OptionalActions::Flush, &quiet).map_err(io::Error::from)?;
        let restore = Restore {
            file: &self.file,
            saved,
        };
        (&self.file).write_all(prompt.as_bytes())?;
        let line = read_line(&mut &self.file);
        // The Enter typed was not echoed: end the prompt's line.
        (&self.file).write_all(b"\n")?;
        drop(restore);
        line
    }
}

/// Puts the terminal's settings back when dropped.
struct Restore<'a> {
    file: &'a File,
    saved: Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        // Nothing better to do if this fails: the terminal is then left as it is.
        let _ = termios::tcsetattr(self.file, OptionalActions::Now, &self.saved);
    }
}

/// One line typed on a terminal in non-canonical mode: up to `\n` or `\r`, with backspace
/// (DEL or BS, one character, UTF-8 aware) and ^U (the whole line) applied; ^C is
/// [`TtyError::Interrupted`], ^D or the end of input [`TtyError::EndOfInput`].
fn read_line(input: &mut impl Read) -> Result<Vec<u8>, TtyError> {
    let mut line = Vec::new();
    let mut byte = [0];
    loop {
        if input.read(&mut byte)? == 0 {
            return Err(TtyError::EndOfInput);
        }
        match byte[0] {
            b'\n' | b'\r' => return Ok(line),
            0x03 => return Err(TtyError::Interrupted),
            0x04 => return Err(TtyError::EndOfInput),
            0x7f | 0x08 => {
                // a UTF-8 character's continuation bytes, then its first byte
                while line.pop().is_some_and(|b| b & 0xc0 == 0x80) {}
            }
            0x15 => line.clear(),
            b => line.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(typed: &[u8]) -> Result<Vec<u8>, TtyError> {
        read_line(&mut &typed[..])
    }

    #[test]
    fn a_line_is_edited_as_typed() {
        assert_eq!(line(b"correct horse\n").unwrap(), b"correct horse");
        assert_eq!(line(b"correct horse\r").unwrap(), b"correct horse");
        assert_eq!(line(b"\n").unwrap(), b"");
        assert_eq!(line(b"horsf\x7fe\n").unwrap(), b"horse");
        assert_eq!(line(b"horsf\x08e\n").unwrap(), b"horse");
        assert_eq!(line(b"\x7f\x7fok\n").unwrap(), b"ok");
        assert_eq!(line(b"wrong\x15right\n").unwrap(), b"right");
        // backspace takes a whole UTF-8 character
        assert_eq!(line("caf\u{e9}\x7fe\n".as_bytes()).unwrap(), b"cafe");
        assert_eq!(line("\u{1f40e}\x7fh\n".as_bytes()).unwrap(), b"h");
        // only the first line is read
        assert_eq!(line(b"one\ntwo\n").unwrap(), b"one");
    }

    #[test]
    fn interrupt_and_end_of_input_are_errors() {
        assert!(matches!(line(b"secr\x03et\n"), Err(TtyError::Interrupted)));
        assert!(matches!(line(b"secret\x04"), Err(TtyError::EndOfInput)));
        assert!(matches!(line(b"no newline"), Err(TtyError::EndOfInput)));
        assert!(matches!(line(b""), Err(TtyError::EndOfInput)));
    }
}
