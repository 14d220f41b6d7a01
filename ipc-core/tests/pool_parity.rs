//! Python parity of `Pool` and `ProcessPoolExecutor` (issue 14, items 11,
//! 13, 16 and 18): `_async` calls that never block, `shutdown(wait=False)`
//! that stops the workers, results and errors of any size, callbacks on
//! `map_async` and a timeout on the executor's `map`. Real worker processes.

mod common;
use common::*;

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ipc_core::pool::{Pool, ProcessPoolExecutor};
use ipc_core::queue::Queue;
use ipc_core::value::Value;
use ipc_core::Error;

fn square(x: u64) -> u64 {
    x * x
}

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Blocks its worker until the test puts a byte on `q`.
fn hold(q: Queue<u8>) -> u8 {
    q.get().unwrap()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn big_vec(n: u64) -> Vec<u8> {
    pattern(n as usize)
}

fn text(n: usize) -> String {
    (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

fn big_err(n: u64) -> Result<u8, String> {
    Err(text(n as usize))
}

fn big_panic(n: u64) -> u8 {
    std::panic::panic_any(text(n as usize))
}

const TWO_MIB: u64 = 2 << 20;

fn proc_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rfind(')').and_then(|i| s[i + 2..].chars().next()) == Some('Z')
    })
}

/// Runs `f` on another thread; panics if it does not return within 60 s
/// (the `_async` calls used to block for as long as the workers were busy,
/// here for ever).
fn returns<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} blocked its caller while the task queue was full"))
}

// ---- item 11: `_async` submission never blocks ----------------------------

#[test]
fn map_async_returns_while_the_task_queue_is_full() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let release = Queue::<u8>::new(4).unwrap();
    // The only worker is held, so nothing leaves the task queue (1,024
    // slots) until the test lets it go: 50,000 one-item chunks cannot all
    // fit, and map_async must return with most of them still on our side.
    let held = pool.apply_async(hold, release.clone()).unwrap();
    let p = pool.clone();
    let r = returns("map_async", move || {
        p.map_async(square, 0..50_000u64, Some(1)).unwrap()
    });
    assert!(!r.ready() && !held.ready(), "the worker is still held");
    let p = pool.clone();
    let s = returns("starmap_async", move || {
        p.map_async(add, (0..2_000u64).map(|i| (i, 1)), Some(1))
            .unwrap()
    });
    let p = pool.clone();
    let singles = returns("apply_async", move || {
        (0..2_000u64)
            .map(|i| p.apply_async(square, i).unwrap())
            .collect::<Vec<_>>()
    });
    // Closing with most tasks still on our side must still run them all.
    pool.close();
    release.put(&7).unwrap();
    assert_eq!(held.get(Some(Duration::from_secs(60))).unwrap(), 7);
    pool.join().unwrap();
    let v = r.get(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(v.len(), 50_000);
    assert!(v.iter().enumerate().all(|(i, x)| *x == (i * i) as u64));
    assert_eq!(
        s.get(Some(Duration::from_secs(1))).unwrap(),
        (1..=2_000u64).collect::<Vec<_>>()
    );
    for (i, a) in singles.iter().enumerate() {
        assert_eq!(a.get(Some(Duration::from_secs(1))).unwrap(), (i * i) as u64);
    }
}

#[test]
fn imap_and_map_async_do_not_block_behind_a_full_task_queue() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let release = Queue::<u8>::new(4).unwrap();
    let held = pool.apply_async(hold, release.clone()).unwrap();
    let p = pool.clone();
    let filler = returns("map_async", move || {
        p.map_async(square, 0..5_000u64, Some(1)).unwrap()
    });
    // imap submits its first chunks on the first `next`; with the task
    // queue full and the worker held, that submission must not block the
    // caller (the `next` itself waits for the held worker, so it runs on
    // another thread, which the test releases afterwards).
    let p = pool.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut it = p.imap(square, 0..100u64, 1);
        let first = it.next();
        let _ = tx.send(first.map(|r| r.unwrap()));
        let rest: Vec<u64> = it.map(|r| r.unwrap()).collect();
        rest
    });
    release.put(&1).unwrap();
    assert_eq!(held.get(Some(Duration::from_secs(60))).unwrap(), 1);
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), Some(0));
    assert_eq!(
        filler.get(Some(Duration::from_secs(60))).unwrap().len(),
        5_000
    );
}

/// Records that item `x` started.
fn log_start((q, x): (Queue<u64>, u64)) -> u64 {
    q.put(&x).unwrap();
    x
}

