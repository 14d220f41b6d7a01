//! A bounded lock-free MPMC ring of fixed-size slots (Vyukov's design with
//! per-slot sequence numbers), laid out in shared memory, in which every
//! claim of a slot names its claimant in the same atomic step.
//!
//! # Memory
//! ```text
//! MpmcHeader | procs: [u64; PROCS] | slot 0 | slot 1 | ...
//! slot i:  state: u64 | len: u32 | kind: u32 | data[slot_size]
//! procs[k]: packed (pid, start time) of a process using the ring, 0 = free
//! ```
//!
//! # The slot state word
//! `state = seq << 23 | tag`, with `seq` a 41-bit wrapping sequence number
//! and `tag` who holds the slot:
//!
//! | seq            | tag       | meaning                                           |
//! |----------------|-----------|---------------------------------------------------|
//! | `2*pos`        | 0         | free for the producer of `pos`                    |
//! | `2*pos`        | k + 1     | claimed by a producer of process `procs[k]`       |
//! | `2*pos + 1`    | 0         | holds the message enqueued at `pos`               |
//! | `2*pos + 1`    | k + 1     | claimed by a consumer of process `procs[k]`       |
//! | `2*pos + 1`    | `TOMB`    | its producer died before filling it: skip it      |
//! | `2*(pos+cap)`  | 0         | consumed; free for the producer of `pos + cap`    |
//!
//! (Doubling keeps "full at pos" distinct from "free for pos + 1" even with
//! one slot, where Vyukov's original `pos + 1` would coincide.)
//!
//! # Claiming
//! A producer claims position `pos` by a CAS of the slot's state from
//! `(2*pos, 0)` to `(2*pos, me)`, *then* moves `enqueue_pos` from `pos` to
//! `pos + 1`; anyone who finds the slot at `enqueue_pos` already claimed
//! moves `enqueue_pos` on for it (helping), so a claimant that dies before
//! moving it blocks nobody. It writes, then stores `(2*pos + 1, 0)`
//! (Release). A consumer does the same with `dequeue_pos` and stores
//! `(2*(pos + cap), 0)` when done. Each Release pairs with the Acquire load
//! (or CAS) of the state by the next party to use the slot.
//!
//! Because the claim and the claimant's name are one word, there is no
//! instant at which a slot is held by nobody known: a blocked caller that
//! finds the slot it waits for claimed by a process that no longer exists
//! (checked as pid *and* start time, so pid reuse cannot fool it) takes it
//! over with a CAS from the exact word it saw. A live claimant, however
//! slow, is never taken over. A dead producer's slot becomes a tombstone
//! (its `put` never returned, so nothing acknowledged is lost); a dead
//! consumer's slot is freed (its message died with it).
//!
//! The claimant is a *process*, not a thread: processes die whole under
//! SIGKILL, and nothing between a claim and its release can panic.
//!
//! # Process table
//! A process registers once per ring handle (after a fork, again) by taking
//! a free entry of `procs`, or one whose process is dead and which no slot
//! names. Up to [`PROCS`] processes may use one ring at a time.
//!
//! Positions are u64 and never wrap in practice (2^63 messages); the 41-bit
//! `seq` repeats every 2^40 positions, far beyond any claimant's delay.

use crate::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::ring::wait::WaitPoint;
use crate::ring::Padded;
use crate::{Error, Result};

mod procs;
mod recovery;

/// Bytes before the first slot's data.
const SLOT_HEADER: usize = 16;

/// Most bytes of a dead consumer's message that [`Mpmc::recover`] hands
/// back (enough for a block descriptor).
pub(crate) const LOST_MAX: usize = 64;

/// Processes that may use one ring at the same time.
pub(crate) const PROCS: usize = 1024;

/// Low bits of a slot's state naming its holder (see the module docs).
const TAG_BITS: u32 = 23;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// Tag of a slot whose producer died before filling it: consumers skip it.
const TOMB: u32 = TAG_MASK as u32;

/// A state word: sequence number and holder.
#[inline]
fn pack(seq: u64, tag: u32) -> u64 {
    (seq << TAG_BITS) | u64::from(tag)
}

/// The holder named by a state word.
#[inline]
fn tag_of(w: u64) -> u32 {
    (w & TAG_MASK) as u32
}

/// Signed distance from `seq` to the sequence number of `w`, modulo 2^41
/// (wrapping: the state comes from shared memory and may be garbage).
#[inline]
fn diff(w: u64, seq: u64) -> i64 {
    ((w & !TAG_MASK).wrapping_sub(seq << TAG_BITS) as i64) >> TAG_BITS
}

