//! Man pages and shell completions, generated from the clap definitions of both binaries
//! (issue 15): every subcommand gets its page, and each shell its script.

use std::fs;
use std::process::Command;

use e2e::{bin, run};

#[test]
fn man_pages_and_completions_are_generated_for_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    for (tool, subs) in [
        ("archman", &["index", "keyring", "token", "key"][..]),
        (
            "prokit",
            &["install", "upgrade", "auth", "flag", "autoremove"][..],
        ),
    ] {
        let dir = tmp.path().join(tool);
        let (ok, out, err) = run(Command::new(bin(tool)).arg("man").arg(&dir));
        assert!(ok, "{tool} man: {err}");
        for page in
            std::iter::once(tool.to_string()).chain(subs.iter().map(|s| format!("{tool}-{s}")))
        {
            let path = dir.join(format!("{page}.1"));
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(text.contains(".TH "), "{page}: not a man page");
            assert!(out.contains(&path.display().to_string()), "{out}");
        }
        for shell in ["bash", "zsh", "fish"] {
            let (ok, out, err) = run(Command::new(bin(tool)).args(["completions", shell]));
            assert!(ok, "{tool} completions {shell}: {err}");
            assert!(out.contains(tool) && out.len() > 1000, "{tool} {shell}");
        }
    }
}
