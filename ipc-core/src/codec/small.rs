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

/// Where a received message's bytes went: which buffer to decode.
pub(crate) enum Copied {
    /// Into the receiver's [`SmallCopy`].
    Small,
    /// Into a [`Scratch`].
    Large(Scratch),
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
    /// Validates and deserializes the bytes as a `T` (`small` is the
    /// buffer the receive filled, if it filled one).
    #[inline]
    pub fn decode<T: Message>(self, small: &SmallCopy) -> Result<T> {
        match self {
            Copied::Small => rkyv::from_bytes::<T, rkyv::rancor::Error>(small.as_bytes())
                .map_err(|e| Error::Corrupt(format!("invalid message: {e}"))),
            Copied::Large(s) => s.decode(),
        }
    }

    /// The bytes in a [`Scratch`] of their own (for a caller that keeps
    /// them, e.g. to read them in place).
    pub fn into_scratch(self, small: &SmallCopy) -> Scratch {
        match self {
            Copied::Small => {
                let b = small.as_bytes();
                // SAFETY: `b` is readable for its length during the call.
                unsafe { Scratch::copy_from(b.as_ptr(), b.len()) }
            }
            Copied::Large(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_copies_decode_and_large_ones_are_refused() {
        let bytes = super::super::to_vec(&(7u32, "seven".to_string())).unwrap();
        let mut s = SmallCopy::new();
        // SAFETY: `bytes` is readable for its length.
        assert!(unsafe { s.fill(bytes.as_ptr(), bytes.len()) });
        assert_eq!(
            Copied::Small.decode::<(u32, String)>(&s).unwrap(),
            (7, "seven".to_string())
        );
        let kept = Copied::Small.into_scratch(&s);
        assert_eq!(kept.decode::<(u32, String)>().unwrap().0, 7);
        let big = [1u8; SMALL + 1];
        let mut t = SmallCopy::new();
        // SAFETY: as above.
        assert!(!unsafe { t.fill(big.as_ptr(), big.len()) });
        // An empty buffer (nothing filled) is no valid `u64`: Corrupt.
        assert!(matches!(
            Copied::Small.decode::<u64>(&t),
            Err(Error::Corrupt(_))
        ));
        // Garbage that fits: Corrupt, never a panic.
        // SAFETY: as above.
        assert!(unsafe { t.fill(big.as_ptr(), 9) });
        assert!(matches!(
            Copied::Small.decode::<Vec<u64>>(&t),
            Err(Error::Corrupt(_))
        ));
    }
}
