//! The loop every pool worker runs, in whatever process start method.

use super::task::{self, Body, Reply, Task, STOP};
use crate::process::target::Outcome;
use crate::queue::Queue;
use crate::value::RawArray;

/// Everything a worker needs, sent as its (rkyv) argument: the handles
/// travel as tokens, so this works for fork, fork-server and spawn workers.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct WorkerCtx {
    pub tasks: Queue<Task>,
    pub replies: Queue<Reply>,
    /// Per worker: the id of the task it is running, 0 when idle.
    pub inflight: RawArray<u64>,
    pub index: u32,
    /// Exit after this many tasks (0: never), Python's `maxtasksperchild`.
    pub max_tasks: u64,
    /// Run once before the first task (Python's `initializer`).
    pub init: Option<Task>,
}

/// A worker's main loop. Returns `Ok(true)` when it retires after
/// `max_tasks` tasks (the pool replaces it), `Ok(false)` when told to stop
/// or when the pool's queues are closed.
pub(crate) fn worker_main(ctx: WorkerCtx) -> Result<bool, String> {
    let i = ctx.index as usize;
    if let Some(init) = &ctx.init {
        match task::run(init) {
            Outcome::Ok(_) => {}
            Outcome::Err(m) | Outcome::Panic(m) | Outcome::Setup(m) => {
                return Err(format!("initializer failed: {m}"));
            }
        }
    }
    let mut done = 0u64;
    loop {
        let t = match ctx.tasks.get() {
            Ok(t) => t,
            Err(crate::Error::Closed) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        if t.id == STOP {
            return Ok(false);
        }
        // Mark the task as ours before running it, so that if we die the
        // pool knows which task died with us.
        ctx.inflight.set(i, t.id).map_err(|e| e.to_string())?;
        let outcome = {
            let _span = crate::trace::span!(DEBUG, "ipc.pool.task", id = t.id, worker = i);
            task::run(&t)
        };
        // Reply before clearing the mark: a death in between is resolved by
        // the pool draining replies before it blames us. An outcome too
        // large for one message goes in parts, whatever its kind.
        let reply = Reply {
            id: t.id,
            body: Body::Whole(outcome),
        };
        match ctx.replies.put(&reply) {
            Ok(()) => {}
            Err(crate::Error::MessageTooLarge { .. }) => {
                if let Body::Whole(outcome) = &reply.body {
                    task::send_parts(&ctx.replies, t.id, outcome).map_err(|e| e.to_string())?
                }
            }
            Err(e) => return Err(e.to_string()),
        }
        ctx.inflight.set(i, 0).map_err(|e| e.to_string())?;
        done += 1;
        if ctx.max_tasks != 0 && done >= ctx.max_tasks {
            return Ok(true);
        }
    }
}
