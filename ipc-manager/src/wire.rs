//! The request and response messages between proxies and the server.
//!
//! Both are `rkyv`-encoded. The server validates every request it reads
//! (a client is untrusted); a client validates every response. Keys and
//! values of containers travel as the `rkyv` bytes of the user's type: the
//! server stores and compares those bytes and never decodes them, so it is
//! type-agnostic, and a reader validates them when it decodes them.

use ipc_core::codec::{self, Message};
use ipc_core::Error as CoreError;

use crate::{Error, Result};

/// Encodes a user value ([`codec::to_vec`], with the manager's error).
pub(crate) fn enc<T: Message>(v: &T) -> Result<Vec<u8>> {
    Ok(codec::to_vec(v)?)
}

/// Decodes a user value ([`codec::from_slice`], with the manager's error).
pub(crate) fn dec<T: Message>(bytes: &[u8]) -> Result<T> {
    Ok(codec::from_slice(bytes)?)
}

/// Encoded bytes of one user value.
pub(crate) type Bytes = Vec<u8>;

/// A value to store in a container: its encoded bytes and the ids of the
/// unnamed containers of this manager whose proxies it contains. The
/// server counts the stored value as a holder of each of them until the
/// value is overwritten or removed or its container is freed, so a
/// container referenced from another one stays alive (as in Python).
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Val {
    pub bytes: Bytes,
    pub refs: Vec<u64>,
}

/// Which kind of server-hosted container an id refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Container {
    Dict,
    List,
    Namespace,
    Service,
}

/// What a registered name refers to.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Entry {
    /// A shared-memory object: its `ipc_core::region::Kind` code, the name
    /// of its region and the proxy type that created it.
    Shared { kind: u32, region: String, tag: u64 },
    /// A container in the server, with the proxy type that created it.
    Container { what: Container, id: u64, tag: u64 },
}

/// One request.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum Request {
    /// Is the server there? Answered with `Unit`.
    Ping,
    /// Take over the shared-memory object the client just created and
    /// register it (under `name` if given).
    Adopt {
        kind: u32,
        region: String,
        tag: u64,
        name: Option<String>,
    },
    /// Create a container (a custom type needs `service`).
    Create {
        what: Container,
        tag: u64,
        name: Option<String>,
        service: Option<String>,
    },
    /// Look a registered name up.
    Lookup { name: String },
    /// Every registered name.
    Names,
    /// An operation on a dict.
    Dict { id: u64, op: DictOp },
    /// An operation on a list.
    List { id: u64, op: ListOp },
    /// A call of a custom type's method.
    Call { id: u64, arg: Bytes },
    /// This process holds one more proxy of unnamed container `id`.
    Incref { id: u64 },
    /// This process dropped a proxy of unnamed container `id`; the last
    /// holder's drop frees it.
    Decref { id: u64 },
    /// Stop the server.
    Shutdown,
}

/// Dict (and namespace) operations; keys and values are encoded bytes,
/// values to store carry their references ([`Val`]).
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum DictOp {
    Get(Bytes),
    Insert(Bytes, Val),
    Remove(Bytes),
    Contains(Bytes),
    Len,
    Keys,
    Values,
    Items,
    Update(Vec<(Bytes, Val)>),
    Clear,
    SetDefault(Bytes, Val),
    /// Sets `key` to `new` if its current value is `expected` (`None`:
    /// absent). Answered with `Bool`.
    CompareAndSet {
        key: Bytes,
        expected: Option<Bytes>,
        new: Val,
    },
}

/// List operations; values are encoded bytes, values to store carry their
/// references ([`Val`]).
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum ListOp {
    Push(Val),
    Extend(Vec<Val>),
    Get(i64),
    Set(i64, Val),
    Pop(Option<i64>),
    Insert(i64, Val),
    Remove(Bytes),
    Len,
    Index(Bytes),
    Count(Bytes),
    Clear,
    Snapshot,
}

/// An error the server reports, mapped back onto [`Error`] by the client.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum Fault {
    NotFound(String),
    AlreadyExists(String),
    Incompatible(String, String),
    IndexOutOfRange(i64, u64),
    Corrupt(String),
    Refused(String),
    TooLarge(u64, u64),
}

/// One response.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum Response {
    Unit,
    Id(u64),
    Bool(bool),
    Len(u64),
    Found(Entry),
    Value(Option<Bytes>),
    Values(Vec<Bytes>),
    Items(Vec<(Bytes, Bytes)>),
    Names(Vec<String>),
    Fault(Fault),
}

impl From<Fault> for Error {
    fn from(f: Fault) -> Error {
        let core = match f {
            Fault::NotFound(name) => CoreError::NotFound { name },
            Fault::AlreadyExists(name) => CoreError::AlreadyExists { name },
            Fault::Incompatible(expected, found) => CoreError::Incompatible {
                what: "manager object",
                expected,
                found,
            },
            Fault::IndexOutOfRange(index, len) => CoreError::IndexOutOfRange {
                index: usize::try_from(index).unwrap_or(usize::MAX),
                len: usize::try_from(len).unwrap_or(usize::MAX),
            },
            Fault::Corrupt(s) => CoreError::Corrupt(s),
            Fault::Refused(s) => return Error::Refused(s),
            Fault::TooLarge(size, max) => CoreError::MessageTooLarge {
                size: size as usize,
                max: max as usize,
            },
        };
        core.into()
    }
}

/// A response of an unexpected shape (a confused or hostile server).
pub(crate) fn unexpected(r: Response) -> Error {
    match r {
        Response::Fault(f) => f.into(),
        other => Error::corrupt(format!("unexpected manager response {other:?}")),
    }
}
