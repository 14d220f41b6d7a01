//! The rkyv writer of every message: encodes into a private buffer while
//! the message is small, and moves to a destination in shared memory (a
//! payload block) the moment it outgrows it, so that a large message is
//! written once, straight where the consumer reads it.
//!
//! An rkyv archive is position-independent (relative pointers), so the
//! bytes written at positions `0..k` into the private buffer and `k..`
//! into the block join up by copying the small prefix over: for a
//! `Vec<u8>` the prefix is empty (the payload is the first write), and
//! the root, a few bytes, follows it into the block.

use std::fmt;

use rkyv::rancor::{self, Source};
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;

/// Bytes of room asked for past what the message needs when it moves to
/// a destination: what follows a large write (a root, a length) fits
/// without moving again.
const RESERVE: usize = 256;

/// A write at least this large that would leave less than [`RESERVE`]
/// bytes of the private buffer's limit moves the message out at once (a
/// `Vec<u8>` of exactly a slot would otherwise be written privately, and
/// copied out when its 8-byte root does not fit).
const BIG_WRITE: usize = 4096;

/// Where a [`MessageWriter`] moves once the message outgrows its private
/// buffer.
pub(crate) trait Spill {
    /// A destination of at least `min` bytes (`want` if it can), whose
    /// first `n` bytes are a copy of the `n` bytes at `prefix` (the message
    /// so far: the writer's buffer, or the destination this call
    /// replaces, which it gives back after copying). Returns its first
    /// byte and its capacity (`>= min`), valid for writes until the next
    /// call or until the sink is dropped. `Err(Stop)`: the sink keeps its
    /// error for its owner, and the encoding stops; `Err(TooLarge)`:
    /// `min` is past the sink's cap, and the encoding goes on only to
    /// count the message's size (for the error). `src` is the address
    /// that corresponds to the message's start in the write that follows
    /// (where its bytes come from, less their position), for placing the
    /// destination away from 4K aliasing.
    ///
    /// # Safety
    /// `prefix` must be valid for reads of `n` bytes.
    unsafe fn room(
        &mut self,
        min: usize,
        want: usize,
        prefix: *const u8,
        n: usize,
        src: usize,
    ) -> Result<(*mut u8, usize), Refusal>;
}

/// Why a [`Spill`] gave no destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Past the cap: count the rest, write nothing.
    TooLarge,
    /// Stop encoding (the spill holds the reason).
    Stop,
}

/// The writer every [`Message`](super::Message) is encoded with: rkyv's
/// serializers write through it. It appears in `Message`'s bound only
/// (any type deriving rkyv's `Serialize` satisfies it); nothing outside
/// the crate builds one.
///
/// # Examples
///
/// ```
/// use ipc_core::codec::{Message, MessageWriter};
/// fn travels<T: Message>() {}
/// travels::<Vec<u8>>(); // so is every rkyv type: its Serialize is generic
/// # let _ = std::marker::PhantomData::<MessageWriter<'static>>;
/// ```
pub struct MessageWriter<'w> {
    /// The private buffer (while `out` is null).
    buf: AlignedVec,
    /// Most bytes the private buffer takes when a `spill` exists.
    limit: usize,
    /// Below this end, a write stays private without further checks
    /// (`limit - RESERVE`, or everything without a spill).
    fast: usize,
    spill: Option<&'w mut dyn Spill>,
    /// The destination once moved (else null), its capacity, and the
    /// position in it.
    out: *mut u8,
    cap: usize,
    pos: usize,
    /// Past the spill's cap: writes are only counted (`out` is dangling
    /// and `cap` 0, so every write takes the cold path).
    counting: bool,
}

impl fmt::Debug for MessageWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageWriter")
            .field("pos", &self.pos())
            .field("limit", &self.limit)
            .field("moved", &!self.out.is_null())
            .finish()
    }
}

/// The error a serializer sees when the sink refused (its own error is
/// kept by the sink).
#[derive(Debug)]
struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no destination for the message")
    }
}

impl std::error::Error for Refused {}

