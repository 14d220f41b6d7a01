//! `Queue`, `JoinableQueue` and `SimpleQueue`: many producers and many
//! consumers in any processes, over a lock-free MPMC ring in shared memory.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::atomic::Ordering;
use crate::codec::{self, Message, Scratch};
use crate::region::{type_tag, Kind, Region, DEFAULT_OPEN_TIMEOUT};
use crate::ring::mpmc::{Mpmc, MpmcHeader, Pop, Push, Recovered};
use crate::ring::wait::Stop;
use crate::sys::futex;
use crate::{Error, Result};

/// How often a blocked `put`/`get` checks for a slot left claimed by a
/// dead process.
const RECOVER_EVERY: Duration = Duration::from_millis(100);

#[cfg(feature = "tokio")]
mod aio;

/// Default largest encoded message: 64 KiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

#[derive(Debug)]
struct Inner {
    ring: Mpmc,
    // Keeps the mapping alive; declared after `ring` which points into it.
    region: Region,
}

fn broken() -> Error {
    Error::Corrupt("queue indices overwritten with garbage".into())
}

/// A bounded multi-producer multi-consumer queue shared between processes
/// (Python's `multiprocessing.Queue`).
///
/// Capacity is counted in messages; each message is encoded with `rkyv`
/// and may be at most [`max_message_size`](Queue::max_message_size) bytes
/// (larger ones are refused with [`Error::MessageTooLarge`], never
/// truncated). Messages are validated when read: garbage written into the
/// queue by another process yields [`Error::Corrupt`], never undefined
/// behaviour.
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
/// assert!(matches!(q.put_nowait(&3), Err(ipc_core::Error::Full)));
/// assert_eq!(q.get()?, 1);
/// assert_eq!(q.qsize(), 1);
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
    name: Option<String>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T: Message> QueueBuilder<T> {
    /// Capacity in messages (default 1024).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }
    /// Largest encoded message in bytes (default 64 KiB).
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
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
        if self.capacity == 0 || self.max_message_size == 0 {
            return Err(Error::InvalidArgument(
                "queue capacity and message size must be positive",
            ));
        }
        let slot = self
            .max_message_size
            .checked_add(15)
            .ok_or(Error::InvalidArgument("message size too large"))?
            & !15;
        let size = Mpmc::bytes_needed(self.capacity as u64, slot)
            .ok_or(Error::InvalidArgument("queue too large"))?;
        let mut ring = None;
        let (region, _) = Region::builder(Kind::Queue)
            .maybe_name(self.name)
            .size(size)
            .type_tag(type_tag::<T>(0, 0))
            .create_with(|r| {
                // SAFETY: the payload is `size` zeroed bytes, 128-aligned,
                // private until published, mapped as long as `region`.
                ring = Some(unsafe { Mpmc::init(r.payload(), self.capacity as u64, slot) }?);
                Ok(())
            })?;
        let ring = ring.ok_or(Error::InvalidArgument("queue not initialised"))?;
        Ok(Queue::from_parts(ring, region))
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

    /// A builder with defaults (capacity 1024, messages up to 64 KiB).
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            capacity: 1024,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
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
        // SAFETY: the region is published (open waited for READY), its
        // payload is 128-aligned and `payload_len` bytes long, and `region`
        // keeps it mapped for as long as the ring is used.
        let ring = unsafe { Mpmc::attach(region.payload(), region.payload_len()) }?;
        Ok(Queue::from_parts(ring, region))
    }

    fn from_parts(ring: Mpmc, region: Region) -> Queue<T> {
        Queue {
            inner: Arc::new(Inner { ring, region }),
            _t: PhantomData,
        }
    }

    fn ring(&self) -> &Mpmc {
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
        self.put_deadline(item, None)
    }

    /// Puts a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::MessageTooLarge`], [`Error::Closed`].
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_deadline(item, Some(Instant::now() + timeout))
    }

    /// Puts a message if there is room now.
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::MessageTooLarge`], [`Error::Closed`].
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        codec::encode_with(item, |bytes| {
            self.check_put(bytes)?;
            match self.ring().try_push(bytes, self.ring().register()?) {
                Push::Done => {
                    self.hdr().not_empty.0.notify(1);
                    Ok(())
                }
                Push::Full => Err(Error::Full),
                Push::Broken => Err(broken()),
            }
        })?
    }

    fn check_put(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() > self.ring().slot_size() {
            return Err(Error::MessageTooLarge {
                size: bytes.len(),
                max: self.ring().slot_size(),
            });
        }
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn put_deadline(&self, item: &T, deadline: Option<Instant>) -> Result<()> {
        codec::encode_with(item, |bytes| self.put_bytes(bytes, deadline))?
    }

    pub(crate) fn put_bytes(&self, bytes: &[u8], deadline: Option<Instant>) -> Result<()> {
        self.check_put(bytes)?;
        let me = self.ring().register()?;
        let r = self.hdr().not_full.0.wait_until(
            || match self.ring().try_push(bytes, me) {
                Push::Done => Some(Ok(())),
                Push::Broken => Some(Err(broken())),
                Push::Full if self.is_closed() => Some(Err(Error::Closed)),
                Push::Full => None,
            },
            deadline,
            Some(RECOVER_EVERY),
            || self.recover(),
        );
        match r {
            Ok(Ok(())) => {
                self.hdr().not_empty.0.notify(1);
                Ok(())
            }
            Ok(Err(e)) | Err(Stop::Check(e)) => Err(e),
            Err(Stop::Timeout) => Err(Error::Timeout),
        }
    }

    /// Takes a message, waiting as long as needed.
    ///
    /// # Errors
    /// [`Error::Closed`] once the queue is closed and drained;
    /// [`Error::Corrupt`] if the message bytes are invalid (the bad message
    /// is consumed; the queue keeps working).
    pub fn get(&self) -> Result<T> {
        self.get_deadline(None)
    }

    /// Takes a message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Closed`], [`Error::Corrupt`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_deadline(Some(Instant::now() + timeout))
    }

    /// Takes a message if one is ready.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Closed`], [`Error::Corrupt`].
    pub fn get_nowait(&self) -> Result<T> {
        match self.try_get_raw() {
            Some(r) => r?.decode(),
            None if self.is_closed() => Err(Error::Closed),
            None => Err(Error::Empty),
        }
    }

    fn try_get_raw(&self) -> Option<Result<Scratch>> {
        let me = match self.ring().register() {
            Ok(me) => me,
            Err(e) => return Some(Err(e)),
        };
        let copy = |p, n| {
            // SAFETY: the ring hands us a pointer to `n` readable bytes of a
            // slot we own until this closure returns.
            unsafe { Scratch::copy_from(p, n) }
        };
        let r = match self.ring().try_pop(me, copy) {
            Pop::Item(s) => Some(Ok(s)),
            Pop::Corrupt(len) => Some(Err(Error::Corrupt(format!(
                "queue slot claims {len} bytes, more than the slot holds"
            )))),
            Pop::Broken => return Some(Err(broken())),
            Pop::Empty => None,
        };
        if r.is_some() {
            self.hdr().not_full.0.notify(1);
        }
        r
    }

    fn get_deadline(&self, deadline: Option<Instant>) -> Result<T> {
        self.get_raw_deadline(deadline)?.decode()
    }

    pub(crate) fn get_raw_deadline(&self, deadline: Option<Instant>) -> Result<Scratch> {
        let r = self.hdr().not_empty.0.wait_until(
            || match self.try_get_raw() {
                Some(r) => Some(r),
                None if self.is_closed() => Some(Err(Error::Closed)),
                None => None,
            },
            deadline,
            Some(RECOVER_EVERY),
            || self.recover(),
        );
        match r {
            Ok(r) => r,
            Err(Stop::Check(e)) => Err(e),
            Err(Stop::Timeout) => Err(Error::Timeout),
        }
    }

    /// Called by blocked callers: frees a slot left claimed by a process
    /// that died mid-`put` or mid-`get`, and wakes the others.
    fn recover(&self) -> Result<()> {
        let r = self.ring().recover();
        if r != Recovered::Nothing {
            self.hdr().not_empty.0.notify(u32::MAX);
            self.hdr().not_full.0.notify(u32::MAX);
        }
        if r == Recovered::Garbage {
            return Err(Error::Corrupt(
                "a queue slot was claimed by no known process (garbage); \
                 the slot was freed and its message, if any, is lost"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Approximate number of messages queued (Python's `qsize()`).
    pub fn qsize(&self) -> usize {
        self.ring().len() as usize
    }

    /// Whether the queue is (approximately) empty.
    pub fn empty(&self) -> bool {
        self.ring().len() == 0
    }

    /// Whether the queue is (approximately) full.
    pub fn full(&self) -> bool {
        self.ring().len() >= self.ring().capacity()
    }

    /// Capacity in messages.
    pub fn capacity(&self) -> usize {
        self.ring().capacity() as usize
    }

    /// Largest encoded message accepted, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.ring().slot_size()
    }

    /// Closes the queue for every process: further `put`s fail with
    /// [`Error::Closed`]; `get`s drain what is queued, then fail with
    /// [`Error::Closed`] instead of blocking. Blocked callers wake up.
    pub fn close(&self) {
        // Release: pairs with the Acquire in `is_closed`.
        self.hdr().closed.store(1, Ordering::Release);
        self.hdr().not_empty.0.notify(u32::MAX);
        self.hdr().not_full.0.notify(u32::MAX);
    }

    /// Whether [`close`](Queue::close) was called by any process.
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close`.
        self.hdr().closed.load(Ordering::Acquire) != 0
    }

    /// The queue's name, if it was created or opened by name.
    pub fn name(&self) -> Option<&str> {
        self.inner.region.name()
    }
}

/// A [`Queue`] whose consumers report completion, so producers can
/// [`join`](JoinableQueue::join) until every item is processed (Python's
/// `multiprocessing.JoinableQueue`).
///
/// # Examples
///
/// ```
/// use ipc_core::queue::JoinableQueue;
/// let q = JoinableQueue::<u32>::new(4)?;
/// q.put(&7)?;
/// assert_eq!(q.get()?, 7);
/// q.task_done()?;
/// q.join(); // returns at once: nothing unfinished
/// assert!(q.task_done().is_err());
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug)]
pub struct JoinableQueue<T> {
    q: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { q: self.q.clone() }
    }
}

impl<T: Message> JoinableQueue<T> {
    /// Creates an anonymous joinable queue.
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn new(capacity: usize) -> Result<Self> {
        Ok(JoinableQueue {
            q: Queue::new(capacity)?,
        })
    }

    /// Wraps a queue built with [`Queue::builder`].
    pub fn from_queue(q: Queue<T>) -> Self {
        JoinableQueue { q }
    }

    /// The underlying queue (for `get`, `qsize`, `close`, ...).
    pub fn queue(&self) -> &Queue<T> {
        &self.q
    }

    fn unfinished(&self) -> &crate::atomic::AtomicU32 {
        &self.q.hdr().unfinished
    }

    /// Puts a message and counts it as an unfinished task.
    ///
    /// # Errors
    /// As [`Queue::put`].
    pub fn put(&self, item: &T) -> Result<()> {
        // Count before publishing so `join` never sees the item queued but
        // not counted. Relaxed: the queue's own Release/Acquire orders it.
        self.unfinished().fetch_add(1, Ordering::Relaxed);
        self.q.put(item).inspect_err(|_| self.task_done_raw())
    }

    /// Takes a message, waiting as long as needed.
    ///
    /// # Errors
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.q.get()
    }

    /// Takes a message, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.q.get_timeout(timeout)
    }

    fn task_done_raw(&self) {
        // AcqRel: the last task_done publishes the consumers' work to join's
        // Acquire load.
        if self.unfinished().fetch_sub(1, Ordering::AcqRel) == 1 {
            futex::wake_all(self.unfinished());
        }
    }

    /// Marks one fetched item as processed.
    ///
    /// # Errors
    /// [`Error::ReleasedTooManyTimes`] if called more times than items were put.
    pub fn task_done(&self) -> Result<()> {
        let u = self.unfinished();
        // Relaxed: a starting guess; the AcqRel CAS decides.
        let mut v = u.load(Ordering::Relaxed);
        loop {
            if v == 0 {
                return Err(Error::ReleasedTooManyTimes);
            }
            // AcqRel: as in task_done_raw.
            match u.compare_exchange_weak(v, v - 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if v == 1 {
            futex::wake_all(u);
        }
        Ok(())
    }

    /// Blocks until every item put has been marked done.
    pub fn join(&self) {
        self.join_deadline(None);
    }

    /// As [`join`](Self::join) for at most `timeout`; returns whether all
    /// work was done.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_deadline(Some(Instant::now() + timeout))
    }

    fn join_deadline(&self, deadline: Option<Instant>) -> bool {
        loop {
            // Acquire: pairs with the AcqRel decrement to zero.
            let v = self.unfinished().load(Ordering::Acquire);
            if v == 0 {
                return true;
            }
            if futex::wait(self.unfinished(), v, deadline) == futex::WaitResult::TimedOut {
                return self.unfinished().load(Ordering::Acquire) == 0;
            }
        }
    }
}

