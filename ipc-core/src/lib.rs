//! # ipc-core
//!
//! Python's `multiprocessing` for Rust, on shared memory: named regions,
//! cross-process locks and events built on shared futexes, lock-free rings,
//! the `Queue`, `Pipe`, `Value` and `Array` built on them, and `Process`,
//! `Pool` and `ProcessPoolExecutor` to run code in other processes.
//!
//! Layers, bottom up (each uses only those below it):
//! [`sys`] → [`region`] → [`sync`] → `ring` (lock-free rings, internal) →
//! [`codec`] → [`queue`], [`pipe`], [`value`] → [`travel`] → [`process`] →
//! [`pool`].
//!
//! # Examples
//!
//! ```
//! use ipc_core::queue::Queue;
//! let q: Queue<String> = Queue::new(8)?;
//! q.put(&"hello".to_string())?;
//! assert_eq!(q.get()?, "hello");
//! # Ok::<(), ipc_core::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(loom, allow(dead_code, unused_imports))]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ipc-core supports Linux only: it is built on Linux futexes, memfd, pidfd and /proc"
);

#[cfg(all(feature = "tokio", not(loom)))]
mod aio;
mod atomic;
#[cfg(not(loom))]
pub mod codec;
pub mod error;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod inspect;
#[cfg(not(loom))]
pub mod pipe;
#[cfg(not(loom))]
pub mod pool;
#[cfg(not(loom))]
pub mod process;
#[cfg(not(loom))]
pub mod queue;
#[cfg(not(loom))]
pub mod region;
mod ring;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
pub mod sync;
#[cfg(loom)]
mod sync {
    mod raw_condition;
    pub(crate) mod raw_lock;
}
pub mod sys;
mod trace;
#[cfg(not(loom))]
pub mod travel;
#[cfg(not(loom))]
pub mod tuning;
#[cfg(not(loom))]
pub mod value;

pub use error::{Error, Result};
#[cfg(not(loom))]
pub use process::init;
#[doc(hidden)]
pub use ring::wait::Backoff;
