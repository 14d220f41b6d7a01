//! A bounded lock-free MPMC ring of fixed-size slots (Vyukov's design with
//! per-slot sequence numbers), laid out in shared memory.
//!
//! ```text
//! slot i:  seq: u64 | len: u32 | pad: u32 | data[slot_size]
//! seq == 2*pos            slot free for the producer that claims `pos`
//! seq == 2*pos + 1        slot holds the message enqueued at `pos`
//! seq == 2*(pos + cap)    consumed; free for the producer of `pos + cap`
//! ```
//! (Doubling keeps "full at pos" distinct from "free for pos + 1" even with
//! one slot, where Vyukov's original `pos + 1` would coincide.)
//! A producer claims `pos` by CAS on `enqueue_pos`, writes, then stores
//! `seq = 2*pos + 1` (Release). A consumer claims by CAS on `dequeue_pos`,
//! reads, then stores `seq = 2*(pos + cap)` (Release). Each Release pairs with
//! the Acquire load of `seq` by the next party to use the slot.
//!
//! Positions are u64 and never wrap in practice (2^63 messages).

use crate::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::ring::wait::WaitPoint;
use crate::ring::Padded;
use crate::{Error, Result};

/// Bytes before the first slot's data.
const SLOT_HEADER: usize = 16;

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
    seq: AtomicU64,
    len: AtomicU32,
    /// Thread (tid) between claiming and releasing this slot, 0 otherwise:
    /// lets a blocked party tell a slow peer from a dead one.
    claimer: AtomicU32,
}

/// `len` of a slot whose producer died before filling it: consumers skip it.
const TOMBSTONE: u32 = u32::MAX - 1;

/// A handle to a ring in mapped memory. Geometry is copied out and
/// validated once at attach time, never re-read from shared memory.
#[derive(Debug)]
pub(crate) struct Mpmc {
    hdr: *const MpmcHeader,
    slots: *mut u8,
    cap: u64,
    slot_size: usize,
    stride: usize,
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
    /// The ring's indices are garbage (a slot's sequence number is ahead of
    /// a position that does not move): nothing can be taken.
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

/// Retries allowed while a slot's sequence number is ahead of a position
/// that does not move. In a healthy ring "ahead" means another party just
/// claimed the position, so the reload makes progress at once.
const STALE_RETRIES: u32 = 1000;

impl Mpmc {
    fn stride_for(slot_size: usize) -> Option<usize> {
        let s = slot_size.checked_add(SLOT_HEADER + 15)? & !15;
        Some(s)
    }

