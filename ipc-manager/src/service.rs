//! Custom types hosted by the server (Python's `BaseManager.register`).

use ipc_core::codec::Message;

/// A user type the server hosts: register it with
/// [`ManagerBuilder::register`](crate::ManagerBuilder::register), create
/// instances with [`Manager::custom`](crate::Manager::custom), and call them through a
/// [`ServiceProxy`](crate::ServiceProxy). Each instance lives in the server and handles one
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
/// # Ok::<(), ipc_manager::Error>(())
/// ```
pub trait Service: Send + 'static {
    /// What a proxy sends.
    type Request: Message;
    /// What the server answers.
    type Response: Message;
    /// Handles one request, in the server.
    fn call(&mut self, request: Self::Request) -> Self::Response;
}

/// The type tag a registered service and its proxies share.
pub(crate) fn service_tag<S: Service>() -> u64 {
    ipc_core::region::type_tag::<S>(0, 1)
}
