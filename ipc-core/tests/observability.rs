//! The `tracing` feature's events and spans, and the fork-from-a-threaded
//! parent check (issue 12, parts 3 and 4). ipc-core's tests build with the
//! feature on (see its dev-dependencies).
#![cfg(feature = "tracing")]

mod common;
use common::*;

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use ipc_core::process::{set_start_method_strict, Process, StartMethod};
use ipc_core::sync::{Lock, LockError};
use ipc_core::Error;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every event and span recorded in this process and in the children it
/// forks after `record()`, one line each (`LEVEL message field=value ...`
/// or `SPAN name field=value ...`), appended to one memfd whose open file
/// (O_APPEND) the children share.
static LOG: OnceLock<std::fs::File> = OnceLock::new();

struct Recorder;
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={v:?}", f.name());
    }
}

fn append(mut line: String) {
    use std::io::Write;
    line.push('\n');
    if let Some(mut f) = LOG.get() {
        // One write per line: appends from several processes never mix.
        let _ = f.write_all(line.as_bytes());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, a: &Attributes<'_>) -> Id {
        let mut f = Fields(format!("SPAN {}", a.metadata().name()));
        a.record(&mut f);
        append(f.0);
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut f = Fields(e.metadata().level().to_string());
        e.record(&mut f);
        append(f.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Installs the recorder as this process's global subscriber (once).
fn record() {
    LOG.get_or_init(|| {
        // SAFETY: memfd_create with a valid C string and flags.
        let fd = unsafe { libc::memfd_create(c"ipc-trace".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create");
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("/proc/self/fd/{fd}"))
            .expect("reopen the memfd for appending");
        // SAFETY: fd is ours and no longer needed (f has its own).
        unsafe { libc::close(fd) };
        tracing::subscriber::set_global_default(Recorder).expect("subscriber");
        f
    });
}

fn dump() -> String {
    use std::os::fd::AsRawFd;
    let fd = LOG.get().expect("record() first").as_raw_fd();
    std::fs::read_to_string(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

/// Whether a recorded line contains every one of `parts`.
fn logged(parts: &[&str]) -> bool {
    dump().lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// Runs `f` in a forked child, which is single-threaded whatever the test
/// harness runs, and expects it to return 0.
fn in_single_threaded_child(f: impl FnOnce() -> i32) {
    join_ok(fork_child(f));
}

#[test]
fn fork_start_from_a_threaded_parent_is_unsafe_fork_in_strict_mode_only() {
    in_single_threaded_child(|| {
        set_start_method_strict(true);
        // Alone: strict mode lets it fork.
        let mut p = Process::new(|| 1u32);
        if p.start().is_err() || p.join().ok() != Some(1) {
            return 10;
        }
        // With one more thread: refused, and the process can be started
        // later once the thread is gone.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let mut p = Process::new(|| 2u32);
        match p.start() {
            Err(Error::UnsafeFork { threads: 1 }) => {}
            _ => return 11,
        }
        // Not strict: allowed (a warning, for a tracing subscriber).
        let mut s = Process::builder()
            .start_method(StartMethod::Fork)
            .target(|| 3u32);
        set_start_method_strict(false);
        if s.start().is_err() || s.join().ok() != Some(3) {
            return 12;
        }
        drop(tx);
        let _ = t.join();
        set_start_method_strict(true);
        if p.start().is_err() || p.join().ok() != Some(2) {
            return 13;
        }
        0
    });
}

#[test]
fn fork_start_from_a_threaded_parent_warns_through_tracing() {
    in_single_threaded_child(|| {
        record();
        let mut p = Process::builder().name("lonely").target(|| ());
        p.start().unwrap();
        p.join().unwrap();
        if logged(&["multi-threaded parent"]) {
            return 20;
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let mut p = Process::builder().name("crowded").target(|| ());
        p.start().unwrap();
        p.join().unwrap();
        drop(tx);
        let _ = t.join();
        if !logged(&[
            "WARN",
            "multi-threaded parent",
            "\"crowded\"",
            "other_threads=1",
        ]) {
            eprintln!("{}", dump());
            return 21;
        }
        // Spans around start and join, naming the process.
        if !logged(&["SPAN ipc.process.start", "crowded"])
            || !logged(&["SPAN ipc.process.join", "crowded"])
        {
            eprintln!("{}", dump());
            return 22;
        }
        0
    });
}

#[test]
fn lock_recovered_from_a_sigkilled_holder_is_a_warning_event() {
    record();
    let lock = Lock::new().unwrap();
    let l = lock.clone();
    let holder = fork_child(move || {
        std::mem::forget(l.acquire().unwrap());
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    assert!(eventually(Duration::from_secs(10), || lock
        .try_acquire()
        .is_err()));
    kill_and_reap(holder);
    match lock.acquire() {
        Err(LockError::OwnerDied(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        logged(&[
            "WARN",
            "OwnerDied",
            &format!("dead_tid={}", holder.as_raw())
        ]),
        "{}",
        dump()
    );
}

#[test]
fn garbage_collected_regions_are_info_events() {
    record();
    let name = unique("traced-gc");
    let n = name.clone();
    join_ok(fork_child(move || {
        let mut r = ipc_core::region::Region::builder(ipc_core::region::Kind::Raw)
            .name(&n)
            .size(64)
            .create()
            .unwrap();
        r.set_unlink_on_drop(false);
        0
    }));
    assert!(eventually(Duration::from_secs(10), || {
        ipc_core::region::Region::gc_where(|i| i.name == name).unwrap() == [name.clone()]
    }));
    assert!(logged(&["INFO", "stale region", &name]), "{}", dump());
    assert_gone(&name);
}

fn die(code: i32) -> u32 {
    // SAFETY: ends this worker process on the spot, as a crash would.
    unsafe { libc::_exit(code) }
}

#[test]
fn dead_pool_worker_and_broken_executor_are_events_and_tasks_are_spans() {
    record();
    let pool = ipc_core::pool::Pool::new(1).unwrap();
    assert!(matches!(pool.apply(die, 3), Err(Error::WorkerDied { .. })));
    assert!(
        eventually(Duration::from_secs(10), || logged(&[
            "WARN",
            "pool worker died",
            "exit_code=3"
        ]) && logged(&[
            "INFO",
            "pool worker replaced"
        ])),
        "{}",
        dump()
    );
    assert_eq!(pool.apply(|x: u32| x + 1, 1).unwrap(), 2);
    // The task ran in a span, in the worker process.
    assert!(logged(&["SPAN ipc.pool.task", "worker=0"]), "{}", dump());
    drop(pool);

    let ex = ipc_core::pool::ProcessPoolExecutor::new(1).unwrap();
    let f = ex.submit(die, 4).unwrap();
    assert!(f.result(None).is_err());
    assert!(
        eventually(Duration::from_secs(10), || logged(&[
            "ERROR",
            "process pool broken"
        ])),
        "{}",
        dump()
    );
}

// Queue layout, as the crash tests pin it: the process table from payload
// offset 640, the slots from 8832 (a state word `seq << 23 | tag` each).
const PROCS: usize = 640;
const SLOTS: usize = 8832;
const TAG_BITS: u32 = 23;

#[test]
fn queue_slot_recovered_from_a_dead_consumer_is_a_warning_event() {
    record();
    let name = unique("traced-queue");
    let q = ipc_core::queue::Queue::<String>::create(&name, 2).unwrap();
    let raw = ipc_core::region::Region::open(&name, ipc_core::region::Kind::Queue).unwrap();
    let peek = |at: usize| {
        // SAFETY: within the payload (the layout above).
        unsafe { raw.payload().add(at).cast::<u64>().read_volatile() }
    };
    // This process takes tag 1, a child (which exits) tag 2.
    q.put(&"warm".to_string()).unwrap();
    q.get().unwrap();
    let n = name.clone();
    join_ok(fork_child(move || {
        let q = ipc_core::queue::Queue::<String>::open(&n).unwrap();
        q.put(&"child".to_string()).unwrap();
        i32::from(q.get().unwrap() != "child")
    }));
    assert_ne!(peek(PROCS + 8), 0, "layout changed");
    q.put(&"first".to_string()).unwrap(); // position 2, slot 0
    q.put(&"second".to_string()).unwrap(); // position 3, slot 1
                                           // The dead child claimed position 2 as a consumer and died holding it.
                                           // SAFETY: slot 0's state word, within the payload.
    unsafe {
        raw.payload()
            .add(SLOTS)
            .cast::<u64>()
            .write_volatile((5 << TAG_BITS) | 2)
    };
    q.put_timeout(&"third".to_string(), Duration::from_secs(10))
        .unwrap();
    assert!(
        logged(&["WARN", "queue slot recovered from a process that died"]),
        "{}",
        dump()
    );
    assert_eq!(q.get().unwrap(), "second");
}
