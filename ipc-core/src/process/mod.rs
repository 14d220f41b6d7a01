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
mod fork_check;
mod forkserver;
mod handle;
mod launcher;
mod registry;
pub(crate) mod spawn;
pub(crate) mod target;

pub use fork_check::{get_start_method_strict, set_start_method_strict};
pub use handle::{Process, ProcessBuilder};
pub use spawn::init;
pub use target::TargetOutput;

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

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

/// (name, daemon, our pid, the pid of the process that started us) in a
/// child started by ipc; the pid tells a forked grandchild that the entry
/// was inherited and is not its own.
pub(crate) static CURRENT: Mutex<Option<(String, bool, u32, u32)>> = Mutex::new(None);

/// Records who we are in a freshly started child (overwriting what a
/// forked child inherited from its parent).
pub(crate) fn set_current(name: String, daemon: bool, parent: u32) {
    // A forked child is single-threaded, but the parent may have held the
    // lock while forking: take the value even from a poisoned or held
    // copy by replacing the whole mutex contents.
    let v = Some((name, daemon, crate::sys::proc::pid(), parent));
    match CURRENT.try_lock() {
        Ok(mut g) => *g = v,
        Err(std::sync::TryLockError::Poisoned(p)) => *p.into_inner() = v,
        Err(std::sync::TryLockError::WouldBlock) => {}
    }
}

fn current() -> Option<(String, bool, u32, u32)> {
    CURRENT
        .try_lock()
        .ok()
        .and_then(|g| g.clone())
        .filter(|c| c.2 == crate::sys::proc::pid())
}

/// The calling process's name, pid and daemon flag.
///
/// # Examples
///
/// ```
/// assert_eq!(ipc_core::process::current_process().name, "MainProcess");
/// ```
pub fn current_process() -> ProcessInfo {
    let (name, daemon) = current().map_or(("MainProcess".to_owned(), false), |c| (c.0, c.1));
    ProcessInfo {
        name,
        pid: crate::sys::proc::pid(),
        daemon,
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
pub fn parent_process() -> Option<ProcessInfo> {
    let ppid = current()?.3;
    Some(ProcessInfo {
        name: "parent".to_owned(),
        pid: ppid,
        daemon: false,
    })
}

/// Waits until at least one of `sentinels` is ready (its process ended),
/// or `timeout` passes; returns the indices of the ready ones (Python's
/// `multiprocessing.connection.wait`).
///
/// # Errors
/// [`crate::Error::Io`] if `poll` fails.
///
/// # Examples
///
/// ```
/// use ipc_core::process::{wait, Process};
/// use std::time::Duration;
/// let mut fast = Process::builder().target(|| ());
/// let mut slow = Process::builder().target(|| std::thread::sleep(Duration::from_secs(5)));
/// fast.start()?;
/// slow.start()?;
/// let ready = wait(&[fast.sentinel().unwrap(), slow.sentinel().unwrap()], Some(Duration::from_secs(5)))?;
/// assert_eq!(ready, vec![0]);
/// slow.kill()?;
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn wait(sentinels: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let mut fds: Vec<PollFd<'_>> = sentinels
        .iter()
        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
        .collect();
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        // Milliseconds rounded up, so we never return before the deadline.
        let t = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128);
                PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut fds, t) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fds
        .iter()
        .enumerate()
        .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
        .map(|(i, _)| i)
        .collect())
}
