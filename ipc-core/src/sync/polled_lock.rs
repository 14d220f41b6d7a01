//! A [`RawLock`] that nobody sleeps on: a waiter polls the word (spins,
//! then naps of growing length) instead of marking it contended
//! and sleeping on its futex, so the holder releases it with one plain
//! store where a futex lock needs a locked swap (to learn whether to wake
//! anyone). That swap, a full barrier, cost each end of a pipe ~6 ns per
//! message. For locks taken on every call and contended only by accident:
//! a pipe's end locks, which two users of one end (forked copies) contend
//! for only when they use it at once.
//!
//! The word, its owner record and the recovery from a dead holder are
//! `RawLock`'s. The holder is judged every [`LIVENESS_SLICE`] of waiting
//! and once more when the deadline passes, so even a wait shorter than a
//! slice takes over from a dead holder (`OwnerDied`) and ends on a word
//! that names a holder no thread of ours can be (`Corrupt`). The price of
//! polling: a waiter may see its lock free up to a nap (at most
//! [`NAP_MAX`]) late, where a futex waiter is woken at once; these locks
//! are contended only by accident (or while a large message streams).

use std::time::{Duration, Instant};

use super::raw_lock::{Acquired, RawLock, Suspicion, LIVENESS_SLICE};
use crate::atomic::spin_hint;

/// Looks at a held word with a spin-loop hint between them, before naps
/// (a holder of an end lock on another core lets go within a message's
/// time); none under loom, where only yields let the holder run.
const SPINS: u32 = if cfg!(loom) { 0 } else { 200 };
/// The longest nap between two looks at a held word.
const NAP_MAX: Duration = Duration::from_millis(1);

/// A lock word that waiters poll; see the module docs.
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct PolledLock(RawLock);

impl PolledLock {
    #[cfg(loom)]
    pub fn new() -> Self {
        PolledLock(RawLock::new())
    }

    /// Blocks until acquired, the holder is found dead, the word is found
    /// impossible, or `deadline`.
    #[inline]
    pub fn lock(&self, deadline: Option<Instant>) -> Acquired {
        if self.0.try_lock() {
            return Acquired::Clean;
        }
        self.lock_contended(deadline)
    }

    #[cold]
    fn lock_contended(&self, deadline: Option<Instant>) -> Acquired {
        let mut spins = 0;
        let mut nap = Duration::from_micros(2);
        let mut suspicion = Suspicion::default();
        let mut judged = Instant::now();
        loop {
            let w = self.0.peek();
            if w == 0 {
                if self.0.try_lock() {
                    return Acquired::Clean;
                }
                continue;
            }
            if spins < SPINS {
                spins += 1;
                spin_hint();
                continue;
            }
            let now = Instant::now();
            let late = deadline.is_some_and(|d| now >= d);
            if late || now.duration_since(judged) >= LIVENESS_SLICE {
                if let Some(a) = self.0.judge(w, 0, &mut suspicion) {
                    return a;
                }
                if late {
                    return Acquired::Busy;
                }
                judged = now;
            }
            #[cfg(loom)]
            loom::thread::yield_now();
            #[cfg(not(loom))]
            std::thread::sleep(deadline.map_or(nap, |d| nap.min(d - now)));
            nap = (nap * 2).min(NAP_MAX);
        }
    }

    /// One attempt that also takes over a lock whose holder is dead.
    pub fn try_lock_or_recover(&self) -> Acquired {
        self.0.try_lock_or_recover()
    }

    /// Releases the lock; the caller holds it.
    #[inline]
    pub fn unlock(&self) {
        self.0.unlock_unwatched();
    }

    /// Writes `word` into the lock word as a scribbler or a holder that
    /// died would have left it (tests of hostile memory).
    #[cfg(all(test, not(loom)))]
    pub fn plant(&self, word: u32) {
        self.0.plant(word);
    }

    /// Whether anyone holds the lock.
    #[cfg(any(test, loom))]
    pub fn is_locked(&self) -> bool {
        self.0.is_locked()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_polled_lock_hands_over_between_threads_and_times_out_while_held() {
        // SAFETY: all-zero is a valid, unlocked lock word and owner record.
        let lock: PolledLock = unsafe { std::mem::zeroed() };
        let l = Arc::new((lock, std::sync::Mutex::new(0u32)));
        assert_eq!(l.0.lock(None), Acquired::Clean);
        let t = {
            let l = l.clone();
            std::thread::spawn(move || {
                let soon = Instant::now() + Duration::from_millis(20);
                assert_eq!(l.0.lock(Some(soon)), Acquired::Busy);
                assert_eq!(l.0.lock(None), Acquired::Clean);
                *l.1.lock().unwrap() += 1;
                l.0.unlock();
            })
        };
        std::thread::sleep(Duration::from_millis(60));
        *l.1.lock().unwrap() += 1;
        l.0.unlock();
        t.join().unwrap();
        assert_eq!(*l.1.lock().unwrap(), 2);
        assert!(!l.0.is_locked());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn polled_mutual_exclusion() {
        super::super::raw_lock::loom_tests::two_threads_exclude(
            PolledLock::new,
            |l| l.lock(None),
            PolledLock::unlock,
            PolledLock::is_locked,
        );
    }
}
