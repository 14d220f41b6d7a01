//! The lock word shared by `Lock`, `RLock`, `Condition`, `Value` and `Array`:
//! a futex mutex that records its owner so a dead owner is detected.
//!
//! ```text
//! word                      meaning
//! 0                         unlocked
//! tid                       locked by thread `tid`, nobody sleeping
//! tid | CONTENDED           locked by `tid`, waiters may sleep: unlock wakes one
//! ```
//! `owner` holds the packed (tid, start time) of the holder once it has
//! recorded itself, 0 otherwise; it tells a dead holder from a live thread
//! that reused the tid. A holder records itself in the store right after
//! its winning CAS (its identity is computed before), so a live holder is
//! unrecorded only for a few instructions.
//!
//! A waiter judges the thread named by a held word (every 100 ms of waiting):
//! ```text
//! no such task (or a zombie), or a recorded start time that differs   dead: taken over, OwnerDied
//! tid 0, tid >= 2^22, a kernel thread, another user's task            impossible: Corrupt at once
//! a live thread of ours that stays unrecorded for UNRECORDED_LIMIT    impossible: Corrupt
//! a live thread of ours, recorded (or unrecorded for less)            alive: keep waiting
//! ```
//! So garbage in the word ends every call, with or without a deadline.

use std::time::{Duration, Instant};

use crate::atomic::{spin_hint, AtomicU32, AtomicU64, Ordering};
use crate::sys::futex::{self, WaitResult};
use crate::sys::proc;

/// Bit set in the lock word while waiters may be sleeping.
pub(crate) const CONTENDED: u32 = 1 << 31;
/// The tid part of the lock word (Linux tids are below 2^22).
pub(crate) const TID_MASK: u32 = !CONTENDED;

/// How often a blocked waiter checks whether the holder is still alive.
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(100);

/// How long a live thread may stay named in the word without recording
/// itself before the word is judged garbage. A real holder records itself
/// one store after its CAS; only a thread stopped (SIGSTOP, a debugger)
/// exactly there could exceed this.
pub(crate) const UNRECORDED_LIMIT: Duration = Duration::from_secs(1);

/// How a blocking acquisition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Acquired normally.
    Clean,
    /// Acquired from a holder that died: the protected data may be inconsistent.
    OwnerDied,
    /// The deadline passed (or, for `try_lock`, the lock was busy).
    Busy,
    /// The word names a holder that cannot exist (see the module docs); the
    /// lock was not taken.
    Corrupt(Invalid),
}

/// Why a lock word was judged garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// The word as read.
    pub word: u32,
    /// What is wrong with the thread it names.
    pub why: &'static str,
}

impl Invalid {
    /// The text for [`Error::Corrupt`](crate::Error::Corrupt).
    pub fn describe(self) -> String {
        format!(
            "lock word {:#x} names thread {}, {}",
            self.word,
            self.word & TID_MASK,
            self.why
        )
    }
}

/// What a waiter concludes about the thread named by a held word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A live thread that recorded itself: wait.
    Alive,
    /// A live thread of ours that has not recorded itself (yet).
    Unrecorded,
    /// The holder is gone: take the lock over.
    Dead,
    /// No thread of ours can have written this word.
    Impossible(&'static str),
}

/// Tracks how long one word has stayed held by an unrecorded thread.
#[derive(Default)]
pub(super) struct Suspicion(Option<(u32, Instant)>);

impl Suspicion {
    /// Whether word `w`, judged `Unrecorded` now, has been so for too long.
    fn too_long(&mut self, w: u32) -> bool {
        match self.0 {
            Some((sw, since)) if sw == w => since.elapsed() >= UNRECORDED_LIMIT,
            _ => {
                self.0 = Some((w, Instant::now()));
                false
            }
        }
    }
}

/// The lock word in shared memory. All-zero is "unlocked".
#[derive(Debug)]
#[repr(C)]
pub(crate) struct RawLock {
    word: AtomicU32,
    _pad: AtomicU32,
    owner: AtomicU64,
}

impl RawLock {
    #[cfg(loom)]
    pub fn new() -> Self {
        RawLock {
            word: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            owner: AtomicU64::new(0),
        }
    }

