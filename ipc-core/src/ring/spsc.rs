//! A lock-free single-producer single-consumer ring of variable-size
//! frames, laid out in shared memory.
//!
//! ```text
//! frame at head % cap:  len: u32 | tag: u32 | payload, padded to 8
//! len == WRAP           skip to the start of the buffer (tag ignored)
//! tag WHOLE (0)         a whole message of len bytes
//! tag FIRST (1)         a message's first piece: total: u64 | data (len - 8)
//! tag MORE  (2)         a continuation piece of the message in progress
//! head                  bytes ever written (producer only), Release
//! tail                  bytes ever consumed (consumer only), Release
//! ```
//! The producer publishes a frame by storing `head` (Release), paired with
//! the consumer's Acquire load of `head`; the consumer frees space by
//! storing `tail` (Release), paired with the producer's Acquire load.
//! Every field of a frame is validated on read (`Error::Corrupt`).
//!
//! One producer and one consumer at a time: `push_lock` and `pop_lock`
//! (uncontended: one CAS each) make it safe when a forked copy of an end
//! is used concurrently, and recover if a user of an end dies mid-call.
//! A message of several pieces is written under one hold of `push_lock` and
//! read under one hold of `pop_lock` (see `pipe`), so pieces of two messages
//! never interleave.

use crate::atomic::{AtomicU64, Ordering};
use crate::ring::wait::WaitPoint;
use crate::ring::Padded;
use crate::sync::raw_lock::RawLock;
use crate::{Error, Result};

const FRAME_HEADER: usize = 8;
const WRAP: u32 = u32::MAX;
/// Frame tags (see the module docs).
const WHOLE: u32 = 0;
const FIRST: u32 = 1;
const MORE: u32 = 2;

/// The largest message cap a ring may record (`isize::MAX`, the most one
/// buffer can hold).
pub(crate) const MAX_MESSAGE_LIMIT: u64 = isize::MAX as u64;

/// Ring header, at the start of the ring's memory; data follows.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct SpscHeader {
    capacity: AtomicU64,
    /// The largest message (all pieces) senders may send and receivers
    /// accept, in bytes; set at creation.
    max_message: AtomicU64,
    /// Serialises producers of this ring.
    pub push_lock: Padded<RawLock>,
    /// Serialises consumers of this ring.
    pub pop_lock: Padded<RawLock>,
    head: Padded<AtomicU64>,
    tail: Padded<AtomicU64>,
    /// The consumer sleeps here while the ring is empty.
    pub data_ready: Padded<WaitPoint>,
    /// The producer sleeps here while the ring is full.
    pub space_ready: Padded<WaitPoint>,
}

/// A handle to an SPSC ring in mapped memory.
#[derive(Debug)]
pub(crate) struct Spsc {
    hdr: *const SpscHeader,
    data: *mut u8,
    cap: u64,
    /// `max_message` as validated at attach (later scribbles are ignored).
    max_message: u64,
}

// SAFETY: pointers into shared memory kept mapped by the handle's owner;
// access goes through atomics or is ordered by them.
unsafe impl Send for Spsc {}
// SAFETY: as above.
unsafe impl Sync for Spsc {}

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A whole message.
    Whole,
    /// The first piece of a message of `total` bytes (not yet validated
    /// against any cap: the caller does that).
    First { total: u64 },
    /// A continuation piece.
    More,
}

/// A frame at the read position, as handed to the `try_pop` callback.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    pub piece: Piece,
    /// The piece's data (after the total, for `First`), readable for `len`
    /// bytes until the callback returns.
    pub ptr: *const u8,
    pub len: usize,
}

/// Result of a pop attempt.
pub(crate) enum Frame<R> {
    /// The frame was consumed.
    Taken(R),
    /// The callback left the frame in the ring.
    Left(R),
    /// Nothing to read.
    Empty,
}

fn frame_len(payload: usize) -> Option<u64> {
    Some((payload.checked_add(FRAME_HEADER + 7)? & !7) as u64)
}

impl Spsc {
    /// Bytes needed for a ring carrying `cap` data bytes.
    pub fn bytes_needed(cap: usize) -> Option<usize> {
        cap.checked_add(std::mem::size_of::<SpscHeader>())
    }

