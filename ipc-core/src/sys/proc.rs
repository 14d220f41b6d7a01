//! Process identity that survives pid reuse: (pid, start time).

use std::sync::atomic::{AtomicU32, Ordering};

/// Cached `getpid()`, refreshed in every forked child by a `pthread_atfork`
/// handler so the hot paths never make a syscall for it.
static PID: AtomicU32 = AtomicU32::new(0);
static ATFORK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn refresh_pid_in_child() {
    // Async-signal-safe: one syscall and one atomic store.
    // Relaxed suffices: the child is single-threaded right after fork, and
    // every later thread is spawned (a happens-before edge) after this store.
    PID.store(std::process::id(), Ordering::Relaxed);
    TID_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// Bumped in every forked child so that thread-local tid caches (copied by
/// fork) are recognised as stale.
static TID_EPOCH: AtomicU32 = AtomicU32::new(0);

/// Cached packed identity of this process (see `TaskId::current_process`).
static SELF: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The calling process's id, cached.
pub fn pid() -> u32 {
    // Relaxed: PID is only ever written with this process's own id (here or in
    // the atfork child handler before any other code of the child runs).
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // Not a `Once`: a child forked while another thread of its parent was
    // inside `call_once` would wait forever for a registration that no
    // thread of the child will finish. A flag can only make us skip it.
    // Relaxed: the flag guards a one-time side effect, no data.
    if !ATFORK.swap(true, Ordering::Relaxed) {
        // SAFETY: registering a child handler that only does async-signal-safe work.
        unsafe { libc::pthread_atfork(None, None, Some(refresh_pid_in_child)) };
    }
    let p = std::process::id();
    PID.store(p, Ordering::Relaxed);
    p
}

thread_local! {
    /// The calling thread's tid, the fork epoch it was read in, and its
    /// packed identity (0 until first asked for): one thread-local for
    /// both, since a lock acquisition wants both.
    static ME: std::cell::Cell<(u32, u32, u64)> =
        const { std::cell::Cell::new((0, u32::MAX, 0)) };
}

/// The calling thread's kernel id (`gettid`), cached per thread and
/// re-read after a fork.
#[inline]
pub fn tid() -> u32 {
    me(false).0
}

/// The cached tid and (if `packed`) packed identity of the calling thread.
#[inline]
fn me(packed: bool) -> (u32, u64) {
    // Relaxed: bumped only in a forked child before any of its code runs.
    let epoch = TID_EPOCH.load(Ordering::Relaxed);
    ME.with(|c| {
        let (t, e, p) = c.get();
        if e == epoch && t != 0 && (p != 0 || !packed) {
            return (t, p);
        }
        let me = refresh_me(c.get(), epoch, packed);
        c.set(me);
        (me.0, me.2)
    })
}

/// Fills the cache of [`me`]: what is stale (another fork epoch) is read
/// again, the identity only when asked for.
#[cold]
fn refresh_me((t, e, p): (u32, u32, u64), epoch: u32, packed: bool) -> (u32, u32, u64) {
    pid(); // make sure the atfork handler that bumps the epoch is installed
    let (t, p) = if e == epoch && t != 0 {
        (t, p)
    } else {
        // SAFETY: gettid has no preconditions.
        (unsafe { libc::syscall(libc::SYS_gettid) } as u32, 0)
    };
    let p = if packed && p == 0 {
        TaskId {
            id: t,
            start: start_time(t).unwrap_or(0),
        }
        .pack()
    } else {
        p
    };
    (t, epoch, p)
}

/// The start time of task `id` (a pid or a tid) in clock ticks since boot,
/// field 22 of `/proc/<id>/stat`. `None` if no such task exists.
pub fn start_time(id: u32) -> Option<u64> {
    if id == 0 {
        return None;
    }
    let mut buf = [0u8; 1024];
    let path = format!("/proc/{id}/stat");
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).ok()?;
        let mut n = 0;
        loop {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => {
                    n += k;
                    if n == buf.len() {
                        break;
                    }
                }
                Err(_) => return None,
            }
        }
        n
    };
    let s = &buf[..n];
    // The command name (field 2) is in parentheses and may contain spaces or
    // ')' itself: fields after it start after the *last* ')'.
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&s[close + 1..]).ok()?;
    // rest = " S ppid ..." : field 3 is the first token; field 22 is token 20.
    let mut it = rest.split_ascii_whitespace();
    let state = it.next()?;
    if state == "Z" || state == "X" {
        // A zombie has released everything it held: treat it as dead.
        return None;
    }
    it.nth(18)?.parse().ok()
}

