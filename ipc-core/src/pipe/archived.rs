//! Receiving a message to read in place ([`ArchivedMessage`]) instead of
//! deserializing it.

use std::time::{Duration, Instant};

use super::Connection;
use crate::codec::{ArchivedMessage, Copied, Message};
use crate::Result;

impl Connection {
    /// Receives a message as [`recv`](Self::recv) does, but validates it
    /// and hands it over in its archived form, read in place: no
    /// deserialization, no allocation per field (see [`ArchivedMessage`]).
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = ipc_core::pipe::Pipe::new(true)?;
    /// a.send(&(7u32, "seven".to_string()))?;
    /// let m = b.recv_archived::<(u32, String)>()?;
    /// assert_eq!((m.0.to_native(), m.1.as_str()), (7, "seven"));
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn recv_archived<T: Message>(&self) -> Result<ArchivedMessage<T>> {
        let mut c = Copied::new();
        self.recv_into(None, &mut c)?;
        c.into_scratch().into_archived()
    }

    /// As [`recv_archived`](Self::recv_archived), waiting at most `timeout`
    /// for a message to begin (one that has begun is received whole).
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = ipc_core::pipe::Pipe::new(true)?;
    /// let r = a.recv_archived_timeout::<u64>(Duration::from_millis(10));
    /// assert!(matches!(r, Err(ipc_core::Error::Timeout)));
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn recv_archived_timeout<T: Message>(
        &self,
        timeout: Duration,
    ) -> Result<ArchivedMessage<T>> {
        let mut c = Copied::new();
        self.recv_into(Some(Instant::now() + timeout), &mut c)?;
        c.into_scratch().into_archived()
    }
}
