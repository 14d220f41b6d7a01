//! # ipc-manager
//!
//! Python's `multiprocessing.Manager` for `ipc`: a server process hosting
//! shared objects that any process reaches, including an unrelated
//! program started later that [connects](Manager::connect) by name.
//!
//! - Containers live in the server, reached through typed proxies:
//!   [`DictProxy`], [`ListProxy`], [`Namespace`] and custom types
//!   ([`Service`], Python's `BaseManager.register`). A call is one round
//!   trip through a per-client mailbox in shared memory (about a
//!   microsecond, against ~70 µs for Python's socket-based manager).
//! - Sync objects, `Value`, `Array` and queues are created in shared
//!   memory owned by the server; what the factories return is the
//!   `ipc_core` object itself, used with no round trip at all.
//! - Failures are reported, never hung on: a dead server turns every call
//!   into [`Error::ServerGone`] within a
//!   second; a dead client's slot is reclaimed and a lock it held is
//!   recovered by the next acquirer with `OwnerDied`; garbage a client
//!   writes only earns that client an error.
//!
//! ```
//! use ipc_core::process::Process;
//! use ipc_manager::Manager;
//!
//! let mgr = Manager::start()?;
//! let d = mgr.dict::<u32, String>()?;
//! let child = {
//!     let d = d.clone();
//!     Process::new(move || d.insert(&1, &"from the child".into()).map(|_| ()))
//! };
//! let mut child = child;
//! child.start()?;
//! child.join()?;
//! assert_eq!(d.get(&1)?, Some("from the child".to_string()));
//! # Ok::<(), ipc_manager::Error>(())
//! ```
// Under `--cfg loom` only the mailbox protocol and its model are built.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ipc-manager supports Linux only: it is built on Linux futexes, memfd, pidfd and /proc"
);

#[cfg(not(loom))]
mod client;
#[cfg(not(loom))]
mod control;
#[cfg(not(loom))]
mod crc32c;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod inspect;
#[cfg(not(loom))]
mod lifecycle;
#[cfg(not(loom))]
mod lookup;
mod mailbox;
#[cfg(not(loom))]
mod manager;
#[cfg(not(loom))]
mod objects;
#[cfg(not(loom))]
mod proxy;
#[cfg(not(loom))]
mod server;
#[cfg(not(loom))]
mod service;
#[cfg(not(loom))]
mod session;
#[cfg(not(loom))]
mod store;
#[cfg(not(loom))]
mod trace;
#[cfg(not(loom))]
mod wire;

#[cfg(all(test, not(loom)))]
mod hardening_tests;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(not(loom))]
pub use error::{Error, Result};
#[cfg(not(loom))]
pub use ipc_core as core;
#[cfg(not(loom))]
pub use lookup::Hosted;
#[cfg(not(loom))]
pub use manager::{Manager, ManagerBuilder};
#[cfg(not(loom))]
pub use objects::{Named, DEFAULT_QUEUE_CAPACITY};
#[cfg(not(loom))]
pub use proxy::{DictProxy, ListProxy, Namespace, ServiceProxy};
#[cfg(not(loom))]
pub use service::Service;
