//! The machinery shared by `Pool` and `ProcessPoolExecutor`: a task queue
//! and a reply queue in shared memory, a table of outstanding results, and
//! a supervisor thread that starts workers, replaces or mourns dead ones,
//! and dispatches replies when no caller is waiting for them.
//!
//! Callers waiting for a result pop replies themselves (the reply queue is
//! MPMC), so a round trip needs no thread hand-off; the supervisor only
//! pops when nobody waits (for callbacks and `join`).
//!
//! Submission never blocks: a task goes straight into the task queue when
//! there is room and nothing waits before it, else into the outbox, which
//! a feeder thread drains into the task queue as workers make room (the
//! task handler thread of Python's `Pool`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::task::{Body, Parts, Reply, Task, PART_OVERHEAD, STOP};
use super::worker::{worker_main, WorkerCtx};
use crate::process::target::Outcome;
use crate::process::{Process, StartMethod};
use crate::queue::Queue;
use crate::value::RawArray;
use crate::{Error, Result};

/// Why a task has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Panicked(String),
    Failed(String),
    Setup(String),
    WorkerDied(u64),
    Broken(String),
    /// A reply read from shared memory was invalid.
    Corrupt(String),
    Cancelled,
}

impl Failure {
    pub fn to_error(&self) -> Error {
        let name = "pool worker".to_owned();
        match self {
            Failure::Panicked(m) => Error::Panicked {
                name,
                message: m.clone(),
            },
            Failure::Failed(m) => Error::TargetFailed {
                name,
                message: m.clone(),
            },
            Failure::Setup(m) => Error::Exited {
                name,
                code: 1,
                detail: Some(m.clone()),
            },
            Failure::WorkerDied(pid) => Error::WorkerDied { pid: *pid },
            Failure::Broken(m) => Error::BrokenPool(m.clone()),
            Failure::Corrupt(m) => Error::Corrupt(m.clone()),
            Failure::Cancelled => Error::Cancelled,
        }
    }
}

pub(crate) type Done = std::result::Result<Vec<u8>, Failure>;
pub(crate) type Callback = Box<dyn FnOnce(&Done) + Send>;

#[derive(Default)]
struct Slot {
    result: Option<Done>,
    callback: Option<Callback>,
    /// Handed to a worker queue (the executor's "running").
    queued: bool,
    /// Nobody holds a handle to the result: drop it when it arrives.
    abandoned: bool,
}

/// Settings fixed at creation.
pub(crate) struct Config {
    pub processes: usize,
    pub method: StartMethod,
    pub max_tasks: u64,
    pub init: Option<Task>,
    pub queue_capacity: usize,
    pub max_message_size: usize,
    /// Executor semantics: a dead worker breaks the pool; tasks wait in the
    /// parent until a worker is about to be free (so they can be cancelled).
    pub executor: bool,
}

#[derive(Default)]
struct State {
    slots: HashMap<u64, Slot>,
    /// Executor only: tasks not yet handed to the worker queue.
    pending: VecDeque<Task>,
    /// Tasks (and STOPs) handed over but waiting for room in the task
    /// queue, oldest first; the feeder thread puts them.
    outbox: VecDeque<Task>,
    /// The feeder holds a task taken from `outbox` and not yet put: a new
    /// task may not overtake it.
    feeding: bool,
    /// One STOP per worker was handed over (once closing and drained).
    stops_sent: bool,
    /// Replies arriving in parts, by task id.
    parts: HashMap<u64, Parts>,
    /// Tasks handed over (in the outbox, the worker queue, or running).
    in_queue: usize,
    broken: Option<String>,
}

pub(crate) struct Core {
    pub cfg: Config,
    tasks: Queue<Task>,
    replies: Queue<Reply>,
    inflight: RawArray<u64>,
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Threads waiting for results (they pop replies themselves).
    waiters: AtomicUsize,
    /// Set under the state lock (so no task is handed over after the STOPs).
    closing: AtomicBool,
    terminate: AtomicBool,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    feeder: Mutex<Option<JoinHandle<()>>>,
    /// Signalled when the outbox gets a task or the feeder must quit.
    outbox_ready: Condvar,
    feeder_quit: AtomicBool,
    /// Worker pids, for tests and `Pool::pids`.
    pids: Mutex<Vec<u32>>,
}

