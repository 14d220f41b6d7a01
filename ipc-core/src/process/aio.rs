//! `Process::join_async` (the `tokio` feature).

use tokio::io::unix::AsyncFd;

use super::{Process, TargetOutput};
use crate::{Error, Result};

fn io(e: std::io::Error) -> Error {
    Error::Io(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

impl<R: TargetOutput> Process<R> {
    /// Waits for the child to exit without blocking the thread: its pidfd
    /// (which becomes readable when the child exits) through tokio's
    /// `AsyncFd`. Must run inside a tokio runtime with I/O enabled.
    ///
    /// Cancel safe: dropping it leaves the process as it was (still
    /// joinable).
    ///
    /// # Errors
    /// As [`Process::join`]; [`Error::Io`] outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap().block_on(async {
    /// let mut p = ipc_core::process::Process::new(|| 6u32 * 7);
    /// p.start()?;
    /// assert_eq!(p.join_async().await?, 42);
    /// # Ok::<(), ipc_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn join_async(&mut self) -> Result<R::Value> {
        if let Some(fd) = self.sentinel() {
            let owned = fd.try_clone_to_owned().map_err(io)?;
            // `new` (deprecated in newer tokio for `unsafe register`) is sound
            // here: the AsyncFd owns its descriptor, an `OwnedFd` nobody else
            // closes; it also works with the older tokio releases we accept.
            #[allow(deprecated)]
            let fd = AsyncFd::new(owned).map_err(io)?;
            // Readable once the child has exited; nothing is read.
            drop(fd.readable().await.map_err(io)?);
        }
        self.join()
    }
}
