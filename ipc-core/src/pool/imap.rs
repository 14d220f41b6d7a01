//! [`IMap`], the lazy iterator of `Pool::imap` and `Pool::imap_unordered`.

use std::collections::VecDeque;
use std::marker::PhantomData;

use super::core::Core;
use super::result::decode_chunks;
use super::task::{encode, Code};
use crate::codec::Message;
use crate::process::TargetOutput;
use crate::{Error, Result};

/// The iterator of [`Pool::imap`](super::Pool::imap) and
/// [`Pool::imap_unordered`](super::Pool::imap_unordered).
pub struct IMap<'p, A, R: TargetOutput, I> {
    /// Borrowed from the [`Pool`](super::Pool) that made the iterator.
    core: &'p Core,
    code: Result<Code>,
    input: I,
    chunksize: usize,
    ordered: bool,
    in_flight: VecDeque<u64>,
    ready: VecDeque<Result<R::Value>>,
    _a: PhantomData<fn(A)>,
}

impl<'p, A, R, I> IMap<'p, A, R, I>
where
    A: Message + Send + 'static,
    R: TargetOutput,
    I: Iterator<Item = A>,
{
    pub(super) fn new(
        core: &'p Core,
        f: fn(A) -> R,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        IMap {
            core,
            code: Code::chunk(f),
            input,
            chunksize: chunksize.max(1),
            ordered,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            _a: PhantomData,
        }
    }

    /// Keeps about two chunks per worker in flight.
    fn top_up(&mut self) -> Result<()> {
        let code = *self
            .code
            .as_ref()
            .map_err(|e| Error::TargetNotFound(e.to_string()))?;
        while self.in_flight.len() < self.core.cfg.processes * 2 {
            let chunk: Vec<A> = self.input.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                break;
            }
            let id = self.core.new_id();
            self.core.submit(code.task(id, encode(&chunk)?), None)?;
            self.in_flight.push_back(id);
        }
        Ok(())
    }

    fn collect(&mut self, id: u64) {
        let d = self.core.wait_all(&[id], None).unwrap_or_default();
        match decode_chunks::<R::Value>(d) {
            Ok(v) => self.ready.extend(v.into_iter().map(Ok)),
            Err(e) => self.ready.push_back(Err(e)),
        }
        self.core.forget(&[id]);
    }
}

impl<A, R: TargetOutput, I> Drop for IMap<'_, A, R, I> {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.in_flight.iter().copied().collect();
        self.core.forget(&ids);
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
            if self.in_flight.is_empty() {
                return None;
            }
            let id = if self.ordered {
                self.in_flight.pop_front()?
            } else {
                let ids: Vec<u64> = self.in_flight.iter().copied().collect();
                let done = self.core.wait_any(&ids, None);
                let first = *done.first()?;
                self.in_flight.retain(|i| *i != first);
                first
            };
            self.collect(id);
        }
    }
}
