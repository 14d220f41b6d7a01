//! # ipc-core
//!
//! Python's `multiprocessing` for Rust, on shared memory: named regions,
//! cross-process locks and events built on shared futexes, lock-free rings,
//! the `Queue`, `Pipe`, `Value` and `Array` built on them, and `Process`,
//! `Pool` and `ProcessPoolExecutor` to run code in other processes.
//!
//! Layers, bottom up: each module uses only those above it in this list
//! (the `layers` test below reads the `crate::` paths of every file and
//! keeps this true):
//! 1. `sys`: the raw OS calls (hidden: unsupported outside the workspace);
//! 2. [`travel`]: what a handle becomes to travel (its token, the
//!    keep-alive of anonymous regions); uses `sys`;
//! 3. [`region`]: one mapped segment; uses `travel` for its locator;
//! 4. `shared` (internal: an object's place in a region);
//! 5. [`sync`];
//! 6. `ring` (lock-free rings, internal), over `sync` and `sys`;
//! 7. [`codec`], which uses nothing else of the crate;
//! 8. [`queue`], [`pipe`], [`value`];
//! 9. [`process`]: starting, finding and waiting for processes over `sys`
//!    and `codec` (its `wait` also takes queues and pipes, hence its place);
//! 10. [`pool`];
//! 11. `inspect` (the `ipc` command's reader, hidden).
//!
//! Any layer may use the leaves [`error`], `tuning` and the internal
//! `atomic` and `trace`, and the `tokio` glue `aio` (which uses `sys` and
//! `ring`'s wait policy).
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
pub mod loan;
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
    pub(crate) mod polled_lock;
    mod raw_condition;
    pub(crate) mod raw_lock;
}
#[doc(hidden)] // unsupported outside the workspace (see its module doc)
pub mod sys;
mod trace;
#[cfg(not(loom))]
pub mod travel;
#[cfg(not(loom))]
#[doc(hidden)] // unsupported outside the workspace (see its module doc)
pub mod tuning;
#[cfg(not(loom))]
pub mod value;

pub use error::{Error, Result};
#[cfg(not(loom))]
pub use process::init;

/// Keeps the layer list in the crate docs true.
#[cfg(all(test, not(loom)))]
mod layers {
    /// The layers of the crate docs, bottom up.
    const LAYERS: &[&[&str]] = &[
        &["sys"],
        &["travel"],
        &["region"],
        &["shared"],
        &["sync"],
        &["ring"],
        &["codec"],
        &["queue", "pipe", "value"],
        &["process"],
        &["pool"],
        &["inspect"],
    ];
    /// Usable from any layer.
    const ANYWHERE: &[&str] = &["error", "tuning", "atomic", "trace", "aio"];

    fn rank(m: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&m))
    }

    /// `crate::x` paths in code (not comments, not unit tests) of `path`.
    fn uses(path: &std::path::Path, out: &mut Vec<(String, String)>) {
        if path.is_dir() {
            for e in std::fs::read_dir(path).unwrap() {
                uses(&e.unwrap().path(), out);
            }
            return;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            return;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                    .unwrap_or(rest.len());
                out.push((path.display().to_string(), rest[..end].to_owned()));
            }
        }
    }

    #[test]
    fn layers_in_the_crate_docs_match_the_use_graph() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut bad = Vec::new();
        for e in std::fs::read_dir(&src).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let Some(me) = rank(&name) else { continue };
            let mut found = Vec::new();
            uses(&path, &mut found);
            for (file, used) in found {
                let ok = used == name
                    || ANYWHERE.contains(&used.as_str())
                    || rank(&used).is_none_or(|r| r < me);
                if !ok {
                    bad.push(format!("{file} uses crate::{used}"));
                }
            }
        }
        assert!(bad.is_empty(), "layer list out of date: {bad:#?}");
    }
}

#[doc(hidden)]
pub use ring::wait::Backoff;
