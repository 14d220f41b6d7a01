//! A futex for the loom model that really sleeps (unlike `ipc_core`'s
//! stand-in, which only yields): `wait` blocks until a `wake` of the same
//! word picks it, so a wake-up the protocol loses leaves the waiter blocked
//! and loom reports a deadlock. Deadlines and time slices are ignored
//! (waits never time out), and there are no spurious wake-ups.
//!
//! As the kernel does, the word is compared under the lock that `wake`
//! takes, after a full barrier (here a SeqCst load), so a wake issued after
//! the word changed cannot slip between the compare and the sleep.

use loom::sync::atomic::{AtomicU32, Ordering};
use loom::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// One sleeper: the address of its word, and whether a `wake` picked it.
struct Waiter {
    word: usize,
    woken: bool,
}

loom::lazy_static! {
    static ref QUEUE: (Mutex<Vec<Waiter>>, Condvar) = (Mutex::new(Vec::new()), Condvar::new());
}

fn addr(word: &AtomicU32) -> usize {
    word as *const AtomicU32 as usize
}

/// Sleeps until woken, unless `word` differs from `expected`.
pub fn wait(word: &AtomicU32, expected: u32, _deadline: Option<Instant>) {
    let (lock, cv) = &*QUEUE;
    let mut q = lock.lock().unwrap();
    if word.load(Ordering::SeqCst) != expected {
        return;
    }
    let me = q.len();
    q.push(Waiter {
        word: addr(word),
        woken: false,
    });
    while !q[me].woken {
        q = cv.wait(q).unwrap();
    }
}

/// As [`wait`]: the slice is ignored.
pub fn wait_slice(w: &AtomicU32, e: u32, d: Option<Instant>, _slice: Duration) {
    wait(w, e, d)
}

/// Wakes at most `n` sleepers of `word`.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    let (lock, cv) = &*QUEUE;
    let mut q = lock.lock().unwrap();
    let mut woken = 0;
    for w in q.iter_mut().filter(|w| w.word == addr(word) && !w.woken) {
        if woken == n as usize {
            break;
        }
        w.woken = true;
        woken += 1;
    }
    cv.notify_all();
    woken
}