/// Moves a position on from `pos`, for ourselves or for a claimant that
/// has not done it yet; false if someone already did.
///
/// Every party moves the position *before* it releases the slot to a later
/// state, so a slot found past `pos` while the position still says `pos`
/// is garbage, never a race.
#[inline]
fn advance(at: &AtomicU64, pos: u64) -> bool {
    // Relaxed: positions are hints that publish nothing; slot states do.
    // A party that sees a slot released (Acquire) sees the position moved,
    // because its claimant moved it (or saw it moved) before the release.
    at.compare_exchange(
        pos,
        pos.wrapping_add(1),
        Ordering::Relaxed,
        Ordering::Relaxed,
    )
    .is_ok()
}

/// Ring header, at the start of the ring's memory.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct MpmcHeader {
    capacity: AtomicU64,
    slot_size: AtomicU64,
    /// 1 once closed (no more puts accepted).
    pub closed: AtomicU32,
    /// Unfinished tasks of a `JoinableQueue`; a futex word for `join`.
    pub unfinished: AtomicU32,
    enqueue_pos: Padded<AtomicU64>,
    dequeue_pos: Padded<AtomicU64>,
    /// Consumers sleep here while the ring is empty.
    pub not_empty: Padded<WaitPoint>,
    /// Producers sleep here while the ring is full.
    pub not_full: Padded<WaitPoint>,
}

#[repr(C)]
struct SlotHeader {
    /// `seq << 23 | tag`: see the module docs.
    state: AtomicU64,
    len: AtomicU32,
    /// What the bytes are, for the ring's user (a queue: inline message
    /// or block descriptor); written and read with `len`.
    kind: AtomicU32,
}

/// A handle to a ring in mapped memory. Geometry is copied out and
/// validated once at attach time, never re-read from shared memory.
#[derive(Debug)]
pub(crate) struct Mpmc {
    hdr: *const MpmcHeader,
    procs: *const AtomicU64,
    slots: *mut u8,
    cap: u64,
    slot_size: usize,
    stride: usize,
    /// This process's tag in the ring, cached as `pid << 32 | tag` (0:
    /// not registered; a forked child sees its parent's pid and registers).
    me: std::sync::atomic::AtomicU64,
    /// Under loom, slot headers live in their own array (loom atomics
    /// cannot be placed in raw zeroed memory).
    #[cfg(loom)]
    loom_slots: *const SlotHeader,
}

// SAFETY: the pointers refer to shared memory kept mapped by the owner of
// this handle; all access goes through atomics or is ordered by them.
unsafe impl Send for Mpmc {}
// SAFETY: as above.
unsafe impl Sync for Mpmc {}

/// Outcome of [`Mpmc::try_pop`].
pub(crate) enum Pop<R> {
    /// A message was read.
    Item(R),
    /// The slot's length was invalid (garbage written into shared memory);
    /// the slot was consumed.
    Corrupt(u32),
    /// The ring was empty.
    Empty,
    /// The ring's indices are garbage (a position that does not move while
    /// its slot is past it): nothing can be taken.
    Broken,
}

/// Outcome of [`Mpmc::try_push`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Enqueued.
    Done,
    /// No free slot.
    Full,
    /// The ring's indices are garbage (see [`Pop::Broken`]).
    Broken,
}

/// Who holds a claimed slot, as [`Mpmc::recover`] judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claimant {
    /// A running process: never taken over, however slow.
    Alive,
    /// A process that no longer runs.
    Dead,
    /// No registered process: the tag is garbage.
    Unknown,
}

/// Outcome of [`Mpmc::recover`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovered {
    /// Nothing was stuck.
    Nothing,
    /// A slot held by a dead process was freed.
    Freed,
    /// A slot whose claim named no process (garbage) was freed; the
    /// message it held, if any, is lost and must be reported.
    Garbage,
}

/// Retries allowed while a position does not move although its slot is
/// past it. In a healthy ring helping moves it at once, so this only trips
/// on garbage.
const STALE_RETRIES: u32 = 1000;

impl Mpmc {
    fn stride_for(slot_size: usize) -> Option<usize> {
        let s = slot_size.checked_add(SLOT_HEADER + 15)? & !15;
        Some(s)
    }

    fn table_offset() -> usize {
        std::mem::size_of::<MpmcHeader>()
    }

    fn slots_offset() -> usize {
        Self::table_offset() + PROCS * 8
    }

