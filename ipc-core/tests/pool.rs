//! `Pool` and `ProcessPoolExecutor` with real worker processes.

mod common;
use common::*;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc_core::pool::{as_completed, wait, Pool, ProcessPoolExecutor, ReturnWhen};
use ipc_core::queue::Queue;
use ipc_core::value::Value;
use ipc_core::Error;

fn square(x: u64) -> u64 {
    x * x
}

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn fails(x: u32) -> Result<u32, String> {
    if x == 3 {
        Err("three is bad".into())
    } else {
        Ok(x)
    }
}

fn panics(x: u32) -> u32 {
    if x == 2 {
        panic!("two panics");
    }
    x
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Reports its pid on the queue, then sleeps (to be killed mid-task).
fn report_and_sleep((q, ms): (Queue<u32>, u64)) -> u64 {
    q.put(&std::process::id()).unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn count_init(v: Value<u32>) {
    v.update(|x| *x += 1).unwrap();
}

fn put_on_queue((q, x): (Queue<u64>, u64)) -> u64 {
    q.put(&(x * 10)).unwrap();
    x
}

fn proc_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rfind(')').and_then(|i| s[i + 2..].chars().next()) == Some('Z')
    })
}

#[test]
fn apply_map_starmap_and_async_results() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
    let r = pool.apply_async(square, 5).unwrap();
    assert!(r.wait(Some(Duration::from_secs(20))));
    assert!(r.ready());
    assert!(r.successful().unwrap());
    assert_eq!(r.get(Some(Duration::from_secs(1))).unwrap(), 25);
    assert_eq!(r.get(None).unwrap(), 25, "get twice");
    assert_eq!(
        pool.map(square, 0..100u64, None).unwrap(),
        (0..100u64).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(
        pool.map(square, 0..10u64, Some(1)).unwrap(),
        (0..10u64).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(
        pool.map(square, 0..10u64, Some(1000)).unwrap(),
        (0..10u64).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(
        pool.map(square, Vec::<u64>::new(), None).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(pool.map(add, [(1, 2), (3, 4)], None).unwrap(), vec![3, 7]);
    let m = pool.map_async(square, 1..=3u64, None).unwrap();
    let s = pool.map_async(add, [(5, 5)], None).unwrap();
    assert_eq!(m.get(None).unwrap(), vec![1, 4, 9]);
    assert_eq!(s.get(None).unwrap(), vec![10]);
    let slow = pool.apply_async(nap, 500).unwrap();
    assert!(matches!(
        slow.get(Some(Duration::from_millis(10))),
        Err(Error::Timeout)
    ));
    assert!(matches!(slow.successful(), Err(Error::NotStarted)));
    pool.close();
    pool.join().unwrap();
    assert_eq!(slow.get(None).unwrap(), 500, "join waited for queued work");
}

#[test]
fn callbacks_and_error_callbacks() {
    let pool = Pool::new(2).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let (g1, g2) = (got.clone(), got.clone());
    let ok = pool
        .apply_async_with(
            fails,
            1,
            move |v| g1.lock().unwrap().push(format!("ok {v}")),
            |e| panic!("{e}"),
        )
        .unwrap();
    let bad = pool
        .apply_async_with(
            fails,
            3,
            |_| panic!("no"),
            move |e| g2.lock().unwrap().push(format!("err {e}")),
        )
        .unwrap();
    ok.wait(None);
    bad.wait(None);
    assert!(eventually(Duration::from_secs(5), || got
        .lock()
        .unwrap()
        .len()
        == 2));
    let mut v = got.lock().unwrap().clone();
    v.sort();
    assert_eq!(v[0], "err process \"pool worker\" failed: three is bad");
    assert_eq!(v[1], "ok 1");
    assert!(!bad.successful().unwrap());
}

#[test]
fn panicking_and_failing_tasks_fail_only_their_caller() {
    let pool = Pool::new(2).unwrap();
    assert!(
        matches!(pool.apply(panics, 2), Err(Error::Panicked { message, .. }) if message == "two panics")
    );
    assert!(matches!(
        pool.apply(fails, 3),
        Err(Error::TargetFailed { .. })
    ));
    assert!(matches!(
        pool.map(panics, 0..5u32, Some(1)),
        Err(Error::Panicked { .. })
    ));
    let items: Vec<_> = pool.imap(fails, 0..5u32, 1).collect();
    assert!(matches!(items[3], Err(Error::TargetFailed { .. })));
    assert_eq!(items.iter().filter(|r| r.is_ok()).count(), 4);
    assert_eq!(pool.apply(square, 4).unwrap(), 16, "the pool carries on");
}

#[test]
fn imap_is_ordered_and_imap_unordered_follows_completion() {
    let pool = Pool::new(3).unwrap();
    let ordered: Vec<u64> = pool
        .imap(nap, [300u64, 10, 150], 1)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ordered, vec![300, 10, 150]);
    let unordered: Vec<u64> = pool
        .imap_unordered(nap, [300u64, 10, 150], 1)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(unordered, vec![10, 150, 300]);
    // Lazy over a long input, chunked.
    let n: u64 = pool.imap(square, 0..2000u64, 50).map(|r| r.unwrap()).sum();
    assert_eq!(n, (0..2000u64).map(|x| x * x).sum::<u64>());
}

#[test]
fn initializer_runs_once_per_worker() {
    let v = Value::new(0u32).unwrap();
    let pool = Pool::builder()
        .processes(3)
        .initializer(count_init, v.clone())
        .build()
        .unwrap();
    assert_eq!(pool.map(square, 0..30u64, Some(1)).unwrap().len(), 30);
    assert!(eventually(Duration::from_secs(5), || v.get().unwrap() == 3));
    drop(pool);
    assert_eq!(v.get().unwrap(), 3);
}

#[test]
fn max_tasks_per_child_recycles_workers() {
    let pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..6).map(|_| pool.apply(pid, ()).unwrap()).collect();
    let mut distinct = pids.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{pids:?}");
}

#[test]
fn queue_handle_as_a_task_argument() {
    // Python needs a Manager queue for this; an ipc Queue travels as is.
    let q = Queue::<u64>::new(16).unwrap();
    let pool = Pool::new(2).unwrap();
    let r = pool
        .map(put_on_queue, (1..=5u64).map(|x| (q.clone(), x)), Some(1))
        .unwrap();
    assert_eq!(r, vec![1, 2, 3, 4, 5]);
    let mut got: Vec<u64> = (0..5)
        .map(|_| q.get_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, vec![10, 20, 30, 40, 50]);
}

#[test]
fn killed_worker_fails_its_task_within_a_second_and_the_pool_carries_on() {
    let pool = Pool::new(2).unwrap();
    let q = Queue::<u32>::new(4).unwrap();
    let victim = pool
        .apply_async(report_and_sleep, (q.clone(), 30_000))
        .unwrap();
    let others: Vec<_> = (0..20u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    let wpid = q.get_timeout(Duration::from_secs(20)).unwrap();
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wpid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    match victim.get(Some(Duration::from_secs(5))) {
        Err(Error::WorkerDied { pid }) => assert_eq!(pid, u64::from(wpid)),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    for (i, r) in others.iter().enumerate() {
        assert_eq!(
            r.get(Some(Duration::from_secs(20))).unwrap(),
            (i * i) as u64
        );
    }
    // A replacement worker was started.
    assert!(eventually(Duration::from_secs(5), || pool.pids().len()
        == 2
        && !pool.pids().contains(&wpid)));
    assert_eq!(pool.map(square, 0..10u64, None).unwrap().len(), 10);
}

#[test]
fn terminate_with_tasks_in_flight_leaves_no_process() {
    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    assert_eq!(pids.len(), 2);
    let rs: Vec<_> = (0..6)
        .map(|_| pool.apply_async(nap, 10_000).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    pool.terminate();
    assert!(t.elapsed() < Duration::from_secs(2));
    for r in &rs {
        assert!(matches!(
            r.get(Some(Duration::from_secs(1))),
            Err(Error::BrokenPool(_))
        ));
    }
    for p in pids {
        assert!(proc_gone(p), "worker {p} survived terminate");
    }
    assert!(matches!(pool.apply_async(square, 1), Err(Error::Closed)));
}

#[test]
fn join_requires_close() {
    let pool = Pool::new(1).unwrap();
    assert!(matches!(pool.join(), Err(Error::InvalidArgument(_))));
}

#[test]
fn executor_submit_result_map_and_callbacks() {
    let ex = ProcessPoolExecutor::new(2).unwrap();
    let f = ex.submit(square, 12).unwrap();
    assert_eq!(f.result(Some(Duration::from_secs(20))).unwrap(), 144);
    assert!(f.done() && !f.running() && !f.cancelled());
    let seen = Arc::new(Mutex::new(None));
    let s2 = seen.clone();
    f.add_done_callback(move |r| *s2.lock().unwrap() = Some(r.unwrap()));
    assert_eq!(*seen.lock().unwrap(), Some(144), "runs at once when done");
    let bad = ex.submit(panics, 2).unwrap();
    assert!(matches!(bad.result(None), Err(Error::Panicked { .. })));
    assert!(bad.exception(None).unwrap().is_some());
    let m: Vec<u64> = ex
        .map(square, 0..20u64, 3)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(m, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
    ex.shutdown(true, false);
    assert!(matches!(ex.submit(square, 1), Err(Error::Closed)));
}

#[test]
fn executor_cancel_queued_but_not_running() {
    let ex = ProcessPoolExecutor::new(1).unwrap();
    let running = ex.submit(nap, 500).unwrap();
    let queued = ex.submit(nap, 10).unwrap(); // handed to the worker queue
    let pending = ex.submit(nap, 20).unwrap(); // still in the parent
    std::thread::sleep(Duration::from_millis(50));
    assert!(running.running());
    assert!(!running.cancel());
    assert!(
        !queued.cancel(),
        "already handed to a worker: counts as running"
    );
    assert!(pending.cancel());
    assert!(pending.cancelled() && pending.done());
    assert!(matches!(pending.result(None), Err(Error::Cancelled)));
    assert_eq!(running.result(None).unwrap(), 500);
    assert_eq!(queued.result(None).unwrap(), 10);
}

#[test]
fn wait_first_completed_returns_with_the_fastest() {
    let ex = ProcessPoolExecutor::new(3).unwrap();
    let fs = [
        ex.submit(nap, 100).unwrap(),
        ex.submit(nap, 1000).unwrap(),
        ex.submit(nap, 2000).unwrap(),
    ];
    let t = Instant::now();
    let r = wait(&[&fs[0], &fs[1], &fs[2]], None, ReturnWhen::FirstCompleted);
    let took = t.elapsed();
    assert_eq!(r.done, vec![0]);
    assert_eq!(r.not_done, vec![1, 2]);
    assert!(took < Duration::from_millis(800), "took {took:?}");
    let r = wait(
        &[&fs[0], &fs[1], &fs[2]],
        Some(Duration::from_millis(10)),
        ReturnWhen::AllCompleted,
    );
    assert!(!r.not_done.is_empty());
    let r = wait(&[&fs[0], &fs[1], &fs[2]], None, ReturnWhen::AllCompleted);
    assert_eq!(r.done, vec![0, 1, 2]);
}

#[test]
fn as_completed_yields_in_completion_order() {
    let ex = ProcessPoolExecutor::new(3).unwrap();
    let fs = [
        ex.submit(nap, 400).unwrap(),
        ex.submit(nap, 50).unwrap(),
        ex.submit(nap, 200).unwrap(),
    ];
    let order: Vec<usize> = as_completed(&[&fs[0], &fs[1], &fs[2]], None)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(order, vec![1, 2, 0]);
    let slow = ex.submit(nap, 2000).unwrap();
    let mut it = as_completed(&[&slow], Some(Duration::from_millis(50)));
    assert!(matches!(it.next(), Some(Err(Error::Timeout))));
    assert!(it.next().is_none());
}

#[test]
fn executor_breaks_when_a_worker_is_killed() {
    let ex = ProcessPoolExecutor::new(2).unwrap();
    let q = Queue::<u32>::new(4).unwrap();
    let victim = ex.submit(report_and_sleep, (q.clone(), 30_000)).unwrap();
    let other = ex.submit(nap, 30_000).unwrap();
    let wpid = q.get_timeout(Duration::from_secs(20)).unwrap();
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(wpid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = victim.result(Some(Duration::from_secs(5)));
    assert!(
        matches!(r, Err(Error::WorkerDied { .. }) | Err(Error::BrokenPool(_))),
        "{r:?}"
    );
    assert!(matches!(
        other.result(Some(Duration::from_secs(5))),
        Err(Error::BrokenPool(_))
    ));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(ex.submit(square, 1), Err(Error::BrokenPool(_))));
}

#[test]
fn executor_max_tasks_per_child_and_initializer() {
    let v = Value::new(0u32).unwrap();
    let ex = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(1)
        .initializer(count_init, v.clone())
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..3)
        .map(|_| ex.submit(pid, ()).unwrap().result(None).unwrap())
        .collect();
    assert_eq!(
        pids.iter().collect::<std::collections::HashSet<_>>().len(),
        3,
        "{pids:?}"
    );
    ex.shutdown(true, false);
    // Once per worker started: the three that ran a task each, plus the
    // replacement started (eagerly) after the third one retired.
    let n = v.get().unwrap();
    assert!((3..=4).contains(&n), "initializer ran {n} times");
}

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(30));
    x * x
}

fn len(v: Vec<u8>) -> u64 {
    v.len() as u64
}

#[test]
fn close_join_replaces_workers_that_retire_and_finishes_the_queue() {
    // Regression (review): retired workers were not replaced after close.
    let p = Pool::builder()
        .processes(1)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let rs: Vec<_> = (0..4u64)
        .map(|i| p.apply_async(slow_square, i).unwrap())
        .collect();
    p.close();
    p.join().unwrap();
    let out: Vec<u64> = rs
        .iter()
        .map(|r| r.get(Some(Duration::from_secs(5))).unwrap())
        .collect();
    assert_eq!(out, vec![0, 1, 4, 9]);
}

#[test]
fn executor_shutdown_wait_does_not_hang_when_workers_retire_after_max_tasks_per_child() {
    // Regression (review): shutdown(wait) hung with max_tasks_per_child.
    let ex = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let fs: Vec<_> = (0..5u64)
        .map(|i| ex.submit(slow_square, i).unwrap())
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        ex.shutdown(true, false);
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(20)).is_ok(),
        "shutdown hung"
    );
    let out: Vec<u64> = fs
        .iter()
        .map(|f| f.result(Some(Duration::from_secs(1))).unwrap())
        .collect();
    assert_eq!(out, vec![0, 1, 4, 9, 16]);
}

#[test]
fn oversized_argument_is_refused_and_the_executor_keeps_working() {
    // Regression (review): a too-large task leaked its slot and wedged the executor.
    let ex = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_message_size(1 << 20)
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(matches!(
            ex.submit(len, vec![0u8; 2 << 20]),
            Err(Error::MessageTooLarge { .. })
        ));
    }
    assert_eq!(
        ex.submit(len, vec![1u8; 10])
            .unwrap()
            .result(Some(Duration::from_secs(10)))
            .unwrap(),
        10
    );
}

#[test]
fn a_panicking_callback_does_not_break_the_pool() {
    let pool = Pool::new(1).unwrap();
    let r = pool
        .apply_async_with(square, 2, |_| panic!("callback bug"), |_| {})
        .unwrap();
    assert_eq!(r.get(Some(Duration::from_secs(10))).unwrap(), 4);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    pool.close();
    pool.join().unwrap();
}
