//! `Event::wait_async` (the `tokio` feature).

use std::sync::Arc;

use super::Event;
use crate::aio::{self, Keep};
use crate::atomic::Ordering;

impl Event {
    /// Waits until the flag is set, without blocking the thread (see the
    /// README's "async"). Like [`Event::wait`], a `set` quickly followed
    /// by `clear` still releases it.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let e = ipc_core::sync::Event::new()?;
    /// e.set();
    /// e.wait_async().await;
    /// # Ok::<(), ipc_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn wait_async(&self) {
        // Acquire: as in `is_set`.
        let start = self.raw.flag.load(Ordering::Acquire);
        if start & 1 != 0 {
            return;
        }
        let released = |w: u32| w & 1 != 0 || (w >> 1) != (start >> 1);
        struct Waiting<'a>(&'a crate::atomic::AtomicU32);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                // SeqCst: as in `wait_opt`.
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        // SeqCst: the Dekker pair with `set` (see the type's docs).
        self.raw.waiters.fetch_add(1, Ordering::SeqCst);
        let _w = Waiting(&self.raw.waiters);
        let keep: Keep = Arc::new(self.raw.clone());
        loop {
            let w = self.raw.flag.load(Ordering::SeqCst);
            if released(w) {
                return;
            }
            aio::changed(&self.raw.flag, w, keep.clone(), None).await;
        }
    }
}