    /// Bytes needed for a ring of `cap` slots of `slot_size` bytes.
    pub fn bytes_needed(cap: u64, slot_size: usize) -> Option<usize> {
        let stride = Self::stride_for(slot_size)?;
        usize::try_from(cap)
            .ok()?
            .checked_mul(stride)?
            .checked_add(Self::slots_offset())
    }

    /// Initialises a ring in zeroed memory and returns a handle.
    ///
    /// # Safety
    /// `base` must be 128-aligned and point to `bytes_needed(cap, slot_size)`
    /// zeroed bytes that nobody else accesses until this returns, and that
    /// stay mapped as long as the handle is used.
    pub unsafe fn init(base: *mut u8, cap: u64, slot_size: usize) -> Result<Mpmc> {
        // SAFETY: per the caller, base is aligned, large enough and zeroed
        // (all-zero atomics are valid).
        let hdr = unsafe { &*base.cast::<MpmcHeader>() };
        // Relaxed: published by the region's Release in `publish`.
        hdr.capacity.store(cap, Ordering::Relaxed);
        hdr.slot_size.store(slot_size as u64, Ordering::Relaxed);
        let len = Self::bytes_needed(cap, slot_size)
            .ok_or(Error::InvalidArgument("queue geometry overflows"))?;
        // SAFETY: geometry just written; `len` bytes are mapped per the caller.
        let ring = unsafe { Self::attach(base, len) }?;
        for i in 0..cap {
            // Relaxed: published by the region's Release.
            ring.slot(i).state.store(pack(2 * i, 0), Ordering::Relaxed);
        }
        Ok(ring)
    }

    /// Attaches to an initialised ring, validating its geometry against the
    /// `len` bytes available.
    ///
    /// # Safety
    /// `base` must be 128-aligned, point to `len` mapped bytes that stay
    /// mapped while the handle is used, and the ring must have been
    /// published (Acquire) before this call.
    pub unsafe fn attach(base: *mut u8, len: usize) -> Result<Mpmc> {
        let bad = |what: &str| Error::Corrupt(format!("queue header: {what}"));
        if len < Self::slots_offset() {
            return Err(bad("region smaller than the ring header"));
        }
        // SAFETY: aligned and at least a header long (checked just above).
        let hdr = unsafe { &*base.cast::<MpmcHeader>() };
        // Relaxed: written before publication.
        let cap = hdr.capacity.load(Ordering::Relaxed);
        let slot_size = hdr.slot_size.load(Ordering::Relaxed);
        if cap == 0 {
            return Err(bad("zero capacity"));
        }
        let slot_size = usize::try_from(slot_size).map_err(|_| bad("slot size"))?;
        let stride = Self::stride_for(slot_size).ok_or_else(|| bad("slot size"))?;
        let need = Self::bytes_needed(cap, slot_size).ok_or_else(|| bad("geometry overflows"))?;
        if need > len {
            return Err(bad("geometry larger than the region"));
        }
        Ok(Mpmc {
            hdr,
            // SAFETY: within the `need <= len` bytes; the table follows
            // the header, whose size is a multiple of 128.
            procs: unsafe { base.add(Self::table_offset()) }.cast::<AtomicU64>(),
            // SAFETY: as above.
            slots: unsafe { base.add(Self::slots_offset()) },
            cap,
            slot_size,
            stride,
            me: std::sync::atomic::AtomicU64::new(0),
            #[cfg(loom)]
            loom_slots: std::ptr::null(),
        })
    }

    /// The shared header.
    pub fn header(&self) -> &MpmcHeader {
        // SAFETY: valid for the handle's life per `attach`'s contract.
        unsafe { &*self.hdr }
    }

    fn slot(&self, i: u64) -> &SlotHeader {
        #[cfg(loom)]
        // SAFETY: loom_slots has `cap` entries that outlive the handle.
        return unsafe { &*self.loom_slots.add(i as usize) };
        #[cfg(not(loom))]
        // SAFETY: i < cap, so the slot lies within the validated geometry;
        // stride is a multiple of 16 so the header is aligned.
        unsafe {
            &*self
                .slots
                .add(i as usize * self.stride)
                .cast::<SlotHeader>()
        }
    }

    fn data(&self, i: u64) -> *mut u8 {
        #[cfg(loom)]
        // SAFETY: under loom `slots` is a plain byte array of cap * stride.
        return unsafe { self.slots.add(i as usize * self.stride) };
        #[cfg(not(loom))]
        // SAFETY: as in `slot`; data follows the 16-byte slot header.
        unsafe {
            self.slots.add(i as usize * self.stride + SLOT_HEADER)
        }
    }

