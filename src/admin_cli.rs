//! The two commands that are not the server: `wsrooms backup` and
//! `wsrooms restore`. `wsrooms` with no command (only flags, or none) runs
//! the server as always, parsed by `config`; a first argument `backup` or
//! `restore` comes here instead, with a command line of its own. The work
//! itself is `store::copy`; this module parses, shows progress on a
//! terminal and prints the one-line result.
//!
//! ```text
//! wsrooms backup --data-file FILE COPY [--force]
//! wsrooms restore COPY --data-file FILE
//! ```
//!
//! Each prints one line on standard output and exits 0 when done, or one
//! line on standard error and exits 2 when it refused or failed (nothing
//! was replaced then).

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::store::copy::{self, Copied, Progress};

/// The command names this module answers.
pub const COMMANDS: [&str; 2] = ["backup", "restore"];

/// `wsrooms backup …` / `wsrooms restore …`.
#[derive(Debug, Parser)]
#[command(name = "wsrooms", about = "Copies of a wsrooms data file")]
enum Admin {
    /// Copies a data file to COPY (mode 0600), also while a server is
    /// using it: the copy is the file as it was when the backup began.
    Backup {
        /// The data file to copy (the server's --data-file).
        #[arg(long, env = "WSROOMS_DATA_FILE", value_name = "FILE")]
        data_file: PathBuf,
        /// Where the copy goes.
        #[arg(value_name = "COPY")]
        copy: PathBuf,
        /// Replace COPY if it exists (by default an existing COPY is refused),
        /// with the -wal and -journal left beside it; a COPY a wsrooms is
        /// using is refused
        #[arg(long)]
        force: bool,
    },
    /// Puts COPY in place of the data file, with a new epoch (open pages
    /// then show their room afresh). No server may be running on FILE.
    Restore {
        /// A copy made by `wsrooms backup` (or any copy of a data file).
        #[arg(value_name = "COPY")]
        copy: PathBuf,
        /// The data file to replace (the server's --data-file).
        #[arg(long, env = "WSROOMS_DATA_FILE", value_name = "FILE")]
        data_file: PathBuf,
    },
}

/// True when the command line names one of [`COMMANDS`] first.
pub fn is_admin(args: &[OsString]) -> bool {
    args.get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| COMMANDS.contains(&a))
}

/// Runs `wsrooms backup …` or `wsrooms restore …`.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let admin = match Admin::try_parse_from(args) {
        Ok(admin) => admin,
        Err(e) => e.exit(),
    };
    let started = Instant::now();
    let mut meter = Meter::new();
    let result = match &admin {
        Admin::Backup {
            data_file,
            copy,
            force,
        } => copy::backup(data_file, copy, *force, &mut |p| meter.show(p)),
        Admin::Restore { copy, data_file } => {
            copy::restore(copy, data_file, &mut |p| meter.show(p))
        }
    };
    meter.finish();
    match result {
        Ok(copied) => {
            println!("wsrooms: {}", summary(&admin, &copied, started));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wsrooms: {e}");
            ExitCode::from(2)
        }
    }
}

/// The one line said when a copy is done.
fn summary(admin: &Admin, copied: &Copied, started: Instant) -> String {
    let size = format!(
        "{} pages, {:.1} MiB, in {:.2} s",
        copied.pages,
        copied.bytes as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64()
    );
    match admin {
        Admin::Backup {
            data_file, copy, ..
        } => format!(
            "backed up {data_file:?} to {copy:?}: {size}, epoch {}",
            epoch_text(copied.epoch)
        ),
        Admin::Restore { copy, data_file } => format!(
            "restored {copy:?} into {data_file:?}: {size}, new epoch {} (the copy's was {})",
            epoch_text(copied.epoch),
            epoch_text(copied.old_epoch)
        ),
    }
}

/// An epoch as `welcome` shows it: 16 hex digits.
fn epoch_text(epoch: Option<u64>) -> String {
    epoch.map_or_else(|| "none yet".into(), |e| format!("{e:016x}"))
}

/// Progress on standard error, only when it is a terminal: one line
/// rewritten in place, at most once per percent.
struct Meter {
    terminal: bool,
    shown: Option<u64>,
}

impl Meter {
    fn new() -> Meter {
        Meter {
            terminal: std::io::stderr().is_terminal(),
            shown: None,
        }
    }

    fn show(&mut self, p: Progress) {
        let percent = (p.done * 100).checked_div(p.total).unwrap_or(100);
        if !self.terminal || self.shown == Some(percent) {
            return;
        }
        self.shown = Some(percent);
        let mut err = std::io::stderr();
        let _ = write!(err, "\rcopying: {percent:3}% of {} pages", p.total);
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.shown.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_a_first_word_backup_or_restore_is_a_command() {
        assert!(is_admin(&args(&[
            "wsrooms",
            "backup",
            "--data-file",
            "f",
            "c"
        ])));
        assert!(is_admin(&args(&[
            "wsrooms",
            "restore",
            "c",
            "--data-file",
            "f"
        ])));
        assert!(!is_admin(&args(&["wsrooms"])));
        assert!(!is_admin(&args(&["wsrooms", "--bind", "127.0.0.1:0"])));
        assert!(!is_admin(&args(&["wsrooms", "--data-file", "backup"])));
    }

    #[test]
    fn each_command_takes_its_paths_in_any_order() {
        let backup = Admin::try_parse_from(["wsrooms", "backup", "c.db", "--data-file", "f.db"]);
        assert!(matches!(
            backup,
            Ok(Admin::Backup { ref data_file, ref copy, force: false })
                if data_file.as_os_str() == "f.db" && copy.as_os_str() == "c.db"
        ));
        let restore = Admin::try_parse_from(["wsrooms", "restore", "--data-file", "f.db", "c.db"]);
        assert!(matches!(
            restore,
            Ok(Admin::Restore { ref data_file, ref copy })
                if data_file.as_os_str() == "f.db" && copy.as_os_str() == "c.db"
        ));
    }
}
