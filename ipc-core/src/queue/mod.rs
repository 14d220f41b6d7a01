//! `Queue`, `JoinableQueue` and `SimpleQueue`: many producers and many
//! consumers in any processes, over a lock-free MPMC ring in shared memory.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::atomic::{fence, Ordering};
use crate::codec::{self, Message, Scratch};
use crate::region::{type_tag, Kind, Region, DEFAULT_OPEN_TIMEOUT};
use crate::ring::mpmc::{Mpmc, MpmcHeader, Pop, Push, Recovered};
use crate::ring::wait::{Stop, WaitPoint};
use crate::sys::futex;
use crate::{Error, Result};

/// How often a blocked `put`/`get` checks for a slot left claimed by a
/// dead process.
const RECOVER_EVERY: Duration = Duration::from_millis(100);

#[cfg(feature = "tokio")]
mod aio;
mod joinable;
mod simple;

pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;

/// Default largest encoded message: 64 KiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Values of the ring header's `closed` word. Only ever raised
/// (`fetch_max`), so a shutdown is never undone by a later `close`.
/// Any other non-zero value (garbage) reads as `CLOSED`.
/// ```text
/// OPEN           puts and gets work
/// CLOSED         close(): puts fail (Closed); gets drain, then fail (Closed)
/// SHUT_DOWN      shutdown(false): puts fail (ShutDown); gets drain, then fail (ShutDown)
/// SHUT_DOWN_NOW  shutdown(true): puts fail; gets fail at once; the queue
///                is emptied (by `shutdown`, and by any put that raced it)
/// ```
const OPEN: u32 = 0;
const CLOSED: u32 = 1;
const SHUT_DOWN: u32 = 2;
const SHUT_DOWN_NOW: u32 = 3;

/// The error of a call that found the queue ended in `state`.
fn ended(state: u32) -> Error {
    match state {
        SHUT_DOWN | SHUT_DOWN_NOW => Error::ShutDown,
        _ => Error::Closed,
    }
}

#[derive(Debug)]
struct Inner {
    ring: Mpmc,
    // Keeps the mapping alive; declared after `ring` which points into it.
    region: Region,
}

fn broken() -> Error {
    Error::Corrupt("queue indices overwritten with garbage".into())
}

/// One task fewer in a `JoinableQueue`'s count, never below zero; wakes
/// `join` when it reaches zero.
fn task_done_saturating(unfinished: &crate::atomic::AtomicU32) {
    // Relaxed: a starting guess; the AcqRel CAS decides.
    let mut v = unfinished.load(Ordering::Relaxed);
    while v > 0 {
        // AcqRel: as in `JoinableQueue::task_done_raw`.
        match unfinished.compare_exchange_weak(v, v - 1, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                if v == 1 {
                    futex::wake_all(unfinished);
                }
                return;
            }
            Err(now) => v = now,
        }
    }
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
        codec::encode_with(item, |bytes| {
            self.check_put(bytes)?;
            match self.ring().try_push(bytes, self.ring().register()?) {
                Push::Done => {
                    self.pushed();
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
        match self.state() {
            OPEN => Ok(()),
            s => Err(ended(s)),
        }
    }

    /// After a successful push: wakes a consumer, and if an immediate
    /// shutdown raced this put, empties the queue (the shutdown's own
    /// drain may have run before our message was published).
    fn pushed(&self) {
        // SeqCst: Dekker pair with the fence in `shutdown` (our push, then
        // our read of the state; its store of the state, then its drain):
        // at least one of us sees the other, so the message is drained.
        fence(Ordering::SeqCst);
        if self.state() == SHUT_DOWN_NOW {
            self.drain();
        } else {
            self.hdr().not_empty.0.notify(1);
        }
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
                Push::Full => match self.state() {
                    OPEN => None,
                    s => Some(Err(ended(s))),
                },
            },
            deadline,
            Some(RECOVER_EVERY),
            || self.recover(),
        );
        match r {
            Ok(Ok(())) => {
                self.pushed();
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
        if self.state() == SHUT_DOWN_NOW {
            return Err(Error::ShutDown);
        }
        match self.try_get_raw() {
            Some(r) => r?.decode(),
            None => match self.state() {
                OPEN => Err(Error::Empty),
                s => Err(ended(s)),
            },
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
            || {
                if self.state() == SHUT_DOWN_NOW {
                    return Some(Err(Error::ShutDown));
                }
                match self.try_get_raw() {
                    Some(r) => Some(r),
                    None => match self.state() {
                        OPEN => None,
                        s => Some(Err(ended(s))),
                    },
                }
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
        self.ring().slot_size()
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

    /// Removes every published message, counting each as a finished task
    /// (for a `JoinableQueue`; a plain queue's count stays 0).
    fn drain(&self) {
        let mut removed = false;
        // Not registered (the table is full): nothing can be taken; the
        // messages stay, and gets still fail with `ShutDown`.
        let Ok(me) = self.ring().register() else {
            return;
        };
        while let Pop::Item(()) | Pop::Corrupt(_) = self.ring().try_pop(me, |_, _| ()) {
            removed = true;
            task_done_saturating(&self.hdr().unfinished);
        }
        if removed {
            self.hdr().not_full.0.notify(u32::MAX);
        }
    }

    fn wake_everyone(&self) {
        self.hdr().not_empty.0.notify(u32::MAX);
        self.hdr().not_full.0.notify(u32::MAX);
    }

    /// The `closed` word (see [`OPEN`] and friends).
    fn state(&self) -> u32 {
        // Acquire: pairs with the SeqCst (Release) stores of `close` and
        // `shutdown`.
        match self.hdr().closed.load(Ordering::Acquire) {
            s @ (OPEN | CLOSED | SHUT_DOWN | SHUT_DOWN_NOW) => s,
            _ => CLOSED,
        }
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
        // SAFETY: as in `Queue::open`: published, aligned, kept mapped by `region`.
        let ring = unsafe { Mpmc::attach(region.payload(), region.payload_len()) }?;
        Ok(Queue::from_parts(ring, region))
    }
}
crate::travel::travel_via_token!([T: Message] Queue<T>);
