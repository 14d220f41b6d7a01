//! `wait`: block until any of several objects is ready (Python's
//! `multiprocessing.connection.wait`), over process sentinels, pipe ends
//! and queues together.
//!
//! Descriptors are polled; queues and pipe ends live in shared memory and
//! are slept on with one `futex_waitv` over all their wait points, so a
//! message wakes the waiter at once. When both kinds are in the list, the
//! descriptors are polled between slices of [`FD_SLICE`].

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::atomic::{fence, Ordering};
use crate::codec::Message;
use crate::pipe::Connection;
use crate::queue::{JoinableQueue, Queue, SimpleQueue};
use crate::ring::wait::WaitPoint;
use crate::sys::futex;
use crate::Result;

/// How often descriptors are polled while sleeping on shared-memory
/// objects (a process exit or a pipe peer's death is seen this late at
/// worst, when sentinels and queues are waited on together).
pub(crate) const FD_SLICE: Duration = Duration::from_millis(10);

pub(crate) mod sealed {
    /// How an object is waited on (not for implementing outside the crate).
    pub trait Sealed {
        /// The object's readiness source.
        fn source(&self) -> super::Source<'_>;
    }
}

/// Something [`wait`] can wait on: a descriptor ([`BorrowedFd`], such as a
/// [`Process::sentinel`](super::Process::sentinel)), a [`Connection`]
/// (ready when a message can be received or the peer is gone), or a
/// [`Queue`], [`JoinableQueue`] or [`SimpleQueue`] (ready when a message is
/// queued, or the queue is closed or shut down, so `get` would not block).
/// References and `dyn Waitable` are waitable too, so a list can mix kinds.
///
/// # Examples
///
/// ```
/// use ipc_core::{pipe::Pipe, process::{wait, Waitable}, queue::Queue};
/// use std::time::Duration;
/// let (a, b) = Pipe::new(true)?;
/// let q = Queue::<u8>::new(4)?;
/// q.put(&1)?;
/// let objs: [&dyn Waitable; 2] = [&b, &q];
/// assert_eq!(wait(&objs, Some(Duration::ZERO))?, vec![1]);
/// a.send(&7u8)?;
/// assert_eq!(wait(&objs, Some(Duration::ZERO))?, vec![0, 1]);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub trait Waitable: sealed::Sealed {}

/// How one object's readiness is found (opaque).
pub struct Source<'a>(By<'a>);

enum By<'a> {
    /// Ready when `poll` reports any event on it.
    Fd(BorrowedFd<'a>),
    /// An object in shared memory: ready when `ready` is true at the time
    /// of a check, or when `fd` (if any) reports an event. Waiters sleep
    /// on `point`.
    Shm {
        point: &'a WaitPoint,
        ready: Box<dyn Fn() -> bool + 'a>,
        fd: Option<BorrowedFd<'a>>,
    },
}

impl sealed::Sealed for BorrowedFd<'_> {
    fn source(&self) -> Source<'_> {
        Source(By::Fd(self.as_fd()))
    }
}
impl Waitable for BorrowedFd<'_> {}

impl sealed::Sealed for OwnedFd {
    fn source(&self) -> Source<'_> {
        Source(By::Fd(self.as_fd()))
    }
}
impl Waitable for OwnedFd {}

impl<T: Waitable + ?Sized> sealed::Sealed for &T {
    fn source(&self) -> Source<'_> {
        (**self).source()
    }
}
impl<T: Waitable + ?Sized> Waitable for &T {}

impl sealed::Sealed for Connection {
    fn source(&self) -> Source<'_> {
        match self.wait_parts() {
            (Some((point, ring)), peer) => Source(By::Shm {
                point,
                ready: Box::new(move || ring.has_data()),
                fd: Some(peer),
            }),
            // The sending end of a one-way pipe: nothing to receive, ready
            // only once the peer is gone (its liveness pipe hangs up).
            (None, peer) => Source(By::Fd(peer)),
        }
    }
}
impl Waitable for Connection {}

impl<T: Message> sealed::Sealed for Queue<T> {
    fn source(&self) -> Source<'_> {
        Source(By::Shm {
            point: self.wait_parts().0,
            ready: Box::new(move || self.wait_parts().1),
            fd: None,
        })
    }
}
impl<T: Message> Waitable for Queue<T> {}

impl<T: Message> sealed::Sealed for JoinableQueue<T> {
    fn source(&self) -> Source<'_> {
        self.queue().source()
    }
}
impl<T: Message> Waitable for JoinableQueue<T> {}

impl<T: Message> sealed::Sealed for SimpleQueue<T> {
    fn source(&self) -> Source<'_> {
        self.as_queue().source()
    }
}
impl<T: Message> Waitable for SimpleQueue<T> {}

