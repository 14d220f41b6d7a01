//! Two programs, one name: the server. Creates the named objects of a run
//! (a `Queue` of jobs, a `Queue` of results, a stop `Event`, a `Value`
//! counter and the worker board; see `ipc_examples::jobs`), feeds the
//! jobs to whatever `jobs_worker`s open them, prints the results, reports
//! the job of any worker that dies mid-job as lost, and when every job is
//! accounted for sets the stop event, removes its regions and says that
//! `/dev/shm` holds nothing of its own.
//!
//! `cargo run -p ipc-examples --bin jobs_server -- [--name jobs-demo] [--jobs 20] [--job-ms 500]`

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ipc_core::region::Region;
use ipc_core::sys::proc::TaskId;
use ipc_core::value::ValueError;
use ipc_core::Error;
use ipc_examples::cli::{catch_interrupt, interrupted, Opts};
use ipc_examples::jobs::{Board, Done, Job, Jobs, Names, Slot, DEFAULT_NAME, GRACE};
use ipc_examples::shm;

const USAGE: &str =
    "usage: jobs_server [--name BASE] [--jobs N] [--job-ms MS] [--capacity N] [--grace-ms MS]
  --name      base name of the run's regions (default jobs-demo): /dev/shm/ipc.BASE.*
  --jobs      how many jobs to hand out (default 20)
  --job-ms    how long each job takes at least (default 500)
  --capacity  jobs queued at a time (default 4)
  --grace-ms  how long a job out of the queue may be held by no live worker before it is
              reported lost (default 5000)";

/// What became of each job.
#[derive(Default)]
struct Ledger {
    total: u32,
    next: u32,
    outstanding: BTreeSet<u32>,
    done: BTreeMap<u32, u32>,
    lost: BTreeMap<u32, String>,
}

impl Ledger {
    fn finished(&self) -> bool {
        self.next == self.total && self.outstanding.is_empty()
    }
}

struct Server {
    pid: u32,
    base: String,
    run: Jobs,
    ledger: Ledger,
    /// Slot index -> worker seen there, to say who joined and who left.
    known: HashMap<usize, TaskId>,
}

