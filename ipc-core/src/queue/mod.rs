//! `Queue`, `JoinableQueue` and `SimpleQueue`: many producers and many
//! consumers in any processes, over a lock-free MPMC ring in shared memory.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::atomic::{fence, Ordering};
use crate::codec::{self, Copied, Encoded, Message};
use crate::region::{type_tag, Kind, Region, DEFAULT_OPEN_TIMEOUT};
use crate::ring::blocks::offset_for;
use crate::ring::mpmc::{MpmcHeader, Push};
use crate::ring::wait::WaitPoint;
use crate::{Error, Result};

#[cfg(feature = "tokio")]
mod aio;
mod archived;
mod direct;
pub(crate) mod inner;
mod joinable;
mod simple;

use direct::BlockSink;
use inner::{broken, ended, Inner, Taken, CLOSED, OPEN, SHUT_DOWN, SHUT_DOWN_NOW};
pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;

/// Default largest encoded message: 1 GiB (a hard cap, settable with
/// [`QueueBuilder::max_message_size`]).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 30;

/// Default ring slot: messages up to this size (encoded) travel inline in
/// the ring; larger ones go out of line in a payload block.
pub const DEFAULT_SLOT_SIZE: usize = 64 * 1024;

/// A bounded multi-producer multi-consumer queue shared between processes
/// (Python's `multiprocessing.Queue`).
///
/// Capacity is counted in messages; each message is encoded with `rkyv`
/// and may be at most [`max_message_size`](Queue::max_message_size) bytes
/// (1 GiB by default; larger ones are refused with
/// [`Error::MessageTooLarge`], never truncated). Messages up to the
/// [`slot_size`](Queue::slot_size) (64 KiB by default) travel inline in
/// the ring (a message within a few hundred bytes of a slot may go out of
/// line); larger ones are encoded straight into a payload block in the
/// queue's own file (which grows for them, and gives the pages of blocks
/// over 32 MiB back once they are consumed), and only a descriptor travels
/// through the ring. Messages are validated when read: garbage written
/// into the queue by another process yields [`Error::Corrupt`], never
/// undefined behaviour. A `Queue<Vec<u8>>` hands out the very buffer its
/// message was copied into from shared memory: one copy in, one out.
///
/// `put`/`get` spin briefly, then sleep on a futex; a waker makes a
/// syscall only when someone sleeps.
///
/// # Examples
///
/// ```
/// use ipc_core::queue::Queue;
/// let q = Queue::<u64>::new(2)?;
/// q.put(&1)?;
/// q.put(&2)?;
/// assert!(matches!(q.try_put(&3), Err(ipc_core::Error::Full)));
/// assert_eq!(q.get()?, 1);
/// assert_eq!(q.len(), 1);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Queue<T> {
    inner: Arc<Inner>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
            _t: PhantomData,
        }
    }
}

/// Builder for a [`Queue`]: capacity, largest message and name.
///
/// # Examples
///
/// ```
/// use ipc_core::queue::Queue;
/// let q = Queue::<Vec<u8>>::builder().capacity(16).max_message_size(1 << 20).build()?;
/// assert_eq!(q.capacity(), 16);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QueueBuilder<T> {
    capacity: usize,
    max_message_size: usize,
    slot_size: Option<usize>,
    name: Option<String>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Message> QueueBuilder<T> {
    /// Capacity in messages (default 1024).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }
    /// Largest encoded message in bytes, a hard cap (default 1 GiB):
    /// a larger message is [`Error::MessageTooLarge`].
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }
    /// Largest encoded message that travels inline in a ring slot
    /// (default 64 KiB, and never more than the largest message); larger
    /// ones travel in payload blocks.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<Vec<u8>>::builder().slot_size(256).build()?;
    /// q.put(&vec![7u8; 100_000])?; // out of line
    /// assert_eq!(q.get()?.len(), 100_000);
    /// assert_eq!(q.slot_size(), 256);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn slot_size(mut self, n: usize) -> Self {
        self.slot_size = Some(n);
        self
    }
    /// Names the queue so other processes can [`open`](Queue::open) it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Creates the queue.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero capacity or size,
    /// [`Error::AlreadyExists`], [`Error::InvalidName`], [`Error::Io`].
    pub fn build(self) -> Result<Queue<T>> {
        let slot = self
            .slot_size
            .unwrap_or(DEFAULT_SLOT_SIZE)
            .min(self.max_message_size);
        if self.capacity == 0 || slot == 0 {
            return Err(Error::InvalidArgument(
                "queue capacity and message size must be positive",
            ));
        }
        let slot = slot
            .checked_add(15)
            .ok_or(Error::InvalidArgument("message size too large"))?
            & !15;
        let inner = Inner::create(
            self.name,
            type_tag::<T>(0, 0),
            self.capacity,
            slot,
            self.max_message_size,
        )?;
        Ok(Queue::from_inner(inner))
    }
}

