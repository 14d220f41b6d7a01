//! A lock-free single-producer single-consumer ring of variable-size
//! frames, laid out in shared memory.
//!
//! ```text
//! frame at pos % cap:  stamp: u64 | len: u32 | tag: u32 | payload, padded to 16
//! stamp                pos ^ key: the frame is published (written last, Release)
//! len == WRAP          skip to the start of the buffer (tag ignored)
//! tag WHOLE (0)        a whole message of len bytes
//! tag FIRST (1)        a message's first piece: total: u64 | data (len - 8)
//! tag MORE  (2)        a continuation piece of the message in progress
//! head                 bytes ever written (producers only)
//! tail                 bytes ever consumed (consumer only), Release
//! key                  random at creation, odd in its low 4 bits
//! ```
//! The producer publishes a frame by storing its stamp (Release), paired
//! with the consumer's Acquire load of the stamp at its read position: the
//! consumer polls the line the frame itself is on, so a message costs one
//! cache-line transfer, not two (the frame's and an index's). Positions
//! only grow, so a stamp from an earlier lap never matches, and `key` keeps
//! payload bytes that happen to hold a position from looking published
//! (its low bits make every stamp non-zero: zeroed memory is never a
//! frame). `head` is the producers' own (a forked copy of the sending end
//! takes it under `push_lock`); the consumer reads it only to drop
//! everything after a corrupt frame. The consumer frees space by storing
//! `tail` (Release), paired with the producer's Acquire load. Every field
//! of a frame is validated on read (`Error::Corrupt`).
//!
//! One producer and one consumer at a time: `push_lock` and `pop_lock`
//! (polled locks: uncontended, one CAS and one plain store each) make it
//! safe when a forked copy of an end is used concurrently, and recover if
//! a user of an end dies mid-call.
//! A message of several pieces is written under one hold of `push_lock` and
//! read under one hold of `pop_lock` (see `pipe`), so pieces of two messages
//! never interleave.

use crate::atomic::{AtomicU64, Ordering};
use crate::ring::wait::WaitPoint;
use crate::ring::Padded;
use crate::sync::polled_lock::PolledLock;
use crate::{Error, Result};

/// Stamp, then length and tag.
const FRAME_HEADER: usize = 16;
/// Of a larger ring, small-message traffic uses only the first this many
/// bytes: a frame that would start past a multiple of it while the ring is
/// empty goes back to the start instead (behind a wrap marker), so a ring
/// sized for bulk does not touch all its pages carrying small messages.
pub(crate) const SOFT_WINDOW: u64 = 256 * 1024;
/// Frames start on 16-byte boundaries, so a header never straddles a
/// cache line and a wrap marker always fits before the end.
const FRAME_ALIGN: u64 = 16;
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
    /// XORed into every stamp (see the module docs); set at creation.
    key: AtomicU64,
    /// Serialises producers of this ring.
    pub push_lock: Padded<PolledLock>,
    /// Serialises consumers of this ring.
    pub pop_lock: Padded<PolledLock>,
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
    /// `key` as read at attach.
    key: u64,
    /// Under loom, the stamps live in their own array, one per 16 bytes
    /// of data (loom atomics cannot be placed in raw memory).
    #[cfg(loom)]
    loom_stamps: *const AtomicU64,
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
    Some((payload.checked_add(FRAME_HEADER + 15)? & !15) as u64)
}

