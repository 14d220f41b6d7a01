//! [`Future`] (Python's `concurrent.futures.Future`) and the functions
//! that wait on several: [`wait`] and [`as_completed`], over any
//! [`FutureSource`].

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{Core, Done};
use super::task::Failure;
use crate::codec::Message;
use crate::{Error, Result};

/// The eventual result of a submitted call (Python's `Future`).
pub struct Future<T> {
    pub(super) core: Arc<Core>,
    pub(super) id: u64,
    pub(super) _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Future")
            .field("id", &self.id)
            .field("done", &self.done())
            .finish()
    }
}

impl<T: Message> Future<T> {
    /// Waits for the call's value (Python's `result(timeout)`).
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Cancelled`]; the call's own error;
    /// [`Error::BrokenPool`].
    pub fn result(&self, timeout: Option<Duration>) -> Result<T> {
        match self
            .core
            .wait_all(&[self.id], timeout.map(|t| Instant::now() + t))
        {
            Some(mut d) => match d.pop() {
                Some(Ok(b)) => crate::process::target::value(&b),
                Some(Err(f)) => Err(f.to_error()),
                None => Err(Error::BrokenPool("no result".into())),
            },
            None => Err(Error::Timeout),
        }
    }

    /// The call's error, if it failed (Python's `exception(timeout)`).
    ///
    /// # Errors
    /// [`Error::Timeout`] if it is not done in time.
    pub fn exception(&self, timeout: Option<Duration>) -> Result<Option<Error>> {
        match self
            .core
            .wait_all(&[self.id], timeout.map(|t| Instant::now() + t))
        {
            Some(mut d) => Ok(d.pop().and_then(|r| r.err()).map(|f| f.to_error())),
            None => Err(Error::Timeout),
        }
    }

    /// Calls `f` with the result once the call is done (at once if it is).
    pub fn add_done_callback(&self, f: impl FnOnce(Result<T>) + Send + 'static) {
        self.core.on_done(
            self.id,
            Box::new(move |d: &Done| {
                f(match d {
                    Ok(b) => crate::process::target::value(b),
                    Err(e) => Err(e.to_error()),
                })
            }),
        );
    }
}

impl<T> Future<T> {
    /// Whether the call finished, failed or was cancelled.
    pub fn done(&self) -> bool {
        self.core.is_done(self.id)
    }

    /// Whether the call was handed to a worker and is not done.
    pub fn running(&self) -> bool {
        self.core.is_queued(self.id)
    }

    /// Whether the call was cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(self.core.result_of(self.id), Some(Err(Failure::Cancelled)))
    }

    /// Cancels the call if it has not started; returns whether it is
    /// cancelled (Python's `cancel`).
    pub fn cancel(&self) -> bool {
        self.core.cancel(self.id)
    }
}

impl<T> Drop for Future<T> {
    fn drop(&mut self) {
        self.core.forget(&[self.id]);
    }
}

/// Any future, for [`wait`] and [`as_completed`] over futures of
/// different value types (and of different pools, local or remote).
pub trait AnyFuture {
    /// Which pool and task this future follows.
    fn key(&self) -> FutureKey;
}

/// What [`wait`] and [`as_completed`] ask of the pool behind a future,
/// by task id: implemented by the local pools, and by any other source of
/// futures (the remote pools of `ipc-redis`), so that futures of several
/// sources mix in one call.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Instant;
/// use ipc_core::pool::{wait, AnyFuture, FutureKey, FutureSource, ReturnWhen};
///
/// // A source whose even tasks are done.
/// struct Evens;
/// impl FutureSource for Evens {
///     fn is_done(&self, id: u64) -> bool { id % 2 == 0 }
///     fn is_failed(&self, _: u64) -> bool { false }
///     fn wait_any(&self, _: &[u64], _: Option<Instant>) {}
/// }
/// struct Fut(u64);
/// impl AnyFuture for Fut {
///     fn key(&self) -> FutureKey { FutureKey::new(Arc::new(Evens), self.0) }
/// }
/// let r = wait(&[&Fut(1), &Fut(2)], Some(std::time::Duration::ZERO), ReturnWhen::AllCompleted);
/// assert_eq!((r.done, r.not_done), (vec![1], vec![0]));
/// ```
pub trait FutureSource: Send + Sync {
    /// Whether task `id` is done (finished, failed or cancelled).
    fn is_done(&self, id: u64) -> bool;
    /// Whether task `id` is done without a value (failed or cancelled).
    fn is_failed(&self, id: u64) -> bool;
    /// Waits until one of `ids` is done, or `deadline` passes (returning
    /// early is allowed: the callers check again).
    fn wait_any(&self, ids: &[u64], deadline: Option<Instant>);
}

impl FutureSource for Core {
    fn is_done(&self, id: u64) -> bool {
        Core::is_done(self, id)
    }
    fn is_failed(&self, id: u64) -> bool {
        matches!(self.result_of(id), Some(Err(_)))
    }
    fn wait_any(&self, ids: &[u64], deadline: Option<Instant>) {
        Core::wait_any(self, ids, deadline);
    }
}

/// Identifies a future's source and task (opaque).
#[derive(Clone)]
pub struct FutureKey {
    src: Arc<dyn FutureSource>,
    id: u64,
}

impl FutureKey {
    /// The key of task `id` of `source` (for a [`FutureSource`] of one's
    /// own; the local futures make theirs).
    ///
    /// # Examples
    ///
    /// See [`FutureSource`].
    pub fn new(source: Arc<dyn FutureSource>, id: u64) -> FutureKey {
        FutureKey { src: source, id }
    }

