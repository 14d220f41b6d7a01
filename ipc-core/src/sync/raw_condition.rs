//! The state of a `Condition` in shared memory, and its wait/notify
//! algorithm (model-checked with loom below).

use std::time::Instant;

use super::raw_lock::{Acquired, RawLock};
use crate::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::sys::futex;

/// ```text
/// lock     the condition's own lock
/// seq      bumped by every notify; the futex word waiters sleep on
/// state    waiters << 32 | permits
///          waiters: registered in `wait` and not yet returned
///          permits: wake-ups granted by notify and not yet taken
/// tickets  number of registrations ever made; a waiter's ticket is the
///          value it read when registering
/// limit    `tickets` at the last notify: only a waiter whose ticket is
///          below it (it was waiting when some notify ran) may take a permit
/// ```
/// Invariant: `permits <= waiters eligible (ticket < limit) and alive`.
/// Registration (`tickets`, `waiters` += 1), notify and a timed-out
/// waiter's exit happen under the lock; taking a permit is a CAS on
/// `state` that removes the waiter and the permit together. `notify(n)`
/// grants `min(n, waiters - permits)` permits, so it wakes at most `n`
/// waiters, each of them waiting when it ran, and a wake-up is never lost
/// or taken by a thread that started waiting later.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct RawCondition {
    pub lock: RawLock,
    seq: AtomicU32,
    _pad: AtomicU32,
    state: AtomicU64,
    tickets: AtomicU64,
    limit: AtomicU64,
}

const ONE_WAITER: u64 = 1 << 32;
const PERMITS: u64 = u32::MAX as u64;

impl RawCondition {
    #[cfg(loom)]
    fn new() -> Self {
        RawCondition {
            lock: RawLock::new(),
            seq: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            state: AtomicU64::new(0),
            tickets: AtomicU64::new(0),
            limit: AtomicU64::new(0),
        }
    }

    /// Grants up to `n` permits to the current waiters. The caller holds
    /// the lock.
    pub fn notify(&self, n: u32) {
        // Relaxed: under the lock (registrations happen under it too).
        let tickets = self.tickets.load(Ordering::Relaxed);
        // Relaxed: published to waiters by the Release bump of `seq` below,
        // which pairs with their Acquire load of `seq`.
        self.limit.store(tickets, Ordering::Relaxed);
        // Relaxed: a starting guess for the CAS.
        let mut st = self.state.load(Ordering::Relaxed);
        let granted = loop {
            let (waiters, permits) = (st >> 32, st & PERMITS);
            let k = u64::from(n).min(waiters.saturating_sub(permits));
            if k == 0 {
                return;
            }
            // Relaxed: `seq`'s Release below publishes it; a waiter's CAS
            // reads the latest value of `state` whatever its ordering.
            match self
                .state
                .compare_exchange_weak(st, st + k, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break k,
                Err(now) => st = now,
            }
        };
        // Release: pairs with the Acquire load of `seq` in `wait`, making
        // `limit` (and the permits) visible to a waiter that sees the bump.
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake(&self.seq, u32::try_from(granted).unwrap_or(u32::MAX));
    }

    /// Registers the caller as a waiter; returns its ticket. The caller
    /// holds the lock.
    fn register(&self) -> u64 {
        // Relaxed: under the lock.
        let t = self.tickets.fetch_add(1, Ordering::Relaxed);
        // Relaxed: read by notify under the lock, and by permit-taking
        // CASes, which see the latest value.
        self.state.fetch_add(ONE_WAITER, Ordering::Relaxed);
        t
    }

    /// Takes a permit if ticket `t` is eligible and one is left, removing
    /// the waiter in the same step.
    fn take_permit(&self, t: u64) -> bool {
        // Relaxed: the caller loaded `seq` with Acquire first (see notify);
        // a stale `limit` only delays us until the next bump of `seq`.
        if self.limit.load(Ordering::Relaxed) <= t {
            return false;
        }
        // Relaxed: a starting guess.
        let mut st = self.state.load(Ordering::Relaxed);
        while st & PERMITS > 0 && st >= ONE_WAITER {
            // Acquire: pairs with the notifier's Release on the lock (it
            // held it while granting); the data itself is ordered when we
            // re-acquire the lock.
            match self.state.compare_exchange_weak(
                st,
                st - ONE_WAITER - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => st = now,
            }
        }
        false
    }

    /// The exit of a waiter that gave up, under the lock: it takes a permit
    /// if it is eligible and one is left (it was notified after all),
    /// otherwise it just leaves. Returns whether it took one.
    fn leave(&self, t: u64) -> bool {
        if self.take_permit(t) {
            return true;
        }
        // Relaxed: under the lock, so no notify runs between the failed
        // take and this decrement.
        let mut st = self.state.load(Ordering::Relaxed);
        while st >= ONE_WAITER {
            match self.state.compare_exchange_weak(
                st,
                st - ONE_WAITER,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => st = now,
            }
        }
        false
    }

