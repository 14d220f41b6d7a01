//! The one error type of `ipc-core`.

/// Everything that can go wrong in `ipc-core`, as variants a caller can act on.
///
/// # Examples
///
/// ```
/// use ipc_core::{Error, region::Region};
/// let err = Region::open("no-such-region-here", ipc_core::region::Kind::Raw).unwrap_err();
/// assert!(matches!(err, Error::NotFound { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No region with that name exists.
    #[error("no shared-memory region named {name:?}")]
    NotFound {
        /// The name looked up.
        name: String,
    },
    /// A region with that name already exists (exclusive creation).
    #[error("a shared-memory region named {name:?} already exists")]
    AlreadyExists {
        /// The name asked for.
        name: String,
    },
    /// The name is not a valid region name.
    #[error("invalid region name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The region exists but holds something else than expected.
    #[error("incompatible region: {what} is {found}, expected {expected}")]
    Incompatible {
        /// Which property differs (`magic`, `version`, `kind`, `size`, `type`, ...).
        what: &'static str,
        /// What the caller expected.
        expected: String,
        /// What the region holds.
        found: String,
    },
    /// The region's file belongs to another user. It is refused: its
    /// owner could read everything written into it, or forge its contents.
    #[error("shared-memory region {name:?} belongs to uid {uid}, not to this user (uid {euid}): refusing to use it")]
    ForeignOwner {
        /// The region's name (or locator).
        name: String,
        /// The file's owner.
        uid: u32,
        /// Our effective uid.
        euid: u32,
    },
    /// The region's file is open to other users (its mode has group or
    /// other bits), so anyone could have written it. It is refused.
    #[error(
        "shared-memory region {name:?} has mode {mode:#o}, open to other users: refusing to use it"
    )]
    InsecureMode {
        /// The region's name.
        name: String,
        /// The file's permission bits.
        mode: u32,
    },
    /// There was not enough shared memory (a full `/dev/shm`, or a memory
    /// limit) to reserve the pages of a new region; nothing was created.
    #[error("not enough shared memory to reserve {size} bytes for {}: /dev/shm or the memory limit is full", name.as_deref().map_or_else(|| "an anonymous region".to_owned(), |n| format!("region {n:?}")))]
    NoSpace {
        /// The region's name, `None` for an anonymous region.
        name: Option<String>,
        /// Bytes asked for, header included.
        size: usize,
    },
    /// A message is larger than the channel can carry; nothing was sent.
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Encoded size of the message.
        size: usize,
        /// Largest size the channel accepts.
        max: usize,
    },
    /// Bytes read from shared memory are not a valid message.
    #[error("corrupt data in shared memory: {0}")]
    Corrupt(String),
    /// The deadline passed before the operation could complete.
    #[error("timed out")]
    Timeout,
    /// A non-blocking put found the queue full.
    #[error("queue is full")]
    Full,
    /// A non-blocking get found the queue empty.
    #[error("queue is empty")]
    Empty,
    /// A non-blocking call would have had to wait.
    #[error("the operation would block")]
    WouldBlock,
    /// The object was closed.
    #[error("closed")]
    Closed,
    /// The process holding a lock died; the lock is recovered (see `LockError`).
    #[error("the previous owner of the lock died while holding it")]
    OwnerDied,
    /// The other end of a pipe was closed or its process died.
    #[error("the peer closed its end or died")]
    PeerClosed,
    /// A lock was released by a thread that does not hold it.
    #[error("release of a lock not held by the caller")]
    NotOwner,
    /// A bounded semaphore was released more times than acquired.
    #[error("semaphore released too many times")]
    ReleasedTooManyTimes,
    /// A barrier was aborted, reset, or a waiter timed out.
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// An index was outside an array.
    #[error("index {index} out of range for length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// An argument was invalid (zero capacity, size overflow, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A child process's target panicked; the panic message is attached.
    #[error("process {name:?} panicked: {message}")]
    Panicked {
        /// The process's name.
        name: String,
        /// The panic message.
        message: String,
    },
    /// A child process's target returned `Err`; its message is attached.
    #[error("process {name:?} failed: {message}")]
    TargetFailed {
        /// The process's name.
        name: String,
        /// The error's `Display` text.
        message: String,
    },
    /// A child process was killed by a signal (its exit code is `-signal`).
    #[error("process {name:?} was killed by signal {signal}")]
    Killed {
        /// The process's name.
        name: String,
        /// The signal number.
        signal: i32,
    },
    /// A child process exited without reporting a result (it called
    /// `exit` itself, or could not start its target).
    #[error("process {name:?} exited with code {code} without a result{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Exited {
        /// The process's name.
        name: String,
        /// Its exit code.
        code: i32,
        /// What the child reported, if anything.
        detail: Option<String>,
    },
    /// A spawn target is not a function of this executable's image.
    #[error("spawn target not found: {0}")]
    TargetNotFound(String),
    /// `ipc_core::init()` was not called at the top of `main`.
    #[error("call ipc_core::init() at the top of main before using the spawn or forkserver start method")]
    InitNotCalled,
    /// The process was not started yet.
    #[error("the process has not been started")]
    NotStarted,
    /// `start` was called twice.
    #[error("the process was already started")]
    AlreadyStarted,
    /// `Process::close` was called while the child still runs.
    #[error("cannot close a process while it is still running")]
    StillRunning,
    /// The queue was shut down (Python 3.13's `queue.ShutDown`): no `put`
    /// is accepted, and `get` fails once nothing is left to take.
    #[error("the queue was shut down")]
    ShutDown,
    /// A pool worker died (e.g. killed) while running this task; the pool
    /// replaced it and carries on.
    #[error("the pool worker (pid {pid}) running this task died")]
    WorkerDied {
        /// The dead worker's pid.
        pid: u64,
    },
    /// The pool can no longer run tasks (Python's `BrokenProcessPool`).
    #[error("the process pool is broken: {0}")]
    BrokenPool(String),
    /// The task was cancelled before it started.
    #[error("the task was cancelled")]
    Cancelled,
    /// A queue's process table is full: `max` live processes already use it.
    #[error("too many processes use this queue (at most {max} at a time)")]
    TooManyProcesses {
        /// Size of the table.
        max: usize,
    },
    /// An operating-system call failed.
    #[error("system call failed: {0}")]
    Io(#[from] nix::errno::Errno),
    /// A `Fork` start from a parent running other threads, refused because
    /// [`set_start_method_strict`](crate::process::set_start_method_strict)
    /// is on: a lock another thread holds would stay locked in the child.
    #[error("refusing to fork: this process runs {threads} other thread(s) (strict start method); use the ForkServer or Spawn start method")]
    UnsafeFork {
        /// Threads other than the caller and ipc's own.
        threads: usize,
    },
    /// A failure of a crate built on `ipc-core`, where only this type
    /// fits: a handle decoded from its token (`Travel::from_token`), such
    /// as an `ipc_manager` proxy whose server is gone. It keeps the
    /// original: `ipc_manager::Error::from` gives it back, and
    /// [`downcast_ref`](std::error::Error) on the box reads it.
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("the other side left")]
    /// struct Gone;
    /// let e = ipc_core::Error::External(Box::new(Gone));
    /// let ipc_core::Error::External(inner) = &e else { unreachable!() };
    /// assert!(inner.downcast_ref::<Gone>().is_some());
    /// assert_eq!(e.to_string(), "the other side left");
    /// ```
    #[error(transparent)]
    External(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
