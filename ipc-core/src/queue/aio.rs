//! `Queue::get_async` and `put_async` (the `tokio` feature).

use std::sync::Arc;

use super::{broken, Queue};
use crate::aio::{self, Check, Keep};
use crate::codec::{self, Copied, Message};
use crate::ring::mpmc::Push;
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
            let _ = inner.recover();
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
        let mut c = Copied::new();
        aio::wait_point(
            &self.hdr().not_empty.0,
            &keep,
            Some(self.recover_check()),
            || match self.poll_get_raw(&mut c) {
                Some(r) => Some(r),
                None if self.is_closed() => Some(Err(Error::Closed)),
                None => None,
            },
        )
        .await?;
        c.decode()
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
        let me = self.inner.register()?;
        if bytes.len() > self.ring().slot_size() {
            return self.put_block_async(&bytes, me).await;
        }
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

    /// `put_async` of a message larger than a slot: claims a block, fills
    /// it, pushes its descriptor. Cancel safe: a dropped future gives the
    /// block back (the guard below) and has put nothing.
    async fn put_block_async(&self, bytes: &[u8], me: u32) -> Result<()> {
        struct Held<'a> {
            inner: &'a super::Inner,
            block: Option<crate::ring::blocks::Block>,
            me: u32,
        }
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                if let Some(b) = self.block.take() {
                    self.inner.release(b, self.me);
                }
            }
        }
        let keep = self.keep();
        let b = aio::wait_point(
            &self.hdr().not_full.0,
            &keep,
            Some(self.recover_check()),
            || match self.inner.blocks.acquire(bytes.len() as u64, me) {
                Ok(Some(b)) => Some(Ok(b)),
                Ok(None) if self.is_closed() => Some(Err(Error::Closed)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            },
        )
        .await?;
        let mut held = Held {
            inner: &self.inner,
            block: Some(b),
            me,
        };
        let b = held.block.as_ref().ok_or(Error::Closed)?;
        let m = self.inner.blocks.map(b)?;
        // SAFETY: the mapping covers `cap >= bytes.len()` bytes, and we
        // hold the block (WRITING) until it is sent or given back.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), m.ptr(), bytes.len()) };
        let d = crate::ring::blocks::Desc {
            entry: b.entry,
            gen: b.gen,
            len: b.len,
            at: 0,
            producer: me,
        }
        .encode();
        aio::wait_point(
            &self.hdr().not_full.0,
            &keep,
            Some(self.recover_check()),
            || match self
                .ring()
                .try_push_kind(&d, crate::ring::blocks::KIND_BLOCK, me)
            {
                Push::Done => Some(Ok(())),
                Push::Broken => Some(Err(broken())),
                Push::Full if self.is_closed() => Some(Err(Error::Closed)),
                Push::Full => None,
            },
        )
        .await?;
        if let Some(b) = held.block.take() {
            self.inner.blocks.publish(&b, me);
        }
        self.inner.pushed();
        Ok(())
    }
}