/// A process or thread identity immune to pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskId {
    /// pid or tid.
    pub id: u32,
    /// Start time in clock ticks since boot.
    pub start: u64,
}

impl TaskId {
    /// The identity of the calling process (its start time is read from
    /// `/proc` once per process and cached with its pid).
    pub fn current_process() -> TaskId {
        let id = pid();
        // Relaxed: the cache holds (pid << 40 | start) of this process only;
        // a forked child sees its parent's pid in it and reads afresh.
        let cached = SELF.load(Ordering::Relaxed);
        if cached != 0 && TaskId::unpack(cached).id == id {
            return TaskId::unpack(cached);
        }
        let me = TaskId {
            id,
            start: start_time(id).unwrap_or(0),
        };
        // A start time that could not be read (no descriptor left) is not
        // cached: the next call tries again.
        if me.start != 0 {
            SELF.store(me.pack(), Ordering::Relaxed);
        }
        me
    }

    /// Packs into 64 bits: 24 bits of id and 40 bits of start time
    /// (2^40 ticks at 100 Hz is over 300 years of uptime).
    pub fn pack(self) -> u64 {
        (u64::from(self.id) << 40) | (self.start & ((1 << 40) - 1))
    }

    /// Inverse of [`TaskId::pack`].
    pub fn unpack(v: u64) -> TaskId {
        TaskId {
            id: (v >> 40) as u32,
            start: v & ((1 << 40) - 1),
        }
    }

    /// Whether this exact task (not a later one reusing its id) is alive.
    pub fn is_alive(self) -> bool {
        match start_time(self.id) {
            Some(s) => (s & ((1 << 40) - 1)) == (self.start & ((1 << 40) - 1)),
            None => false,
        }
    }
}

/// Whether a task with this id exists at all (any start time; not a zombie).
pub fn exists(id: u32) -> bool {
    start_time(id).is_some()
}

/// Linux never hands out a pid or tid at or above this (`PID_MAX_LIMIT`
/// on 64-bit kernels).
pub const PID_MAX_LIMIT: u32 = 1 << 22;

/// `PF_KTHREAD` in the flags of `/proc/<id>/stat` (field 9).
const PF_KTHREAD: u64 = 0x0020_0000;

/// Whether task `id` (alive, not a zombie) could be a thread of a program
/// sharing our memory: a user-space thread whose owner is us or root.
/// `None` if no such task exists. A kernel thread, or a task of another
/// user when we are not root, is `Some(false)`: it cannot hold a lock in
/// a region only we (and root) may map.
///
/// # Examples
///
/// ```
/// use ipc_core::sys::proc;
/// assert_eq!(proc::is_user_task_of_ours(proc::tid()), Some(true));
/// assert_eq!(proc::is_user_task_of_ours(proc::PID_MAX_LIMIT), None);
/// ```
pub fn is_user_task_of_ours(id: u32) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    if id == 0 || id >= PID_MAX_LIMIT {
        return None;
    }
    let stat = std::fs::read(format!("/proc/{id}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // rest = " S ppid pgrp session tty tpgid flags ...": flags is token 6.
    let mut it = rest.split_ascii_whitespace();
    let state = it.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let flags: u64 = it.nth(5)?.parse().ok()?;
    if flags & PF_KTHREAD != 0 {
        return Some(false);
    }
    // The owner of /proc/<id> is the task's effective uid (root for a
    // non-dumpable task, which we accept).
    let owner = std::fs::metadata(format!("/proc/{id}")).ok()?.uid();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    Some(me == 0 || owner == me || owner == 0)
}

/// A cached identity of the calling thread, for lock ownership records.
#[inline]
pub fn current_thread_packed() -> u64 {
    me(true).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_identity_is_alive() {
        let me = TaskId::current_process();
        assert!(me.start > 0);
        assert!(me.is_alive());
        assert_eq!(TaskId::unpack(me.pack()), me);
        let stale = TaskId {
            id: me.id,
            start: me.start + 1,
        };
        assert!(!stale.is_alive());
    }

    #[test]
    fn tid_differs_per_thread() {
        let a = tid();
        let b = std::thread::spawn(tid).join().unwrap();
        assert_ne!(a, b);
        assert!(start_time(a).is_some());
    }
}
