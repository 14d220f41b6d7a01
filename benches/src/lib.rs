//! Helpers shared by the benchmarks: a forked peer process that is killed
//! and reaped when dropped, so a benchmark never leaves a stray process;
//! the bulk one-way cases ([`bulk`]) and, with the `iceoryx2` feature, the
//! iceoryx2 peer (`ice`).

pub mod bulk;
#[cfg(feature = "iceoryx2")]
pub mod ice;

use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

/// A forked child running a peer loop.
#[derive(Debug)]
pub struct Peer {
    pid: Pid,
    /// Set once `join_timeout` has reaped the child: its pid may be reused.
    reaped: bool,
}

/// Pins the calling thread to `cpu` (if the machine has it); returns
/// whether it did.
pub fn pin_to(cpu: usize) -> bool {
    if cpu >= ipc_core::process::cpu_count() {
        return false;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below the number of CPUs, within the set's capacity.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Lets the calling thread run on every CPU again.
pub fn unpin() {
    // SAFETY: as in `pin_to`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..ipc_core::process::cpu_count() {
        // SAFETY: as in `pin_to`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: as in `pin_to`.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

impl Peer {
    /// Forks a child that runs `f` then exits; it dies with its parent.
    /// With two or more CPUs the parent is pinned to CPU 0 and the child to
    /// CPU 1 (until the peer is dropped), so that two spinning processes
    /// never share a core because of load left by an earlier benchmark.
    pub fn spawn(f: impl FnOnce()) -> Peer {
        pin_to(0);
        // SAFETY: the child runs only `f` and then `_exit`s.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Parent { child } => Peer {
                pid: child,
                reaped: false,
            },
            ForkResult::Child => {
                pin_to(1);
                // SAFETY: prctl with a valid signal number.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                f();
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(0) }
            }
        }
    }
}

impl Peer {
    /// Waits up to `timeout` for the child to exit by itself (so that it
    /// can clean up, e.g. iceoryx2's node files), then kills and reaps it.
    pub fn join_timeout(mut self, timeout: std::time::Duration) {
        use nix::sys::wait::{WaitPidFlag, WaitStatus};
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    self.reaped = true;
                    break;
                }
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
                Err(_) => break,
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
        unpin();
    }
}

/// The hardware floor of a cross-process round trip: this process and a
/// forked peer spinning on one cache line each (no ipc code involved).
#[derive(Debug)]
pub struct SpinPair {
    // Field order: the peer is stopped (dropped) before the region goes.
    _peer: Peer,
    region: ipc_core::region::Region,
    seq: u64,
}

impl SpinPair {
    /// Maps the two lines and starts the echoing peer.
    pub fn new() -> SpinPair {
        use ipc_core::region::{Kind, Region};
        let region = Region::builder(Kind::Raw).size(256).create().unwrap();
        let (ping, pong) = Self::words(&region);
        let peer = Peer::spawn(|| {
            let mut last = 0;
            loop {
                let v = ping.load(Ordering::Acquire);
                if v != last {
                    last = v;
                    pong.store(v, Ordering::Release);
                }
                std::hint::spin_loop();
            }
        });
        SpinPair {
            _peer: peer,
            region,
            seq: 0,
        }
    }

    fn words(region: &ipc_core::region::Region) -> (&AtomicU64, &AtomicU64) {
        let words = region.payload().cast::<AtomicU64>();
        // SAFETY: 256 zeroed, 128-aligned bytes mapped while `region` lives
        // (inherited by the peer, which is killed before it goes); the two
        // words sit on different cache lines; AtomicU64 accepts any bits.
        unsafe { (&*words, &*words.add(16)) }
    }

    /// `n` round trips.
    pub fn round_trips(&mut self, n: u64) {
        let (ping, pong) = Self::words(&self.region);
        for _ in 0..n {
            self.seq += 1;
            ping.store(self.seq, Ordering::Release);
            while pong.load(Ordering::Acquire) != self.seq {
                std::hint::spin_loop();
            }
        }
    }
}

impl Default for SpinPair {
    fn default() -> Self {
        Self::new()
    }
}
