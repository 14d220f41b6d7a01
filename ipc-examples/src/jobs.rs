//! The protocol of `jobs_server` and `jobs_worker`: two programs started
//! by hand that meet on named objects.
//!
//! For a base name `b` (default [`DEFAULT_NAME`]) the server creates:
//!
//! | region | object | role |
//! |---|---|---|
//! | `b.jobs` | `Queue<Job>` | jobs the server feeds |
//! | `b.results` | `Queue<Done>` | results the workers send back |
//! | `b.stop` | `Event` | set by the server when every job is accounted for |
//! | `b.count` | `Value<u64>` | jobs finished, bumped by each worker before it sends the result |
//! | `b.board` | `Array<u64>` | the [`Board`]: who works on which job |
//!
//! **How the server tells which job a dead worker lost.** A `Queue` hands
//! a message to exactly one `get`, and nobody else sees it again: if the
//! taker dies, the job is gone with it. So each worker keeps, on the
//! board, its identity (pid and start time, immune to pid reuse) and the
//! job it is working on, written right after taking the job and cleared
//! after sending its result. The server polls the board: a worker that
//! is dead while its slot names a job without a result lost that job, and
//! the server reports it by number (it reads the results queue *after*
//! the board, so a result sent just before the death is never mistaken
//! for a loss). The only gap is a death between taking a job and
//! writing it down (microseconds): the server also tracks every job it
//! handed out, and once the queue is empty, a job that has no result and
//! no live worker holding it for [`GRACE`] is reported lost too.
//!
//! Lost jobs are reported, not run again: every job runs **at most
//! once** (a job with side effects never runs twice). Re-queueing a lost
//! job instead (`jobs.put(&job)`) would make it at least once.

use std::time::Duration;

use ipc_core::queue::Queue;
use ipc_core::sync::{Event, LockError};
use ipc_core::sys::proc::TaskId;
use ipc_core::value::{Array, Value};
use ipc_core::{Error, Result};

/// The base name both programs use unless given `--name`.
pub const DEFAULT_NAME: &str = "jobs-demo";

/// How many workers can be connected at once.
pub const MAX_WORKERS: usize = 32;

/// Bumped when the board's layout changes, so that mismatched builds of
/// the two programs refuse each other instead of misreading the board.
pub const PROTOCOL: u64 = 1;

/// How long a job handed out but held by no live worker may stay
/// unaccounted for (with the queue empty) before the server reports it
/// lost (its `--grace-ms` by default).
pub const GRACE: Duration = Duration::from_secs(5);

/// A job: count the Collatz steps of `n`, taking at least `ms`
/// milliseconds (to have time to watch, or kill, a worker mid-job).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's number, from 0.
    pub id: u32,
    /// The number whose Collatz steps are counted.
    pub n: u64,
    /// Least time the job takes, in milliseconds.
    pub ms: u32,
}

impl Job {
    /// Job number `id` of a run whose jobs take `ms` milliseconds each.
    ///
    /// # Examples
    ///
    /// ```
    /// let j = ipc_examples::jobs::Job::new(0, 10);
    /// assert_eq!((j.id, j.n, j.ms), (0, 27, 10));
    /// ```
    pub fn new(id: u32, ms: u32) -> Job {
        Job {
            id,
            n: 27 + 10 * u64::from(id),
            ms,
        }
    }

    /// Does the job: sleeps `ms + extra`, then counts the steps.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let j = ipc_examples::jobs::Job::new(0, 0);
    /// assert_eq!(j.run(Duration::ZERO), 111); // 27 takes 111 steps to reach 1
    /// ```
    pub fn run(&self, extra: Duration) -> u32 {
        std::thread::sleep(Duration::from_millis(self.ms.into()) + extra);
        collatz_steps(self.n)
    }
}

/// A finished job, sent back by the worker that did it.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The job's number.
    pub id: u32,
    /// The job's input.
    pub n: u64,
    /// Its Collatz steps.
    pub steps: u32,
    /// The pid of the worker that did it.
    pub worker: u32,
}

/// Steps of the Collatz sequence from `n` down to 1.
///
/// # Examples
///
/// ```
/// assert_eq!(ipc_examples::jobs::collatz_steps(6), 8); // 6 3 10 5 16 8 4 2 1
/// ```
pub fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// The names of a run's regions, from its base name.
///
/// # Examples
///
/// ```
/// let n = ipc_examples::jobs::Names::new("jobs-demo");
/// assert_eq!(n.jobs, "jobs-demo.jobs");
/// assert_eq!(n.board, "jobs-demo.board");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The `Queue<Job>`.
    pub jobs: String,
    /// The `Queue<Done>`.
    pub results: String,
    /// The stop `Event`.
    pub stop: String,
    /// The `Value<u64>` of jobs done.
    pub count: String,
    /// The [`Board`].
    pub board: String,
}

