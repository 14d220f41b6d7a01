//! Cross-process synchronisation primitives in shared memory.
//!
//! All are `#[repr(C)]`, position independent, built on atomics and shared
//! futexes; uncontended paths never enter the kernel. Each has `new`
//! (anonymous, inherited by forked children), `create(name)` and
//! `open(name)`, and every blocking call has a `try_` and a `_timeout`
//! form. A `Lock`, `RLock` or `Condition` whose holder dies is recovered
//! with [`LockError::OwnerDied`].

mod barrier;
mod condition;
mod event;
mod lock;
mod lock_error;
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
