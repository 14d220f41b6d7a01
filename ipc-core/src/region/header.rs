//! The header at the start of every region.
//!
//! ```text
//! offset  field      written by         read by
//! 0       magic      creator, once      opener: must equal MAGIC
//! 8       version    creator, once      opener: must equal VERSION
//! 12      kind       creator, once      opener: must equal the kind asked for
//! 16      size       creator, once      opener: must equal the file size
//! 24      type_tag   creator, once      opener: must equal the type asked for
//! 32      creator    creator, once      gc: is the creator still alive?
//! 40      state      creator, last      opener: INIT -> READY (Release/Acquire)
//! ```
//! Everything is read with volatile loads: another process can write
//! anything here, so an opener validates every field before trusting it.

use crate::sys::futex;
use std::sync::atomic::{AtomicU32, Ordering};

/// `b"IPCRGN\x00\x01"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IPCRGN\x00\x01");
/// Layout version; bump on any incompatible change of any object layout
/// (4: stamped pipe frames, block descriptors with an offset; 5: pipe end
/// locks that nobody sleeps on).
pub const VERSION: u32 = 5;
/// Bytes reserved for the header; payloads start here, cache-line aligned.
pub const HEADER_LEN: usize = 128;

pub(crate) const STATE_READY: u32 = 1;

/// What a region holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum Kind {
    /// Raw bytes (Python's `shared_memory.SharedMemory`).
    Raw = 1,
    /// A [`Lock`](crate::sync::Lock).
    Lock = 2,
    /// An [`RLock`](crate::sync::RLock).
    RLock = 3,
    /// A [`Semaphore`](crate::sync::Semaphore) or bounded semaphore.
    Semaphore = 4,
    /// An [`Event`](crate::sync::Event).
    Event = 5,
    /// A [`Condition`](crate::sync::Condition).
    Condition = 6,
    /// A [`Barrier`](crate::sync::Barrier).
    Barrier = 7,
    /// A [`Queue`](crate::queue::Queue).
    Queue = 8,
    /// A [`Pipe`](crate::pipe::Pipe).
    Pipe = 9,
    /// A [`Value`](crate::value::Value).
    Value = 10,
    /// An [`Array`](crate::value::Array).
    Array = 11,
    /// The control region of an `ipc-manager` server.
    Manager = 12,
}

impl Kind {
    const ALL: [Kind; 12] = [
        Kind::Raw,
        Kind::Lock,
        Kind::RLock,
        Kind::Semaphore,
        Kind::Event,
        Kind::Condition,
        Kind::Barrier,
        Kind::Queue,
        Kind::Pipe,
        Kind::Value,
        Kind::Array,
        Kind::Manager,
    ];

    /// Whether a region of this kind may grow past its header's size
    /// after creation (a queue's file grows for its payload blocks; the
    /// mapped region stays the header's size).
    pub(crate) fn grows(self) -> bool {
        self == Kind::Queue
    }

    /// The kind with this numeric code, if any.
    pub fn from_u32(v: u32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u32 == v)
    }
}

/// The header, as laid out in shared memory.
#[repr(C)]
pub(crate) struct Header {
    pub magic: u64,
    pub version: u32,
    pub kind: u32,
    pub size: u64,
    pub type_tag: u64,
    pub creator: u64,
    pub state: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_LEN);

/// A copy of the header's plain fields, taken with volatile reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderSnapshot {
    pub magic: u64,
    pub version: u32,
    pub kind: u32,
    pub size: u64,
    pub type_tag: u64,
    pub creator: u64,
}

impl Header {
    /// # Safety
    /// `base` must point to at least `HEADER_LEN` mapped, writable bytes that
    /// no other process reads until `publish` is called.
    pub unsafe fn write(base: *mut u8, kind: Kind, size: u64, type_tag: u64, creator: u64) {
        let h = base.cast::<Header>();
        // SAFETY: the caller guarantees the memory is mapped and private to us
        // until published; the mapping is page-aligned so `h` is aligned.
        unsafe {
            std::ptr::addr_of_mut!((*h).magic).write_volatile(MAGIC);
            std::ptr::addr_of_mut!((*h).version).write_volatile(VERSION);
            std::ptr::addr_of_mut!((*h).kind).write_volatile(kind as u32);
            std::ptr::addr_of_mut!((*h).size).write_volatile(size);
            std::ptr::addr_of_mut!((*h).type_tag).write_volatile(type_tag);
            std::ptr::addr_of_mut!((*h).creator).write_volatile(creator);
        }
    }

    /// # Safety
    /// `base` must point to at least `HEADER_LEN` mapped bytes.
    pub unsafe fn snapshot(base: *const u8) -> HeaderSnapshot {
        let h = base.cast::<Header>();
        // SAFETY: mapped and aligned per the caller; volatile because another
        // process may write concurrently (any value is a valid integer).
        unsafe {
            HeaderSnapshot {
                magic: std::ptr::addr_of!((*h).magic).read_volatile(),
                version: std::ptr::addr_of!((*h).version).read_volatile(),
                kind: std::ptr::addr_of!((*h).kind).read_volatile(),
                size: std::ptr::addr_of!((*h).size).read_volatile(),
                type_tag: std::ptr::addr_of!((*h).type_tag).read_volatile(),
                creator: std::ptr::addr_of!((*h).creator).read_volatile(),
            }
        }
    }

    /// The creator field, for [`Region::adopt`](super::Region::adopt).
    ///
    /// # Safety
    /// `base` must point to at least `HEADER_LEN` mapped bytes that stay
    /// mapped for `'a`.
    pub unsafe fn creator<'a>(base: *const u8) -> &'a std::sync::atomic::AtomicU64 {
        // SAFETY: mapped and 8-aligned (offset 32 of a page-aligned mapping)
        // for 'a per the caller; any bit pattern is a valid u64.
        unsafe {
            std::sync::atomic::AtomicU64::from_ptr(
                std::ptr::addr_of!((*base.cast::<Header>()).creator).cast_mut(),
            )
        }
    }

    /// # Safety
    /// `base` must point to at least `HEADER_LEN` mapped bytes that stay
    /// mapped for `'a`.
    pub unsafe fn state<'a>(base: *const u8) -> &'a AtomicU32 {
        // SAFETY: mapped, aligned, lives for 'a per the caller; AtomicU32 has
        // no invalid bit patterns and tolerates concurrent access.
        unsafe { &*std::ptr::addr_of!((*base.cast::<Header>()).state) }
    }

    /// Marks the region ready. Release: pairs with the Acquire load in
    /// [`Header::is_ready`], so an opener that sees READY also sees the
    /// header fields and the initialised payload.
    ///
    /// # Safety
    /// As [`Header::state`].
    pub unsafe fn publish(base: *const u8) {
        // SAFETY: forwarded from the caller.
        let s = unsafe { Header::state(base) };
        s.store(STATE_READY, Ordering::Release);
        futex::wake_all(s);
    }

    /// # Safety
    /// As [`Header::state`].
    pub unsafe fn is_ready(base: *const u8) -> bool {
        // SAFETY: forwarded from the caller.
        // Acquire: pairs with the Release in `publish`.
        unsafe { Header::state(base) }.load(Ordering::Acquire) == STATE_READY
    }
}

/// A stable 64-bit tag for a payload type, so that opening a `Value<u64>`
/// where a `Value<f32>` lives is refused. FNV-1a over the type name, size
/// and alignment.
pub fn type_tag<T: ?Sized>(size: usize, align: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let name = std::any::type_name::<T>();
    for b in name
        .bytes()
        .chain(size.to_le_bytes())
        .chain(align.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}
