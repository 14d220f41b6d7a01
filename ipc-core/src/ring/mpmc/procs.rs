//! The per-ring process table: registration, and judging whether a claimant is alive.

use super::*;

impl Mpmc {
    /// This process's tag, registering it in the ring's process table on
    /// first use (and again in a forked child).
    ///
    /// # Errors
    /// [`Error::TooManyProcesses`] when [`PROCS`] live processes already use
    /// the ring.
    ///
    /// The ring's user may record tags elsewhere too (a queue's block
    /// table does): a dead process's entry is reused only if no slot and
    /// no `named_elsewhere(tag)` names it, so a claim of the dead is never
    /// mistaken for one of the living.
    #[cfg(not(loom))]
    #[inline]
    pub fn register_with(&self, named_elsewhere: impl Fn(u32) -> bool) -> Result<u32> {
        let pid = crate::sys::proc::pid();
        // Relaxed: a cache of this process's own earlier result.
        let c = self.me.load(std::sync::atomic::Ordering::Relaxed);
        if c >> 32 == u64::from(pid) && c as u32 != 0 {
            return Ok(c as u32);
        }
        self.register_slow(pid, &named_elsewhere)
    }

    #[cfg(not(loom))]
    #[cold]
    pub(super) fn register_slow(
        &self,
        pid: u32,
        named_elsewhere: &dyn Fn(u32) -> bool,
    ) -> Result<u32> {
        use crate::sys::proc::TaskId;
        let me = TaskId::current_process().pack();
        let take = |k: usize| {
            let tag = k as u32 + 1;
            // Relaxed: see `register`.
            self.me.store(
                u64::from(pid) << 32 | u64::from(tag),
                std::sync::atomic::Ordering::Relaxed,
            );
            Ok(tag)
        };
        // Acquire/AcqRel on the table: an entry is a claim of ownership,
        // ordered like a lock word between the processes that take it.
        if let Some(k) = (0..PROCS).find(|&k| self.proc_entry(k).load(Ordering::Acquire) == me) {
            return take(k);
        }
        for k in 0..PROCS {
            let e = self.proc_entry(k);
            if e.compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return take(k);
            }
        }
        // Reuse the entry of a dead process, unless a slot still names it
        // (its claim must be recovered first: the tag would look alive).
        // A dead process makes no new claims, so the scan cannot go stale.
        for k in 0..PROCS {
            let e = self.proc_entry(k);
            let v = e.load(Ordering::Acquire);
            if !TaskId::unpack(v).is_alive()
                && !self.named_by_a_slot(k as u32 + 1)
                && !named_elsewhere(k as u32 + 1)
                && e.compare_exchange(v, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return take(k);
            }
        }
        Err(Error::TooManyProcesses { max: PROCS })
    }

    /// Whether any slot is held under `tag`.
    #[cfg(not(loom))]
    pub(super) fn named_by_a_slot(&self, tag: u32) -> bool {
        // Acquire: pairs with the claims' CAS; a stale view only delays reuse.
        (0..self.cap).any(|i| tag_of(self.slot(i).state.load(Ordering::Acquire)) == tag)
    }

    /// Judges the process that holds a claim under `tag` by its table
    /// entry: alive, gone (pid and start time no longer run), or unknown
    /// (the tag names no registered process: garbage).
    #[cfg(not(loom))]
    pub fn judge(&self, tag: u32) -> Claimant {
        use crate::sys::proc::TaskId;
        let Some(k) = (tag as usize).checked_sub(1).filter(|&k| k < PROCS) else {
            return Claimant::Unknown;
        };
        // Acquire: pairs with the registration that wrote the entry.
        match self.proc_entry(k).load(Ordering::Acquire) {
            0 => Claimant::Unknown,
            v if v == TaskId::current_process().pack() || TaskId::unpack(v).is_alive() => {
                Claimant::Alive
            }
            _ => Claimant::Dead,
        }
    }
}
