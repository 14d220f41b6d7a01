//! `Connection::recv_async` and `send_async` (the `tokio` feature).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::frames::{self, take_start, Rest, Start};
use super::{Connection, EndGuard};
use crate::aio::{self, Check, Keep};
use crate::codec::{self, Copied, Message};
use crate::{Error, Result};

/// Whether the read side of a liveness pipe hung up (the peer is gone).
fn hung_up(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

impl Connection {
    fn keep(&self) -> Keep {
        self.rings.clone()
    }

    /// The waiter thread's periodic check: wake the task once the peer is
    /// gone (it then reports `PeerClosed`).
    fn peer_check(&self) -> Result<Check> {
        let peer = self
            .peer
            .try_clone()
            .map_err(|e| Error::Io(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        Ok(Arc::new(move || hung_up(&peer)))
    }

    /// Receives and decodes a message without blocking the thread (see
    /// the README's "async"). A message too large for one frame is
    /// awaited until its first piece arrives, then received whole on the
    /// calling thread while its sender streams the rest.
    ///
    /// Cancel safe: a dropped `recv_async` has taken no message.
    ///
    /// # Errors
    /// As [`Connection::recv`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let (a, b) = ipc_core::pipe::Pipe::new(true)?;
    /// a.send_async(&"hi".to_string()).await?;
    /// assert_eq!(b.recv_async::<String>().await?, "hi");
    /// # Ok::<(), ipc_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn recv_async<T: Message>(&self) -> Result<T> {
        let rx = self.rx()?;
        let h = rx.header();
        let keep = self.keep();
        let mut sink = Copied::new();
        loop {
            let (start, g) =
                aio::wait_point(&h.data_ready.0, &keep, Some(self.peer_check()?), || {
                    if !rx.has_data() {
                        return self.peer_closed().then_some(Err(Error::PeerClosed));
                    }
                    let g = match EndGuard::lock(&h.pop_lock.0, None) {
                        Ok(g) => g,
                        Err(e) => return Some(Err(e)),
                    };
                    match take_start(rx, &mut sink) {
                        Ok(Start::Nothing) => None,
                        Ok(s) => Some(Ok((s, g))),
                        Err(e) => Some(Err(e)),
                    }
                })
                .await?;
            h.space_ready.0.notify(1);
            match start {
                Start::Whole(()) => return sink.decode(),
                Start::Partial { total, got } => match self.take_rest(rx, &mut sink, total, got)? {
                    Rest::Done(()) => return sink.decode(),
                    Rest::Abandoned => drop(g),
                },
                Start::Nothing => {}
            }
        }
    }

    /// Sends an `rkyv`-encoded message, waiting for room without blocking
    /// the thread. A message too large for one frame is streamed on the
    /// calling thread (it blocks while the receiver drains the ring).
    ///
    /// Cancel safe: a dropped `send_async` has sent nothing.
    ///
    /// # Errors
    /// As [`Connection::send`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let (rx, tx) = ipc_core::pipe::Pipe::new(false)?;
    /// tx.send_async(&7u32).await?;
    /// assert_eq!(rx.recv::<u32>()?, 7);
    /// # Ok::<(), ipc_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn send_async<T: Message>(&self, msg: &T) -> Result<()> {
        let bytes = codec::encode_with(msg, <[u8]>::to_vec)?;
        let tx = self.tx_for(bytes.len())?;
        self.check_peer()?;
        if bytes.len() > frames::piece_len(tx.capacity()) {
            return self.send_pieces(tx, &bytes, None);
        }
        let h = tx.header();
        let keep = self.keep();
        aio::wait_point(&h.space_ready.0, &keep, Some(self.peer_check()?), || {
            let _g = match EndGuard::lock(&h.push_lock.0, None) {
                Ok(g) => g,
                Err(e) => return Some(Err(e)),
            };
            match tx.try_push(&bytes, &self.tail_cache) {
                Ok(true) => Some(Ok(())),
                Ok(false) if self.peer_closed() => Some(Err(Error::PeerClosed)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        })
        .await?;
        h.data_ready.0.notify(1);
        Ok(())
    }
}