    /// Bytes needed for a ring of `cap` slots of `slot_size` bytes.
    pub fn bytes_needed(cap: u64, slot_size: usize) -> Option<usize> {
        let stride = Self::stride_for(slot_size)?;
        usize::try_from(cap)
            .ok()?
            .checked_mul(stride)?
            .checked_add(std::mem::size_of::<MpmcHeader>())
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
            ring.slot(i).seq.store(2 * i, Ordering::Relaxed);
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
        // SAFETY: aligned and at least a header long (checked by callers
        // via bytes_needed or region validation).
        let hdr = unsafe { &*base.cast::<MpmcHeader>() };
        // Relaxed: written before publication.
        let cap = hdr.capacity.load(Ordering::Relaxed);
        let slot_size = hdr.slot_size.load(Ordering::Relaxed);
        let bad = |what: &str| Error::Corrupt(format!("queue header: {what}"));
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
            // SAFETY: within the `need <= len` bytes.
            slots: unsafe { base.add(std::mem::size_of::<MpmcHeader>()) },
            cap,
            slot_size,
            stride,
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

    /// Capacity in messages.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Largest message in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Approximate number of messages queued.
    pub fn len(&self) -> u64 {
        let h = self.header();
        // Relaxed: an estimate by nature.
        let e = h.enqueue_pos.0.load(Ordering::Relaxed);
        let d = h.dequeue_pos.0.load(Ordering::Relaxed);
        e.saturating_sub(d).min(self.cap)
    }

    /// Enqueues `bytes` if a slot is free. `bytes.len()` must be at most
    /// `slot_size` (checked by the caller; refused here otherwise).
    pub fn try_push(&self, bytes: &[u8]) -> Push {
        if bytes.len() > self.slot_size {
            return Push::Broken;
        }
        let h = self.header();
        // Relaxed: a hint; the CAS below decides.
        let mut pos = h.enqueue_pos.0.load(Ordering::Relaxed);
        let mut stale = 0;
        loop {
            let i = pos % self.cap;
            let slot = self.slot(i);
            // Acquire: pairs with the consumer's Release of `2*(pos + cap)`
            // (or init), so its reads of the slot are done before we write.
            let seq = slot.seq.load(Ordering::Acquire);
            // Wrapping: positions come from shared memory and may be garbage.
            let diff = seq.wrapping_sub(pos.wrapping_mul(2)) as i64;
            if diff == 0 {
                // Relaxed: claiming the position publishes nothing; the
                // slot's seq store below does.
                match h.enqueue_pos.0.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // Relaxed (claimer, len): a hint for `recover`, and
                        // data published by the Release below.
                        slot.claimer
                            .store(crate::sys::proc::tid(), Ordering::Relaxed);
                        slot.len.store(bytes.len() as u32, Ordering::Relaxed);
                        // SAFETY: we own slot `i` until the seq store; the
                        // data area holds slot_size >= bytes.len() bytes.
                        unsafe {
                            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data(i), bytes.len())
                        };
                        slot.claimer.store(0, Ordering::Relaxed);
                        // Release: pairs with the consumer's Acquire load of seq.
                        slot.seq
                            .store(pos.wrapping_mul(2).wrapping_add(1), Ordering::Release);
                        return Push::Done;
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                return Push::Full;
            } else {
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

    /// Unblocks the ring if a party died between claiming a slot and
    /// releasing it (the slot would stay claimed forever): a consumer that
    /// died mid-copy (its message was delivered to it and is gone with it)
    /// or a producer that died mid-write (its `put` never returned, so
    /// nothing acknowledged is lost; the slot becomes a tombstone that
    /// consumers skip). Called by blocked callers every 100 ms; returns
    /// whether it freed anything.
    pub fn recover(&self) -> bool {
        let h = self.header();
        // Relaxed (positions): a snapshot; every change below is a CAS on
        // the slot's seq that fails if the slot moved on meanwhile.
        let e = h.enqueue_pos.0.load(Ordering::Relaxed);
        let d = h.dequeue_pos.0.load(Ordering::Relaxed);
        // Producers blocked at `e`: did the consumer of `e - cap` die?
        if let Some(p) = e.checked_sub(self.cap).filter(|p| *p < d) {
            let slot = self.slot(p % self.cap);
            let full = p.wrapping_mul(2).wrapping_add(1);
            let free = p.wrapping_add(self.cap).wrapping_mul(2);
            // AcqRel: takes over the dead consumer's claim and publishes the
            // free slot to the next producer's Acquire load of seq.
            if self.claimer_dead(slot, full)
                && slot
                    .seq
                    .compare_exchange(full, free, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                // Relaxed: a hint.
                slot.claimer.store(0, Ordering::Relaxed);
                return true;
            }
        }
        // Consumers blocked at `d`: did the producer that claimed `d` die?
        if d < e {
            let slot = self.slot(d % self.cap);
            let free = d.wrapping_mul(2);
            if self.claimer_dead(slot, free) {
                // Relaxed: published by the AcqRel CAS below.
                slot.len.store(TOMBSTONE, Ordering::Relaxed);
                slot.claimer.store(0, Ordering::Relaxed);
                if slot
                    .seq
                    .compare_exchange(
                        free,
                        free.wrapping_add(1),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return true;
                }
            }
        }
        false
    }

    /// Whether the party that claimed a slot still at `seq` is dead: it
    /// recorded its tid and that thread no longer exists. (Nothing recorded
    /// means it claimed nanoseconds ago, or died in those nanoseconds: we
    /// never take over then, since a live but preempted party would later
    /// write into a slot we had recycled.)
    fn claimer_dead(&self, slot: &SlotHeader, seq: u64) -> bool {
        // Acquire: pairs with the releases of seq; we act only while it
        // still holds the stuck value (and the caller's CAS re-checks).
        if slot.seq.load(Ordering::Acquire) != seq {
            return false;
        }
        // Relaxed: the Acquire load of seq above made the last release's
        // clearing of `claimer` visible; a newer value is the claimer's.
        match slot.claimer.load(Ordering::Relaxed) {
            0 => false,
            tid => !cfg!(loom) && !crate::sys::proc::exists(tid),
        }
    }

    /// Dequeues a message if one is ready, handing `read` a pointer to the
    /// data and its validated length; `read` must copy what it needs.
    pub fn try_pop<R>(&self, read: impl FnOnce(*const u8, usize) -> R) -> Pop<R> {
        let h = self.header();
        // Relaxed: a hint; the CAS decides.
        let mut pos = h.dequeue_pos.0.load(Ordering::Relaxed);
        let mut stale = 0;
        loop {
            let i = pos % self.cap;
            let slot = self.slot(i);
            // Acquire: pairs with the producer's Release of `2*pos + 1`.
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos.wrapping_mul(2).wrapping_add(1)) as i64;
            if diff == 0 {
                // Relaxed: claiming publishes nothing; the Acquire load of
                // seq above already ordered the producer's writes before us.
                match h.dequeue_pos.0.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // Relaxed (claimer): a hint for `recover`.
                        slot.claimer
                            .store(crate::sys::proc::tid(), Ordering::Relaxed);
                        // Relaxed: ordered by the Acquire of seq above.
                        let len = slot.len.load(Ordering::Relaxed);
                        if len == TOMBSTONE {
                            // A producer died before filling it: skip.
                            slot.claimer.store(0, Ordering::Relaxed);
                            // Release: as below.
                            slot.seq.store(
                                pos.wrapping_add(self.cap).wrapping_mul(2),
                                Ordering::Release,
                            );
                            // Relaxed: a hint, as above.
                            pos = h.dequeue_pos.0.load(Ordering::Relaxed);
                            continue;
                        }
                        let out = if len as usize <= self.slot_size {
                            Pop::Item(read(self.data(i), len as usize))
                        } else {
                            Pop::Corrupt(len)
                        };
                        slot.claimer.store(0, Ordering::Relaxed);
                        // Release: our reads happen before the next producer's writes.
                        slot.seq.store(
                            pos.wrapping_add(self.cap).wrapping_mul(2),
                            Ordering::Release,
                        );
                        return out;
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                return Pop::Empty;
            } else {
                // Relaxed: a hint, as above.
                let now = h.dequeue_pos.0.load(Ordering::Relaxed);
                if now == pos {
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
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    #[allow(dead_code)]
    struct Mem(Box<MpmcHeader>, Vec<SlotHeader>, Vec<u8>);

    fn ring(cap: u64) -> (Arc<Mem>, Arc<Mpmc>) {
        let hdr = Box::new(MpmcHeader {
            capacity: AtomicU64::new(cap),
            slot_size: AtomicU64::new(8),
            closed: AtomicU32::new(0),
            unfinished: AtomicU32::new(0),
            enqueue_pos: Padded(AtomicU64::new(0)),
            dequeue_pos: Padded(AtomicU64::new(0)),
            not_empty: Padded(WaitPoint::new()),
            not_full: Padded(WaitPoint::new()),
        });
        let slots: Vec<SlotHeader> = (0..cap)
            .map(|i| SlotHeader {
                seq: AtomicU64::new(2 * i),
                len: AtomicU32::new(0),
                claimer: AtomicU32::new(0),
            })
            .collect();
        let mut data = vec![0u8; cap as usize * 8];
        let r = Mpmc {
            hdr: &*hdr,
            slots: data.as_mut_ptr(),
            cap,
            slot_size: 8,
            stride: 8,
            loom_slots: slots.as_ptr(),
        };
        (Arc::new(Mem(hdr, slots, data)), Arc::new(r))
    }

    #[test]
    fn two_producers_one_consumer_exactly_once() {
        loom::model(|| {
            let (_mem, r) = ring(2);
            let ps: Vec<_> = (1..=2u8)
                .map(|v| {
                    let r = r.clone();
                    loom::thread::spawn(move || {
                        while r.try_push(&[v]) != Push::Done {
                            loom::thread::yield_now()
                        }
                    })
                })
                .collect();
            let mut got = Vec::new();
            while got.len() < 2 {
                // SAFETY: try_pop hands us `n` readable bytes of a slot we own.
                match r.try_pop(|p, n| unsafe { std::slice::from_raw_parts(p, n).to_vec() }) {
                    Pop::Item(v) => got.push(v[0]),
                    Pop::Corrupt(_) | Pop::Broken => panic!("corrupt"),
                    Pop::Empty => loom::thread::yield_now(),
                }
            }
            for p in ps {
                p.join().unwrap();
            }
            got.sort();
            assert_eq!(got, vec![1, 2]);
        });
    }

    #[test]
    fn wraparound_with_concurrent_consumer() {
        loom::model(|| {
            let (_mem, r) = ring(1);
            let c = {
                let r = r.clone();
                loom::thread::spawn(move || {
                    let mut got = Vec::new();
                    while got.len() < 2 {
                        // SAFETY: every message is one byte, readable while we own the slot.
                        match r.try_pop(|p, _| unsafe { p.read() }) {
                            Pop::Item(v) => got.push(v),
                            _ => loom::thread::yield_now(),
                        }
                    }
                    got
                })
            };
            for v in [7u8, 8] {
                while r.try_push(&[v]) != Push::Done {
                    loom::thread::yield_now();
                }
            }
            assert_eq!(c.join().unwrap(), vec![7, 8]);
        });
    }
}