impl<'w> MessageWriter<'w> {
    /// Writes into `buf` (cleared) up to `limit` bytes, then moves to
    /// `spill`; without a spill, `buf` takes everything.
    pub(crate) fn new(
        mut buf: AlignedVec,
        limit: usize,
        spill: Option<&'w mut dyn Spill>,
    ) -> MessageWriter<'w> {
        buf.clear();
        let fast = match spill {
            Some(_) => limit.saturating_sub(RESERVE),
            None => usize::MAX,
        };
        MessageWriter {
            buf,
            limit,
            fast,
            spill,
            out: std::ptr::null_mut(),
            cap: 0,
            pos: 0,
            counting: false,
        }
    }

    /// The bytes written, if they are still in the private buffer (else
    /// the whole message is in the spill's destination, [`Self::pos`] bytes).
    pub(crate) fn private(&self) -> Option<&[u8]> {
        self.out.is_null().then_some(&self.buf[..])
    }

    /// Whether the message outgrew the spill's cap (its size is
    /// [`Self::pos`]; nothing was written past the cap).
    pub(crate) fn too_large(&self) -> bool {
        self.counting
    }

    /// From now on, writes are only counted.
    fn count_from(&mut self, pos: usize) {
        self.out = std::ptr::NonNull::dangling().as_ptr();
        self.cap = 0;
        self.pos = pos;
        self.counting = true;
        self.buf.clear();
    }

    /// The private buffer back, for reuse.
    pub(crate) fn into_buf(self) -> AlignedVec {
        self.buf
    }

    #[cold]
    fn move_out<E: Source>(&mut self, bytes: &[u8]) -> Result<(), E> {
        let n = self.buf.len();
        let min = n.checked_add(bytes.len()).ok_or_else(|| E::new(Refused))?;
        let Some(spill) = self.spill.as_mut() else {
            return Err(E::new(Refused));
        };
        // SAFETY: `buf` is readable for its `n` bytes.
        let room = unsafe {
            spill.room(
                min,
                min.saturating_add(RESERVE),
                self.buf.as_ptr(),
                n,
                (bytes.as_ptr() as usize).wrapping_sub(n),
            )
        };
        self.buf.clear();
        self.land(room, n, bytes)
    }

    /// Finishes a move to the destination the spill gave (`room`): copies
    /// `bytes` to offset `at` of it and writes there from now on, or
    /// counts from now on if the message outgrew the spill's cap.
    fn land<E: Source>(
        &mut self,
        room: Result<(*mut u8, usize), Refusal>,
        at: usize,
        bytes: &[u8],
    ) -> Result<(), E> {
        let min = at + bytes.len();
        let (p, cap) = match room {
            Ok(r) => r,
            Err(Refusal::TooLarge) => {
                self.count_from(min);
                return Ok(());
            }
            Err(Refusal::Stop) => return Err(E::new(Refused)),
        };
        if cap < min {
            return Err(E::new(Refused));
        }
        // SAFETY: the destination is valid for writes of `cap >= at + len`
        // bytes (the spill's contract) and is neither our buffer nor
        // `bytes` (private memory).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(at), bytes.len()) };
        self.out = p;
        self.cap = cap;
        self.pos = min;
        Ok(())
    }

    #[cold]
    fn grow<E: Source>(&mut self, bytes: &[u8]) -> Result<(), E> {
        let min = self
            .pos
            .checked_add(bytes.len())
            .ok_or_else(|| E::new(Refused))?;
        if self.counting {
            self.pos = min;
            return Ok(());
        }
        let want = min.saturating_add(RESERVE).max(self.cap.saturating_mul(2));
        let Some(spill) = self.spill.as_mut() else {
            return Err(E::new(Refused));
        };
        let src = (bytes.as_ptr() as usize).wrapping_sub(self.pos);
        // SAFETY: the current destination holds `pos` written bytes and
        // stays valid until this call returns (the spill's contract).
        let room = unsafe { spill.room(min, want, self.out, self.pos, src) };
        self.land(room, self.pos, bytes)
    }
}

impl Positional for MessageWriter<'_> {
    #[inline]
    fn pos(&self) -> usize {
        if self.out.is_null() {
            self.buf.len()
        } else {
            self.pos
        }
    }
}

