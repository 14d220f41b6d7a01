//! `Session`: what a process needs to talk to one manager server (its
//! name, the control region, this process's connection), shared by the
//! [`Manager`](crate::Manager) handles and every proxy of that process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::{Error, Result};
use ipc_core::process::Process;
use ipc_core::sys::fork_local::ForkLocal;
use ipc_core::sys::proc;

use crate::client::Conn;
use crate::control::Control;
use crate::lifecycle::{self, sweep, wait_started};
use crate::wire::{Request, Response};

/// How long `connect` waits for the server to answer its first request.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long dropping the owner waits for the server to stop before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Sessions of this process, by manager name, so proxies arriving from
/// other processes share one connection.
static SESSIONS: ForkLocal<HashMap<String, Weak<Session>>> = ForkLocal::new();

/// One process's session with one server: the server's name (what a
/// proxy travels as, and what a receiver connects to), its control region
/// and this process's connection (a forked child makes its own).
///
/// The session of the process that started the server also owns it: the
/// server stops when the last `Manager` or proxy of that process drops.
///
/// `pub` only because the sealed `Lookup` trait names it; this module is
/// private, so no other crate can reach it.
#[derive(Debug)]
pub struct Session {
    name: String,
    ctl: Arc<Control>,
    conn: ForkLocal<Option<Arc<Conn>>>,
    owner: Option<Owner>,
    /// Set once a call reported `ServerGone`, so later proxy drops skip
    /// their round trip without reading `/proc`.
    gone: AtomicBool,
}

#[derive(Debug)]
struct Owner {
    pid: u32,
    process: Mutex<Option<Process<()>>>,
}

impl Session {
    /// The session of the process that just started the server `p`
    /// (answering on `ctl`): it stops the server when it drops, or at exit.
    pub(crate) fn started(name: String, ctl: Control, p: Process<()>) -> Arc<Session> {
        let s = Arc::new(Session {
            name: name.clone(),
            ctl: Arc::new(ctl),
            conn: ForkLocal::new(),
            gone: AtomicBool::new(false),
            owner: Some(Owner {
                pid: proc::pid(),
                process: Mutex::new(Some(p)),
            }),
        });
        SESSIONS.with(|m| m.insert(name, Arc::downgrade(&s)));
        let owned: Arc<dyn lifecycle::Stop> = s.clone();
        lifecycle::stop_at_exit(Arc::downgrade(&owned));
        s
    }

    /// This process's session with the running server `name` (the one it
    /// has already, if the server is still up), waiting at most `timeout`
    /// for a server still starting to come up and answer.
    pub(crate) fn connect(name: &str, timeout: Duration) -> Result<Arc<Session>> {
        let cached = SESSIONS.with(|m| m.get(name).and_then(Weak::upgrade));
        if let Some(s) = cached.filter(|s| !s.ctl.server_gone()) {
            return Ok(s);
        }
        let deadline = Instant::now() + timeout;
        let ctl = Control::open(name, timeout.min(ipc_core::region::DEFAULT_OPEN_TIMEOUT))?;
        wait_started(&ctl, deadline, || true)?;
        ctl.verify_server()?;
        let s = Arc::new(Session {
            name: name.to_owned(),
            ctl: Arc::new(ctl),
            conn: ForkLocal::new(),
            gone: AtomicBool::new(false),
            owner: None,
        });
        s.call_deadline(&Request::Ping, Some(deadline))?;
        SESSIONS.with(|m| {
            m.retain(|_, w| w.strong_count() > 0);
            m.insert(name.to_owned(), Arc::downgrade(&s));
        });
        Ok(s)
    }

    /// The manager's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether the server is gone (reads `/proc` if it did not say so).
    pub(crate) fn server_gone(&self) -> bool {
        self.ctl.server_gone()
    }

    /// The pid of the server process, if this process started it.
    pub(crate) fn server_pid(&self) -> Option<u32> {
        let o = self.owner.as_ref()?;
        let p = o.process.lock().unwrap_or_else(|e| e.into_inner());
        p.as_ref().and_then(|p| p.pid())
    }

    /// This process's connection (a forked child makes its own; a broken
    /// one is replaced).
    pub(crate) fn conn(&self) -> Result<Arc<Conn>> {
        self.conn.with(|c| match c {
            Some(c) if !c.is_broken() => Ok(c.clone()),
            _ => {
                // Give the broken slot back before claiming a new one (the
                // new one may be the same slot, with the same owner word).
                if let Some(old) = c.take() {
                    old.close();
                }
                let n = Arc::new(Conn::connect(self.ctl.clone())?);
                *c = Some(n.clone());
                Ok(n)
            }
        })
    }

    /// One request/response exchange with the server.
    pub(crate) fn call(&self, req: &Request) -> Result<Response> {
        self.call_deadline(req, None)
    }

    /// As `call`, giving up at `deadline` ([`ipc_core::Error::Timeout`]).
    pub(crate) fn call_deadline(
        &self,
        req: &Request,
        deadline: Option<Instant>,
    ) -> Result<Response> {
        let r = self.conn().and_then(|c| c.call(req, deadline));
        if matches!(r, Err(Error::ServerGone)) {
            // Relaxed: a hint that only spares later drops a round trip.
            if !self.gone.swap(true, Ordering::Relaxed) {
                crate::trace::event!(WARN, manager = %self.name, "the manager server is gone");
            }
        }
        r
    }

    /// Whether the server is known to be gone: it said it stopped, or a
    /// call found it dead. One load each, no `/proc` read.
    pub(crate) fn known_gone(&self) -> bool {
        // Relaxed: see `call`.
        self.gone.load(Ordering::Relaxed) || self.ctl.stopped()
    }

    fn is_owner(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.pid == proc::pid())
    }

    /// Asks the server to stop and waits for it (owner only).
    fn stop(&self) {
        if !self.is_owner() || self.ctl.server_gone() {
            self.join_server();
            return;
        }
        // Bounded: a server that stopped answering is killed instead.
        let deadline = Instant::now() + STOP_TIMEOUT;
        let _ = self
            .conn()
            .and_then(|c| c.call(&Request::Shutdown, Some(deadline)));
        self.join_server();
    }

    /// Reaps the server process (owner only), killing it if it does not
    /// stop in time, and removes whatever regions it left.
    pub(crate) fn join_server(&self) {
        if !self.is_owner() {
            return;
        }
        let Some(o) = &self.owner else { return };
        let mut g = o.process.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut p) = g.take() {
            let server_pid = p.pid();
            if p.join_timeout(Duration::from_secs(1)).is_err() && p.is_alive() {
                let _ = p.kill();
                let _ = p.join();
            }
            // Relaxed: the server wrote it before RUNNING and is reaped now.
            let recorded = self.ctl.header().server.load(Ordering::Relaxed);
            sweep(&self.name, server_pid, Some(recorded));
        }
    }
}

impl lifecycle::Stop for Session {
    fn stop(&self) {
        Session::stop(self);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
        // Give the slot back before the mapping goes.
        self.conn.with(|c| c.take());
    }
}
