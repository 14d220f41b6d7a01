//! Two programs, one name, with a Manager: the server. Starts a Manager
//! reachable by name that hosts a dict, `tally`, and a lock,
//! `tally-lock`; prints the dict whenever a `manager_client` changed it;
//! on Ctrl-C prints the final dict, stops the manager (which removes its
//! regions) and says that `/dev/shm` holds nothing of its own.
//!
//! `cargo run -p ipc-examples --bin manager_server -- [--name tally-demo]`

use std::time::Duration;

use ipc_core::Error as CoreError;
use ipc_examples::cli::{catch_interrupt, interrupted, Opts};
use ipc_examples::shm;
use ipc_manager::{Error, Manager};

const USAGE: &str = "usage: manager_server [--name NAME]
  --name  the manager's name (default tally-demo), as given to manager_client";

/// The manager's name unless `--name` is given (no '.' allowed).
const DEFAULT_NAME: &str = "tally-demo";

fn main() {
    ipc_core::init();
    let o = Opts::from_env_or_exit(&["--name"], USAGE);
    let name = o.get_or_exit("--name", DEFAULT_NAME.to_string(), USAGE);
    let pid = std::process::id();
    // Before the manager's server process is forked, so that it inherits
    // the handler: Ctrl-C in this terminal reaches it too, and it should
    // be stopped by us, cleanly, not killed.
    if let Err(e) = catch_interrupt() {
        eprintln!("manager_server {pid}: cannot catch Ctrl-C ({e})");
    }
    match serve(pid, &name) {
        Ok(()) => {}
        Err(Error::Core(CoreError::AlreadyExists { .. })) => {
            eprintln!(
                "manager_server {pid}: a manager named {name:?} is already running; pick another --name"
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("manager_server {pid}: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "manager_server {pid}: stopped the manager; {}",
        shm::report(&[&name])
    );
}

fn serve(pid: u32, name: &str) -> ipc_manager::Result<()> {
    let mgr = Manager::start_named(name)?;
    let tally = mgr.named("tally").dict::<String, u64>()?;
    let lock = mgr.named("tally-lock").lock()?;
    println!(
        "manager_server {pid}: manager {name:?} is up (server process {}), hosting dict \"tally\" and lock \"tally-lock\"",
        mgr.server_pid().unwrap_or(0)
    );
    let arg = if name == DEFAULT_NAME {
        String::new()
    } else {
        format!(" -- --name {name}")
    };
    println!(
        "manager_server {pid}: connect with `cargo run -p ipc-examples --bin manager_client{arg}`; Ctrl-C here stops it"
    );
    // Read under the lock too, so we never print a half-done update.
    let read = || {
        let _g = lock
            .acquire()
            .or_else(|e| e.into_guard().ok_or(CoreError::Timeout))?;
        tally.items()
    };
    let mut last = Vec::new();
    while !interrupted() {
        let now = read()?;
        if now != last {
            println!("manager_server {pid}: tally is now {}", show(&now));
            last = now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "manager_server {pid}: Ctrl-C; final tally {}",
        show(&read()?)
    );
    drop((tally, lock));
    // The last handle of the process that started it: the server stops
    // and removes every region it owned.
    drop(mgr);
    Ok(())
}

/// `{"total": 3, "client-12": 3}`, in insertion order.
fn show(items: &[(String, u64)]) -> String {
    let body: Vec<String> = items.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
    format!("{{{}}}", body.join(", "))
}
