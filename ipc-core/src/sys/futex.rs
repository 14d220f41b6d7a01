//! Shared (inter-process) futex wait and wake.
//!
//! Unlike `std` and `parking_lot`, we never pass `FUTEX_PRIVATE_FLAG`: the
//! waiters live in other processes that map the same page, and a private
//! futex is keyed by (mm, address) so it could never wake them.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

pub use super::futex_common::WaitResult;

/// Converts a deadline on the monotonic clock into an absolute `timespec`
/// for `FUTEX_WAIT_BITSET`, which measures against `CLOCK_MONOTONIC`.
fn abs_timespec(deadline: Instant) -> libc::timespec {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let total_ns = now.tv_nsec as u128 + remaining.subsec_nanos() as u128;
    let secs = (now.tv_sec as u64)
        .saturating_add(remaining.as_secs())
        .saturating_add((total_ns / 1_000_000_000) as u64);
    libc::timespec {
        tv_sec: secs.min(i64::MAX as u64) as libc::time_t,
        tv_nsec: (total_ns % 1_000_000_000) as libc::c_long,
    }
}

/// The `timespec` argument of the futex calls: null for no deadline.
fn ts_ptr(ts: Option<&libc::timespec>) -> *const libc::timespec {
    ts.map_or(std::ptr::null(), |t| t as *const libc::timespec)
}

/// Sleeps while `*word == expected`, until woken or `deadline` passes.
///
/// `EINTR` is retried (the deadline is absolute, so no time is gained);
/// `EAGAIN` (the value already changed) is reported as [`WaitResult::Woken`].
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> WaitResult {
    let ts = deadline.map(abs_timespec);
    loop {
        if let Some(d) = deadline {
            if Instant::now() >= d {
                return WaitResult::TimedOut;
            }
        }
        let ts_ptr = ts_ptr(ts.as_ref());
        // SAFETY: `word` is a valid, aligned u32 for the duration of the call;
        // the kernel only reads it. `ts_ptr` is null or points to a live timespec.
        // FUTEX_WAIT_BITSET with MATCH_ANY takes an absolute CLOCK_MONOTONIC time.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT_BITSET,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            )
        };
        if r == 0 {
            return WaitResult::Woken;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ETIMEDOUT) => return WaitResult::TimedOut,
            // EAGAIN: value changed before we slept. Anything else (EFAULT on a
            // torn-down mapping cannot happen while we hold `&AtomicU32`) is
            // treated as a wake-up so the caller re-checks its condition.
            _ => return WaitResult::Woken,
        }
    }
}

/// Like [`wait`] but never sleeps past `now + slice`, so the caller can
/// periodically check for a dead peer.
pub fn wait_slice(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<Instant>,
    slice: Duration,
) -> WaitResult {
    let cap = Instant::now() + slice;
    let d = match deadline {
        Some(d) if d < cap => d,
        _ => cap,
    };
    wait(word, expected, Some(d))
}

/// Wakes up to `n` waiters sleeping on `word`. Returns how many were woken.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32) as i32;
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not access memory
    // beyond using the address as a key.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    r.max(0) as usize
}

/// Wakes every waiter sleeping on `word`.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, u32::MAX)
}

/// Most futexes one [`wait_any`] call sleeps on (the kernel's
/// `FUTEX_WAITV_MAX`).
pub const WAIT_ANY_MAX: usize = 128;

/// One futex of a `futex_waitv` call (the kernel's `struct futex_waitv`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitV {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

impl WaitV {
    /// A 32-bit futex at `word`, shared between processes unless `private`.
    pub(crate) fn new(word: *const AtomicU32, expected: u32, private: bool) -> WaitV {
        const FUTEX2_SIZE_U32: u32 = 0x02;
        const FUTEX2_PRIVATE: u32 = 128;
        WaitV {
            val: u64::from(expected),
            uaddr: word as u64,
            flags: FUTEX2_SIZE_U32 | if private { FUTEX2_PRIVATE } else { 0 },
            reserved: 0,
        }
    }

    /// The futex's address.
    #[cfg(feature = "tokio")]
    pub(crate) fn addr(&self) -> usize {
        self.uaddr as usize
    }
}

