//! `RLock`: a recursive cross-process lock.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::lock_error::LockError;
use super::raw_lock::{Acquired, RawLock};
use crate::atomic::{AtomicU32, Ordering};
use crate::region::Kind;
use crate::shared::{Shared, ShmSafe};
use crate::{Error, Result};

/// Recursion count next to a [`RawLock`]. `count` is touched only by the
/// holder, so Relaxed suffices: the lock's own Acquire/Release orders it
/// between successive holders.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct RawRLock {
    lock: RawLock,
    count: AtomicU32,
}

// SAFETY: #[repr(C)], atomics only, all-zero is "unlocked, count 0".
unsafe impl ShmSafe for RawRLock {}

/// A lock the holding thread may acquire again (Python's
/// `multiprocessing.RLock`); it is free once released as many times.
///
/// # Examples
///
/// ```
/// use ipc_core::sync::RLock;
/// let l = RLock::new()?;
/// let a = l.acquire()?;
/// let b = l.acquire()?; // same thread: fine
/// drop(b);
/// assert!(l.is_owned());
/// drop(a);
/// assert!(!l.is_owned());
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RLock {
    raw: Shared<RawRLock>,
}

/// One level of ownership of an [`RLock`]; dropping it releases one level.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    raw: &'a RawRLock,
    _not_send: PhantomData<*const ()>,
}

/// Result of acquiring an [`RLock`].
pub type RLockResult<'a> = std::result::Result<RLockGuard<'a>, LockError<RLockGuard<'a>>>;

impl RLock {
    /// Creates an anonymous recursive lock.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            raw: Shared::create(Kind::RLock, None, |_| {})?,
        })
    }

    /// Creates a named recursive lock.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::InvalidName`], [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// let l = ipc_core::sync::RLock::create("doc-rlock")?;
    /// let m = ipc_core::sync::RLock::open("doc-rlock")?;
    /// let _g = l.acquire()?;
    /// assert!(m.is_owned());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn create(name: &str) -> Result<RLock> {
        Ok(RLock {
            raw: Shared::create(Kind::RLock, Some(name), |_| {})?,
        })
    }

    /// Opens a named recursive lock.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Incompatible`].
    pub fn open(name: &str) -> Result<RLock> {
        Ok(RLock {
            raw: Shared::open(Kind::RLock, name)?,
        })
    }

    /// Blocks until acquired (immediately if this thread already holds it).
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] carrying the guard.
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn acquire(&self) -> RLockResult<'_> {
        self.acquire_opt(None)
    }

    /// Acquires without waiting.
    ///
    /// # Errors
    /// [`LockError::WouldBlock`].
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn try_acquire(&self) -> RLockResult<'_> {
        if self.raw.lock.is_owned_by_me() {
            return Ok(self.enter());
        }
        match self.raw.lock.try_lock_or_recover() {
            Acquired::Clean => Ok(self.first()),
            Acquired::OwnerDied => Err(LockError::OwnerDied(self.first())),
            Acquired::Busy => Err(LockError::WouldBlock),
            Acquired::Corrupt(i) => Err(LockError::Corrupt(i.describe())),
        }
    }

    /// Blocks for at most `timeout`.
    ///
    /// # Errors
    /// [`LockError::Timeout`], [`LockError::OwnerDied`].
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn acquire_timeout(&self, timeout: Duration) -> RLockResult<'_> {
        self.acquire_opt(Some(Instant::now() + timeout))
    }

    fn acquire_opt(&self, deadline: Option<Instant>) -> RLockResult<'_> {
        if self.raw.lock.is_owned_by_me() {
            return Ok(self.enter());
        }
        match self.raw.lock.lock(deadline) {
            Acquired::Clean => Ok(self.first()),
            Acquired::OwnerDied => Err(LockError::OwnerDied(self.first())),
            Acquired::Busy => Err(LockError::Timeout),
            Acquired::Corrupt(i) => Err(LockError::Corrupt(i.describe())),
        }
    }

    /// Releases one level of a leaked guard (Python's `release()`).
    ///
    /// # Errors
    /// [`Error::NotOwner`] if this thread does not hold the lock.
    pub fn release(&self) -> Result<()> {
        if !self.raw.lock.is_owned_by_me() {
            return Err(Error::NotOwner);
        }
        release_level(&self.raw);
        Ok(())
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned(&self) -> bool {
        self.raw.lock.is_owned_by_me()
    }

    /// How many times the holder has acquired it (0 if free).
    pub fn count(&self) -> u32 {
        // Relaxed: a snapshot for diagnostics.
        self.raw.count.load(Ordering::Relaxed)
    }

    /// The name the lock was created or opened with.
    pub fn name(&self) -> Option<&str> {
        self.raw.region().name()
    }

    fn first(&self) -> RLockGuard<'_> {
        // A dead holder's count is void: we start at 1. Relaxed: see RawRLock.
        self.raw.count.store(1, Ordering::Relaxed);
        self.guard()
    }

    fn enter(&self) -> RLockGuard<'_> {
        // Relaxed: only the holder touches `count`.
        let c = self.raw.count.load(Ordering::Relaxed);
        self.raw.count.store(c.saturating_add(1), Ordering::Relaxed);
        self.guard()
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            raw: &self.raw,
            _not_send: PhantomData,
        }
    }
}

fn release_level(raw: &RawRLock) {
    // Relaxed: only the holder touches `count`; unlock's Release publishes it.
    let c = raw.count.load(Ordering::Relaxed);
    if c <= 1 {
        raw.count.store(0, Ordering::Relaxed);
        raw.lock.unlock();
    } else {
        raw.count.store(c - 1, Ordering::Relaxed);
    }
}

impl RLockGuard<'_> {
    /// Keeps this level held after the guard is gone.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // See `LockGuard`'s drop: never release a level we no longer hold.
        if self.raw.lock.is_owned_by_me() {
            release_level(self.raw);
        }
    }
}

super::simple_travel!(RLock, Kind::RLock);

impl RawRLock {
    /// The lock and its recursion count, for `ipc inspect` (a snapshot).
    pub(crate) fn snapshot(&self) -> (&RawLock, u32) {
        // Relaxed: diagnostics only.
        (&self.lock, self.count.load(Ordering::Relaxed))
    }
}
