//! Forking a multi-threaded parent: warned about, or refused in strict
//! mode.
//!
//! A forked child gets a copy of the parent's memory but only the forking
//! thread: a lock another thread held at that instant (in the allocator,
//! stdio, a user's `Mutex`) stays locked for ever in the child. Python
//! 3.12 warns about it and 3.14 stopped defaulting to fork.
//!
//! Threads `ipc` runs itself (named `ipc-*`: the launcher, a pool's feeder
//! and supervisor, the async waiter) hold no lock a child needs while they
//! can be forked, so they do not count.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, Result};

static STRICT: AtomicBool = AtomicBool::new(false);
#[cfg(feature = "tracing")]
static WARNED: AtomicBool = AtomicBool::new(false);

/// Makes a `Fork` start from a multi-threaded parent an error
/// ([`Error::UnsafeFork`]) instead of a warning (a `tracing` event, with
/// the `tracing` feature). Off by default. Threads `ipc` runs itself
/// (named `ipc-*`) do not count.
///
/// # Examples
///
/// ```
/// use ipc_core::process::{set_start_method_strict, Process};
/// set_start_method_strict(true);
/// let t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(500)));
/// let mut p = Process::new(|| ());
/// assert!(matches!(p.start(), Err(ipc_core::Error::UnsafeFork { .. })));
/// set_start_method_strict(false);
/// t.join().unwrap();
/// ```
pub fn set_start_method_strict(strict: bool) {
    // Relaxed: a configuration flag read by later `start` calls.
    STRICT.store(strict, Ordering::Relaxed);
}

/// Whether [`set_start_method_strict`] is on.
///
/// # Examples
///
/// ```
/// assert!(!ipc_core::process::get_start_method_strict());
/// ```
pub fn get_start_method_strict() -> bool {
    // Relaxed: see `set_start_method_strict`.
    STRICT.load(Ordering::Relaxed)
}

/// Called by `Process::start` before a `Fork` start. Reads `/proc` only
/// when someone listens (strict mode, or a subscriber of `tracing`
/// warnings).
pub(crate) fn check(name: &str) -> Result<()> {
    let strict = get_start_method_strict();
    if !strict && !crate::trace::enabled!(WARN) {
        return Ok(());
    }
    let Some(threads) = foreign_threads() else {
        return Ok(());
    };
    if threads == 0 {
        return Ok(());
    }
    if strict {
        return Err(Error::UnsafeFork { threads });
    }
    #[cfg(feature = "tracing")]
    {
        // Relaxed: only decides between a warning and a debug event.
        if !WARNED.swap(true, Ordering::Relaxed) {
            crate::trace::event!(
                WARN,
                process = name,
                other_threads = threads,
                "Fork start from a multi-threaded parent: a lock another thread holds stays locked in the child; \
                 use the ForkServer or Spawn start method, or set_start_method_strict(true) to refuse"
            );
        } else {
            crate::trace::event!(
                DEBUG,
                process = name,
                other_threads = threads,
                "Fork start from a multi-threaded parent"
            );
        }
    }
    let _ = name;
    Ok(())
}

/// Threads of this process other than the caller and `ipc`'s own
/// (`Threads:` in `/proc/self/status`, then the names of the tasks in
/// `/proc/self/task` only if there is more than one).
fn foreign_threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let n: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()?;
    if n <= 1 {
        return Some(0);
    }
    let me = crate::sys::proc::tid().to_string();
    let mut foreign = 0;
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        if t.file_name().to_str() == Some(me.as_str()) {
            continue;
        }
        // A thread that exited meanwhile has no comm any more: not counted.
        let Ok(comm) = std::fs::read_to_string(t.path().join("comm")) else {
            continue;
        };
        if !comm.starts_with("ipc-") {
            foreign += 1;
        }
    }
    Some(foreign)
}
