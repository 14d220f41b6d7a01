//! Small messages copied out of shared memory onto the receiver's stack
//! for validation and decoding: no thread-local buffer to take and give
//! back, no allocation, no placement (a copy this short cannot suffer 4K
//! aliasing). A round trip of a `u64` spends about 190 fewer instructions
//! on each side than through a [`Scratch`].

use std::mem::MaybeUninit;

use super::{Message, Scratch};
use crate::{Error, Result};

/// Largest message copied to the stack; larger ones go to a [`Scratch`].
pub(crate) const SMALL: usize = 128;

/// A stack buffer for one small message (16-aligned, as rkyv's archives
/// need).
#[repr(C, align(16))]
pub(crate) struct SmallCopy {
    bytes: [MaybeUninit<u8>; SMALL],
    /// Bytes written at the start of `bytes` (all of them initialised).
    len: usize,
}

/// A received message's private copy, awaiting validation: a small whole
/// message in a [`SmallCopy`], anything else (a large one, or one that
/// arrives in pieces) in a [`Scratch`].
pub(crate) struct Copied {
    small: SmallCopy,
    large: Option<Scratch>,
}

impl SmallCopy {
    /// An empty buffer (nothing is zeroed).
    #[inline]
    pub fn new() -> SmallCopy {
        SmallCopy {
            bytes: [MaybeUninit::uninit(); SMALL],
            len: 0,
        }
    }

    /// Copies `len` bytes from `src` if they fit; returns whether they did.
    ///
    /// # Safety
    /// `src` must be valid for reads of `len` bytes during the call.
    #[inline]
    pub unsafe fn fill(&mut self, src: *const u8, len: usize) -> bool {
        if len > SMALL {
            return false;
        }
        // SAFETY: `len <= SMALL` bytes fit in `bytes`; `src` is readable
        // for them (caller) and is shared memory, never our stack.
        unsafe { std::ptr::copy_nonoverlapping(src, self.bytes.as_mut_ptr().cast(), len) };
        self.len = len;
        true
    }

    fn as_bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were initialised by `fill` (`len`
        // is 0 until then).
        unsafe { std::slice::from_raw_parts(self.bytes.as_ptr().cast(), self.len) }
    }
}

impl Copied {
    /// Nothing copied yet.
    #[inline]
    pub fn new() -> Copied {
        Copied {
            small: SmallCopy::new(),
            large: None,
        }
    }

    /// Copies a whole message of `len` bytes.
    ///
    /// # Safety
    /// `src` must be valid for reads of `len` bytes during the call.
    #[inline]
    pub unsafe fn whole(&mut self, src: *const u8, len: usize) {
        // (A message in pieces begun before is dropped: its sender stopped.)
        // SAFETY: forwarded from the caller.
        self.large = if unsafe { self.small.fill(src, len) } {
            None
        } else {
            // SAFETY: forwarded from the caller.
            Some(unsafe { Scratch::copy_from(src, len) })
        };
    }

    /// Copies a whole message of `len` bytes, into a fresh allocation for
    /// the decoded value if `owned` (see [`Scratch::copy_as`]).
    ///
    /// # Safety
    /// `src` must be valid for reads of `len` bytes during the call.
    #[inline]
    pub unsafe fn whole_as(&mut self, src: *const u8, len: usize, owned: bool) {
        if owned {
            // SAFETY: forwarded from the caller.
            self.large = Some(unsafe { Scratch::copy_as(src, len, true) });
        } else {
            // SAFETY: forwarded from the caller.
            unsafe { self.whole(src, len) }
        }
    }

    /// Holds bytes already copied into a [`Scratch`] (a queue's block).
    pub fn hold(&mut self, s: Scratch) {
        self.large = Some(s);
    }

    /// Makes room for a message of `total` bytes arriving in pieces, the
    /// first copied from `src` (see [`Scratch::for_pieces`]).
    ///
    /// # Errors
    /// [`Error::Io`] (`ENOMEM`) if `total` bytes cannot be allocated.
    pub fn begin(&mut self, total: usize, src: *const u8) -> Result<()> {
        self.large = Some(Scratch::for_pieces(total, src)?);
        Ok(())
    }

    /// Copies a piece to offset `at` of a message begun with
    /// [`begin`](Self::begin) (ignored if none was).
    ///
    /// # Safety
    /// `src` must be valid for reads of `n` bytes during the call, and
    /// `at + n` at most the `total` given to `begin`.
    pub unsafe fn put(&mut self, at: usize, src: *const u8, n: usize) {
        if let Some(s) = self.large.as_mut() {
            // SAFETY: forwarded from the caller.
            unsafe { s.write_at(at, src, n) }
        }
    }

    /// Whether a message in pieces was begun.
    pub fn begun(&self) -> bool {
        self.large.is_some()
    }

    /// Validates and deserializes the copy as a `T`.
    #[inline]
    pub fn decode<T: Message>(&mut self) -> Result<T> {
        match self.large.take() {
            None => rkyv::from_bytes::<T, rkyv::rancor::Error>(self.small.as_bytes())
                .map_err(|e| Error::Corrupt(format!("invalid message: {e}"))),
            Some(s) => s.decode(),
        }
    }

    /// The copy in a [`Scratch`] of its own (for a caller that keeps the
    /// bytes, e.g. to read them in place).
    pub fn into_scratch(mut self) -> Scratch {
        match self.large.take() {
            Some(s) => s,
            None => {
                let b = self.small.as_bytes();
                // SAFETY: `b` is readable for its length during the call.
                unsafe { Scratch::copy_from(b.as_ptr(), b.len()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_copies_decode_and_large_ones_go_to_a_scratch() {
        let bytes = super::super::to_vec(&(7u32, "seven".to_string())).unwrap();
        let mut c = Copied::new();
        // SAFETY: `bytes` is readable for its length.
        unsafe { c.whole(bytes.as_ptr(), bytes.len()) };
        assert!(!c.begun());
        assert_eq!(
            c.decode::<(u32, String)>().unwrap(),
            (7, "seven".to_string())
        );
        let mut c = Copied::new();
        // SAFETY: as above.
        unsafe { c.whole(bytes.as_ptr(), bytes.len()) };
        assert_eq!(c.into_scratch().decode::<(u32, String)>().unwrap().0, 7);
        let big = super::super::to_vec(&vec![5u8; SMALL]).unwrap();
        assert!(big.len() > SMALL);
        let mut c = Copied::new();
        // SAFETY: as above.
        unsafe { c.whole(big.as_ptr(), big.len()) };
        assert!(c.large.is_some());
        assert_eq!(c.decode::<Vec<u8>>().unwrap(), vec![5u8; SMALL]);
        // A small whole message after an abandoned one in pieces is
        // decoded from its own copy.
        let mut c = Copied::new();
        c.begin(big.len(), big.as_ptr()).unwrap();
        // SAFETY: as above.
        unsafe { c.whole(bytes.as_ptr(), bytes.len()) };
        assert_eq!(c.decode::<(u32, String)>().unwrap().0, 7);
        // Nothing copied is no valid `u64`, and garbage that fits is no
        // valid `Vec<u64>`: Corrupt, never a panic.
        assert!(matches!(
            Copied::new().decode::<u64>(),
            Err(Error::Corrupt(_))
        ));
        let junk = [1u8; 9];
        let mut c = Copied::new();
        // SAFETY: as above.
        unsafe { c.whole(junk.as_ptr(), junk.len()) };
        assert!(matches!(c.decode::<Vec<u64>>(), Err(Error::Corrupt(_))));
    }
}
