//! Payload blocks: messages too large for a ring slot live in page-aligned
//! blocks of the queue's own file, past the mapped region, and only a
//! small descriptor travels through the ring.
//!
//! # Memory
//! ```text
//! region: header | ring (see mpmc) | BlocksHeader | entry 0 | entry 1 | ...
//! file:   region | block | block | ...        (grows with fallocate)
//! entry:  state: u64 | offset: u64 | cap: u64 | pad: u64
//! ```
//! `file_end` in the header is the end of the last range handed out; a
//! grower reserves its range with a `fetch_add` on it, then allocates it
//! (`fallocate` mode 0 extends the size and never shrinks it, so growers
//! cannot undo each other; `ENOSPC` is [`Error::NoSpace`], never a SIGBUS).
//!
//! # The entry state word
//! `state = gen << 32 | st << 24 | tag`, `tag` being the ring's
//! registration tag of the holder (see `mpmc`):
//!
//! | st        | tag        | meaning                                             |
//! |-----------|------------|-----------------------------------------------------|
//! | `FREE`    | 0          | nobody holds it; `cap == 0`: no range yet           |
//! | `WRITING` | producer   | its producer fills it, then pushes its descriptor   |
//! | `QUEUED`  | 0          | its descriptor is in the ring                       |
//! | `READING` | consumer   | a consumer copies it out (or lends it)              |
//!
//! ```text
//! FREE(g) -> WRITING(g, p)   producer claims (CAS); may give it a new range
//! WRITING(g, p) -> QUEUED(g) producer, after pushing the descriptor {entry, g, len, p}
//! QUEUED(g) | WRITING(g, p) -> READING(g, c)
//!                            consumer, while it still holds the ring slot
//! READING(g, c) -> FREE(g+1) consumer, when done
//! WRITING(g, dead) | READING(g, dead) -> FREE(g+1)     recovery
//! QUEUED(g) | WRITING(g, _) -> FREE(g+1)
//!                            the descriptor's slot was freed from a dead
//!                            consumer (or drained by an immediate shutdown)
//! ```
//! Every return to `FREE` bumps `gen`, so a descriptor that outlived its
//! block (its producer died after pushing it and recovery freed the block)
//! fails the consumer's CAS and is skipped: that `put` never returned.
//! `offset` and `cap` are written only by the holder of `WRITING`, before
//! the Release that publishes the descriptor (the ring slot's store), and
//! read by others only after an Acquire of a state that follows it.

use std::fs::File;
use std::sync::{Arc, Mutex};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;

use crate::atomic::{AtomicU64, Ordering};
use crate::ring::mpmc::Claimant;
use crate::{Error, Result};

/// The file calls (the real ones; no-ops in the loom model, which checks
/// the state machine, not the kernel).
#[cfg(not(loom))]
use crate::sys::shm;
#[cfg(loom)]
mod shm {
    use nix::errno::Errno;
    pub fn allocate(_: &std::fs::File, _: u64, _: u64) -> Result<(), Errno> {
        Ok(())
    }
    pub fn punch(_: &std::fs::File, _: u64, _: u64) -> Result<(), Errno> {
        Ok(())
    }
}

/// Ring message kind of a block descriptor (0 is an inline message).
pub(crate) const KIND_BLOCK: u32 = 1;

/// Bytes of an encoded [`Desc`].
pub(crate) const DESC_LEN: usize = 24;

const PAGE: u64 = 4096;
/// Smallest block.
const MIN_BLOCK: u64 = 64 * 1024;
/// Blocks larger than this give their pages back when released, so that a
/// one-off huge message does not pin its memory.
pub(crate) const PUNCH_ABOVE: u64 = 32 << 20;

const FREE: u64 = 0;
const WRITING: u64 = 1;
const QUEUED: u64 = 2;
const READING: u64 = 3;

#[inline]
fn pack(gen: u32, st: u64, tag: u32) -> u64 {
    u64::from(gen) << 32 | st << 24 | u64::from(tag & 0xff_ffff)
}
#[inline]
fn gen_of(w: u64) -> u32 {
    (w >> 32) as u32
}
#[inline]
fn st_of(w: u64) -> u64 {
    (w >> 24) & 0xff
}
#[inline]
fn tag_of(w: u64) -> u32 {
    (w & 0xff_ffff) as u32
}

