//! The `Process` handle and its builder.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, ForkResult, Pid};

use super::spawn::SpawnJob;
use super::target::{self, Outcome, TargetOutput};
use super::{get_start_method, registry, StartMethod};
use crate::codec::Message;
use crate::sys::shm;
use crate::{Error, Result};

static COUNTER: AtomicU32 = AtomicU32::new(1);

/// Builder for a [`Process`]: name, daemon flag, start method, then the
/// target.
///
/// # Examples
///
/// ```
/// use ipc_core::process::{Process, StartMethod};
/// fn square(x: u64) -> u64 { x * x }
/// let mut p = Process::builder()
///     .name("squarer")
///     .start_method(StartMethod::Fork)
///     .target_fn(square, 7);
/// p.start()?;
/// assert_eq!(p.join()?, 49);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
}

impl ProcessBuilder {
    /// The process's name (default `Process-N`, as Python).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemon child is killed when its parent dies (even by `SIGKILL`)
    /// and terminated when the parent exits; a non-daemon child is waited
    /// for at exit.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The start method (default: [`get_start_method`]).
    pub fn start_method(mut self, m: StartMethod) -> Self {
        self.method = Some(m);
        self
    }

    /// A closure target (the `Fork` start method only: a closure cannot be
    /// found again in a re-executed program).
    pub fn target<R: TargetOutput, F: FnOnce() -> R + Send + 'static>(self, f: F) -> Process<R> {
        self.build(Job::Closure(Box::new(f)))
    }

    /// A `fn` target with its argument (every start method). Pass several
    /// arguments as a tuple.
    pub fn target_fn<A: Message + Send + 'static, R: TargetOutput>(
        self,
        f: fn(A) -> R,
        arg: A,
    ) -> Process<R> {
        self.build(Job::Fn(SpawnJob::new(f, arg)))
    }

    fn build<R: TargetOutput>(self, job: Job<R>) -> Process<R> {
        let name = self.name.unwrap_or_else(|| {
            // Relaxed: only uniqueness matters.
            format!("Process-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
        });
        Process {
            name,
            daemon: self.daemon,
            method: self.method.unwrap_or_else(get_start_method),
            state: State::New(job),
        }
    }
}

type Closure<R> = Box<dyn FnOnce() -> R + Send>;

enum Job<R: TargetOutput> {
    Closure(Closure<R>),
    Fn(SpawnJob<R>),
}

struct Running {
    pid: Pid,
    pidfd: OwnedFd,
    result: File,
}

struct Finished {
    pid: Pid,
    pidfd: OwnedFd,
    exitcode: i32,
    outcome: Option<Outcome>,
}

enum State<R: TargetOutput> {
    New(Job<R>),
    Running(Running),
    Finished(Finished),
    Gone,
    /// After [`Process::close`].
    Closed,
}

/// A child process running a target (Python's `multiprocessing.Process`).
///
/// `start` launches it; `join` waits and returns the target's value (or a
/// typed error: [`Error::Panicked`], [`Error::TargetFailed`],
/// [`Error::Killed`], [`Error::Exited`]). A `Process` dropped without
/// `join` is reaped later, never left a zombie.
///
/// # Examples
///
/// ```
/// use ipc_core::{process::Process, Error};
/// let mut p = Process::builder().target(|| -> Result<(), String> { Err("no".into()) });
/// p.start()?;
/// assert!(matches!(p.join(), Err(Error::TargetFailed { .. })));
/// assert_eq!(p.exitcode(), Some(1));
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub struct Process<R: TargetOutput = ()> {
    name: String,
    daemon: bool,
    method: StartMethod,
    state: State<R>,
}

impl<R: TargetOutput> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .finish()
    }
}

impl Process<()> {
    /// Starts building a process.
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::default()
    }
}