fn main() {
    ipc_core::init();
    let o = Opts::from_env_or_exit(
        &["--name", "--jobs", "--job-ms", "--capacity", "--grace-ms"],
        USAGE,
    );
    let base = o.get_or_exit("--name", DEFAULT_NAME.to_string(), USAGE);
    let total = o.get_or_exit("--jobs", 20u32, USAGE);
    let job_ms = o.get_or_exit("--job-ms", 500u32, USAGE);
    let capacity = o.get_or_exit("--capacity", 4usize, USAGE).max(1);
    let grace = Duration::from_millis(o.get_or_exit("--grace-ms", GRACE.as_millis() as u64, USAGE));
    let pid = std::process::id();
    if let Err(e) = catch_interrupt() {
        eprintln!("server {pid}: cannot catch Ctrl-C ({e}); it will leave regions behind");
    }
    let run = match create(pid, &base, capacity) {
        Ok(run) => run,
        Err(Error::AlreadyExists { .. }) => {
            let other = Board::open(&Names::new(&base).board)
                .and_then(|b| b.server())
                .map_or_else(|_| "?".to_string(), |t| t.id.to_string());
            eprintln!(
                "server {pid}: another jobs_server (pid {other}) is running under --name {base}; pick another name"
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("server {pid}: cannot create the regions of {base:?}: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "server {pid}: created ipc.{base}.jobs, .results, .stop, .count and .board; {total} jobs of {job_ms} ms to hand out"
    );
    let mut s = Server {
        pid,
        base,
        run,
        ledger: Ledger {
            total,
            ..Ledger::default()
        },
        known: HashMap::new(),
    };
    let code = match s.serve(job_ms, grace) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("server {pid}: {e}");
            1
        }
    };
    let code = if interrupted() { 130 } else { code };
    s.finish();
    let Server { base, run, .. } = s;
    drop(run); // the creator removes its regions
    println!(
        "server {pid}: removed its regions; {}",
        shm::report(&[&base])
    );
    std::process::exit(code);
}

/// Creates the run's regions. If some exist, a server that crashed may
/// have left them: `Region::gc()` removes regions whose creator is dead
/// and which nobody maps, and we try again. A worker that is looking at
/// them maps them for a moment (to find their server dead), so we keep
/// trying for a couple of seconds before concluding that their server
/// is alive.
fn create(pid: u32, base: &str, capacity: usize) -> ipc_core::Result<Jobs> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut removed = 0;
    loop {
        match Jobs::create(base, capacity) {
            Err(Error::AlreadyExists { .. }) if Instant::now() < deadline => {}
            r => {
                if removed > 0 {
                    println!(
                        "server {pid}: removed {removed} regions left by a crashed run (Region::gc())"
                    );
                }
                return r;
            }
        }
        let prefix = format!("{base}.");
        removed += Region::gc()?
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .count();
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    fn serve(&mut self, job_ms: u32, grace: Duration) -> ipc_core::Result<()> {
        let pid = self.pid;
        let mut waiting_said = false;
        // Jobs out of the queue, with no result and no live holder, and
        // since when that set has been the same.
        let mut unheld: Option<(BTreeSet<u32>, Instant)> = None;
        while !self.ledger.finished() {
            if interrupted() {
                println!(
                    "server {pid}: interrupted with {} of {} jobs accounted for",
                    self.ledger.done.len() + self.ledger.lost.len(),
                    self.ledger.total
                );
                return Ok(());
            }
            self.feed(job_ms)?;
            // The board first, the results second: a worker sends its
            // result before clearing its slot, so a job missing from both
            // reads was really lost.
            let slots = self.run.board.slots()?;
            self.greet(&slots);
            let mut held = BTreeSet::new();
            let mut dead = Vec::new();
            for s in &slots {
                if s.worker.is_alive() {
                    held.extend(s.job);
                } else {
                    dead.push(*s);
                }
            }
            self.drain_results(Duration::from_millis(100))?;
            for s in dead {
                let w = s.worker.id;
                match s.job.filter(|j| self.ledger.outstanding.contains(j)) {
                    Some(j) => {
                        println!("server {pid}: worker {w} died during job #{j}: job #{j} is lost");
                        self.lose(j, format!("worker {w} died during it"));
                    }
                    None => println!("server {pid}: worker {w} died between jobs; nothing lost"),
                }
                self.run.board.free_if(s.index, s.worker)?;
                self.known.remove(&s.index);
            }
            // The gap: a job taken from the queue by a process that died
            // before writing it on the board.
            if self.ledger.next == self.ledger.total && self.run.jobs.is_empty() {
                let now: BTreeSet<u32> =
                    self.ledger.outstanding.difference(&held).copied().collect();
                unheld = match unheld.take() {
                    _ if now.is_empty() => None,
                    Some((prev, since)) if prev == now => {
                        if since.elapsed() >= grace {
                            for &j in &now {
                                println!(
                                    "server {pid}: job #{j} left the queue but no live worker has it: job #{j} is lost"
                                );
                                self.lose(j, "its taker died before writing it down".into());
                            }
                            None
                        } else {
                            Some((prev, since))
                        }
                    }
                    _ => Some((now, Instant::now())),
                };
            }
            // `known` now holds the workers seen alive (a worker may also
            // have joined, and shown up in `known`, during the drain).
            if self.known.is_empty() && !self.ledger.finished() {
                if !waiting_said {
                    println!(
                        "server {pid}: waiting for workers: start some with `cargo run -p ipc-examples --bin jobs_worker{}`",
                        self.name_arg()
                    );
                    waiting_said = true;
                }
            } else {
                waiting_said = false;
            }
        }
        let l = &self.ledger;
        let lost: Vec<String> = l
            .lost
            .iter()
            .map(|(j, why)| format!("#{j} ({why})"))
            .collect();
        let count = match self.run.count.get() {
            // A worker died bumping it: the value read under the lock stands.
            Err(ValueError::OwnerDied(n)) => n,
            r => r?,
        };
        println!(
            "server {pid}: all {} jobs accounted for: {} done, {} lost{}; the counter the workers bump says {count}",
            l.total,
            l.done.len(),
            l.lost.len(),
            if lost.is_empty() {
                String::new()
            } else {
                format!(": {}", lost.join(", "))
            },
        );
        Ok(())
    }

    /// Says which workers joined since the last look at the board.
    fn greet(&mut self, slots: &[Slot]) {
        for s in slots {
            if self.known.get(&s.index) != Some(&s.worker) {
                println!("server {}: worker {} joined", self.pid, s.worker.id);
                self.known.insert(s.index, s.worker);
            }
        }
    }

    fn name_arg(&self) -> String {
        if self.base == DEFAULT_NAME {
            String::new()
        } else {
            format!(" -- --name {}", self.base)
        }
    }

    /// Puts jobs while the queue has room.
    fn feed(&mut self, job_ms: u32) -> ipc_core::Result<()> {
        let l = &mut self.ledger;
        while l.next < l.total {
            match self.run.jobs.try_put(&Job::new(l.next, job_ms)) {
                Ok(()) => {
                    l.outstanding.insert(l.next);
                    l.next += 1;
                }
                Err(Error::Full) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Takes every result there is, waiting at most `first` for the first.
    fn drain_results(&mut self, first: Duration) -> ipc_core::Result<()> {
        let mut r = self.run.results.get_timeout(first);
        loop {
            match r {
                Ok(d) => self.record(d),
                Err(Error::Timeout | Error::Empty) => return Ok(()),
                Err(e) => return Err(e),
            }
            r = self.run.results.try_get();
        }
    }

    fn record(&mut self, d: Done) {
        let pid = self.pid;
        if !self.known.values().any(|w| w.id == d.worker) {
            // It joined and finished a job between two looks at the board.
            if let Ok(slots) = self.run.board.slots() {
                self.greet(&slots);
            }
        }
        let Done {
            id,
            n,
            steps,
            worker,
        } = d;
        let l = &mut self.ledger;
        if l.outstanding.remove(&id) {
            println!(
                "server {pid}: job #{id} done by worker {worker}: collatz({n}) takes {steps} steps"
            );
        } else if l.lost.remove(&id).is_some() {
            println!(
                "server {pid}: job #{id} done by worker {worker} after all (it had been reported lost): collatz({n}) takes {steps} steps"
            );
        } else {
            println!("server {pid}: ignored a second result for job #{id} from worker {worker}");
            return;
        }
        l.done.insert(id, worker);
    }

    fn lose(&mut self, j: u32, why: String) {
        self.ledger.outstanding.remove(&j);
        self.ledger.lost.insert(j, why);
    }

    /// Sets the stop event and gives the workers a moment to leave, so
    /// that none is still working on the regions when their names go.
    fn finish(&mut self) {
        let pid = self.pid;
        self.run.stop.set();
        println!("server {pid}: set the stop event");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let slots = self.run.board.slots().unwrap_or_default();
            for (index, w) in self.known.clone() {
                if !slots.iter().any(|s| s.index == index && s.worker == w) {
                    println!("server {pid}: worker {} left", w.id);
                    self.known.remove(&index);
                }
            }
            let live: Vec<u32> = slots
                .iter()
                .filter(|s| s.worker.is_alive())
                .map(|s| s.worker.id)
                .collect();
            if live.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                println!("server {pid}: workers {live:?} are still there; not waiting longer");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