    /// One attempt; no syscall.
    #[inline]
    pub fn try_lock(&self) -> bool {
        // Computed before the CAS, so the holder is unrecorded for one store.
        let packed = proc::current_thread_packed();
        let me = proc::TaskId::unpack(packed).id;
        // Acquire: pairs with the Release swap in `unlock` (the Release
        // store in `unlock_unwatched`, for a polled lock), so the previous
        // holder's writes to the protected data are visible to us.
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.record_owner(packed);
            true
        } else {
            false
        }
    }

    /// One attempt that also takes over a lock whose holder is dead (for
    /// the public `try_acquire`; reads `/proc` only when the lock is held).
    pub fn try_lock_or_recover(&self) -> Acquired {
        if self.try_lock() {
            return Acquired::Clean;
        }
        // Relaxed: the CAS in `take_over` decides, with Acquire.
        let w = self.word.load(Ordering::Relaxed);
        if w == 0 {
            return Acquired::Busy;
        }
        match self.verdict(w) {
            Verdict::Dead if self.take_over(w, w & CONTENDED) => Acquired::OwnerDied,
            Verdict::Impossible(why) => Acquired::Corrupt(Invalid { word: w, why }),
            _ => Acquired::Busy,
        }
    }

    /// Blocks until acquired, the holder is found dead, the word is found
    /// impossible, or `deadline`.
    #[inline]
    pub fn lock(&self, deadline: Option<Instant>) -> Acquired {
        if self.try_lock() {
            return Acquired::Clean;
        }
        self.lock_contended(deadline)
    }

    #[cold]
    fn lock_contended(&self, deadline: Option<Instant>) -> Acquired {
        let packed = proc::current_thread_packed();
        let me = proc::TaskId::unpack(packed).id;
        // Spin briefly on plain loads: a holder on another core often
        // releases within a few hundred nanoseconds.
        // (None under loom: a yield there lets the holder run to its unlock
        // first, so the model would never reach the sleep below.)
        for _ in 0..if cfg!(loom) { 0 } else { 100 } {
            // Relaxed: spinning on plain loads; try_lock's CAS decides.
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                if self.try_lock() {
                    return Acquired::Clean;
                }
            } else if w & CONTENDED != 0 {
                break;
            }
            spin_hint();
        }
        let mut suspicion = Suspicion::default();
        loop {
            // Relaxed: a hint; every decision is a CAS.
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Take it as CONTENDED: we cannot know whether others sleep.
                // Acquire: as in `try_lock`.
                if self
                    .word
                    .compare_exchange(0, me | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.record_owner(packed);
                    return Acquired::Clean;
                }
                continue;
            }
            let expected = w | CONTENDED;
            // Relaxed: setting the flag publishes no data; the futex re-checks
            // the word atomically before sleeping.
            if w & CONTENDED == 0
                && self
                    .word
                    .compare_exchange(w, expected, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if futex::wait_slice(&self.word, expected, deadline, LIVENESS_SLICE)
                == WaitResult::TimedOut
            {
                if let Some(a) = self.judge(expected, CONTENDED, &mut suspicion) {
                    return a;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Acquired::Busy;
                }
            }
        }
    }

    /// After a slice of waiting on the held word `w`: takes the lock over
    /// from a dead holder (keeping `flags`), or reports a word no thread
    /// of ours can have written; `None`: keep waiting.
    pub(super) fn judge(&self, w: u32, flags: u32, suspicion: &mut Suspicion) -> Option<Acquired> {
        match self.verdict(w) {
            Verdict::Dead => self.take_over(w, flags).then_some(Acquired::OwnerDied),
            Verdict::Impossible(why) => Some(Acquired::Corrupt(Invalid { word: w, why })),
            Verdict::Unrecorded if suspicion.too_long(w) => Some(Acquired::Corrupt(Invalid {
                word: w,
                why: "a live thread that never recorded itself as the holder",
            })),
            Verdict::Unrecorded => None,
            Verdict::Alive => {
                *suspicion = Suspicion::default();
                None
            }
        }
    }

    /// The lock word as it is now (Relaxed: a hint; every decision is a
    /// CAS).
    #[inline]
    pub(super) fn peek(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }

    /// Replaces the dead holder's word `w` by ours (keeping `flags`).
    fn take_over(&self, w: u32, flags: u32) -> bool {
        let packed = proc::current_thread_packed();
        // Acquire: take over whatever the dead holder published.
        let won = self
            .word
            .compare_exchange(
                w,
                proc::TaskId::unpack(packed).id | flags,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok();
        if won {
            self.record_owner(packed);
            crate::trace::event!(
                WARN,
                dead_tid = w & TID_MASK,
                "lock recovered from a holder that died (OwnerDied)"
            );
        }
        won
    }

    fn record_owner(&self, packed: u64) {
        // Relaxed: the record is advisory (read only by waiters judging the
        // holder, who give an unrecorded one UNRECORDED_LIMIT to appear).
        self.owner.store(packed, Ordering::Relaxed);
    }

    /// Judges the thread named by the held word `w` (see the module docs).
    fn verdict(&self, w: u32) -> Verdict {
        if cfg!(loom) {
            return Verdict::Alive;
        }
        let tid = w & TID_MASK;
        if tid == 0 {
            return Verdict::Impossible("which no thread has");
        }
        if tid >= proc::PID_MAX_LIMIT {
            return Verdict::Impossible("above any Linux thread id");
        }
        // Relaxed: see `record_owner`.
        let rec = proc::TaskId::unpack(self.owner.load(Ordering::Relaxed));
        let recorded = rec.id == tid;
        if recorded && !rec.is_alive() {
            // Dead, or the tid now belongs to a later thread.
            return Verdict::Dead;
        }
        match proc::is_user_task_of_ours(tid) {
            None => Verdict::Dead,
            Some(false) => Verdict::Impossible("a kernel thread or another user's thread"),
            Some(true) if recorded => Verdict::Alive,
            Some(true) => Verdict::Unrecorded,
        }
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub fn is_owned_by_me(&self) -> bool {
        // Relaxed: only this thread can have stored its own tid here, so
        // program order makes that store visible to this load.
        self.word.load(Ordering::Relaxed) & TID_MASK == proc::tid()
    }

    /// Writes `word` into the lock word, with no owner record (tests of
    /// hostile memory).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn plant(&self, word: u32) {
        self.owner.store(0, Ordering::Relaxed);
        self.word.store(word, Ordering::Relaxed);
    }

    /// Whether anyone holds the lock.
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot for diagnostics.
        self.word.load(Ordering::Relaxed) != 0
    }

    /// Releases a lock that nobody sleeps on (a
    /// [`PolledLock`](super::polled_lock::PolledLock)): one plain store.
    #[inline]
    pub(super) fn unlock_unwatched(&self) {
        // Relaxed: cleared before the Release store below, which orders it.
        self.owner.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire CAS of the next holder.
        self.word.store(0, Ordering::Release);
    }

    /// Releases the lock. The caller must hold it (checked by the callers
    /// that expose a raw `release`).
    #[inline]
    pub fn unlock(&self) {
        // Relaxed: cleared before the Release swap below, which orders it.
        self.owner.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire CAS of the next holder.
        if self.word.swap(0, Ordering::Release) & CONTENDED != 0 {
            futex::wake(&self.word, 1);
        }
    }
}