#[test]
fn overflowing_tasks_start_in_submission_order() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let release = Queue::<u8>::new(4).unwrap();
    let log = Queue::<u64>::new(4096).unwrap();
    let held = pool.apply_async(hold, release.clone()).unwrap();
    // Half the tasks one by one while the worker is held (most wait on
    // our side), half as one map while the worker drains the queue and
    // the feeder refills it: none may overtake another.
    let (p, l) = (pool.clone(), log.clone());
    let singles = returns("apply_async", move || {
        (0..1500u64)
            .map(|i| p.apply_async(log_start, (l.clone(), i)).unwrap())
            .collect::<Vec<_>>()
    });
    release.put(&1).unwrap();
    let map = pool
        .map_async(
            log_start,
            (1500..3000u64).map(|i| (log.clone(), i)),
            Some(1),
        )
        .unwrap();
    held.get(Some(Duration::from_secs(60))).unwrap();
    assert_eq!(map.get(Some(Duration::from_secs(60))).unwrap().len(), 1500);
    assert!(singles
        .iter()
        .all(|r| r.get(Some(Duration::from_secs(1))).is_ok()));
    let order: Vec<u64> = (0..3000)
        .map(|_| log.get_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    assert_eq!(order, (0..3000u64).collect::<Vec<_>>());
}

#[test]
fn terminate_fails_every_task_still_waiting_on_the_callers_side() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let release = Queue::<u8>::new(4).unwrap();
    let held = pool.apply_async(hold, release.clone()).unwrap();
    let p = pool.clone();
    let r = returns("map_async", move || {
        p.map_async(square, 0..5_000u64, Some(1)).unwrap()
    });
    let one = pool.apply_async(square, 3).unwrap();
    pool.terminate();
    // No task vanishes: each fails its result.
    for res in [
        held.get(Some(Duration::from_secs(5))).map(|_| ()),
        r.get(Some(Duration::from_secs(5))).map(|_| ()),
        one.get(Some(Duration::from_secs(5))).map(|_| ()),
    ] {
        assert!(matches!(res, Err(Error::BrokenPool(_))), "{res:?}");
    }
}

// ---- item 13: shutdown(wait=false) stops the workers ----------------------

#[test]
fn executor_shutdown_without_wait_stops_the_workers_once_the_queue_drains() {
    let ex = ProcessPoolExecutor::new(2).unwrap();
    let pids = ex.pids();
    assert_eq!(pids.len(), 2);
    // More calls than the worker queue takes (processes + 1): some wait
    // in the parent when shutdown is called.
    let fs: Vec<_> = (0..8).map(|_| ex.submit(nap, 100).unwrap()).collect();
    ex.shutdown(false, false);
    assert!(matches!(ex.submit(nap, 1), Err(Error::Closed)));
    for f in &fs {
        assert_eq!(f.result(Some(Duration::from_secs(60))).unwrap(), 100);
    }
    // The executor is still alive (not dropped): its workers exit by
    // themselves, as Python's do once their queue drains.
    assert!(
        eventually(Duration::from_secs(30), || pids
            .iter()
            .all(|p| proc_gone(*p))),
        "workers {pids:?} still alive after shutdown(wait=false)"
    );
    drop(ex);
}

#[test]
fn executor_shutdown_without_wait_with_cancel_futures_cancels_pending_and_stops_the_workers() {
    let ex = ProcessPoolExecutor::new(1).unwrap();
    let pids = ex.pids();
    let running = ex.submit(nap, 300).unwrap();
    let queued = ex.submit(nap, 10).unwrap(); // in the worker queue
    let pending: Vec<_> = (0..5).map(|_| ex.submit(nap, 10).unwrap()).collect();
    ex.shutdown(false, true);
    for f in &pending {
        assert!(f.cancelled(), "a call not yet started is cancelled");
        assert!(matches!(f.result(None), Err(Error::Cancelled)));
    }
    assert_eq!(running.result(Some(Duration::from_secs(60))).unwrap(), 300);
    assert_eq!(queued.result(Some(Duration::from_secs(60))).unwrap(), 10);
    assert!(
        eventually(Duration::from_secs(30), || pids
            .iter()
            .all(|p| proc_gone(*p))),
        "workers {pids:?} still alive after shutdown(wait=false, cancel_futures=true)"
    );
}

