//! Custom types hosted by the server (Python's `BaseManager.register`).

use std::marker::PhantomData;

use ipc_core::codec::Message;
use ipc_core::Result;

use crate::manager::{dec, enc};
use crate::proxy::Handle;
use crate::wire::{unexpected, Request, Response};

/// A user type the server hosts: register it with
/// [`ManagerBuilder::register`](crate::ManagerBuilder::register), create
/// instances with [`Manager::custom`], and call them through a
/// [`ServiceProxy`]. Each instance lives in the server and handles one
/// request at a time, so its state needs no locking.
///
/// # Examples
///
/// ```
/// use ipc_manager::{Manager, Service};
///
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
/// enum Op { Push(String), Pop }
///
/// #[derive(Default)]
/// struct Stack(Vec<String>);
/// impl Service for Stack {
///     type Request = Op;
///     type Response = Option<String>;
///     fn call(&mut self, op: Op) -> Option<String> {
///         match op {
///             Op::Push(s) => { self.0.push(s); None }
///             Op::Pop => self.0.pop(),
///         }
///     }
/// }
///
/// let mgr = Manager::builder().register("Stack", Stack::default).start()?;
/// let s = mgr.custom::<Stack>("Stack")?;
/// s.call(&Op::Push("x".into()))?;
/// assert_eq!(s.call(&Op::Pop)?, Some("x".into()));
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub trait Service: Send + 'static {
    /// What a proxy sends.
    type Request: Message;
    /// What the server answers.
    type Response: Message;
    /// Handles one request, in the server.
    fn call(&mut self, request: Self::Request) -> Self::Response;
}

/// A proxy of a custom [`Service`] instance hosted by the server.
///
/// # Examples
///
/// See [`Service`].
#[derive(Debug)]
pub struct ServiceProxy<S> {
    pub(crate) h: Handle,
    _t: PhantomData<fn(S) -> S>,
}

impl<S> Clone for ServiceProxy<S> {
    fn clone(&self) -> Self {
        ServiceProxy {
            h: self.h.clone(),
            _t: PhantomData,
        }
    }
}

impl<S: Service> ServiceProxy<S> {
    pub(crate) fn from_handle(h: Handle) -> Self {
        ServiceProxy { h, _t: PhantomData }
    }

    /// Sends `request` to the instance and returns its response.
    ///
    /// # Errors
    /// [`ipc_core::Error::ServerGone`], [`ipc_core::Error::Corrupt`] for an
    /// invalid response.
    pub fn call(&self, request: &S::Request) -> Result<S::Response> {
        let req = Request::Call {
            id: self.h.id,
            arg: enc(request)?,
        };
        match self.h.call(&req)? {
            Response::Value(Some(b)) => dec(&b),
            r => Err(unexpected(r)),
        }
    }
}

crate::proxy::proxy_travel!([S: Service] ServiceProxy<S>);
