//! `Condition`: wait for a predicate over shared state, across processes.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::lock_error::{outcome, LockError};
use super::raw_condition::RawCondition;
use super::raw_lock::Acquired;
use crate::region::Kind;
use crate::shared::{Shared, ShmSafe};
use crate::{Error, Result};

// SAFETY: #[repr(C)], atomics only; all-zero is "unlocked, no waiters".
unsafe impl ShmSafe for RawCondition {}

/// A condition variable with its own lock, shared between processes
/// (Python's `multiprocessing.Condition`).
///
/// `notify(n)` wakes at most `n` waiters, chosen among those waiting when
/// it runs (as CPython guarantees); a thread that starts waiting later
/// cannot take their wake-up. As everywhere, another thread may change the
/// state between the wake-up and the re-acquisition of the lock, so check
/// the predicate in a loop or use [`ConditionGuard::wait_for`]. If a
/// process dies inside `wait`, its registration stays: a later notify
/// may then wake one waiter more than asked (once per such death).
///
/// # Examples
///
/// ```
/// use ipc_core::sync::Condition;
/// use std::time::Duration;
/// let c = Condition::new()?;
/// let g = c.acquire()?;
/// let (g, notified) = g.wait_timeout(Duration::from_millis(5))?;
/// assert!(!notified);
/// g.notify_all();
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Condition {
    raw: Shared<RawCondition>,
}

/// Holds the condition's lock; wait and notify through it.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    raw: &'a RawCondition,
    _not_send: PhantomData<*const ()>,
}

/// Result of acquiring a [`Condition`]'s lock.
pub type ConditionResult<'a, T = ConditionGuard<'a>> =
    std::result::Result<T, LockError<ConditionGuard<'a>>>;

impl Condition {
    /// Creates an anonymous condition.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn new() -> Result<Condition> {
        Ok(Condition {
            raw: Shared::create(Kind::Condition, None, |_| {})?,
        })
    }

    /// Creates a named condition.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::InvalidName`].
    pub fn create(name: &str) -> Result<Condition> {
        Ok(Condition {
            raw: Shared::create(Kind::Condition, Some(name), |_| {})?,
        })
    }

    /// Opens a named condition.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Incompatible`].
    pub fn open(name: &str) -> Result<Condition> {
        Ok(Condition {
            raw: Shared::open(Kind::Condition, name)?,
        })
    }

    /// Acquires the condition's lock.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] carrying the guard.
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn acquire(&self) -> ConditionResult<'_> {
        outcome(self.raw.lock.lock(None), LockError::Timeout, || {
            self.guard()
        })
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`LockError::Timeout`], [`LockError::OwnerDied`].
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn acquire_timeout(&self, timeout: Duration) -> ConditionResult<'_> {
        let d = Instant::now() + timeout;
        outcome(self.raw.lock.lock(Some(d)), LockError::Timeout, || {
            self.guard()
        })
    }

    /// Wakes up to `n` waiters. The caller must hold the lock (Python raises
    /// `RuntimeError` otherwise).
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold the lock.
    pub fn notify(&self, n: u32) -> Result<()> {
        if !self.raw.lock.is_owned_by_me() {
            return Err(Error::NotOwner);
        }
        notify(&self.raw, n);
        Ok(())
    }

    /// Wakes every waiter; the caller must hold the lock.
    ///
    /// # Errors
    /// [`Error::NotOwner`].
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }

    /// The name it was created or opened with.
    pub fn name(&self) -> Option<&str> {
        self.raw.region().name()
    }

    fn guard(&self) -> ConditionGuard<'_> {
        ConditionGuard {
            raw: &self.raw,
            _not_send: PhantomData,
        }
    }
}

fn notify(raw: &RawCondition, n: u32) {
    raw.notify(n);
}

impl<'a> ConditionGuard<'a> {
    /// Releases the lock, sleeps until notified, and re-acquires the lock.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] if re-acquiring found the holder dead.
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn wait(self) -> ConditionResult<'a> {
        self.wait_deadline(None).map(|(g, _)| g)
    }

    /// As [`wait`](Self::wait) for at most `timeout`; the flag says whether
    /// it was notified (`false`: timed out), as Python's `wait` returns.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`].
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn wait_timeout(self, timeout: Duration) -> ConditionResult<'a, (Self, bool)> {
        self.wait_deadline(Some(Instant::now() + timeout))
    }

    /// Waits until `pred()` holds (checked under the lock) or `timeout`
    /// passes; returns the predicate's last value (Python's `wait_for`).
    ///
    /// # Errors
    /// [`LockError::OwnerDied`].
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn wait_for(
        self,
        mut pred: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> ConditionResult<'a, (Self, bool)> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self;
        loop {
            if pred() {
                return Ok((g, true));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok((g, false));
            }
            g = g.wait_deadline(deadline)?.0;
        }
    }

    fn wait_deadline(self, deadline: Option<Instant>) -> ConditionResult<'a, (Self, bool)> {
        let raw = self.raw;
        // The lock stays held until `RawCondition::wait` releases it.
        std::mem::forget(self);
        let (notified, a) = raw.wait(deadline, || deadline.is_some_and(|d| Instant::now() >= d));
        let g = ConditionGuard {
            raw,
            _not_send: PhantomData,
        };
        match a {
            Acquired::OwnerDied => Err(LockError::OwnerDied(g)),
            Acquired::Corrupt(i) => {
                std::mem::forget(g); // not held: nothing to release
                Err(LockError::Corrupt(i.describe()))
            }
            _ => Ok((g, notified)),
        }
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&self, n: u32) {
        notify(self.raw, n);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        notify(self.raw, u32::MAX);
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        if self.raw.lock.is_owned_by_me() {
            self.raw.lock.unlock();
        }
    }
}

super::simple_travel!(Condition, Kind::Condition);