/// The shared header of the block table (128 bytes).
#[repr(C)]
pub(crate) struct BlocksHeader {
    entries: AtomicU64,
    max_message: AtomicU64,
    file_end: AtomicU64,
    _pad: [AtomicU64; 13],
}

#[repr(C)]
struct Entry {
    state: AtomicU64,
    offset: AtomicU64,
    cap: AtomicU64,
    _pad: AtomicU64,
}

/// A block held by this process (`WRITING` or `READING` under `gen`).
#[derive(Debug)]
pub(crate) struct Block {
    pub entry: u32,
    pub gen: u32,
    pub offset: u64,
    pub cap: u64,
    /// The message's length, and where it starts in the block.
    pub len: u64,
    pub at: u64,
}

/// Where a message copied from `src` should start in a block (which is
/// page-aligned): 16-aligned, below a page, and about 2 KiB (modulo
/// 4 KiB) past its source. When `(dst - src) % 4096` is small, the loads
/// of a copy alias the stores just made (4K aliasing) and memcpy runs at
/// a fraction of its speed (a 64 KiB message from a buffer 48 bytes below
/// a page boundary went at 3.1 GiB/s instead of 7.7).
pub(crate) fn offset_for(src: usize) -> u64 {
    (src.wrapping_add(2048) & 4095 & !15) as u64
}

/// A mapping of one block's range.
#[derive(Debug)]
pub(crate) struct BlockMap {
    map: MmapRaw,
}

impl BlockMap {
    /// First byte of the block.
    pub fn ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }
}

/// A cached mapping of an entry: its range's offset and size, and the map.
type Cached = (u64, u64, Arc<BlockMap>);

/// Outcome of [`Blocks::claim`].
pub(crate) enum Claim {
    /// Claimed for reading.
    Held(Block),
    /// The descriptor outlived its block (its producer died and the block
    /// was recovered): skip it.
    Stale,
}

/// A handle to a block table and the file it grows. Geometry is copied out
/// and validated at attach time.
#[derive(Debug)]
pub(crate) struct Blocks {
    hdr: *const BlocksHeader,
    entries: *const Entry,
    n: u32,
    max_message: u64,
    /// First byte past the region: no block may start below it.
    base: u64,
    file: File,
    maps: Mutex<Vec<Option<Cached>>>,
}

// SAFETY: the pointers refer to shared memory kept mapped by the owner of
// this handle (the queue's region); all access goes through atomics.
unsafe impl Send for Blocks {}
// SAFETY: as above; the mapping cache is behind a mutex.
unsafe impl Sync for Blocks {}

fn bad(what: &str) -> Error {
    Error::Corrupt(format!("queue block table: {what}"))
}

fn no_space(size: u64) -> Error {
    Error::NoSpace {
        name: None,
        size: usize::try_from(size).unwrap_or(usize::MAX),
    }
}

/// The capacity a message of `len` bytes gets: whole pages, in classes of
/// a quarter power of two (at most 25 % waste), at least [`MIN_BLOCK`].
pub(crate) fn class(len: u64) -> u64 {
    let c = len.max(MIN_BLOCK).next_multiple_of(PAGE);
    let p = 1u64 << (63 - c.leading_zeros());
    c.next_multiple_of((p / 4).max(PAGE))
}

impl Blocks {
    /// Bytes of a table of `n` entries.
    pub fn bytes_needed(n: u32) -> usize {
        std::mem::size_of::<BlocksHeader>() + n as usize * std::mem::size_of::<Entry>()
    }

    /// Initialises a table of `n` entries in zeroed memory.
    ///
    /// # Safety
    /// `base` must be 8-aligned and point to `bytes_needed(n)` zeroed bytes
    /// nobody else accesses until the region is published.
    pub unsafe fn init(base: *mut u8, n: u32, max_message: u64, region_len: u64) {
        // SAFETY: per the caller, aligned and zeroed (all-zero atomics are valid).
        let h = unsafe { &*base.cast::<BlocksHeader>() };
        // Relaxed (all): published by the region's Release in `publish`.
        h.entries.store(u64::from(n), Ordering::Relaxed);
        h.max_message.store(max_message, Ordering::Relaxed);
        h.file_end
            .store(region_len.next_multiple_of(PAGE), Ordering::Relaxed);
    }