impl RawLock {
    /// The lock word and the owner record, for `ipc inspect` (a snapshot).
    #[cfg(not(loom))]
    pub(crate) fn snapshot(&self) -> (u32, u64) {
        // Relaxed (both): diagnostics only; nothing is decided on them.
        (
            self.word.load(Ordering::Relaxed),
            self.owner.load(Ordering::Relaxed),
        )
    }
}

/// Async acquisition (the `tokio` feature): one step at a time, so a task
/// sleeps between steps without holding anything.
#[cfg(all(feature = "tokio", not(loom)))]
impl RawLock {
    /// Takes the lock (or a dead holder's) if it can; otherwise marks it
    /// contended (so its unlock wakes a waiter) and returns the word to
    /// wait on while it does not change.
    pub(crate) fn lock_step(&self) -> Result<Acquired, u32> {
        loop {
            match self.try_lock_or_recover() {
                Acquired::Busy => {}
                a => return Ok(a),
            }
            // Relaxed: a hint; every decision is a CAS.
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Released meanwhile. Take it as CONTENDED: others may sleep.
                // Acquire: as in `try_lock`.
                let packed = proc::current_thread_packed();
                if self
                    .word
                    .compare_exchange(
                        0,
                        proc::TaskId::unpack(packed).id | CONTENDED,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    self.record_owner(packed);
                    return Ok(Acquired::Clean);
                }
                continue;
            }
            // Relaxed: as in `lock_contended`.
            if w & CONTENDED != 0
                || self
                    .word
                    .compare_exchange(w, w | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return Err(w | CONTENDED);
            }
        }
    }

    /// The futex word.
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Whether the lock is held by a thread that is dead (reads `/proc`).
    pub(crate) fn holder_dead(&self) -> bool {
        // Relaxed: a hint for the waiter thread; `lock_step` decides.
        let w = self.word.load(Ordering::Relaxed);
        w != 0 && !matches!(self.verdict(w), Verdict::Alive | Verdict::Unrecorded)
    }

    /// Passes a wake-up on to another waiter.
    pub(crate) fn wake_one(&self) {
        futex::wake(&self.word, 1);
    }
}

#[cfg(all(test, loom))]
pub(super) mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    /// The model of a lock built by `new`: two threads increment a counter
    /// under `lock` / `unlock`; both increments land, and the lock ends
    /// free (`locked`).
    pub(in crate::sync) fn two_threads_exclude<L: Send + Sync + 'static>(
        new: fn() -> L,
        lock: fn(&L) -> Acquired,
        unlock: fn(&L),
        locked: fn(&L) -> bool,
    ) {
        loom::model(move || {
            let l = Arc::new((new(), UnsafeCell::new(0u32)));
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let l = l.clone();
                    loom::thread::spawn(move || {
                        assert_eq!(lock(&l.0), Acquired::Clean);
                        // SAFETY: the lock gives this thread exclusive access
                        // (that is what the model checks).
                        l.1.with_mut(|p| unsafe { *p += 1 });
                        unlock(&l.0);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            // SAFETY: both threads have been joined.
            assert_eq!(l.1.with(|p| unsafe { *p }), 2);
            assert!(!locked(&l.0));
        });
    }

    #[test]
    fn mutual_exclusion() {
        two_threads_exclude(
            RawLock::new,
            |l| l.lock(None),
            RawLock::unlock,
            RawLock::is_locked,
        );
    }
}