impl<R: TargetOutput> Process<R> {
    /// A process running closure `f` with default settings.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut p = ipc_core::process::Process::new(|| "hi".to_string());
    /// p.start()?;
    /// assert_eq!(p.join()?, "hi");
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn new<F: FnOnce() -> R + Send + 'static>(f: F) -> Process<R> {
        ProcessBuilder::default().target(f)
    }

    /// Starts the child.
    ///
    /// # Errors
    /// [`Error::AlreadyStarted`]; [`Error::InvalidArgument`] for a closure
    /// with the `Spawn` method; [`Error::InitNotCalled`] for `Spawn` without
    /// [`init`](super::init); [`Error::TargetNotFound`]; [`Error::Io`].
    pub fn start(&mut self) -> Result<()> {
        let job = match std::mem::replace(&mut self.state, State::Gone) {
            State::New(job) => job,
            State::Closed => {
                self.state = State::Closed;
                return Err(Error::Closed);
            }
            other => {
                self.state = other;
                return Err(Error::AlreadyStarted);
            }
        };
        let _span = crate::trace::span!(DEBUG, "ipc.process.start", name = %self.name, method = ?self.method);
        if self.method == StartMethod::Fork {
            if let Err(e) = super::fork_check::check(&self.name) {
                self.state = State::New(job);
                return Err(e);
            }
        }
        registry::reap_finished();
        let (name, daemon, method) = (self.name.clone(), self.daemon, self.method);
        let r = if daemon || method == StartMethod::ForkServer {
            // Children that die with us are created by a thread that lives
            // as long as we do (see `launcher`).
            super::launcher::run(move || launch(&name, daemon, method, job))
                .unwrap_or_else(|e| Err((crate::process::target::io(e), None)))
        } else {
            launch(&name, daemon, method, job)
        };
        match r {
            Ok(running) => {
                let via_server = self.method == StartMethod::ForkServer;
                registry::add(running.pid, &self.name, self.daemon, via_server);
                self.state = State::Running(running);
                Ok(())
            }
            Err((e, job)) => {
                self.state = job.map_or(State::Gone, State::New);
                Err(e)
            }
        }
    }

    /// Waits for the child to exit and returns its target's value.
    ///
    /// # Errors
    /// [`Error::NotStarted`], [`Error::Panicked`], [`Error::TargetFailed`],
    /// [`Error::Killed`], [`Error::Exited`], [`Error::Corrupt`] (an
    /// undecodable result).
    pub fn join(&mut self) -> Result<R::Value> {
        self.join_deadline(None)
    }

    /// As [`join`](Self::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if the child is still running, and as `join`.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R::Value> {
        self.join_deadline(Some(Instant::now() + timeout))
    }

    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<R::Value> {
        let _span =
            crate::trace::span!(DEBUG, "ipc.process.join", name = %self.name, pid = ?self.pid());
        if let State::Running(r) = &self.state {
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if super::wait(&[r.pidfd.as_fd()], Some(left))?.is_empty() {
                    return Err(Error::Timeout);
                }
            }
        }
        self.poll(true);
        match &self.state {
            State::New(_) => Err(Error::NotStarted),
            State::Running(_) => Err(Error::Timeout),
            State::Finished(f) => self.outcome_of(f),
            State::Gone => Err(Error::NotStarted),
            State::Closed => Err(Error::Closed),
        }
    }

    fn outcome_of(&self, f: &Finished) -> Result<R::Value> {
        let name = self.name.clone();
        match &f.outcome {
            Some(Outcome::Ok(bytes)) if f.exitcode == 0 => target::value(bytes),
            Some(Outcome::Err(m)) => Err(Error::TargetFailed {
                name,
                message: m.clone(),
            }),
            Some(Outcome::Panic(m)) => Err(Error::Panicked {
                name,
                message: m.clone(),
            }),
            _ if f.exitcode < 0 => Err(Error::Killed {
                name,
                signal: -f.exitcode,
            }),
            Some(Outcome::Setup(m)) => Err(Error::Exited {
                name,
                code: f.exitcode,
                detail: Some(m.clone()),
            }),
            _ => Err(Error::Exited {
                name,
                code: f.exitcode,
                detail: None,
            }),
        }
    }

    /// Reaps the child if it has exited (or waits when `block`).
    fn poll(&mut self, block: bool) {
        let State::Running(r) = &mut self.state else {
            return;
        };
        if block {
            // Wait on the pidfd first, holding no lock: a fork-server child's
            // exit code comes through the server's shared socket, which must
            // not stay locked while a long-running child works.
            let _ = super::wait(&[r.pidfd.as_fd()], None);
        }
        let Some(exitcode) = registry::reap(r.pid, block) else {
            return;
        };
        registry::remove(r.pid);
        let outcome = target::read(&mut r.result).ok().flatten();
        // A fork-server child whose server died before reporting: the
        // outcome it wrote tells how it ended; no outcome means it was killed.
        let exitcode = match (exitcode, &outcome) {
            (registry::UNKNOWN, Some(o)) => o.exit_code(),
            (registry::UNKNOWN, None) => -libc::SIGKILL,
            (c, _) => c,
        };
        let State::Running(r) = std::mem::replace(&mut self.state, State::Gone) else {
            return;
        };
        self.state = State::Finished(Finished {
            pid: r.pid,
            pidfd: r.pidfd,
            exitcode,
            outcome,
        });
    }

    /// Whether the child is running (reaps it if it has exited).
    pub fn is_alive(&mut self) -> bool {
        self.poll(false);
        matches!(self.state, State::Running(_))
    }

    /// The exit code: `None` while running or before start; 0 on success;
    /// 1 if the target panicked or returned `Err`; `-N` if killed by signal
    /// N (as Python).
    pub fn exitcode(&mut self) -> Option<i32> {
        self.poll(false);
        match &self.state {
            State::Finished(f) => Some(f.exitcode),
            _ => None,
        }
    }

    /// The child's pid, once started.
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Running(r) => Some(r.pid.as_raw() as u32),
            State::Finished(f) => Some(f.pid.as_raw() as u32),
            _ => None,
        }
    }

    /// A descriptor that becomes readable when the child exits (a pidfd),
    /// for [`wait`](super::wait) or any `poll` loop.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        match &self.state {
            State::Running(r) => Some(r.pidfd.as_fd()),
            State::Finished(f) => Some(f.pidfd.as_fd()),
            _ => None,
        }
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Sends `SIGTERM` (Python's `terminate()`); no-op once it has exited.
    ///
    /// # Errors
    /// [`Error::NotStarted`]; [`Error::Io`] if the signal cannot be sent.
    pub fn terminate(&mut self) -> Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// Sends `SIGKILL` (Python's `kill()`); no-op once it has exited.
    ///
    /// # Errors
    /// As [`terminate`](Self::terminate).
    pub fn kill(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL)
    }

    fn signal(&mut self, sig: Signal) -> Result<()> {
        self.poll(false);
        match &self.state {
            // Through the pidfd: immune to pid reuse even for fork-server
            // children, which the server (not we) reaps.
            State::Running(r) => pidfd_send_signal(&r.pidfd, sig),
            State::Finished(_) => Ok(()),
            State::Closed => Err(Error::Closed),
            _ => Err(Error::NotStarted),
        }
    }

    /// Releases what the handle holds (the child's pidfd and result file;
    /// Python's `close()`). A child that has not started is simply
    /// forgotten; closing twice is allowed. Afterwards `start`, `join`,
    /// `terminate` and `kill` fail with [`Error::Closed`], `is_alive` is
    /// false, and `exitcode`, `pid` and `sentinel` are `None`.
    ///
    /// # Errors
    /// [`Error::StillRunning`] if the child has not exited (nothing is
    /// released then).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::{process::Process, Error};
    /// let mut p = Process::new(|| ());
    /// p.start()?;
    /// p.join()?;
    /// p.close()?;
    /// assert!(matches!(p.join(), Err(Error::Closed)));
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn close(&mut self) -> Result<()> {
        self.poll(false);
        if matches!(self.state, State::Running(_)) {
            return Err(Error::StillRunning);
        }
        self.state = State::Closed;
        Ok(())
    }
}

