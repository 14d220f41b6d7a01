//! Message encoding: `rkyv` into the rings, validated (`bytecheck`) when
//! read back, because a ring is shared memory any process can scribble on.
//!
//! [`to_vec`] and [`from_slice`] are the one way to encode and decode
//! outside the rings' hot paths. With the `serde` feature, `Serde<T>`
//! carries any `serde` type (encoded with `postcard`) wherever a
//! [`Message`] goes.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use std::cell::RefCell;

use crate::{Error, Result};

#[cfg(feature = "serde")]
mod serde;
#[cfg(feature = "serde")]
pub use self::serde::Serde;

/// A type that can travel through a [`Queue`](crate::queue::Queue) or a
/// [`Connection`](crate::pipe::Connection): anything deriving `rkyv`'s
/// `Archive`, `Serialize` and `Deserialize` (with validation). Implemented
/// automatically.
///
/// # Examples
///
/// ```
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
/// struct Job { id: u64, name: String }
///
/// let q = ipc_core::queue::Queue::<Job>::new(4)?;
/// q.put(&Job { id: 1, name: "build".into() })?;
/// assert_eq!(q.get()?.id, 1);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub trait Message:
    Archive<Archived: Decode<Self>>
    + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + Sized
{
}

impl<T> Message for T where
    T: Archive<Archived: Decode<T>>
        + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}

/// The archived form of a [`Message`]: checkable and deserializable.
pub trait Decode<T>:
    for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
    + Deserialize<T, HighDeserializer<rancor::Error>>
{
}

impl<T, A> Decode<T> for A where
    A: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>
{
}

thread_local! {
    static ENCODE_BUF: RefCell<Option<AlignedVec>> = const { RefCell::new(None) };
    static DECODE_BUF: RefCell<Option<AlignedVec>> = const { RefCell::new(None) };
}

/// Encodes `value` into a reused thread-local buffer and passes the bytes
/// to `f`.
///
/// # Errors
/// [`Error::Corrupt`] if serialization fails (it does not for ordinary types).
pub fn encode_with<T: Message, R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    let buf = ENCODE_BUF
        .with(|b| b.borrow_mut().take())
        .unwrap_or_default();
    let mut buf = buf;
    buf.clear();
    let buf = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, buf)
        .map_err(|e| Error::Corrupt(format!("encoding failed: {e}")))?;
    let r = f(&buf);
    if buf.capacity() <= 1 << 20 {
        ENCODE_BUF.with(|b| *b.borrow_mut() = Some(buf));
    }
    Ok(r)
}

/// Encodes `value` into a fresh `Vec`: the one way to get an owned
/// encoding (for a file, a frame or a stored value).
///
/// # Errors
/// [`Error::Corrupt`] if serialization fails.
///
/// # Examples
///
/// ```
/// let bytes = ipc_core::codec::to_vec(&(7u32, "seven".to_string()))?;
/// let back: (u32, String) = ipc_core::codec::from_slice(&bytes)?;
/// assert_eq!(back, (7, "seven".to_string()));
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn to_vec<T: Message>(value: &T) -> Result<Vec<u8>> {
    encode_with(value, <[u8]>::to_vec)
}

/// Validates and decodes bytes of any alignment (copying them into an
/// aligned buffer first when they are not aligned): the one way to decode
/// bytes that did not come from a [`Scratch`].
///
/// # Errors
/// [`Error::Corrupt`] if the bytes are not a valid archived `T`.
///
/// # Examples
///
/// ```
/// let bytes = ipc_core::codec::to_vec(&vec![1u64, 2, 3])?;
/// assert_eq!(ipc_core::codec::from_slice::<Vec<u64>>(&bytes)?, [1, 2, 3]);
/// assert!(ipc_core::codec::from_slice::<Vec<u64>>(b"garbage").is_err());
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn from_slice<T: Message>(bytes: &[u8]) -> Result<T> {
    let mut a = AlignedVec::with_capacity(bytes.len());
    a.extend_from_slice(bytes);
    decode(&a)
}

/// Bytes copied out of shared memory into a reused thread-local aligned
/// buffer, awaiting validation. Copy first, decode after releasing the slot.
pub(crate) struct Scratch(AlignedVec);

impl Scratch {
    /// Copies `len` bytes from `src`.
    ///
    /// # Safety
    /// `src` must be valid for reads of `len` bytes during the call.
    pub unsafe fn copy_from(src: *const u8, len: usize) -> Scratch {
        let mut buf = DECODE_BUF
            .with(|b| b.borrow_mut().take())
            .unwrap_or_default();
        buf.clear();
        buf.reserve(len);
        // SAFETY: `src` is readable for `len` bytes per the caller; `buf` has
        // capacity for `len`, and the bytes are initialised before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), len);
            buf.set_len(len);
        }
        Scratch(buf)
    }

    /// Validates and deserializes the bytes as a `T`, recycling the buffer.
    pub fn decode<T: Message>(self) -> Result<T> {
        let r = decode(&self.0);
        if self.0.capacity() <= 1 << 20 {
            DECODE_BUF.with(|b| *b.borrow_mut() = Some(self.0));
        }
        r
    }

    /// The raw bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.0.to_vec()
    }
}

/// Validates and deserializes an aligned buffer.
///
/// # Errors
/// [`Error::Corrupt`] if the bytes are not a valid archived `T`.
pub fn decode<T: Message>(bytes: &AlignedVec) -> Result<T> {
    rkyv::from_bytes::<T, rancor::Error>(bytes)
        .map_err(|e| Error::Corrupt(format!("invalid message: {e}")))
}
