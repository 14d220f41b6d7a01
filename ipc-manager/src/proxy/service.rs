//! The proxy of a custom [`Service`] instance.

use std::marker::PhantomData;

use crate::Result;

use super::Handle;
use crate::service::Service;
use crate::wire::{dec, enc};
use crate::wire::{unexpected, Request, Response};

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
    /// [`Error::ServerGone`](crate::Error::ServerGone), [`ipc_core::Error::Corrupt`] for an
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
