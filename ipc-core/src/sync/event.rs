//! `Event`: a flag processes can wait for.

use std::time::{Duration, Instant};

use crate::atomic::{AtomicU32, Ordering};
use crate::region::Kind;
use crate::shared::{Shared, ShmSafe};
use crate::sys::futex;
use crate::Result;

/// ```text
/// flag     0 clear, 1 set; the futex word
/// waiters  threads sleeping or about to; `set` wakes only if > 0
/// ```
/// Dekker pair as in the semaphore: `set` stores the flag then reads
/// `waiters`; a waiter increments `waiters` then reads the flag (SeqCst).
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
        if self.raw.flag.swap(1, Ordering::SeqCst) == 0
            && self.raw.waiters.load(Ordering::SeqCst) > 0
        {
            futex::wake_all(&self.raw.flag);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        // Release: orders the caller's prior writes before the clear
        // (harmless and cheap; a clear publishes nothing itself).
        self.raw.flag.store(0, Ordering::Release);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        // Acquire: pairs with the SeqCst swap in `set`, so data written
        // before `set` is visible once we see the flag.
        self.raw.flag.load(Ordering::Acquire) != 0
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
        if self.is_set() {
            return true;
        }
        self.raw.waiters.fetch_add(1, Ordering::SeqCst);
        let set = loop {
            if self.raw.flag.load(Ordering::SeqCst) != 0 {
                break true;
            }
            if futex::wait(&self.raw.flag, 0, deadline) == futex::WaitResult::TimedOut {
                break self.is_set();
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
