//! Lock-free rings in shared memory: [`mpmc`] (fixed slots, many producers
//! and consumers) under `Queue`, [`spsc`] (variable frames) under `Pipe`.
//! Both block by spinning briefly, then sleeping on a futex ([`wait`]).

pub(crate) mod blocks;
pub(crate) mod mpmc;
pub(crate) mod spsc;
pub(crate) mod wait;

/// Aligns a field to its own pair of cache lines, so producer and consumer
/// indices never share one (adjacent-line prefetch makes 128 the safe size).
#[derive(Debug)]
#[repr(C, align(128))]
pub(crate) struct Padded<T>(pub T);
