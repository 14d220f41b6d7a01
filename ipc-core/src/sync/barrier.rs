//! `Barrier`: wait until `parties` processes arrive.

use std::time::{Duration, Instant};

use super::raw_lock::{Acquired, RawLock};
use crate::atomic::{AtomicU32, Ordering};
use crate::region::Kind;
use crate::shared::{Shared, ShmSafe};
use crate::sys::futex;
use crate::{Error, Result};

/// ```text
/// lock        guards count, broken and the generation change
/// parties     fixed at creation
/// count       arrivals in the current generation
/// gen         generation number; the futex word waiters sleep on. A change
///             ends the wait of everyone of the previous generation
/// broken      1 after abort (or a timeout) until reset
/// broken_gen  g + 1 if generation g's waiters were released by abort or
///             reset rather than by the last arrival
/// ```
/// `gen` is changed only under the lock with Release; waiters read it with
/// Acquire, so `broken` and `broken_gen` (written before it) are visible.
#[repr(C)]
pub(crate) struct RawBarrier {
    lock: RawLock,
    parties: AtomicU32,
    count: AtomicU32,
    gen: AtomicU32,
    broken: AtomicU32,
    broken_gen: AtomicU32,
}

// SAFETY: #[repr(C)], atomics only; zeroed plus `parties` set at creation.
unsafe impl ShmSafe for RawBarrier {}

/// A barrier for a fixed number of parties (Python's
/// `multiprocessing.Barrier`).
///
/// # Examples
///
/// ```
/// use ipc_core::sync::Barrier;
/// let b = Barrier::new(1)?;
/// assert_eq!(b.wait()?, 0); // one party: passes at once
/// b.abort();
/// assert!(b.wait().is_err());
/// b.reset();
/// assert_eq!(b.wait()?, 0);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Barrier {
    raw: Shared<RawBarrier>,
}

impl Barrier {
    /// Creates an anonymous barrier for `parties` (at least 1).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero parties, [`Error::Io`].
    pub fn new(parties: u32) -> Result<Barrier> {
        Self::make(None, parties)
    }

    /// Creates a named barrier.
    ///
    /// # Errors
    /// As [`Barrier::new`], plus [`Error::AlreadyExists`], [`Error::InvalidName`].
    pub fn create(name: &str, parties: u32) -> Result<Barrier> {
        Self::make(Some(name), parties)
    }

    fn make(name: Option<&str>, parties: u32) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::InvalidArgument("a barrier needs at least one party"));
        }
        Ok(Barrier {
            // Relaxed: published by the region's Release.
            raw: Shared::create(Kind::Barrier, name, |b: &RawBarrier| {
                b.parties.store(parties, Ordering::Relaxed)
            })?,
        })
    }

    /// Opens a named barrier.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Incompatible`].
    pub fn open(name: &str) -> Result<Barrier> {
        Ok(Barrier {
            raw: Shared::open(Kind::Barrier, name)?,
        })
    }

    /// Waits for all parties; returns this caller's arrival index
    /// (`0..parties`).
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken.
    pub fn wait(&self) -> Result<u32> {
        self.wait_opt(None)
    }

    /// Waits at most `timeout`. A timeout breaks the barrier for everyone
    /// (as in Python); the caller that timed out gets [`Error::Timeout`].
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::BrokenBarrier`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_opt(Some(Instant::now() + timeout))
    }

    fn wait_opt(&self, deadline: Option<Instant>) -> Result<u32> {
        let b = &*self.raw;
        if b.lock.lock(deadline) == Acquired::Busy {
            return Err(Error::Timeout);
        }
        // Relaxed loads and stores below: all under the lock.
        if b.broken.load(Ordering::Relaxed) != 0 {
            b.lock.unlock();
            return Err(Error::BrokenBarrier);
        }
        let g = b.gen.load(Ordering::Relaxed);
        let idx = b.count.load(Ordering::Relaxed);
        let parties = b.parties.load(Ordering::Relaxed).max(1);
        if idx + 1 >= parties {
            b.count.store(0, Ordering::Relaxed);
            // Release: pairs with the waiters' Acquire load of `gen`.
            b.gen.store(g.wrapping_add(1), Ordering::Release);
            b.lock.unlock();
            futex::wake_all(&b.gen);
            return Ok(idx.min(parties - 1));
        }
        b.count.store(idx + 1, Ordering::Relaxed);
        b.lock.unlock();
        loop {
            // Acquire: pairs with the Release stores of `gen`.
            if b.gen.load(Ordering::Acquire) != g {
                return if b.broken_gen.load(Ordering::Relaxed) == g.wrapping_add(1) {
                    Err(Error::BrokenBarrier)
                } else {
                    Ok(idx)
                };
            }
            if futex::wait(&b.gen, g, deadline) == futex::WaitResult::TimedOut
                && self.break_generation(true, Some(g))
            {
                return Err(Error::Timeout);
            }
        }
    }

    /// Breaks the barrier: current and future waiters get
    /// [`Error::BrokenBarrier`] until [`reset`](Self::reset).
    pub fn abort(&self) {
        self.break_generation(true, None);
    }

    /// Returns the barrier to its initial state; current waiters get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        self.break_generation(false, None);
    }

    /// Breaks the current generation; with `only`, only if it is still
    /// generation `only` (checked under the lock, so a timed-out waiter
    /// never breaks a generation that completed meanwhile). Returns whether
    /// it broke it.
    fn break_generation(&self, set_broken: bool, only: Option<u32>) -> bool {
        let b = &*self.raw;
        // A dead holder of the internal lock is recovered like any other.
        b.lock.lock(None);
        // Relaxed: under the lock; `gen`'s Release publishes them.
        let g = b.gen.load(Ordering::Relaxed);
        if only.is_some_and(|o| o != g) {
            b.lock.unlock();
            return false;
        }
        if b.count.load(Ordering::Relaxed) > 0 {
            b.broken_gen.store(g.wrapping_add(1), Ordering::Relaxed);
        }
        b.count.store(0, Ordering::Relaxed);
        b.broken.store(u32::from(set_broken), Ordering::Relaxed);
        b.gen.store(g.wrapping_add(1), Ordering::Release);
        b.lock.unlock();
        futex::wake_all(&b.gen);
        true
    }

    /// Number of parties needed to pass.
    pub fn parties(&self) -> u32 {
        // Relaxed: fixed since creation.
        self.raw.parties.load(Ordering::Relaxed)
    }

    /// Number of parties currently waiting.
    pub fn n_waiting(&self) -> u32 {
        // Relaxed: a snapshot.
        self.raw.count.load(Ordering::Relaxed)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        // Relaxed: a snapshot.
        self.raw.broken.load(Ordering::Relaxed) != 0
    }

    /// The name it was created or opened with.
    pub fn name(&self) -> Option<&str> {
        self.raw.region().name()
    }
}

super::simple_travel!(Barrier, Kind::Barrier);
