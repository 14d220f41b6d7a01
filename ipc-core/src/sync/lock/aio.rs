//! `Lock::acquire_async` (the `tokio` feature).

use std::marker::PhantomData;
use std::sync::Arc;

use super::super::lock_error::{outcome, LockError};
use super::{Lock, LockGuard, LockResult};
use crate::aio::{self, Check, Keep};

impl Lock {
    /// Acquires the lock without blocking the thread (see the README's
    /// "async"); a holder that died is detected within about 100 ms, as by
    /// [`Lock::acquire`].
    ///
    /// Cancel safe: a dropped `acquire_async` holds nothing (it takes the
    /// lock only in the step that returns the guard). The guard belongs to
    /// the thread that polled that step, as for `acquire`: drop it before
    /// the next `.await` on a multi-threaded runtime, or use a
    /// current-thread runtime.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] with the guard, as [`Lock::acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let l = ipc_core::sync::Lock::new()?;
    /// let g = l.acquire_async().await?;
    /// assert!(l.try_acquire().is_err());
    /// drop(g);
    /// # Ok::<(), ipc_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn acquire_async(&self) -> LockResult<'_> {
        let raw = &*self.raw;
        let keep: Keep = Arc::new(self.raw.clone());
        let (l1, l2) = (self.raw.clone(), self.raw.clone());
        let check: Check = Arc::new(move || l1.holder_dead());
        let relay: Check = Arc::new(move || {
            l2.wake_one();
            true
        });
        loop {
            match raw.lock_step() {
                Ok(a) => {
                    return outcome(a, LockError::WouldBlock, || LockGuard {
                        lock: raw,
                        _not_send: PhantomData,
                    })
                }
                Err(w) => {
                    aio::changed(raw.word(), w, keep.clone(), Some(check.clone()))
                        .relay(relay.clone())
                        .await
                }
            }
        }
    }
}
