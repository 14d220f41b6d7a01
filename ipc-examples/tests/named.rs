//! Two programs, one name: the built `jobs_server`, `jobs_worker`,
//! `manager_server` and `manager_client` binaries, run as separate
//! programs that meet only by the name of their regions (each test uses
//! its own name, so tests can run in parallel).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_examples::shm::leftovers;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Generous: the machine may be loaded; no test relies on a short time.
const PATIENCE: Duration = Duration::from_secs(60);

type Lines = Arc<Mutex<Vec<String>>>;

/// A demo program running as a child of the test, its output collected
/// line by line as it comes. Killed and reaped if the test fails early.
struct Prog {
    what: String,
    child: Child,
    out: Lines,
    err: Lines,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn collect(from: impl Read + Send + 'static) -> (Lines, JoinHandle<()>) {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let t = std::thread::spawn(move || {
        for l in BufReader::new(from).lines() {
            match l {
                Ok(l) => sink.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
    (lines, t)
}

impl Prog {
    fn start(exe: &str, args: &[&str]) -> Prog {
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec the child only calls signal(2),
        // which is async-signal-safe: Ctrl-C (SIGINT) must act as in a
        // terminal even if the test runner ignores it.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start the program");
        let (out, t1) = collect(child.stdout.take().unwrap());
        let (err, t2) = collect(child.stderr.take().unwrap());
        let name = exe.rsplit('/').next().unwrap_or(exe);
        Prog {
            what: format!("{name} {}", args.join(" ")),
            child,
            out,
            err,
            readers: vec![t1, t2],
            status: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn output(&self) -> String {
        format!(
            "--- {} (pid {}) stdout:\n{}\n--- stderr:\n{}",
            self.what,
            self.pid(),
            self.out.lock().unwrap().join("\n"),
            self.err.lock().unwrap().join("\n")
        )
    }

    /// Waits for a line of stdout containing `needle`; returns it.
    fn wait_line(&self, needle: &str) -> String {
        self.wait_line_with(&[needle])
    }

    /// Waits for a line of stdout containing all of `needles`; returns it.
    fn wait_line_with(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found = self
                .out
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| needles.iter().all(|n| l.contains(n)).then(|| l.clone()));
            if let Some(l) = found {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needles:?} within {PATIENCE:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid() as i32), sig).expect("kill");
    }

    /// Waits for the program to exit; returns its status and stdout lines.
    fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("did not exit within {PATIENCE:?}\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.status = Some(status);
        for t in self.readers.drain(..) {
            let _ = t.join();
        }
        (status, self.out.lock().unwrap().clone())
    }

    /// [`finish`](Prog::finish), asserting a successful exit.
    fn finish_ok(&mut self) -> Vec<String> {
        let (status, lines) = self.finish();
        assert!(status.success(), "failed: {status:?}\n{}", self.output());
        lines
    }
}

impl Drop for Prog {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes what a failed test left under its name (a passing test has
/// already checked that nothing is left).
struct Sweep(String);

impl Drop for Sweep {
    fn drop(&mut self) {
        for f in leftovers(&self.0) {
            let _ = ipc_core::region::Region::unlink(&f["ipc.".len()..]);
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A base name unique to this test run (no '.': it may name a Manager).
fn unique(tag: &str) -> (String, Sweep) {
    let n = format!(
        "test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    (n.clone(), Sweep(n))
}

/// The number after `job #` in a line.
fn job_id(line: &str) -> u32 {
    let rest = &line[line.find("job #").expect("a job line") + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("a job number")
}

/// Job numbers of the lines containing `marker`, sorted.
fn jobs_with(lines: &[String], marker: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = lines
        .iter()
        .filter(|l| l.contains(marker))
        .map(|l| job_id(l))
        .collect();
    ids.sort();
    ids
}

fn assert_nothing_left(base: &str, lines: &[String]) {
    assert_eq!(leftovers(base), Vec::<String>::new(), "regions left behind");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("/dev/shm holds nothing of its own")),
        "the last line should say so: {lines:#?}"
    );
}

const SERVER: &str = env!("CARGO_BIN_EXE_jobs_server");
const WORKER: &str = env!("CARGO_BIN_EXE_jobs_worker");

#[test]
fn jobs_every_job_is_done_exactly_once_by_workers_started_before_and_after_the_server() {
    let (base, _sweep) = unique("jobs");
    let mut early = Prog::start(WORKER, &["--name", &base]);
    early.wait_line("no server yet; waiting");
    let mut server = Prog::start(SERVER, &["--name", &base, "--jobs", "20", "--job-ms", "20"]);
    server.wait_line("created ipc.");
    let mut late = Prog::start(WORKER, &["--name", &base]);

    let s = server.finish_ok();
    let all: Vec<u32> = (0..20).collect();
    assert_eq!(jobs_with(&s, "done by worker"), all, "{s:#?}");
    assert!(
        s.iter().any(|l| l.contains(
            "all 20 jobs accounted for: 20 done, 0 lost; the counter the workers bump says 20"
        )),
        "{s:#?}"
    );
    assert!(!s.iter().any(|l| l.contains("lost:")), "{s:#?}");
    // Each job ran once: the workers' own reports, together, are 0..20
    // with no repeat.
    let mut by_workers = Vec::new();
    for w in [&mut early, &mut late] {
        let lines = w.finish_ok();
        by_workers.extend(jobs_with(&lines, " done: "));
        assert!(lines.iter().any(|l| l.contains("the stop event is set")));
        assert!(lines.iter().any(|l| l.contains("created no region")));
    }
    by_workers.sort();
    assert_eq!(by_workers, all);
    assert_nothing_left(&base, &s);
}

/// A worker killed by `sig` in the middle of a job: the server names the
/// job it lost and the other worker does all the others.
fn a_killed_worker_loses_only_its_job(sig: Signal) {
    let (base, _sweep) = unique("lose");
    // This worker dawdles 60 s on each job: it is surely mid-job when killed.
    let mut doomed = Prog::start(WORKER, &["--name", &base, "--sleep-ms", "60000"]);
    doomed.wait_line("no server yet; waiting");
    let mut server = Prog::start(SERVER, &["--name", &base, "--jobs", "8", "--job-ms", "20"]);
    let lost = job_id(&doomed.wait_line("started"));
    doomed.signal(sig);
    let (status, _) = doomed.finish();
    assert_eq!(status.signal(), Some(sig as i32), "{}", doomed.output());
    let mut rescuer = Prog::start(WORKER, &["--name", &base]);

    let s = server.finish_ok();
    let d = doomed.pid();
    assert!(
        s.iter().any(|l| l.contains(&format!(
            "worker {d} died during job #{lost}: job #{lost} is lost"
        ))),
        "{s:#?}"
    );
    let rest: Vec<u32> = (0..8).filter(|&j| j != lost).collect();
    assert_eq!(jobs_with(&s, "done by worker"), rest, "{s:#?}");
    assert!(
        s.iter().any(|l| l.contains(&format!(
            "all 8 jobs accounted for: 7 done, 1 lost: #{lost} (worker {d} died during it)"
        ))),
        "{s:#?}"
    );
    assert_eq!(jobs_with(&rescuer.finish_ok(), " done: "), rest);
    assert_nothing_left(&base, &s);
}

#[test]
fn jobs_server_reports_the_job_of_a_sigkilled_worker_as_lost_and_finishes_the_rest() {
    a_killed_worker_loses_only_its_job(Signal::SIGKILL);
}

#[test]
fn jobs_server_reports_the_job_of_a_ctrl_c_worker_as_lost_and_finishes_the_rest() {
    a_killed_worker_loses_only_its_job(Signal::SIGINT);
}

#[test]
fn jobs_server_reports_a_job_taken_by_a_process_that_never_wrote_it_on_the_board() {
    let (base, _sweep) = unique("gap");
    let mut server = Prog::start(
        SERVER,
        &[
            "--name",
            &base,
            "--jobs",
            "4",
            "--job-ms",
            "1",
            "--grace-ms",
            "2000",
        ],
    );
    server.wait_line("created ipc.");
    // The test takes a job as a worker dying right after `get` would: the
    // job leaves the queue and appears nowhere on the board.
    let taken = {
        let run = ipc_examples::jobs::Jobs::open(&base).expect("open the run");
        run.jobs.get_timeout(PATIENCE).expect("a job").id
    };
    let mut worker = Prog::start(WORKER, &["--name", &base]);
    let s = server.finish_ok();
    assert!(
        s.iter().any(|l| l.contains(&format!(
            "job #{taken} left the queue but no live worker has it: job #{taken} is lost"
        ))),
        "{s:#?}"
    );
    let rest: Vec<u32> = (0..4).filter(|&j| j != taken).collect();
    assert_eq!(jobs_with(&s, "done by worker"), rest, "{s:#?}");
    assert!(
        s.iter()
            .any(|l| l.contains("all 4 jobs accounted for: 3 done, 1 lost")),
        "{s:#?}"
    );
    assert_eq!(jobs_with(&worker.finish_ok(), " done: "), rest);
    assert_nothing_left(&base, &s);
}

#[test]
fn jobs_worker_without_a_server_gives_up_after_its_bounded_wait() {
    let (base, _sweep) = unique("alone");
    let mut w = Prog::start(WORKER, &["--name", &base, "--wait", "1"]);
    let (status, lines) = w.finish();
    assert_eq!(status.code(), Some(2), "{}", w.output());
    assert!(lines
        .iter()
        .any(|l| l.contains("no server yet; waiting up to 1 s")));
    let err = w.err.lock().unwrap().join("\n");
    assert!(
        err.contains(&format!(
            "gave up after 1 s: no jobs_server named {base:?} appeared"
        )),
        "{err}"
    );
}

#[test]
fn jobs_server_stopped_with_ctrl_c_stops_its_workers_and_removes_its_regions() {
    let (base, _sweep) = unique("intr");
    let mut server = Prog::start(
        SERVER,
        &["--name", &base, "--jobs", "1000", "--job-ms", "20"],
    );
    let mut worker = Prog::start(WORKER, &["--name", &base]);
    server.wait_line("done by worker");
    server.signal(Signal::SIGINT);
    let (status, s) = server.finish();
    assert_eq!(status.code(), Some(130), "{}", server.output());
    assert!(s.iter().any(|l| l.contains("interrupted with")), "{s:#?}");
    let w = worker.finish_ok();
    assert!(
        w.iter().any(|l| l.contains("the stop event is set")),
        "{w:#?}"
    );
    assert_nothing_left(&base, &s);
}

#[test]
fn jobs_server_starts_again_after_a_crash_left_its_regions_behind() {
    let (base, _sweep) = unique("crash");
    let mut server = Prog::start(
        SERVER,
        &["--name", &base, "--jobs", "1000", "--job-ms", "20"],
    );
    let mut worker = Prog::start(WORKER, &["--name", &base]);
    server.wait_line("done by worker");
    server.signal(Signal::SIGKILL);
    server.finish();
    // The worker notices that the server is dead and leaves.
    let (status, _) = worker.finish();
    assert_eq!(status.code(), Some(1), "{}", worker.output());
    assert!(
        worker
            .err
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("died")),
        "{}",
        worker.output()
    );
    // The regions stayed (their creator never removed them). A worker
    // started now finds their server dead and waits for a live one; a new
    // server of the same name clears them with Region::gc() and runs.
    let mut worker = Prog::start(WORKER, &["--name", &base]);
    if !leftovers(&base).is_empty() {
        // (Unless some other program's Region::gc() removed them already.)
        let l = worker.wait_line("waiting");
        assert!(
            l.contains("found the regions of a dead server") || l.contains("no server yet"),
            "{l}"
        );
    }
    let mut again = Prog::start(SERVER, &["--name", &base, "--jobs", "3", "--job-ms", "1"]);
    let s = again.finish_ok();
    assert_eq!(jobs_with(&s, "done by worker"), [0, 1, 2], "{s:#?}");
    worker.finish_ok();
    assert_nothing_left(&base, &s);
}

const MGR_SERVER: &str = env!("CARGO_BIN_EXE_manager_server");
const MGR_CLIENT: &str = env!("CARGO_BIN_EXE_manager_client");

#[test]
fn manager_clients_update_the_dict_under_the_lock_and_the_server_ends_with_the_full_tally() {
    let (name, _sweep) = unique("tally");
    let times = "10";
    let early = Prog::start(MGR_CLIENT, &["--name", &name, "--times", times]);
    early.wait_line("no manager yet; waiting");
    let mut server = Prog::start(MGR_SERVER, &["--name", &name]);
    server.wait_line("is up");
    let mut clients = vec![early];
    for _ in 0..2 {
        clients.push(Prog::start(
            MGR_CLIENT,
            &["--name", &name, "--times", times],
        ));
    }
    let pids: Vec<u32> = clients.iter().map(Prog::pid).collect();
    for c in &mut clients {
        let lines = c.finish_ok();
        assert!(lines.iter().any(|l| l.contains("tally is {")), "{lines:#?}");
    }
    // Every client's updates are in, and the server has printed them:
    // stop it (Ctrl-C).
    let mine: Vec<String> = pids.iter().map(|p| format!("\"client-{p}\": 10")).collect();
    let mine: Vec<&str> = mine.iter().map(String::as_str).collect();
    server.wait_line_with(&mine);
    server.signal(Signal::SIGINT);
    let s = server.finish_ok();
    let last = s
        .iter()
        .find(|l| l.contains("Ctrl-C; final tally"))
        .unwrap_or_else(|| panic!("{s:#?}"));
    // No update was lost to a race: total is the sum of the 3 clients' 10.
    assert!(last.contains("{\"total\": 30, "), "{last}");
    for p in pids {
        assert!(last.contains(&format!("\"client-{p}\": 10")), "{last}");
    }
    assert_eq!(last.matches("client-").count(), 3, "{last}");
    assert_nothing_left(&name, &s);
}
