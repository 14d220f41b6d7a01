//! The `ForkServer` start method: a clean, single-threaded helper process
//! (this program re-executed; [`init`](super::init) turns it into the
//! server) forks children on request. Children start as fast as with
//! `fork`, but from a process that has no other threads and none of the
//! parent's state, so it is safe whatever the parent's threads do.
//!
//! Protocol over a `SOCK_SEQPACKET` socket pair:
//! ```text
//! client -> server  "run;<tramp offset>;<target offset>;<daemon>;<parent>;<name>"
//!                   + SCM_RIGHTS [args memfd, result memfd, ack pipe]
//! server -> client  "pid;<pid>" + SCM_RIGHTS [pidfd]   the child was forked
//! server -> client  "exit;<pid>;<code>" a child ended (code < 0: signal)
//! ```
//! (`<parent>` is the client's identity and name, see `ParentId::encode`.)
//! The server exits when the client's end closes (the client exited), and
//! dies with the client (`PR_SET_PDEATHSIG`); daemon children die with the
//! server, so with the client.

use std::collections::HashMap;
use std::fs::File;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::child::set_parent_death_signal;
use super::image::{anchor, exe_identity, run_trampoline};
use super::target;
use crate::sys::fork_local::ForkLocal;
use crate::sys::{proc, shm};
use crate::{Error, Result};

pub(crate) const ENV: &str = "IPC_FORKSERVER";

struct Server {
    sock: OwnedFd,
    pid: Pid,
    /// Exit codes reported by the server and not yet collected.
    exits: HashMap<i32, i32>,
}

/// Fork-aware: a forked child never shares its parent's server connection
/// (their messages would interleave); it starts its own server if needed.
static SERVER: ForkLocal<Option<Server>> = ForkLocal::new();

fn send(sock: &OwnedFd, text: &str, fds: &[RawFd]) -> Result<()> {
    let iov = [IoSlice::new(text.as_bytes())];
    let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(fds)]
    };
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one message and the descriptors attached to it. `Ok(None)`
/// when the peer closed its end.
fn recv(sock: &OwnedFd) -> Result<Option<(String, Vec<OwnedFd>)>> {
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors in our
                // table for this message; nobody else owns them.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let n = msg.bytes;
        if n == 0 && fds.is_empty() {
            return Ok(None);
        }
        return Ok(Some((String::from_utf8_lossy(&buf[..n]).into_owned(), fds)));
    }
}

/// Starts the server (re-executing this program) if it is not running.
fn ensure(slot: &mut Option<Server>) -> Result<&mut Server> {
    if let Some(s) = slot.as_ref() {
        if waitpid(s.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) == Ok(WaitStatus::StillAlive)
        {
            return Ok(slot.as_mut().expect("checked above"));
        }
        *slot = None; // died (and is now reaped): start a new one
    }
    if !super::image::init_called() {
        return Err(Error::InitNotCalled);
    }
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let fd = theirs.as_raw_fd();
    let parent = proc::pid();
    let exe = std::env::current_exe().map_err(target::io)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(ENV, format!("{fd};{}", exe_identity()?))
        .stdin(std::process::Stdio::null());
    super::child::keep_across_exec(&mut cmd, [fd], Some(parent));
    let child = cmd.spawn().map_err(target::io)?;
    drop(theirs);
    Ok(slot.insert(Server {
        sock: mine,
        pid: Pid::from_raw(child.id() as i32),
        exits: HashMap::new(),
    }))
}

