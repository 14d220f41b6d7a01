//! `SimpleQueue`: a `Queue` with just `put`, `get`, `is_empty` and `close`.

use super::Queue;
use crate::codec::Message;
use crate::Result;

/// A simplified queue with just `put`, `get`, `is_empty` and `close` (Python's
/// `multiprocessing.SimpleQueue`). Capacity 1024 messages of up to 1 GiB
/// (inline up to 64 KiB, in payload blocks above).
///
/// # Examples
///
/// ```
/// let q = ipc_core::queue::SimpleQueue::<i32>::new()?;
/// q.put(&-1)?;
/// assert_eq!(q.get()?, -1);
/// assert!(q.is_empty());
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
    /// Whether it is empty (Python's `empty()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::SimpleQueue::<u8>::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
    /// Closes it (see [`Queue::close`]).
    pub fn close(&self) {
        self.q.close()
    }

    /// The underlying queue (for `process::wait`).
    pub(crate) fn as_queue(&self) -> &Queue<T> {
        &self.q
    }
}

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