/// Waits until at least one of `objects` is ready, or `timeout` passes;
/// returns the indices of the ready ones, in order (empty on timeout).
/// This is Python's `multiprocessing.connection.wait`, with indices in
/// place of the objects themselves.
///
/// A process sentinel is ready once the process ended; a [`Connection`]
/// once a message can be received or its peer is gone; a queue once a
/// message is queued or it is closed or shut down. Readiness is a hint,
/// as in Python: another consumer may take the message first. An empty
/// list with no timeout returns an empty list at once.
///
/// # Errors
/// [`crate::Error::Io`] if `poll` fails.
///
/// # Examples
///
/// ```
/// use ipc_core::process::{wait, Process};
/// use std::time::Duration;
/// let mut fast = Process::builder().target(|| ());
/// let mut slow = Process::builder().target(|| std::thread::sleep(Duration::from_secs(5)));
/// fast.start()?;
/// slow.start()?;
/// let ready = wait(&[fast.sentinel().unwrap(), slow.sentinel().unwrap()], Some(Duration::from_secs(5)))?;
/// assert_eq!(ready, vec![0]);
/// slow.kill()?;
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[doc(alias = "connection.wait")]
pub fn wait<W: Waitable>(objects: &[W], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let sources: Vec<Source<'_>> = objects.iter().map(|o| o.source()).collect();
    let fds: Vec<(usize, BorrowedFd<'_>)> = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.0 {
            By::Fd(fd) => Some((i, *fd)),
            By::Shm { fd, .. } => fd.map(|f| (i, f)),
        })
        .collect();
    let points: Vec<&WaitPoint> = sources
        .iter()
        .filter_map(|s| match &s.0 {
            By::Shm { point, .. } => Some(*point),
            By::Fd(_) => None,
        })
        .collect();
    if points.is_empty() {
        if fds.is_empty() && deadline.is_none() {
            // Nothing can ever become ready: do not block for ever.
            return Ok(Vec::new());
        }
        // Descriptors only: one poll for the whole wait.
        return poll_ready(&fds, sources.len(), deadline);
    }
    let slice = if fds.is_empty() && points.len() <= futex::WAIT_ANY_MAX {
        None
    } else if points.len() <= futex::WAIT_ANY_MAX {
        Some(FD_SLICE)
    } else {
        // Only the first WAIT_ANY_MAX are slept on: look at the rest often.
        Some(Duration::from_millis(1))
    };
    loop {
        let ready = check(&sources, &fds)?;
        if !ready.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(pass_on(&sources, ready));
        }
        let words: Vec<_> = points.iter().map(|p| p.enter()).collect();
        // SeqCst: the Dekker pair with `WaitPoint::notify` (our registration,
        // then our re-check; its change, then its read of the registrations).
        fence(Ordering::SeqCst);
        let ready = check(&sources, &fds)?;
        if ready.is_empty() {
            let until = match (slice, deadline) {
                (Some(s), Some(d)) => Some(d.min(Instant::now() + s)),
                (Some(s), None) => Some(Instant::now() + s),
                (None, d) => d,
            };
            futex::wait_any(&words, until);
        }
        points.iter().for_each(|p| p.leave());
        if !ready.is_empty() {
            return Ok(pass_on(&sources, ready));
        }
    }
}

/// Indices of the ready sources, now.
fn check(sources: &[Source<'_>], fds: &[(usize, BorrowedFd<'_>)]) -> Result<Vec<usize>> {
    let mut ready: Vec<bool> = sources
        .iter()
        .map(|s| matches!(&s.0, By::Shm { ready, .. } if ready()))
        .collect();
    for i in poll_ready(fds, sources.len(), Some(Instant::now()))? {
        ready[i] = true;
    }
    Ok(ready
        .iter()
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| i)
        .collect())
}

/// We may have been woken by a `notify(1)` meant for a consumer blocked in
/// `get`/`recv` on the same object: hand it on, so that consumer does not
/// sleep with a message waiting.
fn pass_on(sources: &[Source<'_>], ready: Vec<usize>) -> Vec<usize> {
    for &i in &ready {
        if let By::Shm { point, .. } = &sources[i].0 {
            point.notify(1);
        }
    }
    ready
}

/// Polls `fds` (index into the caller's list, descriptor) until one is
/// ready or `deadline`; returns the indices with an event.
fn poll_ready(
    fds: &[(usize, BorrowedFd<'_>)],
    n: usize,
    deadline: Option<Instant>,
) -> Result<Vec<usize>> {
    if fds.is_empty() {
        if let Some(d) = deadline {
            std::thread::sleep(d.saturating_duration_since(Instant::now()));
        }
        return Ok(Vec::new());
    }
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(_, f)| PollFd::new(*f, PollFlags::POLLIN))
        .collect();
    loop {
        // Milliseconds rounded up, so we never return before the deadline.
        let t = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128);
                PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut pfds, t) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut out: Vec<usize> = pfds
        .iter()
        .zip(fds)
        .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
        .map(|(_, (i, _))| *i)
        .filter(|i| *i < n)
        .collect();
    out.dedup();
    Ok(out)
}
