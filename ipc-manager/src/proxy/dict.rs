//! `DictProxy`: a dict hosted by the server.

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;

use crate::Result;
use ipc_core::codec::Message;

use super::{boolean, enc_val, len, unit, Handle};
use crate::wire::{dec, enc};
use crate::wire::{unexpected, Bytes, DictOp, Request, Response, Val};

/// Invariant in `T`, `Send` and `Sync` whatever `T` is.
type Invariant<T> = fn(T) -> T;

/// A proxy of a dict in the manager server (Python's `manager.dict()`).
/// Keys and values are any `rkyv` messages; insertion order is kept.
///
/// Each call is one round trip. To change a value based on its current
/// one without losing concurrent updates (the `d[k] += 1` race of
/// Python), use [`update_with`](DictProxy::update_with).
///
/// # Examples
///
/// ```
/// use ipc_core::process::Process;
/// use ipc_manager::Manager;
///
/// let mgr = Manager::start()?;
/// let d = mgr.dict::<String, u64>()?;
/// let mut workers: Vec<_> = (0..4)
///     .map(|_| {
///         let d = d.clone();
///         Process::new(move || {
///             for _ in 0..100 {
///                 d.update_with(&"hits".to_string(), |v| v.unwrap_or(0) + 1).unwrap();
///             }
///         })
///     })
///     .collect();
/// for w in &mut workers { w.start()?; }
/// for w in &mut workers { w.join()?; }
/// assert_eq!(d.get(&"hits".to_string())?, Some(400));
/// # Ok::<(), ipc_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct DictProxy<K, V> {
    pub(crate) h: Handle,
    _t: PhantomData<Invariant<(K, V)>>,
}

impl<K, V> Clone for DictProxy<K, V> {
    fn clone(&self) -> Self {
        DictProxy {
            h: self.h.clone(),
            _t: PhantomData,
        }
    }
}

impl<K: Message, V: Message> DictProxy<K, V> {
    pub(crate) fn from_handle(h: Handle) -> Self {
        DictProxy { h, _t: PhantomData }
    }

    fn op(&self, op: DictOp) -> Result<Response> {
        self.h.call(&Request::Dict { id: self.h.id, op })
    }

    fn val(&self, v: &V) -> Result<Val> {
        enc_val(&self.h.session, v)
    }

    fn maybe(&self, op: DictOp) -> Result<Option<V>> {
        match self.op(op)? {
            Response::Value(v) => v.map(|b| dec(&b)).transpose(),
            r => Err(unexpected(r)),
        }
    }

    fn list(&self, op: DictOp) -> Result<Vec<Bytes>> {
        match self.op(op)? {
            Response::Values(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    /// The value of `key` (Python's `d.get(k)`).
    ///
    /// # Errors
    /// [`Error::ServerGone`](crate::Error::ServerGone), [`ipc_core::Error::Corrupt`] if the
    /// stored bytes are not a `V`.
    ///
    /// # Examples
    ///
    /// ```
    /// let d = ipc_manager::Manager::start()?.dict::<u8, String>()?;
    /// assert_eq!(d.insert(&1, &"one".into())?, None); // d[1] = "one"
    /// assert_eq!(d.get(&1)?.as_deref(), Some("one"));
    /// assert_eq!(d.get(&2)?, None);
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.maybe(DictOp::Get(enc(key)?))
    }

    /// Sets `key` to `value` (Python's `d[k] = v`); returns the old value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        self.maybe(DictOp::Insert(enc(key)?, self.val(value)?))
    }

    /// Removes `key`, returning its value (Python's `d.pop(k, None)`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    #[doc(alias = "pop")]
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.maybe(DictOp::Remove(enc(key)?))
    }

    /// Whether `key` is present (Python's `k in d`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        boolean(self.op(DictOp::Contains(enc(key)?))?)
    }

    /// Number of entries.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn len(&self) -> Result<usize> {
        len(self.op(DictOp::Len)?)
    }

    /// Whether it has no entries.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn keys(&self) -> Result<Vec<K>> {
        self.list(DictOp::Keys)?.iter().map(|b| dec(b)).collect()
    }

    /// The values, in insertion order.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn values(&self) -> Result<Vec<V>> {
        self.list(DictOp::Values)?.iter().map(|b| dec(b)).collect()
    }

    /// The entries, in insertion order.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.op(DictOp::Items)? {
            Response::Items(v) => v.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            r => Err(unexpected(r)),
        }
    }

    /// Inserts every entry of `items` in one round trip (Python's
    /// `d.update(...)`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn update<'a>(&self, items: impl IntoIterator<Item = (&'a K, &'a V)>) -> Result<()>
    where
        K: 'a,
        V: 'a,
    {
        let items = items
            .into_iter()
            .map(|(k, v)| Ok((enc(k)?, self.val(v)?)))
            .collect::<Result<Vec<_>>>()?;
        unit(self.op(DictOp::Update(items))?)
    }

    /// Removes every entry.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn clear(&self) -> Result<()> {
        unit(self.op(DictOp::Clear)?)
    }

    /// The value of `key`, inserting `default` first if absent (Python's
    /// `d.setdefault(k, v)`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        self.maybe(DictOp::SetDefault(enc(key)?, self.val(default)?))?
            .ok_or_else(|| unexpected(Response::Value(None)))
    }

    /// A local copy (Python's `d.copy()`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn copy(&self) -> Result<HashMap<K, V>>
    where
        K: Eq + Hash,
    {
        Ok(self.items()?.into_iter().collect())
    }

    /// Sets `key` to `new` only if its value is still `current` (`None`:
    /// absent); returns whether it did. Values are compared by their
    /// encoded bytes.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let d = ipc_manager::Manager::start()?.dict::<u8, u32>()?;
    /// assert!(d.compare_and_set(&1, None, &10)?); // absent -> 10
    /// assert!(!d.compare_and_set(&1, Some(&7), &11)?); // not 7: unchanged
    /// assert_eq!(d.get(&1)?, Some(10));
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn compare_and_set(&self, key: &K, current: Option<&V>, new: &V) -> Result<bool> {
        let op = DictOp::CompareAndSet {
            key: enc(key)?,
            expected: current.map(enc).transpose()?,
            new: self.val(new)?,
        };
        boolean(self.op(op)?)
    }

    /// Atomically replaces the value of `key` with `f(current)` and
    /// returns the new value: the read-modify-write that `d[k] += 1` is
    /// not. Built on [`compare_and_set`](Self::compare_and_set): `f` may
    /// run again if another process changed the value in between.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// let hits = ipc_manager::Manager::start()?.dict::<String, u64>()?;
    /// let page = "/index".to_string();
    /// hits.update_with(&page, |n| n.unwrap_or(0) + 1)?; // hits[page] += 1, atomically
    /// assert_eq!(hits.update_with(&page, |n| n.unwrap_or(0) + 1)?, 2);
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn update_with(&self, key: &K, f: impl FnMut(Option<V>) -> V) -> Result<V> {
        super::cas_update(&self.h, enc(key)?, dec, |v| self.val(v), f)
    }
}

super::proxy_travel!([K: Message, V: Message] DictProxy<K, V>);
