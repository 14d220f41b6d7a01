//! Read-only snapshots of live objects, for the `ipc` command
//! (`ipc inspect NAME`). Not a stable API: the layout it reads is this
//! crate's, and so is the shape of what it returns.
//!
//! Everything here opens the region as any user of it would (validating
//! its header and geometry), reads atomics, and changes nothing.

use crate::region::{Kind, Region};
use crate::ring::mpmc::Mpmc;
use crate::shared::Shared;
use crate::sync::raw_lock::{RawLock, CONTENDED, TID_MASK};
use crate::sync::{RawCondition, RawRLock};
use crate::sys::proc::TaskId;
use crate::Result;

/// A queue's state (see [`queue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Messages queued (approximate while others use the queue).
    pub depth: u64,
    /// Capacity in messages.
    pub capacity: u64,
    /// Largest message the queue accepts, in bytes.
    pub max_message_size: usize,
    /// Largest message that travels inline in a ring slot, in bytes.
    pub slot_size: usize,
    /// Payload blocks not free (queued, or held by a `put` or `get`).
    pub blocks_in_use: u64,
    /// Longest message now queued, in bytes (0 if empty).
    pub largest_queued: usize,
    /// Slots claimed by a process that died mid-`put` or mid-`get`; the
    /// next blocked caller recovers them.
    pub held_by_dead: u64,
    /// Slots claimed by a running process (an operation in progress).
    pub held_by_live: u64,
    /// Slots left by a producer that died before filling them, not yet
    /// skipped by a consumer.
    pub tombstones: u64,
    /// Slots whose claim names no registered process: garbage.
    pub unknown_claims: u64,
    /// Processes registered in the queue that still run.
    pub processes_alive: u64,
    /// Processes registered in the queue that are gone.
    pub processes_dead: u64,
    /// Whether the queue was closed.
    pub closed: bool,
    /// Unfinished tasks (a `JoinableQueue`'s count).
    pub unfinished: u32,
}

/// Reads the queue in `region` (any message type).
///
/// # Errors
/// [`Error::Incompatible`](crate::Error::Incompatible) if `region` is not a
/// queue, [`Error::Corrupt`](crate::Error::Corrupt) if its geometry is
/// garbage.
///
/// # Examples
///
/// ```
/// use ipc_core::queue::Queue;
/// use ipc_core::region::{Kind, Region};
/// let name = format!("doc-inspect-queue-{}", std::process::id());
/// let q = Queue::<u64>::create(&name, 4)?;
/// q.put(&7)?;
/// let st = ipc_core::inspect::queue(&Region::open(&name, Kind::Queue)?)?;
/// assert_eq!((st.depth, st.capacity, st.held_by_dead), (1, 4, 0));
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn queue(region: &Region) -> Result<QueueStats> {
    if region.kind() != Kind::Queue {
        return Err(crate::Error::Incompatible {
            what: "kind",
            expected: "Queue".into(),
            found: format!("{:?}", region.kind()),
        });
    }
    // SAFETY: the region is open, so published (open waited for READY);
    // its payload is 128-aligned and `payload_len` bytes long, and the
    // ring does not outlive `region` (it is dropped before we return).
    let ring = unsafe { Mpmc::attach(region.payload(), region.payload_len()) }?;
    let blocks = crate::queue::inner::Inner::attach_blocks(&ring, region)?;
    let st = ring.stats();
    Ok(QueueStats {
        depth: st.depth,
        capacity: st.capacity,
        max_message_size: usize::try_from(blocks.max_message()).unwrap_or(usize::MAX),
        slot_size: st.slot_size,
        blocks_in_use: blocks.in_use() as u64,
        largest_queued: st.largest_queued,
        held_by_dead: st.held_by_dead,
        held_by_live: st.held_by_live,
        tombstones: st.tombstones,
        unknown_claims: st.unknown_claims,
        processes_alive: st.procs_alive,
        processes_dead: st.procs_dead,
        closed: st.closed,
        unfinished: st.unfinished,
    })
}

/// The thread holding a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOwner {
    /// Its thread id.
    pub tid: u32,
    /// Its process id (`None` once the thread is gone).
    pub pid: Option<u32>,
    /// Whether that exact thread (tid and start time) still runs.
    pub alive: bool,
}

/// A lock's state (see [`lock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockState {
    /// Its holder, if it is held.
    pub owner: Option<LockOwner>,
    /// Whether waiters may be asleep on it.
    pub contended: bool,
    /// For an `RLock`: how many times its holder acquired it.
    pub count: Option<u32>,
    /// For a `Condition`: threads waiting to be notified.
    pub waiters: Option<u32>,
}

fn lock_state(raw: &RawLock) -> LockState {
    let (word, owner) = raw.snapshot();
    let tid = word & TID_MASK;
    let owner = (word != 0).then(|| {
        let rec = TaskId::unpack(owner);
        let alive = if rec.id == tid {
            rec.is_alive()
        } else {
            // Not recorded yet (or the holder died before recording).
            crate::sys::proc::exists(tid)
        };
        LockOwner {
            tid,
            pid: alive.then(|| tgid(tid)).flatten(),
            alive,
        }
    });
    LockState {
        owner,
        contended: word & CONTENDED != 0,
        count: None,
        waiters: None,
    }
}

/// The process of thread `tid` (`Tgid:` in `/proc/<tid>/status`).
fn tgid(tid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads the lock, rlock or condition named `name` (`kind` says which).
///
/// # Errors
/// As the object's `open`; [`Error::InvalidArgument`](crate::Error::InvalidArgument)
/// for another kind.
///
/// # Examples
///
/// ```
/// use ipc_core::region::Kind;
/// use ipc_core::sync::Lock;
/// let name = format!("doc-inspect-lock-{}", std::process::id());
/// let l = Lock::create(&name)?;
/// let _g = l.acquire()?;
/// let st = ipc_core::inspect::lock(&name, Kind::Lock)?;
/// let owner = st.owner.unwrap();
/// assert!(owner.alive && owner.pid == Some(std::process::id()));
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn lock(name: &str, kind: Kind) -> Result<LockState> {
    match kind {
        Kind::Lock => {
            let l = Shared::<RawLock>::open(kind, name)?;
            Ok(lock_state(&l))
        }
        Kind::RLock => {
            let r = Shared::<RawRLock>::open(kind, name)?;
            let (raw, count) = r.snapshot();
            let mut st = lock_state(raw);
            st.count = Some(if st.owner.is_some() { count } else { 0 });
            Ok(st)
        }
        Kind::Condition => {
            let r = Shared::<RawCondition>::open(kind, name)?;
            let (raw, waiters) = r.snapshot();
            let mut st = lock_state(raw);
            st.waiters = Some(waiters);
            Ok(st)
        }
        _ => Err(crate::Error::InvalidArgument(
            "not a lock, rlock or condition",
        )),
    }
}
