//! The error type of `ipc-redis`: Redis failures, and the local ones
//! (`ipc_core::Error`: `Timeout`, `WorkerDied`, `Panicked`, ...) wrapped.

/// Everything that can go wrong in `ipc-redis`. Failures of a task itself
/// are the local pools' ones, in [`Error::Core`]
/// ([`ipc_core::Error::WorkerDied`], [`ipc_core::Error::Panicked`],
/// [`ipc_core::Error::TargetFailed`], [`ipc_core::Error::Timeout`], ...).
///
/// URLs in these errors never show a password.
///
/// # Examples
///
/// ```
/// use ipc_redis::{Error, RedisPoolExecutor};
/// // Nothing listens on port 1.
/// let err = RedisPoolExecutor::connect("redis://:secret@127.0.0.1:1/0", "jobs").unwrap_err();
/// assert!(matches!(&err, Error::Unreachable { url, .. } if url == "redis://:***@127.0.0.1:1/0"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No connection to Redis could be made (nothing listens there, the
    /// host is unreachable, the connect timeout passed).
    #[error("cannot reach Redis at {url}: {message}")]
    Unreachable {
        /// The URL, password hidden.
        url: String,
        /// What the connection attempt said.
        message: String,
    },
    /// Redis refused the password or ACL user of the URL, or the user
    /// lacks a permission (`WRONGPASS`, `NOAUTH`, `NOPERM`).
    #[error("Redis at {url} refused the credentials or their permissions: {message}")]
    Auth {
        /// The URL, password hidden.
        url: String,
        /// Redis's answer.
        message: String,
    },
    /// An established connection broke (Redis died, the network failed,
    /// a reply took longer than the I/O timeout) and could not be
    /// re-established in time; calls waiting on it get this error.
    #[error("lost the connection to Redis at {url}: {message}")]
    ConnectionLost {
        /// The URL, password hidden.
        url: String,
        /// What failed.
        message: String,
    },
    /// Redis answered a command with an error.
    #[error("Redis at {url} answered with an error: {message}")]
    Server {
        /// The URL, password hidden.
        url: String,
        /// Redis's answer.
        message: String,
    },
    /// The URL is not a Redis URL this crate can use.
    #[error("invalid Redis URL {url:?}: {message}")]
    InvalidUrl {
        /// The URL, password hidden.
        url: String,
        /// Why it is refused.
        message: String,
    },
    /// A worker runs another build of the program than the one that
    /// submitted the task, so the task's code offsets mean nothing there:
    /// it refused the task rather than jump anywhere.
    #[error("worker {worker} runs a different executable ({found}) than the one that submitted the task ({expected}): task refused")]
    WrongExecutable {
        /// The worker that refused.
        worker: String,
        /// The identity the task carries (the submitter's executable).
        expected: String,
        /// The worker's own executable identity.
        found: String,
    },
    /// Bytes read from Redis are not a valid message (a Redis key is
    /// input anyone with access can write).
    #[error("invalid data read from Redis: {0}")]
    Corrupt(String),
    /// A local failure, with the same variants as the local pools.
    #[error(transparent)]
    Core(#[from] ipc_core::Error),
}

impl Error {
    /// Whether this is a failure to reach or keep the Redis connection
    /// ([`Unreachable`](Error::Unreachable) or
    /// [`ConnectionLost`](Error::ConnectionLost)).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = ipc_redis::RedisPool::connect("redis://127.0.0.1:1/", "jobs").unwrap_err();
    /// assert!(err.is_connection());
    /// ```
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. } | Error::ConnectionLost { .. }
        )
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
