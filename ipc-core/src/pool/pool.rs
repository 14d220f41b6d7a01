//! `Pool` (Python's `multiprocessing.Pool`).

use std::sync::{Arc, Mutex};

use super::core::{Callback, Config, Core, Done};
use super::imap::IMap;
use super::result::{decode_chunks, decode_one, AsyncResult, MapCallbacks};
use super::task::{encode, Code};
use crate::codec::Message;
use crate::process::{cpu_count, get_start_method, StartMethod, TargetOutput};
use crate::{Error, Result};

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Tasks are `fn` items with `rkyv` arguments and results, so they run in
/// workers started by any start method. A task that panics or returns
/// `Err` fails only its caller; a worker killed mid-task fails that task
/// with [`Error::WorkerDied`] and is replaced, and every other task still
/// completes. Dropping the pool terminates it.
///
/// # Examples
///
/// ```
/// use ipc_core::pool::Pool;
/// fn square(x: u64) -> u64 { x * x }
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..5, None)?, vec![0, 1, 4, 9, 16]);
/// assert_eq!(pool.apply(square, 7)?, 49);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub struct Pool {
    core: Arc<Core>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.core.cfg.processes)
            .field("method", &self.core.cfg.method)
            .finish()
    }
}

/// Builder for a [`Pool`].
///
/// # Examples
///
/// ```
/// use ipc_core::pool::Pool;
/// fn setup(_: ()) {}
/// let pool = Pool::builder().processes(2).initializer(setup, ()).max_tasks_per_child(100).build()?;
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub struct PoolBuilder {
    processes: usize,
    method: Option<StartMethod>,
    max_tasks: u64,
    init: Option<Result<super::task::Task>>,
    queue_capacity: usize,
    max_message_size: usize,
}

