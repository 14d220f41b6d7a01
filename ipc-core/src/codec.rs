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
use rkyv::ser::allocator::{Arena, ArenaHandle};
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use std::any::{Any, TypeId};
use std::cell::RefCell;

use crate::{Error, Result};

mod archived;
pub use self::archived::ArchivedMessage;

#[cfg(feature = "serde")]
mod serde;
mod small;
mod writer;

#[cfg(feature = "serde")]
pub use self::serde::Serde;
pub(crate) use self::small::Copied;
pub use self::writer::MessageWriter;
pub(crate) use self::writer::{encode_spilling, Encoded, Refusal, Spill};

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
    + for<'a, 'w> Serialize<HighSerializer<MessageWriter<'w>, ArenaHandle<'a>, rancor::Error>>
    + Sized
    + 'static
{
}

impl<T> Message for T where
    T: Archive<Archived: Decode<T>>
        + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
        + for<'a, 'w> Serialize<HighSerializer<MessageWriter<'w>, ArenaHandle<'a>, rancor::Error>>
        + 'static
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

/// A thread's reused encoding state: the output buffer and rkyv's
/// scratch arena, kept together so that one thread-local access serves a
/// message (rkyv's own arena sits behind a second one, which cost a `u64`
/// send about 100 instructions more).
#[derive(Default)]
pub(crate) struct Encoder {
    pub buf: AlignedVec,
    pub arena: Arena,
}

thread_local! {
    static ENCODER: RefCell<Option<Encoder>> = const { RefCell::new(None) };
    static DECODE_BUF: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Runs `f` with the thread's encoder, borrowed in place (a fresh one if
/// `f` is re-entered, e.g. by a closure that encodes another message).
#[inline]
pub(crate) fn with_encoder<R>(f: impl FnOnce(&mut Encoder) -> R) -> R {
    ENCODER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let enc = slot.get_or_insert_with(Encoder::default);
            let r = f(enc);
            if enc.buf.capacity() > KEEP {
                enc.buf = AlignedVec::new();
            }
            r
        }
        Err(_) => f(&mut Encoder::default()),
    })
}

/// Encodes `value` into a reused thread-local buffer and passes the bytes
/// to `f`.
///
/// # Errors
/// [`Error::Corrupt`] if serialization fails (it does not for ordinary types).
#[inline]
pub fn encode_with<T: Message, R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    with_encoder(|enc| {
        let mut buf = std::mem::take(&mut enc.buf);
        buf.clear();
        match rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(
            value,
            buf,
            enc.arena.acquire(),
        ) {
            Ok(buf) => {
                let r = f(&buf);
                enc.buf = buf;
                Ok(r)
            }
            Err(e) => Err(Error::Corrupt(format!("encoding failed: {e}"))),
        }
    })
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

/// Bytes copied out of shared memory into a reused thread-local buffer,
/// awaiting validation. Copy first, decode after releasing the slot.
///
/// The copy's destination is placed on purpose: 16-aligned (rkyv's
/// archives need it), and `ALIAS_DISTANCE` bytes (modulo 4 KiB) past its
/// source. When `(dst - src) % 4096` is small, the loads of a copy alias
/// the stores just made (4K aliasing: the CPU compares only the low 12
/// address bits) and glibc's memcpy drops from ~50 GB/s to ~2 GB/s; an
/// allocator's choice of address makes that a matter of luck otherwise.
///
/// For a type that [`owns_copy`] (`Vec<u8>`), the copy goes instead into a
/// fresh allocation that becomes the decoded value itself (see
/// [`decode_owned`]): one copy out of shared memory, not two.
pub(crate) struct Scratch {
    buf: Vec<u8>,
    /// Where the bytes start in `buf` (16-aligned in memory; 0 if `owned`).
    start: usize,
    len: usize,
    /// `buf` is a fresh allocation for the decoded value, not the
    /// thread's reused buffer.
    owned: bool,
}

