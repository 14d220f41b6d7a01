//! # ipc-manager
//!
//! The `Manager` server of `ipc` (Python's `multiprocessing.Manager`). Not
//! built yet: this crate is a placeholder so the workspace has its final
//! layout. It re-exports `ipc_core` for convenience.
//!
//! ```
//! assert!(ipc_manager::core::region::validate_name("ok").is_ok());
//! ```

pub use ipc_core as core;
