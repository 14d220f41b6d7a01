//! `ipc`: look at and clean up the shared-memory regions of `ipc` programs
//! from a shell.
//!
//! ```text
//! ipc ls                       every region of this user in /dev/shm
//! ipc inspect NAME             one region's header and contents
//! ipc gc [--dry-run] [NAME..]  remove stale regions (creator dead, unused)
//! ipc rm NAME [--force]        remove one region
//! ```
//! Every command takes `--json`. Exit codes: 0 success, 1 failure (no
//! such region, an invalid one, a refusal), 2 bad usage.
//!
//! Regions are read through `ipc_core::region` (plain reads of the header,
//! then the same validated `open` every user of the region goes through),
//! so a garbage file is an error message, never a crash.

#[cfg(not(target_os = "linux"))]
compile_error!("ipc-cli supports Linux only: ipc regions live in /dev/shm and use Linux futexes");

mod inspect;
mod list;
mod out;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Look at and clean up the shared-memory regions of ipc programs.
#[derive(Debug, Parser)]
#[command(name = "ipc", version, about, long_about = None)]
struct Cli {
    /// Print JSON instead of text, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every ipc region of this user in /dev/shm: name, kind, size,
    /// creator and whether it is alive, age, and whether it is stale.
    Ls,
    /// Show one region: its header and what it holds (a queue's depth, a
    /// lock's owner, a manager's clients...).
    Inspect {
        /// The region's name (without the `ipc.` prefix).
        name: String,
    },
    /// Remove the stale regions (creator dead and nobody maps or holds
    /// them), printing what was removed.
    Gc {
        /// Print what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only consider these regions (default: all of this user's).
        names: Vec<String>,
    },
    /// Remove one region. A live one (its creator runs, or a process maps
    /// it) is refused without --force.
    Rm {
        /// The region's name (without the `ipc.` prefix).
        name: String,
        /// Remove it even if it is live or not a valid region (processes
        /// that map it keep their mapping).
        #[arg(long)]
        force: bool,
    },
}

/// Why a command failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The region does not exist or is not a valid ipc region.
    #[error("{name}: {source}")]
    Region {
        name: String,
        source: ipc_core::Error,
    },
    /// The command refused to act.
    #[error("{name}: {reason}")]
    Refused { name: String, reason: String },
    /// The command printed its (partial) result, error included, and
    /// fails.
    #[error("{name}: {reason}")]
    Shown { name: String, reason: String },
    /// A system call failed.
    #[error("{0}")]
    Core(#[from] ipc_core::Error),
    /// `/dev/shm` cannot be listed.
    #[error("cannot list /dev/shm: {0}")]
    Io(std::io::Error),
}

fn main() -> ExitCode {
    // Print to a closed pipe (`ipc ls | head`) ends quietly, as other tools.
    // SAFETY: restoring the default disposition of SIGPIPE before any
    // thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse(); // usage errors exit with 2, --help with 0
    let r = match &cli.command {
        Command::Ls => list::ls(cli.json),
        Command::Inspect { name } => inspect::inspect(name, cli.json),
        Command::Gc { dry_run, names } => list::gc(*dry_run, names, cli.json),
        Command::Rm { name, force } => list::rm(name, *force, cli.json),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json && !matches!(e, Failure::Shown { .. }) {
                println!("{}", serde_json::json!({ "error": e.to_string() }));
            }
            eprintln!("ipc: {e}");
            ExitCode::from(1)
        }
    }
}
