//! `Namespace`: named attributes of any type, hosted by the server.

use crate::Result;
use ipc_core::codec::Message;
use ipc_core::region::type_tag;

use super::Handle;
use crate::session::Session;
use crate::wire::{dec, enc};
use crate::wire::{unexpected, Bytes, DictOp, Request, Response, Val};

/// A proxy of a namespace in the manager server (Python's
/// `manager.Namespace()`): attributes by name, each of its own type. The
/// type is checked on read: reading an attribute as another type than it
/// was set with gives [`ipc_core::Error::Incompatible`].
///
/// # Examples
///
/// ```
/// use ipc_manager::Manager;
/// let mgr = Manager::start()?;
/// let ns = mgr.namespace()?;
/// ns.set("x", &10u64)?;
/// ns.set("label", &"ten".to_string())?;
/// assert_eq!(ns.get::<u64>("x")?, Some(10));
/// assert!(ns.get::<String>("x").is_err()); // wrong type
/// assert_eq!(ns.update_with("x", |v: Option<u64>| v.unwrap_or(0) + 1)?, 11);
/// # Ok::<(), ipc_manager::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Namespace {
    pub(crate) h: Handle,
}

/// A value to store: its type tag, then its bytes (with the containers
/// whose proxies it holds, see [`Val`]).
fn tagged<T: Message>(session: &Session, v: &T) -> Result<Val> {
    let inner = super::enc_val(session, v)?;
    let mut bytes = type_tag::<T>(0, 0).to_le_bytes().to_vec();
    bytes.extend_from_slice(&inner.bytes);
    Ok(Val {
        bytes,
        refs: inner.refs,
    })
}

fn untag<T: Message>(attr: &str, b: &[u8]) -> Result<T> {
    let want = type_tag::<T>(0, 0).to_le_bytes();
    if b.len() < 8 || b[..8] != want {
        return Err(ipc_core::Error::Incompatible {
            what: "namespace attribute",
            expected: format!("{attr} as {}", std::any::type_name::<T>()),
            found: "a value of another type".into(),
        }
        .into());
    }
    dec(&b[8..])
}

impl Namespace {
    pub(crate) fn from_handle(h: Handle) -> Self {
        Namespace { h }
    }

    fn op(&self, op: DictOp) -> Result<Response> {
        self.h.call(&Request::Dict { id: self.h.id, op })
    }

    fn raw(&self, attr: &str) -> Result<Option<Bytes>> {
        match self.op(DictOp::Get(enc(&attr.to_owned())?))? {
            Response::Value(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    /// The attribute `attr` as a `T` (Python's `ns.attr`).
    ///
    /// # Errors
    /// [`ipc_core::Error::Incompatible`] if it holds another type,
    /// [`Error::ServerGone`](crate::Error::ServerGone).
    pub fn get<T: Message>(&self, attr: &str) -> Result<Option<T>> {
        self.raw(attr)?.map(|b| untag(attr, &b)).transpose()
    }

    /// Sets the attribute `attr` (Python's `ns.attr = v`).
    ///
    /// # Errors
    /// [`Error::ServerGone`](crate::Error::ServerGone).
    pub fn set<T: Message>(&self, attr: &str, value: &T) -> Result<()> {
        let value = tagged(&self.h.session, value)?;
        match self.op(DictOp::Insert(enc(&attr.to_owned())?, value))? {
            Response::Value(_) => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Deletes the attribute; returns whether it existed (Python's `del ns.attr`).
    ///
    /// # Errors
    /// [`Error::ServerGone`](crate::Error::ServerGone).
    pub fn remove(&self, attr: &str) -> Result<bool> {
        match self.op(DictOp::Remove(enc(&attr.to_owned())?))? {
            Response::Value(v) => Ok(v.is_some()),
            r => Err(unexpected(r)),
        }
    }

    /// Names of the attributes, in the order they were first set.
    ///
    /// # Errors
    /// [`Error::ServerGone`](crate::Error::ServerGone).
    pub fn names(&self) -> Result<Vec<String>> {
        match self.op(DictOp::Keys)? {
            Response::Values(v) => v.iter().map(|b| dec(b)).collect(),
            r => Err(unexpected(r)),
        }
    }

    /// Atomically replaces the attribute with `f(current)` (see
    /// [`DictProxy::update_with`](crate::DictProxy::update_with)).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn update_with<T: Message>(&self, attr: &str, f: impl FnMut(Option<T>) -> T) -> Result<T> {
        let decode = |b: &[u8]| untag(attr, b);
        let encode = |v: &T| tagged(&self.h.session, v);
        super::cas_update(&self.h, enc(&attr.to_owned())?, decode, encode, f)
    }
}

super::proxy_travel!([] Namespace);
