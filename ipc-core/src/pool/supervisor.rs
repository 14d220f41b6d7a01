//! The pool's supervisor and feeder threads: starting workers, watching
//! them, replacing or mourning dead ones, dispatching replies nobody waits
//! for, moving the outbox into the task queue, breaking the pool, and
//! shutting it all down.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::core::{Config, Core};
use super::task::{unsent, Failure, Task, STOP};
use super::worker::{worker_main, WorkerCtx};
use crate::process::Process;
use crate::queue::Queue;
use crate::{Error, Result};

impl Core {
    /// Creates the queues, starts the feeder and the supervisor (which
    /// starts the workers) and waits for the workers to be started.
    pub fn start(cfg: Config) -> Result<Arc<Core>> {
        let core = Arc::new(Core::new(cfg)?);
        let c2 = core.clone();
        let h = std::thread::Builder::new()
            .name("ipc-pool-feeder".into())
            .spawn(move || feed_tasks(c2))
            .map_err(crate::process::target::io)?;
        *core.feeder.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
        // Workers are started by the supervisor thread, which lives as long
        // as the pool: their parent-death signal follows that thread.
        let (tx, rx) = std::sync::mpsc::channel();
        let c2 = core.clone();
        let h = std::thread::Builder::new()
            .name("ipc-pool-supervisor".into())
            .spawn(move || supervise(c2, tx))
            .map_err(crate::process::target::io)?;
        *core.supervisor.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
        match rx.recv() {
            Ok(Ok(())) => Ok(core),
            Ok(Err(e)) => {
                core.terminate();
                Err(e)
            }
            Err(_) => Err(Error::BrokenPool(
                "the pool supervisor failed to start".into(),
            )),
        }
    }

    /// After `close`: lets workers finish the queue, then stop; waits.
    pub fn join(&self) -> Result<()> {
        if !self.closing.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument("close() the pool before join()"));
        }
        // The STOPs follow the tasks (the executor's go once its pending
        // list drains, as replies the supervisor dispatches make room), so
        // the supervisor ends once every worker took one.
        self.join_supervisor();
        Ok(())
    }

    /// Kills the workers at once; outstanding tasks fail with `BrokenPool`.
    pub fn terminate(&self) {
        self.closing.store(true, Ordering::Release);
        // Release: pairs with the Acquire in `supervise` and `feed_tasks`.
        self.terminate.store(true, Ordering::Release);
        self.join_supervisor();
    }

    /// Fails every task without a result (and drops pending ones) with
    /// `BrokenPool(msg)`; with `mark`, also marks the pool broken (once).
    pub(super) fn fail_outstanding(&self, msg: &str, mark: bool) {
        let ids: Vec<u64> = {
            let mut st = self.lock();
            if mark {
                if st.broken.is_some() {
                    return;
                }
                st.broken = Some(msg.to_owned());
            }
            st.pending.clear();
            st.outbox.retain(|t| t.id == STOP);
            st.slots
                .iter()
                .filter(|(_, s)| s.result.is_none())
                .map(|(i, _)| *i)
                .collect()
        };
        for id in ids {
            self.record(id, Err(Failure::Broken(msg.to_owned())), false);
        }
        if self.cfg.executor {
            // Closing: the STOPs may go now that nothing is pending.
            self.feed();
        }
    }

    pub(super) fn join_supervisor(&self) {
        let h = self
            .supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = h {
            let _ = h.join();
        }
        // No worker is left to take what the feeder holds.
        // Release: pairs with the Acquire in `feed_tasks`.
        self.feeder_quit.store(true, Ordering::Release);
        drop(self.lock()); // a feeder between its check and its wait sees the flag
        self.outbox_ready.notify_all();
        let h = self.feeder.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = h {
            let _ = h.join();
        }
        // Whatever is still outstanding will never complete.
        self.fail_outstanding("the pool was terminated", false);
        self.tasks.close();
        self.replies.close();
    }
}

fn start_worker(core: &Core, index: usize) -> Result<Process<Result<bool, String>>> {
    let ctx = WorkerCtx {
        tasks: core.tasks.clone(),
        replies: core.replies.clone(),
        inflight: core.inflight.clone(),
        index: index as u32,
        max_tasks: core.cfg.max_tasks,
        init: core.cfg.init.as_ref().map(|t| Task {
            id: 0,
            tramp: t.tramp,
            target: t.target,
            args: t.args.clone(),
        }),
    };
    let mut p = Process::builder()
        .name(format!("PoolWorker-{}", index + 1))
        .daemon(true)
        .start_method(core.cfg.method)
        .target_fn(worker_main, ctx);
    p.start()?;
    Ok(p)
}

