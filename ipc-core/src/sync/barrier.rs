//! `Barrier`: wait until `parties` processes arrive.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::raw_lock::{Acquired, RawLock, LIVENESS_SLICE};
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

/// What the last party to arrive runs before the others are released.
#[derive(Clone)]
struct Action(Arc<dyn Fn() + Send + Sync>);

// A panicking action is caught in `wait`, which breaks the barrier: no
// state of the handle is left half-updated, so the handle stays
// unwind-safe as it was without an action.
impl std::panic::UnwindSafe for Action {}
impl std::panic::RefUnwindSafe for Action {}

/// A barrier for a fixed number of parties (Python's
/// `multiprocessing.Barrier`).
///
/// An [`action`](Barrier::with_action) and a default
/// [`timeout`](Barrier::with_timeout) belong to the handle, not to the
/// shared barrier: each process sets its own (a forked child inherits its
/// parent's; a handle opened by name or received from another process has
/// none until set). The action runs in the process of the party that
/// arrives last, exactly once per generation, before anyone is released.
///
/// If a process dies while it holds the barrier's internal lock (while
/// arriving, or while running the action), the parties waiting on that
/// generation find it within about 100 ms and get
/// [`Error::BrokenBarrier`] instead of waiting for ever.
///
/// # Examples
///
/// ```
/// use ipc_core::sync::Barrier;
/// let b = Barrier::new(1)?;
/// assert_eq!(b.wait()?, 0); // one party: passes at once
/// b.abort()?;
/// assert!(b.wait().is_err());
/// b.reset()?;
/// assert_eq!(b.wait()?, 0);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    raw: Shared<RawBarrier>,
    action: Option<Action>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("raw", &self.raw)
            .field("action", &self.action.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Releases the barrier's internal lock on every path out of a wait
/// (including a panicking action).
struct Held<'a>(&'a RawLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

fn lock_internal(lock: &RawLock, deadline: Option<Instant>) -> Result<Held<'_>> {
    match lock.lock(deadline) {
        // A dead holder of the internal lock is recovered like any other:
        // the fields it guards are single words, each valid on its own.
        Acquired::Clean | Acquired::OwnerDied => Ok(Held(lock)),
        Acquired::Busy => Err(Error::Timeout),
        Acquired::Corrupt(i) => Err(Error::Corrupt(i.describe())),
    }
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
        // Relaxed: published by the region's Release.
        let raw = Shared::create(Kind::Barrier, name, |b: &RawBarrier| {
            b.parties.store(parties, Ordering::Relaxed)
        })?;
        Ok(Self::from_raw(raw))
    }

    fn from_raw(raw: Shared<RawBarrier>) -> Barrier {
        Barrier {
            raw,
            action: None,
            timeout: None,
        }
    }

    /// Opens a named barrier.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Incompatible`].
    pub fn open(name: &str) -> Result<Barrier> {
        Ok(Self::from_raw(Shared::open(Kind::Barrier, name)?))
    }

    /// Sets the action this handle runs when its caller is the last party
    /// to arrive, before the others are released (Python's `action`). Set
    /// it in every process whose handle may arrive last.
    ///
    /// If the action panics, the barrier is broken (the other parties get
    /// [`Error::BrokenBarrier`]) and the panic resumes in the caller.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::sync::Barrier;
    /// use ipc_core::value::RawValue;
    /// let trips = RawValue::new(0u32)?;
    /// let t = trips.clone();
    /// let b = Barrier::new(1)?.with_action(move || t.set(t.get() + 1));
    /// b.wait()?;
    /// b.wait()?;
    /// assert_eq!(trips.get(), 2);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[must_use]
    pub fn with_action(mut self, action: impl Fn() + Send + Sync + 'static) -> Barrier {
        self.action = Some(Action(Arc::new(action)));
        self
    }

    /// Sets the timeout [`wait`](Barrier::wait) uses (Python's `timeout`).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::{sync::Barrier, Error};
    /// use std::time::Duration;
    /// let b = Barrier::new(2)?.with_timeout(Duration::from_millis(10));
    /// assert!(matches!(b.wait(), Err(Error::Timeout)));
    /// assert!(b.broken());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Barrier {
        self.timeout = Some(timeout);
        self
    }

    /// Waits for all parties (at most the [default
    /// timeout](Barrier::with_timeout), if set); returns this caller's
    /// arrival index (`0..parties`).
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken;
    /// [`Error::Timeout`] as for [`wait_timeout`](Barrier::wait_timeout);
    /// [`Error::Corrupt`] if its lock word was overwritten with garbage.
    pub fn wait(&self) -> Result<u32> {
        self.wait_opt(self.timeout.map(|t| Instant::now() + t))
    }

    /// Waits at most `timeout`. A timeout breaks the barrier for everyone
    /// (as in Python); the caller that timed out gets [`Error::Timeout`].
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::BrokenBarrier`], [`Error::Corrupt`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_opt(Some(Instant::now() + timeout))
    }

    fn wait_opt(&self, deadline: Option<Instant>) -> Result<u32> {
        let b = &*self.raw;
        let held = lock_internal(&b.lock, deadline)?;
        // Relaxed loads and stores below: all under the lock.
        if b.broken.load(Ordering::Relaxed) != 0 {
            return Err(Error::BrokenBarrier);
        }
        let g = b.gen.load(Ordering::Relaxed);
        let idx = b.count.load(Ordering::Relaxed);
        let parties = b.parties.load(Ordering::Relaxed).max(1);
        if idx + 1 >= parties {
            if let Some(Action(action)) = &self.action {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| action())) {
                    Self::break_locked(b, true);
                    drop(held);
                    futex::wake_all(&b.gen);
                    resume_unwind(panic);
                }
            }
            b.count.store(0, Ordering::Relaxed);
            // Release: pairs with the waiters' Acquire load of `gen`.
            b.gen.store(g.wrapping_add(1), Ordering::Release);
            drop(held);
            futex::wake_all(&b.gen);
            return Ok(idx.min(parties - 1));
        }
        b.count.store(idx + 1, Ordering::Relaxed);
        drop(held);
        loop {
            // Acquire: pairs with the Release stores of `gen`.
            if b.gen.load(Ordering::Acquire) != g {
                return if b.broken_gen.load(Ordering::Relaxed) == g.wrapping_add(1) {
                    Err(Error::BrokenBarrier)
                } else {
                    Ok(idx)
                };
            }
            if futex::wait_slice(&b.gen, g, deadline, LIVENESS_SLICE) == futex::WaitResult::TimedOut
            {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    if self.break_generation(true, Some(g))? {
                        return Err(Error::Timeout);
                    }
                } else {
                    self.break_if_holder_died(g)?;
                }
            }
        }
    }

    /// A waiter's periodic check: if the internal lock is held by a dead
    /// process (it died arriving, or running the action), generation `g`
    /// can never complete, so break it.
    fn break_if_holder_died(&self, g: u32) -> Result<()> {
        let b = &*self.raw;
        if !b.lock.is_locked() {
            return Ok(());
        }
        match b.lock.try_lock_or_recover() {
            Acquired::OwnerDied => {
                let _held = Held(&b.lock);
                // Relaxed: under the lock.
                if b.gen.load(Ordering::Relaxed) == g {
                    Self::break_locked(b, true);
                }
            }
            Acquired::Clean => {
                b.lock.unlock();
                return Ok(());
            }
            Acquired::Busy => return Ok(()),
            Acquired::Corrupt(i) => return Err(Error::Corrupt(i.describe())),
        }
        futex::wake_all(&b.gen);
        Ok(())
    }

    /// Breaks the barrier: current and future waiters get
    /// [`Error::BrokenBarrier`] until [`reset`](Self::reset).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if its lock word was overwritten with garbage.
    pub fn abort(&self) -> Result<()> {
        self.break_generation(true, None).map(drop)
    }

    /// Returns the barrier to its initial state; current waiters get
    /// [`Error::BrokenBarrier`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] if its lock word was overwritten with garbage.
    pub fn reset(&self) -> Result<()> {
        self.break_generation(false, None).map(drop)
    }

    /// Breaks the current generation; with `only`, only if it is still
    /// generation `only` (checked under the lock, so a timed-out waiter
    /// never breaks a generation that completed meanwhile). Returns whether
    /// it broke it.
    fn break_generation(&self, set_broken: bool, only: Option<u32>) -> Result<bool> {
        let b = &*self.raw;
        let held = lock_internal(&b.lock, None)?;
        // Relaxed: under the lock.
        if only.is_some_and(|o| o != b.gen.load(Ordering::Relaxed)) {
            return Ok(false);
        }
        Self::break_locked(b, set_broken);
        drop(held);
        futex::wake_all(&b.gen);
        Ok(true)
    }

    /// Ends the current generation as broken. The caller holds the lock and
    /// wakes the waiters after releasing it.
    fn break_locked(b: &RawBarrier, set_broken: bool) {
        // Relaxed: under the lock; `gen`'s Release publishes them.
        let g = b.gen.load(Ordering::Relaxed);
        if b.count.load(Ordering::Relaxed) > 0 {
            b.broken_gen.store(g.wrapping_add(1), Ordering::Relaxed);
        }
        b.count.store(0, Ordering::Relaxed);
        b.broken.store(u32::from(set_broken), Ordering::Relaxed);
        b.gen.store(g.wrapping_add(1), Ordering::Release);
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

/// A barrier travels without its action and timeout (they are this
/// process's): the receiver sets its own.
impl crate::travel::Travel for Barrier {
    fn token(&self) -> crate::travel::Token {
        self.raw.token()
    }
    fn from_token(t: crate::travel::Token) -> Result<Self> {
        Ok(Self::from_raw(Shared::from_token(Kind::Barrier, &t)?))
    }
}
crate::travel::travel_via_token!([] Barrier);
