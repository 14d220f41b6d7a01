//! `Process`: run a function in a child process (Python's
//! `multiprocessing.Process`), with the `fork` and `spawn` start methods,
//! join, exit codes, terminate, and no zombies.
//!
//! # Examples
//!
//! ```
//! use ipc_core::process::Process;
//! let mut p = Process::builder().name("adder").target(|| 40u64 + 2);
//! p.start()?;
//! assert_eq!(p.join()?, 42);
//! assert_eq!(p.exitcode(), Some(0));
//! # Ok::<(), ipc_core::Error>(())
//! ```

#[cfg(feature = "tokio")]
mod aio;
mod child;
mod fork_check;
mod forkserver;
mod handle;
pub(crate) mod image;
mod init;
mod launcher;
mod registry;
pub(crate) mod spawn;
pub(crate) mod target;
mod wait;

pub use fork_check::{get_start_method_strict, set_start_method_strict};
pub use handle::{Process, ProcessBuilder};
pub use init::init;
#[doc(hidden)]
pub use target::panic_message;
pub use target::TargetOutput;
pub use wait::{wait, Waitable};

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::Result;

/// How a child process is started.
///
/// * `Fork` (the default): `fork()` the caller. Fastest (well under a
///   millisecond), and the target may be a closure that captures anything:
///   the child gets a copy-on-write copy of the parent's memory. The child
///   runs only the target and leaves with `_exit`, never the parent's
///   destructors. Avoid it in a parent whose other threads hold locks the
///   target needs (only the forking thread exists in the child).
/// * `Spawn`: re-execute the current program; [`init`] at the top of
///   `main` runs the target. A clean process: safe whatever the parent's
///   threads do. The target must be a `fn` item (it is found in the child
///   by its offset in the executable), arguments travel `rkyv`-encoded.
/// * `ForkServer`: a helper (this program re-executed once, on first use)
///   forks each child. As clean as `Spawn` and nearly as fast as `Fork`;
///   same `fn`-target rule as `Spawn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartMethod {
    /// `fork()` the calling process.
    Fork,
    /// Re-execute the current executable.
    Spawn,
    /// Fork from a clean single-threaded helper process.
    ForkServer,
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

/// Sets the start method used by processes that do not choose one
/// (Python's `set_start_method`).
///
/// # Examples
///
/// ```
/// use ipc_core::process::{get_start_method, set_start_method, StartMethod};
/// set_start_method(StartMethod::Fork);
/// assert_eq!(get_start_method(), StartMethod::Fork);
/// ```
pub fn set_start_method(m: StartMethod) {
    // Relaxed: a configuration value read by later `start` calls.
    DEFAULT_METHOD.store(
        match m {
            StartMethod::Fork => 0,
            StartMethod::Spawn => 1,
            StartMethod::ForkServer => 2,
        },
        Ordering::Relaxed,
    );
}

/// The start method used by default.
pub fn get_start_method() -> StartMethod {
    // Relaxed: see `set_start_method`.
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        1 => StartMethod::Spawn,
        2 => StartMethod::ForkServer,
        _ => StartMethod::Fork,
    }
}

/// Number of CPUs in the system (Python's `cpu_count()`).
///
/// # Examples
///
/// ```
/// assert!(ipc_core::process::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(1)
}

/// A live child started by this process, as listed by [`active_children`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its pid.
    pub pid: u32,
    /// Its name.
    pub name: String,
    /// Whether it is a daemon.
    pub daemon: bool,
}

/// Reaps children that have finished and returns those still running
/// (Python's `active_children()`).
///
/// # Examples
///
/// ```
/// let mut p = ipc_core::process::Process::builder().target(|| ());
/// p.start()?;
/// p.join()?;
/// assert!(ipc_core::process::active_children().iter().all(|c| Some(c.pid) != p.pid()));
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn active_children() -> Vec<ChildInfo> {
    registry::active()
        .into_iter()
        .map(|(pid, name, daemon)| ChildInfo { pid, name, daemon })
        .collect()
}

/// Who the calling process is (Python's `current_process()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// `"MainProcess"`, or the name given to the `Process` that started us.
    pub name: String,
    /// The process id.
    pub pid: u32,
    /// Whether we were started as a daemon.
    pub daemon: bool,
}

/// The identity of the process that starts a child, handed to the child
/// (inherited by fork, or as text in a spawn or fork-server request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParentId {
    pid: u32,
    /// Start time (`/proc/<pid>/stat`): tells the parent from a later
    /// process that reuses its pid.
    start: u64,
    name: String,
}

impl ParentId {
    /// The calling process, about to start a child.
    pub(crate) fn of_current() -> ParentId {
        let me = crate::sys::proc::TaskId::current_process();
        ParentId {
            pid: me.id,
            start: me.start,
            name: current_process().name,
        }
    }

    /// The pid, for `PR_SET_PDEATHSIG` checks.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// `pid:start:name-in-hex` (no `;`, which separates request fields).
    pub(crate) fn encode(&self) -> String {
        let hex: String = self.name.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{}:{}:{hex}", self.pid, self.start)
    }