/// A stamp key: different for every ring, with low bits `0b1111` so that
/// no stamp (`pos ^ key`, `pos` a multiple of 16) is zero.
fn new_key(seed: usize) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // splitmix64's finaliser over the time, the pid and the ring's address.
    let mut z = t ^ (u64::from(std::process::id()) << 32) ^ seed as u64;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | (FRAME_ALIGN - 1)
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
        // Relaxed: only producers write head, and the caller is the one
        // (push_lock's Acquire ordered it after the previous holder's).
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
        // Relaxed (all): published by the region's Release.
        hdr.capacity.store(cap as u64, Ordering::Relaxed);
        hdr.max_message.store(max_message, Ordering::Relaxed);
        hdr.key.store(new_key(base as usize), Ordering::Relaxed);
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
        // Relaxed: written before publication.
        let key = hdr.key.load(Ordering::Relaxed);
        if key % FRAME_ALIGN != FRAME_ALIGN - 1 {
            return Err(Error::Corrupt(format!("pipe ring stamp key {key:#x}")));
        }
        Ok(Spsc {
            hdr,
            // SAFETY: data follows the header within `len` bytes.
            data: unsafe { base.add(std::mem::size_of::<SpscHeader>()) },
            cap,
            max_message,
            key,
            // Rings in real memory are not model-checked.
            #[cfg(loom)]
            loom_stamps: std::ptr::null(),
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

    /// The stamp word of a frame at `off`.
    #[inline]
    fn stamp_at(&self, off: u64) -> &AtomicU64 {
        debug_assert!(off % FRAME_ALIGN == 0 && off < self.cap);
        #[cfg(loom)]
        // SAFETY: loom_stamps has cap / 16 entries that outlive the handle.
        return unsafe { &*self.loom_stamps.add((off / FRAME_ALIGN) as usize) };
        #[cfg(not(loom))]
        // SAFETY: `off` is 16-aligned and below `cap` (callers mask with
        // `cap - 1` a position checked to be 16-aligned), so 8 aligned
        // bytes lie within the mapped buffer; any bits are a valid u64.
        unsafe {
            &*self.data.add(off as usize).cast::<AtomicU64>()
        }
    }

    /// Whether a frame is waiting at the read position. A hint when called
    /// without `pop_lock` (another consumer may be taking it).
    pub fn has_data(&self) -> bool {
        // Relaxed: the consumer's own index (a stale one only makes this
        // hint wrong, never unsafe: see `stamp_at`).
        let tail = self.header().tail.0.load(Ordering::Relaxed);
        tail % FRAME_ALIGN == 0
            // Acquire: pairs with the producer's Release of the stamp.
            && self.stamp_at(tail & (self.cap - 1)).load(Ordering::Acquire) == tail ^ self.key
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
        // Relaxed: only producers write head, ordered by push_lock.
        let head = h.head.0.load(Ordering::Relaxed);
        if head % FRAME_ALIGN != 0 {
            return Err(Error::Corrupt(format!(
                "pipe ring head {head} is misaligned"
            )));
        }
        let off = head & (self.cap - 1);
        let contig = self.cap - off;
        let total = if need > contig { contig + need } else { need };
        let free = |tail: u64| self.cap - head.wrapping_sub(tail).min(self.cap);
        let refresh = || {
            // Acquire: pairs with the consumer's Release of tail, so its
            // reads of the space we are about to reuse are complete.
            let t = h.tail.0.load(Ordering::Acquire);
            // Relaxed: the cache is local to this handle.
            tail_cache.store(t, Ordering::Relaxed);
            t
        };
        // Relaxed: the cached value was itself read with Acquire (in
        // `refresh`), which already ordered the consumer's reads of that
        // space before us.
        let tail = tail_cache.load(Ordering::Relaxed);
        if (head.wrapping_sub(tail) > self.cap || free(tail) < total) && free(refresh()) < total {
            return Ok(false);
        }
        // Crossing a window boundary (checked once per window of traffic):
        // back to the start if the consumer has taken everything (then
        // `contig + need <= cap` bytes are free).
        let wrap = need > contig
            || (off >= SOFT_WINDOW && off % SOFT_WINDOW < need && need <= off && refresh() == head);
        let at = if wrap { head + contig } else { head };
        let o = (at & (self.cap - 1)) as usize;
        // SAFETY: the frame lies in [o, o + need) within the buffer (need <=
        // contiguous space after wrapping), space the consumer released;
        // o is 16-aligned (head is, and `need` and `contig` are multiples
        // of 16), so the length word at o + 8 is aligned.
        unsafe {
            self.data
                .add(o + 8)
                .cast::<u64>()
                .write_volatile(plen as u64 | (tag as u64) << 32);
            let mut at = self.data.add(o + FRAME_HEADER);
            if let Some(total) = prefix {
                at.cast::<u64>().write_volatile(total);
                at = at.add(8);
            }
            std::ptr::copy_nonoverlapping(data.as_ptr(), at, data.len());
        }
        // Release: publishes the frame (and its header) to the consumer's
        // Acquire of the stamp.
        self.stamp_at(o as u64)
            .store(at ^ self.key, Ordering::Release);
        if wrap {
            // SAFETY: off is 16-aligned and < cap, so the 8-byte length
            // word at off + 8 fits (contig >= 16), in released space.
            unsafe {
                self.data
                    .add(off as usize + 8)
                    .cast::<u64>()
                    .write_volatile(u64::from(WRAP))
            };
            // Release: as above, for the wrap marker (published after the
            // frame it leads to, so the consumer finds that one ready).
            self.stamp_at(off).store(head ^ self.key, Ordering::Release);
        }
        // Relaxed: read only by the next holder of push_lock (ordered by
        // it) and by a consumer recovering from corruption (a hint).
        h.head.0.store(at + need, Ordering::Relaxed);
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
        // Relaxed: only we (the consumer, holding pop_lock) write tail.
        let mut tail = h.tail.0.load(Ordering::Relaxed);
        loop {
            if tail % FRAME_ALIGN != 0 {
                return self.corrupt("read index misaligned");
            }
            let off = tail & (self.cap - 1);
            // Acquire: pairs with the producer's Release of the stamp.
            if self.stamp_at(off).load(Ordering::Acquire) != tail ^ self.key {
                return Ok(Frame::Empty);
            }
            let contig = self.cap - off;
            // SAFETY: off is 16-aligned and < cap, so the length word at
            // off + 8 lies within the buffer; published by the stamp.
            let word = unsafe {
                self.data
                    .add(off as usize + 8)
                    .cast::<u64>()
                    .read_volatile()
            };
            let (len, tag) = (word as u32, (word >> 32) as u32);
            if len == WRAP {
                // (After a skip the read position is at offset 0, so a
                // marker there is the only way to loop: refused.)
                if off == 0 {
                    return self.corrupt("wrap marker at the start of the buffer");
                }
                tail += contig;
                // Release: publishes the skip (nothing was read past it).
                h.tail.0.store(tail, Ordering::Release);
                continue;
            }
            let need = frame_len(len as usize).unwrap_or(u64::MAX);
            if need > contig || len as usize > Self::max_payload(self.cap) {
                return self.corrupt("frame length past the buffer");
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
                    // (len >= 8), 16-aligned.
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
                _ => return self.corrupt("unknown frame tag"),
            };
            let (r, take) = read(view);
            if take {
                // Release: our reads complete before the producer reuses the space.
                h.tail.0.store(tail + need, Ordering::Release);
                return Ok(Frame::Taken(r));
            }
            return Ok(Frame::Left(r));
        }
    }

    /// Drops everything published so far (the consumer holds `pop_lock`)
    /// and reports the corruption.
    fn corrupt<R>(&self, what: &str) -> Result<Frame<R>> {
        let h = self.header();
        // Relaxed: head is a producer's index, read here only to skip past
        // garbage; frames after it are still found by their stamps.
        let head = h.head.0.load(Ordering::Relaxed);
        // Release: our reads complete before the producer reuses the space.
        h.tail.0.store(head & !(FRAME_ALIGN - 1), Ordering::Release);
        Err(Error::Corrupt(format!("pipe frame: {what}")))
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Ring memory for a model: header, data, and the stamps.
    #[allow(dead_code)]
    struct Mem(Box<SpscHeader>, Vec<u64>, Vec<AtomicU64>);

    /// A 128-byte ring built with loom atomics; data lives in a plain buffer.
    fn ring() -> (Arc<Mem>, Arc<Spsc>) {
        let hdr = Box::new(SpscHeader {
            capacity: AtomicU64::new(128),
            max_message: AtomicU64::new(128),
            key: AtomicU64::new(0xf),
            push_lock: Padded(PolledLock::new()),
            pop_lock: Padded(PolledLock::new()),
            head: Padded(AtomicU64::new(0)),
            tail: Padded(AtomicU64::new(0)),
            data_ready: Padded(WaitPoint::new()),
            space_ready: Padded(WaitPoint::new()),
        });
        let mut data = vec![0u64; 16];
        let stamps: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(0)).collect();
        let r = Spsc {
            hdr: &*hdr,
            data: data.as_mut_ptr().cast(),
            cap: 128,
            max_message: 128,
            key: 0xf,
            loom_stamps: stamps.as_ptr(),
        };
        (Arc::new(Mem(hdr, data, stamps)), Arc::new(r))
    }

    /// Frames of 48 bytes in a 128-byte ring force a wrap marker; every
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
                        while !r.try_push(&[v; 24], &cache).unwrap() {
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
                        assert_eq!(v.len(), 24);
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A ring of `cap` bytes in private, 128-aligned, zeroed memory.
    struct Mem(Vec<u128>, Spsc);

    fn ring(cap: usize) -> Mem {
        let n = Spsc::bytes_needed(cap).unwrap().div_ceil(16) + 8;
        let mut buf = vec![0u128; n];
        let base = buf.as_mut_ptr().cast::<u8>();
        let base = base.wrapping_add(base.align_offset(128));
        // SAFETY: 128-aligned, zeroed, private, kept alive in `Mem`.
        let r = unsafe { Spsc::init(base, cap, 1 << 20) }.unwrap();
        Mem(buf, r)
    }

    fn pop(r: &Spsc) -> Result<Option<Vec<u8>>> {
        let f = r.try_pop(|v| {
            // SAFETY: the ring hands us `len` readable bytes.
            let bytes = unsafe { std::slice::from_raw_parts(v.ptr, v.len) };
            (bytes.to_vec(), true)
        })?;
        Ok(match f {
            Frame::Taken(v) => Some(v),
            _ => None,
        })
    }

    #[test]
    fn payload_bytes_holding_a_later_position_do_not_look_published() {
        let Mem(_m, r) = ring(4096);
        let cache = AtomicU64::new(0);
        // A payload at buffer offset 16 whose every word holds the position
        // its offset has one lap later (what an unkeyed stamp would be).
        let first: Vec<u8> = (0..250u64)
            .flat_map(|w| (4096 + 16 + 8 * w).to_le_bytes())
            .collect();
        for (len, at) in [(2000, 0), (2000, 2016), (1000, 4096)] {
            let msg = if at == 0 { first.clone() } else { vec![7; len] };
            assert!(r.try_push(&msg, &cache).unwrap());
            assert_eq!(pop(&r).unwrap().unwrap(), msg, "frame at {at}");
        }
        // The read position is now 5120, at offset 1024: inside the first
        // payload, which holds 5120 there.
        let tail = r.header().tail.0.load(Ordering::Relaxed);
        assert_eq!(tail, 5120);
        assert_eq!(r.stamp_at(1024).load(Ordering::Relaxed), 5120);
        assert!(!r.has_data());
        assert!(pop(&r).unwrap().is_none());
        assert!(r.try_push(b"next", &cache).unwrap());
        assert_eq!(pop(&r).unwrap().unwrap(), b"next");
    }

    #[test]
    fn a_frame_with_its_stamp_unwritten_is_not_there() {
        let Mem(_m, r) = ring(4096);
        let cache = AtomicU64::new(0);
        assert!(r.try_push(b"hello", &cache).unwrap());
        // Undo the stamp: the frame's bytes are all there, but unpublished.
        r.stamp_at(0).store(0, Ordering::Relaxed);
        assert!(!r.has_data());
        assert!(pop(&r).unwrap().is_none());
        r.stamp_at(0).store(r.key, Ordering::Release);
        assert_eq!(pop(&r).unwrap().unwrap(), b"hello");
    }

    #[test]
    fn hostile_indices_and_headers_are_corrupt_and_the_ring_flows_on() {
        let Mem(_m, r) = ring(4096);
        let cache = AtomicU64::new(0);
        let h = r.header();
        // A misaligned read index.
        h.tail.0.store(3, Ordering::Relaxed);
        assert!(matches!(pop(&r), Err(Error::Corrupt(_))));
        // A published frame whose length runs past the buffer.
        assert!(r.try_push(b"x", &cache).unwrap());
        let tail = h.tail.0.load(Ordering::Relaxed);
        // SAFETY: the length word of the frame at the read position.
        unsafe {
            r.data
                .add((tail & (r.cap - 1)) as usize + 8)
                .cast::<u64>()
                .write_volatile(100_000)
        };
        assert!(matches!(pop(&r), Err(Error::Corrupt(m)) if m.contains("length")));
        // A wrap marker at the start of the buffer.
        let mut pos = h.head.0.load(Ordering::Relaxed);
        while pos & (r.cap - 1) != 0 {
            assert!(r.try_push(&[0; 100], &cache).unwrap());
            assert!(pop(&r).unwrap().is_some());
            pos = h.head.0.load(Ordering::Relaxed);
        }
        assert!(r.try_push(b"y", &cache).unwrap());
        // SAFETY: the length word of the frame at offset 0.
        unsafe { r.data.add(8).cast::<u64>().write_volatile(u64::from(WRAP)) };
        assert!(matches!(pop(&r), Err(Error::Corrupt(m)) if m.contains("wrap")));
        // After each, later frames flow.
        assert!(r.try_push(b"ok", &cache).unwrap());
        assert_eq!(pop(&r).unwrap().unwrap(), b"ok");
    }

    #[test]
    fn a_bad_stamp_key_is_corrupt_at_attach() {
        let Mem(m, r) = ring(4096);
        r.header().key.store(0x10, Ordering::Relaxed);
        let base = r.hdr as *mut u8;
        // SAFETY: the ring's own memory, still mapped (`m` lives).
        let e = unsafe { Spsc::attach(base, Spsc::bytes_needed(4096).unwrap()) }.unwrap_err();
        assert!(matches!(e, Error::Corrupt(m) if m.contains("key")));
        drop(m);
    }
}
