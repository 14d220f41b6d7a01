//! Process-global state that a forked child starts afresh.
//!
//! A `std::sync::Mutex` copied by `fork` while another thread of the parent
//! held it stays locked forever in the child (that thread does not exist
//! there), and the data it guards may be half-updated. `ForkLocal` records
//! which process owns its data: the first access from a forked child takes
//! the lock over, abandons the parent's value without reading or dropping
//! it, and starts from `T::default()`.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};

use super::proc;

/// Per-process state behind a fork-aware lock.
///
/// # Examples
///
/// ```
/// use ipc_core::sys::fork_local::ForkLocal;
/// static SEEN: ForkLocal<Vec<u32>> = ForkLocal::new();
/// SEEN.with(|v| v.push(1));
/// assert_eq!(SEEN.with(|v| v.len()), 1); // a forked child would see 0
/// ```
pub struct ForkLocal<T> {
    /// 0 when free, else (pid << 32 | tid) of the holder.
    lock: AtomicU64,
    /// (pid that owns `data`, its value); `ManuallyDrop` so an abandoned
    /// value is never dropped.
    data: UnsafeCell<Option<(u32, ManuallyDrop<T>)>>,
}

// SAFETY: `data` is only accessed by the lock holder (see `with`).
unsafe impl<T: Send> Sync for ForkLocal<T> {}

impl<T: Default> ForkLocal<T> {
    /// An empty cell (usable in a `static`).
    pub const fn new() -> Self {
        ForkLocal {
            lock: AtomicU64::new(0),
            data: UnsafeCell::new(None),
        }
    }

    /// Runs `f` on this process's value, under the lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let pid = proc::pid();
        let me = (u64::from(pid) << 32) | u64::from(proc::tid());
        let mut spins = 0u32;
        loop {
            // Acquire (on success): pairs with the Release in the guard's
            // unlock, so the previous holder's writes to `data` are visible.
            match self
                .lock
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => break,
                // Held by a thread of another process: our parent's, copied
                // by fork. No such thread exists here: take it over.
                Err(held)
                    if (held >> 32) as u32 != pid
                        && self
                            .lock
                            .compare_exchange(held, me, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok() =>
                {
                    break
                }
                Err(_) => {
                    spins += 1;
                    if spins < 100 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                }
            }
        }
        struct Unlock<'a>(&'a AtomicU64);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                // Release: publishes our writes to `data` to the next holder.
                self.0.store(0, Ordering::Release);
            }
        }
        let _unlock = Unlock(&self.lock);
        // SAFETY: we hold the lock, so no other thread of this process
        // touches `data`; threads of other processes have their own copy.
        let slot = unsafe { &mut *self.data.get() };
        if slot.as_ref().is_none_or(|(owner, _)| *owner != pid) {
            // The parent's value (if any) is abandoned, never read or
            // dropped (it is `ManuallyDrop`): it may have been mid-update
            // when we were forked. Its memory is leaked in this child.
            *slot = Some((pid, ManuallyDrop::new(T::default())));
        }
        let (_, value) = slot.as_mut().expect("initialised just above");
        f(value)
    }
}

impl<T> std::fmt::Debug for ForkLocal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForkLocal { .. }")
    }
}

impl<T: Default> Default for ForkLocal<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CELL: ForkLocal<Vec<u32>> = ForkLocal::new();

    #[test]
    fn forked_child_starts_afresh_even_if_the_lock_was_held() {
        CELL.with(|v| v.push(1));
        // Simulate a parent thread holding the lock at fork time.
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            CELL.with(|_| {
                tx.send(()).unwrap();
                go_rx.recv().unwrap();
            })
        });
        rx.recv().unwrap();
        // SAFETY: the child only touches CELL and `_exit`s.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = CELL.with(|v| {
                    let fresh = v.is_empty();
                    v.push(2);
                    fresh
                });
                // SAFETY: leaving the child at once.
                unsafe { libc::_exit(i32::from(!ok)) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                go_tx.send(()).unwrap();
                t.join().unwrap();
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
                assert_eq!(CELL.with(|v| v.clone()), vec![1]);
            }
        }
    }
}
