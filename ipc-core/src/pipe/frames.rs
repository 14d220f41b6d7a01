//! Messages as frames. A message that fits one frame travels whole (the
//! fast path). A larger one travels as a `First` piece, which carries the
//! total length, then `More` pieces; the receiver reassembles them into one
//! buffer. The sender holds the ring's push lock for the whole message and
//! the receiver its pop lock, so pieces of two messages never interleave.
//!
//! What a receiver does with pieces that do not complete a message (no
//! state is shared beyond the ring and its two locks):
//! ```text
//! More piece, no message in progress          skip it: a receiver died (or failed) mid-message
//! Whole or First frame, a message in progress discard the partial one: its sender stopped
//!                                             mid-message (died, or timed out) and another began
//! ring empty, push lock free or holder dead   discard the partial one: nobody is completing it
//! ring empty, peer gone                       discard, PeerClosed
//! ```
//! Totals are validated against the ring's message cap, pieces against the
//! total (`Error::Corrupt`), so hostile frames cannot make a receiver
//! allocate beyond the cap, overrun its buffer or wait for ever.
//!
//! Pieces are laid out on purpose: `More` frames are a quarter of the ring
//! or [`MAX_PIECE_FRAME`], whichever is smaller, and start on a multiple
//! of that size (the `First` piece is sized to end on one), so they never
//! wrap and at least four are in flight. A message larger than one piece
//! goes in pieces even when it would fit one frame: each side then waits
//! for a piece, not for a whole message, which keeps the wait within the
//! spin budget instead of a sleep and a wake-up per message.

use std::time::Instant;

use super::{Connection, EndGuard, PEER_CHECK};
use crate::codec::Copied;
use crate::ring::spsc::{Frame, Piece, Spsc, View};
use crate::ring::wait::Stop;
use crate::sync::raw_lock::Acquired;
use crate::{Error, Result};

/// Where a received message goes.
pub(super) trait Sink {
    type Out;
    /// Largest message accepted: a larger one is left in the ring and
    /// reported as [`Error::MessageTooLarge`].
    fn limit(&self) -> usize;
    /// Copies a whole message.
    ///
    /// # Safety
    /// `src` is readable for `len <= limit()` bytes during the call.
    unsafe fn whole(&mut self, src: *const u8, len: usize) -> Self::Out;
    /// Makes room for a message of `total <= limit()` bytes arriving in
    /// pieces, the first copied from `src`.
    fn begin(&mut self, total: usize, src: *const u8) -> Result<()>;
    /// Copies a piece to offset `at` of the message.
    ///
    /// # Safety
    /// `src` is readable for `len` bytes during the call; `begin(total)`
    /// succeeded and `at + len <= total`.
    unsafe fn put(&mut self, at: usize, src: *const u8, len: usize);
    /// The message, once pieces covering all of `total` were put.
    fn finish(&mut self, total: usize) -> Result<Self::Out>;
}

/// Into a private copy, for decoding.
impl Sink for Copied {
    type Out = ();
    fn limit(&self) -> usize {
        usize::MAX
    }
    unsafe fn whole(&mut self, src: *const u8, len: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { Copied::whole(self, src, len) }
    }
    fn begin(&mut self, total: usize, src: *const u8) -> Result<()> {
        Copied::begin(self, total, src)
    }
    unsafe fn put(&mut self, at: usize, src: *const u8, len: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { Copied::put(self, at, src, len) }
    }
    fn finish(&mut self, _total: usize) -> Result<()> {
        if self.begun() {
            Ok(())
        } else {
            Err(Error::InvalidArgument("pipe message finished before begun"))
        }
    }
}

/// Into a fresh `Vec` (`recv_bytes`): one copy out of the ring.
pub(super) struct ToVec(pub Vec<u8>);

