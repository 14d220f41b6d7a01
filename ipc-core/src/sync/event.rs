//! `Event`: a flag processes can wait for.

use std::time::{Duration, Instant};

use crate::atomic::{AtomicU32, Ordering};
use crate::region::Kind;
use crate::shared::{Shared, ShmSafe};
use crate::sys::futex;
use crate::Result;

#[cfg(feature = "tokio")]
mod aio;

/// ```text
/// flag     bit 0: set; bits 1..: number of clear->set transitions (the
///          generation). The futex word.
/// waiters  threads sleeping or about to; `set` wakes only if > 0
/// ```
/// A waiter returns once the flag is set *or* the generation moved: a
/// `set()` quickly followed by `clear()` still releases everyone who was
/// waiting (as Python's `Event.wait` returns `True` after the notify).
/// Dekker pair as in the semaphore: `set` changes the word then reads
/// `waiters`; a waiter increments `waiters` then reads the word (SeqCst).
#[repr(C)]
pub(crate) struct RawEvent {
    flag: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: #[repr(C)], atomics only; all-zero is "clear, nobody waiting".
unsafe impl ShmSafe for RawEvent {}

/// An event flag shared between processes (Python's `multiprocessing.Event`).
///
/// # Examples
///
/// ```
/// use ipc_core::sync::Event;
/// use std::time::Duration;
/// let e = Event::new()?;
/// assert!(!e.wait_timeout(Duration::from_millis(1)));
/// e.set();
/// assert!(e.is_set());
/// e.wait();
/// e.clear();
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Event {
    raw: Shared<RawEvent>,
}

impl Event {
    /// Creates an anonymous, clear event.
    ///
    /// # Errors
    /// [`crate::Error::Io`].
    pub fn new() -> Result<Event> {
        Ok(Event {
            raw: Shared::create(Kind::Event, None, |_| {})?,
        })
    }

    /// Creates a named, clear event.
    ///
    /// # Errors
    /// [`crate::Error::AlreadyExists`], [`crate::Error::InvalidName`].
    pub fn create(name: &str) -> Result<Event> {
        Ok(Event {
            raw: Shared::create(Kind::Event, Some(name), |_| {})?,
        })
    }

    /// Opens a named event.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`], [`crate::Error::Incompatible`].
    pub fn open(name: &str) -> Result<Event> {
        Ok(Event {
            raw: Shared::open(Kind::Event, name)?,
        })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut w = self.raw.flag.load(Ordering::SeqCst);
        loop {
            if w & 1 != 0 {
                return;
            }
            let next = ((w >> 1).wrapping_add(1) << 1) | 1;
            match self
                .raw
                .flag
                .compare_exchange_weak(w, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        if self.raw.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&self.raw.flag);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        // Release: orders the caller's prior writes before the clear (a
        // clear publishes nothing itself; the generation bits are kept).
        self.raw.flag.fetch_and(!1, Ordering::Release);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        // Acquire: pairs with the SeqCst CAS in `set`, so data written
        // before `set` is visible once we see the flag.
        self.raw.flag.load(Ordering::Acquire) & 1 != 0
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.wait_opt(None);
    }

    /// Waits at most `timeout`; returns whether the flag is set (Python's
    /// `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_opt(Some(Instant::now() + timeout))
    }

    fn wait_opt(&self, deadline: Option<Instant>) -> bool {
        // Acquire: as in `is_set`.
        let start = self.raw.flag.load(Ordering::Acquire);
        if start & 1 != 0 {
            return true;
        }
        let released = |w: u32| w & 1 != 0 || (w >> 1) != (start >> 1);
        self.raw.waiters.fetch_add(1, Ordering::SeqCst);
        let set = loop {
            let w = self.raw.flag.load(Ordering::SeqCst);
            if released(w) {
                break true;
            }
            if futex::wait(&self.raw.flag, w, deadline) == futex::WaitResult::TimedOut {
                break released(self.raw.flag.load(Ordering::SeqCst));
            }
        };
        self.raw.waiters.fetch_sub(1, Ordering::SeqCst);
        set
    }

    /// The name it was created or opened with.
    pub fn name(&self) -> Option<&str> {
        self.raw.region().name()
    }
}

super::simple_travel!(Event, Kind::Event);