impl<T: Message> Queue<T> {
    /// Creates an anonymous queue of `capacity` messages (shared with
    /// children forked after this call).
    ///
    /// # Errors
    /// As [`QueueBuilder::build`].
    pub fn new(capacity: usize) -> Result<Queue<T>> {
        Self::builder().capacity(capacity).build()
    }

    /// A builder with defaults (capacity 1024, messages up to 1 GiB,
    /// inline up to 64 KiB).
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            capacity: 1024,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            slot_size: None,
            name: None,
            _t: PhantomData,
        }
    }

    /// Creates a named queue that other processes can [`open`](Queue::open).
    ///
    /// # Errors
    /// As [`QueueBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::queue::Queue;
    /// let a = Queue::<String>::create("doc-jobs", 8)?;
    /// let b = Queue::<String>::open("doc-jobs")?;
    /// a.put(&"x".to_string())?;
    /// assert_eq!(b.get()?, "x");
    /// assert!(Queue::<u32>::open("doc-jobs").is_err()); // wrong type
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn create(name: &str, capacity: usize) -> Result<Queue<T>> {
        Self::builder().capacity(capacity).name(name).build()
    }

    /// Opens a queue created by another process.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Incompatible`] (not a queue, or of
    /// another message type), [`Error::Corrupt`] (invalid geometry).
    pub fn open(name: &str) -> Result<Queue<T>> {
        let region = Region::open_with(
            name,
            Kind::Queue,
            type_tag::<T>(0, 0),
            None,
            DEFAULT_OPEN_TIMEOUT,
        )?;
        Ok(Queue::from_inner(Inner::attach(region)?))
    }

    fn from_inner(inner: Inner) -> Queue<T> {
        Queue {
            inner: Arc::new(inner),
            _t: PhantomData,
        }
    }

    fn ring(&self) -> &crate::ring::mpmc::Mpmc {
        &self.inner.ring
    }

    fn hdr(&self) -> &MpmcHeader {
        self.inner.ring.header()
    }

    /// Puts a message, waiting for room as long as needed.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], [`Error::Closed`].
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_deadline(item, None, false)
    }

    /// Puts a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::MessageTooLarge`], [`Error::Closed`].
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_deadline(item, Some(Instant::now() + timeout), false)
    }

    /// Puts a message if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::MessageTooLarge`], [`Error::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<u8>::new(1)?;
    /// q.try_put(&1)?;
    /// assert!(matches!(q.try_put(&2), Err(ipc_core::Error::Full)));
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: &T) -> Result<()> {
        self.put_deadline(item, Some(Instant::now()), true)
    }

    fn check_put(&self, bytes: &[u8]) -> Result<()> {
        let max = self.max_message_size();
        if bytes.len() > max {
            return Err(Error::MessageTooLarge {
                size: bytes.len(),
                max,
            });
        }
        Ok(())
    }

    /// Puts `item`, in one of two ways chosen by this process's last
    /// put on this queue (a hint): after a small message, the plain
    /// encoder (the fewest instructions; a message that turns out larger
    /// than a slot is then copied into a block); after a large one, the
    /// encoder that writes straight into a payload block once the message
    /// outgrows a slot (one copy in). `now`: a `try_put` (no room now is
    /// `Full`).
    fn put_deadline(&self, item: &T, deadline: Option<Instant>, now: bool) -> Result<()> {
        match self.state() {
            OPEN => {}
            s => return Err(ended(s)),
        }
        let me = self.inner.register()?;
        // Relaxed (both): a process-local hint; any value is correct.
        if !self.inner.large_hint.load(Ordering::Relaxed) {
            return codec::encode_with(item, |bytes| {
                if bytes.len() > self.ring().slot_size() {
                    self.inner.large_hint.store(true, Ordering::Relaxed);
                    self.check_put(bytes)?;
                    return self.put_block(bytes, me, deadline, now);
                }
                self.put_inline(bytes, me, deadline, now)
            })?;
        }
        self.put_direct(item, me, deadline, now)
    }

    /// The put of a message expected to be large: encoded straight into
    /// a payload block once it outgrows a slot.
    #[inline(never)]
    fn put_direct(&self, item: &T, me: u32, deadline: Option<Instant>, now: bool) -> Result<()> {
        let mut sink = BlockSink::new(&self.inner, me, deadline, now, self.max_message_size());
        let inline = |bytes: &[u8]| self.put_inline(bytes, me, deadline, now);
        match codec::encode_spilling(item, self.ring().slot_size(), &mut sink, inline) {
            Ok(Encoded::Inline(r)) => {
                self.inner.large_hint.store(false, Ordering::Relaxed);
                r
            }
            Ok(Encoded::Spilled(len)) => {
                let b = sink
                    .take_block(len)
                    .ok_or_else(|| Error::Corrupt("encoding moved to no block".into()))?;
                self.inner
                    .send_block(b, me, deadline)
                    .map_err(|e| BlockSink::expired(now, e))
            }
            Ok(Encoded::TooLarge(size)) => Err(Error::MessageTooLarge {
                size,
                max: self.max_message_size(),
            }),
            Err(e) => Err(sink.take_err().unwrap_or(e)),
        }
    }

    /// Pushes an encoded message that fits a slot.
    fn put_inline(
        &self,
        bytes: &[u8],
        me: u32,
        deadline: Option<Instant>,
        now: bool,
    ) -> Result<()> {
        self.check_put(bytes)?;
        if now {
            match self.ring().try_push(bytes, me) {
                Push::Done => {}
                Push::Full => return Err(Error::Full),
                Push::Broken => return Err(broken()),
            }
        } else {
            self.inner.push_wait(bytes, 0, me, deadline)?;
        }
        self.inner.pushed();
        Ok(())
    }

    /// Puts encoded `bytes` (larger than a slot) out of line: claims a
    /// block, copies them in, and pushes its descriptor.
    fn put_block(&self, bytes: &[u8], me: u32, deadline: Option<Instant>, now: bool) -> Result<()> {
        let at = offset_for(bytes.as_ptr() as usize);
        let mut b = self
            .inner
            .block_wait(bytes.len() as u64 + at, me, deadline)
            .map_err(|e| BlockSink::expired(now, e))?;
        b.at = at;
        b.len = bytes.len() as u64;
        match self.inner.blocks.map(&b) {
            Ok(m) => {
                // SAFETY: the mapping covers `cap >= at + bytes.len()`
                // bytes, and we hold the block (WRITING) until its
                // descriptor is consumed or we give it back.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        m.ptr().add(at as usize),
                        bytes.len(),
                    )
                };
            }
            Err(e) => {
                self.inner.release(b, me);
                return Err(e);
            }
        }
        self.inner
            .send_block(b, me, deadline)
            .map_err(|e| BlockSink::expired(now, e))
    }

    /// Takes a message, waiting as long as needed.
    ///
    /// # Errors
    /// [`Error::Closed`] once the queue is closed and drained;
    /// [`Error::ShutDown`] once it is shut down and drained (at once after
    /// an immediate shutdown); [`Error::Corrupt`] if the message bytes are
    /// invalid (the bad message is consumed; the queue keeps working).
    pub fn get(&self) -> Result<T> {
        self.get_deadline(None)
    }

    /// Takes a message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Closed`], [`Error::ShutDown`], [`Error::Corrupt`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_deadline(Some(Instant::now() + timeout))
    }

    /// Takes a message if one is ready (Python's `get_nowait`).
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Closed`], [`Error::ShutDown`], [`Error::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<u8>::new(1)?;
    /// assert!(matches!(q.try_get(), Err(ipc_core::Error::Empty)));
    /// q.put(&5)?;
    /// assert_eq!(q.try_get()?, 5);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T> {
        let mut c = Copied::new();
        self.try_get_raw(&mut c)?;
        c.decode()
    }

    /// Takes a message if one is ready, into `out`.
    fn try_get_raw(&self, out: &mut Copied) -> Result<()> {
        let me = self.inner.register()?;
        let t = self.inner.try_take_now(me, codec::owns_copy::<T>(), out)?;
        self.copy_taken(t, me, out)
    }

    /// Completes the copy of a taken message into `out` (a block copied
    /// out and given back; an inline message is there already).
    fn copy_taken(&self, t: Taken, me: u32, out: &mut Copied) -> Result<()> {
        match t {
            Taken::Inline => Ok(()),
            Taken::Block(b) => {
                out.hold(self.inner.copy_out(b, me, codec::owns_copy::<T>())?);
                Ok(())
            }
        }
    }

    /// As [`try_get_raw`](Self::try_get_raw), for a waiter that does not
    /// block (`None`: nothing ready).
    #[cfg(feature = "tokio")]
    fn poll_get_raw(&self, out: &mut Copied) -> Option<Result<()>> {
        let me = match self.inner.register() {
            Ok(me) => me,
            Err(e) => return Some(Err(e)),
        };
        self.inner
            .try_take(me, codec::owns_copy::<T>(), out)
            .map(|r| r.and_then(|t| self.copy_taken(t, me, out)))
    }

    fn get_deadline(&self, deadline: Option<Instant>) -> Result<T> {
        let mut c = Copied::new();
        self.get_raw_deadline(deadline, &mut c)?;
        c.decode()
    }

    /// Waits for a message until `deadline`, copying it into `out`.
    fn get_raw_deadline(&self, deadline: Option<Instant>, out: &mut Copied) -> Result<()> {
        let me = self.inner.register()?;
        let t = self
            .inner
            .take_wait(me, deadline, codec::owns_copy::<T>(), out)?;
        self.copy_taken(t, me, out)
    }

    /// Approximate number of messages queued (Python's `qsize()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<u8>::new(2)?;
    /// q.put(&1)?;
    /// assert_eq!(q.len(), 1);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.ring().len() as usize
    }

    /// Whether the queue is (approximately) empty (Python's `empty()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<u8>::new(2)?;
    /// assert!(q.is_empty());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.ring().len() == 0
    }

    /// Whether the queue is (approximately) full (Python's `full()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<u8>::new(1)?;
    /// q.put(&1)?;
    /// assert!(q.is_full());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.ring().len() >= self.ring().capacity()
    }

    /// Capacity in messages.
    pub fn capacity(&self) -> usize {
        self.ring().capacity() as usize
    }

    /// Largest encoded message accepted, in bytes.
    pub fn max_message_size(&self) -> usize {
        usize::try_from(self.inner.blocks.max_message()).unwrap_or(usize::MAX)
    }

    /// Largest encoded message that travels inline in a ring slot; larger
    /// ones travel in payload blocks.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<u8>::new(4)?;
    /// assert_eq!(q.slot_size(), ipc_core::queue::DEFAULT_SLOT_SIZE);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn slot_size(&self) -> usize {
        self.ring().slot_size()
    }

    /// Payload blocks not free now (held by a `put` or a `get` in
    /// progress, or queued): for tests that check no block leaks.
    #[doc(hidden)]
    pub fn blocks_in_use(&self) -> usize {
        self.inner.blocks.in_use()
    }

    /// Closes the queue for every process: further `put`s fail with
    /// [`Error::Closed`]; `get`s drain what is queued, then fail with
    /// [`Error::Closed`] instead of blocking. Blocked callers wake up.
    /// (After a [`shutdown`](Queue::shutdown), the shutdown's errors stay.)
    pub fn close(&self) {
        // SeqCst: see `shutdown`; Release at least pairs with the Acquire
        // in `state`.
        self.hdr().closed.fetch_max(CLOSED, Ordering::SeqCst);
        self.wake_everyone();
    }

    /// Shuts the queue down for every process (Python 3.13's
    /// `Queue.shutdown(immediate)`): further `put`s fail with
    /// [`Error::ShutDown`]. With `immediate == false`, `get`s take what is
    /// still queued, then fail with [`Error::ShutDown`] instead of
    /// blocking. With `immediate == true`, the queue is emptied at once
    /// (each removed message counts as done for a [`JoinableQueue`]'s
    /// `join`) and `get`s fail at once. Blocked callers wake up.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::{queue::Queue, Error};
    /// let q = Queue::<u32>::new(4)?;
    /// q.put(&1)?;
    /// q.shutdown(false);
    /// assert!(matches!(q.put(&2), Err(Error::ShutDown)));
    /// assert_eq!(q.get()?, 1); // drained first
    /// assert!(matches!(q.get(), Err(Error::ShutDown)));
    ///
    /// let q = Queue::<u32>::new(4)?;
    /// q.put(&1)?;
    /// q.shutdown(true);
    /// assert!(matches!(q.get(), Err(Error::ShutDown)));
    /// assert!(q.is_empty());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(alias = "ShutDown")]
    pub fn shutdown(&self, immediate: bool) {
        let to = if immediate { SHUT_DOWN_NOW } else { SHUT_DOWN };
        // SeqCst, then the fence: the Dekker pair with `pushed` (see there).
        self.hdr().closed.fetch_max(to, Ordering::SeqCst);
        if immediate {
            fence(Ordering::SeqCst);
            self.drain();
        }
        self.wake_everyone();
    }

    fn drain(&self) {
        self.inner.drain();
    }

    fn wake_everyone(&self) {
        self.inner.wake_everyone();
    }

    /// The `closed` word (see `inner::OPEN` and friends).
    fn state(&self) -> u32 {
        self.inner.state()
    }

    /// Whether the queue refuses `put`s: [`close`](Queue::close) or
    /// [`shutdown`](Queue::shutdown) was called by some process.
    pub fn is_closed(&self) -> bool {
        self.state() != OPEN
    }

    /// Whether [`shutdown`](Queue::shutdown) was called by some process
    /// (Python's `is_shutdown`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<u8>::new(1)?;
    /// assert!(!q.is_shut_down());
    /// q.shutdown(false);
    /// assert!(q.is_shut_down() && q.is_closed());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(alias = "is_shutdown")]
    pub fn is_shut_down(&self) -> bool {
        matches!(self.state(), SHUT_DOWN | SHUT_DOWN_NOW)
    }

    /// The queue's name, if it was created or opened by name.
    pub fn name(&self) -> Option<&str> {
        self.inner.region.name()
    }

    /// For `process::wait`: where consumers sleep, and whether a `get`
    /// would not block now (a message is queued, or the queue has ended).
    pub(crate) fn wait_parts(&self) -> (&WaitPoint, bool) {
        let ready = self.ring().len() > 0 || self.state() != OPEN;
        (&self.hdr().not_empty.0, ready)
    }
}

impl<T: Message> crate::travel::Travel for Queue<T> {
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
        let region = Region::open_locator(&t.locator, Kind::Queue, type_tag::<T>(0, 0), None)?;
        Ok(Queue::from_inner(Inner::attach(region)?))
    }
}
crate::travel::travel_via_token!([T: Message] Queue<T>);
