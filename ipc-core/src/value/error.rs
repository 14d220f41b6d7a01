//! The error of a locked `Value` call that returns a value, which may
//! carry that value.

use crate::Error;

/// Why a locked [`Value`](super::Value) call (`get`, `update`) did not
/// return its value cleanly.
///
/// `OwnerDied` carries the value: the call ran under the lock, but the
/// process that held the lock before died inside its critical section, so
/// the value may be half-written. Check or repair it, as with the guard
/// [`LockError::OwnerDied`](crate::sync::LockError::OwnerDied) carries.
/// It converts into [`Error`] (dropping the value) for `?`.
///
/// # Examples
///
/// ```
/// use ipc_core::value::{Value, ValueError};
/// let v = Value::new(7u32)?;
/// let x = match v.get() {
///     Ok(x) => x,
///     Err(ValueError::OwnerDied(x)) => x, // read after a holder died
///     Err(e) => return Err(e.into()),
/// };
/// assert_eq!(x, 7);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub enum ValueError<T> {
    /// The previous holder of the lock died; the call still ran, and this
    /// is the value it read (or, for `update`, wrote).
    OwnerDied(T),
    /// The lock word in shared memory is garbage; the call did not run.
    Corrupt(String),
}

impl<T> ValueError<T> {
    /// The value, if the call ran (after an owner death).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::value::ValueError;
    /// assert_eq!(ValueError::OwnerDied(3u8).into_value(), Some(3));
    /// assert_eq!(ValueError::<u8>::Corrupt("bad".into()).into_value(), None);
    /// ```
    pub fn into_value(self) -> Option<T> {
        match self {
            ValueError::OwnerDied(v) => Some(v),
            ValueError::Corrupt(_) => None,
        }
    }

    /// Applies `f` to the carried value.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::value::ValueError;
    /// let e = ValueError::OwnerDied(3u8).map(u32::from);
    /// assert_eq!(e.into_value(), Some(3u32));
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> ValueError<U> {
        match self {
            ValueError::OwnerDied(v) => ValueError::OwnerDied(f(v)),
            ValueError::Corrupt(s) => ValueError::Corrupt(s),
        }
    }
}

/// Shows the variant, not the value (so `unwrap` works for any `T`, as
/// with `std::sync::PoisonError`).
impl<T> std::fmt::Debug for ValueError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            ValueError::Corrupt(s) => f.debug_tuple("Corrupt").field(s).finish(),
        }
    }
}

impl<T> std::fmt::Display for ValueError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::OwnerDied(_) => {
                f.write_str("the previous owner died holding the value's lock")
            }
            ValueError::Corrupt(s) => write!(f, "corrupt lock: {s}"),
        }
    }
}

impl<T> std::error::Error for ValueError<T> {}

/// Dropping the value and keeping the reason.
impl<T> From<ValueError<T>> for Error {
    fn from(e: ValueError<T>) -> Error {
        match e {
            ValueError::OwnerDied(_) => Error::OwnerDied,
            ValueError::Corrupt(s) => Error::Corrupt(s),
        }
    }
}
