//! What a `Queue` and a `LoanQueue` share: the region, its MPMC ring of
//! small messages and block descriptors, and its block table; the waits
//! for a slot or a block, recovery, and the queue's closed state.

use std::time::{Duration, Instant};

use crate::atomic::{fence, Ordering};
use crate::codec::{Copied, Scratch};
use crate::region::{Kind, Region};
use crate::ring::blocks::{Block, Blocks, Claim, Desc, DESC_LEN, KIND_BLOCK};
use crate::ring::mpmc::{Mpmc, MpmcHeader, Pop, Push, Recovered};
use crate::ring::wait::{Stop, WaitPoint};
use crate::sys::futex;
use crate::{Error, Result};

/// How often a blocked `put`/`get` checks for a slot or a block left
/// claimed by a dead process.
pub(crate) const RECOVER_EVERY: Duration = Duration::from_millis(100);

/// Most block-table entries of one queue.
const MAX_ENTRIES: u32 = 1024;

/// Values of the ring header's `closed` word. Only ever raised
/// (`fetch_max`), so a shutdown is never undone by a later `close`.
/// Any other non-zero value (garbage) reads as `CLOSED`.
/// ```text
/// OPEN           puts and gets work
/// CLOSED         close(): puts fail (Closed); gets drain, then fail (Closed)
/// SHUT_DOWN      shutdown(false): puts fail (ShutDown); gets drain, then fail (ShutDown)
/// SHUT_DOWN_NOW  shutdown(true): puts fail; gets fail at once; the queue
///                is emptied (by `shutdown`, and by any put that raced it)
/// ```
pub(crate) const OPEN: u32 = 0;
pub(crate) const CLOSED: u32 = 1;
pub(crate) const SHUT_DOWN: u32 = 2;
pub(crate) const SHUT_DOWN_NOW: u32 = 3;

/// The error of a call that found the queue ended in `state`.
pub(crate) fn ended(state: u32) -> Error {
    match state {
        SHUT_DOWN | SHUT_DOWN_NOW => Error::ShutDown,
        _ => Error::Closed,
    }
}

pub(crate) fn broken() -> Error {
    Error::Corrupt("queue indices overwritten with garbage".into())
}

/// One task fewer in a `JoinableQueue`'s count, never below zero; wakes
/// `join` when it reaches zero.
fn task_done_saturating(unfinished: &crate::atomic::AtomicU32) {
    // Relaxed: a starting guess; the AcqRel CAS decides.
    let mut v = unfinished.load(Ordering::Relaxed);
    while v > 0 {
        // AcqRel: as in `JoinableQueue::task_done_raw`.
        match unfinished.compare_exchange_weak(v, v - 1, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                if v == 1 {
                    futex::wake_all(unfinished);
                }
                return;
            }
            Err(now) => v = now,
        }
    }
}

/// A message taken from the ring.
pub(crate) enum Taken {
    /// An inline message, copied out (into the caller's [`Copied`]).
    Inline,
    /// A block claimed for reading (`READING` as us): release it.
    Block(Block),
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub ring: Mpmc,
    pub blocks: Blocks,
    /// This process's last put on the queue went out of line: the next
    /// one encodes straight into a block (see `Queue::put_deadline`).
    /// Process-local, a hint.
    pub large_hint: std::sync::atomic::AtomicBool,
    // Keeps the mapping alive; declared after `ring` and `blocks`, which
    // point into it.
    pub region: Region,
}

/// Where the block table starts in the payload: after the ring, 128-aligned.
fn table_offset(ring_len: usize) -> usize {
    ring_len.next_multiple_of(128)
}