/// Distance, modulo 4 KiB, from a copy's source to its destination.
const ALIAS_DISTANCE: usize = 2048;
/// Room for choosing the start: a page, plus up to 15 bytes to align.
const SLACK: usize = 4096 + 16;
/// Buffers up to this size (encode and decode each) are kept for the
/// thread's next message: a fresh buffer per large message costs its page
/// faults every time (16 MiB messages ran at a third of the speed).
const KEEP: usize = (32 << 20) + SLACK;

/// Offset into a buffer at `base` where a copy from `src` should land:
/// 16-aligned, and `(dst - src) % 4096` within 15 bytes below
/// `ALIAS_DISTANCE`. Always `< SLACK`.
fn placement(base: usize, src: usize) -> usize {
    let first = base.wrapping_neg() & 15;
    first
        + (src
            .wrapping_add(ALIAS_DISTANCE)
            .wrapping_sub(base.wrapping_add(first))
            & 4095
            & !15)
}

impl Scratch {
    /// A buffer for `len` bytes copied from around `src`: the thread's
    /// reused one, or a fresh one.
    fn with_room(len: usize, src: *const u8, owned: bool) -> Result<Scratch> {
        if owned {
            let mut buf = Vec::new();
            buf.try_reserve_exact(len)
                .map_err(|_| Error::Io(nix::errno::Errno::ENOMEM))?;
            return Ok(Scratch {
                buf,
                start: 0,
                len,
                owned,
            });
        }
        let mut buf = DECODE_BUF
            .with(|b| b.borrow_mut().take())
            .unwrap_or_default();
        buf.clear();
        // A match, not `ok_or`: an eager `Error` costs its drop on every call.
        let Some(room) = len.checked_add(SLACK) else {
            return Err(Error::InvalidArgument("message too large"));
        };
        buf.try_reserve_exact(room)
            .map_err(|_| Error::Io(nix::errno::Errno::ENOMEM))?;
        let start = placement(buf.as_ptr() as usize, src as usize);
        Ok(Scratch {
            buf,
            start,
            len,
            owned,
        })
    }

    /// Copies `len` bytes from `src`.
    ///
    /// # Safety
    /// `src` must be valid for reads of `len` bytes during the call.
    pub unsafe fn copy_from(src: *const u8, len: usize) -> Scratch {
        // SAFETY: forwarded from the caller.
        unsafe { Self::copy_as(src, len, false) }
    }

    /// [`copy_from`](Self::copy_from), into a fresh allocation for the
    /// decoded value if `owned` (pass [`owns_copy::<T>()`](owns_copy) for
    /// the `T` that [`decode`](Self::decode) will be asked for).
    ///
    /// # Safety
    /// As [`copy_from`](Self::copy_from).
    pub unsafe fn copy_as(src: *const u8, len: usize, owned: bool) -> Scratch {
        let mut s = match Self::with_room(len, src, owned) {
            Ok(s) => s,
            // The allocation failed: as `Vec::reserve` does.
            Err(_) => std::alloc::handle_alloc_error(
                std::alloc::Layout::array::<u8>(len.saturating_add(SLACK))
                    .unwrap_or(std::alloc::Layout::new::<u8>()),
            ),
        };
        // SAFETY: forwarded from the caller; `0 + len <= len`.
        unsafe { s.write_at(0, src, len) };
        s
    }

    /// Room for a message of `len` bytes arriving in pieces (see
    /// [`write_at`](Self::write_at)); `src` is where the first piece is
    /// copied from (for placement).
    ///
    /// # Errors
    /// [`Error::Io`] (`ENOMEM`) if `len` bytes cannot be allocated.
    pub fn for_pieces(len: usize, src: *const u8) -> Result<Scratch> {
        Self::with_room(len, src, false)
    }

    /// Copies `n` bytes from `src` to offset `at` of the message.
    ///
    /// # Safety
    /// `src` must be valid for reads of `n` bytes during the call, and
    /// `at + n <= len`. The bytes are read only once every one of the
    /// `len` bytes has been written (the caller's duty).
    pub unsafe fn write_at(&mut self, at: usize, src: *const u8, n: usize) {
        // SAFETY: `buf` has capacity `start + len` (start < SLACK, see
        // `with_room`) and `at + n <= len` per the caller; `src` is
        // readable per the caller and cannot overlap our private buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(src, self.buf.as_mut_ptr().add(self.start + at), n);
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: capacity covers `start + len` (see `with_room`) and, per
        // `copy_from` / `write_at`'s contract, all of it was written before
        // anyone reads.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().add(self.start), self.len) }
    }