/// Asks the server to fork a child running the trampoline on the argument
/// in `args`; returns the child's pid once it has decoded its argument.
pub(crate) fn launch(
    tramp: usize,
    target: usize,
    daemon: bool,
    name: &str,
    args: &File,
    result: &File,
) -> Result<(Pid, OwnedFd)> {
    let (pid, pidfd, ack_r) = SERVER.with(|slot| -> Result<(i32, OwnedFd, OwnedFd)> {
        let server = ensure(slot)?;
        let (ack_r, ack_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let req = format!(
            "run;{};{};{};{};{name}",
            tramp.wrapping_sub(anchor()) as isize,
            target.wrapping_sub(anchor()) as isize,
            u8::from(daemon),
            super::ParentId::of_current().encode(),
        );
        send(
            &server.sock,
            &req,
            &[args.as_raw_fd(), result.as_raw_fd(), ack_w.as_raw_fd()],
        )?;
        drop(ack_w);
        loop {
            match recv(&server.sock)? {
                None => {
                    return Err(Error::Exited {
                        name: "forkserver".into(),
                        code: -1,
                        detail: Some("the fork server closed its socket".into()),
                    })
                }
                Some((m, mut fds)) => {
                    if let Some(p) = m.strip_prefix("pid;") {
                        let pid = p.parse::<i32>().ok().filter(|p| *p > 0);
                        return match (pid, fds.pop()) {
                            (Some(pid), Some(pidfd)) => Ok((pid, pidfd, ack_r)),
                            _ => Err(Error::Corrupt(format!(
                                "the fork server could not fork: {m:?}"
                            ))),
                        };
                    }
                    note_exit(server, &m);
                }
            }
        }
    })?;
    // Wait for "decoded" (or the child's death) before the caller drops
    // the handles the argument refers to.
    let mut ack = File::from(ack_r);
    let mut b = [0u8; 1];
    while let Err(e) = ack.read(&mut b) {
        if e.kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    Ok((Pid::from_raw(pid), pidfd))
}

fn note_exit(server: &mut Server, msg: &str) {
    let mut it = msg.split(';');
    if let (Some("exit"), Some(p), Some(c)) = (it.next(), it.next(), it.next()) {
        if let (Ok(p), Ok(c)) = (p.parse(), c.parse()) {
            server.exits.insert(p, c);
        }
    }
}

/// One look for `pid`'s exit report: takes what the server has sent,
/// waiting at most `wait` for the first message. `None`: the server is gone;
/// `Some(None)`: not reported yet.
fn check_exit(pid: Pid, wait: PollTimeout) -> Option<Option<i32>> {
    SERVER.with(|slot| {
        let server = slot.as_mut()?;
        let mut wait = wait;
        loop {
            if let Some(c) = server.exits.remove(&pid.as_raw()) {
                return Some(Some(c));
            }
            let mut fds = [PollFd::new(server.sock.as_fd(), PollFlags::POLLIN)];
            if !matches!(poll(&mut fds, wait), Ok(n) if n > 0) {
                return Some(None);
            }
            match recv(&server.sock) {
                Ok(Some((m, _))) => note_exit(server, &m),
                _ => return None,
            }
            wait = PollTimeout::ZERO;
        }
    })
}

/// The exit code of server child `pid` if the server has reported it
/// (never blocks).
pub(crate) fn exit_code(pid: Pid) -> Option<i32> {
    check_exit(pid, PollTimeout::ZERO).flatten()
}

/// Waits up to `limit` for the server to report `pid`'s exit code (the
/// child has exited: its pidfd was readable). `None` if the server is gone.
/// Waits on the socket in short slices, releasing the lock between them.
pub(crate) fn exit_code_wait(pid: Pid, limit: std::time::Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms =
            u16::try_from(left.min(std::time::Duration::from_millis(20)).as_millis()).unwrap_or(20);
        match check_exit(pid, PollTimeout::from(ms))? {
            Some(c) => return Some(c),
            None if left.is_zero() => return None,
            None => std::thread::yield_now(),
        }
    }
}

/// Called by `init()` when this process was started as the fork server.
pub(crate) fn serve(spec: &str) -> ! {
    let (fd, exe) = spec.split_once(';').unwrap_or(("", ""));
    let Ok(fd) = fd.parse::<RawFd>() else {
        // SAFETY: nothing to clean up in a server that cannot start.
        unsafe { libc::_exit(1) }
    };
    if exe_identity().map(|e| e != exe).unwrap_or(true) {
        eprintln!("ipc: fork server: the executable changed since the parent started");
        // SAFETY: as above.
        unsafe { libc::_exit(1) }
    }
    // SAFETY: the parent passed us this socket (CLOEXEC cleared before exec).
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let me = proc::pid();
    super::image::warm_up();
    let mut children: Vec<(Pid, OwnedFd)> = Vec::new();
    loop {
        let mut fds: Vec<PollFd<'_>> =
            std::iter::once(PollFd::new(sock.as_fd(), PollFlags::POLLIN))
                .chain(
                    children
                        .iter()
                        .map(|(_, f)| PollFd::new(f.as_fd(), PollFlags::POLLIN)),
                )
                .collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            // SAFETY: leaving the server; its children are reparented.
            Err(_) => unsafe { libc::_exit(1) },
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        // Children that ended: reap and report.
        for i in (0..children.len()).rev() {
            if ready[i + 1] {
                let (pid, _) = children.swap_remove(i);
                let code = match waitpid(pid, None) {
                    Ok(WaitStatus::Exited(_, c)) => c,
                    Ok(WaitStatus::Signaled(_, s, _)) => -(s as i32),
                    _ => -1,
                };
                let _ = send(&sock, &format!("exit;{pid};{code}"), &[]);
            }
        }
        if ready[0] {
            match recv(&sock) {
                Ok(Some((req, fds))) => {
                    // The pidfd is opened while the child is unreaped (so
                    // surely its), and a copy goes to the client, which
                    // cannot open one itself once we may have reaped it.
                    let started = fork_child(&req, fds, &sock, me).and_then(|pid| {
                        shm::pidfd_open(pid.as_raw() as u32).ok().map(|f| (pid, f))
                    });
                    match started {
                        Some((pid, pfd)) => {
                            let _ = send(&sock, &format!("pid;{pid}"), &[pfd.as_raw_fd()]);
                            children.push((pid, pfd));
                        }
                        None => {
                            let _ = send(&sock, "pid;-1", &[]);
                        }
                    }
                }
                // The client is gone: so are we (daemon children follow us).
                // SAFETY: leaving the server.
                _ => unsafe { libc::_exit(0) },
            }
        }
    }
}

/// Forks one child for request `req`; in the child, never returns.
fn fork_child(req: &str, fds: Vec<OwnedFd>, sock: &OwnedFd, server: u32) -> Option<Pid> {
    let f: Vec<&str> = req.splitn(6, ';').collect();
    if f.len() != 6 || f[0] != "run" || fds.len() != 3 {
        return None;
    }
    let tramp = anchor().wrapping_add(f[1].parse::<isize>().ok()? as usize);
    let target = anchor().wrapping_add(f[2].parse::<isize>().ok()? as usize);
    let daemon = f[3] == "1";
    let client = super::ParentId::decode(f[4])?;
    let name = f[5].to_owned();
    // SAFETY: the server is single-threaded; the child runs the target and
    // `_exit`s.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => Some(child),
        Ok(ForkResult::Child) => {
            let _ = nix::unistd::close(sock.as_raw_fd());
            super::set_current(name, daemon, client);
            if daemon {
                set_parent_death_signal(server);
            }
            let mut it = fds.into_iter();
            let (args, result, ack) = (it.next()?, it.next()?, it.next()?);
            let (mut args, mut result, mut ack) =
                (File::from(args), File::from(result), Some(File::from(ack)));
            let mut send_ack = || {
                if let Some(mut a) = ack.take() {
                    let _ = a.write_all(&[1]);
                }
            };
            let mut bytes = Vec::new();
            let outcome = match args.read_to_end(&mut bytes) {
                Ok(_) => run_trampoline(tramp, target, &bytes, &mut send_ack),
                Err(e) => target::Outcome::Setup(format!("could not read the argument: {e}")),
            };
            send_ack();
            let _ = target::write(&mut result, &outcome);
            // SAFETY: ends the child without the server's destructors.
            unsafe { libc::_exit(outcome.exit_code()) }
        }
        Err(_) => None,
    }
}
