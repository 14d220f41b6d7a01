//! Helpers shared by the benchmarks: a forked peer process that is killed
//! and reaped when dropped, so a benchmark never leaves a stray process.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

/// A forked child running a peer loop.
#[derive(Debug)]
pub struct Peer {
    pid: Pid,
}

impl Peer {
    /// Forks a child that runs `f` then exits; it dies with its parent.
    pub fn spawn(f: impl FnOnce()) -> Peer {
        // SAFETY: the child runs only `f` and then `_exit`s.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Parent { child } => Peer { pid: child },
            ForkResult::Child => {
                // SAFETY: prctl with a valid signal number.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                f();
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(0) }
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}