    /// Largest payload a ring of `cap` bytes carries: half the ring, so
    /// that a frame always fits contiguously either after the write
    /// position or, after a wrap marker, before it (`contig + off == cap`).
    pub fn max_payload(cap: u64) -> usize {
        (cap as usize / 2).saturating_sub(FRAME_HEADER)
    }

    /// The largest message this ring's users accept (validated at attach).
    pub fn max_message(&self) -> u64 {
        self.max_message
    }

    /// Where the next frame starts, as an offset into the buffer. The
    /// caller holds `push_lock`.
    pub fn head_offset(&self) -> u64 {
        // Relaxed: only the producer (the caller) writes head.
        self.header().head.0.load(Ordering::Relaxed) & (self.cap - 1)
    }

    /// Initialises a ring in zeroed memory.
    ///
    /// # Safety
    /// `base` must be 128-aligned, point to `bytes_needed(cap)` zeroed bytes
    /// private to the caller until published, and stay mapped while used.
    /// `cap` must be a power of two, at least 64; `max_message` in
    /// `1..=MAX_MESSAGE_LIMIT`.
    pub unsafe fn init(base: *mut u8, cap: usize, max_message: u64) -> Result<Spsc> {
        // SAFETY: aligned, large enough, zeroed (valid atomics) per the caller.
        let hdr = unsafe { &*base.cast::<SpscHeader>() };
        // Relaxed (both): published by the region's Release.
        hdr.capacity.store(cap as u64, Ordering::Relaxed);
        hdr.max_message.store(max_message, Ordering::Relaxed);
        let len = Self::bytes_needed(cap).ok_or(Error::InvalidArgument("pipe too large"))?;
        // SAFETY: forwarded from the caller.
        unsafe { Self::attach(base, len) }
    }

    /// Attaches to a published ring, validating its capacity against `len`.
    ///
    /// # Safety
    /// `base` must be 128-aligned and point to `len` mapped bytes that stay
    /// mapped while the handle is used.
    pub unsafe fn attach(base: *mut u8, len: usize) -> Result<Spsc> {
        // SAFETY: per the caller.
        let hdr = unsafe { &*base.cast::<SpscHeader>() };
        // Relaxed: written before publication.
        let cap = hdr.capacity.load(Ordering::Relaxed);
        if cap < 64
            || !cap.is_power_of_two()
            || Self::bytes_needed(cap as usize).is_none_or(|n| n > len)
        {
            return Err(Error::Corrupt(format!("pipe ring capacity {cap}")));
        }
        // Relaxed: written before publication.
        let max_message = hdr.max_message.load(Ordering::Relaxed);
        if !(1..=MAX_MESSAGE_LIMIT).contains(&max_message) {
            return Err(Error::Corrupt(format!(
                "pipe ring message cap {max_message}"
            )));
        }
        Ok(Spsc {
            hdr,
            // SAFETY: data follows the header within `len` bytes.
            data: unsafe { base.add(std::mem::size_of::<SpscHeader>()) },
            cap,
            max_message,
        })
    }

    /// The shared header.
    pub fn header(&self) -> &SpscHeader {
        // SAFETY: valid while the handle lives, per `attach`.
        unsafe { &*self.hdr }
    }

    /// Data capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Whether a frame is waiting.
    pub fn has_data(&self) -> bool {
        let h = self.header();
        // Acquire: pairs with the producer's Release of head.
        h.head.0.load(Ordering::Acquire) != h.tail.0.load(Ordering::Relaxed)
    }

    /// Writes one frame if there is room. The caller holds `push_lock` and
    /// has checked `payload.len() <= max_payload`.
    ///
    /// `tail_cache` is a handle-local copy of `tail` (rtrb's trick): `tail`
    /// only grows, so a stale copy underestimates the free space and is
    /// refreshed only then, sparing a cache miss on most pushes.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if `head` was overwritten with a misaligned value.
    #[inline]
    pub fn try_push(&self, payload: &[u8], tail_cache: &AtomicU64) -> Result<bool> {
        self.try_push_piece(Piece::Whole, payload, tail_cache)
    }