impl Inner {
    /// Creates the region of a queue: a ring of `capacity` slots of `slot`
    /// bytes, and a block table for messages up to `max_message` bytes.
    pub fn create(
        name: Option<String>,
        tag: u64,
        capacity: usize,
        slot: usize,
        max_message: usize,
    ) -> Result<Inner> {
        let ring_len = Mpmc::bytes_needed(capacity as u64, slot)
            .ok_or(Error::InvalidArgument("queue too large"))?;
        let entries = (capacity.min(MAX_ENTRIES as usize) as u32).max(4);
        let size = table_offset(ring_len) + Blocks::bytes_needed(entries);
        let mut ring = None;
        let (region, _) = Region::builder(Kind::Queue)
            .maybe_name(name)
            .size(size)
            .type_tag(tag)
            .create_with(|r| {
                // SAFETY: the payload is `size` zeroed bytes, 128-aligned,
                // private until published, mapped as long as `region`; the
                // table lies past the ring, within it.
                unsafe {
                    ring = Some(Mpmc::init(r.payload(), capacity as u64, slot)?);
                    Blocks::init(
                        r.payload().add(table_offset(ring_len)),
                        entries,
                        max_message as u64,
                        (size + crate::region::HEADER_LEN) as u64,
                    );
                }
                Ok(())
            })?;
        let ring = ring.ok_or(Error::InvalidArgument("queue not initialised"))?;
        let blocks = Self::attach_blocks(&ring, &region)?;
        Ok(Inner {
            ring,
            blocks,
            large_hint: Default::default(),
            region,
        })
    }

    /// Attaches to an opened queue region, validating its geometry.
    pub fn attach(region: Region) -> Result<Inner> {
        // SAFETY: the region is published (open waited for READY), its
        // payload is 128-aligned and `payload_len` bytes long, and `region`
        // keeps it mapped for as long as the ring is used.
        let ring = unsafe { Mpmc::attach(region.payload(), region.payload_len()) }?;
        let blocks = Self::attach_blocks(&ring, &region)?;
        Ok(Inner {
            ring,
            blocks,
            large_hint: Default::default(),
            region,
        })
    }

    pub fn attach_blocks(ring: &Mpmc, region: &Region) -> Result<Blocks> {
        let ring_len = Mpmc::bytes_needed(ring.capacity(), ring.slot_size())
            .ok_or_else(|| Error::Corrupt("queue header: geometry".into()))?;
        let off = table_offset(ring_len);
        let avail = region
            .payload_len()
            .checked_sub(off)
            .ok_or_else(|| Error::Corrupt("queue header: no block table".into()))?;
        let total = (region.payload_len() + crate::region::HEADER_LEN) as u64;
        // SAFETY: `off + avail` is within the payload (checked above); the
        // payload is 128-aligned so the table is; `region` keeps it mapped
        // as long as the handle (both live in `Inner`).
        unsafe { Blocks::attach(region.payload().add(off), avail, region.file(), total) }
    }

    /// This process's tag in the ring (see `Mpmc::register_with`); a dead
    /// process's tag is not handed on while a block still names it.
    pub fn register(&self) -> Result<u32> {
        self.ring.register_with(|tag| self.blocks.names(tag))
    }

    pub fn hdr(&self) -> &MpmcHeader {
        self.ring.header()
    }

    /// The `closed` word (see [`OPEN`] and friends).
    pub fn state(&self) -> u32 {
        // Acquire: pairs with the SeqCst (Release) stores of `close` and
        // `shutdown`.
        match self.hdr().closed.load(Ordering::Acquire) {
            s @ (OPEN | CLOSED | SHUT_DOWN | SHUT_DOWN_NOW) => s,
            _ => CLOSED,
        }
    }

