//! # ipc-redis
//!
//! `ipc`'s pools across hosts: [`RedisPool`] and [`RedisPoolExecutor`]
//! with the methods and error types of [`ipc_core::pool::Pool`] and
//! [`ipc_core::pool::ProcessPoolExecutor`], a distributed [`Queue`] and
//! [`Dict`], all on Redis (sync client, no async runtime).
//!
//! - **Tasks** are `fn` items of the program, found by the same
//!   anchor-relative offsets as `Spawn`; every task carries the
//!   [executable identity](executable_identity), and a worker of another
//!   build refuses it ([`Error::WrongExecutable`]).
//! - **Workers** are the same program started on any host, with
//!   [`serve_worker`] or `my-app --ipc-worker redis://host:6379/0 jobs`
//!   (detected by [`init`]); each runs N local processes through an
//!   [`ipc_core::pool::Pool`].
//! - **Delivery** goes through a Redis stream and one consumer group:
//!   workers acknowledge (`XACK`) a task together with its reply; a task
//!   whose worker died (no heartbeat for the visibility timeout) is
//!   claimed (`XAUTOCLAIM`) by a live worker, up to a delivery limit, then
//!   fails with [`ipc_core::Error::WorkerDied`].
//! - **Failures are typed and bounded**: Redis unreachable names the URL;
//!   Redis lost fails every waiting call within the connect timeout; with
//!   no worker, calls wait in the stream and `result(timeout)` times out.
//!
//! Anyone who can write the pool's stream can make its workers run any
//! `fn` of the program (that is what a task is): protect Redis with a
//! password or an ACL user (taken from the URL), and keep it off
//! untrusted networks.
//!
//! # Examples
//!
//! ```
//! fn square(x: u64) -> u64 { x * x }
//!
//! // fn main() {
//! ipc_redis::init(); // a worker (`--ipc-worker URL NAME`) runs here and exits
//! # let redis = ipc_redis::testing::Redis::start().unwrap();
//! # let url = redis.url();
//! # let _worker = ipc_redis::testing::Worker::start(&url, "jobs", 2).unwrap();
//! let pool = ipc_redis::RedisPool::connect(&url, "jobs")?;
//! assert_eq!(pool.map(square, 0..4, None)?, vec![0, 1, 4, 9]);
//! // }
//! # Ok::<(), ipc_redis::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ipc-redis supports Linux only: its workers are ipc-core pools (futexes, memfd, /proc)"
);

mod builder;
mod client;
mod conn;
mod dict;
mod error;
mod executor;
mod identity;
mod keys;
mod pool;
mod queue;
#[doc(hidden)]
pub mod testing;
#[doc(hidden)]
pub mod wire;
mod worker;

pub use builder::Builder;
pub use dict::Dict;
pub use error::{Error, Result};
pub use executor::{ExecutorMap, Future, RedisPoolExecutor};
pub use identity::executable_identity;
pub use pool::{AsyncResult, IMap, RedisPool};
pub use queue::Queue;
pub use worker::{serve_worker, stop_workers};

/// Call first thing in `main`, instead of (or before) `ipc_core::init()`.
///
/// It runs `ipc_core::init()` (so `Spawn` children work), then, if the
/// program was started as a worker (`--ipc-worker URL NAME
/// [--ipc-processes N]` anywhere in its arguments), serves that pool
/// ([`serve_worker`]) and exits: 0 after [`stop_workers`], 1 with the
/// error on stderr if Redis is lost or refuses, 2 for malformed
/// arguments. Otherwise it returns at once.
///
/// # Examples
///
/// ```
/// // fn main() {
/// ipc_redis::init(); // `my-app --ipc-worker redis://host:6379/0 jobs` serves here
/// // ... the rest of the program runs only in clients ...
/// // }
/// ```
pub fn init() {
    ipc_core::init();
    worker::from_args();
}

pub(crate) fn io_error(e: &std::io::Error) -> Error {
    Error::Core(ipc_core::Error::Io(nix::errno::Errno::from_raw(
        e.raw_os_error().unwrap_or(libc::EIO),
    )))
}