    /// Entry `k` of the process table.
    #[cfg(not(loom))]
    fn proc_entry(&self, k: usize) -> &AtomicU64 {
        debug_assert!(k < PROCS);
        // SAFETY: k < PROCS entries lie between the header and the slots
        // (validated in `attach`), 8-aligned.
        unsafe { &*self.procs.add(k) }
    }

    /// Capacity in messages.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Largest message in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Approximate number of messages queued, counting a `put` that has
    /// claimed its slot but not yet moved `enqueue_pos`.
    pub fn len(&self) -> u64 {
        let h = self.header();
        // Relaxed (all): an estimate by nature.
        let mut e = h.enqueue_pos.0.load(Ordering::Relaxed);
        let w = self.slot(e % self.cap).state.load(Ordering::Relaxed);
        if diff(w, e.wrapping_mul(2)) == 0 && tag_of(w) != 0 {
            e = e.wrapping_add(1);
        }
        let d = h.dequeue_pos.0.load(Ordering::Relaxed);
        e.saturating_sub(d).min(self.cap)
    }

    /// Enqueues `bytes` if a slot is free, claiming it as `me` (a tag from
    /// [`Mpmc::register_with`]). `bytes.len()` must be at most `slot_size`
    /// (checked by the caller; refused here otherwise).
    #[inline]
    pub fn try_push(&self, bytes: &[u8], me: u32) -> Push {
        self.push_dying_at::<0>(bytes, 0, me)
    }

    /// [`Mpmc::try_push`], labelling the message with `kind` (handed to
    /// the reader of [`Mpmc::try_pop`]).
    #[inline]
    pub fn try_push_kind(&self, bytes: &[u8], kind: u32, me: u32) -> Push {
        self.push_dying_at::<0>(bytes, kind, me)
    }

