//! `Pool` and `ProcessPoolExecutor`: Python's process pools, over a task
//! queue and a reply queue in shared memory.
//!
//! Tasks are `fn` items with `rkyv` arguments and results (found in any
//! worker through their offset in the executable), so the workers may be
//! started by any start method. A worker killed mid-task never hangs a
//! caller: `Pool` fails that task with [`Error::WorkerDied`](crate::Error::WorkerDied)
//! and replaces the worker; the executor marks itself broken
//! ([`Error::BrokenPool`](crate::Error::BrokenPool)) as Python does.

#[cfg(feature = "tokio")]
mod aio;
mod core;
mod executor;
mod future;
mod imap;
#[allow(clippy::module_inception)]
mod pool;
#[doc(hidden)]
pub mod remote;
mod result;
mod supervisor;
mod task;
mod worker;

pub use executor::{ExecutorBuilder, ExecutorMap, ProcessPoolExecutor};
pub use future::{
    as_completed, wait, AnyFuture, AsCompleted, DoneAndNotDone, Future, FutureKey, FutureSource,
    ReturnWhen,
};
pub use imap::IMap;
pub use pool::{Pool, PoolBuilder};
pub use result::AsyncResult;