    /// Validates and deserializes the bytes as a `T`, recycling the buffer.
    #[inline]
    pub fn decode<T: Message>(self) -> Result<T> {
        if self.owned {
            return into_owned(self.buf, self.len);
        }
        let r = rkyv::from_bytes::<T, rancor::Error>(self.bytes())
            .map_err(|e| Error::Corrupt(format!("invalid message: {e}")));
        self.recycle();
        r
    }

    /// Validates the bytes as an archived `T`, to be read in place.
    pub fn into_archived<T: Message>(self) -> Result<ArchivedMessage<T>> {
        ArchivedMessage::check(self)
    }

    /// Keeps the buffer for the thread's next message (if not too large).
    fn recycle(self) {
        if self.buf.capacity() <= KEEP {
            DECODE_BUF.with(|b| *b.borrow_mut() = Some(self.buf));
        }
    }
}

/// Whether a `T` is decoded straight from its copy out of shared memory
/// (the copy's allocation becomes the value): `Vec<u8>`, whose archive is
/// its bytes at offset 0 followed by a small root.
pub(crate) fn owns_copy<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<Vec<u8>>()
}

/// Validates and decodes `bytes` (of any alignment) with a single copy
/// when it can: for a `Vec<u8>`, the bytes are copied into a fresh
/// allocation, validated there, and that allocation, truncated to the
/// payload, is the result. Other types (and archives laid out otherwise)
/// take the general path of [`from_slice`].
///
/// # Errors
/// [`Error::Corrupt`] if the bytes are not a valid archived `T`.
///
/// # Examples
///
/// ```
/// let bytes = ipc_core::codec::to_vec(&vec![9u8; 100_000])?;
/// let v: Vec<u8> = ipc_core::codec::decode_owned(&bytes)?;
/// assert_eq!(v, vec![9u8; 100_000]);
/// assert!(ipc_core::codec::decode_owned::<Vec<u8>>(b"garbage").is_err());
/// assert_eq!(ipc_core::codec::decode_owned::<String>(&ipc_core::codec::to_vec(&"x".to_string())?)?, "x");
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn decode_owned<T: Message>(bytes: &[u8]) -> Result<T> {
    // SAFETY: `bytes` is readable for its length during the call.
    unsafe { Scratch::copy_as(bytes.as_ptr(), bytes.len(), owns_copy::<T>()) }.decode()
}

/// Decodes the `len` bytes at the start of `buf` (an allocation made for
/// them, see [`owns_copy`]) as a `T`, reusing the allocation when `T` is
/// `Vec<u8>` laid out as rkyv lays it out.
#[inline(never)]
fn into_owned<T: Message>(mut buf: Vec<u8>, len: usize) -> Result<T> {
    // SAFETY: the capacity is at least `len` (`with_room`) and all `len`
    // bytes were written before decoding (`copy_as` / `write_at`).
    unsafe { buf.set_len(len) };
    // rkyv checks the root's alignment against the buffer's address: a
    // heap allocation is 16-aligned in practice; if not, the general path.
    if owns_copy::<T>() && buf.as_ptr() as usize % 16 == 0 {
        let root = rkyv::access::<rkyv::vec::ArchivedVec<u8>, rancor::Error>(&buf)
            .map_err(|e| Error::Corrupt(format!("invalid message: {e}")))?;
        // The checker proved `root`'s bytes lie within `buf`.
        let (at, n) = (
            (root.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize),
            root.len(),
        );
        if at == 0 && n <= len {
            buf.truncate(n);
            let mut v = Some(buf);
            return (&mut v as &mut dyn Any)
                .downcast_mut::<Option<T>>()
                .and_then(Option::take)
                .ok_or_else(|| Error::Corrupt("owned decode of another type".into()));
        }
    }
    from_slice(&buf)
}

