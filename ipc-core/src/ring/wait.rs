//! Spin-then-sleep waiting on a condition that another process makes true,
//! and [`Backoff`], the spin → yield → sleep policy every waiter uses.
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

/// The one spin → yield → sleep policy: a waiter calls [`snooze`]
/// between checks of its condition until [`is_completed`] says the spin
/// and yield budgets are spent, then sleeps on its futex (each caller has
/// its own futex protocol). Like crossbeam's `Backoff` and parking_lot's
/// `SpinWait`, with the budgets chosen by the caller: spinning costs
/// nothing when the other side runs on another core, yielding lets it run
/// when the cores are outnumbered, and sleeping costs a system call each
/// way.
///
/// [`snooze`]: Backoff::snooze
/// [`is_completed`]: Backoff::is_completed
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use ipc_core::Backoff;
/// let ready = AtomicBool::new(false);
/// let mut b = Backoff::new(100, 10);
/// while !ready.load(Ordering::Acquire) && !b.is_completed() {
///     b.snooze();
/// }
/// assert!(b.is_completed()); // nobody set it: now the caller would sleep
/// b.reset();
/// assert!(!b.is_completed());
/// ```
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Backoff {
    step: u32,
    spins: u32,
    yields: u32,
}

impl Backoff {
    /// A policy of `spins` spin-loop hints, then `yields` yields of the
    /// CPU, then sleeping.
    #[inline]
    pub fn new(spins: u32, yields: u32) -> Backoff {
        Backoff {
            step: 0,
            spins,
            yields,
        }
    }

    /// Waits one step: a spin-loop hint while the spin budget lasts, then
    /// a yield while the yield budget lasts, then nothing (the caller
    /// should sleep: see [`is_completed`](Self::is_completed)).
    #[inline]
    pub fn snooze(&mut self) {
        if self.step < self.spins {
            spin_hint();
        } else if self.step - self.spins < self.yields {
            #[cfg(loom)]
            loom::thread::yield_now();
            #[cfg(not(loom))]
            std::thread::yield_now();
        }
        self.step = self.step.saturating_add(1);
    }

    /// Whether both budgets are spent: time to sleep.
    #[inline]
    pub fn is_completed(&self) -> bool {
        self.step >= self.spins.saturating_add(self.yields)
    }

    /// Steps taken so far (for checking a clock every so many steps).
    #[inline]
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Starts over (the condition came true, or the waiter woke up).
    #[inline]
    pub fn reset(&mut self) {
        self.step = 0;
    }
}

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
        // None under loom: a spinner's yield lets the notifier run first,
        // so the model would never reach the sleep (the protocol checked).
        #[cfg(loom)]
        let spins = 0;
        #[cfg(not(loom))]
        let spins = crate::tuning::spin_iterations();
        // Spin only: a queue's or pipe's peer that is about to act runs on
        // another core, or sleeps itself and wakes us.
        let mut backoff = Backoff::new(spins, 0);
        while !backoff.is_completed() {
            if let Some(v) = cond() {
                return Ok(v);
            }
            // Reading the clock costs more than a spin: every 256 steps.
            if backoff.steps() % 256 == 255 && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Stop::Timeout);
            }
            backoff.snooze();
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

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Waits (no deadline, no slice) until it takes one of `tokens`.
    fn take(w: &WaitPoint, tokens: &AtomicU32) {
        let r: Result<(), Stop<()>> = w.wait_until(
            || {
                // As a ring's pop: `None` only when there is nothing to
                // take, never because another taker won a race.
                // Acquire: pairs with the AcqRel add of the giver.
                let mut n = tokens.load(Ordering::Acquire);
                while n > 0 {
                    // AcqRel: as the load above.
                    match tokens.compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => return Some(()),
                        Err(now) => n = now,
                    }
                }
                None
            },
            None,
            None,
            || Ok(()),
        );
        assert_eq!(r, Ok(()));
    }

    /// Gives one token and wakes one sleeper.
    fn give(w: &WaitPoint, tokens: &AtomicU32) {
        // AcqRel: pairs with the taker's Acquire load.
        tokens.fetch_add(1, Ordering::AcqRel);
        w.notify(1);
    }

    /// The Dekker pair of `wait_slow` and `notify`: a waiter that goes to
    /// sleep as the condition comes true is woken (a lost wake-up is a
    /// loom deadlock: the futex stand-in really sleeps).
    #[test]
    fn loom_wait_point_never_loses_the_wake_up() {
        loom::model(|| {
            let (w, t) = (Arc::new(WaitPoint::new()), Arc::new(AtomicU32::new(0)));
            let giver = {
                let (w, t) = (w.clone(), t.clone());
                loom::thread::spawn(move || give(&w, &t))
            };
            take(&w, &t);
            giver.join().unwrap();
        });
    }

    /// Two sleepers and two `notify(1)`s: each wake-up reaches a sleeper
    /// that still needs one, so both take a token.
    #[test]
    fn loom_wait_point_two_waiters_two_notifies_both_return() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let (w, t) = (Arc::new(WaitPoint::new()), Arc::new(AtomicU32::new(0)));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let (w, t) = (w.clone(), t.clone());
                    loom::thread::spawn(move || take(&w, &t))
                })
                .collect();
            give(&w, &t);
            give(&w, &t);
            for h in waiters {
                h.join().unwrap();
            }
            assert_eq!(t.load(Ordering::Relaxed), 0);
        });
    }
}