    /// As [`try_push`](Self::try_push), for any piece of a message (a
    /// `First` piece carries its total before `data`).
    #[inline]
    pub fn try_push_piece(
        &self,
        piece: Piece,
        data: &[u8],
        tail_cache: &AtomicU64,
    ) -> Result<bool> {
        let h = self.header();
        let (tag, prefix) = match piece {
            Piece::Whole => (WHOLE, None),
            Piece::First { total } => (FIRST, Some(total)),
            Piece::More => (MORE, None),
        };
        let plen = data.len() + if prefix.is_some() { 8 } else { 0 };
        let need = match frame_len(plen) {
            Some(n) if plen <= Self::max_payload(self.cap) => n,
            _ => return Err(Error::InvalidArgument("frame larger than the ring allows")),
        };
        // Relaxed: only the producer (we hold push_lock) writes head.
        let head = h.head.0.load(Ordering::Relaxed);
        if head % 8 != 0 {
            return Err(Error::Corrupt(format!(
                "pipe ring head {head} is misaligned"
            )));
        }
        let off = head & (self.cap - 1);
        let contig = self.cap - off;
        let total = if need > contig { contig + need } else { need };
        let free = |tail: u64| self.cap - head.wrapping_sub(tail).min(self.cap);
        // Relaxed: the cached value was itself read with Acquire below, which
        // already ordered the consumer's reads of that space before us.
        let mut tail = tail_cache.load(Ordering::Relaxed);
        if head.wrapping_sub(tail) > self.cap || free(tail) < total {
            // Acquire: pairs with the consumer's Release of tail, so its
            // reads of the space we are about to reuse are complete.
            tail = h.tail.0.load(Ordering::Acquire);
            // Relaxed: the cache is local to this handle.
            tail_cache.store(tail, Ordering::Relaxed);
            if free(tail) < total {
                return Ok(false);
            }
        }
        let mut at = head;
        if need > contig {
            // SAFETY: off is 8-aligned (head checked above, cap a power of
            // two >= 64) and < cap, so 8 bytes fit since contig >= 8.
            unsafe {
                self.data
                    .add(off as usize)
                    .cast::<u32>()
                    .write_volatile(WRAP)
            };
            at += contig;
        }
        let o = (at & (self.cap - 1)) as usize;
        // SAFETY: the frame lies in [o, o + need) within the buffer (need <=
        // contiguous space after wrapping), space the consumer released.
        // (o is 8-aligned: head is, and `need` and `contig` are multiples of 8.)
        unsafe {
            self.data
                .add(o)
                .cast::<u64>()
                .write_volatile(plen as u64 | (tag as u64) << 32);
            let mut at = self.data.add(o + FRAME_HEADER);
            if let Some(total) = prefix {
                at.cast::<u64>().write_volatile(total);
                at = at.add(8);
            }
            std::ptr::copy_nonoverlapping(data.as_ptr(), at, data.len());
        }
        // Release: publishes the frame to the consumer's Acquire of head.
        h.head.0.store(at + need, Ordering::Release);
        Ok(true)
    }

