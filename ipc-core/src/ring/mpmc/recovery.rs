//! Recovery of slots whose claimant died (or that hold garbage).

use super::*;

impl Mpmc {
    /// Unblocks the ring if a process died holding the slot that blocked
    /// callers wait for: a producer that died mid-write (its `put` never
    /// returned, so nothing acknowledged is lost; the slot becomes a
    /// tombstone that consumers skip), or a consumer that died mid-read
    /// (its message died with it; the slot is freed). Called by blocked
    /// callers every 100 ms.
    ///
    /// `lost(bytes, kind)` is called with the message of a slot freed from
    /// a dead consumer (read before the freeing CAS, passed only if that
    /// CAS won), so the ring's user can release what the message names.
    /// At most [`LOST_MAX`] bytes are passed.
    #[cfg(not(loom))]
    pub fn recover(&self, lost: impl FnMut(&[u8], u32)) -> Recovered {
        let r = self.recover_with(|tag| self.judge(tag), lost);
        match r {
            Recovered::Nothing => {}
            Recovered::Freed => crate::trace::event!(WARN, "queue slot recovered from a process that died holding it"),
            Recovered::Garbage => crate::trace::event!(ERROR, "queue slot claimed by no known process (garbage) freed; its message, if any, is lost"),
        }
        r
    }

    /// [`Mpmc::recover`], with `judge(tag)` deciding whether a claimant is gone.
    pub(super) fn recover_with(
        &self,
        judge: impl Fn(u32) -> Claimant,
        mut lost: impl FnMut(&[u8], u32),
    ) -> Recovered {
        let h = self.header();
        let mut out = Recovered::Nothing;
        let mut note = |c: Claimant| {
            if c == Claimant::Unknown {
                out = Recovered::Garbage;
            } else if out == Recovered::Nothing {
                out = Recovered::Freed;
            }
        };
        // Relaxed (positions): a snapshot; every change below is a CAS from
        // the exact state we judged, which fails if the slot moved on.
        let d = h.dequeue_pos.0.load(Ordering::Relaxed);
        let slot = self.slot(d % self.cap);
        let free = d.wrapping_mul(2);
        // Acquire: pairs with the claim CAS that wrote the tag.
        let w = slot.state.load(Ordering::Acquire);
        let tag = tag_of(w);
        if diff(w, free) == 0 && tag != 0 {
            let c = judge(tag);
            if c != Claimant::Alive {
                // Move the position first (see `advance`).
                advance(&h.enqueue_pos.0, d);
                // AcqRel: takes over the dead claim, and publishes the
                // tombstone to the consumers' Acquire loads of the state.
                if slot
                    .state
                    .compare_exchange(
                        w,
                        pack(free.wrapping_add(1), TOMB),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    note(c);
                }
            }
        }
        // Relaxed: as above.
        let e = h.enqueue_pos.0.load(Ordering::Relaxed);
        if let Some(p) = e.checked_sub(self.cap) {
            let slot = self.slot(p % self.cap);
            let full = p.wrapping_mul(2).wrapping_add(1);
            // Acquire: as above.
            let w = slot.state.load(Ordering::Acquire);
            let tag = tag_of(w);
            // A tombstone here lost its skipper between moving the position
            // and freeing it: free it as a dead claim.
            let c = match tag {
                0 => Claimant::Alive,
                TOMB => Claimant::Dead,
                t => judge(t),
            };
            if diff(w, full) == 0 && c != Claimant::Alive {
                // The dead consumer's message, copied while the slot is
                // still claimed (nobody writes a claimed slot), for `lost`.
                // Relaxed: ordered by the Acquire of the state above.
                let len = (slot.len.load(Ordering::Relaxed) as usize).min(self.slot_size);
                // Relaxed: as `len`.
                let kind = slot.kind.load(Ordering::Relaxed);
                let mut buf = [0u8; LOST_MAX];
                let n = len.min(LOST_MAX);
                // SAFETY: the slot's data holds slot_size >= n bytes; the
                // slot is claimed (by the dead), so nobody writes it.
                unsafe {
                    std::ptr::copy_nonoverlapping(self.data(p % self.cap), buf.as_mut_ptr(), n)
                };
                advance(&h.dequeue_pos.0, p);
                // AcqRel: takes over the dead claim, and publishes the free
                // slot to the next producer's Acquire load of the state.
                if slot
                    .state
                    .compare_exchange(
                        w,
                        pack(p.wrapping_add(self.cap).wrapping_mul(2), 0),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    note(c);
                    // A tombstone held no message.
                    if tag != TOMB {
                        lost(&buf[..n], kind);
                    }
                }
            }
        }
        out
    }
}