/// Validates and deserializes an aligned buffer.
///
/// # Errors
/// [`Error::Corrupt`] if the bytes are not a valid archived `T`.
pub fn decode<T: Message>(bytes: &AlignedVec) -> Result<T> {
    rkyv::from_bytes::<T, rancor::Error>(bytes)
        .map_err(|e| Error::Corrupt(format!("invalid message: {e}")))
}

#[cfg(test)]
mod scratch_tests {
    use super::*;

    #[test]
    fn placement_is_aligned_and_far_from_its_source_modulo_4k() {
        for base in [0x1000usize, 0x1008, 0x7f00_0000_0010, 0x5555_0000_0ff0] {
            for src in [0x2000usize, 0x2008, 0x7f11_0000_0388, 0x4321_0000_0000] {
                let at = placement(base, src);
                assert!(at < SLACK);
                assert_eq!((base + at) % 16, 0, "{base:#x} {src:#x}");
                let d = (base + at).wrapping_sub(src) & 4095;
                assert!((ALIAS_DISTANCE - 15..=ALIAS_DISTANCE).contains(&d), "{d}");
            }
        }
    }

    #[test]
    fn scratch_copies_round_trip_through_decode() {
        let bytes = to_vec(&vec![3u32; 1000]).unwrap();
        // SAFETY: `bytes` is readable for its length.
        let s = unsafe { Scratch::copy_from(bytes.as_ptr(), bytes.len()) };
        assert_eq!(s.bytes(), &bytes[..]);
        assert_eq!(s.decode::<Vec<u32>>().unwrap(), vec![3u32; 1000]);
    }

    #[test]
    fn decode_owned_gives_vec_u8_of_0_1_and_64k_plus_1_bytes_their_own_allocation() {
        for len in [0usize, 1, 65537] {
            let v: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let bytes = to_vec(&v).unwrap();
            assert!(owns_copy::<Vec<u8>>());
            // SAFETY: `bytes` is readable for its length.
            let s = unsafe { Scratch::copy_as(bytes.as_ptr(), bytes.len(), true) };
            let p = s.buf.as_ptr();
            let got = s.decode::<Vec<u8>>().unwrap();
            assert_eq!(got, v);
            // The copy's allocation is the value (no second copy), at
            // most the root's few bytes too large.
            if len > 0 {
                assert_eq!(got.as_ptr(), p, "{len}");
            }
            assert!(got.capacity() - got.len() <= 16);
            assert_eq!(decode_owned::<Vec<u8>>(&bytes).unwrap(), v);
        }
    }

    #[test]
    fn decode_owned_falls_back_for_other_types_and_other_layouts() {
        assert!(!owns_copy::<Vec<u32>>() && !owns_copy::<String>());
        let v: Vec<u32> = (0..1000).collect();
        assert_eq!(decode_owned::<Vec<u32>>(&to_vec(&v).unwrap()).unwrap(), v);
        let t = (String::from("seven"), vec![1u8, 2, 3]);
        assert_eq!(
            decode_owned::<(String, Vec<u8>)>(&to_vec(&t).unwrap()).unwrap(),
            t
        );
        // A valid Vec<u8> archive whose bytes do not start at offset 0:
        // 16 bytes of padding, the payload, then the root pointing back.
        let payload = [9u8; 40];
        let mut a = vec![0u8; 16];
        a.extend_from_slice(&payload);
        a.extend_from_slice(&(-40i32).to_le_bytes());
        a.extend_from_slice(&40u32.to_le_bytes());
        assert_eq!(decode_owned::<Vec<u8>>(&a).unwrap(), payload);
        // Its root's length past the end, or its offset outside: Corrupt.
        let mut past = a.clone();
        past[60..64].copy_from_slice(&41u32.to_le_bytes());
        assert!(matches!(
            decode_owned::<Vec<u8>>(&past),
            Err(Error::Corrupt(_))
        ));
        let mut before = a.clone();
        before[56..60].copy_from_slice(&(-100i32).to_le_bytes());
        assert!(matches!(
            decode_owned::<Vec<u8>>(&before),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            decode_owned::<Vec<u8>>(&[1, 2, 3]),
            Err(Error::Corrupt(_))
        ));
    }
}
