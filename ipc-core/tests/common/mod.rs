//! Helpers for cross-process tests: fork a child that runs a closure and
//! exits with its status, wait for it with a deadline, unique names, and a
//! check that no region is left behind.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Forks a child that runs `f` and exits with its return value (101 if it
/// panics). The child dies with its parent thread (PR_SET_PDEATHSIG), and
/// never runs the parent's destructors (`_exit`).
pub fn fork_child(f: impl FnOnce() -> i32) -> Pid {
    // Make sure ipc's fork handler is registered before we fork.
    ipc_core::sys::proc::pid();
    // SAFETY: the child only runs `f` (code of this test) and `_exit`s.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let code = catch_unwind(AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: _exit never returns and runs no destructors.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Forks a child that takes ownership of its own copy of `*val` (the
/// parent keeps its original), runs `f` and exits with its return value.
/// This is how a Python test hands both ends of a pipe to a child and then
/// closes the unused end in each process.
pub fn fork_with<T>(val: &T, f: impl FnOnce(T) -> i32) -> Pid {
    let p: *const T = val;
    fork_child(move || {
        // SAFETY: this runs only in the forked child, whose memory is a
        // private copy of the parent's. The child moves its copy of `*val`
        // out exactly once and never touches (or drops) the original slot
        // again: `fork_child` ends the child with `_exit`.
        let owned = unsafe { std::ptr::read(p) };
        f(owned)
    })
}

/// Waits for `pid` to exit, at most `limit`; kills it and panics on timeout.
pub fn wait_exit_within(pid: Pid, limit: Duration) -> WaitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
            WaitStatus::StillAlive => {
                if Instant::now() > deadline {
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    panic!("child {pid} did not exit within {limit:?}");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            s => return s,
        }
    }
}

/// Waits for `pid` (at most 60 s) and asserts it exited with status 0.
pub fn join_ok(pid: Pid) {
    match wait_exit_within(pid, Duration::from_secs(60)) {
        WaitStatus::Exited(_, 0) => {}
        s => panic!("child {pid} failed: {s:?}"),
    }
}

/// Kills `pid` with SIGKILL and reaps it.
pub fn kill_and_reap(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = wait_exit_within(pid, Duration::from_secs(10));
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A region name unique to this process and call.
pub fn unique(tag: &str) -> String {
    format!(
        "test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Asserts the named region no longer exists in `/dev/shm`.
pub fn assert_gone(name: &str) {
    let p = format!("/dev/shm/ipc.{name}");
    assert!(
        !std::path::Path::new(&p).exists(),
        "region left behind: {p}"
    );
}

/// Polls `f` until it is true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let d = Instant::now() + limit;
    while Instant::now() < d {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    f()
}

/// Offset of `needle` in a region's payload (tests that scribble on a
/// message's bytes find them this way).
pub fn find(region: &ipc_core::region::Region, needle: &[u8]) -> Option<usize> {
    let len = region.payload_len();
    let mut hay = vec![0u8; len];
    // SAFETY: the payload is `len` readable bytes.
    unsafe { std::ptr::copy_nonoverlapping(region.payload(), hay.as_mut_ptr(), len) };
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Runs `body` in a forked child that has its own empty tmpfs of `size`
/// (e.g. `"1m"`) on `/dev/shm`, in a private mount namespace, and asserts
/// that the child exited with 0 (a SIGBUS shows up here as a signal).
/// Returns `false`, saying why, if the namespace cannot be set up.
pub fn in_private_shm(size: &str, body: impl FnOnce() -> i32) -> bool {
    const SKIP: i32 = 77;
    let opts = std::ffi::CString::new(format!("size={size},mode=1777")).unwrap();
    let kid = fork_child(move || {
        // SAFETY: unshare and mount with valid NUL-terminated strings (or
        // null where the call allows it), in a single-threaded child.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                || libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/dev/shm".as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    opts.as_ptr().cast(),
                ) != 0
            {
                return SKIP;
            }
        }
        body()
    });
    match wait_exit_within(kid, Duration::from_secs(120)) {
        nix::sys::wait::WaitStatus::Exited(_, 0) => true,
        nix::sys::wait::WaitStatus::Exited(_, SKIP) => {
            eprintln!(
                "SKIPPED: cannot mount a private /dev/shm (needs root with CAP_SYS_ADMIN): {}",
                std::io::Error::last_os_error()
            );
            false
        }
        nix::sys::wait::WaitStatus::Signaled(_, sig, _) => {
            panic!("the test body was killed by {sig:?}")
        }
        s => panic!("the test body failed ({s:?}); its panic message is above"),
    }
}
