//! Typed proxies of the containers the server hosts.
//!
//! A proxy is a cheap handle (a manager handle and an object id): clone
//! it, inherit it across fork, or pass it to a spawned process or a pool
//! task (it travels as the manager's name and the id; the receiver
//! connects to the manager by name).

mod dict;
mod list;
mod namespace;

pub use crate::service::ServiceProxy;
pub use dict::DictProxy;
pub use list::ListProxy;
pub use namespace::Namespace;

use ipc_core::region::Kind;
use ipc_core::travel::Token;
use ipc_core::{Error, Result};

use crate::manager::Manager;
use crate::objects::sealed::Lookup;
use crate::wire::{unexpected, Bytes, DictOp, Request, Response};

/// The handle part every proxy shares.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    pub mgr: Manager,
    pub id: u64,
}

impl Handle {
    pub fn call(&self, req: &Request) -> Result<Response> {
        self.mgr.inner.call(req)
    }

    /// The travelling form: manager name, object id and proxy type.
    pub fn token<P: Lookup>(&self) -> Token {
        Token {
            locator: format!("manager:{}", self.mgr.name()),
            kind: Kind::Manager as u32,
            offset: self.id,
            extra: vec![format!("{:x}", P::tag())],
        }
    }

    /// Re-creates the handle from a token, checking the proxy type.
    pub fn from_token<P: Lookup>(t: &Token) -> Result<Handle> {
        let name = t
            .locator
            .strip_prefix("manager:")
            .filter(|_| t.kind == Kind::Manager as u32)
            .ok_or_else(|| Error::Incompatible {
                what: "token",
                expected: "a manager proxy".into(),
                found: t.locator.clone(),
            })?;
        let tag = format!("{:x}", P::tag());
        if t.extra.first() != Some(&tag) {
            return Err(Error::Incompatible {
                what: "proxy type",
                expected: std::any::type_name::<P>().into(),
                found: "a proxy of another type".into(),
            });
        }
        Ok(Handle {
            mgr: Manager::from_name(name)?,
            id: t.offset,
        })
    }
}

/// The compare-and-set loop behind `update_with` of dicts and namespaces:
/// read the encoded value of `key` in container `h.id`, compute the new
/// one, store it only if nobody changed it meanwhile, else start over.
pub(crate) fn cas_update<T>(
    h: &Handle,
    key: Bytes,
    decode: impl Fn(&[u8]) -> Result<T>,
    encode: impl Fn(&T) -> Result<Bytes>,
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
                Ok(Self::from_handle($crate::proxy::Handle::from_token::<Self>(&t)?))
            }
        }
        ipc_core::travel_via_token!([$($g)*] $ty);
    };
}
pub(crate) use proxy_travel;