impl<E: Source> Writer<E> for MessageWriter<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        // The fast path of every small message: one comparison.
        if self.out.is_null() && self.buf.len().saturating_add(bytes.len()) < self.fast {
            self.buf.extend_from_slice(bytes);
            return Ok(());
        }
        self.write_slow(bytes)
    }
}

impl MessageWriter<'_> {
    #[inline(never)]
    fn write_slow<E: Source>(&mut self, bytes: &[u8]) -> Result<(), E> {
        if self.out.is_null() {
            let end = self.buf.len().saturating_add(bytes.len());
            if end < self.fast || (end <= self.limit && bytes.len() < BIG_WRITE) {
                self.buf.extend_from_slice(bytes);
                return Ok(());
            }
            return self.move_out(bytes);
        }
        // (`pos > cap` only while counting.)
        if self
            .cap
            .checked_sub(self.pos)
            .is_some_and(|r| bytes.len() <= r)
        {
            // SAFETY: the destination is valid for writes of `cap` bytes
            // until the spill is asked again (its contract); `pos + len <=
            // cap`; `bytes` is private memory, not the destination.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.out.add(self.pos), bytes.len())
            };
            self.pos += bytes.len();
            return Ok(());
        }
        self.grow(bytes)
    }
}

/// How an encoding ended.
pub(crate) enum Encoded<R> {
    /// It stayed in the private buffer, which was handed to the caller's
    /// closure: its result.
    Inline(R),
    /// It moved to the spill's destination: its length.
    Spilled(usize),
    /// It outgrew the spill's cap: its length (nothing was written past
    /// the cap).
    TooLarge(usize),
}

