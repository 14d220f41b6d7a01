//! The error type of `ipc-manager`: the manager's own failures, and
//! `ipc_core`'s wrapped.

/// Everything that can go wrong talking to a manager, as variants a caller
/// can act on. Failures of the objects underneath (a region that cannot be
/// created, a value that does not decode, a full queue) are
/// [`Error::Core`].
///
/// # Examples
///
/// ```
/// use ipc_manager::{Error, Manager};
/// let mgr = Manager::start()?;
/// let l = mgr.list::<u32>()?;
/// mgr.shutdown()?;
/// assert!(matches!(l.len(), Err(Error::ServerGone)));
/// let err = Manager::connect("no-such-manager").unwrap_err();
/// assert!(matches!(err, Error::Core(ipc_core::Error::NotFound { .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A failure of `ipc_core` (regions, codec, sync objects, processes).
    #[error(transparent)]
    Core(ipc_core::Error),
    /// The manager server is gone (it shut down, or died): no request can
    /// be served. Returned within a second of the server's death.
    #[error("the manager server is gone")]
    ServerGone,
    /// Every client slot of the manager is taken.
    #[error("the manager has no free client slot (all {max} taken)")]
    TooManyClients {
        /// Number of slots.
        max: usize,
    },
    /// The manager server refused a request (for instance an unknown
    /// custom type); the text says why.
    #[error("the manager refused the request: {0}")]
    Refused(String),
    /// This process's mailbox holds a sequence number its exchange with the
    /// server never wrote: another process wrote into it, and no answer
    /// can come. The connection is dropped; the next call makes a new one.
    #[error("this process's manager mailbox is out of step (written by another process): expected sequence number {expected}, found {found}")]
    OutOfStep {
        /// The sequence number of the request this process sent.
        expected: u32,
        /// The sequence number found in the mailbox instead.
        found: u32,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `ipc_core::Error::Corrupt` with `msg`, wrapped.
    pub(crate) fn corrupt(msg: impl Into<String>) -> Error {
        Error::Core(ipc_core::Error::Corrupt(msg.into()))
    }

    /// As an `ipc_core::Error`, for interfaces that can only carry one (a
    /// proxy decoded from a token, `Travel::from_token`): a core failure
    /// as itself, a manager one inside `ipc_core::Error::External`, which
    /// [`From`] unwraps again.
    pub(crate) fn into_core(self) -> ipc_core::Error {
        match self {
            Error::Core(e) => e,
            e => ipc_core::Error::External(Box::new(e)),
        }
    }
}

/// A core failure; a manager failure that travelled inside
/// `ipc_core::Error::External` comes back out as itself.
impl From<ipc_core::Error> for Error {
    fn from(e: ipc_core::Error) -> Error {
        match e {
            ipc_core::Error::External(b) => match b.downcast::<Error>() {
                Ok(mine) => *mine,
                Err(other) => Error::Core(ipc_core::Error::External(other)),
            },
            e => Error::Core(e),
        }
    }
}

/// A shared value's failure (`OwnerDied`, `Corrupt`) as a core failure,
/// so `?` works on `Value` calls inside manager code.
impl<T> From<ipc_core::value::ValueError<T>> for Error {
    fn from(e: ipc_core::value::ValueError<T>) -> Error {
        Error::Core(e.into())
    }
}
