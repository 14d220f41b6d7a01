//! The machinery shared by `Pool` and `ProcessPoolExecutor`: a task queue
//! and a reply queue in shared memory and a table of outstanding results.
//! The threads that start and watch the workers (the supervisor, which
//! replaces or mourns dead ones and dispatches replies when no caller is
//! waiting for them, and the feeder) live in `supervisor.rs`, above this.
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
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::task::{unsent, Body, Failure, Parts, Reply, Task, PART_OVERHEAD, STOP};
use crate::process::target::Outcome;
use crate::process::StartMethod;
use crate::queue::Queue;
use crate::value::RawArray;
use crate::{Error, Result};

pub(crate) type Done = std::result::Result<Vec<u8>, Failure>;
pub(crate) type Callback = Box<dyn FnOnce(&Done) + Send>;

#[derive(Default)]
pub(super) struct Slot {
    pub(super) result: Option<Done>,
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
pub(super) struct State {
    pub(super) slots: HashMap<u64, Slot>,
    /// Executor only: tasks not yet handed to the worker queue.
    pub(super) pending: VecDeque<Task>,
    /// Tasks (and STOPs) handed over but waiting for room in the task
    /// queue, oldest first; the feeder thread puts them.
    pub(super) outbox: VecDeque<Task>,
    /// The feeder holds a task taken from `outbox` and not yet put: a new
    /// task may not overtake it.
    pub(super) feeding: bool,
    /// One STOP per worker was handed over (once closing and drained).
    pub(super) stops_sent: bool,
    /// Replies arriving in parts, by task id.
    pub(super) parts: HashMap<u64, Parts>,
    /// Tasks handed over (in the outbox, the worker queue, or running).
    pub(super) in_queue: usize,
    pub(super) broken: Option<String>,
}

pub(crate) struct Core {
    pub cfg: Config,
    pub(super) tasks: Queue<Task>,
    pub(super) replies: Queue<Reply>,
    pub(super) inflight: RawArray<u64>,
    pub(super) state: Mutex<State>,
    pub(super) next_id: AtomicU64,
    /// Threads waiting for results (they pop replies themselves).
    pub(super) waiters: AtomicUsize,
    /// Set under the state lock (so no task is handed over after the STOPs).
    pub(super) closing: AtomicBool,
    pub(super) terminate: AtomicBool,
    pub(super) supervisor: Mutex<Option<JoinHandle<()>>>,
    pub(super) feeder: Mutex<Option<JoinHandle<()>>>,
    /// Signalled when the outbox gets a task or the feeder must quit.
    pub(super) outbox_ready: Condvar,
    pub(super) feeder_quit: AtomicBool,
    /// Worker pids, for tests and `Pool::pids`.
    pub(super) pids: Mutex<Vec<u32>>,
}

impl Core {
    /// A pool's shared state and queues, with no thread or worker yet.
    pub(super) fn new(cfg: Config) -> Result<Core> {
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
        Ok(Core {
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
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
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
    pub(super) fn feed(&self) {
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
    pub(super) fn complete(&self, id: u64, done: Done, from_worker: bool) {
        self.record(id, done, from_worker);
        if self.cfg.executor {
            self.feed();
        }
    }

    /// Records a task's result (unless it already has one), runs its
    /// callback. `from_worker`: the task had been handed over.
    pub(super) fn record(&self, id: u64, done: Done, from_worker: bool) {
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
    pub(super) fn drive(&self, slice: Duration) -> bool {
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
    pub(super) fn has_outstanding(&self) -> bool {
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
