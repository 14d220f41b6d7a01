//! `loom` stand-in for the futex: waiting yields, waking does nothing. The
//! algorithms re-check their condition after every wait, so the model checker
//! explores them as spin loops.

use crate::atomic::AtomicU32;
use std::time::{Duration, Instant};

pub use super::futex_common::WaitResult;

/// Yields to the model checker.
pub fn wait(_word: &AtomicU32, _expected: u32, _deadline: Option<Instant>) -> WaitResult {
    loom::thread::yield_now();
    WaitResult::Woken
}

/// Yields to the model checker.
pub fn wait_slice(w: &AtomicU32, e: u32, d: Option<Instant>, _s: Duration) -> WaitResult {
    wait(w, e, d)
}

/// No-op.
pub fn wake(_word: &AtomicU32, _n: u32) -> usize {
    0
}

/// No-op.
pub fn wake_all(_word: &AtomicU32) -> usize {
    0
}