impl Names {
    /// The names for base name `base`.
    pub fn new(base: &str) -> Names {
        Names {
            jobs: format!("{base}.jobs"),
            results: format!("{base}.results"),
            stop: format!("{base}.stop"),
            count: format!("{base}.count"),
            board: format!("{base}.board"),
        }
    }
}

/// One worker's entry on the [`Board`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The slot's index.
    pub index: usize,
    /// The worker (pid and start time).
    pub worker: TaskId,
    /// The job it is working on, if any.
    pub job: Option<u32>,
}

/// Who works on which job: an `Array<u64>` in shared memory.
///
/// ```text
/// [0]          the server's identity (TaskId::pack)
/// [1]          PROTOCOL
/// [2 + 2i]     worker i's identity, 0 if the slot is free
/// [2 + 2i + 1] 1 + the job worker i is working on, 0 if idle
/// ```
///
/// Workers claim a free slot under the array's lock; a slot is written
/// only by its worker, and freed by it when it leaves or by the server
/// once it found the worker dead.
///
/// # Examples
///
/// ```
/// use ipc_examples::jobs::Board;
/// let name = format!("doc-board-{}", std::process::id());
/// let server = Board::create(&name)?;
/// let worker = Board::open(&name)?; // in the worker program
/// let slot = worker.register()?;
/// worker.start_job(slot, 7)?;
/// let seen = server.slots()?;
/// assert_eq!(seen.len(), 1);
/// assert_eq!(seen[0].worker.id, std::process::id());
/// assert_eq!(seen[0].job, Some(7));
/// worker.leave(slot)?;
/// assert!(server.slots()?.is_empty());
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Board {
    cells: Array<u64>,
}

const LEN: usize = 2 + 2 * MAX_WORKERS;

/// A write that reports `OwnerDied` still happened: carry on.
fn written(r: Result<()>) -> Result<()> {
    match r {
        Err(Error::OwnerDied) => Ok(()),
        r => r,
    }
}

impl Board {
    /// Creates the board (the server), recording the caller as its server.
    ///
    /// # Errors
    /// As [`Array::create`].
    pub fn create(name: &str) -> Result<Board> {
        let mut init = [0u64; LEN];
        init[0] = TaskId::current_process().pack();
        init[1] = PROTOCOL;
        Ok(Board {
            cells: Array::create(name, &init)?,
        })
    }

    /// Opens the board (a worker), checking its layout.
    ///
    /// # Errors
    /// As [`Array::open`]; [`Error::Incompatible`] if the board is of
    /// another layout or protocol.
    pub fn open(name: &str) -> Result<Board> {
        let cells = Array::<u64>::open(name)?;
        let b = Board { cells };
        let protocol = b.read(1)?;
        if b.cells.len() != LEN || protocol != PROTOCOL {
            return Err(Error::Incompatible {
                what: "jobs board",
                expected: format!("protocol {PROTOCOL}, {LEN} cells"),
                found: format!("protocol {protocol}, {} cells", b.cells.len()),
            });
        }
        Ok(b)
    }

    fn read(&self, i: usize) -> Result<u64> {
        match self.cells.get(i) {
            // The read happened but its value was dropped: read again
            // (the death has been reported once; the lock is healthy now).
            Err(Error::OwnerDied) => self.cells.get(i),
            r => r,
        }
    }

    /// The server that created the board.
    pub fn server(&self) -> Result<TaskId> {
        Ok(TaskId::unpack(self.read(0)?))
    }

    /// Claims a free slot for the calling process; returns its index.
    ///
    /// # Errors
    /// [`Error::Full`] if [`MAX_WORKERS`] workers are connected.
    pub fn register(&self) -> Result<usize> {
        let lock = self.cells.get_lock();
        // A worker killed while registering leaves at worst a slot naming
        // a dead process, which the server frees: carry on.
        let _guard = match lock.acquire() {
            Ok(g) | Err(LockError::OwnerDied(g)) => g,
            Err(_) => return Err(Error::Timeout),
        };
        let me = TaskId::current_process().pack();
        // Reads and writes below take the lock we hold without waiting
        // (it is recursive for its holder).
        for i in 0..MAX_WORKERS {
            if self.read(2 + 2 * i)? == 0 {
                written(self.cells.set(2 + 2 * i + 1, 0))?;
                written(self.cells.set(2 + 2 * i, me))?;
                return Ok(i);
            }
        }
        Err(Error::Full)
    }