    /// Inverse of [`encode`](Self::encode).
    pub(crate) fn decode(s: &str) -> Option<ParentId> {
        let mut it = s.splitn(3, ':');
        let pid = it.next()?.parse().ok()?;
        let start = it.next()?.parse().ok()?;
        let hex = it.next()?.as_bytes();
        if hex.len() % 2 != 0 {
            return None;
        }
        let bytes = hex
            .chunks(2)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(ParentId {
            pid,
            start,
            name: String::from_utf8(bytes).ok()?,
        })
    }
}

/// Who we are in a child started by ipc.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    name: String,
    daemon: bool,
    /// Our pid: tells a forked grandchild that the entry was inherited
    /// and is not its own.
    pid: u32,
    parent: ParentId,
}

pub(crate) static CURRENT: Mutex<Option<Current>> = Mutex::new(None);

/// Records who we are in a freshly started child (overwriting what a
/// forked child inherited from its parent).
pub(crate) fn set_current(name: String, daemon: bool, parent: ParentId) {
    // A forked child is single-threaded, but the parent may have held the
    // lock while forking: take the value even from a poisoned or held
    // copy by replacing the whole mutex contents.
    let v = Some(Current {
        name,
        daemon,
        pid: crate::sys::proc::pid(),
        parent,
    });
    match CURRENT.try_lock() {
        Ok(mut g) => *g = v,
        Err(std::sync::TryLockError::Poisoned(p)) => *p.into_inner() = v,
        Err(std::sync::TryLockError::WouldBlock) => {}
    }
}

fn current() -> Option<Current> {
    CURRENT
        .try_lock()
        .ok()
        .and_then(|g| g.clone())
        .filter(|c| c.pid == crate::sys::proc::pid())
}

/// The calling process's name, pid and daemon flag.
///
/// # Examples
///
/// ```
/// assert_eq!(ipc_core::process::current_process().name, "MainProcess");
/// ```
pub fn current_process() -> ProcessInfo {
    let (name, daemon) =
        current().map_or(("MainProcess".to_owned(), false), |c| (c.name, c.daemon));
    ProcessInfo {
        name,
        pid: crate::sys::proc::pid(),
        daemon,
    }
}

/// The process that started this one (Python's `parent_process()`).
///
/// It is identified by pid **and** start time, so `is_alive` and `join`
/// are not fooled by a later process reusing its pid.
///
/// # Examples
///
/// ```
/// use ipc_core::process::{parent_process, Process};
/// let mut p = Process::builder().name("kid").target(|| {
///     let parent = parent_process().expect("started by ipc");
///     (parent.name.clone(), parent.is_alive())
/// });
/// p.start()?;
/// assert_eq!(p.join()?, ("MainProcess".to_string(), true));
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentProcess {
    /// Its name when it started us (`"MainProcess"` for a program's main
    /// process, as in Python).
    pub name: String,
    /// Its pid.
    pub pid: u32,
    start: u64,
}

impl ParentProcess {
    fn task(&self) -> crate::sys::proc::TaskId {
        crate::sys::proc::TaskId {
            id: self.pid,
            start: self.start,
        }
    }

    /// Whether the parent is still running (an exited parent that nobody
    /// reaped yet counts as ended). See [`parent_process`] for an example.
    pub fn is_alive(&self) -> bool {
        self.task().is_alive()
    }

    /// Waits until the parent has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::process::{parent_process, Process};
    /// let mut p = Process::new(|| {
    ///     let mut grandchild = Process::new(|| {
    ///         let parent = parent_process().unwrap();
    ///         parent.join().unwrap(); // returns once our parent has exited
    ///         assert!(!parent.is_alive());
    ///     });
    ///     grandchild.start().unwrap();
    ///     std::mem::forget(grandchild); // exit without waiting for it
    /// });
    /// p.start()?;
    /// p.join()?;
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Io`] if it cannot be watched.
    pub fn join(&self) -> Result<()> {
        self.join_deadline(None)
    }

    /// Waits at most `timeout` for the parent to end (Python's
    /// `join(timeout)`).
    ///
    /// # Errors
    /// [`crate::Error::Timeout`] if it is still running; [`crate::Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::{process::{parent_process, Process}, Error};
    /// use std::time::Duration;
    /// let mut p = Process::new(|| {
    ///     let r = parent_process().unwrap().join_timeout(Duration::from_millis(10));
    ///     matches!(r, Err(Error::Timeout)) // we (the parent) are still here
    /// });
    /// p.start()?;
    /// assert!(p.join()?);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_deadline(Some(std::time::Instant::now() + timeout))
    }

    fn join_deadline(&self, deadline: Option<std::time::Instant>) -> Result<()> {
        let pidfd = match crate::sys::shm::pidfd_open(self.pid) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ESRCH) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // Opened after the check would be a later process with the same
        // pid: the identity check after opening rules that out.
        if !self.is_alive() {
            return Ok(());
        }
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        if wait(&[pidfd.as_fd()], left)?.is_empty() {
            return Err(crate::Error::Timeout);
        }
        Ok(())
    }
}

/// The process that started this one, if it was started by ipc (Python's
/// `parent_process()`, `None` in the main process).
///
/// # Examples
///
/// ```
/// assert!(ipc_core::process::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    let p = current()?.parent;
    Some(ParentProcess {
        name: p.name,
        pid: p.pid,
        start: p.start,
    })
}
