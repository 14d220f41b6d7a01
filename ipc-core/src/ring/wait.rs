//! Spin-then-sleep waiting on a condition that another process makes true.
//!
//! ```text
//! epoch    bumped by a notifier that saw sleepers; the futex word
//! waiters  threads registered to sleep; notifiers skip the syscall if 0
//! ```
//! Dekker pair: the waiter increments `waiters`, issues a SeqCst fence and
//! re-checks its condition before sleeping; the notifier makes the
//! condition true, issues a SeqCst fence and reads `waiters`. At least one
//! of them sees the other, so no wake-up is lost.

use std::time::{Duration, Instant};

use crate::atomic::{fence, spin_hint, AtomicU32, Ordering};
use crate::sys::futex;

/// A place where threads wait for a condition; see the module docs.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct WaitPoint {
    epoch: AtomicU32,
    waiters: AtomicU32,
}

/// Why [`WaitPoint::wait_until`] stopped without a value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop<E> {
    /// The deadline passed.
    Timeout,
    /// The periodic check reported an error (e.g. the peer died).
    Check(E),
}

impl WaitPoint {
    #[cfg(loom)]
    pub fn new() -> Self {
        WaitPoint {
            epoch: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Called after making the condition true: wakes `n` sleepers if any.
    #[inline]
    pub fn notify(&self, n: u32) {
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above (see the module docs).
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.epoch.fetch_add(1, Ordering::Relaxed);
            futex::wake(&self.epoch, n);
        }
    }

    /// Registers the caller as a sleeper here (for waiting on several
    /// points at once, `process::wait`): returns the futex word and the
    /// value to sleep on. The caller issues a SeqCst fence and re-checks its
    /// condition before sleeping, then calls [`leave`](Self::leave).
    pub fn enter(&self) -> (&AtomicU32, u32) {
        // Relaxed (both): ordered by the caller's SeqCst fence, as in
        // `wait_slow`.
        let e = self.epoch.load(Ordering::Relaxed);
        self.waiters.fetch_add(1, Ordering::Relaxed);
        (&self.epoch, e)
    }

    /// Undoes [`enter`](Self::enter).
    pub fn leave(&self) {
        // Relaxed: a stale count only costs a notifier a needless wake.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Calls `cond` until it yields a value, spinning first and then
    /// sleeping until notified or `deadline`. While asleep it wakes every
    /// `slice` to run `check` (a dead peer turns into `Stop::Check`).
    #[inline]
    pub fn wait_until<T, E>(
        &self,
        mut cond: impl FnMut() -> Option<T>,
        deadline: Option<Instant>,
        slice: Option<Duration>,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<T, Stop<E>> {
        if let Some(v) = cond() {
            return Ok(v);
        }
        self.wait_slow(&mut cond, deadline, slice, &mut check)
    }

    #[cold]
    fn wait_slow<T, E>(
        &self,
        cond: &mut dyn FnMut() -> Option<T>,
        deadline: Option<Instant>,
        slice: Option<Duration>,
        check: &mut dyn FnMut() -> Result<(), E>,
    ) -> Result<T, Stop<E>> {
        #[cfg(loom)]
        let spins = 2;
        #[cfg(not(loom))]
        let spins = crate::tuning::spin_iterations();
        for i in 0..spins {
            if let Some(v) = cond() {
                return Ok(v);
            }
            if i % 256 == 255 && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Stop::Timeout);
            }
            spin_hint();
        }
        loop {
            // Relaxed (both): the SeqCst fence below orders them against
            // the re-check, pairing with the fence in `notify`.
            let e = self.epoch.load(Ordering::Relaxed);
            self.waiters.fetch_add(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if let Some(v) = cond() {
                // Relaxed: a stale count only costs a notifier a needless wake.
                self.waiters.fetch_sub(1, Ordering::Relaxed);
                return Ok(v);
            }
            let r = match slice {
                Some(s) => futex::wait_slice(&self.epoch, e, deadline, s),
                None => futex::wait(&self.epoch, e, deadline),
            };
            // Relaxed: as above.
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            if let Some(v) = cond() {
                return Ok(v);
            }
            if r == futex::WaitResult::TimedOut {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Stop::Timeout);
                }
                check().map_err(Stop::Check)?;
            }
        }
    }
}

/// Async waiting (see `crate::aio::wait_point`): the waiter side of the
/// Dekker pair, split so a task can sleep between its halves.
#[cfg(all(feature = "tokio", not(loom)))]
impl WaitPoint {
    /// Counts the caller as a waiter and returns the epoch to wait on; the
    /// caller then re-checks its condition (the SeqCst fence pairs with
    /// the one in `notify`, as in `wait_slow`) and calls `unregister` once
    /// done waiting.
    pub(crate) fn register(&self) -> u32 {
        // Relaxed (both): ordered by the fence, as in `wait_slow`.
        let e = self.epoch.load(Ordering::Relaxed);
        self.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        e
    }

    /// Undoes `register`.
    pub(crate) fn unregister(&self) {
        // Relaxed: a stale count only costs a notifier a needless wake.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// The futex word notifiers bump.
    pub(crate) fn epoch(&self) -> &AtomicU32 {
        &self.epoch
    }
}
