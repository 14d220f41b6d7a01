//! `RedisPoolExecutor` and its `Future`s: `concurrent.futures` across
//! hosts.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_core::codec::Message;
use ipc_core::pool::remote::Code;
use ipc_core::pool::{AnyFuture, FutureKey};
use ipc_core::process::TargetOutput;

use crate::client::{Done, Failure, Shared};
use crate::wire::encode;
use crate::{Builder, Error, Result};

/// An executor whose calls run in workers on any host, through a Redis
/// stream (mpi4py's `MPIPoolExecutor`, without its hang: a worker that
/// dies has its call re-delivered, and after the delivery limit the call
/// fails with [`ipc_core::Error::WorkerDied`]).
///
/// Calls are `fn` items of this program; workers are this same program
/// started with [`serve_worker`](crate::serve_worker) or
/// `--ipc-worker URL NAME` (see [`init`](crate::init)). Its futures mix
/// with local ones in [`ipc_core::pool::wait`] and
/// [`ipc_core::pool::as_completed`].
///
/// # Examples
///
/// ```
/// fn cube(x: i64) -> i64 { x * x * x }
/// ipc_redis::init(); // the workers started below run here
/// # let redis = ipc_redis::testing::Redis::start().unwrap();
/// # let url = redis.url();
/// # let _w = ipc_redis::testing::Worker::start(&url, "jobs", 1).unwrap();
/// let ex = ipc_redis::RedisPoolExecutor::connect(&url, "jobs")?;
/// assert_eq!(ex.submit(cube, 3)?.result(None)?, 27);
/// let all: Vec<i64> = ex.map(cube, 1..=3, 1)?.collect::<Result<_, _>>()?;
/// assert_eq!(all, vec![1, 8, 27]);
/// ex.shutdown(true, false);
/// # Ok::<(), ipc_redis::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisPoolExecutor {
    shared: Arc<Shared>,
}

/// The eventual result of a submitted call (Python's `Future`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
/// ipc_redis::init();
/// # let redis = ipc_redis::testing::Redis::start().unwrap();
/// # let url = redis.url();
/// let ex = ipc_redis::RedisPoolExecutor::connect(&url, "jobs")?;
/// let f = ex.submit(nap, 10)?; // no worker yet: it waits in the stream
/// assert!(matches!(f.result(Some(Duration::from_millis(100))),
///     Err(ipc_redis::Error::Core(ipc_core::Error::Timeout))));
/// # let _w = ipc_redis::testing::Worker::start(&url, "jobs", 1).unwrap();
/// assert_eq!(f.result(None)?, 10); // a worker came and took it
/// assert!(f.done());
/// # Ok::<(), ipc_redis::Error>(())
/// ```
pub struct Future<T> {
    shared: Arc<Shared>,
    id: u64,
    _t: PhantomData<fn() -> T>,
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
    /// [`ipc_core::Error::Timeout`], [`ipc_core::Error::Cancelled`], the
    /// call's own error ([`ipc_core::Error::Panicked`],
    /// [`ipc_core::Error::TargetFailed`]), [`ipc_core::Error::WorkerDied`]
    /// (all in [`Error::Core`]); [`Error::WrongExecutable`];
    /// [`Error::ConnectionLost`].
    pub fn result(&self, timeout: Option<Duration>) -> Result<T> {
        match self
            .shared
            .wait_all(&[self.id], timeout.map(|t| Instant::now() + t))
        {
            Some(d) => self.shared.value(&d[0]),
            None => Err(Error::Core(ipc_core::Error::Timeout)),
        }
    }

    /// The call's error, if it failed (Python's `exception(timeout)`).
    ///
    /// # Errors
    /// [`ipc_core::Error::Timeout`] if it is not done in time.
    pub fn exception(&self, timeout: Option<Duration>) -> Result<Option<Error>> {
        match self
            .shared
            .wait_all(&[self.id], timeout.map(|t| Instant::now() + t))
        {
            Some(d) => Ok(d[0].as_ref().err().map(|f| f.to_error(&self.shared.ep.url))),
            None => Err(Error::Core(ipc_core::Error::Timeout)),
        }
    }

    /// Calls `f` with the result once the call is done (at once if it
    /// is), in the client's reply thread.
    pub fn add_done_callback(&self, f: impl FnOnce(Result<T>) + Send + 'static) {
        let url = self.shared.ep.url.clone();
        self.shared.on_done(
            self.id,
            Box::new(move |d: &Done| {
                f(match d {
                    Ok(b) => crate::wire::value(b),
                    Err(e) => Err(e.to_error(&url)),
                })
            }),
        );
    }
}

impl<T> Future<T> {
    /// Whether the call finished, failed or was cancelled.
    pub fn done(&self) -> bool {
        self.shared.done(self.id)
    }

