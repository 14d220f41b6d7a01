//! Zero-copy loans: a queue of shared-memory buffers of `T: Pod`.
//!
//! A sender [`loan`](LoanQueue::loan)s a buffer in the queue's own file,
//! fills it in place and [`send`](Loan::send)s it; only a small descriptor
//! travels through the queue's ring. The receiver gets a [`Lent`] guard
//! that reads the same pages in place and gives the buffer back when
//! dropped. The buffers are the payload blocks `Queue` uses for large
//! messages, with the same guarantees: a sender killed mid-fill never
//! delivers (its buffer is recovered), a receiver killed before it
//! releases loses that buffer's message but not the buffer, and nothing is
//! left in `/dev/shm`.
//!
//! # What a receiver may see
//! While a buffer is lent, no process that follows the protocol writes
//! it. Another process can still scribble on it (it is shared memory of
//! the same user); since `T` is [`Pod`], whatever bytes a [`Lent`] then
//! shows are valid values of `T` (possibly a mix of old and new ones),
//! never undefined behaviour of the kind a torn `String` would be, and
//! never a crash: the file under the mapping never shrinks.
//!
//! # Examples
//!
//! ```
//! use ipc_core::loan::LoanQueue;
//! let q = LoanQueue::<f32>::new(4)?;
//! let mut l = q.loan(1000)?;
//! l.fill(0.5);
//! l[0] = 1.0;
//! l.send()?;
//! let r = q.recv()?;
//! assert_eq!((r.len(), r[0], r[999]), (1000, 1.0, 0.5));
//! drop(r); // gives the buffer back
//! # Ok::<(), ipc_core::Error>(())
//! ```

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::codec::Copied;
use crate::queue::inner::{Inner, Taken};
use crate::region::{type_tag, Kind, Region, DEFAULT_OPEN_TIMEOUT};
use crate::ring::blocks::{Block, BlockMap, DESC_LEN};
use crate::{Error, Result};

/// Default largest loan: 1 GiB.
pub const DEFAULT_MAX_BYTES: usize = 1 << 30;

/// A queue of shared-memory buffers of `T` (default `u8`), sendable to
/// other processes like a [`Queue`](crate::queue::Queue) (inherited, as a
/// `Process` argument, or opened by name).
///
/// # Examples
///
/// ```
/// let q = ipc_core::loan::LoanQueue::<u8>::new(2)?;
/// let mut l = q.loan(3)?;
/// l.copy_from_slice(b"abc");
/// l.send()?;
/// assert_eq!(&*q.recv()?, b"abc");
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug)]
pub struct LoanQueue<T: Pod = u8> {
    inner: Arc<Inner>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Pod> Clone for LoanQueue<T> {
    fn clone(&self) -> Self {
        LoanQueue {
            inner: self.inner.clone(),
            _t: PhantomData,
        }
    }
}

/// Builder for a [`LoanQueue`]: capacity, largest loan and name.
///
/// # Examples
///
/// ```
/// let q = ipc_core::loan::LoanQueue::<u64>::builder().capacity(8).max_len(1 << 20).build()?;
/// assert_eq!(q.max_len(), 1 << 20);
/// assert!(matches!(q.loan((1 << 20) + 1), Err(ipc_core::Error::MessageTooLarge { .. })));
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LoanQueueBuilder<T: Pod = u8> {
    capacity: usize,
    max_len: Option<usize>,
    name: Option<String>,
    _t: PhantomData<fn(T) -> T>,
}

fn tag<T: Pod>() -> u64 {
    type_tag::<LoanQueue<T>>(std::mem::size_of::<T>(), std::mem::align_of::<T>())
}

impl<T: Pod> LoanQueueBuilder<T> {
    /// Capacity in buffers sent and not yet received (default 64).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }
    /// Largest loan, in elements (default: 1 GiB worth of `T`).
    pub fn max_len(mut self, n: usize) -> Self {
        self.max_len = Some(n);
        self
    }
    /// Names the queue so other processes can [`open`](LoanQueue::open) it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Creates the queue.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero capacity or size, or an
    /// element type aligned to more than a page; [`Error::AlreadyExists`],
    /// [`Error::InvalidName`], [`Error::Io`].
    pub fn build(self) -> Result<LoanQueue<T>> {
        if std::mem::align_of::<T>() > 4096 {
            return Err(Error::InvalidArgument(
                "loan elements aligned to more than a page",
            ));
        }
        let size = std::mem::size_of::<T>().max(1);
        let max = match self.max_len {
            Some(n) => n
                .checked_mul(size)
                .ok_or(Error::InvalidArgument("loan size too large"))?,
            None => DEFAULT_MAX_BYTES / size * size,
        };
        if self.capacity == 0 || max == 0 {
            return Err(Error::InvalidArgument(
                "loan queue capacity and size must be positive",
            ));
        }
        let slot = DESC_LEN.next_multiple_of(16);
        let inner = Inner::create(self.name, tag::<T>(), self.capacity, slot, max)?;
        Ok(LoanQueue::from_inner(inner))
    }
}

impl<T: Pod> LoanQueue<T> {
    /// Creates an anonymous loan queue of `capacity` buffers.
    ///
    /// # Errors
    /// As [`LoanQueueBuilder::build`].
    pub fn new(capacity: usize) -> Result<Self> {
        Self::builder().capacity(capacity).build()
    }

