//! Every child this process started, so none is left a zombie: children are
//! reaped by `join`, by `Process`'s `Drop` (without blocking), by
//! `active_children()`, and at exit (non-daemon children are joined, daemon
//! children terminated first, as Python does).

use std::collections::HashMap;
use std::sync::{Mutex, Once};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys::proc;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    pub daemon: bool,
    /// The process that started the child (entries copied into a forked
    /// child's memory belong to its parent and are ignored there).
    pub owner: u32,
    /// Exit status once reaped.
    pub status: Option<WaitStatus>,
    /// The `Process` handle is gone: forget the entry once reaped.
    pub detached: bool,
}

static REGISTRY: Mutex<Option<HashMap<i32, Entry>>> = Mutex::new(None);
static ATEXIT: Once = Once::new();

fn with<T>(f: impl FnOnce(&mut HashMap<i32, Entry>) -> T) -> T {
    let mut g = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

/// Records a newly started child.
pub(crate) fn add(pid: Pid, name: &str, daemon: bool) {
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
                owner,
                status: None,
                detached: false,
            },
        )
    });
}

/// Reaps `pid` if it has exited (or waits for it when `block`), recording
/// and returning its status.
pub(crate) fn reap(pid: Pid, block: bool) -> Option<WaitStatus> {
    if let Some(s) = with(|m| m.get(&pid.as_raw()).and_then(|e| e.status)) {
        return Some(s);
    }
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    let status = loop {
        match waitpid(pid, flags) {
            Ok(WaitStatus::StillAlive) => return None,
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => break s,
            Ok(_) => continue, // stopped/continued: not an exit
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                // ECHILD: reaped elsewhere or not ours; report what we know.
                return with(|m| m.get(&pid.as_raw()).and_then(|e| e.status));
            }
        }
    };
    with(|m| {
        if let Some(e) = m.get_mut(&pid.as_raw()) {
            if e.detached {
                m.remove(&pid.as_raw());
            } else {
                e.status = Some(status);
            }
        }
    });
    Some(status)
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
            .filter(|(_, e)| e.owner == me && e.status.is_none())
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
    let Ok(mut g) = REGISTRY.try_lock() else {
        return;
    };
    let Some(m) = g.as_mut() else { return };
    let mine: Vec<(i32, bool)> = m
        .iter()
        .filter(|(_, e)| e.owner == me && e.status.is_none())
        .map(|(p, e)| (*p, e.daemon))
        .collect();
    drop(g);
    // Daemon children are terminated, then everyone is reaped: non-daemon
    // children are waited for (joined), as Python does at interpreter exit.
    for (p, daemon) in &mine {
        if *daemon {
            let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
        }
    }
    for (p, _) in mine {
        while let Err(nix::errno::Errno::EINTR) = waitpid(Pid::from_raw(p), None) {}
    }
}
