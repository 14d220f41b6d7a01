//! `Future::result_async` (the `tokio` feature).

use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use super::Future;
use crate::codec::Message;
use crate::Result;

/// The result, handed over by the pool's done-callback, and the task to wake.
type Slot<T> = Arc<Mutex<(Option<Result<T>>, Option<Waker>)>>;

impl<T: Message + Send + 'static> Future<T> {
    /// Waits for the call's value without blocking the thread: the pool's
    /// supervisor thread, which collects results nobody waits for, hands it
    /// over through a done-callback (see [`Future::add_done_callback`]).
    ///
    /// Cancel safe: dropping it leaves the call and its result as they are.
    ///
    /// # Errors
    /// As [`Future::result`].
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let ex = ipc_core::pool::ProcessPoolExecutor::new(1)?;
    /// let f = ex.submit(square, 9)?;
    /// assert_eq!(f.result_async().await?, 81);
    /// # Ok::<(), ipc_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn result_async(&self) -> Result<T> {
        if self.done() {
            return self.result(Some(Duration::ZERO));
        }
        let slot: Slot<T> = Arc::new(Mutex::new((None, None)));
        let s2 = slot.clone();
        self.add_done_callback(move |r| {
            let mut g = s2.lock().unwrap_or_else(|p| p.into_inner());
            g.0 = Some(r);
            if let Some(w) = g.1.take() {
                w.wake();
            }
        });
        std::future::poll_fn(|cx| {
            let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
            match g.0.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    g.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}
