//! Typed proxies of the containers the server hosts.
//!
//! A proxy is a cheap handle (this process's session with the server and
//! an object id): clone
//! it, inherit it across fork, or pass it to a spawned process or a pool
//! task (it travels as the manager's name and the id; the receiver
//! connects to the manager by name).

mod dict;
mod list;
mod namespace;

mod service;
pub use dict::DictProxy;
pub use list::ListProxy;
pub use namespace::Namespace;
pub use service::ServiceProxy;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::Result;
use ipc_core::region::Kind;
use ipc_core::sys::proc;
use ipc_core::travel::Token;

use crate::lookup::sealed::Lookup;
use crate::session::{Session, CONNECT_TIMEOUT};
use crate::wire::enc;
use crate::wire::{unexpected, Bytes, DictOp, Request, Response, Val};

thread_local! {
    /// While [`enc_val`] encodes a value: the counted proxies met on the
    /// way, as (manager name, container id).
    static CONTAINED: RefCell<Option<Vec<(String, u64)>>> = const { RefCell::new(None) };
}

/// Encodes a value to store in a container of the manager of `session`,
/// with the ids of the unnamed containers of that manager whose proxies
/// it contains (the server then
/// keeps them alive while the value is stored). Proxies of another manager
/// are not counted: that manager cannot see this one's containers.
pub(crate) fn enc_val<T: ipc_core::codec::Message>(session: &Session, v: &T) -> Result<Val> {
    let outer = CONTAINED.with(|c| c.replace(Some(Vec::new())));
    let bytes = enc(v);
    let met = CONTAINED.with(|c| c.replace(outer)).unwrap_or_default();
    let refs = met
        .into_iter()
        .filter(|(name, _)| name == session.name())
        .map(|(_, id)| id)
        .collect();
    Ok(Val {
        bytes: bytes?,
        refs,
    })
}

/// The handle part every proxy shares.
///
/// An unnamed container lives while some process holds a proxy of it, or
/// a value stored in another container of the same manager does (as in
/// Python): the server counts holders per process, and counts a stored
/// value as a holder until it is overwritten or removed or its container
/// is freed (a container stored in itself, or a cycle, lives until the
/// server stops). A handle counts for
/// the process it was made in; a clone counts once more; a handle decoded
/// from a token (a spawned child's or a pool task's argument) counts for
/// the receiving process; a copy inherited across `fork` counts for the
/// child from its first use. Dropping a handle gives its count back; the
/// server also drops the counts of processes that died.
#[derive(Debug)]
pub(crate) struct Handle {
    /// This process's session with the server (a clone of the `Manager`'s).
    pub session: Arc<Session>,
    pub id: u64,
    /// Whether the server counts holders of this object (unnamed ones).
    counted: bool,
    /// The process this handle's count belongs to (0: none).
    held_by: AtomicU32,
}

impl Handle {
    /// A handle of a named object: never counted, never freed.
    pub fn named(session: Arc<Session>, id: u64) -> Handle {
        Handle {
            session,
            id,
            counted: false,
            held_by: AtomicU32::new(0),
        }
    }

    /// The handle of an unnamed object this process just created (the
    /// server counted it already).
    pub fn owned(session: Arc<Session>, id: u64) -> Handle {
        Handle {
            session,
            id,
            counted: true,
            held_by: AtomicU32::new(proc::pid()),
        }
    }

    /// Registers this process as a holder if the handle does not count for
    /// it yet (first use after a fork, or a decoded token).
    fn hold(&self) -> Result<()> {
        let me = proc::pid();
        // Relaxed: a per-handle marker; a race only sends a second Incref,
        // whose extra count the server drops when this process dies.
        if !self.counted || self.held_by.load(Ordering::Relaxed) == me {
            return Ok(());
        }
        unit(self.session.call(&Request::Incref { id: self.id })?)?;
        self.held_by.store(me, Ordering::Relaxed);
        Ok(())
    }

    pub fn call(&self, req: &Request) -> Result<Response> {
        self.hold()?;
        self.session.call(req)
    }

    /// The travelling form: manager name, object id, proxy type, counted.
    pub fn token<P: Lookup>(&self) -> Token {
        if self.counted {
            CONTAINED.with(|c| {
                if let Some(met) = c.borrow_mut().as_mut() {
                    met.push((self.session.name().to_owned(), self.id));
                }
            });
        }
        Token {
            locator: format!("manager:{}", self.session.name()),
            kind: Kind::Manager as u32,
            offset: self.id,
            extra: vec![
                format!("{:x}", P::tag()),
                if self.counted { "counted" } else { "named" }.into(),
            ],
        }
    }

