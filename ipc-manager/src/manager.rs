//! `Manager`: starting, connecting to and stopping a server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Error, Result};
use ipc_core::codec;
use ipc_core::process::{Process, StartMethod};
use ipc_core::sys::proc;
use ipc_core::Error as CoreError;

use crate::control::{self, Control, DEFAULT_BUF, DEFAULT_SLOTS};
use crate::lifecycle::{close_inherited_channels, sweep, sweep_dead_managers, wait_started};
use crate::server::Server;
use crate::service::Service;
use crate::session::{Session, CONNECT_TIMEOUT};
use crate::store::{Factory, Instance, Store};
use crate::wire::{unexpected, Request, Response};

/// How long `start` waits for the server to come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest manager name (object regions append `.<pid>.<n>`).
const MAX_NAME: usize = 160;

static OBJECTS: AtomicU64 = AtomicU64::new(0);

/// A handle to a manager server (Python's `multiprocessing.Manager()`).
///
/// The server is a process that hosts shared objects. Containers (`dict`,
/// `list`, `Namespace`, custom types) live in the server and are reached
/// through proxies, one lockstep round trip over a shared-memory mailbox
/// per call. Sync objects, `Value`, `Array` and queues live in shared
/// memory owned by the server: what the factories return *is* the
/// `ipc_core` object, used directly with no round trip.
///
/// A started server stops when the last handle of the process that started
/// it drops, when that process dies, or on [`shutdown`](Manager::shutdown);
/// it then removes every region it owns. Handles are cheap to clone and
/// can be inherited by forked children, passed to spawned processes and
/// pool tasks, or re-created in an unrelated program with
/// [`Manager::connect`].
///
/// # Examples
///
/// ```
/// use ipc_manager::Manager;
/// let mgr = Manager::start()?;
/// let d = mgr.dict::<String, u64>()?;
/// d.insert(&"apples".to_string(), &3)?;
/// assert_eq!(d.get(&"apples".to_string())?, Some(3));
/// # Ok::<(), ipc_manager::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Manager {
    /// This process's session with the server (shared with its proxies).
    pub(crate) session: Arc<Session>,
}

/// Configures and starts a [`Manager`] server; registers custom types
/// (Python's `BaseManager.register`).
///
/// # Examples
///
/// ```
/// use ipc_manager::{Manager, Service};
///
/// #[derive(Default)]
/// struct Counter(u64);
/// impl Service for Counter {
///     type Request = u64;
///     type Response = u64;
///     fn call(&mut self, add: u64) -> u64 {
///         self.0 += add;
///         self.0
///     }
/// }
///
/// let mgr = Manager::builder().register("Counter", Counter::default).start()?;
/// let c = mgr.custom::<Counter>("Counter")?;
/// c.call(&2)?;
/// assert_eq!(c.call(&3)?, 5);
/// # Ok::<(), ipc_manager::Error>(())
/// ```
pub struct ManagerBuilder {
    name: Option<String>,
    slots: usize,
    buffer: usize,
    factories: HashMap<String, (u64, Factory)>,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("name", &self.name)
            .field("slots", &self.slots)
            .field("buffer", &self.buffer)
            .field("custom_types", &self.factories.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ManagerBuilder {
    /// Makes the server reachable by `name` ([`Manager::connect`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_manager::Manager;
    /// let name = format!("doc-builder-{}", std::process::id());
    /// let mgr = Manager::builder().name(&name).slots(8).buffer_size(16 * 1024).start()?;
    /// assert_eq!(mgr.name(), name);
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How many client processes may be connected at once (default 64).
    pub fn slots(mut self, n: usize) -> Self {
        self.slots = n;
        self
    }

    /// Bytes of each client's request and response buffer (default
    /// 64 KiB); larger messages travel in several chunks.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// Registers a custom type under `type_name`: the server makes an
    /// instance with `make` for every [`Manager::custom`] call, and proxies
    /// call it by message.
    pub fn register<S: Service>(
        mut self,
        type_name: &str,
        make: impl Fn() -> S + Send + 'static,
    ) -> Self {
        let factory: Factory = Box::new(move || -> Instance {
            let mut s = make();
            Box::new(move |arg| {
                let req: S::Request = codec::from_slice(arg).map_err(|e| e.to_string())?;
                // A panicking method fails this call, not the server (as
                // Python returns the exception to the caller).
                let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.call(req)))
                    .map_err(|p| {
                    let msg = ipc_core::process::panic_message(p.as_ref());
                    format!("the {} method panicked: {msg}", std::any::type_name::<S>())
                })?;
                codec::to_vec(&resp).map_err(|e| e.to_string())
            })
        });
        self.factories.insert(
            type_name.to_owned(),
            (crate::service::service_tag::<S>(), factory),
        );
        self
    }