impl Sink for ToVec {
    type Out = Vec<u8>;
    fn limit(&self) -> usize {
        usize::MAX
    }
    unsafe fn whole(&mut self, src: *const u8, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        // SAFETY: `v` has room for `len` bytes, `src` is readable for them
        // (caller), and they are initialised before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(src, v.as_mut_ptr(), len);
            v.set_len(len);
        }
        v
    }
    fn begin(&mut self, total: usize, _src: *const u8) -> Result<()> {
        self.0 = Vec::new();
        self.0
            .try_reserve_exact(total)
            .map_err(|_| Error::Io(nix::errno::Errno::ENOMEM))
    }
    unsafe fn put(&mut self, at: usize, src: *const u8, len: usize) {
        // SAFETY: capacity is `total >= at + len` (caller); `src` readable.
        unsafe { std::ptr::copy_nonoverlapping(src, self.0.as_mut_ptr().add(at), len) }
    }
    fn finish(&mut self, total: usize) -> Result<Vec<u8>> {
        if self.0.capacity() < total {
            return Err(Error::InvalidArgument("pipe message finished before begun"));
        }
        // SAFETY: pieces covering `0..total` were written (caller's duty).
        unsafe { self.0.set_len(total) };
        Ok(std::mem::take(&mut self.0))
    }
}

/// Into the caller's buffer (`recv_bytes_into`).
pub(super) struct ToSlice<'a>(pub &'a mut [u8]);

impl Sink for ToSlice<'_> {
    type Out = usize;
    fn limit(&self) -> usize {
        self.0.len()
    }
    unsafe fn whole(&mut self, src: *const u8, len: usize) -> usize {
        // SAFETY: `len <= limit()` (caller), `src` readable for it.
        unsafe { std::ptr::copy_nonoverlapping(src, self.0.as_mut_ptr(), len) };
        len
    }
    fn begin(&mut self, _total: usize, _src: *const u8) -> Result<()> {
        Ok(())
    }
    unsafe fn put(&mut self, at: usize, src: *const u8, len: usize) {
        // SAFETY: `at + len <= total <= limit()` (caller), `src` readable.
        unsafe { std::ptr::copy_nonoverlapping(src, self.0.as_mut_ptr().add(at), len) }
    }
    fn finish(&mut self, total: usize) -> Result<usize> {
        Ok(total)
    }
}

/// What the first frame of a receive held.
pub(super) enum Start<O> {
    /// Nothing to take (stray pieces may have been skipped).
    Nothing,
    Whole(O),
    /// A message of `total` bytes, `got` of them received.
    Partial {
        total: usize,
        got: usize,
    },
}

/// How the rest of a message went.
pub(super) enum Rest<O> {
    Done(O),
    /// The message will never complete; it was discarded.
    Abandoned,
}

enum Step {
    Got(usize),
    NewMessage,
    Bad(&'static str),
}

/// Why the wait for the next piece stopped.
enum Gone {
    Peer,
    Sender,
}

/// Largest frame of a piece, in bytes (see the module docs).
pub(super) const MAX_PIECE_FRAME: u64 = 64 * 1024;

/// Frame bytes of a `More` piece: a quarter of the ring, at most
/// [`MAX_PIECE_FRAME`].
fn piece_frame(cap: u64) -> u64 {
    (cap / 4).min(MAX_PIECE_FRAME)
}

/// Data bytes of a `More` piece (its frame has 16 bytes of header), and
/// the largest message sent whole.
pub(super) fn piece_len(cap: u64) -> usize {
    piece_frame(cap) as usize - 16
}

/// Data bytes of the `First` piece, chosen so that its frame ends on a
/// multiple of the piece frame size (see the module docs).
fn first_len(tx: &Spsc) -> usize {
    let cap = tx.capacity();
    let quarter = piece_frame(cap);
    let h = tx.head_offset();
    let to_boundary = quarter - h % quarter;
    let room = cap - h;
    // Frame bytes: 16 of header and 8 of total, then data.
    let frame = if to_boundary < 64 {
        // Too little before the boundary: wrap (or skip) to the next one.
        quarter
    } else if to_boundary + quarter <= room {
        to_boundary + quarter
    } else {
        to_boundary
    };
    frame as usize - 24
}

impl Connection {
    /// Sends a message too large for one frame, as pieces, holding the push
    /// lock throughout. `deadline` bounds every wait for room; a sender
    /// that stops mid-message (timeout, peer gone) leaves a partial message
    /// that the receiver discards.
    pub(super) fn send_pieces(
        &self,
        tx: &Spsc,
        bytes: &[u8],
        deadline: Option<Instant>,
    ) -> Result<()> {
        let h = tx.header();
        let total = bytes.len() as u64;
        let mut sent = 0usize;
        let first = h.space_ready.0.wait_until(
            || {
                let g = match EndGuard::lock(&h.push_lock.0, deadline) {
                    Ok(g) => g,
                    Err(e) => return Some(Err(e)),
                };
                let n = first_len(tx).min(bytes.len());
                match tx.try_push_piece(Piece::First { total }, &bytes[..n], &self.tail_cache) {
                    Ok(true) => {
                        sent = n;
                        Some(Ok(g))
                    }
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                }
            },
            deadline,
            Some(PEER_CHECK),
            || self.check_peer(),
        );
        let _g = self.sent_or(first)?;
        h.data_ready.0.notify(1);
        let piece = piece_len(tx.capacity());
        while sent < bytes.len() {
            let part = &bytes[sent..bytes.len().min(sent + piece)];
            let r = h.space_ready.0.wait_until(
                || match tx.try_push_piece(Piece::More, part, &self.tail_cache) {
                    Ok(true) => Some(Ok(())),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                },
                deadline,
                Some(PEER_CHECK),
                || self.check_peer(),
            );
            self.sent_or(r)?;
            h.data_ready.0.notify(1);
            sent += part.len();
        }
        Ok(())
    }

