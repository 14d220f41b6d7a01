//! A thread that lives as long as the process and starts the children
//! that must die with us.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that created the child
//! exits, not the process. A daemon child (or the fork server) started
//! from a short-lived thread would be killed as soon as that thread ends.
//! Creating them from this thread ties them to the process's lifetime.

use crate::sys::fork_local::ForkLocal;
use std::sync::mpsc::{channel, sync_channel, Sender};

type Work = Box<dyn FnOnce() + Send>;

/// The launcher's queue. Fork-aware: a forked child has no launcher
/// thread (threads do not survive fork) and starts its own.
static LAUNCHER: ForkLocal<Option<Sender<Work>>> = ForkLocal::new();

/// Runs `f` on the launcher thread and returns its result.
pub(crate) fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
    let tx = LAUNCHER.with(|g| -> std::io::Result<Sender<Work>> {
        match g.as_ref() {
            Some(tx) => Ok(tx.clone()),
            None => {
                let (tx, rx) = channel::<Work>();
                std::thread::Builder::new()
                    .name("ipc-launcher".into())
                    .spawn(move || {
                        while let Ok(w) = rx.recv() {
                            // A panic in one job must not kill the thread
                            // every later daemon start depends on.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(w));
                        }
                    })?;
                *g = Some(tx.clone());
                Ok(tx)
            }
        }
    })?;
    let (done_tx, done_rx) = sync_channel(1);
    tx.send(Box::new(move || {
        let _ = done_tx.send(f());
    }))
    .map_err(|_| std::io::Error::other("the ipc launcher thread is gone"))?;
    done_rx
        .recv()
        .map_err(|_| std::io::Error::other("the ipc launcher thread is gone"))
}