    fn control(&self) -> Result<(String, Control)> {
        let name = match &self.name {
            Some(n) => n.clone(),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                format!("mgr-{}-{nanos:x}", proc::pid())
            }
        };
        if name.len() > MAX_NAME {
            return Err(CoreError::InvalidName {
                name,
                reason: "manager names are at most 160 bytes",
            }
            .into());
        }
        if name.contains('.') {
            // Its objects are named `<manager>.<pid>.<n>`: a '.' would let
            // one manager's names match another's.
            return Err(CoreError::InvalidName {
                name,
                reason: "manager names cannot contain '.'",
            }
            .into());
        }
        // A crashed earlier run may have left regions behind.
        sweep_dead_managers();
        let ctl = Control::create(&name, self.slots, self.buffer)?;
        Ok((name, ctl))
    }

    /// Starts the server in a new (forked) process owned by this one.
    ///
    /// # Errors
    /// [`ipc_core::Error::AlreadyExists`] if the name is taken, [`ipc_core::Error::InvalidName`],
    /// [`ipc_core::Error::InvalidArgument`] for absurd sizes, [`ipc_core::Error::Timeout`] if
    /// the server does not come up within 10 s, or the process error.
    pub fn start(self) -> Result<Manager> {
        let (name, mut ctl) = self.control()?;
        // The server adopts the region; until it has, nobody unlinks it
        // by dropping a handle (we unlink it ourselves on failure).
        ctl.region_mut().set_unlink_on_drop(false);
        // The server stops when its owner is found dead: an identity that
        // could not be read would look dead at once.
        let me = match control::current_process() {
            Ok(me) => me,
            Err(e) => {
                // No server yet: the region is ours alone to remove.
                ctl.region_mut().set_unlink_on_drop(true);
                drop(ctl);
                return Err(e.into());
            }
        };
        // Relaxed: published by the region's creation, before the fork.
        ctl.header().owner.store(me.pack(), Ordering::Relaxed);
        let store = Store::new(&name, self.factories);
        let mut p = Process::builder()
            .name(format!("ipc-manager {name}"))
            .start_method(StartMethod::Fork)
            .target(move || {
                close_inherited_channels(&ctl);
                let _ = Server::new(ctl, store).run();
            });
        let started = p.start().map_err(Error::from).and_then(|()| {
            let ctl = Control::open(&name, ipc_core::region::DEFAULT_OPEN_TIMEOUT)?;
            let deadline = Instant::now() + START_TIMEOUT;
            wait_started(&ctl, deadline, || p.is_alive()).map(|()| ctl)
        });
        let ctl = match started {
            Ok(ctl) => ctl,
            Err(e) => {
                let server_pid = p.pid();
                let _ = p.kill();
                let _ = p.join();
                sweep(&name, server_pid, None);
                return Err(e);
            }
        };
        Ok(Manager {
            session: Session::started(name, ctl, p),
        })
    }

    /// Runs the server in the calling thread until a client asks it to
    /// [`shutdown`](Manager::shutdown): for a service or command-line
    /// program that others [`connect`](Manager::connect) to by name. It is
    /// owned by nobody, so it outlives every client.
    ///
    /// # Errors
    /// As [`start`](ManagerBuilder::start).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // A service binary: runs until a client calls `shutdown()`.
    /// ipc_manager::Manager::builder().name("jobs-service").serve()?;
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn serve(self) -> Result<()> {
        let (name, ctl) = self.control()?;
        let store = Store::new(&name, self.factories);
        // The server's regions (the control region and what it adopted)
        // are unlinked as they drop, when `run` returns.
        Server::new(ctl, store).run()
    }
}

impl Manager {
    /// Starts a server with default settings (Python's `Manager()`).
    ///
    /// # Errors
    /// As [`ManagerBuilder::start`].
    ///
    /// # Examples
    ///
    /// ```
    /// let mgr = ipc_manager::Manager::start()?;
    /// assert!(mgr.is_running());
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn start() -> Result<Manager> {
        Manager::builder().start()
    }

