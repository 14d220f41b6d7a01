//! The table of outstanding results: recording a reply (once per task),
//! waiting for results, callbacks, and forgetting what the caller no
//! longer wants.

use std::sync::{Condvar, MutexGuard};
use std::time::Instant;

use super::{lock, Callback, Done, Failure, Shared};

impl Shared {
    /// Records a result unless the task has one; runs its callback.
    pub(super) fn record(&self, id: u64, done: Done) {
        let cb = {
            let mut st = lock(&self.st);
            let cb = match st.slots.get_mut(&id) {
                Some(s) if s.result.is_none() => {
                    s.result = Some(done.clone());
                    let cb = s.callback.take();
                    if s.abandoned {
                        st.slots.remove(&id);
                    }
                    cb
                }
                _ => None,
            };
            self.cv.notify_all();
            cb
        };
        if let Some(cb) = cb {
            // A panicking callback must not take the reader thread down.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&done)));
        }
    }

    /// Fails every task without a result.
    pub(super) fn fail_outstanding(&self, f: Failure) {
        let ids: Vec<u64> = lock(&self.st)
            .slots
            .iter()
            .filter(|(_, s)| s.result.is_none())
            .map(|(i, _)| *i)
            .collect();
        for id in ids {
            self.record(id, Err(f.clone()));
        }
    }

    /// Waits for every id; their results, or `None` on timeout.
    pub fn wait_all(&self, ids: &[u64], deadline: Option<Instant>) -> Option<Vec<Done>> {
        let mut next = 0;
        let mut st = lock(&self.st);
        loop {
            while next < ids.len() && st.slots.get(&ids[next]).is_none_or(|s| s.result.is_some()) {
                next += 1;
            }
            if next == ids.len() {
                break;
            }
            st = wait(&self.cv, st, deadline)?;
        }
        Some(
            ids.iter()
                .map(|i| {
                    st.slots
                        .get(i)
                        .and_then(|s| s.result.clone())
                        .unwrap_or(Err(Failure::Lost("result already collected".into())))
                })
                .collect(),
        )
    }

    /// Waits until one of `ids` is done; the done ones.
    pub fn wait_any_done(&self, ids: &[u64], deadline: Option<Instant>) -> Vec<u64> {
        let mut st = lock(&self.st);
        loop {
            let done: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|i| st.slots.get(i).is_none_or(|s| s.result.is_some()))
                .collect();
            if !done.is_empty() {
                return done;
            }
            st = match wait(&self.cv, st, deadline) {
                Some(st) => st,
                None => return done,
            };
        }
    }

    pub fn result_of(&self, id: u64) -> Option<Done> {
        lock(&self.st).slots.get(&id).and_then(|s| s.result.clone())
    }

    pub fn done(&self, id: u64) -> bool {
        lock(&self.st)
            .slots
            .get(&id)
            .is_none_or(|s| s.result.is_some())
    }

    /// Adds a callback, or runs it now if the task is done.
    pub fn on_done(&self, id: u64, cb: Callback) {
        let now = {
            let mut st = lock(&self.st);
            match st.slots.get_mut(&id) {
                Some(s) if s.result.is_none() => {
                    s.callback = Some(match s.callback.take() {
                        Some(p) => Box::new(move |d: &Done| {
                            p(d);
                            cb(d);
                        }),
                        None => cb,
                    });
                    None
                }
                Some(s) => s.result.clone().map(|r| (r, cb)),
                None => None,
            }
        };
        if let Some((r, cb)) = now {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&r)));
        }
    }

    /// The caller no longer wants these results.
    pub fn forget(&self, ids: &[u64]) {
        let mut st = lock(&self.st);
        for i in ids {
            match st.slots.get_mut(i) {
                Some(s) if s.result.is_some() => {
                    st.slots.remove(i);
                }
                Some(s) => s.abandoned = true,
                None => {}
            }
        }
    }
}

/// Waits on `cv` until notified or `deadline`; `None` once it passed.
fn wait<'a, T>(
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, T>> {
    match deadline {
        None => Some(cv.wait(g).unwrap_or_else(|p| p.into_inner())),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            Some(
                cv.wait_timeout(g, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0,
            )
        }
    }
}
