//! The destination of a `put` whose encoding outgrows a ring slot: a
//! payload block, claimed by the encoder itself (see
//! `codec::MessageWriter`) so that a large message is encoded straight
//! into it, one copy in.

use std::sync::Arc;
use std::time::Instant;

use crate::codec::{Refusal, Spill};
use crate::queue::inner::Inner;
use crate::ring::blocks::{offset_for, Block, BlockMap};
use crate::Error;

/// A `put`'s block while its message is encoded into it. Dropped with the
/// block still held (the encoding failed or panicked, or the put gave up),
/// it gives the block back.
pub(crate) struct BlockSink<'q> {
    inner: &'q Inner,
    me: u32,
    deadline: Option<Instant>,
    /// A `try_put`: no block now is `Full`.
    now: bool,
    max: usize,
    held: Option<(Block, Arc<BlockMap>)>,
    /// Why the last `room` refused, for the put to return.
    err: Option<Error>,
}

impl<'q> BlockSink<'q> {
    #[inline]
    pub fn new(
        inner: &'q Inner,
        me: u32,
        deadline: Option<Instant>,
        now: bool,
        max: usize,
    ) -> BlockSink<'q> {
        BlockSink {
            inner,
            me,
            deadline,
            now,
            max,
            held: None,
            err: None,
        }
    }

    /// The error that stopped the encoding, if the sink refused.
    pub fn take_err(&mut self) -> Option<Error> {
        self.err.take()
    }

    /// The block holding the encoded message of `len` bytes, for sending.
    pub fn take_block(&mut self, len: usize) -> Option<Block> {
        self.held.take().map(|(mut b, _)| {
            b.len = len as u64;
            b
        })
    }

    /// A `try_put` that finds no room now is `Full`.
    pub fn expired(now: bool, e: Error) -> Error {
        match e {
            Error::Timeout if now => Error::Full,
            e => e,
        }
    }

    fn refuse(&mut self, e: Error) -> Result<(*mut u8, usize), Refusal> {
        self.err = Some(e);
        Err(Refusal::Stop)
    }
}

impl Spill for BlockSink<'_> {
    unsafe fn room(
        &mut self,
        min: usize,
        want: usize,
        prefix: *const u8,
        n: usize,
        src: usize,
    ) -> Result<(*mut u8, usize), Refusal> {
        // Past the cap before anything is claimed (a `Vec<u8>`'s payload
        // is its first write): the encoder counts the rest, for the error.
        if min > self.max {
            return Err(Refusal::TooLarge);
        }
        let want = want.clamp(min, self.max);
        let at = offset_for(src);
        // Waits for a free entry while holding the one being outgrown (if
        // any): a rare move, and the entry is freed if we die.
        let mut b = match self
            .inner
            .block_wait(want as u64 + at, self.me, self.deadline)
        {
            Ok(b) => b,
            Err(e) => return self.refuse(Self::expired(self.now, e)),
        };
        b.at = at;
        let m = match self.inner.blocks.map(&b) {
            Ok(m) => m,
            Err(e) => {
                self.inner.release(b, self.me);
                return self.refuse(e);
            }
        };
        let cap = usize::try_from(b.cap - at).unwrap_or(usize::MAX);
        // SAFETY: `at < PAGE <= cap` (the block holds `want + at`), so the
        // destination lies within the mapping.
        let ptr = unsafe { m.ptr().add(at as usize) };
        // SAFETY: past `at`, the mapping covers `cap >= want >= min >= n`
        // bytes of a block we hold (WRITING) until its descriptor is
        // consumed or we give it back, so no process following the
        // protocol touches it; `prefix` is readable for `n` bytes (the
        // caller's contract) and is private memory or the previous block,
        // never this one.
        unsafe { std::ptr::copy_nonoverlapping(prefix, ptr, n) };
        if let Some((old, _)) = self.held.replace((b, m)) {
            self.inner.release(old, self.me);
        }
        Ok((ptr, cap))
    }
}

impl Drop for BlockSink<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some((b, _)) = self.held.take() {
            self.inner.release(b, self.me);
        }
    }
}