    /// Starts a server reachable by `name`.
    ///
    /// # Errors
    /// As [`ManagerBuilder::start`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_manager::Manager;
    /// let name = format!("doc-start-named-{}", std::process::id());
    /// let mgr = Manager::start_named(&name)?;
    /// let other = Manager::connect(&name)?; // as another program would
    /// assert_eq!(other.name(), mgr.name());
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn start_named(name: &str) -> Result<Manager> {
        Manager::builder().name(name).start()
    }

    /// A builder: name, sizes, custom types.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            name: None,
            slots: DEFAULT_SLOTS,
            buffer: DEFAULT_BUF,
            factories: HashMap::new(),
        }
    }

    /// Connects to the running server `name` (from any process of the same
    /// user, including one started later from another program), waiting
    /// at most 10 s for it to answer; see
    /// [`connect_timeout`](Manager::connect_timeout).
    ///
    /// # Errors
    /// [`ipc_core::Error::NotFound`] if there is no such manager,
    /// [`Error::ServerGone`] if its server stopped or died,
    /// [`ipc_core::Error::Incompatible`]/[`ipc_core::Error::Corrupt`] if the region is not a
    /// valid manager (including one naming a process that is not its
    /// server), [`ipc_core::Error::Timeout`] if nothing answered in time.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = ipc_manager::Manager::connect("no-such-manager").unwrap_err();
    /// assert!(matches!(err, ipc_manager::Error::Core(ipc_core::Error::NotFound { .. })));
    /// ```
    pub fn connect(name: &str) -> Result<Manager> {
        Manager::connect_timeout(name, CONNECT_TIMEOUT)
    }

    /// As [`connect`](Manager::connect), waiting at most `timeout` for a
    /// server still starting to come up and answer. A control region that
    /// names a live process which never answers (a forged or stale one)
    /// fails with [`ipc_core::Error::Timeout`] rather than hanging.
    ///
    /// # Errors
    /// As [`connect`](Manager::connect).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use ipc_manager::Manager;
    /// let name = format!("doc-connect-timeout-{}", std::process::id());
    /// let mgr = Manager::start_named(&name)?;
    /// let other = Manager::connect_timeout(&name, Duration::from_secs(5))?;
    /// assert!(other.is_running());
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn connect_timeout(name: &str, timeout: Duration) -> Result<Manager> {
        Session::connect(name, timeout).map(|session| Manager { session })
    }

    /// The manager's name ([`Manager::connect`] takes it).
    pub fn name(&self) -> &str {
        self.session.name()
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        !self.session.server_gone()
    }

    /// Stops the server (from any handle, in any process). Objects it hosts
    /// are gone; every later call through any proxy returns
    /// [`Error::ServerGone`]. If this process started the server, waits
    /// for it to exit.
    ///
    /// # Errors
    /// [`Error::ServerGone`] if it was already gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let mgr = ipc_manager::Manager::start()?;
    /// let l = mgr.list::<u32>()?;
    /// mgr.shutdown()?;
    /// assert!(matches!(l.len(), Err(ipc_manager::Error::ServerGone)));
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn shutdown(&self) -> Result<()> {
        let r = self.session.call(&Request::Shutdown).map(|_| ());
        self.session.join_server();
        r
    }

    /// Names registered on the server, sorted.
    ///
    /// # Errors
    /// [`Error::ServerGone`].
    ///
    /// # Examples
    ///
    /// ```
    /// let mgr = ipc_manager::Manager::start()?;
    /// mgr.named("jobs").queue::<u32>(8)?;
    /// mgr.named("done").event()?;
    /// assert_eq!(mgr.names()?, ["done", "jobs"]);
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn names(&self) -> Result<Vec<String>> {
        match self.session.call(&Request::Names)? {
            Response::Names(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    /// The pid of the server process, if this process started it.
    ///
    /// # Examples
    ///
    /// ```
    /// let mgr = ipc_manager::Manager::start()?;
    /// assert!(mgr.server_pid().is_some_and(|p| p != std::process::id()));
    /// # Ok::<(), ipc_manager::Error>(())
    /// ```
    pub fn server_pid(&self) -> Option<u32> {
        self.session.server_pid()
    }

    /// A fresh region name for an object this manager will adopt.
    pub(crate) fn object_region(&self) -> String {
        // Relaxed: only uniqueness matters.
        let n = OBJECTS.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}.{n}", self.session.name(), proc::pid())
    }
}