/// Encodes `value`, in the thread's reused buffer up to `limit` bytes and
/// past that into `spill`'s destination; hands the bytes to `inline` if
/// they stayed private.
///
/// # Errors
/// [`Error::Corrupt`](crate::Error::Corrupt) if serialization fails, also
/// when the spill refused (the spill then holds the real error).
pub(crate) fn encode_spilling<T: super::Message, R>(
    value: &T,
    limit: usize,
    spill: &mut dyn Spill,
    inline: impl FnOnce(&[u8]) -> R,
) -> crate::Result<Encoded<R>> {
    super::with_encoder(|enc| {
        let w = MessageWriter::new(std::mem::take(&mut enc.buf), limit, Some(spill));
        let mut ser =
            rkyv::ser::Serializer::new(w, enc.arena.acquire(), rkyv::ser::sharing::Share::new());
        let r = rkyv::api::serialize_using::<_, rancor::Error>(value, &mut ser);
        let w = ser.into_writer();
        let out = match r {
            Err(e) => Err(crate::Error::Corrupt(format!("encoding failed: {e}"))),
            Ok(_) if w.too_large() => Ok(Encoded::TooLarge(w.pos())),
            Ok(_) => Ok(match w.private() {
                Some(bytes) => Encoded::Inline(inline(bytes)),
                None => Encoded::Spilled(w.pos()),
            }),
        };
        enc.buf = w.into_buf();
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spill into private memory, recording each call.
    struct ToVec {
        bufs: Vec<Vec<u8>>,
        calls: Vec<(usize, usize, usize)>,
        refuse: bool,
        max: usize,
    }

    impl Spill for ToVec {
        unsafe fn room(
            &mut self,
            min: usize,
            want: usize,
            prefix: *const u8,
            n: usize,
            _src: usize,
        ) -> Result<(*mut u8, usize), Refusal> {
            self.calls.push((min, want, n));
            if self.refuse {
                return Err(Refusal::Stop);
            }
            if min > self.max {
                return Err(Refusal::TooLarge);
            }
            let mut b = vec![0u8; want];
            // SAFETY: `prefix` is readable for `n` bytes (contract), and
            // `want >= min >= n`.
            unsafe { std::ptr::copy_nonoverlapping(prefix, b.as_mut_ptr(), n) };
            let p = b.as_mut_ptr();
            self.bufs.push(b);
            Ok((p, want))
        }
    }

    fn spill() -> ToVec {
        ToVec {
            bufs: Vec::new(),
            calls: Vec::new(),
            refuse: false,
            max: usize::MAX,
        }
    }

    /// Encodes `v`; whether it moved out, and that the bytes are the
    /// plain encoding either way.
    fn moved<T: crate::codec::Message>(v: &T, limit: usize, s: &mut ToVec) -> bool {
        let plain = crate::codec::to_vec(v).unwrap();
        let (moved, bytes) = match encode_spilling(v, limit, s, <[u8]>::to_vec).unwrap() {
            Encoded::Inline(b) => (false, b),
            Encoded::Spilled(n) => (true, s.bufs.last().unwrap()[..n].to_vec()),
            Encoded::TooLarge(n) => panic!("too large: {n}"),
        };
        assert_eq!(bytes, plain);
        moved
    }

    #[test]
    fn writer_hands_the_prefix_over_at_the_exact_slot_boundary() {
        // A struct whose fields are small writes: the message moves when
        // a write would pass the limit, after `limit` bytes exactly.
        let v: (Vec<u64>, u32, u64) = ((0..64).collect(), 7, 9); // 512 B, then small writes
        let len = crate::codec::to_vec(&v).unwrap().len();
        let mut s = spill();
        // Fits exactly: stays private.
        assert!(!moved(&v, len, &mut s));
        assert!(s.calls.is_empty());
        // One byte short: moves at the write that passes the limit, with
        // the prefix written so far (the payload) copied over.
        let mut s = spill();
        assert!(moved(&v, len - 1, &mut s));
        assert_eq!(s.calls.len(), 1);
        let (min, want, n) = s.calls[0];
        assert!(n >= 512 && n < len - 1 && min > len - 1, "{:?}", s.calls);
        assert_eq!(want, min + RESERVE);
    }

    #[test]
    fn a_big_write_near_the_limit_moves_at_once() {
        // A Vec<u8> of exactly the limit: its payload goes straight out
        // (no prefix), and the root follows without a second move.
        let v = vec![5u8; 65536];
        let mut s = spill();
        assert!(moved(&v, 65536, &mut s));
        assert_eq!(s.calls, vec![(65536, 65536 + RESERVE, 0)]);
    }

    #[test]
    fn writer_outgrowing_its_destination_moves_with_everything_written() {
        // Many medium writes: each destination is outgrown in turn.
        let v: Vec<Vec<u8>> = (0..200u32)
            .map(|i| vec![i as u8; 1000 + i as usize])
            .collect();
        let mut s = spill();
        assert!(moved(&v, 2048, &mut s));
        assert!(s.calls.len() >= 3, "{:?}", s.calls);
        for w in s.calls.windows(2) {
            // Each move carries everything written before it, and at
            // least doubles the room (so moves are few).
            assert!(w[1].2 > w[0].2 && w[1].1 >= 2 * w[0].1, "{:?}", s.calls);
        }
    }

    #[test]
    fn a_refusing_spill_stops_the_encoding() {
        let mut s = spill();
        s.refuse = true;
        let r = encode_spilling(&vec![1u8; 10_000], 256, &mut s, |_| ());
        assert!(matches!(r, Err(crate::Error::Corrupt(_))));
        assert_eq!(s.calls.len(), 1);
        // Small messages never ask.
        assert!(matches!(
            encode_spilling(&vec![1u8; 10], 256, &mut s, <[u8]>::to_vec),
            Ok(Encoded::Inline(b)) if b.len() < 256
        ));
    }

    #[test]
    fn a_message_past_the_cap_is_counted_not_written() {
        let v = vec![(7u8, vec![1u8; 3000]); 10];
        let len = crate::codec::to_vec(&v).unwrap().len();
        let mut s = spill();
        s.max = 5000;
        match encode_spilling(&v, 1024, &mut s, |_| ()) {
            Ok(Encoded::TooLarge(n)) => assert_eq!(n, len),
            _ => panic!("not too large"),
        }
        // The first move fit; the one past the cap was refused; none after.
        assert_eq!(s.calls.len(), 2, "{:?}", s.calls);
    }
}