/// A simplified queue with just `put`, `get`, `empty` and `close` (Python's
/// `multiprocessing.SimpleQueue`). Capacity 1024 messages of up to 64 KiB.
///
/// # Examples
///
/// ```
/// let q = ipc_core::queue::SimpleQueue::<i32>::new()?;
/// q.put(&-1)?;
/// assert_eq!(q.get()?, -1);
/// assert!(q.empty());
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug)]
pub struct SimpleQueue<T> {
    q: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue { q: self.q.clone() }
    }
}

impl<T: Message> SimpleQueue<T> {
    /// Creates an anonymous simple queue.
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue {
            q: Queue::builder().build()?,
        })
    }
    /// Puts a message.
    ///
    /// # Errors
    /// As [`Queue::put`].
    pub fn put(&self, item: &T) -> Result<()> {
        self.q.put(item)
    }
    /// Takes a message.
    ///
    /// # Errors
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.q.get()
    }
    /// Whether it is empty.
    pub fn empty(&self) -> bool {
        self.q.empty()
    }
    /// Closes it (see [`Queue::close`]).
    pub fn close(&self) {
        self.q.close()
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
        // SAFETY: as in `Queue::open`: published, aligned, kept mapped by `region`.
        let ring = unsafe { Mpmc::attach(region.payload(), region.payload_len()) }?;
        Ok(Queue::from_parts(ring, region))
    }
}
crate::travel::travel_via_token!([T: Message] Queue<T>);

impl<T: Message> crate::travel::Travel for JoinableQueue<T> {
    fn token(&self) -> crate::travel::Token {
        self.q.token()
    }
    fn from_token(t: crate::travel::Token) -> Result<Self> {
        Ok(JoinableQueue {
            q: Queue::from_token(t)?,
        })
    }
}
crate::travel::travel_via_token!([T: Message] JoinableQueue<T>);

impl<T: Message> crate::travel::Travel for SimpleQueue<T> {
    fn token(&self) -> crate::travel::Token {
        self.q.token()
    }
    fn from_token(t: crate::travel::Token) -> Result<Self> {
        Ok(SimpleQueue {
            q: Queue::from_token(t)?,
        })
    }
}
crate::travel::travel_via_token!([T: Message] SimpleQueue<T>);
