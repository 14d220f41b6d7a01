//! A read-only snapshot of a manager, for the `ipc` command
//! (`ipc inspect NAME`). Not a stable API.
//!
//! It opens the control region as a client would (validating it) but
//! claims no slot and sends nothing: the server does not notice.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ipc_core::region::{Kind, Region};
use ipc_core::sys::proc::TaskId;
use ipc_core::Result;

use crate::control::{Control, CLOSED, FREE, RUNNING, STARTING, STOPPED};

/// One connected client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// Its mailbox slot.
    pub slot: usize,
    /// Its process id.
    pub pid: u32,
    /// Whether that exact process (pid and start time) still runs; a dead
    /// client's slot is reclaimed by the server.
    pub alive: bool,
}

/// An object the server owns in shared memory (a queue, lock, value...).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// The region's name.
    pub name: String,
    /// Its kind, if the header names a known one.
    pub kind: Option<Kind>,
}

/// A manager's state (see [`manager`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ManagerStats {
    /// `"starting"`, `"running"`, `"stopped"` or `"unknown"` (garbage).
    pub state: &'static str,
    /// The server process's id (0 before it recorded itself).
    pub server_pid: u32,
    /// Whether the server process still runs.
    pub server_alive: bool,
    /// CPU time (user + system) the server has used, while it runs.
    pub server_cpu: Option<Duration>,
    /// Mailbox slots in the control region.
    pub slots: usize,
    /// Clients holding a slot.
    pub clients: Vec<ClientInfo>,
    /// Objects the server adopted (regions whose owner is the server).
    pub objects: Vec<ObjectInfo>,
}

/// Reads the manager whose control region is `name`.
///
/// # Errors
/// As [`Manager::connect`](crate::Manager::connect) for a missing or
/// invalid control region.
///
/// # Examples
///
/// ```
/// let mgr = ipc_manager::Manager::start()?;
/// mgr.named("jobs").queue::<u32>(8)?;
/// let st = ipc_manager::inspect::manager(mgr.name())?;
/// assert!(st.server_alive && st.state == "running");
/// assert!(st.clients.iter().any(|c| c.pid == std::process::id()));
/// assert_eq!(st.objects.len(), 1);
/// # Ok::<(), ipc_manager::Error>(())
/// ```
pub fn manager(name: &str) -> Result<ManagerStats> {
    let ctl = Control::open(name, std::time::Duration::ZERO)?;
    let h = ctl.header();
    // Acquire: pairs with the server's Release of RUNNING, after which
    // `server` is written.
    let state = match h.state.load(Ordering::Acquire) {
        STARTING => "starting",
        RUNNING => "running",
        STOPPED => "stopped",
        _ => "unknown",
    };
    // Relaxed: a snapshot for display.
    let server = TaskId::unpack(h.server.load(Ordering::Relaxed));
    let server_alive = server.id != 0 && server.is_alive();
    let clients = (0..ctl.nslots())
        .filter_map(|i| {
            // Relaxed: a snapshot for display.
            match ctl.slot(i).owner.load(Ordering::Relaxed) {
                FREE | CLOSED => None,
                v => {
                    let t = TaskId::unpack(v);
                    Some(ClientInfo {
                        slot: i,
                        pid: t.id,
                        alive: t.is_alive(),
                    })
                }
            }
        })
        .collect();
    let objects = if server.id == 0 {
        Vec::new()
    } else {
        Region::list()?
            .into_iter()
            .filter(|r| r.creator == server && r.name != name)
            .map(|r| ObjectInfo {
                name: r.name,
                kind: r.kind,
            })
            .collect()
    };
    Ok(ManagerStats {
        state,
        server_pid: server.id,
        server_alive,
        server_cpu: if server_alive {
            cpu_time(server.id)
        } else {
            None
        },
        slots: ctl.nslots(),
        clients,
        objects,
    })
}

/// User + system CPU time of process `pid` (fields 14 and 15 of
/// `/proc/<pid>/stat`, in clock ticks).
fn cpu_time(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces and ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let mut it = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(Duration::from_millis((utime + stime) * 1000 / hz))
}
