//! `RedisPool`: `multiprocessing.Pool`'s calls, run by workers on any
//! host.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_core::codec::Message;
use ipc_core::pool::remote::Code;
use ipc_core::process::TargetOutput;

use crate::client::{Done, Shared};
use crate::wire::encode;
use crate::{Builder, Error, Result};

/// A pool of workers on any host, through a Redis stream (Ray's
/// `ray.util.multiprocessing.Pool`, on Redis). The same names and error
/// types as [`ipc_core::pool::Pool`].
///
/// A task that panics or returns `Err` fails only its caller. A worker
/// killed mid-task has its task re-delivered to a live worker after the
/// visibility timeout; after the delivery limit the task fails with
/// [`ipc_core::Error::WorkerDied`]. Redis lost: every waiting call fails
/// with [`Error::ConnectionLost`] within the connect timeout.
///
/// # Examples
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// ipc_redis::init(); // the workers started below run here
/// # let redis = ipc_redis::testing::Redis::start().unwrap();
/// # let url = redis.url();
/// # let _w = ipc_redis::testing::Worker::start(&url, "jobs", 2).unwrap();
/// let pool = ipc_redis::RedisPool::connect(&url, "jobs")?;
/// assert_eq!(pool.map(square, 0..5, None)?, vec![0, 1, 4, 9, 16]);
/// assert_eq!(pool.apply(square, 7)?, 49);
/// let mut odd: Vec<u64> = pool.imap_unordered(square, [1, 3], 1).collect::<Result<_, _>>()?;
/// odd.sort();
/// assert_eq!(odd, vec![1, 9]);
/// # Ok::<(), ipc_redis::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisPool {
    shared: Arc<Shared>,
}

/// The result of an `apply_async` or `map_async` (Python's `AsyncResult`).
///
/// # Examples
///
/// ```
/// fn add((a, b): (u32, u32)) -> u32 { a + b }
/// ipc_redis::init();
/// # let redis = ipc_redis::testing::Redis::start().unwrap();
/// # let url = redis.url();
/// # let _w = ipc_redis::testing::Worker::start(&url, "jobs", 1).unwrap();
/// let pool = ipc_redis::RedisPool::connect(&url, "jobs")?;
/// let r = pool.map_async(add, [(1, 2), (3, 4)], None)?; // Python's starmap_async
/// assert!(r.wait(None));
/// assert!(r.ready() && r.successful()?);
/// assert_eq!(r.get(None)?, vec![3, 7]);
/// # Ok::<(), ipc_redis::Error>(())
/// ```
pub struct AsyncResult<T> {
    shared: Arc<Shared>,
    ids: Vec<u64>,
    decode: fn(&Shared, Vec<Done>) -> Result<T>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("tasks", &self.ids.len())
            .finish()
    }
}

fn decode_one<T: Message>(s: &Shared, mut d: Vec<Done>) -> Result<T> {
    match d.pop() {
        Some(d) => s.value(&d),
        None => Err(Error::Core(ipc_core::Error::BrokenPool("no result".into()))),
    }
}

fn decode_chunks<T: Message>(s: &Shared, d: Vec<Done>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for c in d {
        out.extend(s.value::<Vec<T>>(&c)?);
    }
    Ok(out)
}

impl<T> AsyncResult<T> {
    /// Waits for the result (Python's `get(timeout)`).
    ///
    /// # Errors
    /// [`ipc_core::Error::Timeout`]; the task's own error
    /// ([`ipc_core::Error::Panicked`], [`ipc_core::Error::TargetFailed`]);
    /// [`ipc_core::Error::WorkerDied`]; [`Error::WrongExecutable`];
    /// [`Error::ConnectionLost`].
    pub fn get(&self, timeout: Option<Duration>) -> Result<T> {
        match self
            .shared
            .wait_all(&self.ids, timeout.map(|t| Instant::now() + t))
        {
            Some(d) => (self.decode)(&self.shared, d),
            None => Err(Error::Core(ipc_core::Error::Timeout)),
        }
    }

