//! Keeps the descriptors of handles sent to other processes open until the
//! receiver has opened its own copy, or [`KEEP`] has passed.
//!
//! An anonymous handle (a `memfd` region, a pipe end's liveness pipes)
//! travels as `/proc/<pid>/fd/<n>` of its sender: the receiver opens that
//! path, which works only while descriptor `n` is open in the sender. A
//! sender that drops its handle right after sending it (as Python allows:
//! its resource sharer keeps the descriptor for the receiver) would leave
//! the receiver nothing to open, and a pipe's peer would see the end
//! closed. So when a handle's token is made, the sender keeps a duplicate
//! of the descriptor here, and the locator names the descriptor, its
//! inode, the duplicate and this process's acknowledgement pipe:
//!
//! ```text
//! /proc/<pid>/fd/<fd>?ino=<inode>&dup=<dup>&ack=<ack fd>.<ack pipe inode>
//! ```
//!
//! The receiver opens the duplicate (or, once it is gone, the sender's own
//! descriptor: the same bytes decoded a second time), refusing a file of
//! another inode (a reused number). Having opened the duplicate, it writes
//! `(dup, inode)` into the acknowledgement pipe, checked to be that pipe
//! by its inode first, so a reused pid is never written to. A keeper
//! thread closes an acknowledged duplicate at once, and any duplicate after
//! [`KEEP`]: until then a pipe end sent but never received still counts
//! as open for its peer. Tokens of the same open file share one duplicate
//! and count their receivers. A forked child closes the duplicates it
//! inherited (a `pthread_atfork` handler), so they never keep a pipe end
//! alive for its lifetime; a spawned one never gets them (`O_CLOEXEC`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::sys::fork_local::ForkLocal;
use crate::sys::proc;

/// How long a sent handle's descriptors stay open for a receiver that
/// has not opened them.
pub const KEEP: Duration = Duration::from_secs(30);

/// Most descriptors kept at once; past it, handles travel without a
/// keep-alive (the sender must then hold them until they are opened).
const MAX_KEPT: usize = 1024;

/// Bytes of one acknowledgement: the duplicate's number, the inode opened.
const ACK_LEN: usize = 16;

/// One kept descriptor.
#[derive(Debug)]
struct Kept {
    fd: OwnedFd,
    /// What it is: device, inode and access mode (a pipe's two sides share
    /// an inode but not a role).
    key: (u64, u64, i32),
    /// Receivers expected (tokens made) and not yet acknowledged.
    outstanding: u32,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct Keeper {
    kept: Vec<Kept>,
    /// Our acknowledgement pipe: (read side, write side, its inode), and
    /// the keeper thread started on it.
    ack: Option<(OwnedFd, OwnedFd, u64)>,
    /// Until when a failed start-up is not retried.
    broken_until: Option<Instant>,
}

static KEEPER: ForkLocal<Keeper> = ForkLocal::new();

/// The numbers of every descriptor the keeper owns, for the forked
/// child's handler (which may not take locks or allocate). -1: free.
static OWNED: [AtomicI32; MAX_KEPT + 2] = [const { AtomicI32::new(-1) }; MAX_KEPT + 2];
static ATFORK: AtomicBool = AtomicBool::new(false);

extern "C" fn close_inherited_in_child() {
    for slot in &OWNED {
        // Relaxed: the child is single-threaded here.
        let fd = slot.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: `fd` was the keeper's own descriptor in the parent;
            // nothing else in the child owns it (the keeper's state is
            // abandoned by `ForkLocal`, never dropped). close is
            // async-signal-safe.
            unsafe { libc::close(fd) };
        }
    }
}

