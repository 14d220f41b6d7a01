//! What the demo programs of `ipc-examples` share.
//!
//! Two programs that meet on a named queue must agree on its message
//! type, and the queue checks that they do: its type tag is made from the
//! type's full path (`ipc_examples::jobs::Job`). So the message types of
//! `jobs_server` and `jobs_worker` live here, in one crate both link,
//! rather than copied into each program (a copy would be another type,
//! and `Queue::open` would refuse it as `Incompatible { what: "type" }`).
//!
//! - [`jobs`]: the names, messages and worker board of the
//!   `jobs_server` / `jobs_worker` pair;
//! - [`shm`]: what a demo left in `/dev/shm` (each ends by saying);
//! - [`cli`]: `--flag value` options, Ctrl-C, waiting for a peer to appear.

pub mod cli;
pub mod jobs;
pub mod shm;
