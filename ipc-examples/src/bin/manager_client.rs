//! Two programs, one name, with a Manager: a client. Connects to a
//! `manager_server` by name (waiting for it, at most `--wait` seconds, if
//! it is not up yet), then `--times` times, under the manager's lock,
//! reads the dict's `total`, writes `total + 1` and its own count; prints
//! the dict. The lock keeps `total` equal to the sum of the clients'
//! counts however many clients run at once. It creates no region.
//!
//! `cargo run -p ipc-examples --bin manager_client -- [--name tally-demo] [--times 3] [--wait 30]`

use std::time::Duration;

use ipc_core::sync::{Lock, LockError, LockGuard};
use ipc_core::Error as CoreError;
use ipc_examples::cli::{wait_for, Opts};
use ipc_manager::{DictProxy, Error, Manager};

const USAGE: &str = "usage: manager_client [--name NAME] [--times N] [--wait SECS]
  --name   the manager's name (default tally-demo), as given to manager_server
  --times  how many updates to make (default 3)
  --wait   how long to wait for the server to appear (default 30)";

fn main() {
    ipc_core::init();
    let o = Opts::from_env_or_exit(&["--name", "--times", "--wait"], USAGE);
    let name = o.get_or_exit("--name", "tally-demo".to_string(), USAGE);
    let times = o.get_or_exit("--times", 3u64, USAGE);
    let wait = o.get_or_exit("--wait", 30u64, USAGE);
    let pid = std::process::id();
    println!("manager_client {pid}: connecting to manager {name:?}");
    let found = wait_for(
        Duration::from_secs(wait),
        // Not there yet: no such manager, or it has not registered its
        // objects yet, or a dead one's leftovers (the next server clears them).
        |e| {
            matches!(
                e,
                Error::Core(CoreError::NotFound { .. }) | Error::ServerGone
            )
        },
        || {
            println!(
                "manager_client {pid}: no manager yet; waiting up to {wait} s for manager_server to start"
            )
        },
        || {
            let mgr = Manager::connect(&name)?;
            let tally = mgr.get::<DictProxy<String, u64>>("tally")?;
            let lock = mgr.get::<Lock>("tally-lock")?;
            Ok((mgr, tally, lock))
        },
    );
    let (_mgr, tally, lock) = match found {
        Ok(f) => f,
        Err(Error::Core(CoreError::Timeout)) => {
            eprintln!(
                "manager_client {pid}: gave up after {wait} s: no manager named {name:?} appeared. \
                 Start one (`cargo run -p ipc-examples --bin manager_server`) or wait longer (--wait SECS)"
            );
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("manager_client {pid}: cannot reach manager {name:?}: {e}");
            std::process::exit(1);
        }
    };
    println!("manager_client {pid}: connected; updating dict \"tally\" under lock \"tally-lock\"");
    if let Err(e) = update(pid, times, &tally, &lock) {
        eprintln!("manager_client {pid}: {e}");
        std::process::exit(1);
    }
    println!("manager_client {pid}: created no region, so /dev/shm holds nothing of its own");
}

fn update(
    pid: u32,
    times: u64,
    tally: &DictProxy<String, u64>,
    lock: &Lock,
) -> ipc_manager::Result<()> {
    let total_key = "total".to_string();
    let mine = format!("client-{pid}");
    for _ in 0..times {
        let _g = hold(pid, lock)?;
        // Read, pause, write: without the lock another client could
        // write between our read and our write, and an update would be lost.
        let total = tally.get(&total_key)?.unwrap_or(0);
        std::thread::sleep(Duration::from_millis(5));
        tally.insert(&total_key, &(total + 1))?;
        let n = tally.get(&mine)?.unwrap_or(0) + 1;
        tally.insert(&mine, &n)?;
        println!(
            "manager_client {pid}: total {total} -> {} (under the lock)",
            total + 1
        );
    }
    let items = {
        let _g = hold(pid, lock)?;
        tally.items()?
    };
    let body: Vec<String> = items.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
    println!("manager_client {pid}: tally is {{{}}}", body.join(", "));
    Ok(())
}

/// Takes the lock; one whose holder died is ours too (it says so).
fn hold(pid: u32, lock: &Lock) -> ipc_core::Result<LockGuard<'_>> {
    match lock.acquire() {
        Ok(g) => Ok(g),
        Err(LockError::OwnerDied(g)) => {
            println!(
                "manager_client {pid}: the lock's last holder died holding it; the tally may be one short"
            );
            Ok(g)
        }
        // Without a deadline, acquire ends only with the lock.
        Err(_) => Err(CoreError::Timeout),
    }
}
