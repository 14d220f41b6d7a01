//! `Semaphore` and `BoundedSemaphore`.

use std::time::{Duration, Instant};

use crate::atomic::{spin_hint, AtomicU32, Ordering};
use crate::region::Kind;
use crate::shared::{Shared, ShmSafe};
use crate::sys::futex;
use crate::{Error, Result};

/// ```text
/// value    permits available; the futex word (sleepers wait for value != 0)
/// waiters  number of threads in the slow path; release wakes only if > 0
/// max      0 for an unbounded semaphore, else the bound
/// ```
/// `value` and `waiters` form a Dekker pair: the releaser increments
/// `value` then reads `waiters`; a waiter increments `waiters` then reads
/// `value`. Both sides use SeqCst so at least one sees the other.
#[repr(C)]
pub(crate) struct RawSemaphore {
    value: AtomicU32,
    waiters: AtomicU32,
    max: AtomicU32,
}

// SAFETY: #[repr(C)], atomics only; all-zero is "no permits, unbounded".
unsafe impl ShmSafe for RawSemaphore {}

impl RawSemaphore {
    fn try_acquire(&self) -> bool {
        // Acquire on success: pairs with the Release half of `release`'s
        // SeqCst RMW, so what the releaser wrote before is visible.
        // Relaxed: a starting guess; the Acquire CAS decides.
        let mut v = self.value.load(Ordering::Relaxed);
        while v > 0 {
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    fn acquire(&self, deadline: Option<Instant>) -> bool {
        if self.try_acquire() {
            return true;
        }
        for _ in 0..50 {
            spin_hint();
            if self.try_acquire() {
                return true;
            }
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let got = loop {
            if self.value.load(Ordering::SeqCst) > 0 && self.try_acquire() {
                break true;
            }
            if futex::wait(&self.value, 0, deadline) == futex::WaitResult::TimedOut {
                break self.try_acquire();
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        got
    }

    fn release(&self) -> Result<()> {
        // Relaxed: `max` is written once before the region is published.
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            self.value.fetch_add(1, Ordering::SeqCst);
        } else {
            // Relaxed: a starting guess; the SeqCst CAS decides.
            let mut v = self.value.load(Ordering::Relaxed);
            loop {
                if v >= max {
                    return Err(Error::ReleasedTooManyTimes);
                }
                match self.value.compare_exchange_weak(
                    v,
                    v + 1,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => v = now,
                }
            }
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.value, 1);
        }
        Ok(())
    }
}

macro_rules! semaphore_api {
    ($ty:ident, $bounded:expr, $doc_example:literal) => {
        impl $ty {
            /// Creates an anonymous semaphore with `value` permits.
            ///
            /// # Errors
            /// [`Error::Io`].
            ///
            /// # Examples
            ///
            #[doc = $doc_example]
            pub fn new(value: u32) -> Result<$ty> {
                Self::make(None, value)
            }

            /// Creates a named semaphore with `value` permits.
            ///
            /// # Errors
            /// [`Error::AlreadyExists`], [`Error::InvalidName`], [`Error::Io`].
            pub fn create(name: &str, value: u32) -> Result<$ty> {
                Self::make(Some(name), value)
            }

            fn make(name: Option<&str>, value: u32) -> Result<$ty> {
                let max = if $bounded {
                    if value == 0 {
                        return Err(Error::InvalidArgument(
                            "a bounded semaphore needs at least one permit",
                        ));
                    }
                    value
                } else {
                    0
                };
                let raw = Shared::create(Kind::Semaphore, name, |s: &RawSemaphore| {
                    // Relaxed: published by the region's Release.
                    s.value.store(value, Ordering::Relaxed);
                    s.max.store(max, Ordering::Relaxed);
                })?;
                Ok($ty { raw })
            }

            /// Opens a named semaphore.
            ///
            /// # Errors
            /// [`Error::NotFound`], [`Error::Incompatible`] (also when the
            /// boundedness differs).
            pub fn open(name: &str) -> Result<$ty> {
                let raw: Shared<RawSemaphore> = Shared::open(Kind::Semaphore, name)?;
                // Relaxed: written before the region was published (Acquire in open).
                if (raw.max.load(Ordering::Relaxed) != 0) != $bounded {
                    return Err(Error::Incompatible {
                        what: "kind",
                        expected: stringify!($ty).into(),
                        found: if $bounded {
                            "Semaphore"
                        } else {
                            "BoundedSemaphore"
                        }
                        .into(),
                    });
                }
                Ok($ty { raw })
            }

            /// Takes a permit, waiting as long as needed.
            ///
            /// # Errors
            /// None today; the `Result` leaves room for cancellation.
            pub fn acquire(&self) -> Result<()> {
                self.raw.acquire(None);
                Ok(())
            }

            /// Takes a permit if one is free.
            ///
            /// # Errors
            /// [`Error::WouldBlock`] if none is.
            pub fn try_acquire(&self) -> Result<()> {
                if self.raw.try_acquire() {
                    Ok(())
                } else {
                    Err(Error::WouldBlock)
                }
            }

            /// Takes a permit, waiting at most `timeout`.
            ///
            /// # Errors
            /// [`Error::Timeout`].
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
                if self.raw.acquire(Some(Instant::now() + timeout)) {
                    Ok(())
                } else {
                    Err(Error::Timeout)
                }
            }

            /// Returns a permit, waking one waiter.
            ///
            /// # Errors
            /// [`Error::ReleasedTooManyTimes`] for a bounded semaphore already
            /// at its initial value.
            pub fn release(&self) -> Result<()> {
                self.raw.release()
            }

            /// Permits currently available (Python's `get_value()`).
            pub fn value(&self) -> u32 {
                // Relaxed: a snapshot.
                self.raw.value.load(Ordering::Relaxed)
            }

            /// The name it was created or opened with.
            pub fn name(&self) -> Option<&str> {
                self.raw.region().name()
            }
        }
    };
}

/// A counting semaphore shared between processes (Python's
/// `multiprocessing.Semaphore`). Uncontended paths make no syscall.
#[derive(Clone, Debug)]
pub struct Semaphore {
    raw: Shared<RawSemaphore>,
}

/// A semaphore that refuses to be released above its initial value
/// (Python's `multiprocessing.BoundedSemaphore`).
#[derive(Clone, Debug)]
pub struct BoundedSemaphore {
    raw: Shared<RawSemaphore>,
}

semaphore_api!(
    Semaphore,
    false,
    "```\nlet s = ipc_core::sync::Semaphore::new(1)?;\ns.acquire()?;\nassert!(s.try_acquire().is_err());\ns.release()?;\ns.release()?; // unbounded: fine\nassert_eq!(s.value(), 2);\n# Ok::<(), ipc_core::Error>(())\n```"
);
semaphore_api!(
    BoundedSemaphore,
    true,
    "```\nlet s = ipc_core::sync::BoundedSemaphore::new(1)?;\ns.acquire()?;\ns.release()?;\nassert!(matches!(s.release(), Err(ipc_core::Error::ReleasedTooManyTimes)));\n# Ok::<(), ipc_core::Error>(())\n```"
);

macro_rules! semaphore_travel {
    ($ty:ident, $bounded:expr) => {
        impl crate::travel::Travel for $ty {
            fn token(&self) -> crate::travel::Token {
                self.raw.token()
            }
            fn from_token(t: crate::travel::Token) -> Result<Self> {
                let raw: Shared<RawSemaphore> = Shared::from_token(Kind::Semaphore, &t)?;
                // Relaxed: written before the region was published.
                if (raw.max.load(Ordering::Relaxed) != 0) != $bounded {
                    return Err(Error::Incompatible {
                        what: "kind",
                        expected: stringify!($ty).into(),
                        found: "another semaphore flavour".into(),
                    });
                }
                Ok($ty { raw })
            }
        }
        crate::travel::travel_via_token!([] $ty);
    };
}
semaphore_travel!(Semaphore, false);
semaphore_travel!(BoundedSemaphore, true);
