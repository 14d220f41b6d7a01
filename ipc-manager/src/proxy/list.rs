//! `ListProxy`: a list hosted by the server.

use std::marker::PhantomData;

use crate::Result;
use ipc_core::codec::Message;

use super::{boolean, enc_val, len, unit, Handle};
use crate::wire::{dec, enc};
use crate::wire::{unexpected, ListOp, Request, Response, Val};

/// A proxy of a list in the manager server (Python's `manager.list()`).
/// Indices follow Python: negative ones count from the end.
///
/// # Examples
///
/// ```
/// use ipc_manager::Manager;
/// let mgr = Manager::start()?;
/// let l = mgr.list::<String>()?;
/// l.push(&"a".into())?;
/// l.extend(&["b".into(), "c".into()])?;
/// assert_eq!(l.get(-1)?, "c");
/// assert_eq!(l.pop(None)?, "c");
/// assert_eq!(l.to_vec()?, vec!["a".to_string(), "b".to_string()]);
/// # Ok::<(), ipc_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct ListProxy<T> {
    pub(crate) h: Handle,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for ListProxy<T> {
    fn clone(&self) -> Self {
        ListProxy {
            h: self.h.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Message> ListProxy<T> {
    pub(crate) fn from_handle(h: Handle) -> Self {
        ListProxy { h, _t: PhantomData }
    }

    fn val(&self, v: &T) -> Result<Val> {
        enc_val(&self.h.session, v)
    }

    fn op(&self, op: ListOp) -> Result<Response> {
        self.h.call(&Request::List { id: self.h.id, op })
    }

    fn one(&self, op: ListOp) -> Result<T> {
        match self.op(op)? {
            Response::Value(Some(b)) => dec(&b),
            r => Err(unexpected(r)),
        }
    }

    /// Appends `value` (Python's `l.append(v)`).
    ///
    /// # Errors
    /// [`Error::ServerGone`](crate::Error::ServerGone).
    #[doc(alias = "append")]
    pub fn push(&self, value: &T) -> Result<()> {
        unit(self.op(ListOp::Push(self.val(value)?))?)
    }

    /// Appends every value, in one round trip.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn extend<'a>(&self, values: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        let v = values
            .into_iter()
            .map(|v| self.val(v))
            .collect::<Result<Vec<_>>>()?;
        unit(self.op(ListOp::Extend(v))?)
    }

    /// The value at `index`.
    ///
    /// # Errors
    /// [`ipc_core::Error::IndexOutOfRange`], and as [`push`](Self::push).
    pub fn get(&self, index: i64) -> Result<T> {
        self.one(ListOp::Get(index))
    }

    /// Replaces the value at `index` (Python's `l[i] = v`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        unit(self.op(ListOp::Set(index, self.val(value)?))?)
    }

    /// Removes and returns the value at `index` (the last one for `None`).
    ///
    /// # Errors
    /// As [`get`](Self::get) (also for an empty list).
    pub fn pop(&self, index: Option<i64>) -> Result<T> {
        self.one(ListOp::Pop(index))
    }

    /// Inserts `value` before `index` (clamped, as in Python).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn insert(&self, index: i64, value: &T) -> Result<()> {
        unit(self.op(ListOp::Insert(index, self.val(value)?))?)
    }

    /// Removes the first occurrence of `value`; returns whether there was one.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn remove(&self, value: &T) -> Result<bool> {
        boolean(self.op(ListOp::Remove(enc(value)?))?)
    }

    /// Number of values.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn len(&self) -> Result<usize> {
        len(self.op(ListOp::Len)?)
    }

    /// Whether it is empty.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Position of the first occurrence of `value`.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn index(&self, value: &T) -> Result<Option<usize>> {
        match self.op(ListOp::Index(enc(value)?))? {
            Response::Value(None) => Ok(None),
            r => len(r).map(Some),
        }
    }

    /// How many values equal `value`.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn count(&self, value: &T) -> Result<usize> {
        len(self.op(ListOp::Count(enc(value)?))?)
    }

    /// Removes every value.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn clear(&self) -> Result<()> {
        unit(self.op(ListOp::Clear)?)
    }

    /// A local copy (Python's `l[:]`).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        match self.op(ListOp::Snapshot)? {
            Response::Values(v) => v.iter().map(|b| dec(b)).collect(),
            r => Err(unexpected(r)),
        }
    }
}

super::proxy_travel!([T: Message] ListProxy<T>);