    /// Attaches to a table of `len` bytes at `base`, in the region of
    /// `region_len` bytes (header included) whose file is `file`.
    ///
    /// # Safety
    /// `base` must be 8-aligned, point to `len` mapped bytes that stay
    /// mapped while the handle is used, and the region must be published.
    pub unsafe fn attach(
        base: *mut u8,
        len: usize,
        file: &File,
        region_len: u64,
    ) -> Result<Blocks> {
        if len < std::mem::size_of::<BlocksHeader>() {
            return Err(bad("region smaller than the table header"));
        }
        // SAFETY: aligned and at least a header long (checked above).
        let h = unsafe { &*base.cast::<BlocksHeader>() };
        // Relaxed (both): written before publication.
        let n = h.entries.load(Ordering::Relaxed);
        let max_message = h.max_message.load(Ordering::Relaxed);
        let n = u32::try_from(n).map_err(|_| bad("entry count"))?;
        if n == 0 || Self::bytes_needed(n) > len {
            return Err(bad("entry count"));
        }
        if max_message == 0 {
            return Err(bad("zero largest message"));
        }
        let file = file
            .try_clone()
            .map_err(|e| Error::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        Ok(Blocks {
            hdr: h,
            // SAFETY: within the `bytes_needed(n) <= len` bytes.
            entries: unsafe { base.add(std::mem::size_of::<BlocksHeader>()) }.cast(),
            n,
            max_message,
            base: region_len.next_multiple_of(PAGE),
            file,
            maps: Mutex::new((0..n).map(|_| None).collect()),
        })
    }

    fn header(&self) -> &BlocksHeader {
        // SAFETY: valid for the handle's life per `attach`'s contract.
        unsafe { &*self.hdr }
    }

    fn entry(&self, i: u32) -> &Entry {
        debug_assert!(i < self.n);
        // SAFETY: i < n entries lie within the validated table, 8-aligned.
        unsafe { &*self.entries.add(i as usize) }
    }

    /// Largest message the queue accepts, in bytes.
    pub fn max_message(&self) -> u64 {
        self.max_message
    }

    /// Claims a block of at least `len` bytes for writing as `me`: a free
    /// one of the right size, else a fresh range for an empty entry, else
    /// a fresh range for any free entry (its old pages given back).
    /// `None`: every entry is busy (wait, as for a full ring).
    ///
    /// # Errors
    /// [`Error::NoSpace`] if the file cannot grow; [`Error::Corrupt`] if
    /// the table's end-of-file word is garbage.
    pub fn acquire(&self, len: u64, me: u32) -> Result<Option<Block>> {
        let need = class(len);
        for pass in 0..3 {
            for i in 0..self.n {
                let e = self.entry(i);
                // Acquire: pairs with the Release that freed the entry, so
                // its last holder's accesses (and its offset/cap) are seen.
                let w = e.state.load(Ordering::Acquire);
                if st_of(w) != FREE || tag_of(w) != 0 {
                    continue;
                }
                // Relaxed: ordered by the Acquire above; a change needs a
                // claim, which bumps the word and fails our CAS.
                let cap = e.cap.load(Ordering::Relaxed);
                let fits = match pass {
                    0 => cap >= need && cap <= 2 * need,
                    1 => cap == 0,
                    _ => true,
                };
                if !fits {
                    continue;
                }
                let gen = gen_of(w);
                // Acquire: as the load above; the claim names us at once.
                if e.state
                    .compare_exchange(
                        w,
                        pack(gen, WRITING, me),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_err()
                {
                    continue;
                }
                return self.fill(i, gen, pass == 0, need, len).map(Some);
            }
        }
        Ok(None)
    }

    /// Gives the entry `i` we just claimed (as `WRITING(gen, me)`) its
    /// pages: re-allocated if it is reused as is, else a fresh range.
    fn fill(&self, i: u32, gen: u32, reuse: bool, need: u64, len: u64) -> Result<Block> {
        let e = self.entry(i);
        // Relaxed (both): we hold the entry; ordered by our claim's Acquire.
        let (offset, cap) = (
            e.offset.load(Ordering::Relaxed),
            e.cap.load(Ordering::Relaxed),
        );
        let give_up = |err: Error, emptied: bool| {
            if emptied {
                // Relaxed: published by the Release below.
                e.cap.store(0, Ordering::Relaxed);
            }
            // Release: pairs with the Acquire of the next claimant.
            e.state
                .store(pack(gen.wrapping_add(1), FREE, 0), Ordering::Release);
            err
        };
        if reuse && self.valid_range(offset, cap) {
            // Large blocks gave their pages back on release: take them
            // again now, so a full file system is an error, not a SIGBUS.
            if cap > PUNCH_ABOVE {
                shm::allocate(&self.file, offset, cap).map_err(|err| {
                    give_up(
                        match err {
                            Errno::ENOSPC | Errno::ENOMEM => no_space(cap),
                            err => err.into(),
                        },
                        false,
                    )
                })?;
            }
            return Ok(Block {
                entry: i,
                gen,
                offset,
                cap,
                len,
                at: 0,
            });
        }
        if cap > 0 && self.valid_range(offset, cap) {
            let _ = shm::punch(&self.file, offset, cap);
        }
        // Relaxed: a reservation; the range's pages are made by fallocate.
        let off = self.header().file_end.fetch_add(need, Ordering::Relaxed);
        if off < self.base || off % PAGE != 0 || off.checked_add(need).is_none() {
            return Err(give_up(bad("end-of-file word"), true));
        }
        if let Err(err) = shm::allocate(&self.file, off, need) {
            return Err(give_up(
                match err {
                    Errno::ENOSPC | Errno::ENOMEM | Errno::EFBIG => no_space(need),
                    err => err.into(),
                },
                true,
            ));
        }
        // Relaxed (both): published by the Release of the ring slot that
        // carries our descriptor (and of the state when freed).
        e.offset.store(off, Ordering::Relaxed);
        e.cap.store(need, Ordering::Relaxed);
        Ok(Block {
            entry: i,
            gen,
            offset: off,
            cap: need,
            len,
            at: 0,
        })
    }

    fn valid_range(&self, offset: u64, cap: u64) -> bool {
        cap > 0
            && offset >= self.base
            && offset % PAGE == 0
            && cap % PAGE == 0
            && offset.checked_add(cap).is_some()
    }

    /// After the descriptor of `b` is in the ring: `WRITING(me)` to
    /// `QUEUED`. Fails harmlessly if a consumer already took it (or a dead
    /// consumer's slot freed it).
    pub fn publish(&self, b: &Block, me: u32) {
        // Release: a consumer that claims from QUEUED (Acquire) sees the
        // block filled (it also sees it through the ring slot's Release).
        let _ = self.entry(b.entry).state.compare_exchange(
            pack(b.gen, WRITING, me),
            pack(b.gen, QUEUED, 0),
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Gives back a block we hold (`WRITING` or `READING` as `me`), its
    /// pages too if it is large.
    pub fn release(&self, b: Block, me: u32) {
        let e = self.entry(b.entry);
        if b.cap > PUNCH_ABOVE {
            let _ = shm::punch(&self.file, b.offset, b.cap);
        }
        for st in [READING, WRITING] {
            // Release: our accesses to the block happen before the next
            // claimant's (its Acquire of the state).
            if e.state
                .compare_exchange(
                    pack(b.gen, st, me),
                    pack(b.gen.wrapping_add(1), FREE, 0),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return;
            }
        }
    }

    /// A consumer holding the ring slot of `d` claims its block for
    /// reading as `me`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a descriptor or entry that is garbage.
    pub fn claim(&self, d: &Desc, me: u32) -> Result<Claim> {
        if d.entry >= self.n {
            return Err(bad("descriptor names no entry"));
        }
        let e = self.entry(d.entry);
        // Acquire: pairs with the producer's Release (`publish`) and the
        // claims of others.
        let mut w = e.state.load(Ordering::Acquire);
        for _ in 0..4 {
            if gen_of(w) != d.gen {
                return Ok(Claim::Stale);
            }
            let ok = match st_of(w) {
                QUEUED => tag_of(w) == 0,
                WRITING => tag_of(w) == d.producer,
                _ => false,
            };
            if !ok {
                return Err(bad("descriptor names a block in another state"));
            }
            // Acquire: as the load above.
            match e.state.compare_exchange(
                w,
                pack(d.gen, READING, me),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // Relaxed (both): ordered by the claim's Acquire (and
                    // the ring slot's).
                    let offset = e.offset.load(Ordering::Relaxed);
                    let cap = e.cap.load(Ordering::Relaxed);
                    let b = Block {
                        entry: d.entry,
                        gen: d.gen,
                        offset,
                        cap,
                        len: d.len,
                        at: u64::from(d.at),
                    };
                    if !self.valid_range(offset, cap)
                        || b.at >= PAGE
                        || d.len > cap - b.at
                        || d.len > self.max_message
                    {
                        self.release(b, me);
                        return Err(bad("block range or length"));
                    }
                    return Ok(Claim::Held(b));
                }
                Err(now) => w = now,
            }
        }
        Err(bad("block state does not settle"))
    }

    /// Frees the block a descriptor names when the descriptor itself was
    /// dropped (its slot freed from a dead consumer, or drained): from
    /// `QUEUED` or `WRITING` of the same generation.
    pub fn free_described(&self, d: &Desc) {
        if d.entry >= self.n {
            return;
        }
        let e = self.entry(d.entry);
        // Acquire: pairs with the producer's claim/publish.
        let w = e.state.load(Ordering::Acquire);
        if gen_of(w) == d.gen && matches!(st_of(w), QUEUED | WRITING) {
            // AcqRel: takes the block over and publishes it free.
            let _ = e.state.compare_exchange(
                w,
                pack(d.gen.wrapping_add(1), FREE, 0),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// Frees blocks held (`WRITING` or `READING`) by processes `judge`
    /// finds dead or unknown; returns how many.
    pub fn recover(&self, judge: impl Fn(u32) -> Claimant) -> usize {
        let mut freed = 0;
        for i in 0..self.n {
            let e = self.entry(i);
            // Acquire: pairs with the claim that wrote the tag.
            let w = e.state.load(Ordering::Acquire);
            if !matches!(st_of(w), WRITING | READING) || judge(tag_of(w)) == Claimant::Alive {
                continue;
            }
            // AcqRel: takes the dead claim over; publishes the entry free.
            if e.state
                .compare_exchange(
                    w,
                    pack(gen_of(w).wrapping_add(1), FREE, 0),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                // Its pages stay until the entry is reused: punching them
                // now could zero a block another producer just claimed.
                freed += 1;
            }
        }
        freed
    }

    /// Maps the block `b` (cached per entry and range), after checking its
    /// range lies within the file.
    #[cfg(not(loom))]
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the range lies past the end of the file;
    /// [`Error::Io`] if it cannot be mapped.
    pub fn map(&self, b: &Block) -> Result<Arc<BlockMap>> {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((off, cap, m)) = &maps[b.entry as usize] {
            if *off == b.offset && *cap == b.cap {
                return Ok(m.clone());
            }
        }
        let io = |e: std::io::Error| Error::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0)));
        let size = self.file.metadata().map_err(io)?.len();
        if b.offset.checked_add(b.cap).is_none_or(|end| end > size) {
            return Err(bad("block past the end of the file"));
        }
        let len = usize::try_from(b.cap).map_err(|_| bad("block size"))?;
        let map = MmapOptions::new()
            .offset(b.offset)
            .len(len)
            .map_raw(&self.file)
            .map_err(io)?;
        let m = Arc::new(BlockMap { map });
        maps[b.entry as usize] = Some((b.offset, b.cap, m.clone()));
        Ok(m)
    }

    /// Whether any entry is held under `tag` (so the ring must not give
    /// that tag to another process yet).
    pub fn names(&self, tag: u32) -> bool {
        (0..self.n).any(|i| {
            // Acquire: pairs with the claims' CAS; a stale view only delays reuse.
            let w = self.entry(i).state.load(Ordering::Acquire);
            matches!(st_of(w), WRITING | READING) && tag_of(w) == tag
        })
    }

    /// The number of entries not `FREE` (for tests and inspection).
    pub fn in_use(&self) -> usize {
        (0..self.n)
            // Relaxed: a snapshot.
            .filter(|&i| self.entry(i).state.load(Ordering::Relaxed) & 0xffff_ffff != 0)
            .count()
    }
}

mod desc;
pub(crate) use desc::Desc;

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_message_starts_in_its_block_about_2k_from_its_source_modulo_4k() {
        // A 64 KiB message 48 bytes below a page boundary, copied to a
        // block's start, ran at 3.1 GiB/s instead of 7.7 (4K aliasing).
        for src in [0x1000usize, 0x1ff0, 0x5584_a772_ffd0, 0x7f00_0000_0008, 17] {
            let at = offset_for(src) as usize;
            assert!(at < PAGE as usize && at % 16 == 0);
            let d = at.wrapping_sub(src) & 4095;
            assert!((2033..=2048).contains(&d), "{src:#x}: {d}");
        }
    }
}
