//! `Queue::shutdown(immediate)` with Python 3.13's semantics (issue 14,
//! item 18), across processes.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::queue::{JoinableQueue, Queue};
use ipc_core::Error;

const LONG: Duration = Duration::from_secs(30);

#[test]
fn shutdown_refuses_puts_and_lets_gets_drain_then_fail_across_processes() {
    let name = unique("shutdown");
    let q = Queue::<u32>::create(&name, 8).unwrap();
    let n = name.clone();
    let producer = fork_child(move || {
        let q = Queue::<u32>::open(&n).unwrap();
        (1..=3).for_each(|i| q.put(&i).unwrap());
        q.shutdown(false);
        i32::from(!matches!(q.put(&4), Err(Error::ShutDown)))
    });
    join_ok(producer);
    assert!(q.is_shut_down() && q.is_closed());
    let n = name.clone();
    let consumer = fork_child(move || {
        let q = Queue::<u32>::open(&n).unwrap();
        let got: Vec<u32> = (0..3).map(|_| q.get().unwrap()).collect();
        let ok = got == vec![1, 2, 3]
            && matches!(q.get(), Err(Error::ShutDown))
            && matches!(q.try_get(), Err(Error::ShutDown))
            && matches!(q.get_timeout(LONG), Err(Error::ShutDown));
        i32::from(!ok)
    });
    join_ok(consumer);
    drop(q);
    assert_gone(&name);
}

#[test]
fn shutdown_wakes_a_getter_blocked_in_another_process() {
    let q = Queue::<u32>::new(2).unwrap();
    let q2 = q.clone();
    let kid = fork_child(move || {
        let t = Instant::now();
        let r = q2.get(); // no timeout: only the shutdown can end it
        i32::from(!(matches!(r, Err(Error::ShutDown)) && t.elapsed() < LONG))
    });
    std::thread::sleep(Duration::from_millis(100));
    q.shutdown(false);
    match wait_exit_within(kid, LONG) {
        nix::sys::wait::WaitStatus::Exited(_, 0) => {}
        s => panic!("blocked getter: {s:?}"),
    }
}

#[test]
fn shutdown_wakes_a_putter_blocked_on_a_full_queue_in_another_process() {
    let q = Queue::<u32>::new(1).unwrap();
    q.put(&0).unwrap();
    let q2 = q.clone();
    let kid = fork_child(move || i32::from(!matches!(q2.put(&1), Err(Error::ShutDown))));
    std::thread::sleep(Duration::from_millis(100));
    q.shutdown(false);
    match wait_exit_within(kid, LONG) {
        nix::sys::wait::WaitStatus::Exited(_, 0) => {}
        s => panic!("blocked putter: {s:?}"),
    }
    // Not immediate: what was queued is still there.
    assert_eq!(q.get().unwrap(), 0);
    assert!(matches!(q.get(), Err(Error::ShutDown)));
}

#[test]
fn immediate_shutdown_empties_the_queue_counts_tasks_done_and_fails_gets_at_once() {
    let jq = JoinableQueue::<u32>::new(8).unwrap();
    (0..5).for_each(|i| jq.put(&i).unwrap());
    assert_eq!(jq.get().unwrap(), 0); // taken, not yet done
    let (jq2, jq3) = (jq.clone(), jq.clone());
    // Blocked in join in another process until the count reaches zero.
    let joiner = fork_child(move || i32::from(!jq2.join_timeout(LONG)));
    let closer = fork_child(move || {
        jq3.shutdown(true);
        0
    });
    join_ok(closer);
    let q = jq.queue();
    assert_eq!(q.len(), 0);
    assert!(matches!(q.get(), Err(Error::ShutDown)));
    assert!(matches!(q.put(&9), Err(Error::ShutDown)));
    assert!(matches!(jq.put(&9), Err(Error::ShutDown)));
    // The four drained items count as done; the one taken is still open.
    assert!(!jq.join_timeout(Duration::from_millis(50)));
    jq.task_done().unwrap();
    join_ok(joiner);
    jq.join();
}

#[test]
fn immediate_shutdown_racing_producers_leaves_nothing_behind() {
    // Producers in other processes put as fast as they can while the queue
    // is shut down immediately: a put that won the race must not leave its
    // message (or its unfinished count) behind after the drain.
    for _ in 0..10 {
        let jq = JoinableQueue::<u64>::new(64).unwrap();
        let kids: Vec<_> = (0..3)
            .map(|_| {
                let jq = jq.clone();
                fork_child(move || loop {
                    match jq.put(&7) {
                        Ok(()) => {}
                        Err(Error::ShutDown) => return 0,
                        Err(_) => return 1,
                    }
                })
            })
            .collect();
        // Keep the queue from staying full, so puts keep racing.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            if jq.get_timeout(Duration::from_millis(5)).is_ok() {
                jq.task_done().unwrap();
            }
        }
        jq.shutdown(true);
        kids.into_iter().for_each(join_ok);
        assert_eq!(jq.queue().len(), 0, "a message survived the shutdown");
        assert!(jq.join_timeout(LONG), "unfinished count left behind");
    }
}

#[test]
fn shutdown_after_close_reports_shut_down_and_close_does_not_undo_it() {
    let q = Queue::<u32>::new(2).unwrap();
    q.close();
    assert!(matches!(q.put(&1), Err(Error::Closed)));
    assert!(!q.is_shut_down());
    q.shutdown(false);
    assert!(matches!(q.put(&1), Err(Error::ShutDown)));
    q.close();
    assert!(q.is_shut_down());
    assert!(matches!(q.try_get(), Err(Error::ShutDown)));
}
