//! Receiving a message to read in place ([`ArchivedMessage`]) instead of
//! deserializing it.

use std::time::{Duration, Instant};

use super::Queue;
use crate::codec::{ArchivedMessage, Copied, Message};
use crate::Result;

impl<T: Message> Queue<T> {
    /// Takes a message as [`get`](Self::get) does, but validates it and
    /// hands it over in its archived form, read in place: no
    /// deserialization, no allocation per field (one copy out of shared
    /// memory, as every receive makes; see [`ArchivedMessage`]).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<Vec<String>>::new(4)?;
    /// q.put(&vec!["x".to_string(); 1000])?;
    /// let rows = q.get_archived()?; // an `ArchivedVec<ArchivedString>`
    /// assert_eq!(rows.len(), 1000);
    /// assert!(rows.iter().all(|r| r == "x"));
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn get_archived(&self) -> Result<ArchivedMessage<T>> {
        self.get_archived_deadline(None)
    }

    /// As [`get_archived`](Self::get_archived), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = ipc_core::queue::Queue::<u32>::new(1)?;
    /// let r = q.get_archived_timeout(Duration::from_millis(10));
    /// assert!(matches!(r, Err(ipc_core::Error::Timeout)));
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn get_archived_timeout(&self, timeout: Duration) -> Result<ArchivedMessage<T>> {
        self.get_archived_deadline(Some(Instant::now() + timeout))
    }

    /// As [`get_archived`](Self::get_archived) if a message is ready.
    ///
    /// # Errors
    /// As [`try_get`](Self::try_get).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<u32>::new(1)?;
    /// assert!(matches!(q.try_get_archived(), Err(ipc_core::Error::Empty)));
    /// q.put(&9)?;
    /// assert_eq!(*q.try_get_archived()?, 9);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn try_get_archived(&self) -> Result<ArchivedMessage<T>> {
        let mut c = Copied::new();
        self.try_get_raw(&mut c)?;
        c.into_scratch().into_archived()
    }

    fn get_archived_deadline(&self, deadline: Option<Instant>) -> Result<ArchivedMessage<T>> {
        let mut c = Copied::new();
        self.get_raw_deadline(deadline, &mut c)?;
        c.into_scratch().into_archived()
    }
}
