//! The lock word shared by `Lock`, `RLock`, `Condition`, `Value` and `Array`:
//! a futex mutex that records its owner so a dead owner is detected.
//!
//! ```text
//! word                      meaning
//! 0                         unlocked
//! tid                       locked by thread `tid`, nobody sleeping
//! tid | CONTENDED           locked by `tid`, waiters may sleep: unlock wakes one
//! ```
//! `owner` holds the packed (tid, start time) of the holder once it has
//! recorded itself, 0 otherwise; it tells a dead holder from a live thread
//! that reused the tid.

use std::time::{Duration, Instant};

use crate::atomic::{spin_hint, AtomicU32, AtomicU64, Ordering};
use crate::sys::futex::{self, WaitResult};
use crate::sys::proc;

/// Bit set in the lock word while waiters may be sleeping.
pub(crate) const CONTENDED: u32 = 1 << 31;
/// The tid part of the lock word (Linux tids are below 2^22).
pub(crate) const TID_MASK: u32 = !CONTENDED;

/// How often a blocked waiter checks whether the holder is still alive.
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(100);

/// How a blocking acquisition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Acquired normally.
    Clean,
    /// Acquired from a holder that died: the protected data may be inconsistent.
    OwnerDied,
    /// The deadline passed (or, for `try_lock`, the lock was busy).
    Busy,
}

/// The lock word in shared memory. All-zero is "unlocked".
#[derive(Debug)]
#[repr(C)]
pub(crate) struct RawLock {
    word: AtomicU32,
    _pad: AtomicU32,
    owner: AtomicU64,
}

impl RawLock {
    #[cfg(loom)]
    pub fn new() -> Self {
        RawLock {
            word: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            owner: AtomicU64::new(0),
        }
    }

    /// One attempt; no syscall.
    #[inline]
    pub fn try_lock(&self) -> bool {
        let me = proc::tid();
        // Acquire: pairs with the Release swap in `unlock`, so the previous
        // holder's writes to the protected data are visible to us.
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.record_owner();
            true
        } else {
            false
        }
    }

    /// One attempt that also takes over a lock whose holder is dead (for
    /// the public `try_acquire`; reads `/proc` only when the lock is held).
    pub fn try_lock_or_recover(&self) -> Acquired {
        if self.try_lock() {
            return Acquired::Clean;
        }
        // Relaxed: the CAS below decides, with Acquire.
        let w = self.word.load(Ordering::Relaxed);
        if w != 0 && self.holder_is_dead(w & TID_MASK) {
            let me = proc::tid() | (w & CONTENDED);
            // Acquire: take over whatever the dead holder published.
            if self
                .word
                .compare_exchange(w, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.record_owner();
                crate::trace::event!(
                    WARN,
                    dead_tid = w & TID_MASK,
                    "lock recovered from a holder that died (OwnerDied)"
                );
                return Acquired::OwnerDied;
            }
        }
        Acquired::Busy
    }

    /// Blocks until acquired, the holder is found dead, or `deadline`.
    #[inline]
    pub fn lock(&self, deadline: Option<Instant>) -> Acquired {
        if self.try_lock() {
            return Acquired::Clean;
        }
        self.lock_contended(deadline)
    }

    #[cold]
    fn lock_contended(&self, deadline: Option<Instant>) -> Acquired {
        let me = proc::tid();
        // Spin briefly on plain loads: a holder on another core often
        // releases within a few hundred nanoseconds.
        for _ in 0..100 {
            // Relaxed: spinning on plain loads; try_lock's CAS decides.
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                if self.try_lock() {
                    return Acquired::Clean;
                }
            } else if w & CONTENDED != 0 {
                break;
            }
            spin_hint();
        }
        loop {
            // Relaxed: a hint; every decision is a CAS.
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Take it as CONTENDED: we cannot know whether others sleep.
                // Acquire: as in `try_lock`.
                if self
                    .word
                    .compare_exchange(0, me | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.record_owner();
                    return Acquired::Clean;
                }
                continue;
            }
            let expected = w | CONTENDED;
            // Relaxed: setting the flag publishes no data; the futex re-checks
            // the word atomically before sleeping.
            if w & CONTENDED == 0
                && self
                    .word
                    .compare_exchange(w, expected, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if futex::wait_slice(&self.word, expected, deadline, LIVENESS_SLICE)
                == WaitResult::TimedOut
            {
                if self.holder_is_dead(expected & TID_MASK) {
                    // Acquire: take over whatever the dead holder published.
                    if self
                        .word
                        .compare_exchange(
                            expected,
                            me | CONTENDED,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        self.record_owner();
                        crate::trace::event!(
                            WARN,
                            dead_tid = expected & TID_MASK,
                            "lock recovered from a holder that died (OwnerDied)"
                        );
                        return Acquired::OwnerDied;
                    }
                    continue;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Acquired::Busy;
                }
            }
        }
    }

    fn record_owner(&self) {
        // Relaxed: the record is advisory (read only by waiters checking
        // liveness, who fall back to the tid in the word when it mismatches).
        self.owner
            .store(proc::current_thread_packed(), Ordering::Relaxed);
    }

    /// Whether the thread `tid`, seen holding the lock, is dead.
    fn holder_is_dead(&self, tid: u32) -> bool {
        if cfg!(loom) {
            return false;
        }
        // Relaxed: see `record_owner`.
        let rec = proc::TaskId::unpack(self.owner.load(Ordering::Relaxed));
        if rec.id == tid {
            !rec.is_alive()
        } else {
            // The holder has not recorded itself yet (or died before doing
            // so): judge by the tid alone.
            !proc::exists(tid)
        }
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub fn is_owned_by_me(&self) -> bool {
        // Relaxed: only this thread can have stored its own tid here, so
        // program order makes that store visible to this load.
        self.word.load(Ordering::Relaxed) & TID_MASK == proc::tid()
    }

    /// Whether anyone holds the lock.
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot for diagnostics.
        self.word.load(Ordering::Relaxed) != 0
    }

    /// Releases the lock. The caller must hold it (checked by the callers
    /// that expose a raw `release`).
    #[inline]
    pub fn unlock(&self) {
        // Relaxed: cleared before the Release swap below, which orders it.
        self.owner.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire CAS of the next holder.
        if self.word.swap(0, Ordering::Release) & CONTENDED != 0 {
            futex::wake(&self.word, 1);
        }
    }
}