    /// Records that the worker in `slot` took job `id`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] for a bad slot.
    pub fn start_job(&self, slot: usize, id: u32) -> Result<()> {
        written(self.cells.set(2 + 2 * slot + 1, u64::from(id) + 1))
    }

    /// Records that the worker in `slot` sent its job's result.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] for a bad slot.
    pub fn end_job(&self, slot: usize) -> Result<()> {
        written(self.cells.set(2 + 2 * slot + 1, 0))
    }

    /// Frees `slot` (the worker is leaving).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] for a bad slot.
    pub fn leave(&self, slot: usize) -> Result<()> {
        self.end_job(slot)?;
        written(self.cells.set(2 + 2 * slot, 0))
    }

    /// The occupied slots, read in one go under the lock.
    ///
    /// # Errors
    /// As [`Array::to_vec`].
    pub fn slots(&self) -> Result<Vec<Slot>> {
        let cells = match self.cells.to_vec() {
            Err(Error::OwnerDied) => self.cells.to_vec(),
            r => r,
        }?;
        Ok((0..MAX_WORKERS)
            .filter(|i| cells[2 + 2 * i] != 0)
            .map(|i| Slot {
                index: i,
                worker: TaskId::unpack(cells[2 + 2 * i]),
                job: cells[2 + 2 * i + 1]
                    .checked_sub(1)
                    .and_then(|j| u32::try_from(j).ok()),
            })
            .collect())
    }

    /// Frees `slot` if it still belongs to `worker` (the server, once it
    /// found the worker dead). Returns whether it did.
    ///
    /// # Errors
    /// As [`Array::set`].
    pub fn free_if(&self, slot: usize, worker: TaskId) -> Result<bool> {
        let lock = self.cells.get_lock();
        let _guard = match lock.acquire() {
            Ok(g) | Err(LockError::OwnerDied(g)) => g,
            Err(_) => return Err(Error::Timeout),
        };
        if self.read(2 + 2 * slot)? != worker.pack() {
            return Ok(false);
        }
        self.leave(slot)?;
        Ok(true)
    }
}

/// Everything a run shares, created by the server and opened by name by
/// each worker.
///
/// # Examples
///
/// ```
/// use ipc_examples::jobs::{Done, Job, Jobs};
/// let base = format!("doc-jobs-{}", std::process::id());
/// let server = Jobs::create(&base, 4)?;
/// let worker = Jobs::open(&base)?; // in another program
/// server.jobs.put(&Job::new(0, 0))?;
/// let job = worker.jobs.get()?;
/// worker.results.put(&Done { id: job.id, n: job.n, steps: 111, worker: 1 })?;
/// assert_eq!(server.results.get()?.steps, 111);
/// drop((server, worker));
/// assert!(ipc_examples::shm::leftovers(&base).is_empty());
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Jobs {
    /// Jobs, fed by the server.
    pub jobs: Queue<Job>,
    /// Results, sent by the workers.
    pub results: Queue<Done>,
    /// Set by the server when the run is over.
    pub stop: Event,
    /// Jobs finished, bumped by the workers.
    pub count: Value<u64>,
    /// Who works on which job.
    pub board: Board,
}

impl Jobs {
    /// Creates the run's regions (the server), the jobs queue last, with
    /// room for `capacity` jobs at a time.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if a region of that name exists (another
    /// server, or the leftovers of one that crashed), and the creation
    /// errors of each object.
    pub fn create(base: &str, capacity: usize) -> Result<Jobs> {
        let n = Names::new(base);
        let board = Board::create(&n.board)?;
        let count = Value::create(&n.count, 0u64)?;
        let stop = Event::create(&n.stop)?;
        let results = Queue::builder()
            .capacity(4 * MAX_WORKERS)
            .max_message_size(256)
            .name(&n.results)
            .build()?;
        let jobs = Queue::builder()
            .capacity(capacity)
            .max_message_size(256)
            .name(&n.jobs)
            .build()?;
        Ok(Jobs {
            jobs,
            results,
            stop,
            count,
            board,
        })
    }

    /// Opens the run's regions by name (a worker), the jobs queue first:
    /// once it exists, so do the others.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the server has not created them (yet), and
    /// the open errors of each object.
    pub fn open(base: &str) -> Result<Jobs> {
        let n = Names::new(base);
        let jobs = Queue::open(&n.jobs)?;
        Ok(Jobs {
            jobs,
            results: Queue::open(&n.results)?,
            stop: Event::open(&n.stop)?,
            count: Value::open(&n.count)?,
            board: Board::open(&n.board)?,
        })
    }
}
