//! What `ipc inspect` shows of a ring.

use super::*;

/// A snapshot of a ring for `ipc inspect` (see [`Mpmc::stats`]).
#[cfg(not(loom))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RingStats {
    pub depth: u64,
    pub capacity: u64,
    pub slot_size: usize,
    /// Longest message now queued, in bytes (0 if none).
    pub largest_queued: usize,
    /// Slots claimed by a process that no longer runs (a blocked caller
    /// recovers them).
    pub held_by_dead: u64,
    /// Slots claimed by a running process (a `put` or `get` in progress).
    pub held_by_live: u64,
    /// Slots whose producer died before filling them, not yet skipped.
    pub tombstones: u64,
    /// Slots whose claim names no registered process (garbage).
    pub unknown_claims: u64,
    /// Registered processes still running, and gone.
    pub procs_alive: u64,
    pub procs_dead: u64,
    pub closed: bool,
    pub unfinished: u32,
}

#[cfg(not(loom))]
impl Mpmc {
    /// Reads every slot state and the process table, changing nothing.
    /// A snapshot: other processes keep going while it is taken.
    pub fn stats(&self) -> RingStats {
        use crate::sys::proc::TaskId;
        let mut st = RingStats {
            depth: self.len(),
            capacity: self.cap,
            slot_size: self.slot_size,
            ..RingStats::default()
        };
        let mut dead_tags = std::collections::HashMap::new();
        for i in 0..self.cap {
            let slot = self.slot(i);
            // Acquire: pairs with the Release that published the slot, so
            // `len` below belongs to the state we saw (a snapshot anyway).
            let w = slot.state.load(Ordering::Acquire);
            let (seq, tag) = (w >> TAG_BITS, tag_of(w));
            match tag {
                0 if seq & 1 == 1 => {
                    // Relaxed: ordered by the Acquire above.
                    let len = slot.len.load(Ordering::Relaxed) as usize;
                    st.largest_queued = st.largest_queued.max(len.min(self.slot_size));
                }
                0 => {}
                TOMB => st.tombstones += 1,
                t => match *dead_tags.entry(t).or_insert_with(|| self.judge(t)) {
                    Claimant::Alive => st.held_by_live += 1,
                    Claimant::Dead => st.held_by_dead += 1,
                    Claimant::Unknown => st.unknown_claims += 1,
                },
            }
        }
        for k in 0..PROCS {
            // Acquire: pairs with the registration that wrote the entry.
            match self.proc_entry(k).load(Ordering::Acquire) {
                0 => {}
                v if TaskId::unpack(v).is_alive() => st.procs_alive += 1,
                _ => st.procs_dead += 1,
            }
        }
        let h = self.header();
        // Relaxed (both): a snapshot for display.
        st.closed = h.closed.load(Ordering::Relaxed) != 0;
        st.unfinished = h.unfinished.load(Ordering::Relaxed);
        st
    }
}