impl<R: TargetOutput> Drop for Process<R> {
    fn drop(&mut self) {
        if let State::Running(r) = &self.state {
            registry::detach(r.pid);
        }
    }
}

fn launch<R: TargetOutput>(
    name: &str,
    daemon: bool,
    method: StartMethod,
    job: Job<R>,
) -> std::result::Result<Running, (Error, Option<Job<R>>)> {
    let result = match shm::memfd("ipc-result") {
        Ok(f) => f,
        Err(e) => return Err((e.into(), Some(job))),
    };
    match (method, job) {
        (StartMethod::Fork, job) => {
            let parent = super::ParentId::of_current();
            // SAFETY: the child runs only the target (and `_exit`s); it
            // never returns into the caller's frames.
            let pid = match unsafe { fork() } {
                Ok(ForkResult::Parent { child }) => child,
                Ok(ForkResult::Child) => {
                    let mut result = result;
                    child_setup(name, daemon, &parent);
                    let outcome = match job {
                        Job::Closure(f) => target::run(f),
                        Job::Fn(j) => j.run_here(),
                    };
                    let _ = target::write(&mut result, &outcome);
                    // SAFETY: ends the child without the parent's destructors.
                    unsafe { libc::_exit(outcome.exit_code()) }
                }
                Err(e) => return Err((e.into(), Some(job))),
            };
            match watch(pid) {
                Ok(pidfd) => Ok(Running { pid, pidfd, result }),
                Err(e) => Err((e, None)),
            }
        }
        (StartMethod::Spawn | StartMethod::ForkServer, Job::Closure(f)) => Err((
            Error::InvalidArgument("a closure target needs the Fork start method; use target_fn"),
            Some(Job::Closure(f)),
        )),
        (m @ (StartMethod::Spawn | StartMethod::ForkServer), Job::Fn(j)) => {
            let started = if m == StartMethod::Spawn {
                j.spawn(name, daemon, &result)
                    .and_then(|pid| Ok((pid, watch(pid)?)))
            } else {
                j.via_server(name, daemon, &result)
            };
            match started {
                Ok((pid, pidfd)) => Ok(Running { pid, pidfd, result }),
                Err(e) => Err((e, Some(Job::Fn(j)))),
            }
        }
    }
}

fn pidfd_send_signal(pidfd: &OwnedFd, sig: Signal) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal with a valid pidfd, a valid signal, no
    // siginfo and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match nix::errno::Errno::result(r) {
        // ESRCH: it has exited already; nothing to signal.
        Ok(_) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A pidfd for a child we just created (unreaped, so the pid is still
/// ours). If the kernel refuses (Linux < 5.3), the child is killed and
/// reaped and the error returned: no child runs unwatched.
fn watch(pid: Pid) -> Result<OwnedFd> {
    shm::pidfd_open(pid.as_raw() as u32).map_err(|e| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        Error::from(e)
    })
}

/// First thing a forked child does: name itself, forget its parent's
/// children, and for a daemon, die with the parent.
fn child_setup(name: &str, daemon: bool, parent: &super::ParentId) {
    super::set_current(name.to_owned(), daemon, parent.clone());
    if daemon {
        super::child::set_parent_death_signal(parent.pid());
    }
}
