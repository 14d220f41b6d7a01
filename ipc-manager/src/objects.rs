//! The factories (`mgr.lock()`, `mgr.dict()`, ...) and the typed lookup
//! (`mgr.get::<T>(name)`).

use std::sync::Arc;

use crate::{Error, Result};
use ipc_core::codec::Message;
use ipc_core::queue::{JoinableQueue, Queue};
use ipc_core::region::{type_tag, Kind};
use ipc_core::sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
use ipc_core::value::{Array, RawArray, Value};

use crate::lookup::{sealed, Hosted};
use crate::manager::Manager;
use crate::proxy::{DictProxy, Handle, ListProxy, Namespace, ServiceProxy};
use crate::service::Service;
use crate::session::Session;
use crate::wire::{unexpected, Container, Entry, Request, Response};

/// Queue capacity used for `queue(0)` (Python's "unbounded").
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

fn mismatch(expected: &str, e: &Entry) -> Error {
    let found = match e {
        Entry::Shared { kind, .. } => match Kind::from_u32(*kind) {
            Some(k) => format!("{k:?} of another type"),
            None => format!("kind {kind}"),
        },
        Entry::Container { what, .. } => format!("{what:?} of another type"),
    };
    ipc_core::Error::Incompatible {
        what: "manager object",
        expected: expected.to_owned(),
        found,
    }
    .into()
}

macro_rules! shared_lookup {
    ($([$($g:tt)*] $ty:ty => $open:expr;)*) => {$(
        impl<$($g)*> sealed::Lookup for $ty {
            fn tag() -> u64 {
                type_tag::<$ty>(0, 0)
            }
            fn from_entry(_session: &Arc<Session>, e: Entry) -> Result<Self> {
                match e {
                    Entry::Shared { region, tag, .. } if tag == Self::tag() => {
                        let open: fn(&str) -> ipc_core::Result<$ty> = $open;
                        Ok(open(&region)?)
                    }
                    other => Err(mismatch(std::any::type_name::<$ty>(), &other)),
                }
            }
        }
    )*};
}

shared_lookup! {
    [] Lock => Lock::open;
    [] RLock => RLock::open;
    [] Semaphore => Semaphore::open;
    [] BoundedSemaphore => BoundedSemaphore::open;
    [] Event => Event::open;
    [] Condition => Condition::open;
    [] Barrier => Barrier::open;
    [T: bytemuck::Pod] Value<T> => Value::open;
    [T: bytemuck::Pod] Array<T> => Array::open;
    [T: bytemuck::Pod] RawArray<T> => RawArray::open;
    [T: Message] Queue<T> => Queue::open;
    [T: Message] JoinableQueue<T> => |r| Queue::open(r).map(JoinableQueue::from_queue);
}

macro_rules! container_lookup {
    ($([$($g:tt)*] $ty:ty, $what:ident, $make:expr;)*) => {$(
        impl<$($g)*> sealed::Lookup for $ty {
            fn tag() -> u64 {
                type_tag::<$ty>(0, 0)
            }
            fn from_entry(session: &Arc<Session>, e: Entry) -> Result<Self> {
                match e {
                    Entry::Container { what: Container::$what, id, tag } if tag == Self::tag() => {
                        let make: fn(Handle) -> $ty = $make;
                        Ok(make(Handle::named(session.clone(), id)))
                    }
                    other => Err(mismatch(std::any::type_name::<$ty>(), &other)),
                }
            }
        }
    )*};
}

container_lookup! {
    [K: Message, V: Message] DictProxy<K, V>, Dict, DictProxy::from_handle;
    [T: Message] ListProxy<T>, List, ListProxy::from_handle;
    [] Namespace, Namespace, Namespace::from_handle;
}

impl<S: Service> sealed::Lookup for ServiceProxy<S> {
    fn tag() -> u64 {
        crate::service::service_tag::<S>()
    }
    fn from_entry(session: &Arc<Session>, e: Entry) -> Result<Self> {
        match e {
            Entry::Container {
                what: Container::Service,
                id,
                tag,
            } if tag == Self::tag() => {
                let h = Handle::named(session.clone(), id);
                Ok(ServiceProxy::from_handle(h))
            }
            other => Err(mismatch(std::any::type_name::<Self>(), &other)),
        }
    }
}

/// A named queue of `maxsize` messages (0: [`DEFAULT_QUEUE_CAPACITY`]).
fn new_queue<T: Message>(region: &str, maxsize: usize) -> ipc_core::Result<Queue<T>> {
    let cap = if maxsize == 0 {
        DEFAULT_QUEUE_CAPACITY
    } else {
        maxsize
    };
    Queue::builder().capacity(cap).name(region).build()
}

/// Factories that register the new object under a name; see
/// [`Manager::named`].
///
/// # Examples
///
/// ```
/// use ipc_manager::Manager;
/// let mgr = Manager::start()?;
/// let hits = mgr.named("hits").value::<u64>(0)?;
/// hits.set(5)?;
/// // Elsewhere (any process connected to this manager):
/// let same = mgr.get::<ipc_core::value::Value<u64>>("hits")?;
/// assert_eq!(same.get()?, 5);
/// # Ok::<(), ipc_manager::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    mgr: &'a Manager,
    name: Option<&'a str>,
}