    /// Waits until ready, at most `timeout`; returns whether it is.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.shared
            .wait_all(&self.ids, timeout.map(|t| Instant::now() + t))
            .is_some()
    }

    /// Whether the result has arrived.
    pub fn ready(&self) -> bool {
        self.ids.iter().all(|i| self.shared.done(*i))
    }

    /// Whether it completed without error.
    ///
    /// # Errors
    /// [`ipc_core::Error::NotStarted`] if it is not ready yet.
    pub fn successful(&self) -> Result<bool> {
        if !self.ready() {
            return Err(Error::Core(ipc_core::Error::NotStarted));
        }
        Ok(self
            .ids
            .iter()
            .all(|i| matches!(self.shared.result_of(*i), Some(Ok(_)))))
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        self.shared.forget(&self.ids);
    }
}

/// Python's default `chunksize` for `map`: about four chunks per worker.
fn auto_chunksize(len: usize, processes: usize) -> usize {
    let per = processes.max(1) * 4;
    len.div_ceil(per).max(1)
}

impl RedisPool {
    /// Connects to the pool `name` at `url`
    /// (`redis://[user[:password]@]host[:port][/db]`) with default
    /// settings (see [`Builder`]).
    ///
    /// # Errors
    /// [`Error::Unreachable`] (naming the URL), [`Error::Auth`],
    /// [`Error::InvalidUrl`]; [`ipc_core::Error::InvalidArgument`] for a
    /// name outside `[A-Za-z0-9_.:-]`.
    pub fn connect(url: &str, name: &str) -> Result<RedisPool> {
        Builder::new(url, name).pool()
    }

    /// Settings before connecting.
    pub fn builder(url: &str, name: &str) -> Builder {
        Builder::new(url, name)
    }

    pub(crate) fn from_builder(b: Builder) -> Result<RedisPool> {
        Ok(RedisPool {
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

    fn processes(&self) -> usize {
        self.shared.live_processes().unwrap_or(1).max(1)
    }

    /// Runs `f(arg)` in a worker and waits (Python's `apply`).
    ///
    /// # Errors
    /// As [`AsyncResult::get`].
    pub fn apply<A: Message + Send + 'static, R: TargetOutput>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<R::Value> {
        self.apply_async(f, arg)?.get(None)
    }

    /// Starts `f(arg)` in a worker (Python's `apply_async`).
    ///
    /// # Errors
    /// [`ipc_core::Error::Closed`] after `close`;
    /// [`ipc_core::Error::TargetNotFound`];
    /// [`ipc_core::Error::MessageTooLarge`]; Redis errors.
    pub fn apply_async<A: Message + Send + 'static, R: TargetOutput>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<AsyncResult<R::Value>> {
        let id = self.shared.submit(Code::single(f)?, encode(&arg)?, None)?;
        Ok(AsyncResult {
            shared: self.shared.clone(),
            ids: vec![id],
            decode: decode_one::<R::Value>,
        })
    }

    /// `f` over every item, in order (Python's `map`); `chunksize` `None`
    /// picks Python's default (about four chunks per live worker process).
    /// Over tuples, this is Python's `starmap` (a function of several
    /// arguments takes them as one tuple).
    ///
    /// # Errors
    /// The first failing chunk's error; as
    /// [`apply_async`](Self::apply_async).
    #[doc(alias = "starmap")]
    pub fn map<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<R::Value>>
    where
        A: Message + Send + 'static,
        R: TargetOutput,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items, chunksize)?.get(None)
    }

    /// As [`map`](Self::map) without waiting (Python's `map_async`, and
    /// `starmap_async` over tuples).
    ///
    /// # Errors
    /// As [`apply_async`](Self::apply_async).
    #[doc(alias = "starmap_async")]
    pub fn map_async<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R::Value>>>
    where
        A: Message + Send + 'static,
        R: TargetOutput,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        let size = chunksize
            .unwrap_or_else(|| auto_chunksize(items.len(), self.processes()))
            .max(1);
        let code = Code::chunk(f)?;
        let mut tasks = Vec::new();
        let mut it = items.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<A> = it.by_ref().take(size).collect();
            tasks.push((code, encode(&chunk)?, None));
        }
        let ids = self.shared.submit_many(tasks)?;
        Ok(AsyncResult {
            shared: self.shared.clone(),
            ids,
            decode: decode_chunks::<R::Value>,
        })
    }

    /// A lazy, ordered iterator of `f` over `items` (Python's `imap`):
    /// chunks are submitted as it advances, about two per live worker
    /// process in flight.
    pub fn imap<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> IMap<'_, A, R, I::IntoIter>
    where
        A: Message + Send + 'static,
        R: TargetOutput,
        I: IntoIterator<Item = A>,
    {
        IMap::new(self, f, items.into_iter(), chunksize, true)
    }

    /// As [`imap`](Self::imap), yielding results as they complete (Python's
    /// `imap_unordered`).
    pub fn imap_unordered<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> IMap<'_, A, R, I::IntoIter>
    where
        A: Message + Send + 'static,
        R: TargetOutput,
        I: IntoIterator<Item = A>,
    {
        IMap::new(self, f, items.into_iter(), chunksize, false)
    }

    /// No more tasks (Python's `close`); the workers keep serving others.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits until every task submitted is done; call
    /// [`close`](Self::close) first (Python's `join`).
    ///
    /// # Errors
    /// [`ipc_core::Error::InvalidArgument`] if the pool was not closed.
    pub fn join(&self) -> Result<()> {
        if !self.shared.is_closed() {
            return Err(Error::Core(ipc_core::Error::InvalidArgument(
                "close() the pool before join()",
            )));
        }
        self.shared.wait_idle();
        Ok(())
    }
}

