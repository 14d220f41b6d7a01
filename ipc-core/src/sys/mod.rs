//! The only place that makes raw OS calls: futexes, shared-memory
//! descriptors and process identity. Small safe functions, each with its
//! error mapped.
//!
//! Hidden from the docs and unsupported outside this workspace: it is
//! public only because ipc-manager, ipc-cli and the examples use it, and it
//! may change in any release.

#[cfg(not(loom))]
pub mod fork_local;
#[cfg(not(loom))]
pub mod futex;
#[cfg(loom)]
#[path = "futex_loom.rs"]
pub mod futex;
mod futex_common;
pub mod proc;
#[cfg(not(loom))]
pub mod shm;
