//! `Queue::get_async` and `put_async` (the `tokio` feature).

use std::sync::Arc;

use super::{broken, Queue};
use crate::aio::{self, Check, Keep};
use crate::codec::{self, Message};
use crate::ring::mpmc::{Push, Recovered};
use crate::{Error, Result};

impl<T: Message> Queue<T> {
    fn keep(&self) -> Keep {
        self.inner.clone()
    }

    /// The waiter thread's periodic check: recover a slot held by a dead
    /// process and wake everyone, as `Queue::recover` does for the
    /// blocking calls.
    fn recover_check(&self) -> Check {
        let inner = self.inner.clone();
        Arc::new(move || {
            if inner.ring.recover() != Recovered::Nothing {
                let h = inner.ring.header();
                h.not_empty.0.notify(u32::MAX);
                h.not_full.0.notify(u32::MAX);
            }
            false
        })
    }

    /// Takes a message, waiting without blocking the thread (any async
    /// runtime; no thread per waiting task: see the README's "async").
    ///
    /// Cancel safe: a dropped `get_async` has taken no message.
    ///
    /// # Errors
    /// As [`Queue::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let q = ipc_core::queue::Queue::<u32>::new(4)?;
    /// q.put(&7)?;
    /// assert_eq!(q.get_async().await?, 7);
    /// # Ok::<(), ipc_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_async(&self) -> Result<T> {
        let keep = self.keep();
        let s = aio::wait_point(
            &self.hdr().not_empty.0,
            &keep,
            Some(self.recover_check()),
            || match self.try_get_raw() {
                Some(r) => Some(r),
                None if self.is_closed() => Some(Err(Error::Closed)),
                None => None,
            },
        )
        .await?;
        s.decode()
    }

    /// Puts a message, waiting for room without blocking the thread.
    ///
    /// Cancel safe: a dropped `put_async` has put nothing.
    ///
    /// # Errors
    /// As [`Queue::put`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let q = ipc_core::queue::Queue::<String>::new(1)?;
    /// q.put_async(&"a".to_string()).await?;
    /// assert_eq!(q.get()?, "a");
    /// # Ok::<(), ipc_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn put_async(&self, item: &T) -> Result<()> {
        let bytes = codec::encode_with(item, <[u8]>::to_vec)?;
        self.check_put(&bytes)?;
        let me = self.ring().register()?;
        let keep = self.keep();
        aio::wait_point(
            &self.hdr().not_full.0,
            &keep,
            Some(self.recover_check()),
            || match self.ring().try_push(&bytes, me) {
                Push::Done => Some(Ok(())),
                Push::Broken => Some(Err(broken())),
                Push::Full if self.is_closed() => Some(Err(Error::Closed)),
                Push::Full => None,
            },
        )
        .await?;
        self.hdr().not_empty.0.notify(1);
        Ok(())
    }
}
