//! Cross-process synchronisation primitives in shared memory.
//!
//! All are `#[repr(C)]`, position independent, built on atomics and shared
//! futexes; uncontended paths never enter the kernel. Each has `new`
//! (anonymous, inherited by forked children), `create(name)` and
//! `open(name)`, and every blocking call has a `try_` and a `_timeout`
//! form. A `Lock`, `RLock` or `Condition` whose holder dies is recovered
//! with [`LockError::OwnerDied`]; a lock word that names a holder that
//! cannot exist (garbage written into the region) ends every call with
//! [`LockError::Corrupt`], never a wait without end.

mod barrier;
mod condition;
mod event;
mod lock;
mod lock_error;
pub(crate) mod polled_lock;
mod raw_condition;
pub(crate) mod raw_lock;
mod rlock;
mod semaphore;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard, ConditionResult};
pub use event::Event;
pub use lock::{Lock, LockGuard, LockResult};
pub use lock_error::LockError;
pub use rlock::{RLock, RLockGuard, RLockResult};
pub use semaphore::{BoundedSemaphore, Semaphore};
#[cfg(not(loom))]
pub(crate) use {raw_condition::RawCondition, rlock::RawRLock};

/// Implements [`Travel`](crate::travel::Travel) (and so `rkyv`) for a sync
/// handle whose only field is `raw: Shared<_>` in its own region.
macro_rules! simple_travel {
    ($ty:ident, $kind:expr) => {
        impl $crate::travel::Travel for $ty {
            fn token(&self) -> $crate::travel::Token {
                self.raw.token()
            }
            fn from_token(t: $crate::travel::Token) -> $crate::Result<Self> {
                Ok($ty {
                    raw: $crate::shared::Shared::from_token($kind, &t)?,
                })
            }
        }
        $crate::travel::travel_via_token!([] $ty);
    };
}
use simple_travel;
