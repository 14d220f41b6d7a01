//! Handles sent to another process and dropped by their sender at once
//! (issue 14, item 17): the receiver still opens and uses them, and a
//! pipe's peer still sees `PeerClosed` once the real last holder is gone.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::pipe::{Connection, Pipe};
use ipc_core::queue::Queue;
use ipc_core::Error;

#[test]
fn a_connection_sent_through_a_queue_works_after_its_sender_drops_it() {
    let q = Queue::<Connection>::new(4).unwrap();
    // The child exists before the pipe does: it can only have the end it
    // is sent.
    let kid = fork_with(&q, |q| {
        let Ok(c) = q.get_timeout(Duration::from_secs(20)) else {
            return 2;
        };
        // Give the sender time to drop its copy for certain.
        std::thread::sleep(Duration::from_millis(200));
        if c.send(&42u32).is_err() {
            return 3;
        }
        match c.recv_timeout::<u32>(Duration::from_secs(20)) {
            Ok(7) => 0,
            _ => 4,
        }
    });
    let (a, b) = Pipe::new(true).unwrap();
    q.put(&b).unwrap();
    drop(b); // at once: before the child can have opened its copy
    assert_eq!(a.recv_timeout::<u32>(Duration::from_secs(20)).unwrap(), 42);
    a.send(&7u32).unwrap();
    join_ok(kid);
    // The child was the last holder of the sent end: its death is seen
    // (well before the sender's keep-alive deadline of 30 s would pass).
    let t0 = Instant::now();
    let r = a.recv_timeout::<u32>(Duration::from_secs(10));
    assert!(
        matches!(r, Err(Error::PeerClosed)),
        "{r:?} after {:?}",
        t0.elapsed()
    );
}

#[test]
fn an_anonymous_queue_sent_and_dropped_at_once_still_opens_for_the_receiver() {
    let q = Queue::<Queue<u64>>::new(4).unwrap();
    let kid = fork_with(&q, |q| {
        let Ok(inner) = q.get_timeout(Duration::from_secs(20)) else {
            return 2;
        };
        std::thread::sleep(Duration::from_millis(200));
        match inner.get_timeout(Duration::from_secs(20)) {
            Ok(99) => 0,
            _ => 3,
        }
    });
    let inner = Queue::<u64>::new(4).unwrap();
    inner.put(&99).unwrap();
    q.put(&inner).unwrap();
    drop(inner);
    join_ok(kid);
}