    /// Releases the lock (held by the caller), waits for a permit until
    /// `give_up()` says stop, and re-acquires the lock. Returns whether a
    /// permit was taken, and how the lock was re-acquired.
    pub fn wait(
        &self,
        deadline: Option<Instant>,
        give_up: impl FnMut() -> bool,
    ) -> (bool, Acquired) {
        let t = self.register();
        self.lock.unlock();
        self.await_permit(t, deadline, give_up)
    }

    /// The part of [`wait`](Self::wait) after the lock is released, for
    /// registered ticket `t`.
    fn await_permit(
        &self,
        t: u64,
        deadline: Option<Instant>,
        mut give_up: impl FnMut() -> bool,
    ) -> (bool, Acquired) {
        loop {
            // Acquire: pairs with the Release bump in `notify`.
            let s = self.seq.load(Ordering::Acquire);
            if self.take_permit(t) {
                return (true, self.lock.lock(None));
            }
            if give_up() {
                let a = self.lock.lock(None);
                if matches!(a, Acquired::Corrupt(_)) {
                    // Without the lock, leaving could race a notify; our
                    // registration stays (the region is garbage anyway).
                    return (false, a);
                }
                return (self.leave(t), a);
            }
            // A spurious or stale wake-up just loops: only a permit counts.
            futex::wait(&self.seq, s, deadline);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Waits (taking the lock first) giving up after `tries` checks.
    fn wait_bounded(c: &RawCondition, tries: u32) -> bool {
        assert_eq!(c.lock.lock(None), Acquired::Clean);
        let mut left = tries;
        // A deadline: the waits may time out (see `sys/futex_loom.rs`).
        let (notified, a) = c.wait(Some(Instant::now()), || {
            left = left.saturating_sub(1);
            left == 0
        });
        assert_eq!(a, Acquired::Clean);
        c.lock.unlock();
        notified
    }

    /// Under the lock: notifies `n` and returns how many were waiting.
    fn notify_counting(c: &RawCondition, n: u32) -> u64 {
        assert_eq!(c.lock.lock(None), Acquired::Clean);
        // Relaxed: under the lock, which orders registrations.
        let waiting = c.state.load(Ordering::Relaxed) >> 32;
        c.notify(n);
        c.lock.unlock();
        waiting
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.max_branches = 100_000;
        b.check(f);
    }

    fn give_up_after(tries: u32) -> impl FnMut() -> bool {
        let mut left = tries;
        move || {
            left = left.saturating_sub(1);
            left == 0
        }
    }

    /// Two registered waiters, one `notify(1)` racing the first waiter's
    /// timeout, the second waiter giving up before (`b_first`) or checking
    /// after the notify: exactly one is notified if any was still waiting
    /// when it ran, and no permit or registration is left behind. (The
    /// second waiter runs on the notifying thread, which keeps the model to
    /// two threads.)
    fn exactly_one(b_first: bool) {
        model(move || {
            let c = Arc::new(RawCondition::new());
            assert_eq!(c.lock.lock(None), Acquired::Clean);
            let (ta, tb) = (c.register(), c.register());
            c.lock.unlock();
            let a = {
                let c = c.clone();
                loom::thread::spawn(move || {
                    let (n, l) = c.await_permit(ta, Some(Instant::now()), give_up_after(2));
                    assert_eq!(l, Acquired::Clean);
                    c.lock.unlock();
                    n
                })
            };
            let b = |c: &RawCondition| {
                let (n, l) = c.await_permit(tb, Some(Instant::now()), give_up_after(1));
                assert_eq!(l, Acquired::Clean);
                c.lock.unlock();
                n
            };
            let nb_first = b_first && b(&c);
            let waiting = notify_counting(&c, 1);
            let nb = nb_first || (!b_first && b(&c));
            let na = a.join().unwrap();
            assert_eq!(u64::from(na) + u64::from(nb), waiting.min(1));
            assert_eq!(c.state.load(Ordering::Relaxed), 0);
        });
    }

    #[test]
    fn loom_notify_one_wakes_exactly_one_even_racing_timeouts() {
        exactly_one(false);
    }

    #[test]
    fn loom_a_waiter_that_timed_out_leaves_no_permit_behind() {
        exactly_one(true);
    }

    /// A waiter that registers after a `notify(1)` cannot take the wake-up
    /// meant for the one that was waiting.
    #[test]
    fn loom_later_waiter_cannot_steal_a_notify() {
        model(|| {
            let c = Arc::new(RawCondition::new());
            let early = {
                let c = c.clone();
                loom::thread::spawn(move || wait_bounded(&c, 3))
            };
            let waiting = notify_counting(&c, 1);
            let late = wait_bounded(&c, 2);
            let early = early.join().unwrap();
            // The early waiter was notified iff it was waiting in time; the
            // late one never is.
            assert_eq!(early, waiting == 1);
            assert!(!late);
            assert_eq!(c.state.load(Ordering::Relaxed), 0);
        });
    }
}

impl RawCondition {
    /// The lock and the number of waiters, for `ipc inspect` (a snapshot).
    #[cfg(not(loom))]
    pub(crate) fn snapshot(&self) -> (&RawLock, u32) {
        // Relaxed: diagnostics only; nothing is decided on it.
        (
            &self.lock,
            (self.state.load(Ordering::Relaxed) / ONE_WAITER) as u32,
        )
    }
}