impl Named<'_> {
    fn name(&self) -> Option<String> {
        self.name.map(str::to_owned)
    }

    /// Creates a shared-memory object under a fresh region name and has
    /// the server adopt it. If the server refuses, the object is dropped
    /// (and its region removed) here.
    fn shared<T: sealed::Lookup>(
        &self,
        kind: Kind,
        make: impl FnOnce(&str) -> ipc_core::Result<T>,
    ) -> Result<T> {
        let region = self.mgr.object_region();
        let obj = make(&region)?;
        let req = Request::Adopt {
            kind: kind as u32,
            region,
            tag: T::tag(),
            name: self.name(),
        };
        match self.mgr.session.call(&req)? {
            Response::Unit => Ok(obj),
            r => Err(unexpected(r)),
        }
    }

    fn container<T: sealed::Lookup>(
        &self,
        what: Container,
        service: Option<String>,
        make: fn(Handle) -> T,
    ) -> Result<T> {
        let req = Request::Create {
            what,
            tag: T::tag(),
            name: self.name(),
            service,
        };
        match self.mgr.session.call(&req)? {
            // A named container lives until the server stops; an unnamed
            // one until its last proxy anywhere is gone (the server counted
            // this process as its first holder).
            Response::Id(id) if self.name.is_some() => {
                Ok(make(Handle::named(self.mgr.session.clone(), id)))
            }
            Response::Id(id) => Ok(make(Handle::owned(self.mgr.session.clone(), id))),
            r => Err(unexpected(r)),
        }
    }

    /// A dict in the server (Python's `manager.dict()`).
    ///
    /// # Errors
    /// [`ipc_core::Error::AlreadyExists`] if the name is taken, [`Error::ServerGone`].
    pub fn dict<K: Message, V: Message>(&self) -> Result<DictProxy<K, V>> {
        self.container(Container::Dict, None, DictProxy::from_handle)
    }

    /// A list in the server (Python's `manager.list()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn list<T: Message>(&self) -> Result<ListProxy<T>> {
        self.container(Container::List, None, ListProxy::from_handle)
    }

    /// A namespace in the server (Python's `manager.Namespace()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn namespace(&self) -> Result<Namespace> {
        self.container(Container::Namespace, None, Namespace::from_handle)
    }

    /// An instance of the custom type registered as `type_name`.
    ///
    /// # Errors
    /// [`Error::Refused`] if no such type is registered,
    /// [`ipc_core::Error::Incompatible`] if it is registered with another Rust type,
    /// and as [`dict`](Self::dict).
    pub fn custom<S: Service>(&self, type_name: &str) -> Result<ServiceProxy<S>> {
        self.container(
            Container::Service,
            Some(type_name.to_owned()),
            ServiceProxy::from_handle,
        )
    }

    /// A queue of at most `maxsize` messages (0: [`DEFAULT_QUEUE_CAPACITY`]).
    ///
    /// # Errors
    /// As [`dict`](Self::dict), and the queue's creation errors.
    pub fn queue<T: Message>(&self, maxsize: usize) -> Result<Queue<T>> {
        self.shared(Kind::Queue, |r| new_queue(r, maxsize))
    }

    /// A joinable queue of at most `maxsize` messages.
    ///
    /// # Errors
    /// As [`queue`](Self::queue).
    pub fn joinable_queue<T: Message>(&self, maxsize: usize) -> Result<JoinableQueue<T>> {
        self.shared(Kind::Queue, |r| {
            new_queue(r, maxsize).map(JoinableQueue::from_queue)
        })
    }

    /// A shared value with its lock.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn value<T: bytemuck::Pod>(&self, init: T) -> Result<Value<T>> {
        self.shared(Kind::Value, |r| Value::create(r, init))
    }

    /// A shared array with its lock.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn array<T: bytemuck::Pod>(&self, init: &[T]) -> Result<Array<T>> {
        self.shared(Kind::Array, |r| Array::create(r, init))
    }

    /// A raw block of `size` zeroed shared bytes (Python's
    /// `SharedMemoryManager.SharedMemory`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn shared_memory(&self, size: usize) -> Result<RawArray<u8>> {
        self.shared(Kind::Array, |r| RawArray::create(r, &vec![0u8; size]))
    }

    /// A lock (recovered with `OwnerDied` if its holder dies).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn lock(&self) -> Result<Lock> {
        self.shared(Kind::Lock, Lock::create)
    }

    /// A re-entrant lock.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn rlock(&self) -> Result<RLock> {
        self.shared(Kind::RLock, RLock::create)
    }

    /// A semaphore starting at `value`.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn semaphore(&self, value: u32) -> Result<Semaphore> {
        self.shared(Kind::Semaphore, |r| Semaphore::create(r, value))
    }

    /// A bounded semaphore starting (and capped) at `value`.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphore> {
        self.shared(Kind::Semaphore, |r| BoundedSemaphore::create(r, value))
    }

    /// An event.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn event(&self) -> Result<Event> {
        self.shared(Kind::Event, Event::create)
    }

    /// A condition variable.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn condition(&self) -> Result<Condition> {
        self.shared(Kind::Condition, Condition::create)
    }

    /// A barrier for `parties` participants.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn barrier(&self, parties: u32) -> Result<Barrier> {
        self.shared(Kind::Barrier, |r| Barrier::create(r, parties))
    }
}

