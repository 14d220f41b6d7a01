//! Types shared by the real futex and its `loom` stand-in.

/// Result of a futex wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    /// Woken by a `wake`, a spurious wake-up, or the word no longer held the
    /// expected value when the kernel checked it. The caller re-checks.
    Woken,
    /// The deadline passed.
    TimedOut,
}