/// Reports its pid on the queue, then sleeps (to be killed mid-task).
fn report_and_sleep((q, ms): (Queue<u32>, u64)) -> u64 {
    q.put(&std::process::id()).unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn executor_shutdown_with_wait_returns_once_a_killed_worker_broke_it() {
    let ex = ProcessPoolExecutor::new(2).unwrap();
    let pids = ex.pids();
    let q = Queue::<u32>::new(4).unwrap();
    let victim = ex.submit(report_and_sleep, (q.clone(), 30_000)).unwrap();
    let wpid = q.get_timeout(Duration::from_secs(20)).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wpid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = victim.result(Some(Duration::from_secs(20)));
    assert!(
        matches!(r, Err(Error::WorkerDied { .. }) | Err(Error::BrokenPool(_))),
        "{r:?}"
    );
    // The surviving worker used to wait for work for ever, and shutdown
    // with it.
    let ex = returns("shutdown(wait=true) of a broken executor", move || {
        ex.shutdown(true, false);
        ex
    });
    assert!(pids.iter().all(|p| proc_gone(*p)), "{pids:?}");
    drop(ex);
}

// ---- item 16: results and errors of 1 MiB or more keep their type --------

#[test]
fn pool_delivers_a_2_mib_result_intact() {
    let pool = Pool::new(2).unwrap();
    let v = pool.apply(big_vec, TWO_MIB).unwrap();
    assert!(v == pattern(TWO_MIB as usize), "2 MiB result altered");
    // Several large results in one map (one chunk per item, then one
    // chunk holding all of them: 4 x 600 KiB encoded together).
    let items = [TWO_MIB, 10, TWO_MIB + 1];
    let out = pool.map(big_vec, items, Some(1)).unwrap();
    for (n, o) in items.iter().zip(&out) {
        assert!(*o == pattern(*n as usize), "result of {n} bytes altered");
    }
    let out = pool.map(big_vec, [600 << 10; 4], Some(4)).unwrap();
    assert!(out.iter().all(|o| *o == pattern(600 << 10)));
    let n: usize = pool
        .imap_unordered(big_vec, [TWO_MIB, TWO_MIB], 1)
        .map(|r| r.unwrap().len())
        .sum();
    assert_eq!(n, 2 * TWO_MIB as usize);
    assert_eq!(pool.apply(square, 5).unwrap(), 25, "the pool carries on");
}

#[test]
fn pool_delivers_a_result_larger_than_its_message_cap_in_parts() {
    let pool = Pool::builder()
        .processes(1)
        .max_message_size(64 << 10)
        .build()
        .unwrap();
    let v = pool.apply(big_vec, TWO_MIB).unwrap();
    assert!(v == pattern(TWO_MIB as usize), "2 MiB result altered");
}

#[test]
fn pool_reports_a_2_mib_error_as_the_tasks_own_error() {
    let pool = Pool::new(2).unwrap();
    match pool.apply(big_err, TWO_MIB) {
        Err(Error::TargetFailed { message, .. }) => {
            assert!(message == text(TWO_MIB as usize), "message altered")
        }
        other => panic!("expected TargetFailed, got {:?}", other.map(|_| ())),
    }
    match pool.apply(big_panic, TWO_MIB) {
        Err(Error::Panicked { message, .. }) => {
            assert!(message == text(TWO_MIB as usize), "message altered")
        }
        other => panic!("expected Panicked, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        pool.map(big_err, [1, TWO_MIB], Some(1)),
        Err(Error::TargetFailed { .. })
    ));
    assert_eq!(pool.apply(square, 6).unwrap(), 36, "the pool carries on");
}

#[test]
fn executor_delivers_a_2_mib_result_and_a_2_mib_error_intact() {
    let ex = ProcessPoolExecutor::new(2).unwrap();
    let v = ex.submit(big_vec, TWO_MIB).unwrap();
    let e = ex.submit(big_err, TWO_MIB).unwrap();
    assert!(v.result(Some(Duration::from_secs(60))).unwrap() == pattern(TWO_MIB as usize));
    match e.result(Some(Duration::from_secs(60))) {
        Err(Error::TargetFailed { message, .. }) => assert!(message == text(TWO_MIB as usize)),
        other => panic!("expected TargetFailed, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        e.exception(None).unwrap(),
        Some(Error::TargetFailed { .. })
    ));
    let all: Vec<Vec<u8>> = ex
        .map(big_vec, [TWO_MIB, 3], 1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(all[0] == pattern(TWO_MIB as usize) && all[1] == pattern(3));
    ex.shutdown(true, false);
}

// ---- item 18: callbacks on map_async, timeout on the executor's map -------

fn fails(x: u32) -> Result<u32, String> {
    if x == 3 {
        Err("three is bad".into())
    } else {
        Ok(x)
    }
}

/// Counts its run in `v`, then returns `x` (waiting on `q` first if `x` is 0).
fn counted((v, q, x): (Value<u32>, Queue<u8>, u64)) -> u64 {
    v.update(|n| *n += 1).unwrap();
    if x == 0 {
        q.get().unwrap();
    }
    x
}

#[test]
fn map_async_with_runs_the_callback_once_with_every_result_in_order() {
    let pool = Pool::new(2).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let r = pool
        .map_async_with(
            square,
            0..100u64,
            Some(7),
            move |v| g.lock().unwrap().push(v),
            |e| panic!("unexpected error {e}"),
        )
        .unwrap();
    assert_eq!(r.get(Some(Duration::from_secs(60))).unwrap().len(), 100);
    assert!(eventually(Duration::from_secs(10), || !got
        .lock()
        .unwrap()
        .is_empty()));
    let g = got.lock().unwrap();
    assert_eq!(g.len(), 1, "callback ran once");
    assert_eq!(g[0], (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    drop(g);

    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    pool.map_async_with(
        add,
        [(1, 2), (3, 4)],
        None,
        move |v| g.lock().unwrap().push(v),
        |e| panic!("unexpected error {e}"),
    )
    .unwrap();
    // Nobody waits for this result: the pool's own thread runs the callback.
    assert!(eventually(Duration::from_secs(20), || !got
        .lock()
        .unwrap()
        .is_empty()));
    assert_eq!(*got.lock().unwrap(), vec![vec![3, 7]]);

    let empty = Arc::new(Mutex::new(None));
    let e2 = empty.clone();
    pool.map_async_with(
        square,
        Vec::<u64>::new(),
        None,
        move |v| *e2.lock().unwrap() = Some(v),
        |e| panic!("{e}"),
    )
    .unwrap();
    assert_eq!(*empty.lock().unwrap(), Some(Vec::new()));
}

#[test]
fn map_async_with_runs_the_error_callback_once_with_the_first_error() {
    let pool = Pool::new(2).unwrap();
    let errs = Arc::new(Mutex::new(Vec::new()));
    let e = errs.clone();
    let r = pool
        .map_async_with(
            fails,
            0..10u32,
            Some(1),
            |_| panic!("the map failed: no callback"),
            move |err| e.lock().unwrap().push(err.to_string()),
        )
        .unwrap();
    assert!(matches!(
        r.get(Some(Duration::from_secs(60))),
        Err(Error::TargetFailed { .. })
    ));
    assert!(eventually(Duration::from_secs(10), || !errs
        .lock()
        .unwrap()
        .is_empty()));
    // Every chunk has reported by now; still one call.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        *errs.lock().unwrap(),
        vec!["process \"pool worker\" failed: three is bad".to_owned()]
    );
}

#[test]
fn executor_map_timeout_counts_from_the_original_call_and_cancels_the_rest() {
    let ex = ProcessPoolExecutor::new(1).unwrap();
    let runs = Value::new(0u32).unwrap();
    let release = Queue::<u8>::new(4).unwrap();
    let timeout = Duration::from_secs(3);
    let start = Instant::now();
    // Item 0 holds the worker; the one after it waits in the worker queue;
    // the rest wait in the parent.
    let items = [5u64, 0, 6, 7, 8, 9].map(|x| (runs.clone(), release.clone(), x));
    let mut it = ex.map_timeout(counted, items, 1, timeout).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 5);
    // Past the deadline counted from the call (not from this `next`): the
    // next `next` fails at once; a per-call timeout would wait another 3 s.
    std::thread::sleep(
        (start + timeout + Duration::from_millis(500)).saturating_duration_since(Instant::now()),
    );
    let t = Instant::now();
    assert!(matches!(it.next(), Some(Err(Error::Timeout))));
    assert!(t.elapsed() < timeout, "waited {:?}", t.elapsed());
    assert!(it.next().is_none(), "the iterator ends after its timeout");
    release.put(&1).unwrap();
    ex.shutdown(true, false);
    // The calls not yet handed to the worker were cancelled.
    assert_eq!(runs.get().unwrap(), 3);
    // Without a timeout being hit, map_timeout is map.
    let ex = ProcessPoolExecutor::new(2).unwrap();
    let v: Vec<u64> = ex
        .map_timeout(square, 0..10u64, 3, Duration::from_secs(60))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(v, (0..10u64).map(|x| x * x).collect::<Vec<_>>());
}
