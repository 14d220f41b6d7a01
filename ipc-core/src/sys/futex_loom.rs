//! A futex for the `loom` models that really sleeps, so that a wake-up the
//! protocol loses is a deadlock loom reports (a stand-in that only yielded
//! would turn every wait into a spin loop and hide it).
//!
//! - An untimed [`wait`] blocks until a [`wake`] of the same word picks it.
//! - A timed wait (a deadline) may also time out: it gives the other
//!   threads one chance to wake it (a yield), then leaves as `TimedOut`, so
//!   a timeout racing a wake-up is explored. The deadline's value is not
//!   looked at.
//! - Time slices ([`wait_slice`]) are ignored: a liveness poll must not be
//!   what keeps a protocol going.
//! - There are no spurious wake-ups.
//!
//! As the kernel does, the word is compared under the lock that `wake`
//! takes, after a full barrier (a SeqCst load), so a wake issued after the
//! word changed cannot slip between the compare and the sleep.

use std::time::{Duration, Instant};

use loom::sync::{Condvar, Mutex};

use crate::atomic::{AtomicU32, Ordering};

pub use super::futex_common::WaitResult;

/// One sleeper: its ticket, the address of its word, and whether a `wake`
/// picked it.
struct Waiter {
    id: u64,
    word: usize,
    woken: bool,
}

#[derive(Default)]
struct Sleepers {
    next: u64,
    list: Vec<Waiter>,
}

loom::lazy_static! {
    static ref SLEEPERS: (Mutex<Sleepers>, Condvar) = (Mutex::new(Sleepers::default()), Condvar::new());
}

fn addr(word: &AtomicU32) -> usize {
    word as *const AtomicU32 as usize
}

/// Takes sleeper `id` off the list, returning whether a `wake` picked it.
fn leave(s: &mut Sleepers, id: u64) -> bool {
    let i = s.list.iter().position(|w| w.id == id);
    i.is_some_and(|i| s.list.remove(i).woken)
}

/// Sleeps until woken (or, with a deadline, perhaps times out), unless
/// `word` differs from `expected`.
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> WaitResult {
    let (lock, cv) = &*SLEEPERS;
    let mut s = lock.lock().unwrap();
    if word.load(Ordering::SeqCst) != expected {
        return WaitResult::Woken;
    }
    let id = s.next;
    s.next += 1;
    s.list.push(Waiter {
        id,
        word: addr(word),
        woken: false,
    });
    if deadline.is_some() {
        drop(s);
        loom::thread::yield_now();
        let mut s = lock.lock().unwrap();
        return if leave(&mut s, id) {
            WaitResult::Woken
        } else {
            WaitResult::TimedOut
        };
    }
    while !s.list.iter().any(|w| w.id == id && w.woken) {
        s = cv.wait(s).unwrap();
    }
    leave(&mut s, id);
    WaitResult::Woken
}

/// As [`wait`]: the slice is ignored.
pub fn wait_slice(w: &AtomicU32, e: u32, d: Option<Instant>, _slice: Duration) -> WaitResult {
    wait(w, e, d)
}

/// Wakes at most `n` sleepers of `word`; returns how many.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    let (lock, cv) = &*SLEEPERS;
    let mut s = lock.lock().unwrap();
    let mut woken = 0;
    for w in s
        .list
        .iter_mut()
        .filter(|w| w.word == addr(word) && !w.woken)
    {
        if woken == n as usize {
            break;
        }
        w.woken = true;
        woken += 1;
    }
    cv.notify_all();
    woken
}

/// Wakes every sleeper of `word`.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, u32::MAX)
}