impl PoolBuilder {
    /// Number of worker processes (default: [`cpu_count`]).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = n;
        self
    }
    /// Start method of the workers (default: [`get_start_method`]).
    pub fn start_method(mut self, m: StartMethod) -> Self {
        self.method = Some(m);
        self
    }
    /// Replace each worker after this many tasks (Python's `maxtasksperchild`).
    #[doc(alias = "maxtasksperchild")]
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks = n;
        self
    }
    /// Run `f(arg)` once in each worker before its first task.
    pub fn initializer<A: Message + Send + 'static, R: TargetOutput>(
        mut self,
        f: fn(A) -> R,
        arg: A,
    ) -> Self {
        self.init = Some(Code::single(f).and_then(|c| Ok(c.task(0, encode(&arg)?))));
        self
    }
    /// Largest encoded task argument (default the queue's cap,
    /// [`DEFAULT_MAX_MESSAGE_SIZE`](crate::queue::DEFAULT_MAX_MESSAGE_SIZE),
    /// 1 GiB; a larger one is refused with [`Error::MessageTooLarge`]).
    /// Arguments and results past a ring slot travel out of line; a result
    /// or error past this size is sent in parts.
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero processes; whatever starting a
    /// worker returns (e.g. [`Error::InitNotCalled`] for `Spawn`).
    pub fn build(self) -> Result<Pool> {
        Ok(Pool {
            core: Core::start(self.config(false)?)?,
        })
    }

    pub(crate) fn config(self, executor: bool) -> Result<Config> {
        Ok(Config {
            processes: self.processes,
            method: self.method.unwrap_or_else(get_start_method),
            max_tasks: self.max_tasks,
            init: self.init.transpose()?,
            queue_capacity: self.queue_capacity,
            max_message_size: self.max_message_size,
            executor,
        })
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            processes: cpu_count(),
            method: None,
            max_tasks: 0,
            init: None,
            queue_capacity: 1024,
            max_message_size: crate::queue::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// Python's default `chunksize` for `map`: about four chunks per worker.
fn auto_chunksize(len: usize, processes: usize) -> usize {
    let per = processes.max(1) * 4;
    (len / per + usize::from(len % per != 0)).max(1)
}

impl Pool {
    /// A pool of `processes` workers (Python's `Pool(processes)`).
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder with defaults ([`cpu_count`] workers).
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Pids of the current workers.
    pub fn pids(&self) -> Vec<u32> {
        self.core.pids()
    }

    fn submit_one<A: Message + Send + 'static>(
        &self,
        code: Code,
        arg: &A,
        cb: Option<Callback>,
    ) -> Result<u64> {
        let id = self.core.new_id();
        self.core.submit(code.task(id, encode(arg)?), cb)?;
        Ok(id)
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
    /// [`Error::Closed`] after `close`; [`Error::TargetNotFound`];
    /// [`Error::MessageTooLarge`]; [`Error::BrokenPool`].
    pub fn apply_async<A: Message + Send + 'static, R: TargetOutput>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<AsyncResult<R::Value>> {
        let id = self.submit_one::<A>(Code::single(f)?, &arg, None)?;
        Ok(AsyncResult {
            core: self.core.clone(),
            ids: vec![id],
            decode: decode_one::<R::Value>,
        })
    }

    /// `apply_async` with Python's `callback` / `error_callback`: one of
    /// them runs (in a pool thread) when the result arrives.
    ///
    /// # Errors
    /// As [`apply_async`](Self::apply_async).
    pub fn apply_async_with<A, R, C, E>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<R::Value>>
    where
        A: Message + Send + 'static,
        R: TargetOutput,
        C: FnOnce(R::Value) + Send + 'static,
        E: FnOnce(Error) + Send + 'static,
    {
        let cb = Box::new(move |d: &Done| match d {
            Ok(b) => match crate::process::target::value::<R::Value>(b) {
                Ok(v) => callback(v),
                Err(e) => error_callback(e),
            },
            Err(f) => error_callback(f.to_error()),
        });
        let id = self.submit_one::<A>(Code::single(f)?, &arg, Some(cb))?;
        Ok(AsyncResult {
            core: self.core.clone(),
            ids: vec![id],
            decode: decode_one::<R::Value>,
        })
    }

    /// The chunk size `map` uses for `len` items.
    fn chunk_size(&self, len: usize, chunksize: Option<usize>) -> usize {
        chunksize
            .unwrap_or_else(|| auto_chunksize(len, self.core.cfg.processes))
            .max(1)
    }

    /// Submits `items` in chunks of `size`, the chunk at index `i` with the
    /// callback `cb(i)`. On error, the chunks already submitted are
    /// forgotten (they still run; nobody gets their results).
    fn submit_chunks<A: Message + Send + 'static, R: TargetOutput>(
        &self,
        f: fn(A) -> R,
        items: Vec<A>,
        size: usize,
        mut cb: impl FnMut(usize) -> Option<Callback>,
    ) -> Result<Vec<u64>> {
        let code = Code::chunk(f)?;
        let mut ids = Vec::new();
        let mut it = items.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<A> = it.by_ref().take(size).collect();
            let id = self.core.new_id();
            let r = encode(&chunk)
                .and_then(|args| self.core.submit(code.task(id, args), cb(ids.len())));
            if let Err(e) = r {
                self.core.forget(&ids);
                return Err(e);
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// `f` over every item, in order (Python's `map`); `chunksize` `None`
    /// picks Python's default (about four chunks per worker).
    ///
    /// This is also Python's `starmap`: a function of several arguments
    /// takes them as one tuple, so `map` over tuples is `starmap`.
    ///
    /// # Errors
    /// The first failing item's error; as [`apply_async`](Self::apply_async).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::pool::Pool;
    /// fn add((a, b): (u64, u64)) -> u64 { a + b }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.map(add, [(1, 2), (3, 4)], None)?, vec![3, 7]); // Python's starmap
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
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
        let size = self.chunk_size(items.len(), chunksize);
        let ids = self.submit_chunks(f, items, size, |_| None)?;
        Ok(AsyncResult {
            core: self.core.clone(),
            ids,
            decode: decode_chunks::<R::Value>,
        })
    }

    /// `map_async` with Python's `callback` / `error_callback`: once every
    /// item is done, `callback` gets all the results in order; or, at the
    /// first failing chunk, `error_callback` gets its error. Exactly one of
    /// them runs, in a pool thread (at once for no items: `callback(vec![])`).
    /// Over tuples, this is Python's `starmap_async` with callbacks.
    ///
    /// # Errors
    /// As [`apply_async`](Self::apply_async); then neither callback runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// pool.map_async_with(square, 0..4, None, move |v| tx.send(v).unwrap(), |e| panic!("{e}"))?;
    /// assert_eq!(rx.recv().unwrap(), vec![0, 1, 4, 9]);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(alias = "callback")]
    #[doc(alias = "error_callback")]
    #[doc(alias = "starmap_async")]
    pub fn map_async_with<A, R, I, C, E>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<Vec<R::Value>>>
    where
        A: Message + Send + 'static,
        R: TargetOutput,
        I: IntoIterator<Item = A>,
        C: FnOnce(Vec<R::Value>) + Send + 'static,
        E: FnOnce(Error) + Send + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let size = self.chunk_size(items.len(), chunksize);
        let n = items.len().div_ceil(size);
        // Check the function before anything can call back.
        Code::chunk(f)?;
        let agg = Arc::new(Mutex::new(MapCallbacks::<R::Value> {
            chunks: vec![None; n],
            left: n,
            callback: Some(Box::new(callback)),
            error_callback: Some(Box::new(error_callback)),
        }));
        let ids = self.submit_chunks(f, items, size, |i| {
            let agg = agg.clone();
            Some(Box::new(move |d: &Done| MapCallbacks::chunk_done(&agg, i, d)) as Callback)
        });
        let ids = match ids {
            Ok(ids) => ids,
            Err(e) => {
                // Neither callback runs for a map the caller got an error for.
                let mut a = agg.lock().unwrap_or_else(|p| p.into_inner());
                a.callback = None;
                a.error_callback = None;
                return Err(e);
            }
        };
        if n == 0 {
            MapCallbacks::finish(&agg);
        }
        Ok(AsyncResult {
            core: self.core.clone(),
            ids,
            decode: decode_chunks::<R::Value>,
        })
    }

    /// A lazy, ordered iterator of `f` over `items` (Python's `imap`);
    /// items are submitted as the iterator advances (default chunksize 1).
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
        IMap::new(&self.core, f, items.into_iter(), chunksize, true)
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
        IMap::new(&self.core, f, items.into_iter(), chunksize, false)
    }

    /// No more tasks (Python's `close`).
    pub fn close(&self) {
        self.core.close();
    }

    /// Waits for the workers to finish the queued tasks and exit; call
    /// [`close`](Self::close) first (Python's `join`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the pool was not closed.
    pub fn join(&self) -> Result<()> {
        self.core.join()
    }

    /// Kills the workers now; outstanding tasks fail with
    /// [`Error::BrokenPool`] (Python's `terminate`).
    pub fn terminate(&self) {
        self.core.terminate();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.core.terminate();
    }
}