    fn same_source(&self, other: &FutureKey) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.src), Arc::as_ptr(&other.src))
    }
}

impl std::fmt::Debug for FutureKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FutureKey").field("id", &self.id).finish()
    }
}

impl<T> AnyFuture for Future<T> {
    fn key(&self) -> FutureKey {
        FutureKey {
            src: self.core.clone(),
            id: self.id,
        }
    }
}

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any future is done.
    FirstCompleted,
    /// As soon as any future fails (or all are done).
    FirstException,
    /// When all are done.
    AllCompleted,
}

/// Indices of the futures given to [`wait`], split by state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DoneAndNotDone {
    /// Done (finished, failed or cancelled).
    pub done: Vec<usize>,
    /// Still pending or running.
    pub not_done: Vec<usize>,
}

fn split(keys: &[FutureKey]) -> DoneAndNotDone {
    let mut r = DoneAndNotDone::default();
    for (i, k) in keys.iter().enumerate() {
        if k.src.is_done(k.id) {
            r.done.push(i)
        } else {
            r.not_done.push(i)
        }
    }
    r
}

/// Waits for futures (Python's `concurrent.futures.wait`); returns the
/// indices of those done and not done.
///
/// # Examples
///
/// ```
/// use ipc_core::pool::{wait, ProcessPoolExecutor, ReturnWhen};
/// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
/// let ex = ProcessPoolExecutor::new(2)?;
/// let (a, b) = (ex.submit(nap, 10)?, ex.submit(nap, 2000)?);
/// let r = wait(&[&a, &b], None, ReturnWhen::FirstCompleted);
/// assert_eq!(r.done, vec![0]);
/// ex.shutdown(false, true);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn wait(fs: &[&dyn AnyFuture], timeout: Option<Duration>, when: ReturnWhen) -> DoneAndNotDone {
    let deadline = timeout.map(|t| Instant::now() + t);
    let keys: Vec<FutureKey> = fs.iter().map(|f| f.key()).collect();
    loop {
        let r = split(&keys);
        let failed = r.done.iter().any(|&i| keys[i].src.is_failed(keys[i].id));
        let enough = match when {
            ReturnWhen::FirstCompleted => !r.done.is_empty(),
            ReturnWhen::FirstException => failed || r.not_done.is_empty(),
            ReturnWhen::AllCompleted => r.not_done.is_empty(),
        } || r.not_done.is_empty();
        if enough || deadline.is_some_and(|d| Instant::now() >= d) {
            return r;
        }
        // Drive the first not-done future's source for a short slice.
        let first = &keys[r.not_done[0]];
        let ids: Vec<u64> = r
            .not_done
            .iter()
            .map(|&i| &keys[i])
            .filter(|k| k.same_source(first))
            .map(|k| k.id)
            .collect();
        let slice = Instant::now() + Duration::from_millis(5);
        first
            .src
            .wait_any(&ids, Some(deadline.map_or(slice, |d| d.min(slice))));
    }
}

/// Yields the indices of `fs` in the order they complete (Python's
/// `as_completed`); after `timeout`, yields `Err(Timeout)` once and stops.
///
/// # Examples
///
/// ```
/// use ipc_core::pool::{as_completed, ProcessPoolExecutor};
/// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
/// let ex = ProcessPoolExecutor::new(2)?;
/// let fs = [ex.submit(nap, 300)?, ex.submit(nap, 10)?];
/// let order: Vec<usize> = as_completed(&[&fs[0], &fs[1]], None).collect::<Result<_, _>>()?;
/// assert_eq!(order, vec![1, 0]);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn as_completed(fs: &[&dyn AnyFuture], timeout: Option<Duration>) -> AsCompleted {
    AsCompleted {
        keys: fs.iter().map(|f| f.key()).collect(),
        left: (0..fs.len()).collect(),
        deadline: timeout.map(|t| Instant::now() + t),
        timed_out: false,
    }
}

/// The iterator of [`as_completed`].
#[derive(Debug)]
pub struct AsCompleted {
    keys: Vec<FutureKey>,
    left: VecDeque<usize>,
    deadline: Option<Instant>,
    timed_out: bool,
}

impl Iterator for AsCompleted {
    type Item = Result<usize>;

    fn next(&mut self) -> Option<Result<usize>> {
        if self.left.is_empty() || self.timed_out {
            return None;
        }
        loop {
            if let Some(pos) = self
                .left
                .iter()
                .position(|&i| self.keys[i].src.is_done(self.keys[i].id))
            {
                return self.left.remove(pos).map(Ok);
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.timed_out = true;
                return Some(Err(Error::Timeout));
            }
            // Drive the first left future's source for a short slice.
            let first = &self.keys[self.left[0]];
            let ids: Vec<u64> = self
                .left
                .iter()
                .map(|&i| &self.keys[i])
                .filter(|k| k.same_source(first))
                .map(|k| k.id)
                .collect();
            let slice = Instant::now() + Duration::from_millis(5);
            first
                .src
                .wait_any(&ids, Some(self.deadline.map_or(slice, |d| d.min(slice))));
        }
    }
}
