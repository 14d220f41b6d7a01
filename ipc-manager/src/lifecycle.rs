//! A manager server's life around its loop: waiting for it to start,
//! closing what a forked server inherited, stopping owned servers at exit,
//! and sweeping what stopped or dead servers left behind.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ipc_core::region::{Kind, Region};
use ipc_core::sys::fork_local::ForkLocal;
use ipc_core::sys::futex;
use ipc_core::sys::proc::TaskId;
use ipc_core::Error as CoreError;

use crate::control::{Control, FAILED, RUNNING, STARTING};
use crate::{Error, Result};

/// A started server that can be asked to stop (the manager's handle).
pub(crate) trait Stop: Send + Sync {
    /// Asks the server to stop and waits for it (owner only).
    fn stop(&self);
}

/// Managers this process started (stopped at exit if still alive).
static OWNED: ForkLocal<Vec<Weak<dyn Stop>>> = ForkLocal::new();
static AT_EXIT: AtomicBool = AtomicBool::new(false);

/// Stops `server` when this process exits, if it is still alive then
/// (registers the exit hook once per process).
pub(crate) fn stop_at_exit(server: Weak<dyn Stop>) {
    OWNED.with(|v| {
        v.retain(|w| w.strong_count() > 0);
        v.push(server);
    });
    if !AT_EXIT.swap(true, Ordering::AcqRel) {
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_owned_at_exit) };
    }
}

/// Waits (at most until `deadline`: [`ipc_core::Error::Timeout`]) while the server
/// is starting. The error the server reported if it could not start;
/// `ServerGone` if it stopped or died, or if `alive` says its process
/// ended; [`ipc_core::Error::Io`] if its liveness cannot be read (this process is
/// out of descriptors).
pub(crate) fn wait_started(
    ctl: &Control,
    deadline: Instant,
    mut alive: impl FnMut() -> bool,
) -> Result<()> {
    loop {
        match ctl.server_state()? {
            RUNNING => return Ok(()),
            FAILED => return Err(ctl.start_error()),
            STARTING if alive() => {}
            _ => return Err(Error::ServerGone),
        }
        if Instant::now() >= deadline {
            return Err(CoreError::Timeout.into());
        }
        let st = &ctl.header().state;
        futex::wait_slice(st, STARTING, Some(deadline), Duration::from_millis(50));
    }
}

/// Closes, in the freshly forked server, the pipes and sockets it inherited
/// from its parent: holding a copy of a `Pipe`'s liveness descriptor would
/// keep that pipe's peer looking alive. Regular files (the control region,
/// the process's result file) stay open.
pub(crate) fn close_inherited_channels(ctl: &Control) {
    let keep = ctl.region_file_fd();
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        // No descriptor to list them with: try every number below the limit
        // (`fstat` needs none).
        Err(_) => {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit with a valid, writable rlimit struct.
            let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
                lim.rlim_cur.min(1 << 20) as i32
            } else {
                1024
            };
            (0..max).collect()
        }
    };
    for fd in fds {
        if fd <= 2 || fd == keep {
            continue;
        }
        // SAFETY: fstat on a descriptor number only reads its metadata.
        let mut st = unsafe { std::mem::zeroed::<libc::stat>() };
        // SAFETY: `st` is a valid, writable stat buffer.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            continue;
        }
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFIFO || fmt == libc::S_IFSOCK {
            // SAFETY: the descriptor is a pipe or socket inherited from the
            // parent; nothing in the server uses it (its owners live in the
            // parent's memory image and are never dropped here).
            unsafe { libc::close(fd) };
        }
    }
}

/// Removes what the server of manager `name` left behind after it stopped
/// or died (a server that stops cleanly leaves nothing). Regions are
/// recognised by identity, never by name: those whose header names the
/// server as their creator (it adopted them), and the control region
/// `name` if this process created it or the server adopted it. A region
/// the program made itself, whatever its name (`Queue::create("X.jobs")`
/// for manager `X`), is never touched.
///
/// `server_pid` is the pid of the server process, already reaped;
/// `recorded` is the identity the server wrote into our mapping of the
/// control header, if we have one.
pub(crate) fn sweep(name: &str, server_pid: Option<u32>, recorded: Option<u64>) {
    let Some(server_pid) = server_pid else { return };
    let me = TaskId::current_process();
    let server = recorded
        .filter(|v| *v != 0)
        .map(TaskId::unpack)
        .or_else(|| server_of(name))
        .filter(|s| s.id == server_pid && !s.is_alive());
    let Ok(regions) = Region::list() else { return };
    for r in regions {
        let by_server = server == Some(r.creator);
        // The server adopts the control region first, then records itself:
        // a server killed in between is known by its (reaped) pid alone.
        let ours = r.creator == me || (r.creator.id == server_pid && !r.creator.is_alive());
        let control = r.name == name && r.kind == Some(Kind::Manager) && (by_server || ours);
        if by_server || control {
            let _ = r.unlink();
        }
    }
}

/// The server identity recorded in the control region `name`, if any.
fn server_of(name: &str) -> Option<TaskId> {
    let ctl = Control::open(name, Duration::ZERO).ok()?;
    // Relaxed: written before RUNNING by a server that is now dead; we only
    // compare it with identities, and a stale 0 finds nothing.
    let v = ctl.header().server.load(Ordering::Relaxed);
    (v != 0).then(|| TaskId::unpack(v))
}

/// At start-up, removes what managers of this user that died with their
/// server left behind, and only that: the regions a dead server had
/// adopted, then the control region of a dead manager once none of its
/// server's regions is left (so a later start can still recognise them).
/// Each goes only if nobody uses it (`Region::gc_where`: a region of this
/// user, whose creator is dead, that no process maps or holds open). Other
/// regions are left alone, even those of dead creators: collecting them is
/// the user's call (`Region::gc`).
pub(crate) fn sweep_dead_managers() {
    let Ok(regions) = Region::list() else { return };
    // Dead control regions, with the server each one records if that
    // server adopted it (then the server's other regions are its objects).
    let dead: Vec<(String, Option<u64>)> = regions
        .iter()
        .filter(|r| r.kind == Some(Kind::Manager) && !r.creator.is_alive())
        .map(|r| {
            let server =
                (r.ready && server_of(&r.name) == Some(r.creator)).then(|| r.creator.pack());
            (r.name.clone(), server)
        })
        .collect();
    if dead.is_empty() {
        return;
    }
    let servers: HashSet<u64> = dead.iter().filter_map(|(_, s)| *s).collect();
    let _ =
        Region::gc_where(|r| r.kind != Some(Kind::Manager) && servers.contains(&r.creator.pack()));
    let Ok(regions) = Region::list() else { return };
    let kept: HashSet<u64> = regions
        .iter()
        .filter(|r| r.kind != Some(Kind::Manager))
        .map(|r| r.creator.pack())
        .filter(|c| servers.contains(c))
        .collect();
    let controls: HashSet<String> = dead
        .into_iter()
        .filter(|(_, s)| s.is_none_or(|s| !kept.contains(&s)))
        .map(|(n, _)| n)
        .collect();
    let _ = Region::gc_where(|r| r.kind == Some(Kind::Manager) && controls.contains(&r.name));
}

extern "C" fn stop_owned_at_exit() {
    let owned: Vec<Arc<dyn Stop>> = OWNED.with(|v| v.iter().filter_map(Weak::upgrade).collect());
    for i in owned {
        i.stop();
    }
}
