//! The error of lock acquisitions, which may carry the acquired guard.

use crate::Error;

/// Why a lock acquisition did not return a clean guard.
///
/// `OwnerDied` carries the guard: the lock **is** held by the caller, but
/// the process that held it before died inside its critical section, so
/// the data it protects may be half-updated. Repair it, or drop the guard.
///
/// # Examples
///
/// ```
/// use ipc_core::sync::{Lock, LockError};
/// let lock = Lock::new()?;
/// let guard = match lock.acquire() {
///     Ok(g) => g,
///     Err(LockError::OwnerDied(g)) => { /* repair shared state */ g }
///     Err(e) => return Err(e.into()),
/// };
/// drop(guard);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug)]
pub enum LockError<G> {
    /// The previous holder died; the caller now holds the lock.
    OwnerDied(G),
    /// The deadline passed.
    Timeout,
    /// `try_acquire` found the lock held.
    WouldBlock,
    /// The lock word in shared memory names a holder that cannot exist (a
    /// kernel thread, another user's task, a thread that never recorded
    /// itself): garbage was written into the region. The lock is not held;
    /// the text says what was found.
    Corrupt(String),
}

impl<G> LockError<G> {
    /// The guard, if the lock was acquired (after an owner death).
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// Applies `f` to the carried guard.
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::Timeout => LockError::Timeout,
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::Corrupt(s) => LockError::Corrupt(s),
        }
    }
}

impl<G> std::fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("the previous owner died holding the lock"),
            LockError::Timeout => f.write_str("timed out waiting for the lock"),
            LockError::WouldBlock => f.write_str("the lock is held"),
            LockError::Corrupt(s) => write!(f, "corrupt lock: {s}"),
        }
    }
}

impl<G: std::fmt::Debug> std::error::Error for LockError<G> {}

/// Dropping the guard (releasing the lock) and keeping the reason.
impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        match e {
            LockError::OwnerDied(_) => Error::OwnerDied,
            LockError::Timeout => Error::Timeout,
            LockError::WouldBlock => Error::WouldBlock,
            LockError::Corrupt(s) => Error::Corrupt(s),
        }
    }
}

/// Maps a raw acquisition outcome to the public result.
pub(crate) fn outcome<G>(
    a: super::raw_lock::Acquired,
    busy: LockError<G>,
    guard: impl FnOnce() -> G,
) -> Result<G, LockError<G>> {
    use super::raw_lock::Acquired;
    match a {
        Acquired::Clean => Ok(guard()),
        Acquired::OwnerDied => Err(LockError::OwnerDied(guard())),
        Acquired::Busy => Err(busy),
        Acquired::Corrupt(i) => Err(LockError::Corrupt(i.describe())),
    }
}