fn record(fd: RawFd) {
    for slot in &OWNED {
        // Relaxed: read only by the atfork child handler, after fork (which
        // orders everything this thread did before it).
        if slot
            .compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

fn forget(fd: RawFd) {
    for slot in &OWNED {
        // Relaxed: as in `record`.
        if slot
            .compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

fn key_of(fd: BorrowedFd<'_>) -> Option<(u64, u64, i32)> {
    let st = nix::sys::stat::fstat(fd).ok()?;
    let mode = fcntl(fd, FcntlArg::F_GETFL).ok()? & libc::O_ACCMODE;
    Some((st.st_dev, st.st_ino, mode))
}

impl Keeper {
    /// The acknowledgement pipe's write side and inode, starting the pipe
    /// and the keeper thread on first use.
    fn ack_endpoint(&mut self) -> Option<(RawFd, u64)> {
        if let Some((_, w, ino)) = &self.ack {
            return Some((w.as_raw_fd(), *ino));
        }
        if self.broken_until.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        let started = (|| {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()?;
            let ino = nix::sys::stat::fstat(&w).ok()?.st_ino;
            let raw = r.as_raw_fd();
            std::thread::Builder::new()
                .name("ipc-keepalive".into())
                .spawn(move || keeper_thread(raw))
                .ok()?;
            Some((r, w, ino))
        })();
        let Some((r, w, ino)) = started else {
            self.broken_until = Some(Instant::now() + Duration::from_secs(1));
            return None;
        };
        if !ATFORK.swap(true, Ordering::Relaxed) {
            // SAFETY: registers a child handler that only makes
            // async-signal-safe calls (close) and atomic swaps.
            unsafe { libc::pthread_atfork(None, None, Some(close_inherited_in_child)) };
        }
        record(r.as_raw_fd());
        record(w.as_raw_fd());
        let endpoint = (w.as_raw_fd(), ino);
        self.ack = Some((r, w, ino));
        Some(endpoint)
    }

    /// One receiver of duplicate `fd` opened inode `ino`.
    fn acknowledge(&mut self, fd: i64, ino: u64) {
        if let Some(i) = self
            .kept
            .iter()
            .position(|k| i64::from(k.fd.as_raw_fd()) == fd && k.key.1 == ino)
        {
            let k = &mut self.kept[i];
            k.outstanding = k.outstanding.saturating_sub(1);
            if k.outstanding == 0 {
                self.release(i);
            }
        }
    }

    fn release(&mut self, i: usize) {
        let k = self.kept.swap_remove(i);
        forget(k.fd.as_raw_fd());
        drop(k.fd);
    }

    /// Closes what expired; returns how long until the next expiry.
    fn expire(&mut self, now: Instant) -> Duration {
        let mut i = 0;
        while i < self.kept.len() {
            if self.kept[i].deadline <= now {
                self.release(i);
            } else {
                i += 1;
            }
        }
        self.kept
            .iter()
            .map(|k| k.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(KEEP)
    }
}

/// Waits for acknowledgements and deadlines, for ever (it ends with the
/// process; a forked child has none and starts its own).
fn keeper_thread(ack: RawFd) {
    // SAFETY: the read side stays open for the life of this process (the
    // keeper never closes it), so the borrow is valid for ever.
    let fd = unsafe { BorrowedFd::borrow_raw(ack) };
    let mut wait = KEEP;
    let mut buf = [0u8; ACK_LEN * 64];
    let mut have = 0usize;
    loop {
        let ms = u16::try_from(wait.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
        let mut acks = Vec::new();
        loop {
            match nix::unistd::read(fd, &mut buf[have..]) {
                Ok(n) if n > 0 => {
                    have += n;
                    let whole = have - have % ACK_LEN;
                    for a in buf[..whole].chunks_exact(ACK_LEN) {
                        let fd = i64::from_le_bytes(a[..8].try_into().expect("8 bytes"));
                        let ino = u64::from_le_bytes(a[8..].try_into().expect("8 bytes"));
                        acks.push((fd, ino));
                    }
                    buf.copy_within(whole..have, 0);
                    have -= whole;
                }
                _ => break,
            }
        }
        wait = KEEPER.with(|k| {
            for (fd, ino) in acks {
                k.acknowledge(fd, ino);
            }
            k.expire(Instant::now())
        });
    }
}

/// Where another process can open descriptor `fd` of this one: the path
/// of `fd` itself, the inode the opener must find there, and a kept
/// duplicate with the acknowledgement pipe (see the module docs), unless
/// nothing can be kept (the sender must then hold `fd` until the receiver
/// has opened it).
pub(crate) fn locator(fd: BorrowedFd<'_>) -> String {
    locator_keeping(fd, KEEP)
}

fn locator_keeping(fd: BorrowedFd<'_>, keep: Duration) -> String {
    let pid = proc::pid();
    let plain = format!("/proc/{pid}/fd/{}", fd.as_raw_fd());
    let Some(key) = key_of(fd) else {
        return plain;
    };
    match keep_duplicate(fd, key, keep) {
        Some((dup, ack_fd, ack_ino)) => {
            format!("{plain}?ino={}&dup={dup}&ack={ack_fd}.{ack_ino}", key.1)
        }
        None => format!("{plain}?ino={}", key.1),
    }
}

/// Keeps a duplicate of `fd` (or counts one more receiver of the one kept
/// for the same open file); returns its number and the acknowledgement
/// pipe's write side and inode.
fn keep_duplicate(
    fd: BorrowedFd<'_>,
    key: (u64, u64, i32),
    keep: Duration,
) -> Option<(RawFd, RawFd, u64)> {
    KEEPER.with(|k| {
        let (ack_fd, ack_ino) = k.ack_endpoint()?;
        let deadline = Instant::now() + keep;
        let found = k.kept.iter().position(|e| e.key == key);
        let full = k.kept.len() >= MAX_KEPT;
        let dup = match found {
            Some(i) => {
                let e = &mut k.kept[i];
                e.outstanding = e.outstanding.saturating_add(1);
                e.deadline = e.deadline.max(deadline);
                e.fd.as_raw_fd()
            }
            None if full => return None,
            None => {
                // Above the standard descriptors; closed on exec.
                let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(3)).ok()?;
                // SAFETY: `raw` is a descriptor we just created and own.
                let dup = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
                record(raw);
                k.kept.push(Kept {
                    fd: dup,
                    key,
                    outstanding: 1,
                    deadline,
                });
                // Wake the keeper thread so it sleeps until the earliest
                // deadline (an acknowledgement of no descriptor).
                if let Some((_, w, _)) = &k.ack {
                    let _ = nix::unistd::write(w, &(-1i64).to_le_bytes().repeat(2));
                }
                raw
            }
        };
        Some((dup, ack_fd, ack_ino))
    })
}

/// A parsed descriptor locator:
/// `/proc/<pid>/fd/<n>[?ino=<inode>[&dup=<n>&ack=<fd>.<inode>]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcFd {
    pid: u32,
    fd: u32,
    /// The inode the opened file must have (older locators have none).
    ino: Option<u64>,
    /// A kept duplicate and the pipe to acknowledge it on.
    kept: Option<(u32, u32, u64)>,
}

impl ProcFd {
    /// Parses a locator; `None` if it is not one.
    pub(crate) fn parse(locator: &str) -> Option<ProcFd> {
        fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        }
        let rest = locator.strip_prefix("/proc/")?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let (pid, fd) = path.split_once("/fd/")?;
        let (ino, kept) = match query {
            None => (None, None),
            Some(q) => {
                let mut it = q.split('&');
                let ino = num(it.next()?.strip_prefix("ino=")?)?;
                let kept = match it.next() {
                    None => None,
                    Some(d) => {
                        let dup = num(d.strip_prefix("dup=")?)?;
                        let (afd, aino) = it.next()?.strip_prefix("ack=")?.split_once('.')?;
                        if it.next().is_some() {
                            return None;
                        }
                        Some((dup, num(afd)?, num(aino)?))
                    }
                };
                (Some(ino), kept)
            }
        };
        Some(ProcFd {
            pid: num(pid)?,
            fd: num(fd)?,
            ino,
            kept,
        })
    }

    /// Opens the descriptor with `opts`: the sender's kept duplicate if it
    /// is still there (then tells the sender, which lets it go), else the
    /// sender's own descriptor. A file that is not the inode the locator
    /// names (the number was reused) is never returned.
    pub(crate) fn open(&self, opts: &OpenOptions) -> std::io::Result<File> {
        let same = |f: &File| {
            self.ino
                .is_none_or(|ino| nix::sys::stat::fstat(f.as_fd()).is_ok_and(|st| st.st_ino == ino))
        };
        if let Some((dup, ack_fd, ack_ino)) = self.kept {
            if let Ok(f) = opts.open(format!("/proc/{}/fd/{dup}", self.pid)) {
                if same(&f) {
                    self.acknowledge(dup, ack_fd, ack_ino);
                    return Ok(f);
                }
            }
        }
        let f = opts.open(format!("/proc/{}/fd/{}", self.pid, self.fd))?;
        if !same(&f) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok(f)
    }

    /// Best effort: a sender that is gone, or whose pipe is full, lets the
    /// duplicate go at its deadline instead.
    fn acknowledge(&self, dup: u32, ack_fd: u32, ack_ino: u64) {
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(mut pipe) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(format!("/proc/{}/fd/{ack_fd}", self.pid))
        else {
            return;
        };
        // Only into the acknowledgement pipe it named: after a pid reuse,
        // that number may be anything of another program.
        let is_it = nix::sys::stat::fstat(pipe.as_fd())
            .is_ok_and(|st| st.st_ino == ack_ino && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO);
        if !is_it {
            return;
        }
        let mut msg = [0u8; ACK_LEN];
        msg[..8].copy_from_slice(&i64::from(dup).to_le_bytes());
        msg[8..].copy_from_slice(&self.ino.unwrap_or(0).to_le_bytes());
        // One write of at most PIPE_BUF bytes: atomic, never interleaved.
        let _ = pipe.write(&msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_parse_and_reject_garbage() {
        let p = |s| ProcFd::parse(s);
        let fd = |pid, fd, ino, kept| Some(ProcFd { pid, fd, ino, kept });
        assert_eq!(p("/proc/12/fd/7"), fd(12, 7, None, None));
        assert_eq!(p("/proc/12/fd/7?ino=55"), fd(12, 7, Some(55), None));
        assert_eq!(
            p("/proc/12/fd/7?ino=55&dup=9&ack=4.123"),
            fd(12, 7, Some(55), Some((9, 4, 123)))
        );
        for bad in [
            "/proc/12/fd/",
            "/proc//fd/7",
            "/proc/12/fd/7/x",
            "/proc/1a/fd/7",
            "/proc/12/fd/-7",
            "/proc/12/fdx/7",
            "/proc/self/fd/7",
            "/proc/12/fd/7?",
            "/proc/12/fd/7?ino=",
            "/proc/12/fd/7?ino=5&dup=9",
            "/proc/12/fd/7?ino=5&dup=9&ack=4",
            "/proc/12/fd/7?ino=5&dup=9&ack=.1",
            "/proc/12/fd/7?ino=5&dup=9&ack=4.1&x=2",
            "/proc/12/fd/7?dup=9&ack=4.1",
            "shm:x",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    fn hung_up(r: &OwnedFd) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            r.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() == 1
            && fds[0]
                .revents()
                .unwrap()
                .contains(nix::poll::PollFlags::POLLHUP)
    }

    fn write_opts() -> OpenOptions {
        use std::os::unix::fs::OpenOptionsExt;
        let mut opts = OpenOptions::new();
        opts.write(true).custom_flags(libc::O_NONBLOCK);
        opts
    }

    fn kept(fd: u32) -> bool {
        KEEPER.with(|k| k.kept.iter().any(|e| e.fd.as_raw_fd() == fd as i32))
    }

    #[test]
    fn a_kept_duplicate_never_acknowledged_is_closed_at_its_deadline() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let keep = Duration::from_millis(300);
        let loc = locator_keeping(w.as_fd(), keep);
        assert!(loc.contains("&dup="), "{loc}");
        drop(w);
        assert!(!hung_up(&r), "{loc} keeps the write side open");
        let t0 = Instant::now();
        while !hung_up(&r) {
            assert!(t0.elapsed() < Duration::from_secs(10), "never closed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(t0.elapsed() + Duration::from_millis(50) >= keep);
    }

    #[test]
    fn a_kept_duplicate_outlives_the_original_until_acknowledged() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let loc = locator(w.as_fd());
        let p = ProcFd::parse(&loc).unwrap();
        let (dup, _, _) = p.kept.expect("kept");
        drop(w);
        // The reader still has a writer: the kept duplicate.
        assert!(!hung_up(&r));
        let mine = p.open(&write_opts()).unwrap();
        // Acknowledged: the duplicate goes; our copy alone keeps it open.
        let t0 = Instant::now();
        while kept(dup) {
            assert!(t0.elapsed() < Duration::from_secs(10), "never released");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!hung_up(&r));
        drop(mine);
        assert!(hung_up(&r));
    }

    #[test]
    fn more_receivers_than_tokens_fall_back_on_the_senders_descriptor() {
        let (_r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let p = ProcFd::parse(&locator(w.as_fd())).unwrap();
        let (dup, _, _) = p.kept.expect("kept");
        let first = p.open(&write_opts()).unwrap();
        let t0 = Instant::now();
        while kept(dup) {
            assert!(t0.elapsed() < Duration::from_secs(10), "never released");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The same bytes decoded again: the sender still holds `w`.
        let second = p.open(&write_opts()).unwrap();
        let ino = |f: &File| nix::sys::stat::fstat(f.as_fd()).unwrap().st_ino;
        assert_eq!(ino(&first), ino(&second));
        // A descriptor number now naming another file is refused.
        drop(w);
        let _other = File::open("/dev/null").unwrap();
        let stale = ProcFd {
            kept: None,
            ..p.clone()
        };
        if let Ok(f) = stale.open(&OpenOptions::new().read(true).clone()) {
            panic!("opened {:?} for a pipe's locator", f);
        }
    }
}