    /// Re-creates the handle from a token, checking the proxy type; a
    /// counted one is registered for this process at once.
    pub fn from_token<P: Lookup>(t: &Token) -> Result<Handle> {
        let name = t
            .locator
            .strip_prefix("manager:")
            .filter(|_| t.kind == Kind::Manager as u32)
            .ok_or_else(|| ipc_core::Error::Incompatible {
                what: "token",
                expected: "a manager proxy".into(),
                found: t.locator.clone(),
            })?;
        let tag = format!("{:x}", P::tag());
        if t.extra.first() != Some(&tag) {
            return Err(ipc_core::Error::Incompatible {
                what: "proxy type",
                expected: std::any::type_name::<P>().into(),
                found: "a proxy of another type".into(),
            }
            .into());
        }
        let session = Session::connect(name, CONNECT_TIMEOUT)?;
        if t.extra.get(1).map(String::as_str) == Some("counted") {
            let h = Handle {
                session,
                id: t.offset,
                counted: true,
                held_by: AtomicU32::new(0),
            };
            h.hold()?;
            Ok(h)
        } else {
            Ok(Handle::named(session, t.offset))
        }
    }
}

impl Clone for Handle {
    fn clone(&self) -> Handle {
        let h = Handle {
            session: self.session.clone(),
            id: self.id,
            counted: self.counted,
            held_by: AtomicU32::new(0),
        };
        // Best effort: if the server is gone the clone is as dead as we are;
        // otherwise the first use registers it.
        let _ = h.hold();
        h
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Relaxed: see `hold`.
        if self.counted && self.held_by.load(Ordering::Relaxed) == proc::pid() {
            if self.session.known_gone() {
                return; // nothing to give back to
            }
            let _ = self.session.call(&Request::Decref { id: self.id });
        }
    }
}

/// The compare-and-set loop behind `update_with` of dicts and namespaces:
/// read the encoded value of `key` in container `h.id`, compute the new
/// one, store it only if nobody changed it meanwhile, else start over.
pub(crate) fn cas_update<T>(
    h: &Handle,
    key: Bytes,
    decode: impl Fn(&[u8]) -> Result<T>,
    encode: impl Fn(&T) -> Result<Val>,
    mut f: impl FnMut(Option<T>) -> T,
) -> Result<T> {
    let op = |op| h.call(&Request::Dict { id: h.id, op });
    loop {
        let cur = match op(DictOp::Get(key.clone()))? {
            Response::Value(v) => v,
            r => return Err(unexpected(r)),
        };
        let new = f(cur.as_deref().map(&decode).transpose()?);
        let cas = DictOp::CompareAndSet {
            key: key.clone(),
            expected: cur,
            new: encode(&new)?,
        };
        if boolean(op(cas)?)? {
            return Ok(new);
        }
    }
}

/// Expects `Unit`.
pub(crate) fn unit(r: Response) -> Result<()> {
    match r {
        Response::Unit => Ok(()),
        r => Err(unexpected(r)),
    }
}

/// Expects `Len`.
pub(crate) fn len(r: Response) -> Result<usize> {
    match r {
        Response::Len(n) => usize::try_from(n).map_err(|_| unexpected(Response::Len(n))),
        r => Err(unexpected(r)),
    }
}

/// Expects `Bool`.
pub(crate) fn boolean(r: Response) -> Result<bool> {
    match r {
        Response::Bool(b) => Ok(b),
        r => Err(unexpected(r)),
    }
}

/// Makes a proxy type travel through its handle's token.
macro_rules! proxy_travel {
    ([$($g:tt)*] $ty:ty) => {
        impl<$($g)*> ipc_core::travel::Travel for $ty {
            fn token(&self) -> ipc_core::travel::Token {
                self.h.token::<Self>()
            }
            fn from_token(t: ipc_core::travel::Token) -> ipc_core::Result<Self> {
                $crate::proxy::Handle::from_token::<Self>(&t)
                    .map(Self::from_handle)
                    .map_err($crate::Error::into_core)
            }
        }
        ipc_core::travel_via_token!([$($g)*] $ty);
    };
}
pub(crate) use proxy_travel;