    /// Hands `read` the frame at the read position; consumes it if `read`
    /// returns `true` with its value. The caller holds `pop_lock`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the frame headers are invalid; the ring is then
    /// emptied so later frames can flow.
    #[inline]
    pub fn try_pop<R>(&self, read: impl FnOnce(View) -> (R, bool)) -> Result<Frame<R>> {
        let h = self.header();
        // Relaxed: only we (the consumer) write tail.
        let mut tail = h.tail.0.load(Ordering::Relaxed);
        // Acquire: pairs with the producer's Release of head.
        let head = h.head.0.load(Ordering::Acquire);
        loop {
            let avail = head.wrapping_sub(tail);
            if avail == 0 {
                return Ok(Frame::Empty);
            }
            if tail % 8 != 0 || head % 8 != 0 || avail > self.cap {
                return self.corrupt(head, "indices misaligned or out of range");
            }
            let off = tail & (self.cap - 1);
            let contig = self.cap - off;
            // SAFETY: off is 8-aligned (checked above) and < cap - 8.
            let word = unsafe { self.data.add(off as usize).cast::<u64>().read_volatile() };
            let (len, tag) = (word as u32, (word >> 32) as u32);
            if len == WRAP {
                if contig >= avail {
                    return self.corrupt(head, "wrap marker past the data");
                }
                tail += contig;
                continue;
            }
            let need = frame_len(len as usize).unwrap_or(u64::MAX);
            if need > contig || need > avail {
                return self.corrupt(head, "frame length past the data");
            }
            // SAFETY: the payload lies within the published frame.
            let payload = unsafe { self.data.add(off as usize + FRAME_HEADER) };
            let view = match tag {
                WHOLE => View {
                    piece: Piece::Whole,
                    ptr: payload,
                    len: len as usize,
                },
                FIRST if len >= 8 => {
                    // SAFETY: the first 8 bytes of the frame's payload
                    // (len >= 8), 8-aligned.
                    let total = unsafe { payload.cast::<u64>().read_volatile() };
                    View {
                        piece: Piece::First { total },
                        // SAFETY: still within the frame (len >= 8).
                        ptr: unsafe { payload.add(8) },
                        len: len as usize - 8,
                    }
                }
                MORE => View {
                    piece: Piece::More,
                    ptr: payload,
                    len: len as usize,
                },
                _ => return self.corrupt(head, "unknown frame tag"),
            };
            let (r, take) = read(view);
            if take {
                // Release: our reads complete before the producer reuses the space.
                h.tail.0.store(tail + need, Ordering::Release);
                return Ok(Frame::Taken(r));
            }
            // Release: publishes the skipped wrap, if any.
            h.tail.0.store(tail, Ordering::Release);
            return Ok(Frame::Left(r));
        }
    }

    fn corrupt<R>(&self, head: u64, what: &str) -> Result<Frame<R>> {
        // Release: drop everything published so far.
        self.header().tail.0.store(head, Ordering::Release);
        Err(Error::Corrupt(format!("pipe frame: {what}")))
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A 64-byte ring built with loom atomics; data lives in a plain buffer.
    fn ring() -> (Arc<(Box<SpscHeader>, Vec<u64>)>, Arc<Spsc>) {
        let hdr = Box::new(SpscHeader {
            capacity: AtomicU64::new(64),
            max_message: AtomicU64::new(64),
            push_lock: Padded(RawLock::new()),
            pop_lock: Padded(RawLock::new()),
            head: Padded(AtomicU64::new(0)),
            tail: Padded(AtomicU64::new(0)),
            data_ready: Padded(WaitPoint::new()),
            space_ready: Padded(WaitPoint::new()),
        });
        let mut data = vec![0u64; 8];
        let r = Spsc {
            hdr: &*hdr,
            data: data.as_mut_ptr().cast(),
            cap: 64,
            max_message: 64,
        };
        (Arc::new((hdr, data)), Arc::new(r))
    }

    /// Frames of 24 bytes in a 64-byte ring force a wrap marker; every
    /// frame arrives intact and in order.
    #[test]
    fn frames_arrive_in_order_across_the_wrap() {
        loom::model(|| {
            let (_mem, r) = ring();
            let p = {
                let r = r.clone();
                loom::thread::spawn(move || {
                    let cache = AtomicU64::new(0);
                    for v in 1..=3u8 {
                        while !r.try_push(&[v; 16], &cache).unwrap() {
                            loom::thread::yield_now();
                        }
                    }
                })
            };
            let mut got = Vec::new();
            while got.len() < 3 {
                // SAFETY: try_pop hands us `len` readable bytes of the frame.
                match r.try_pop(|v| {
                    (
                        unsafe { std::slice::from_raw_parts(v.ptr, v.len) }.to_vec(),
                        true,
                    )
                }) {
                    Ok(Frame::Taken(v)) => {
                        assert!(v.iter().all(|b| *b == v[0]));
                        got.push(v[0]);
                    }
                    Ok(_) => loom::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
            p.join().unwrap();
            assert_eq!(got, vec![1, 2, 3]);
        });
    }
}