impl Manager {
    /// Factories that also register the object as `name`, so any process
    /// connected to this manager can [`get`](Manager::get) it.
    pub fn named<'a>(&'a self, name: &'a str) -> Named<'a> {
        Named {
            mgr: self,
            name: Some(name),
        }
    }

    fn unnamed(&self) -> Named<'_> {
        Named {
            mgr: self,
            name: None,
        }
    }

    /// Looks up the object registered as `name`, checking its type.
    ///
    /// # Errors
    /// [`ipc_core::Error::NotFound`], [`ipc_core::Error::Incompatible`] if something of
    /// another type lives there, [`Error::ServerGone`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_manager::{DictProxy, ListProxy, Manager};
    /// let mgr = Manager::start()?;
    /// mgr.named("scores").dict::<String, u64>()?;
    /// assert!(mgr.get::<DictProxy<String, u64>>("scores").is_ok());
    /// let wrong = mgr.get::<ListProxy<u64>>("scores").unwrap_err();
    /// assert!(matches!(
    ///     wrong,
    ///     ipc_manager::Error::Core(ipc_core::Error::Incompatible { .. })
    /// ));
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn get<T: Hosted>(&self, name: &str) -> Result<T> {
        match self.session.call(&Request::Lookup {
            name: name.to_owned(),
        })? {
            Response::Found(e) => T::from_entry(&self.session, e).map_err(|err| match err {
                Error::Core(ipc_core::Error::Incompatible {
                    what,
                    expected,
                    found,
                }) => ipc_core::Error::Incompatible {
                    what,
                    expected: format!("{expected} for {name:?}"),
                    found,
                }
                .into(),
                other => other,
            }),
            r => Err(unexpected(r)),
        }
    }
}

/// Forwards the unnamed factories to [`Named`].
macro_rules! forward {
    ($($(#[$m:meta])* fn $f:ident $(<$($g:ident: $b:path),*>)? ($($a:ident: $t:ty),*) -> $r:ty;)*) => {
        impl Manager {$(
            $(#[$m])*
            ///
            /// # Errors
            /// [`Error::ServerGone`], and the object's creation errors.
            pub fn $f $(<$($g: $b),*>)? (&self, $($a: $t),*) -> Result<$r> {
                self.unnamed().$f($($a),*)
            }
        )*}
    };
}

forward! {
    /// A dict in the server (Python's `manager.dict()`); see [`DictProxy`].
    fn dict<K: Message, V: Message>() -> DictProxy<K, V>;
    /// A list in the server (Python's `manager.list()`); see [`ListProxy`].
    fn list<T: Message>() -> ListProxy<T>;
    /// A namespace (Python's `manager.Namespace()`); see [`Namespace`].
    fn namespace() -> Namespace;
    /// An instance of a registered custom type; see [`Service`].
    fn custom<S: Service>(type_name: &str) -> ServiceProxy<S>;
    /// A queue (Python's `manager.Queue(maxsize)`; 0 means
    /// [`DEFAULT_QUEUE_CAPACITY`]), used directly in shared memory.
    fn queue<T: Message>(maxsize: usize) -> Queue<T>;
    /// A joinable queue (Python's `manager.JoinableQueue()`).
    fn joinable_queue<T: Message>(maxsize: usize) -> JoinableQueue<T>;
    /// A shared value (Python's `manager.Value`).
    fn value<T: bytemuck::Pod>(init: T) -> Value<T>;
    /// A shared array (Python's `manager.Array`).
    fn array<T: bytemuck::Pod>(init: &[T]) -> Array<T>;
    /// A raw shared block (Python's `SharedMemoryManager.SharedMemory`).
    fn shared_memory(size: usize) -> RawArray<u8>;
    /// A lock (Python's `manager.Lock()`).
    fn lock() -> Lock;
    /// A re-entrant lock (Python's `manager.RLock()`).
    fn rlock() -> RLock;
    /// A semaphore (Python's `manager.Semaphore(n)`).
    fn semaphore(value: u32) -> Semaphore;
    /// A bounded semaphore (Python's `manager.BoundedSemaphore(n)`).
    fn bounded_semaphore(value: u32) -> BoundedSemaphore;
    /// An event (Python's `manager.Event()`).
    fn event() -> Event;
    /// A condition (Python's `manager.Condition()`).
    fn condition() -> Condition;
    /// A barrier (Python's `manager.Barrier(n)`).
    fn barrier(parties: u32) -> Barrier;
}