    /// The outcome of a wait for room, as the caller's result.
    pub(super) fn sent_or<T>(&self, r: std::result::Result<Result<T>, Stop<Error>>) -> Result<T> {
        match r {
            Ok(r) => r,
            Err(Stop::Timeout) => Err(self.check_peer().err().unwrap_or(Error::Timeout)),
            Err(Stop::Check(e)) => Err(e),
        }
    }

    /// Receives one message into `sink`: waits (until `deadline`) for a
    /// message to begin, then for all its pieces (a message begun is
    /// received whole unless its sender stops, whatever the deadline).
    pub(super) fn recv_into<S: Sink>(
        &self,
        deadline: Option<Instant>,
        sink: &mut S,
    ) -> Result<S::Out> {
        let rx = self.rx()?;
        let h = rx.header();
        loop {
            let r = h.data_ready.0.wait_until(
                || {
                    // Look before locking: spinning on plain loads keeps the
                    // lock's cache line quiet until there is something to take.
                    if !rx.has_data() {
                        return None;
                    }
                    let g = match EndGuard::lock(&h.pop_lock.0, deadline) {
                        Ok(g) => g,
                        Err(e) => return Some(Err(e)),
                    };
                    match take_start(rx, &mut *sink) {
                        Ok(Start::Nothing) => None,
                        Ok(s) => Some(Ok((s, g))),
                        Err(e) => Some(Err(e)),
                    }
                },
                deadline,
                Some(PEER_CHECK),
                || self.check_peer(),
            );
            let (start, g) = match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(e),
                // Even a short timeout reports a peer that is already gone.
                Err(Stop::Timeout) if !rx.has_data() && self.peer_closed() => {
                    return Err(Error::PeerClosed)
                }
                Err(Stop::Timeout) => return Err(Error::Timeout),
                // The peer is gone: deliver anything it sent before dying.
                Err(Stop::Check(e)) if !rx.has_data() => return Err(e),
                Err(Stop::Check(_)) => continue,
            };
            h.space_ready.0.notify(1);
            let (total, got) = match start {
                Start::Whole(out) => return Ok(out),
                Start::Partial { total, got } => (total, got),
                Start::Nothing => continue,
            };
            match self.take_rest(rx, sink, total, got)? {
                Rest::Done(out) => return Ok(out),
                Rest::Abandoned => {
                    crate::trace::event!(WARN, total, "pipe: partial message discarded");
                    drop(g);
                    continue;
                }
            }
        }
    }

