//! Process-wide tuning knobs.
//!
//! Hidden from the docs and unsupported outside this workspace: it is
//! public only because the benches and ipc-manager use it, and it may
//! change in any release.

use std::sync::atomic::{AtomicU32, Ordering};

/// Iterations of pure spinning before sleeping, by default. About 10-30 µs
/// on current x86: long enough to catch a peer that answers promptly,
/// short enough not to burn a core for an idle queue.
const SPIN_ITERS: u32 = 1 << 12;

static SPIN: AtomicU32 = AtomicU32::new(SPIN_ITERS);

/// Sets how many times a blocked `put`/`get`/`send`/`recv` polls before
/// sleeping on a futex (default 4096, about 10-30 µs). Zero sleeps at once:
/// no core is burned, at the cost of a futex wake-up per message.
///
/// # Examples
///
/// ```
/// ipc_core::tuning::set_spin_iterations(0);
/// assert_eq!(ipc_core::tuning::spin_iterations(), 0);
/// ipc_core::tuning::set_spin_iterations(4096);
/// ```
pub fn set_spin_iterations(n: u32) {
    // Relaxed: a tuning hint; a stale value only changes how long one wait spins.
    SPIN.store(n, Ordering::Relaxed);
}

/// The current spin count (see [`set_spin_iterations`]).
pub fn spin_iterations() -> u32 {
    // Relaxed: see `set_spin_iterations`.
    SPIN.load(Ordering::Relaxed)
}