/// The supervisor thread: starts workers, watches them, dispatches
/// replies nobody waits for, and shuts everything down.
pub(super) fn supervise(core: Arc<Core>, started: std::sync::mpsc::Sender<Result<()>>) {
    let n = core.cfg.processes;
    let mut workers: Vec<Option<Process<Result<bool, String>>>> = Vec::with_capacity(n);
    for i in 0..n {
        match start_worker(&core, i) {
            Ok(p) => workers.push(Some(p)),
            Err(e) => {
                for p in workers.iter_mut().flatten() {
                    let _ = p.kill();
                    let _ = p.join();
                }
                let _ = started.send(Err(e));
                return;
            }
        }
    }
    let record = |w: &[Option<Process<Result<bool, String>>>]| {
        *core.pids.lock().unwrap_or_else(|p| p.into_inner()) =
            w.iter().flatten().filter_map(|p| p.pid()).collect();
    };
    record(&workers);
    let _ = started.send(Ok(()));
    loop {
        // Acquire: pairs with the Release in `terminate`.
        if core.terminate.load(Ordering::Acquire) {
            for p in workers.iter_mut().flatten() {
                let _ = p.kill();
            }
            for p in workers.iter_mut().flatten() {
                let _ = p.join();
            }
            return;
        }
        // Relaxed: a hint; a wrong guess costs at most one 10 ms slice.
        if core.waiters.load(Ordering::Relaxed) == 0 {
            core.drive(Duration::from_millis(10));
        } else {
            let fds: Vec<_> = workers
                .iter()
                .flatten()
                .filter_map(|p| p.sentinel())
                .collect();
            let _ = crate::process::wait(&fds, Some(Duration::from_millis(10)));
        }
        // Reap and handle workers that exited.
        let mut changed = false;
        #[allow(clippy::needless_range_loop)] // `i` also indexes `inflight`
        for i in 0..n {
            let exited = workers[i].as_mut().is_some_and(|p| !p.is_alive());
            if !exited {
                continue;
            }
            changed = true;
            let mut p = workers[i].take().expect("checked above");
            let code = p.exitcode().unwrap_or(-1);
            let retired = matches!(p.join(), Ok(true));
            // Replies a worker sent before dying are delivered first.
            while core.drive(Duration::ZERO) {}
            let task = core.inflight.get(i).unwrap_or(0);
            let _ = core.inflight.set(i, 0);
            let pid = p.pid().unwrap_or(0) as u64;
            let clean = code == 0 && task == 0;
            if !clean && !retired {
                crate::trace::event!(WARN, pid, exit_code = code, task, "pool worker died");
            }
            if task != 0 && task != STOP {
                core.complete(task, Err(Failure::WorkerDied(pid)), true);
            }
            if core.cfg.executor && !clean {
                break_pool(
                    &core,
                    format!("a worker process (pid {pid}) terminated abruptly"),
                );
            }
            // Replace the worker unless the pool is winding down with
            // nothing left to do (a closed pool still finishes its queue,
            // even when workers retire after `max_tasks_per_child` tasks).
            // A worker that took a STOP is not replaced once closing.
            let closing = core.closing.load(Ordering::Acquire);
            let needed = !closing || ((retired || !clean) && core.has_outstanding());
            if needed && core.broken().is_none() {
                match start_worker(&core, i) {
                    Ok(np) => {
                        crate::trace::event!(
                            INFO,
                            old_pid = pid,
                            new_pid = np.pid(),
                            "pool worker replaced"
                        );
                        workers[i] = Some(np);
                    }
                    Err(e) => break_pool(&core, format!("could not replace a worker: {e}")),
                }
            }
        }
        if changed {
            record(&workers);
        }
        if core.closing.load(Ordering::Acquire) && workers.iter().all(|w| w.is_none()) {
            while core.drive(Duration::ZERO) {}
            return;
        }
    }
}

/// The feeder thread: moves the outbox into the task queue, oldest first,
/// waiting for room as long as needed (workers make room as they take
/// tasks; replies are drained by waiting callers and the supervisor, so a
/// worker blocked on a full reply queue cannot hold it up). A task it
/// cannot put fails its result.
pub(super) fn feed_tasks(core: Arc<Core>) {
    // Acquire: pairs with the Release stores in `join_supervisor` and
    // `terminate`.
    let quit =
        || core.feeder_quit.load(Ordering::Acquire) || core.terminate.load(Ordering::Acquire);
    loop {
        let task = {
            let mut st = core.lock();
            loop {
                if quit() {
                    return;
                }
                if let Some(t) = st.outbox.pop_front() {
                    st.feeding = true;
                    break t;
                }
                st = core
                    .outbox_ready
                    .wait(st)
                    .unwrap_or_else(|p| p.into_inner());
            }
        };
        let r = loop {
            match core.tasks.try_put(&task) {
                Err(Error::Full) if !quit() => wait_for_room(&core.tasks, &quit),
                other => break other,
            }
        };
        core.lock().feeding = false;
        match r {
            // Quitting: `join_supervisor` fails what is left, this included.
            Err(_) if quit() => return,
            Err(e) if task.id != STOP => core.complete(task.id, Err(unsent(&e)), true),
            _ => {}
        }
    }
}

/// Sleeps until the workers have taken half of a full task queue (or
/// `quit`), so the feeder refills it in batches rather than with one
/// wake-up per task taken. Naps start at 50 µs while the workers make
/// progress and double up to 10 ms while they do not (long tasks).
fn wait_for_room(tasks: &Queue<Task>, quit: &dyn Fn() -> bool) {
    const NAP: Duration = Duration::from_micros(50);
    let half = tasks.capacity() / 2;
    let mut nap = NAP;
    let mut last = tasks.len();
    while last > half && !quit() {
        std::thread::sleep(nap);
        let now = tasks.len();
        nap = if now < last {
            NAP
        } else {
            (nap * 2).min(Duration::from_millis(10))
        };
        last = now;
    }
}

/// Marks the pool broken and fails every outstanding task (Python's
/// `BrokenProcessPool`).
fn break_pool(core: &Core, msg: String) {
    #[cfg(feature = "tracing")]
    let first = core.broken().is_none();
    core.fail_outstanding(&msg, true);
    #[cfg(feature = "tracing")]
    if first {
        crate::trace::event!(ERROR, reason = %msg, "process pool broken");
    }
}