impl RawLock {
    /// The lock word and the owner record, for `ipc inspect` (a snapshot).
    #[cfg(not(loom))]
    pub(crate) fn snapshot(&self) -> (u32, u64) {
        // Relaxed (both): diagnostics only; nothing is decided on them.
        (
            self.word.load(Ordering::Relaxed),
            self.owner.load(Ordering::Relaxed),
        )
    }
}

/// Async acquisition (the `tokio` feature): one step at a time, so a task
/// sleeps between steps without holding anything.
#[cfg(all(feature = "tokio", not(loom)))]
impl RawLock {
    /// Takes the lock (or a dead holder's) if it can; otherwise marks it
    /// contended (so its unlock wakes a waiter) and returns the word to
    /// wait on while it does not change.
    pub(crate) fn lock_step(&self) -> Result<Acquired, u32> {
        loop {
            match self.try_lock_or_recover() {
                Acquired::Busy => {}
                a => return Ok(a),
            }
            // Relaxed: a hint; every decision is a CAS.
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Released meanwhile. Take it as CONTENDED: others may sleep.
                // Acquire: as in `try_lock`.
                if self
                    .word
                    .compare_exchange(
                        0,
                        proc::tid() | CONTENDED,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    self.record_owner();
                    return Ok(Acquired::Clean);
                }
                continue;
            }
            // Relaxed: as in `lock_contended`.
            if w & CONTENDED != 0
                || self
                    .word
                    .compare_exchange(w, w | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return Err(w | CONTENDED);
            }
        }
    }

    /// The futex word.
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Whether the lock is held by a thread that is dead (reads `/proc`).
    pub(crate) fn holder_dead(&self) -> bool {
        // Relaxed: a hint for the waiter thread; `lock_step` decides.
        let w = self.word.load(Ordering::Relaxed);
        w != 0 && self.holder_is_dead(w & TID_MASK)
    }

    /// Passes a wake-up on to another waiter.
    pub(crate) fn wake_one(&self) {
        futex::wake(&self.word, 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    #[test]
    fn mutual_exclusion() {
        loom::model(|| {
            let lock = Arc::new((RawLock::new(), UnsafeCell::new(0u32)));
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let l = lock.clone();
                    loom::thread::spawn(move || {
                        assert_eq!(l.0.lock(None), Acquired::Clean);
                        // SAFETY: the lock gives this thread exclusive access
                        // (that is what the model checks).
                        l.1.with_mut(|p| unsafe { *p += 1 });
                        l.0.unlock();
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            // SAFETY: both threads have been joined.
            assert_eq!(lock.1.with(|p| unsafe { *p }), 2);
            assert!(!lock.0.is_locked());
        });
    }
}