/// The iterator of [`RedisPool::imap`] and [`RedisPool::imap_unordered`].
pub struct IMap<'p, A, R: TargetOutput, I> {
    pool: &'p RedisPool,
    code: Result<Code>,
    input: I,
    chunksize: usize,
    ordered: bool,
    window: usize,
    in_flight: VecDeque<u64>,
    ready: VecDeque<Result<R::Value>>,
    _a: PhantomData<fn(A)>,
}

impl<A, R: TargetOutput, I> std::fmt::Debug for IMap<'_, A, R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl<'p, A, R, I> IMap<'p, A, R, I>
where
    A: Message + Send + 'static,
    R: TargetOutput,
    I: Iterator<Item = A>,
{
    fn new(pool: &'p RedisPool, f: fn(A) -> R, input: I, chunksize: usize, ordered: bool) -> Self {
        IMap {
            pool,
            code: Code::chunk(f).map_err(Error::Core),
            input,
            chunksize: chunksize.max(1),
            ordered,
            window: pool.processes() * 2,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            _a: PhantomData,
        }
    }

    fn top_up(&mut self) -> Result<()> {
        let code = match &self.code {
            Ok(c) => *c,
            Err(e) => return Err(Error::Core(ipc_core::Error::TargetNotFound(e.to_string()))),
        };
        let mut tasks = Vec::new();
        while self.in_flight.len() + tasks.len() < self.window {
            let chunk: Vec<A> = self.input.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                break;
            }
            tasks.push((code, encode(&chunk)?, None));
        }
        if !tasks.is_empty() {
            self.in_flight.extend(self.pool.shared.submit_many(tasks)?);
        }
        Ok(())
    }

    fn collect(&mut self, id: u64) {
        let s = &self.pool.shared;
        let d = s.wait_all(&[id], None).unwrap_or_default();
        match decode_chunks::<R::Value>(s, d) {
            Ok(v) => self.ready.extend(v.into_iter().map(Ok)),
            Err(e) => self.ready.push_back(Err(e)),
        }
        s.forget(&[id]);
    }
}

impl<A, R: TargetOutput, I> Drop for IMap<'_, A, R, I> {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.in_flight.iter().copied().collect();
        self.pool.shared.forget(&ids);
    }
}

impl<A, R, I> Iterator for IMap<'_, A, R, I>
where
    A: Message + Send + 'static,
    R: TargetOutput,
    I: Iterator<Item = A>,
{
    type Item = Result<R::Value>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            if let Err(e) = self.top_up() {
                return Some(Err(e));
            }
            let id = if self.ordered {
                self.in_flight.pop_front()?
            } else {
                if self.in_flight.is_empty() {
                    return None;
                }
                let ids: Vec<u64> = self.in_flight.iter().copied().collect();
                let first = *self.pool.shared.wait_any_done(&ids, None).first()?;
                self.in_flight.retain(|i| *i != first);
                first
            };
            self.collect(id);
        }
    }
}