    /// [`Mpmc::try_push`], returning early at crash point `DIE` (0: never;
    /// 1: after the claim; 2: after moving the position; 3: after the
    /// copy), so the loom model can kill a producer at every step.
    fn push_dying_at<const DIE: u8>(&self, bytes: &[u8], kind: u32, me: u32) -> Push {
        if bytes.len() > self.slot_size || me == 0 || me >= TOMB {
            return Push::Broken;
        }
        let h = self.header();
        // Relaxed: a hint; the claim CAS on the slot decides.
        let mut pos = h.enqueue_pos.0.load(Ordering::Relaxed);
        let mut stale = 0;
        loop {
            let i = pos % self.cap;
            let slot = self.slot(i);
            let free = pos.wrapping_mul(2);
            // Acquire: pairs with the Release that freed the slot (the last
            // consumer's, or `recover`'s), so its reads are done before we write.
            let w = slot.state.load(Ordering::Acquire);
            match diff(w, free) {
                0 if tag_of(w) == 0 => {
                    // Acquire: as the load above. The claim names us in the
                    // same step, so no instant exists at which a death here
                    // leaves the slot held by nobody known.
                    if slot
                        .state
                        .compare_exchange_weak(
                            w,
                            pack(free, me),
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        if DIE == 1 {
                            return Push::Done;
                        }
                        advance(&h.enqueue_pos.0, pos);
                        if DIE == 2 {
                            return Push::Done;
                        }
                        // Relaxed: published by the Release below.
                        slot.len.store(bytes.len() as u32, Ordering::Relaxed);
                        // Relaxed: as `len`.
                        slot.kind.store(kind, Ordering::Relaxed);
                        // SAFETY: we hold slot `i` until the state store; the
                        // data area holds slot_size >= bytes.len() bytes.
                        unsafe {
                            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data(i), bytes.len())
                        };
                        if DIE == 3 {
                            return Push::Done;
                        }
                        // Release: pairs with the consumer's Acquire load of the state.
                        slot.state
                            .store(pack(free.wrapping_add(1), 0), Ordering::Release);
                        return Push::Done;
                    }
                    // Relaxed: a hint, as above.
                    pos = h.enqueue_pos.0.load(Ordering::Relaxed);
                }
                d if d < 0 => return Push::Full,
                // `pos` is claimed: move the position on for its claimant,
                // who may have died before doing so.
                0 => {
                    advance(&h.enqueue_pos.0, pos);
                    // Relaxed: a hint, as above.
                    pos = h.enqueue_pos.0.load(Ordering::Relaxed);
                }
                // The slot is past `pos`: our `pos` is stale, or (if the
                // position really still says `pos`) the state is garbage.
                _ => {
                    if advance(&h.enqueue_pos.0, pos) {
                        return Push::Broken;
                    }
                    // Relaxed: a hint, as above.
                    let now = h.enqueue_pos.0.load(Ordering::Relaxed);
                    if now == pos {
                        stale += 1;
                        if stale > STALE_RETRIES {
                            return Push::Broken;
                        }
                        crate::atomic::spin_hint();
                    }
                    pos = now;
                }
            }
        }
    }

    /// Dequeues a message if one is ready, claiming it as `me` and handing
    /// `read` a pointer to the data, its validated length and its kind
    /// (unvalidated: any value a producer, or garbage, wrote); `read` must
    /// copy what it needs.
    #[inline]
    pub fn try_pop<R>(&self, me: u32, read: impl FnOnce(*const u8, usize, u32) -> R) -> Pop<R> {
        self.pop_dying_at::<0, R>(me, read)
    }

    /// [`Mpmc::try_pop`], returning early at crash point `DIE` (0: never;
    /// 1: after the claim; 2: after moving the position, both returning
    /// `Corrupt(u32::MAX)`; 3: after the read), as [`Mpmc::push_dying_at`].
    fn pop_dying_at<const DIE: u8, R>(
        &self,
        me: u32,
        read: impl FnOnce(*const u8, usize, u32) -> R,
    ) -> Pop<R> {
        if me == 0 || me >= TOMB {
            return Pop::Broken;
        }
        let h = self.header();
        // Relaxed: a hint; the claim CAS on the slot decides.
        let mut pos = h.dequeue_pos.0.load(Ordering::Relaxed);
        let mut stale = 0;
        loop {
            let i = pos % self.cap;
            let slot = self.slot(i);
            let full = pos.wrapping_mul(2).wrapping_add(1);
            let next = pos.wrapping_add(self.cap).wrapping_mul(2);
            // Acquire: pairs with the producer's Release of `(2*pos + 1, 0)`
            // (or `recover`'s tombstone).
            let w = slot.state.load(Ordering::Acquire);
            let stale_check = match diff(w, full) {
                0 if tag_of(w) == 0 => {
                    // Acquire: as the load above. Claim and name in one step.
                    if slot
                        .state
                        .compare_exchange_weak(
                            w,
                            pack(full, me),
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        if DIE == 1 {
                            return Pop::Corrupt(u32::MAX);
                        }
                        advance(&h.dequeue_pos.0, pos);
                        if DIE == 2 {
                            return Pop::Corrupt(u32::MAX);
                        }
                        // Relaxed: ordered by the Acquire of the state above.
                        let len = slot.len.load(Ordering::Relaxed);
                        // Relaxed: as `len`.
                        let kind = slot.kind.load(Ordering::Relaxed);
                        let out = if len as usize <= self.slot_size {
                            Pop::Item(read(self.data(i), len as usize, kind))
                        } else {
                            Pop::Corrupt(len)
                        };
                        if DIE == 3 {
                            return out;
                        }
                        // Release: our reads happen before the next producer's
                        // writes (its Acquire of the state).
                        slot.state.store(pack(next, 0), Ordering::Release);
                        return out;
                    }
                    false
                }
                0 if tag_of(w) == TOMB => {
                    // A producer died before filling it: skip it, moving the
                    // position first (see `advance`). AcqRel: as the release
                    // above, for the next producer.
                    advance(&h.dequeue_pos.0, pos);
                    let _ = slot.state.compare_exchange(
                        w,
                        pack(next, 0),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                    false
                }
                d if d < 0 => return Pop::Empty,
                // Claimed by another consumer: help it move the position.
                0 => {
                    advance(&h.dequeue_pos.0, pos);
                    false
                }
                // Past `pos`: stale, or garbage if the position agrees.
                _ => {
                    if advance(&h.dequeue_pos.0, pos) {
                        return Pop::Broken;
                    }
                    true
                }
            };
            // Relaxed: a hint, as above.
            let now = h.dequeue_pos.0.load(Ordering::Relaxed);
            if stale_check && now == pos {
                stale += 1;
                if stale > STALE_RETRIES {
                    return Pop::Broken;
                }
                crate::atomic::spin_hint();
            }
            pos = now;
        }
    }
}

#[cfg(not(loom))]
mod stats;

#[cfg(all(test, loom))]
mod loom_tests;
