//! [`AsyncResult`], the handle `Pool`'s `_async` calls return, and the
//! callbacks of a `map_async_with` (fed by its chunks' callbacks).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::core::{Core, Done};
use crate::codec::Message;
use crate::{Error, Result};

/// The result of an `apply_async` or `map_async` (Python's `AsyncResult`).
pub struct AsyncResult<T> {
    pub(super) core: Arc<Core>,
    pub(super) ids: Vec<u64>,
    pub(super) decode: fn(Vec<Done>) -> Result<T>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("tasks", &self.ids.len())
            .finish()
    }
}

pub(super) fn decode_one<T: Message>(mut d: Vec<Done>) -> Result<T> {
    match d.pop() {
        Some(Ok(b)) => crate::process::target::value(&b),
        Some(Err(f)) => Err(f.to_error()),
        None => Err(Error::BrokenPool("no result".into())),
    }
}

pub(super) fn decode_chunks<T: Message>(d: Vec<Done>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for c in d {
        match c {
            Ok(b) => out.extend(crate::process::target::value::<Vec<T>>(&b)?),
            Err(f) => return Err(f.to_error()),
        }
    }
    Ok(out)
}

impl<T> AsyncResult<T> {
    /// Waits for the result (Python's `get(timeout)`).
    ///
    /// # Errors
    /// [`Error::Timeout`]; the task's own error ([`Error::Panicked`],
    /// [`Error::TargetFailed`]); [`Error::WorkerDied`]; [`Error::BrokenPool`].
    pub fn get(&self, timeout: Option<Duration>) -> Result<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        match self.core.wait_all(&self.ids, deadline) {
            Some(d) => (self.decode)(d),
            None => Err(Error::Timeout),
        }
    }

    /// Waits until ready, at most `timeout`; returns whether it is.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.core
            .wait_all(&self.ids, timeout.map(|t| Instant::now() + t))
            .is_some()
    }

    /// Whether the result has arrived.
    pub fn ready(&self) -> bool {
        self.ids.iter().all(|i| self.core.is_done(*i))
    }

    /// Whether it completed without error.
    ///
    /// # Errors
    /// [`Error::NotStarted`] if it is not ready yet (Python raises `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        if !self.ready() {
            return Err(Error::NotStarted);
        }
        Ok(self
            .ids
            .iter()
            .all(|i| matches!(self.core.result_of(*i), Some(Ok(_)))))
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        self.core.forget(&self.ids);
    }
}

type MapCallback<T> = Box<dyn FnOnce(Vec<T>) + Send>;
type ErrorCallback = Box<dyn FnOnce(Error) + Send>;

/// The callbacks of one `map_async_with`, fed by its chunks' callbacks.
pub(super) struct MapCallbacks<T> {
    /// Each done chunk's encoded results, by chunk index.
    pub(super) chunks: Vec<Option<Vec<u8>>>,
    pub(super) left: usize,
    /// Both `None` once one of them ran (or the map was refused).
    pub(super) callback: Option<MapCallback<T>>,
    pub(super) error_callback: Option<ErrorCallback>,
}

impl<T: Message> MapCallbacks<T> {
    pub(super) fn chunk_done(agg: &Mutex<Self>, i: usize, d: &Done) {
        let mut a = agg.lock().unwrap_or_else(|p| p.into_inner());
        match d {
            Ok(b) => {
                if a.chunks.get(i).is_some_and(|c| c.is_none()) {
                    a.chunks[i] = Some(b.clone());
                    a.left -= 1;
                }
                let last = a.left == 0;
                drop(a);
                if last {
                    Self::finish(agg);
                }
            }
            Err(f) => {
                // The first error wins (Python calls error_callback at the
                // first failed chunk); the success callback never runs.
                a.callback = None;
                a.chunks.clear();
                let e = a.error_callback.take();
                drop(a);
                if let Some(e) = e {
                    e(f.to_error());
                }
            }
        }
    }

    /// All chunks are in: decode them and run the callback (or, if a
    /// result does not decode, the error callback). User code runs outside
    /// the lock.
    pub(super) fn finish(agg: &Mutex<Self>) {
        let mut a = agg.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(cb), Some(ecb)) = (a.callback.take(), a.error_callback.take()) else {
            return;
        };
        let chunks = std::mem::take(&mut a.chunks);
        drop(a);
        let mut out = Vec::new();
        for c in chunks.into_iter().flatten() {
            match crate::process::target::value::<Vec<T>>(&c) {
                Ok(v) => out.extend(v),
                Err(e) => return ecb(e),
            }
        }
        cb(out);
    }
}
