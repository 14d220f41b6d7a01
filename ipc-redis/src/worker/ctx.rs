//! The worker's shared state: its settings, the messages between its
//! threads, and the local task that runs a remote one.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ipc_core::pool::remote::Code;

use crate::conn::Conn;
use crate::keys::PoolKeys;
use crate::wire::{self, Outcome};
use crate::{Error, Result};

/// How long reply lists live after their last reply (a client that died
/// leaves its list behind for this long).
pub(super) const REPLY_TTL_MS: u64 = 24 * 3600 * 1000;

/// How long a worker retries a lost connection before it gives up.
pub(super) const GIVE_UP: Duration = Duration::from_secs(4);

/// The argument of the local pool's task: a remote task's code and
/// argument.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
pub(super) struct Job {
    pub(super) tramp: i64,
    pub(super) target: i64,
    pub(super) args: Vec<u8>,
}

/// Runs in a local pool process: the task, its failures as values.
pub(super) fn execute(job: Job) -> std::result::Result<Outcome, std::convert::Infallible> {
    let code = Code::from_offsets(job.tramp, job.target);
    Ok(match ipc_core::pool::remote::run(code, &job.args) {
        Ok(b) => Outcome::Ok(b),
        Err(ipc_core::Error::TargetFailed { message, .. }) => Outcome::Failed(message),
        Err(ipc_core::Error::Panicked { message, .. }) => Outcome::Panicked(message),
        Err(ipc_core::Error::Exited { detail, .. }) => Outcome::Setup(detail.unwrap_or_default()),
        Err(e) => Outcome::Setup(e.to_string()),
    })
}

/// What the completer writes.
pub(super) enum Msg {
    /// Push the reply, acknowledge and delete the entry.
    Reply {
        entry: String,
        key: String,
        reply: wire::Reply,
    },
    /// Acknowledge and delete an entry that cannot be answered (garbage).
    Drop { entry: String },
    /// The local process died under it: leave it to be claimed again.
    Forget { entry: String },
    /// Nothing to write: look at the reader's fatal error now.
    Wake,
}

/// Settings the clients publish.
#[derive(Debug, Clone, Copy)]
pub(super) struct PoolCfg {
    pub(super) visibility: Duration,
    pub(super) max_deliveries: u64,
    pub(super) stop: i64,
}

pub(super) struct Ctx {
    pub(super) keys: PoolKeys,
    pub(super) exe: &'static str,
    pub(super) consumer: String,
    /// Tasks read and not yet answered at most (running + waiting locally).
    pub(super) cap: usize,
    pub(super) inflight: Mutex<HashSet<String>>,
    pub(super) room: Condvar,
    pub(super) stop: AtomicBool,
    pub(super) fatal: Mutex<Option<Error>>,
    pub(super) cfg: Mutex<PoolCfg>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ctx {
    pub(super) fn stopping(&self) -> bool {
        // Acquire: pairs with the Release stores in `serve_worker` and the
        // reader.
        self.stop.load(Ordering::Acquire)
    }

    pub(super) fn finish(&self, entry: &str) {
        lock(&self.inflight).remove(entry);
        self.room.notify_all();
    }

    pub(super) fn fail(&self, e: Error) {
        lock(&self.fatal).get_or_insert(e);
        // Release: pairs with the Acquire in `stopping`.
        self.stop.store(true, Ordering::Release);
        self.room.notify_all();
    }

    pub(super) fn warn(&self, what: &str) {
        eprintln!(
            "ipc-redis worker {} ({}): {what}",
            self.consumer, self.keys.tasks
        );
    }
}

pub(super) fn member(ctx: &Ctx, processes: usize) -> String {
    format!("{processes}|{}", ctx.consumer)
}

pub(super) fn read_config(conn: &mut Conn, keys: &PoolKeys) -> Result<PoolCfg> {
    let v: Vec<Option<String>> = conn.run(
        redis::cmd("HMGET")
            .arg(&keys.config)
            .arg("visibility_ms")
            .arg("max_deliveries")
            .arg("stop"),
    )?;
    let num = |i: usize, d: i64| {
        v.get(i)
            .and_then(|s| s.as_deref())
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(d)
    };
    Ok(PoolCfg {
        visibility: Duration::from_millis(num(0, 30_000).clamp(1, 86_400_000) as u64),
        max_deliveries: num(1, 3).max(1) as u64,
        stop: num(2, 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_reports_a_task_it_cannot_locate_instead_of_jumping() {
        // Offsets far outside the executable's code.
        let out = execute(Job {
            tramp: i64::MAX / 2,
            target: -(i64::MAX / 2),
            args: Vec::new(),
        });
        assert!(matches!(out, Ok(Outcome::Setup(m)) if m.contains("not in this executable")));
    }
}
