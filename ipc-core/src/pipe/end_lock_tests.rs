//! A pipe's end locks in hostile memory: a dead holder is taken over and a
//! garbage word is `Corrupt`, even within waits shorter than a liveness
//! slice, and a garbage push lock never wedges a receiver mid-message.

use std::sync::mpsc;
use std::time::Duration;

use super::*;

const SHORT: Duration = Duration::from_millis(20);
/// A tid above any Linux thread id.
const GARBAGE: u32 = 0x7fff_fff0;

/// The tid of a thread that has exited.
fn dead_tid() -> u32 {
    std::thread::spawn(crate::sys::proc::tid).join().unwrap()
}

fn push_lock(c: &Connection) -> &PolledLock {
    &c.tx().unwrap().header().push_lock.0
}

fn pop_lock(c: &Connection) -> &PolledLock {
    &c.rx().unwrap().header().pop_lock.0
}

#[test]
fn a_dead_end_lock_holder_is_taken_over_even_by_short_timeouts() {
    let (a, b) = Pipe::new(true).unwrap();
    a.send(&7u64).unwrap();
    pop_lock(&b).plant(dead_tid());
    assert_eq!(b.recv_timeout::<u64>(SHORT).unwrap(), 7);
    push_lock(&a).plant(dead_tid());
    a.send_bytes_timeout(&[1, 2, 3], SHORT).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), [1, 2, 3]);
}

#[test]
fn a_garbage_end_lock_word_ends_short_and_unbounded_calls_with_corrupt() {
    let (a, b) = Pipe::new(true).unwrap();
    push_lock(&a).plant(GARBAGE);
    assert!(matches!(
        a.send_bytes_timeout(&[1], SHORT),
        Err(Error::Corrupt(_))
    ));
    assert!(matches!(a.send_bytes(&[1]), Err(Error::Corrupt(_))));
    b.send(&5u8).unwrap();
    pop_lock(&a).plant(GARBAGE);
    assert!(matches!(
        a.recv_timeout::<u8>(SHORT),
        Err(Error::Corrupt(_))
    ));
    assert!(matches!(a.recv::<u8>(), Err(Error::Corrupt(_))));
}

#[test]
fn a_garbage_push_lock_mid_message_does_not_wedge_the_receiver() {
    let (r, w) = Pipe::builder()
        .duplex(false)
        .capacity(64 << 10)
        .build()
        .unwrap();
    // Nobody receives yet: the sender stops mid-message at its deadline.
    let big = vec![9u8; 1 << 20];
    assert!(matches!(
        w.send_bytes_timeout(&big, Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    push_lock(&w).plant(GARBAGE);
    let (done, got) = mpsc::channel();
    std::thread::spawn(move || {
        // The partial message is discarded (no sender can hold a garbage
        // word), then the wait for another ends at its deadline.
        let r = r.recv_timeout::<Vec<u8>>(Duration::from_millis(200));
        let _ = done.send(format!("{r:?}"));
    });
    let r = got
        .recv_timeout(Duration::from_secs(20))
        .expect("the receiver is wedged");
    assert_eq!(r, "Err(Timeout)");
}
