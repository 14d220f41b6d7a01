//! `Lock`: a cross-process mutex that survives the death of its holder.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::lock_error::{outcome, LockError};
use super::raw_lock::RawLock;
use crate::region::Kind;
use crate::shared::{Shared, ShmSafe};
use crate::{Error, Result};

#[cfg(feature = "tokio")]
mod aio;

// SAFETY: RawLock is #[repr(C)], made of atomics only, and all-zero is "unlocked".
unsafe impl ShmSafe for RawLock {}

/// A non-recursive lock shared between processes (Python's
/// `multiprocessing.Lock`).
///
/// Uncontended `acquire` + release is one compare-and-swap and one swap, no
/// syscall. A holder that dies (even by `SIGKILL`) does not deadlock the
/// others: within about 100 ms the next acquirer gets the lock together with
/// [`LockError::OwnerDied`].
///
/// # Examples
///
/// ```
/// use ipc_core::sync::Lock;
/// let lock = Lock::new()?;
/// {
///     let _g = lock.acquire()?;
///     assert!(lock.try_acquire().is_err());
/// }
/// assert!(lock.try_acquire().is_ok());
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Lock {
    raw: Shared<RawLock>,
}

/// Proof that the calling thread holds a [`Lock`]; releases it on drop.
///
/// Not `Send`: the lock is owned by the thread that acquired it.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a RawLock,
    _not_send: PhantomData<*const ()>,
}

/// Result of acquiring a [`Lock`].
pub type LockResult<'a> = std::result::Result<LockGuard<'a>, LockError<LockGuard<'a>>>;

impl Lock {
    /// Creates an anonymous lock, shared with children forked after this call.
    ///
    /// # Errors
    /// [`Error::Io`] if the shared memory cannot be created.
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            raw: Shared::create(Kind::Lock, None, |_| {})?,
        })
    }

    /// Creates a lock that other processes can [`open`](Lock::open) by name.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::InvalidName`], [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::sync::Lock;
    /// let a = Lock::create("doc-lock")?;
    /// let b = Lock::open("doc-lock")?;
    /// let _g = a.acquire()?;
    /// assert!(b.try_acquire().is_err());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn create(name: &str) -> Result<Lock> {
        Ok(Lock {
            raw: Shared::create(Kind::Lock, Some(name), |_| {})?,
        })
    }

    /// Opens a lock created by another process.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Incompatible`] if the region is not a lock.
    pub fn open(name: &str) -> Result<Lock> {
        Ok(Lock {
            raw: Shared::open(Kind::Lock, name)?,
        })
    }

    /// Blocks until the lock is acquired.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] (carrying the guard) if the previous holder died.
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn acquire(&self) -> LockResult<'_> {
        self.acquire_deadline_opt(None)
    }

    /// Acquires the lock if it is free, without waiting. A lock whose
    /// holder died is taken over ([`LockError::OwnerDied`]).
    ///
    /// # Errors
    /// [`LockError::WouldBlock`] if it is held by a live thread.
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn try_acquire(&self) -> LockResult<'_> {
        outcome(
            self.raw.try_lock_or_recover(),
            LockError::WouldBlock,
            || self.guard(),
        )
    }

    /// Blocks for at most `timeout`.
    ///
    /// # Errors
    /// [`LockError::Timeout`], [`LockError::OwnerDied`].
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn acquire_timeout(&self, timeout: Duration) -> LockResult<'_> {
        self.acquire_deadline_opt(Some(Instant::now() + timeout))
    }

    /// Blocks until `deadline` at the latest.
    ///
    /// # Errors
    /// [`LockError::Timeout`], [`LockError::OwnerDied`].
    /// [`LockError::Corrupt`] if the lock word in shared memory is garbage.
    pub fn acquire_deadline(&self, deadline: Instant) -> LockResult<'_> {
        self.acquire_deadline_opt(Some(deadline))
    }

    fn acquire_deadline_opt(&self, deadline: Option<Instant>) -> LockResult<'_> {
        outcome(self.raw.lock(deadline), LockError::Timeout, || self.guard())
    }

    /// Releases a lock whose guard was [leaked](LockGuard::leak) (Python's
    /// `release()`).
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold the lock.
    pub fn release(&self) -> Result<()> {
        if !self.raw.is_owned_by_me() {
            return Err(Error::NotOwner);
        }
        self.raw.unlock();
        Ok(())
    }

    /// Whether any thread of any process holds the lock.
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The name the lock was created or opened with.
    pub fn name(&self) -> Option<&str> {
        self.raw.region().name()
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            lock: &self.raw,
            _not_send: PhantomData,
        }
    }

    /// The lock word (for a `Value` or `Array` guarded by this lock).
    pub(crate) fn raw_lock(&self) -> &RawLock {
        &self.raw
    }

    /// A lock living inside another object's region (`Value::get_lock`).
    pub(crate) fn from_shared(raw: Shared<RawLock>) -> Lock {
        Lock { raw }
    }
}

impl LockGuard<'_> {
    /// Keeps the lock held after the guard is gone; release it later with
    /// [`Lock::release`].
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // A guard outliving a manual `release` must not free a lock another
        // thread has taken since.
        if self.lock.is_owned_by_me() {
            self.lock.unlock();
        }
    }
}

impl crate::travel::Travel for Lock {
    fn token(&self) -> crate::travel::Token {
        self.raw.token()
    }
    fn from_token(t: crate::travel::Token) -> Result<Self> {
        // A Value's or Array's lock sits at offset 0 of its region.
        match Kind::from_u32(t.kind) {
            Some(k @ (Kind::Value | Kind::Array)) if t.offset == 0 => {
                let region = crate::region::Region::open_locator(&t.locator, k, 0, None)?;
                if region.payload_len() < std::mem::size_of::<RawLock>() {
                    return Err(Error::Corrupt("value region too small for its lock".into()));
                }
                Ok(Lock::from_shared(Shared::at(
                    std::sync::Arc::new(region),
                    0,
                )))
            }
            _ => Ok(Lock {
                raw: Shared::from_token(Kind::Lock, &t)?,
            }),
        }
    }
}
crate::travel::travel_via_token!([] Lock);
