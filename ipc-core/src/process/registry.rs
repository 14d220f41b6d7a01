//! Every child this process started, so none is left a zombie: children are
//! reaped by `join`, by `Process`'s `Drop` (without blocking), by
//! `active_children()`, and at exit (non-daemon children are joined, daemon
//! children terminated first, as Python does). Children of the fork server
//! are reaped by the server, which reports their exit codes.

use std::collections::HashMap;
use std::sync::{Mutex, Once};

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

static REGISTRY: Mutex<Option<HashMap<i32, Entry>>> = Mutex::new(None);
static ATEXIT: Once = Once::new();

fn with<T>(f: impl FnOnce(&mut HashMap<i32, Entry>) -> T) -> T {
    let mut g = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(HashMap::new))
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

fn wait_own(pid: Pid, block: bool) -> Option<i32> {
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    loop {
        match waitpid(pid, flags) {
            Ok(WaitStatus::StillAlive) => return None,
            Ok(WaitStatus::Exited(_, c)) => return Some(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Some(-(s as i32)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            // ECHILD: not ours (any more); nothing to reap.
            Err(_) => return Some(-1),
        }
    }
}

/// Reaps `pid` if it has exited (or waits for it when `block`), recording
/// and returning its exit code.
pub(crate) fn reap(pid: Pid, block: bool) -> Option<i32> {
    let (known, via_server) = with(|m| {
        m.get(&pid.as_raw())
            .map_or((None, false), |e| (e.code, e.via_server))
    });
    if known.is_some() {
        return known;
    }
    let code = if via_server {
        super::forkserver::exit_code(pid, block)?
    } else {
        wait_own(pid, block)?
    };
    with(|m| {
        if let Some(e) = m.get_mut(&pid.as_raw()) {
            if e.detached {
                m.remove(&pid.as_raw());
            } else {
                e.code = Some(code);
            }
        }
    });
    Some(code)
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
    let mine: Vec<(i32, bool)> = {
        let Ok(g) = REGISTRY.try_lock() else { return };
        let Some(m) = g.as_ref() else { return };
        m.iter()
            .filter(|(_, e)| e.owner == me && e.code.is_none())
            .map(|(p, e)| (*p, e.daemon))
            .collect()
    };
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
