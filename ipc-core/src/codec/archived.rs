//! A received message read in place: validated once in private memory,
//! then accessed as its archived form without deserializing it.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use rkyv::rancor;

use super::{Message, Scratch};
use crate::{Error, Result};

/// A message taken from a queue and read in place: its archived form
/// (`T::Archived`, e.g. [`ArchivedVec`](rkyv::vec::ArchivedVec) for a
/// `Vec`, `ArchivedString` for a `String`), with no deserialization and no
/// allocation per field. Derefs to `T::Archived`;
/// [`deserialize`](Self::deserialize) gives an owned `T` when one is needed.
///
/// The bytes were copied out of shared memory before they were validated
/// and live in a buffer only this value owns, so no other process can
/// change them after the check (a check made on shared memory itself could
/// be undone by a scribbling process before the read: that is why there is
/// no zero-copy archived receive).
///
/// # Examples
///
/// ```
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
/// struct Batch { id: u64, rows: Vec<String> }
///
/// let q = ipc_core::queue::Queue::<Batch>::new(4)?;
/// q.put(&Batch { id: 7, rows: vec!["a".into(), "b".into()] })?;
/// let b = q.get_archived()?;
/// assert_eq!(b.id, 7); // an `ArchivedBatch`, read in place
/// assert_eq!(b.rows[1], "b");
/// assert_eq!(b.deserialize()?.rows.len(), 2);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub struct ArchivedMessage<T: Message> {
    /// Validated as a `T::Archived` when this value was made; never
    /// written since (only this value has it).
    bytes: Option<Scratch>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Message> ArchivedMessage<T> {
    /// Validates `s` as an archived `T`.
    pub(crate) fn check(s: Scratch) -> Result<Self> {
        if let Err(e) = rkyv::access::<T::Archived, rancor::Error>(s.bytes()) {
            let e = Error::Corrupt(format!("invalid message: {e}"));
            s.recycle();
            return Err(e);
        }
        Ok(ArchivedMessage {
            bytes: Some(s),
            _t: PhantomData,
        })
    }

    /// Deserializes the message into an owned `T`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if deserialization fails (it does not for
    /// ordinary types: the bytes were already validated).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<Vec<u32>>::new(2)?;
    /// q.put(&vec![1, 2, 3])?;
    /// let v: Vec<u32> = q.get_archived()?.deserialize()?;
    /// assert_eq!(v, [1, 2, 3]);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn deserialize(&self) -> Result<T> {
        rkyv::deserialize::<T, rancor::Error>(&**self)
            .map_err(|e| Error::Corrupt(format!("invalid message: {e}")))
    }

    /// The message's archived bytes (what travelled through the queue).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = ipc_core::queue::Queue::<u64>::new(2)?;
    /// q.put(&5)?;
    /// assert_eq!(q.get_archived()?.as_bytes().len(), 8);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_ref().map_or(&[], Scratch::bytes)
    }
}

impl<T: Message> Deref for ArchivedMessage<T> {
    type Target = T::Archived;

    fn deref(&self) -> &T::Archived {
        // SAFETY: `check` validated these bytes as a `T::Archived` (16-byte
        // aligned, see `Scratch`), and they have not changed since: the
        // buffer is private to this value, which only reads it, and it is
        // taken out only in `drop`.
        unsafe { rkyv::access_unchecked::<T::Archived>(self.as_bytes()) }
    }
}

impl<T: Message> Drop for ArchivedMessage<T> {
    fn drop(&mut self) {
        if let Some(s) = self.bytes.take() {
            s.recycle();
        }
    }
}

impl<T: Message> fmt::Debug for ArchivedMessage<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchivedMessage")
            .field("len", &self.as_bytes().len())
            .finish()
    }
}
