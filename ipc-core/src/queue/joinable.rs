//! `JoinableQueue`: a `Queue` whose consumers report completion.

use std::time::{Duration, Instant};

use super::Queue;
use crate::atomic::Ordering;
use crate::codec::Message;
use crate::sys::futex;
use crate::{Error, Result};

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

    /// The underlying queue (for `try_get`, `len`, `close`, ...).
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

    /// Shuts the queue down (see [`Queue::shutdown`]); with `immediate`,
    /// the removed messages count as done, so `join` does not wait for
    /// them.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::queue::JoinableQueue;
    /// let q = JoinableQueue::<u32>::new(4)?;
    /// q.put(&1)?;
    /// q.shutdown(true);
    /// q.join(); // the drained message counts as done
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        self.q.shutdown(immediate)
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