    /// Frees a slot or a block left claimed by a process that died
    /// mid-`put` or mid-`get` (and the block a dead consumer's slot
    /// named), and wakes the others. Called by blocked callers.
    pub fn recover(&self) -> Result<()> {
        let r = self.ring.recover(|bytes, kind| {
            if kind == KIND_BLOCK {
                if let Some(d) = Desc::decode(bytes) {
                    self.blocks.free_described(&d);
                }
            }
        });
        let freed = self.blocks.recover(|tag| self.ring.judge(tag));
        if r != Recovered::Nothing || freed > 0 {
            self.wake_everyone();
        }
        if freed > 0 {
            crate::trace::event!(
                WARN,
                "queue blocks recovered from processes that died holding them"
            );
        }
        if r == Recovered::Garbage {
            return Err(Error::Corrupt(
                "a queue slot was claimed by no known process (garbage); \
                 the slot was freed and its message, if any, is lost"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn wake_everyone(&self) {
        self.hdr().not_empty.0.notify(u32::MAX);
        self.hdr().not_full.0.notify(u32::MAX);
    }

    /// After a successful push: wakes a consumer, and if an immediate
    /// shutdown raced this put, empties the queue (the shutdown's own
    /// drain may have run before our message was published).
    pub fn pushed(&self) {
        // SeqCst: Dekker pair with the fence in `shutdown` (our push, then
        // our read of the state; its store of the state, then its drain):
        // at least one of us sees the other, so the message is drained.
        fence(Ordering::SeqCst);
        if self.state() == SHUT_DOWN_NOW {
            self.drain();
        } else {
            self.hdr().not_empty.0.notify(1);
        }
    }

    /// Removes every published message, freeing the blocks they name and
    /// counting each as a finished task (for a `JoinableQueue`; a plain
    /// queue's count stays 0).
    pub fn drain(&self) {
        let mut removed = false;
        // Not registered (the table is full): nothing can be taken; the
        // messages stay, and gets still fail with `ShutDown`.
        let Ok(me) = self.register() else {
            return;
        };
        let desc = |p: *const u8, n: usize, kind: u32| {
            if kind != KIND_BLOCK || n != DESC_LEN {
                return None;
            }
            // SAFETY: the ring hands us `n` readable bytes of a slot we hold.
            Desc::decode(unsafe { std::slice::from_raw_parts(p, n) })
        };
        loop {
            match self.ring.try_pop(me, desc) {
                Pop::Item(d) => {
                    if let Some(d) = d {
                        self.blocks.free_described(&d);
                    }
                }
                Pop::Corrupt(_) => {}
                Pop::Empty | Pop::Broken => break,
            }
            removed = true;
            task_done_saturating(&self.hdr().unfinished);
        }
        if removed {
            self.hdr().not_full.0.notify(u32::MAX);
        }
    }

    /// Pushes `bytes` of `kind`, waiting for a slot until `deadline`.
    pub fn push_wait(
        &self,
        bytes: &[u8],
        kind: u32,
        me: u32,
        deadline: Option<Instant>,
    ) -> Result<()> {
        self.wait_on(&self.hdr().not_full.0, deadline, || {
            match self.ring.try_push_kind(bytes, kind, me) {
                Push::Done => Some(Ok(())),
                Push::Broken => Some(Err(broken())),
                Push::Full => match self.state() {
                    OPEN => None,
                    s => Some(Err(ended(s))),
                },
            }
        })
    }

    /// Waits on `wp` until `check` gives a result or `deadline` passes,
    /// recovering slots and blocks of dead processes every
    /// [`RECOVER_EVERY`]: the one wait of every blocking queue call.
    fn wait_on<T>(
        &self,
        wp: &WaitPoint,
        deadline: Option<Instant>,
        check: impl FnMut() -> Option<Result<T>>,
    ) -> Result<T> {
        match wp.wait_until(check, deadline, Some(RECOVER_EVERY), || self.recover()) {
            Ok(r) => r,
            Err(Stop::Check(e)) => Err(e),
            Err(Stop::Timeout) => Err(Error::Timeout),
        }
    }

    /// Claims a block for `len` bytes as `me`, waiting for one until
    /// `deadline` when every entry is busy.
    pub fn block_wait(&self, len: u64, me: u32, deadline: Option<Instant>) -> Result<Block> {
        self.wait_on(&self.hdr().not_full.0, deadline, || match self.state() {
            OPEN => match self.blocks.acquire(len, me) {
                Ok(Some(b)) => Some(Ok(b)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            },
            s => Some(Err(ended(s))),
        })
    }

    /// Pushes the descriptor of block `b` (filled) and publishes it;
    /// gives the block back if the push fails.
    pub fn send_block(&self, b: Block, me: u32, deadline: Option<Instant>) -> Result<()> {
        let d = Desc {
            entry: b.entry,
            gen: b.gen,
            len: b.len,
            at: b.at as u32,
            producer: me,
        };
        match self.push_wait(&d.encode(), KIND_BLOCK, me, deadline) {
            Ok(()) => {
                self.blocks.publish(&b, me);
                self.pushed();
                Ok(())
            }
            Err(e) => {
                self.blocks.release(b, me);
                self.hdr().not_full.0.notify(u32::MAX);
                Err(e)
            }
        }
    }

    /// Gives back a block we hold and wakes anyone waiting for one.
    pub fn release(&self, b: Block, me: u32) {
        self.blocks.release(b, me);
        self.hdr().not_full.0.notify(u32::MAX);
    }

    /// Takes a message if one is ready: an inline one copied out into
    /// `out`, or a block claimed while we still hold its ring slot.
    /// Descriptors whose block was recovered from a dead producer are
    /// skipped. `owned`: an inline message is copied into a fresh
    /// allocation for the decoded value (see `codec::owns_copy`).
    pub fn try_take(&self, me: u32, owned: bool, out: &mut Copied) -> Option<Result<Taken>> {
        loop {
            let read = |p: *const u8, n: usize, kind: u32| -> Result<Option<Taken>> {
                match kind {
                    0 => {
                        // SAFETY: the ring hands us a pointer to `n` readable
                        // bytes of a slot we own until this closure returns.
                        unsafe { out.whole_as(p, n, owned) };
                        Ok(Some(Taken::Inline))
                    }
                    KIND_BLOCK => {
                        // SAFETY: as above.
                        let bytes = unsafe { std::slice::from_raw_parts(p, n) };
                        let d = Desc::decode(bytes).ok_or_else(|| {
                            Error::Corrupt("queue slot holds a garbage block descriptor".into())
                        })?;
                        match self.blocks.claim(&d, me)? {
                            Claim::Held(b) => Ok(Some(Taken::Block(b))),
                            Claim::Stale => Ok(None),
                        }
                    }
                    k => Err(Error::Corrupt(format!("queue slot of unknown kind {k}"))),
                }
            };
            let r = match self.ring.try_pop(me, read) {
                Pop::Item(Ok(Some(t))) => Some(Ok(t)),
                Pop::Item(Ok(None)) => {
                    self.hdr().not_full.0.notify(1);
                    continue;
                }
                Pop::Item(Err(e)) => Some(Err(e)),
                Pop::Corrupt(len) => Some(Err(Error::Corrupt(format!(
                    "queue slot claims {len} bytes, more than the slot holds"
                )))),
                Pop::Broken => return Some(Err(broken())),
                Pop::Empty => None,
            };
            if r.is_some() {
                self.hdr().not_full.0.notify(1);
            }
            return r;
        }
    }

    /// Waits for a message until `deadline` (or until the queue ends).
    pub fn take_wait(
        &self,
        me: u32,
        deadline: Option<Instant>,
        owned: bool,
        out: &mut Copied,
    ) -> Result<Taken> {
        self.wait_on(&self.hdr().not_empty.0, deadline, || {
            if self.state() == SHUT_DOWN_NOW {
                return Some(Err(Error::ShutDown));
            }
            match self.try_take(me, owned, out) {
                Some(r) => Some(r),
                None => match self.state() {
                    OPEN => None,
                    s => Some(Err(ended(s))),
                },
            }
        })
    }

    /// Copies a claimed block out into a scratch buffer (a fresh one for
    /// the decoded value if `owned`), then gives it back.
    pub fn copy_out(&self, b: Block, me: u32, owned: bool) -> Result<Scratch> {
        let r = self.blocks.map(&b).map(|m| {
            // SAFETY: the mapping covers `cap >= at + len` bytes (checked
            // in `claim`), and we hold the block (READING) until `release`.
            unsafe { Scratch::copy_as(m.ptr().add(b.at as usize), b.len as usize, owned) }
        });
        self.release(b, me);
        r
    }

    /// Takes an immediate shutdown's or a closed queue's state into account
    /// for a non-blocking get.
    pub fn try_take_now(&self, me: u32, owned: bool, out: &mut Copied) -> Result<Taken> {
        if self.state() == SHUT_DOWN_NOW {
            return Err(Error::ShutDown);
        }
        match self.try_take(me, owned, out) {
            Some(r) => r,
            None => match self.state() {
                OPEN => Err(Error::Empty),
                s => Err(ended(s)),
            },
        }
    }
}