    /// Receives the pieces after the first, holding the pop lock.
    pub(super) fn take_rest<S: Sink>(
        &self,
        rx: &Spsc,
        sink: &mut S,
        total: usize,
        mut got: usize,
    ) -> Result<Rest<S::Out>> {
        let h = rx.header();
        while got < total {
            let want = total - got;
            let r = h.data_ready.0.wait_until(
                || {
                    let step = |v: View| match v.piece {
                        Piece::More if v.len == 0 || v.len > want => {
                            (Step::Bad("piece past its message's total"), true)
                        }
                        Piece::More => {
                            // SAFETY: the ring hands us `v.len` readable bytes;
                            // `got + v.len <= total` was just checked.
                            unsafe { sink.put(got, v.ptr, v.len) };
                            (Step::Got(v.len), true)
                        }
                        _ => (Step::NewMessage, false),
                    };
                    match rx.try_pop(step) {
                        Ok(Frame::Empty) => None,
                        Ok(Frame::Taken(s) | Frame::Left(s)) => Some(Ok(s)),
                        Err(e) => Some(Err(e)),
                    }
                },
                None,
                Some(PEER_CHECK),
                || self.abandoned(rx),
            );
            match r {
                Ok(Ok(Step::Got(n))) => {
                    h.space_ready.0.notify(1);
                    got += n;
                }
                Ok(Ok(Step::NewMessage)) | Err(Stop::Check(Gone::Sender)) | Err(Stop::Timeout) => {
                    return Ok(Rest::Abandoned)
                }
                Ok(Ok(Step::Bad(what))) => {
                    h.space_ready.0.notify(1);
                    return Err(Error::Corrupt(format!("pipe frame: {what}")));
                }
                Ok(Err(e)) => return Err(e),
                Err(Stop::Check(Gone::Peer)) => return Err(Error::PeerClosed),
            }
        }
        Ok(Rest::Done(sink.finish(total)?))
    }

    /// Whether the message being received will never complete: the ring is
    /// empty and either the peer is gone or nobody holds the push lock (the
    /// sender stopped or died mid-message).
    fn abandoned(&self, rx: &Spsc) -> std::result::Result<(), Gone> {
        if rx.has_data() {
            return Ok(());
        }
        if self.peer_closed() {
            return if rx.has_data() {
                Ok(())
            } else {
                Err(Gone::Peer)
            };
        }
        let lock = &rx.header().push_lock.0;
        match lock.try_lock_or_recover() {
            Acquired::Clean | Acquired::OwnerDied => {
                // Checked under the lock: its Acquire pairs with the last
                // sender's unlock, which followed its last piece.
                let empty = !rx.has_data();
                lock.unlock();
                if empty {
                    Err(Gone::Sender)
                } else {
                    Ok(())
                }
            }
            // A live sender holds it: it is still streaming.
            Acquired::Busy => Ok(()),
            // No sender can hold a garbage word: nobody is completing it.
            Acquired::Corrupt(_) => Err(Gone::Sender),
        }
    }
}