impl Core {
    pub fn start(cfg: Config) -> Result<Arc<Core>> {
        if cfg.processes == 0 {
            return Err(Error::InvalidArgument("a pool needs at least one process"));
        }
        let tasks = Queue::builder()
            .capacity(cfg.queue_capacity)
            .max_message_size(cfg.max_message_size)
            .build()?;
        // Replies of any size travel (in parts if need be), so the reply
        // queue only needs room for a part.
        let replies = Queue::builder()
            .capacity(cfg.queue_capacity)
            .max_message_size(cfg.max_message_size.max(4 * PART_OVERHEAD))
            .build()?;
        let inflight = RawArray::new(&vec![0u64; cfg.processes])?;
        let core = Arc::new(Core {
            cfg,
            tasks,
            replies,
            inflight,
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            waiters: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            terminate: AtomicBool::new(false),
            supervisor: Mutex::new(None),
            feeder: Mutex::new(None),
            outbox_ready: Condvar::new(),
            feeder_quit: AtomicBool::new(false),
            pids: Mutex::new(Vec::new()),
        });
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn new_id(&self) -> u64 {
        // Relaxed: ids only need to be unique.
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a task and hands it to the workers (or, for the executor,
    /// to the pending list). Never blocks.
    pub fn submit(&self, task: Task, callback: Option<Callback>) -> Result<()> {
        // Refuse what can never fit before registering anything (the
        // task's own fields take well under 64 bytes).
        let max = self.tasks.max_message_size();
        if task.args.len() + 64 > max {
            return Err(Error::MessageTooLarge {
                size: task.args.len() + 64,
                max,
            });
        }
        let id = task.id;
        let mut st = self.lock();
        // Under the lock: `close` sets the flag and hands over the STOPs
        // under it, so no task is handed over behind them.
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(b) = &st.broken {
            return Err(Error::BrokenPool(b.clone()));
        }
        st.slots.insert(
            id,
            Slot {
                callback,
                queued: !self.cfg.executor,
                ..Slot::default()
            },
        );
        if self.cfg.executor {
            st.pending.push_back(task);
            drop(st);
            self.feed();
            return Ok(());
        }
        st.in_queue += 1;
        self.send(&mut st, task).inspect_err(|_| {
            st.in_queue -= 1;
            st.slots.remove(&id);
        })
    }

    /// Hands a task over without blocking: into the task queue if nothing
    /// waits before it and there is room, else to the back of the outbox.
    fn send(&self, st: &mut State, task: Task) -> Result<()> {
        if st.outbox.is_empty() && !st.feeding {
            match self.tasks.try_put(&task) {
                Err(Error::Full) => {}
                other => return other,
            }
        }
        st.outbox.push_back(task);
        self.outbox_ready.notify_one();
        Ok(())
    }

    /// Once closing and nothing waits in `pending`, hands over one STOP per
    /// worker (once), behind every task: the workers finish the queue and
    /// exit, as Python's do after `close` or `shutdown(wait=False)`.
    fn stop_when_drained(&self, st: &mut State) {
        if !self.closing.load(Ordering::Acquire) || st.stops_sent || !st.pending.is_empty() {
            return;
        }
        st.stops_sent = true;
        for _ in 0..self.cfg.processes {
            // A STOP that cannot be sent (the queue is closed) has nobody
            // left to stop.
            let _ = self.send(
                st,
                Task {
                    id: STOP,
                    tramp: 0,
                    target: 0,
                    args: Vec::new(),
                },
            );
        }
    }

    /// Executor: hands pending tasks over while fewer than `processes + 1`
    /// are queued or running (as Python's call queue); then, if closing,
    /// the STOPs.
    fn feed(&self) {
        loop {
            let mut failed = Vec::new();
            {
                let mut st = self.lock();
                while st.in_queue <= self.cfg.processes && st.broken.is_none() {
                    let Some(t) = st.pending.pop_front() else {
                        break;
                    };
                    let id = t.id;
                    st.in_queue += 1;
                    if let Some(s) = st.slots.get_mut(&id) {
                        s.queued = true;
                    }
                    if let Err(e) = self.send(&mut st, t) {
                        // Not handed over after all: fail just this task.
                        st.in_queue -= 1;
                        failed.push((id, e));
                    }
                }
                self.stop_when_drained(&mut st);
            }
            if failed.is_empty() {
                return;
            }
            // `record`, not `complete`: no recursion into `feed`, which
            // goes round again instead.
            for (id, e) in failed {
                self.record(id, Err(unsent(&e)), false);
            }
        }
    }

    fn dispatch(&self, r: Reply) {
        let outcome = match r.body {
            Body::Whole(o) => o,
            Body::Part {
                total,
                offset,
                bytes,
            } => match self.assemble(r.id, total, offset, bytes) {
                Ok(Some(o)) => o,
                Ok(None) => return,
                Err(m) => {
                    self.complete(r.id, Err(Failure::Corrupt(m)), true);
                    return;
                }
            },
        };
        let done: Done = match outcome {
            Outcome::Ok(b) => Ok(b),
            Outcome::Err(m) => Err(Failure::Failed(m)),
            Outcome::Panic(m) => Err(Failure::Panicked(m)),
            Outcome::Setup(m) => Err(Failure::Setup(m)),
        };
        self.complete(r.id, done, true);
    }

    /// Adds a part of a task's outcome; returns the outcome once complete.
    /// Parts of a task that is done (or unknown) are dropped.
    fn assemble(
        &self,
        id: u64,
        total: u64,
        offset: u64,
        bytes: Vec<u8>,
    ) -> std::result::Result<Option<Outcome>, String> {
        let mut st = self.lock();
        if st.slots.get(&id).is_none_or(|s| s.result.is_some()) {
            st.parts.remove(&id);
            return Ok(None);
        }
        let r = st.parts.entry(id).or_default().add(total, offset, bytes);
        if !matches!(r, Ok(None)) {
            st.parts.remove(&id);
        }
        r
    }

    /// Records a task's result (unless it already has one) and runs its
    /// callback; for the executor, then hands over more pending tasks.
    fn complete(&self, id: u64, done: Done, from_worker: bool) {
        self.record(id, done, from_worker);
        if self.cfg.executor {
            self.feed();
        }
    }

    /// Records a task's result (unless it already has one), runs its
    /// callback. `from_worker`: the task had been handed over.
    fn record(&self, id: u64, done: Done, from_worker: bool) {
        let cb = {
            let mut st = self.lock();
            if from_worker {
                st.in_queue = st.in_queue.saturating_sub(1);
            }
            // A part-way result is dropped with the task (its worker died).
            st.parts.remove(&id);
            match st.slots.get_mut(&id) {
                Some(s) if s.result.is_none() => {
                    s.result = Some(done.clone());
                    let cb = s.callback.take();
                    if s.abandoned {
                        st.slots.remove(&id);
                    }
                    cb
                }
                _ => None,
            }
        };
        if let Some(cb) = cb {
            // A panicking user callback must not take a pool thread (or an
            // unrelated caller's `get`) down with it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&done)));
        }
        // No condition variable to signal: waiters pop replies themselves
        // (in slices of at most 2 ms), so they see this result at once or
        // at the end of their current slice.
    }

    /// Pops and dispatches one reply, waiting at most `slice`.
    fn drive(&self, slice: Duration) -> bool {
        match self.replies.get_timeout(slice) {
            Ok(r) => {
                self.dispatch(r);
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until `ready(slots)` holds or `deadline` passes; pops replies
    /// meanwhile. Returns whether `ready` held.
    fn wait_until(
        &self,
        deadline: Option<Instant>,
        ready: &mut dyn FnMut(&HashMap<u64, Slot>) -> bool,
    ) -> bool {
        let _w = Waiting::new(&self.waiters);
        let ok = loop {
            if ready(&self.lock().slots) {
                break true;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                break false;
            }
            let slice = left.map_or(Duration::from_millis(2), |l| {
                l.min(Duration::from_millis(2))
            });
            self.drive(slice);
        };
        ok
    }

    /// Waits for every id; returns their results (or `None` on timeout).
    pub fn wait_all(&self, ids: &[u64], deadline: Option<Instant>) -> Option<Vec<Done>> {
        // Ids are checked in order and never re-checked once done, so
        // waiting for n results costs O(n), not O(n^2).
        let mut next = 0;
        let ok = self.wait_until(deadline, &mut |slots| {
            while next < ids.len() && slots.get(&ids[next]).is_none_or(|s| s.result.is_some()) {
                next += 1;
            }
            next == ids.len()
        });
        if !ok {
            return None;
        }
        let st = self.lock();
        Some(
            ids.iter()
                .map(|i| {
                    st.slots
                        .get(i)
                        .and_then(|s| s.result.clone())
                        .unwrap_or(Err(Failure::Broken("result already collected".into())))
                })
                .collect(),
        )
    }

    /// Waits until one of `ids` is done; returns the done ones.
    pub fn wait_any(&self, ids: &[u64], deadline: Option<Instant>) -> Vec<u64> {
        self.wait_until(deadline, &mut |slots| {
            ids.iter()
                .any(|i| slots.get(i).is_none_or(|s| s.result.is_some()))
        });
        let st = self.lock();
        ids.iter()
            .copied()
            .filter(|i| st.slots.get(i).is_none_or(|s| s.result.is_some()))
            .collect()
    }

    pub fn is_done(&self, id: u64) -> bool {
        self.lock()
            .slots
            .get(&id)
            .is_none_or(|s| s.result.is_some())
    }

    pub fn result_of(&self, id: u64) -> Option<Done> {
        self.lock().slots.get(&id).and_then(|s| s.result.clone())
    }

    pub fn is_queued(&self, id: u64) -> bool {
        self.lock()
            .slots
            .get(&id)
            .is_some_and(|s| s.queued && s.result.is_none())
    }

    /// Adds a callback, or runs it now if the task is done.
    pub fn on_done(&self, id: u64, cb: Callback) {
        let now = {
            let mut st = self.lock();
            match st.slots.get_mut(&id) {
                Some(s) if s.result.is_none() => {
                    let prev = s.callback.take();
                    s.callback = Some(match prev {
                        Some(p) => Box::new(move |d: &Done| {
                            p(d);
                            cb(d);
                        }),
                        None => cb,
                    });
                    None
                }
                Some(s) => s.result.clone().map(|r| (r, cb)),
                None => None,
            }
        };
        if let Some((r, cb)) = now {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&r)));
        }
    }

    /// Executor: cancels a task still pending in the parent.
    pub fn cancel(&self, id: u64) -> bool {
        let mut st = self.lock();
        let Some(pos) = st.pending.iter().position(|t| t.id == id) else {
            return st
                .slots
                .get(&id)
                .is_some_and(|s| s.result == Some(Err(Failure::Cancelled)));
        };
        st.pending.remove(pos);
        drop(st);
        self.complete(id, Err(Failure::Cancelled), false);
        true
    }

    /// Executor: cancels every pending task.
    pub fn cancel_pending(&self) {
        let ids: Vec<u64> = self.lock().pending.drain(..).map(|t| t.id).collect();
        for id in ids {
            self.record(id, Err(Failure::Cancelled), false);
        }
        // Nothing pending now: if closing, the STOPs may go.
        self.feed();
    }

    /// The caller no longer wants these results: drop them now, or as soon
    /// as they arrive.
    pub fn forget(&self, ids: &[u64]) {
        let mut st = self.lock();
        for i in ids {
            match st.slots.get_mut(i) {
                Some(s) if s.result.is_some() => {
                    st.slots.remove(i);
                }
                Some(s) => s.abandoned = true,
                None => {}
            }
        }
    }

    /// Whether some task has no result yet.
    fn has_outstanding(&self) -> bool {
        let st = self.lock();
        !st.pending.is_empty() || st.slots.values().any(|s| s.result.is_none())
    }

    pub fn broken(&self) -> Option<String> {
        self.lock().broken.clone()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.pids.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// No more tasks will be accepted; once the tasks handed over are done
    /// (for the executor: once nothing is pending), the workers exit.
    pub fn close(&self) {
        let mut st = self.lock();
        // Release: pairs with the Acquire in `submit` and the supervisor.
        self.closing.store(true, Ordering::Release);
        self.stop_when_drained(&mut st);
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

    /// Fails every task without a result (and drops pending ones) with
    /// `BrokenPool(msg)`; with `mark`, also marks the pool broken (once).
    fn fail_outstanding(&self, msg: &str, mark: bool) {
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

    /// Kills the workers at once; outstanding tasks fail with `BrokenPool`.
    pub fn terminate(&self) {
        self.closing.store(true, Ordering::Release);
        // Release: pairs with the Acquire in `supervise` and `feed_tasks`.
        self.terminate.store(true, Ordering::Release);
        self.join_supervisor();
    }

    fn join_supervisor(&self) {
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

/// Counts a thread as popping replies itself while alive (also when it
/// unwinds), so the supervisor leaves the reply queue to it.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        // Relaxed: a hint for the supervisor (it re-checks every 10 ms).
        n.fetch_add(1, Ordering::Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Relaxed: as in `new`.
        self.0.fetch_sub(1, Ordering::Relaxed);
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
fn supervise(core: Arc<Core>, started: std::sync::mpsc::Sender<Result<()>>) {
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
            // even when workers retire after `maxtasksperchild` tasks).
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

/// Why a task that could not be handed to the workers failed.
fn unsent(e: &Error) -> Failure {
    Failure::Broken(format!("the task could not be handed to the workers: {e}"))
}

/// The feeder thread: moves the outbox into the task queue, oldest first,
/// waiting for room as long as needed (workers make room as they take
/// tasks; replies are drained by waiting callers and the supervisor, so a
/// worker blocked on a full reply queue cannot hold it up). A task it
/// cannot put fails its result.
fn feed_tasks(core: Arc<Core>) {
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
