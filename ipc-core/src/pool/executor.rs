//! `ProcessPoolExecutor` (Python's `concurrent.futures.ProcessPoolExecutor`);
//! its `Future`s and `wait` / `as_completed` are in `future.rs`.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::Core;
use super::future::Future;
use super::pool::PoolBuilder;
use super::task::{encode, Code};
use crate::codec::Message;
use crate::process::{StartMethod, TargetOutput};
use crate::{Error, Result};

/// A pool executing submitted calls in worker processes (Python's
/// `concurrent.futures.ProcessPoolExecutor`).
///
/// Calls wait in the parent until a worker is about to be free, so a
/// [`Future::cancel`] succeeds while the call has not started. A worker
/// that dies breaks the executor: every pending future fails with
/// [`Error::BrokenPool`] (Python's `BrokenProcessPool`).
///
/// # Examples
///
/// ```
/// use ipc_core::pool::ProcessPoolExecutor;
/// fn cube(x: i64) -> i64 { x * x * x }
/// let ex = ProcessPoolExecutor::new(2)?;
/// let f = ex.submit(cube, 3)?;
/// assert_eq!(f.result(None)?, 27);
/// let all: Vec<i64> = ex.map(cube, 1..=3, 1)?.collect::<Result<_, _>>()?;
/// assert_eq!(all, vec![1, 8, 27]);
/// ex.shutdown(true, false);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub struct ProcessPoolExecutor {
    core: Arc<Core>,
}

impl std::fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.core.cfg.processes)
            .finish()
    }
}

/// Builder for a [`ProcessPoolExecutor`].
#[derive(Default)]
pub struct ExecutorBuilder {
    inner: PoolBuilder,
}

impl ExecutorBuilder {
    /// Number of workers (default: `cpu_count()`).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.inner = self.inner.processes(n);
        self
    }
    /// Replace each worker after this many calls (Python's `max_tasks_per_child`).
    #[doc(alias = "maxtasksperchild")]
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.inner = self.inner.max_tasks_per_child(n);
        self
    }
    /// Largest encoded task argument, as [`PoolBuilder::max_message_size`].
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.inner = self.inner.max_message_size(n);
        self
    }
    /// Run `f(arg)` once in each worker first.
    pub fn initializer<A: Message + Send + 'static, R: TargetOutput>(
        mut self,
        f: fn(A) -> R,
        arg: A,
    ) -> Self {
        self.inner = self.inner.initializer(f, arg);
        self
    }
    /// Start method of the workers.
    pub fn start_method(mut self, m: StartMethod) -> Self {
        self.inner = self.inner.start_method(m);
        self
    }
    /// Starts the workers.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn build(self) -> Result<ProcessPoolExecutor> {
        Ok(ProcessPoolExecutor {
            core: Core::start(self.inner.config(true)?)?,
        })
    }
}

impl ProcessPoolExecutor {
    /// An executor with `max_workers` workers.
    ///
    /// # Errors
    /// As [`ExecutorBuilder::build`].
    pub fn new(max_workers: usize) -> Result<ProcessPoolExecutor> {
        ExecutorBuilder::default().max_workers(max_workers).build()
    }

    /// A builder (max_workers, max_tasks_per_child, initializer, start method).
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// Pids of the current workers.
    pub fn pids(&self) -> Vec<u32> {
        self.core.pids()
    }

    /// Schedules `f(arg)` (Python's `submit`).
    ///
    /// # Errors
    /// [`Error::Closed`] after `shutdown`; [`Error::BrokenPool`];
    /// [`Error::TargetNotFound`]; [`Error::MessageTooLarge`].
    pub fn submit<A: Message + Send + 'static, R: TargetOutput>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<Future<R::Value>> {
        let id = self.core.new_id();
        self.core
            .submit(Code::single(f)?.task(id, encode(&arg)?), None)?;
        Ok(Future {
            core: self.core.clone(),
            id,
            _t: PhantomData,
        })
    }

    /// `f` over `items`, results in input order (Python's `map`): all calls
    /// are submitted now, in chunks of `chunksize` items.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub fn map<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<ExecutorMap<R::Value>>
    where
        A: Message + Send + 'static,
        R: TargetOutput,
        I: IntoIterator<Item = A>,
    {
        self.map_deadline(f, items, chunksize, None)
    }

    /// As [`map`](Self::map), with Python's `timeout`: the iterator yields
    /// `Err(`[`Error::Timeout`]`)` if a result is not ready `timeout` after
    /// this call, then cancels the calls not yet started and ends.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use ipc_core::{pool::ProcessPoolExecutor, Error};
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let ex = ProcessPoolExecutor::new(1)?;
    /// let mut it = ex.map_timeout(nap, [1, 5_000, 1], 1, Duration::from_secs(2))?;
    /// assert_eq!(it.next().unwrap()?, 1);
    /// assert!(matches!(it.next(), Some(Err(Error::Timeout))));
    /// assert!(it.next().is_none());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn map_timeout<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        timeout: Duration,
    ) -> Result<ExecutorMap<R::Value>>
    where
        A: Message + Send + 'static,
        R: TargetOutput,
        I: IntoIterator<Item = A>,
    {
        // Counted from the call, as Python's (not from each `next`).
        self.map_deadline(f, items, chunksize, Some(Instant::now() + timeout))
    }

    fn map_deadline<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        deadline: Option<Instant>,
    ) -> Result<ExecutorMap<R::Value>>
    where
        A: Message + Send + 'static,
        R: TargetOutput,
        I: IntoIterator<Item = A>,
    {
        let code = Code::chunk(f)?;
        let mut futures = VecDeque::new();
        let mut it = items.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<A> = it.by_ref().take(chunksize.max(1)).collect();
            let id = self.core.new_id();
            self.core.submit(code.task(id, encode(&chunk)?), None)?;
            futures.push_back(Future {
                core: self.core.clone(),
                id,
                _t: PhantomData,
            });
        }
        Ok(ExecutorMap {
            futures,
            ready: VecDeque::new(),
            deadline,
        })
    }

    /// Stops accepting calls (Python's `shutdown`). With `cancel_futures`,
    /// cancels the calls not yet started. The workers finish the other
    /// calls, then exit; with `wait`, this waits for that, else it returns
    /// at once (the futures still complete).
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.core.close();
        if cancel_futures {
            self.core.cancel_pending();
        }
        if wait {
            let _ = self.core.join();
        }
    }
}

impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        // Python's `with` block: shut down and wait.
        self.core.close();
        if self.core.broken().is_none() {
            let _ = self.core.join();
        }
        self.core.terminate();
    }
}

/// The iterator of [`ProcessPoolExecutor::map`].
pub struct ExecutorMap<T> {
    futures: VecDeque<Future<Vec<T>>>,
    ready: VecDeque<T>,
    /// `map_timeout`'s deadline.
    deadline: Option<Instant>,
}

impl<T: Message> Iterator for ExecutorMap<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(v) = self.ready.pop_front() {
                return Some(Ok(v));
            }
            let f = self.futures.pop_front()?;
            let left = self
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            match f.result(left) {
                Ok(v) => self.ready.extend(v),
                Err(Error::Timeout) => {
                    // Python's iterator ends here, cancelling the rest.
                    f.cancel();
                    for f in self.futures.drain(..) {
                        f.cancel();
                    }
                    return Some(Err(Error::Timeout));
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