/// Takes the first frame of a message into `sink` (the caller holds the
/// pop lock), skipping stray pieces left by a receiver that died
/// mid-message.
pub(super) fn take_start<S: Sink>(rx: &Spsc, sink: &mut S) -> Result<Start<S::Out>> {
    let cap = rx.max_message();
    let limit = sink.limit();
    loop {
        let r = rx.try_pop(|v: View| match v.piece {
            Piece::More => (Ok(None), true),
            Piece::Whole if v.len > limit => (
                Err(Error::MessageTooLarge {
                    size: v.len,
                    max: limit,
                }),
                false,
            ),
            Piece::Whole => {
                // SAFETY: the ring hands us `v.len <= limit` readable bytes.
                (
                    Ok(Some(Start::Whole(unsafe { sink.whole(v.ptr, v.len) }))),
                    true,
                )
            }
            Piece::First { total } if total > cap || total < v.len as u64 => (
                Err(Error::Corrupt(format!(
                    "pipe frame: message total {total} (piece {}, cap {cap})",
                    v.len
                ))),
                true,
            ),
            Piece::First { total } if total as usize > limit => (
                Err(Error::MessageTooLarge {
                    size: total as usize,
                    max: limit,
                }),
                false,
            ),
            Piece::First { total } => {
                let total = total as usize;
                let r = sink.begin(total, v.ptr).map(|()| {
                    // SAFETY: `begin(total)` succeeded, `v.len <= total`, and
                    // the ring hands us `v.len` readable bytes.
                    unsafe { sink.put(0, v.ptr, v.len) };
                    Some(Start::Partial { total, got: v.len })
                });
                (r, true)
            }
        });
        match r {
            Ok(Frame::Empty) => return Ok(Start::Nothing),
            // A stray piece was skipped: free its space and look again.
            Ok(Frame::Taken(Ok(None))) => rx.header().space_ready.0.notify(1),
            Ok(Frame::Taken(Ok(Some(Start::Partial { total, got })))) if got == total => {
                return sink.finish(total).map(Start::Whole)
            }
            Ok(Frame::Taken(r) | Frame::Left(r)) => return r.map(|s| s.unwrap_or(Start::Nothing)),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipe::Pipe;
    use std::sync::atomic::AtomicU64;

    /// Pushes a raw piece as a hostile writer would (no checks above the ring).
    fn push(c: &Connection, piece: Piece, data: &[u8]) {
        let cache = AtomicU64::new(0);
        assert!(c.tx().unwrap().try_push_piece(piece, data, &cache).unwrap());
    }

    fn pipe() -> (Connection, Connection) {
        Pipe::builder()
            .capacity(4096)
            .max_message_size(1 << 20)
            .build()
            .unwrap()
    }

    #[test]
    fn hostile_piece_headers_are_corrupt_and_the_pipe_flows_on() {
        let (a, b) = pipe();
        type Frames = Vec<(Piece, Vec<u8>)>;
        let cases: [(&str, Frames); 4] = [
            // A total beyond the cap: refused before any allocation.
            (
                "total",
                vec![(Piece::First { total: u64::MAX }, vec![1; 8])],
            ),
            // A total smaller than the first piece.
            ("total", vec![(Piece::First { total: 4 }, vec![1; 8])]),
            // A continuation past the total.
            (
                "past its message",
                vec![
                    (Piece::First { total: 1500 }, vec![1; 1000]),
                    (Piece::More, vec![2; 1000]),
                ],
            ),
            // An empty continuation (which could otherwise spin for ever).
            (
                "past its message",
                vec![
                    (Piece::First { total: 1500 }, vec![1; 1000]),
                    (Piece::More, vec![]),
                ],
            ),
        ];
        for (what, frames) in cases {
            for (p, d) in &frames {
                push(&a, *p, d);
            }
            let e = b.recv_bytes().unwrap_err();
            assert!(matches!(&e, Error::Corrupt(m) if m.contains(what)), "{e}");
            a.send_bytes(b"ok").unwrap();
            assert_eq!(b.recv_bytes().unwrap(), b"ok");
        }
    }

    #[test]
    fn stray_continuations_are_skipped() {
        let (a, b) = pipe();
        push(&a, Piece::More, &[9; 100]);
        push(&a, Piece::More, &[9; 100]);
        a.send_bytes(b"next").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"next");
    }

    #[test]
    fn first_pieces_end_on_a_piece_boundary() {
        for cap in [1 << 16, 1 << 22] {
            let (a, b) = Pipe::builder().capacity(cap).build().unwrap();
            first_pieces_end_on_a_piece_boundary_of(&a, &b);
        }
    }

    fn first_pieces_end_on_a_piece_boundary_of(a: &Connection, b: &Connection) {
        let tx = a.tx().unwrap();
        for small in [0usize, 8, 100, 4000, 16_000] {
            a.send_bytes(&vec![1; small]).unwrap();
            b.recv_bytes().unwrap();
            let n = first_len(tx);
            let end = tx.head_offset() + 24 + n as u64;
            let quarter = piece_frame(tx.capacity());
            // Either it ends on a boundary, or it wraps to start at 0.
            assert!(
                end % quarter == 0 || n as u64 + 24 == quarter,
                "{small}: {end}"
            );
            assert!(n + 8 <= Spsc::max_payload(tx.capacity()));
        }
    }
}
