//! `process::wait` over sentinels, pipe ends and queues together (Python's
//! `multiprocessing.connection.wait`; issue 14, item 18), across processes.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::pipe::Pipe;
use ipc_core::process::{wait, Process, Waitable};
use ipc_core::queue::{JoinableQueue, Queue, SimpleQueue};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn wait_returns_the_connection_another_process_sent_on() {
    let (a, b) = Pipe::new(true).unwrap();
    let q = Queue::<u32>::new(4).unwrap();
    let mut sleeper = Process::new(|| std::thread::sleep(Duration::from_secs(30)));
    sleeper.start().unwrap();
    let kid = fork_with(&a, |a| {
        std::thread::sleep(Duration::from_millis(100));
        i32::from(a.send(&5u32).is_err())
    });
    drop(a);
    let sentinel = sleeper.sentinel().unwrap();
    let objs: [&dyn Waitable; 3] = [&sentinel, &b, &q];
    let t = Instant::now();
    assert_eq!(wait(&objs, Some(LONG)).unwrap(), vec![1]);
    assert!(t.elapsed() < LONG);
    assert_eq!(b.recv::<u32>().unwrap(), 5);
    join_ok(kid);
    sleeper.kill().unwrap();
    sleeper.join().ok();
}

#[test]
fn wait_returns_the_queue_another_process_put_into() {
    let (a, b) = Pipe::new(true).unwrap();
    let q = Queue::<u32>::new(4).unwrap();
    let jq = JoinableQueue::<u32>::new(4).unwrap();
    let q2 = q.clone();
    let kid = fork_child(move || {
        std::thread::sleep(Duration::from_millis(100));
        i32::from(q2.put(&9).is_err())
    });
    let objs: [&dyn Waitable; 3] = [&b, &jq, &q];
    assert_eq!(wait(&objs, Some(LONG)).unwrap(), vec![2]);
    assert_eq!(q.try_get().unwrap(), 9);
    join_ok(kid);
    drop(a);
}

#[test]
fn wait_returns_the_sentinel_of_a_process_that_ended_among_queues() {
    let q = SimpleQueue::<u32>::new().unwrap();
    let (_a, b) = Pipe::new(true).unwrap();
    let mut quick = Process::new(|| std::thread::sleep(Duration::from_millis(100)));
    quick.start().unwrap();
    let sentinel = quick.sentinel().unwrap();
    let objs: [&dyn Waitable; 3] = [&q, &b, &sentinel];
    assert_eq!(wait(&objs, Some(LONG)).unwrap(), vec![2]);
    quick.join().unwrap();
}

#[test]
fn wait_returns_a_connection_whose_peer_process_died() {
    let (a, b) = Pipe::new(true).unwrap();
    let q = Queue::<u32>::new(4).unwrap();
    let kid = fork_with(&a, |_a| {
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    drop(a);
    std::thread::sleep(Duration::from_millis(50));
    kill_and_reap(kid);
    let objs: [&dyn Waitable; 2] = [&q, &b];
    assert_eq!(wait(&objs, Some(LONG)).unwrap(), vec![1]);
    assert!(matches!(b.recv::<u32>(), Err(ipc_core::Error::PeerClosed)));
}

#[test]
fn wait_returns_a_queue_shut_down_or_closed_by_another_process() {
    let q = Queue::<u32>::new(4).unwrap();
    let r = Queue::<u32>::new(4).unwrap();
    let (q2, r2) = (q.clone(), r.clone());
    let kid = fork_child(move || {
        std::thread::sleep(Duration::from_millis(100));
        q2.shutdown(false);
        std::thread::sleep(Duration::from_millis(100));
        r2.close();
        0
    });
    let objs: [&dyn Waitable; 2] = [&q, &r];
    assert_eq!(wait(&objs, Some(LONG)).unwrap(), vec![0]);
    assert!(eventually(LONG, || wait(&objs, Some(Duration::ZERO))
        .unwrap()
        == vec![0, 1]));
    join_ok(kid);
}

#[test]
fn wait_with_nothing_ready_times_out_empty() {
    let (_a, b) = Pipe::new(true).unwrap();
    let q = Queue::<u32>::new(4).unwrap();
    let objs: [&dyn Waitable; 2] = [&b, &q];
    let t = Instant::now();
    assert!(wait(&objs, Some(Duration::from_millis(100)))
        .unwrap()
        .is_empty());
    assert!(t.elapsed() >= Duration::from_millis(100));
    // Nothing to wait on and no timeout: returns at once instead of for ever.
    let none: [&dyn Waitable; 0] = [];
    assert!(wait(&none, None).unwrap().is_empty());
}

#[test]
fn wait_on_the_sending_end_of_a_one_way_pipe_reports_its_peer_gone() {
    let (r, w) = Pipe::new(false).unwrap();
    assert!(wait(&[&w], Some(Duration::from_millis(20)))
        .unwrap()
        .is_empty());
    let kid = fork_with(&r, |_r| 0);
    drop(r);
    join_ok(kid);
    assert_eq!(wait(&[&w], Some(LONG)).unwrap(), vec![0]);
}

#[test]
fn wait_over_many_queues_at_once_finds_the_one_filled() {
    // More queues than one futex_waitv call takes (128).
    let qs: Vec<Queue<u8>> = (0..150).map(|_| Queue::new(1).unwrap()).collect();
    let last = qs[149].clone();
    let first = qs[3].clone();
    let kid = fork_child(move || {
        std::thread::sleep(Duration::from_millis(100));
        i32::from(last.put(&1).is_err())
    });
    assert_eq!(wait(&qs, Some(LONG)).unwrap(), vec![149]);
    join_ok(kid);
    assert_eq!(qs[149].try_get().unwrap(), 1);
    let kid = fork_child(move || {
        std::thread::sleep(Duration::from_millis(100));
        i32::from(first.put(&1).is_err())
    });
    assert_eq!(wait(&qs, Some(LONG)).unwrap(), vec![3]);
    join_ok(kid);
}