    /// A builder with defaults (capacity 64, loans up to 1 GiB).
    pub fn builder() -> LoanQueueBuilder<T> {
        LoanQueueBuilder {
            capacity: 64,
            max_len: None,
            name: None,
            _t: PhantomData,
        }
    }

    /// Opens a named loan queue created by another process.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Incompatible`] (not a loan queue of
    /// `T`), [`Error::Corrupt`] (invalid geometry).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::loan::LoanQueue;
    /// let name = format!("doc-loans-{}", std::process::id());
    /// let a = LoanQueue::<u32>::builder().name(&name).build()?;
    /// let b = LoanQueue::<u32>::open(&name)?;
    /// let mut l = a.loan(1)?;
    /// l[0] = 42;
    /// l.send()?;
    /// assert_eq!(b.recv()?[0], 42);
    /// assert!(LoanQueue::<u8>::open(&name).is_err()); // another element type
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Self> {
        let region = Region::open_with(name, Kind::Queue, tag::<T>(), None, DEFAULT_OPEN_TIMEOUT)?;
        Ok(Self::from_inner(Inner::attach(region)?))
    }

    fn from_inner(inner: Inner) -> Self {
        LoanQueue {
            inner: Arc::new(inner),
            _t: PhantomData,
        }
    }

    /// Largest loan, in elements.
    pub fn max_len(&self) -> usize {
        let max = usize::try_from(self.inner.blocks.max_message()).unwrap_or(usize::MAX);
        max / std::mem::size_of::<T>().max(1)
    }

    /// Borrows a buffer of `len` elements in shared memory, waiting as
    /// long as needed for one to be free. Its contents are **not zeroed**:
    /// it holds whatever bytes the buffer last held (valid `T`s, as `T` is
    /// `Pod`); fill it before sending.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] past [`max_len`](Self::max_len),
    /// [`Error::NoSpace`] if the queue's file cannot grow.
    pub fn loan(&self, len: usize) -> Result<Loan<'_, T>> {
        self.loan_deadline(len, None)
    }

    /// [`loan`](Self::loan), waiting at most `timeout` for a free buffer.
    ///
    /// # Errors
    /// As [`loan`](Self::loan), and [`Error::Timeout`].
    pub fn loan_timeout(&self, len: usize, timeout: Duration) -> Result<Loan<'_, T>> {
        self.loan_deadline(len, Some(Instant::now() + timeout))
    }

    fn loan_deadline(&self, len: usize, deadline: Option<Instant>) -> Result<Loan<'_, T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .filter(|b| *b as u64 <= self.inner.blocks.max_message())
            .ok_or(Error::MessageTooLarge {
                size: len.saturating_mul(std::mem::size_of::<T>()),
                max: usize::try_from(self.inner.blocks.max_message()).unwrap_or(usize::MAX),
            })?;
        let me = self.inner.register()?;
        let block = self.inner.block_wait(bytes as u64, me, deadline)?;
        let map = match self.inner.blocks.map(&block) {
            Ok(m) => m,
            Err(e) => {
                self.inner.release(block, me);
                return Err(e);
            }
        };
        Ok(Loan {
            q: self,
            block: Some(block),
            map,
            len,
            me,
        })
    }

    /// Takes the next buffer sent, waiting as long as needed.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a descriptor that is garbage (it is
    /// consumed; the queue keeps working).
    pub fn recv(&self) -> Result<Lent<T>> {
        self.recv_deadline(None)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), and [`Error::Timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Lent<T>> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }

    /// Takes a buffer if one was sent.
    ///
    /// # Errors
    /// [`Error::Empty`] if none is ready; as [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::loan::LoanQueue::<u8>::new(2)?;
    /// assert!(matches!(q.try_recv(), Err(ipc_core::Error::Empty)));
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn try_recv(&self) -> Result<Lent<T>> {
        let me = self.inner.register()?;
        let t = self.inner.try_take_now(me, false, &mut Copied::new())?;
        self.lent(t, me)
    }

    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<Lent<T>> {
        let me = self.inner.register()?;
        let t = self
            .inner
            .take_wait(me, deadline, false, &mut Copied::new())?;
        self.lent(t, me)
    }

    fn lent(&self, t: Taken, me: u32) -> Result<Lent<T>> {
        let block = match t {
            Taken::Block(b) => b,
            Taken::Inline => {
                return Err(Error::Corrupt(
                    "loan queue slot holds an inline message (garbage)".into(),
                ))
            }
        };
        let size = std::mem::size_of::<T>().max(1) as u64;
        if block.at != 0 {
            self.inner.release(block, me);
            return Err(Error::Corrupt(
                "loan descriptor places the buffer off its block's start".into(),
            ));
        }
        if block.len % size != 0 {
            self.inner.release(block, me);
            return Err(Error::Corrupt(
                "loan length is not a whole number of elements".into(),
            ));
        }
        let map = match self.inner.blocks.map(&block) {
            Ok(m) => m,
            Err(e) => {
                self.inner.release(block, me);
                return Err(e);
            }
        };
        Ok(Lent {
            inner: self.inner.clone(),
            len: (block.len / size) as usize,
            block: Some(block),
            map,
            me,
            _t: PhantomData,
        })
    }

    /// Buffers not free now (lent, being filled, or sent and not yet
    /// received): for tests that check no buffer leaks.
    #[doc(hidden)]
    pub fn blocks_in_use(&self) -> usize {
        self.inner.blocks.in_use()
    }

    /// The queue's name, if it was created or opened by name.
    pub fn name(&self) -> Option<&str> {
        self.inner.region.name()
    }
}

/// A buffer borrowed from a [`LoanQueue`], writable in place; dropping it
/// unsent gives it back.
#[derive(Debug)]
pub struct Loan<'q, T: Pod = u8> {
    q: &'q LoanQueue<T>,
    block: Option<Block>,
    map: Arc<BlockMap>,
    len: usize,
    me: u32,
}

impl<T: Pod> Loan<'_, T> {
    /// Sends the buffer, waiting as long as needed for room in the queue.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the queue's ring is garbage; the buffer is
    /// given back on any error.
    pub fn send(self) -> Result<()> {
        self.send_deadline(None)
    }

    /// [`send`](Self::send), waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`send`](Self::send), and [`Error::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = ipc_core::loan::LoanQueue::<u8>::new(1)?;
    /// q.loan(1)?.send()?;
    /// let l = q.loan(1)?;
    /// assert!(matches!(l.send_timeout(Duration::from_millis(10)), Err(ipc_core::Error::Timeout)));
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn send_timeout(self, timeout: Duration) -> Result<()> {
        self.send_deadline(Some(Instant::now() + timeout))
    }

    fn send_deadline(mut self, deadline: Option<Instant>) -> Result<()> {
        let b = self.block.take().ok_or(Error::Closed)?;
        self.q.inner.send_block(b, self.me, deadline)
    }
}

