//! Two programs, one name: a worker. Opens the named objects a
//! `jobs_server` created (waiting for it, at most `--wait` seconds, if it
//! is not up yet), writes itself on the board, takes jobs until the stop
//! event is set, and leaves. It creates no region, so it leaves nothing
//! in `/dev/shm`. Killed mid-job (Ctrl-C, SIGKILL), it loses that one job,
//! which the server reports by number.
//!
//! `cargo run -p ipc-examples --bin jobs_worker -- [--name jobs-demo] [--wait 30] [--sleep-ms 0]`

use std::time::Duration;

use ipc_core::value::ValueError;
use ipc_core::Error;
use ipc_examples::cli::{wait_for, Opts};
use ipc_examples::jobs::{Done, Jobs, Names, DEFAULT_NAME};

const USAGE: &str = "usage: jobs_worker [--name BASE] [--wait SECS] [--sleep-ms MS]
  --name      base name of the run's regions (default jobs-demo), as given to jobs_server
  --wait      how long to wait for the server to appear (default 30)
  --sleep-ms  extra time spent on every job, to have time to kill the worker mid-job (default 0)";

fn main() {
    ipc_core::init();
    let o = Opts::from_env_or_exit(&["--name", "--wait", "--sleep-ms"], USAGE);
    let base = o.get_or_exit("--name", DEFAULT_NAME.to_string(), USAGE);
    let wait = o.get_or_exit("--wait", 30u64, USAGE);
    let extra = Duration::from_millis(o.get_or_exit("--sleep-ms", 0u64, USAGE));
    let pid = std::process::id();
    println!("worker {pid}: looking for jobs_server {base:?} (/dev/shm/ipc.{base}.*)");
    let said_dead = std::cell::Cell::new(false);
    let run = wait_for(
        Duration::from_secs(wait),
        |e| matches!(e, Error::NotFound { .. }),
        || println!("worker {pid}: no server yet; waiting up to {wait} s for jobs_server to start"),
        || {
            let run = Jobs::open(&base)?;
            let server = run.board.server()?;
            if server.is_alive() {
                return Ok(run);
            }
            // Leftovers of a crashed server: wait for a live one (which
            // removes them); do not keep them mapped meanwhile.
            if !said_dead.replace(true) {
                println!(
                    "worker {pid}: found the regions of a dead server (pid {}); waiting for a live one",
                    server.id
                );
            }
            Err(Error::NotFound {
                name: Names::new(&base).jobs,
            })
        },
    );
    let run = match run {
        Ok(run) => run,
        Err(Error::Timeout) => {
            eprintln!(
                "worker {pid}: gave up after {wait} s: no jobs_server named {base:?} appeared. \
                 Start one (`cargo run -p ipc-examples --bin jobs_server`) or wait longer (--wait SECS)"
            );
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("worker {pid}: cannot open the regions of {base:?}: {e}");
            std::process::exit(1);
        }
    };
    match work(pid, &run, extra) {
        Ok(done) => {
            println!("worker {pid}: the stop event is set; leaving after {done} jobs");
            println!("worker {pid}: created no region, so /dev/shm holds nothing of its own");
        }
        Err(e) => {
            eprintln!("worker {pid}: {e}");
            std::process::exit(1);
        }
    }
}

/// Why a worker stopped before the stop event.
#[derive(Debug)]
enum Failure {
    Ipc(Error),
    ServerDied(u32),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Ipc(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Ipc(e) => write!(f, "{e}"),
            Failure::ServerDied(pid) => write!(
                f,
                "the server (pid {pid}) died; its regions stay in /dev/shm until Region::gc() \
                 removes them (the next jobs_server does)"
            ),
        }
    }
}

/// Takes jobs until the stop event is set; returns how many it did.
fn work(pid: u32, run: &Jobs, extra: Duration) -> Result<u32, Failure> {
    let server = run.board.server()?;
    if run.stop.is_set() {
        return Ok(0);
    }
    let slot = run.board.register()?;
    println!(
        "worker {pid}: connected to server {}; on the board in slot {slot}",
        server.id
    );
    let gone = || Failure::ServerDied(server.id);
    let mut done = 0;
    let r = loop {
        if run.stop.is_set() {
            break Ok(done);
        }
        if !server.is_alive() {
            break Err(gone());
        }
        let job = match run.jobs.get_timeout(Duration::from_millis(200)) {
            Ok(job) => job,
            Err(Error::Timeout) => continue,
            Err(Error::Closed) => break Ok(done),
            Err(e) => break Err(e.into()),
        };
        // On the board before saying so: a kill after this line loses a
        // job the server can name.
        run.board.start_job(slot, job.id)?;
        println!("worker {pid}: job #{} started: collatz({})", job.id, job.n);
        let steps = job.run(extra);
        let result = Done {
            id: job.id,
            n: job.n,
            steps,
            worker: pid,
        };
        // The counter before the result, so that a server holding every
        // result reads the full count.
        if let Err(e) = run.count.update(|c| *c += 1) {
            if !matches!(e, ValueError::OwnerDied(_)) {
                break Err(Error::from(e).into());
            }
        }
        // The result before clearing the board: see `ipc_examples::jobs`.
        loop {
            match run.results.put_timeout(&result, Duration::from_secs(1)) {
                Ok(()) => break,
                Err(Error::Timeout) if server.is_alive() => {}
                Err(Error::Timeout) => return Err(gone()),
                Err(e) => return Err(e.into()),
            }
        }
        run.board.end_job(slot)?;
        println!("worker {pid}: job #{} done: {steps} steps", job.id);
        done += 1;
    };
    run.board.leave(slot)?;
    r
}
