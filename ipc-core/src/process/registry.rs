//! Every child this process started, so none is left a zombie: children are
//! reaped by `join`, by `Process`'s `Drop` (without blocking), by
//! `active_children()`, and at exit (non-daemon children are joined, daemon
//! children terminated first, as Python does). Children of the fork server
//! are reaped by the server, which reports their exit codes.

use std::collections::HashMap;
use std::sync::Once;

use crate::sys::fork_local::ForkLocal;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys::proc;

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    daemon: bool,
    /// Forked by the fork server, not by us.
    via_server: bool,
    /// The process that started the child (entries copied into a forked
    /// child's memory belong to its parent and are ignored there).
    owner: u32,
    /// Exit code once reaped (`-N` for signal N).
    code: Option<i32>,
    /// The `Process` handle is gone: forget the entry once reaped.
    detached: bool,
}

/// Fork-aware: a child forked while another thread held the registry does
/// not deadlock on it, and starts with an empty one.
static REGISTRY: ForkLocal<HashMap<i32, Entry>> = ForkLocal::new();
static ATEXIT: Once = Once::new();

fn with<T>(f: impl FnOnce(&mut HashMap<i32, Entry>) -> T) -> T {
    REGISTRY.with(f)
}

/// Records a newly started child.
pub(crate) fn add(pid: Pid, name: &str, daemon: bool, via_server: bool) {
    ATEXIT.call_once(|| {
        // SAFETY: registering a plain extern "C" function with atexit.
        unsafe { libc::atexit(at_exit) };
    });
    let owner = proc::pid();
    with(|m| {
        m.insert(
            pid.as_raw(),
            Entry {
                name: name.to_owned(),
                daemon,
                via_server,
                owner,
                code: None,
                detached: false,
            },
        )
    });
}

/// Exit code meaning "the child ended but its code is unknown" (its fork
/// server died before reporting it); callers fall back on the outcome
/// the child wrote.
pub(crate) const UNKNOWN: i32 = i32::MIN;

fn waitpid_nohang(pid: Pid) -> Option<i32> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return None,
            Ok(WaitStatus::Exited(_, c)) => return Some(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Some(-(s as i32)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            // ECHILD: not our child. Every reap of our children goes
            // through this registry under its lock, so this cannot be a
            // status another thread took and did not record.
            Err(_) => return Some(UNKNOWN),
        }
    }
}

/// Reaps `pid` if it has exited (or waits for it when `block`), recording
/// and returning its exit code.
///
/// The status is collected under the registry lock (non-blocking calls
/// only), so two threads reaping the same child can never both call
/// `waitpid` and have one of them lose the status. A blocking reap polls:
/// callers that can (`Process::join`) first wait on the child's pidfd, so
/// the first poll succeeds.
pub(crate) fn reap(pid: Pid, block: bool) -> Option<i32> {
    loop {
        let code = with(|m| {
            let e = m.get(&pid.as_raw())?;
            if let Some(c) = e.code {
                return Some(c);
            }
            let code = if e.via_server {
                super::forkserver::exit_code(pid)?
            } else {
                waitpid_nohang(pid)?
            };
            let e = m.get_mut(&pid.as_raw())?;
            if e.detached {
                m.remove(&pid.as_raw());
            } else {
                e.code = Some(code);
            }
            Some(code)
        });
        // Not registered (already forgotten): reap directly.
        let code = match code {
            Some(c) => Some(c),
            None if !with(|m| m.contains_key(&pid.as_raw())) => waitpid_nohang(pid),
            None => None,
        };
        if code.is_some() || !block {
            return code;
        }
        if with(|m| m.get(&pid.as_raw()).is_some_and(|e| e.via_server)) {
            // The server reports exits over its socket; give it time, then
            // give up if it is gone (the outcome file still tells).
            match super::forkserver::exit_code_wait(pid, std::time::Duration::from_secs(2)) {
                Some(c) => {
                    with(|m| {
                        if let Some(e) = m.get_mut(&pid.as_raw()) {
                            e.code = Some(c);
                        }
                    });
                    return Some(c);
                }
                None => return Some(UNKNOWN),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Forgets a child whose status the caller has taken.
pub(crate) fn remove(pid: Pid) {
    with(|m| m.remove(&pid.as_raw()));
}

/// Reaps finished children; returns the live ones (pid, name, daemon).
pub(crate) fn active() -> Vec<(u32, String, bool)> {
    let me = proc::pid();
    let pids: Vec<i32> = with(|m| {
        m.iter()
            .filter(|(_, e)| e.owner == me && e.code.is_none())
            .map(|(p, _)| *p)
            .collect()
    });
    let mut live = Vec::new();
    for p in pids {
        if reap(Pid::from_raw(p), false).is_none() {
            if let Some(e) = with(|m| m.get(&p).cloned()) {
                live.push((p as u32, e.name, e.daemon));
            }
        }
    }
    live
}

/// The `Process` handle of `pid` is gone: reap now if possible, else mark
/// the entry so the next reap (by `active_children`, a later `Process`, or
/// exit) forgets it.
pub(crate) fn detach(pid: Pid) {
    if reap(pid, false).is_some() {
        remove(pid);
    } else {
        with(|m| {
            if let Some(e) = m.get_mut(&pid.as_raw()) {
                e.detached = true;
            }
        });
    }
}

/// Reaps every finished child of this process (called on each start, so
/// dropped handles never accumulate zombies).
pub(crate) fn reap_finished() {
    let _ = active();
}

extern "C" fn at_exit() {
    let me = proc::pid();
    let mine: Vec<(i32, bool)> = with(|m| {
        m.iter()
            .filter(|(_, e)| e.owner == me && e.code.is_none())
            .map(|(p, e)| (*p, e.daemon))
            .collect()
    });
    // Daemon children are terminated, then everyone is reaped: non-daemon
    // children are waited for (joined), as Python does at interpreter exit.
    for (p, daemon) in &mine {
        if *daemon {
            let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
        }
    }
    for (p, _) in mine {
        let _ = reap(Pid::from_raw(p), true);
    }
}