impl<T: Pod> Deref for Loan<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping covers `cap >= len * size_of::<T>()` bytes,
        // page-aligned (so aligned for T, whose alignment is at most a
        // page); we hold the block (WRITING), so no process following the
        // protocol touches it; any bytes are valid T (Pod).
        unsafe { std::slice::from_raw_parts(self.map.ptr().cast::<T>(), self.len) }
    }
}

impl<T: Pod> DerefMut for Loan<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only view in
        // this process.
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr().cast::<T>(), self.len) }
    }
}

impl<T: Pod> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        if let Some(b) = self.block.take() {
            self.q.inner.release(b, self.me);
        }
    }
}

/// A received buffer, read in place in shared memory; dropping it gives
/// the buffer back to its queue. See the [module docs](self) for what it
/// shows if another process scribbles on it.
#[derive(Debug)]
pub struct Lent<T: Pod = u8> {
    inner: Arc<Inner>,
    block: Option<Block>,
    map: Arc<BlockMap>,
    len: usize,
    me: u32,
    _t: PhantomData<T>,
}

// SAFETY: a Lent owns its claim on the block and reads it only through
// `&self`; the mapping and the queue handle are Send + Sync.
unsafe impl<T: Pod> Send for Lent<T> {}
// SAFETY: as above; `&Lent` only reads.
unsafe impl<T: Pod> Sync for Lent<T> {}

impl<T: Pod> Deref for Lent<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping covers `cap >= len * size_of::<T>()` bytes
        // (checked when the block was claimed), page-aligned; we hold the
        // block (READING) until drop, so no process following the protocol
        // writes it, and any bytes are valid T (Pod).
        unsafe { std::slice::from_raw_parts(self.map.ptr().cast::<T>(), self.len) }
    }
}

impl<T: Pod> Drop for Lent<T> {
    fn drop(&mut self) {
        if let Some(b) = self.block.take() {
            self.inner.release(b, self.me);
        }
    }
}

impl<T: Pod> crate::travel::Travel for LoanQueue<T> {
    fn token(&self) -> crate::travel::Token {
        crate::travel::Token {
            locator: self.inner.region.locator(),
            kind: Kind::Queue as u32,
            offset: 0,
            extra: Vec::new(),
        }
    }
    fn from_token(t: crate::travel::Token) -> Result<Self> {
        if t.kind != Kind::Queue as u32 {
            return Err(Error::Incompatible {
                what: "kind",
                expected: "Queue".into(),
                found: format!("kind code {}", t.kind),
            });
        }
        let region = Region::open_locator(&t.locator, Kind::Queue, tag::<T>(), None)?;
        Ok(Self::from_inner(Inner::attach(region)?))
    }
}
crate::travel::travel_via_token!([T: Pod] LoanQueue<T>);