    /// Whether a worker holds the call now (one round trip to Redis).
    pub fn running(&self) -> bool {
        self.shared.running(self.id)
    }

    /// Whether the call was cancelled.
    pub fn cancelled(&self) -> bool {
        self.shared.result_of(self.id) == Some(Err(Failure::Cancelled))
    }

    /// Cancels the call if no worker took it yet (its stream entry is
    /// deleted, atomically with that check); returns whether it is
    /// cancelled (Python's `cancel`). `false` if Redis cannot be reached.
    pub fn cancel(&self) -> bool {
        self.shared.cancel(self.id).unwrap_or(false)
    }
}

impl<T> AnyFuture for Future<T> {
    fn key(&self) -> FutureKey {
        FutureKey::new(self.shared.clone(), self.id)
    }
}

impl<T> Drop for Future<T> {
    fn drop(&mut self) {
        self.shared.forget(&[self.id]);
    }
}

impl RedisPoolExecutor {
    /// Connects to the pool `name` at `url`
    /// (`redis://[user[:password]@]host[:port][/db]`) with default
    /// settings (see [`Builder`]).
    ///
    /// # Errors
    /// [`Error::Unreachable`] (naming the URL), [`Error::Auth`],
    /// [`Error::InvalidUrl`]; [`ipc_core::Error::InvalidArgument`] for a
    /// name outside `[A-Za-z0-9_.:-]`.
    pub fn connect(url: &str, name: &str) -> Result<RedisPoolExecutor> {
        Builder::new(url, name).executor()
    }

    /// Settings before connecting.
    pub fn builder(url: &str, name: &str) -> Builder {
        Builder::new(url, name)
    }

    pub(crate) fn from_builder(b: Builder) -> Result<RedisPoolExecutor> {
        Ok(RedisPoolExecutor {
            shared: Shared::connect(&b.url, &b.name, b.settings)?,
        })
    }

    /// Worker processes alive now (from the workers' heartbeats).
    ///
    /// # Errors
    /// Redis errors.
    pub fn live_processes(&self) -> Result<usize> {
        self.shared.live_processes()
    }

    /// Schedules `f(arg)` (Python's `submit`). With no worker alive the
    /// call waits in the stream for one.
    ///
    /// # Errors
    /// [`ipc_core::Error::Closed`] after `shutdown`;
    /// [`ipc_core::Error::TargetNotFound`];
    /// [`ipc_core::Error::MessageTooLarge`]; Redis errors.
    pub fn submit<A: Message + Send + 'static, R: TargetOutput>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<Future<R::Value>> {
        let id = self.shared.submit(Code::single(f)?, encode(&arg)?, None)?;
        Ok(self.future(id))
    }

    fn future<T>(&self, id: u64) -> Future<T> {
        Future {
            shared: self.shared.clone(),
            id,
            _t: PhantomData,
        }
    }

    /// `f` over `items`, results in input order (Python's `map`): all
    /// calls are submitted now, in chunks of `chunksize` items.
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
    /// `Err(Timeout)` if a result is not ready `timeout` after this call,
    /// then cancels the calls not yet taken and ends.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
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
        let mut tasks = Vec::new();
        let mut it = items.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<A> = it.by_ref().take(chunksize.max(1)).collect();
            tasks.push((code, encode(&chunk)?, None));
        }
        let ids = self.shared.submit_many(tasks)?;
        Ok(ExecutorMap {
            futures: ids.into_iter().map(|id| self.future(id)).collect(),
            ready: VecDeque::new(),
            deadline,
        })
    }

    /// Stops accepting calls (Python's `shutdown`). With `cancel_futures`,
    /// cancels the calls no worker took yet. With `wait`, waits until
    /// every outstanding call is done: with no worker alive, that is until
    /// one comes (or Redis is lost).
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.shared.close();
        if cancel_futures {
            self.shared.cancel_pending();
        }
        if wait {
            self.shared.wait_idle();
        }
    }
}

impl Drop for RedisPoolExecutor {
    fn drop(&mut self) {
        // Not Python's `with`: waiting here could wait for a worker that
        // never comes. Futures still held still complete.
        self.shared.close();
    }
}

/// The iterator of [`RedisPoolExecutor::map`].
pub struct ExecutorMap<T> {
    futures: VecDeque<Future<Vec<T>>>,
    ready: VecDeque<T>,
    deadline: Option<Instant>,
}

impl<T> std::fmt::Debug for ExecutorMap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorMap")
            .field("chunks_left", &self.futures.len())
            .finish()
    }
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
                Err(Error::Core(ipc_core::Error::Timeout)) => {
                    f.cancel();
                    for f in self.futures.drain(..) {
                        f.cancel();
                    }
                    return Some(Err(Error::Core(ipc_core::Error::Timeout)));
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