/// The one `futex_waitv` call (Linux 5.16): sleeps until one of `futexes`
/// is woken (`Ok(i)`), or fails with the errno (`EAGAIN`: a value already
/// differs, `ETIMEDOUT`, `EINTR`, `EFAULT`, `ENOSYS`, ...).
///
/// # Safety
/// Every `uaddr` must be a 4-aligned address that was mapped when the
/// entry was built; if it may have been unmapped since, the kernel reports
/// `EFAULT`, so the memory itself need not be live.
unsafe fn futex_waitv(futexes: &[WaitV], ts: Option<&libc::timespec>) -> Result<usize, i32> {
    debug_assert!(!futexes.is_empty() && futexes.len() <= WAIT_ANY_MAX);
    // SAFETY: `futexes` is a live array of `len` (<= FUTEX_WAITV_MAX)
    // kernel `futex_waitv`s; the kernel reads each uaddr with fault
    // handling (EFAULT, never a signal), and the caller vouches for the
    // addresses. The timespec is null or a live absolute CLOCK_MONOTONIC
    // time.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            futexes.as_ptr(),
            futexes.len() as libc::c_uint,
            0 as libc::c_uint,
            ts_ptr(ts),
            libc::CLOCK_MONOTONIC,
        )
    };
    usize::try_from(r).map_err(|_| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// Sleeps until any of `words[i].0` differs from `words[i].1` (or is woken),
/// or `deadline` passes (`futex_waitv`, Linux 5.16). At most
/// [`WAIT_ANY_MAX`] words are watched; on a kernel without `futex_waitv`
/// it sleeps on the first word for at most a millisecond, so the caller's
/// re-check loop still sees the others change.
///
/// # Examples
///
/// ```
/// use ipc_core::sys::futex::{wait_any, WaitResult};
/// use std::sync::atomic::AtomicU32;
/// use std::time::{Duration, Instant};
/// let (a, b) = (AtomicU32::new(0), AtomicU32::new(5));
/// // `b` is not 4: returns at once.
/// assert_eq!(wait_any(&[(&a, 0), (&b, 4)], None), WaitResult::Woken);
/// let d = Instant::now() + Duration::from_millis(10);
/// assert_eq!(wait_any(&[(&a, 0), (&b, 5)], Some(d)), WaitResult::TimedOut);
/// ```
pub fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> WaitResult {
    let Some(first) = words.first() else {
        if let Some(d) = deadline {
            std::thread::sleep(d.saturating_duration_since(Instant::now()));
        }
        return WaitResult::TimedOut;
    };
    let v: Vec<WaitV> = words
        .iter()
        .take(WAIT_ANY_MAX)
        .map(|(w, e)| WaitV::new(*w, *e, false))
        .collect();
    let ts = deadline.map(abs_timespec);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return WaitResult::TimedOut;
        }
        // SAFETY: the addresses are aligned u32 words borrowed for the
        // whole call.
        match unsafe { futex_waitv(&v, ts.as_ref()) } {
            Ok(_) => return WaitResult::Woken,
            Err(libc::EINTR) => continue,
            Err(libc::ETIMEDOUT) => return WaitResult::TimedOut,
            Err(libc::ENOSYS) => {
                return wait_slice(first.0, first.1, deadline, Duration::from_millis(1))
            }
            // EAGAIN: a word already changed; anything else is reported as a
            // wake-up so the caller re-checks.
            Err(_) => return WaitResult::Woken,
        }
    }
}

/// Wakes one waiter of a futex private to this process (a waiter thread's
/// control word, in ordinary memory).
#[cfg(feature = "tokio")]
pub(crate) fn wake_private(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE only uses the
    // address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
}

/// Sleeps until one of `futexes` is woken, one of them no longer holds its
/// expected value, or `deadline` passes (`futex_waitv`, Linux 5.16).
/// Returns `Some(i)` if futex `i` was woken, `None` otherwise (a changed
/// value, a timeout, a signal, a fault): the caller re-checks everything.
/// At most [`WAIT_ANY_MAX`] futexes.
///
/// # Safety
/// As for [`futex_waitv`]: every `uaddr` must be a 4-aligned address that
/// was mapped when the entry was built (a since-unmapped one is `EFAULT`,
/// which is `None` here).
#[cfg(feature = "tokio")]
pub(crate) unsafe fn wait_many(futexes: &[WaitV], deadline: Option<Instant>) -> Option<usize> {
    let ts = deadline.map(abs_timespec);
    // SAFETY: the caller upholds `futex_waitv`'s contract (see above).
    unsafe { futex_waitv(futexes, ts.as_ref()) }.ok()
}
