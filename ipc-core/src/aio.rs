//! Waiting for shared-memory futexes from async code (the `tokio` feature).
//!
//! No task busy-polls and no task gets a thread. A task that must wait for
//! a futex word to change registers `(address, expected value, waker)` in a
//! *shard*: a table served by one thread (`ipc-async-waiter`) that sleeps
//! in `futex_waitv` on every registered word at once, plus a private
//! control word that registrations bump. When a word changes (or is
//! woken), the thread wakes the tasks registered on it; they re-check
//! their condition and register again if need be.
//!
//! `futex_waitv` takes at most 128 words, so a shard serves 127 distinct
//! addresses (any number of tasks each); more addresses start more shards.
//! 1,000 queues waited on cost 8 sleeping threads, whatever the number of
//! tasks.
//!
//! Every [`SLICE`] the thread also runs the registrations' `check`
//! callbacks (a queue's recovery of a slot held by a dead process, a lock
//! holder's liveness, a pipe peer's): the same periodic checks the blocking
//! calls make, done without waking any task unless one says so.
//!
//! Memory: an entry keeps its object's mapping alive (`keep`) until the
//! thread is past any `futex_waitv` call that may name its address, so a
//! word the kernel reads is always mapped.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sys::fork_local::ForkLocal;
use crate::sys::futex::{self, WaitV, WAIT_ANY_MAX};

/// Keeps an object's mapping alive while a registration names it.
pub(crate) type Keep = Arc<dyn Any + Send + Sync>;
/// A periodic check run by the waiter thread; `true` wakes the task.
pub(crate) type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// How often the waiter runs the registrations' checks.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// Distinct addresses per shard: `futex_waitv`'s limit, less the control word.
const PER_SHARD: usize = WAIT_ANY_MAX - 1;

struct Entry {
    id: u64,
    addr: usize,
    expected: u32,
    waker: Waker,
    /// Set by the thread when the word changed, was woken, or `check` said
    /// so; the task then takes the entry out.
    fired: bool,
    keep: Keep,
    check: Option<Check>,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    /// Mappings of entries removed by their tasks, dropped by the thread
    /// once no `futex_waitv` call of its can still name them.
    graveyard: Vec<Keep>,
}

impl Table {
    fn addrs(&self) -> usize {
        let mut a: Vec<usize> = self.entries.iter().map(|e| e.addr).collect();
        a.sort_unstable();
        a.dedup();
        a.len()
    }
}

struct Shard {
    /// Bumped (and woken, privately) on every registration and removal.
    ctl: AtomicU32,
    table: Mutex<Table>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn poke(&self) {
        // Relaxed: the futex word only has to change; the table's mutex
        // orders what it guards.
        self.ctl.fetch_add(1, Ordering::Relaxed);
        futex::wake_private(&self.ctl);
    }

    /// The thread: see the module docs.
    fn serve(&self) {
        let mut next_check = Instant::now() + SLICE;
        let mut waitv = Vec::with_capacity(WAIT_ANY_MAX);
        loop {
            let has_checks;
            {
                let mut t = self.lock();
                // Our previous futex_waitv call has returned: the mappings
                // it might have named may go now.
                t.graveyard.clear();
                // Relaxed: read before the values below, under the mutex
                // that every poke's table change happened under.
                let ctl = self.ctl.load(Ordering::Relaxed);
                let now = Instant::now();
                let checking = now >= next_check;
                if checking {
                    next_check = now + SLICE;
                }
                waitv.clear();
                waitv.push(WaitV::new(&self.ctl, ctl, true));
                for e in t.entries.iter_mut().filter(|e| !e.fired) {
                    // SAFETY: `keep` holds the mapping `addr` lies in.
                    let word = unsafe { &*(e.addr as *const AtomicU32) };
                    // Acquire: pairs with the Release (or SeqCst) store of
                    // whoever changed the word; the task re-checks anyway.
                    let changed = word.load(Ordering::Acquire) != e.expected;
                    let checked = checking && e.check.as_ref().is_some_and(|c| c());
                    if changed || checked {
                        e.fired = true;
                        e.waker.wake_by_ref();
                    } else if !waitv[1..].iter().any(|w| w.addr() == e.addr) {
                        waitv.push(WaitV::new(word, e.expected, false));
                    }
                }
                has_checks = t.entries.iter().any(|e| !e.fired && e.check.is_some());
            }
            let deadline = has_checks.then_some(next_check);
            // SAFETY: every address is the control word (alive with `self`)
            // or an entry's, whose mapping its `keep` holds until the next
            // graveyard clear, after this call returns.
            if let Some(i) = unsafe { futex::wait_many(&waitv, deadline) } {
                if i > 0 {
                    let addr = waitv[i].addr();
                    let mut t = self.lock();
                    for e in t.entries.iter_mut().filter(|e| e.addr == addr && !e.fired) {
                        e.fired = true;
                        e.waker.wake_by_ref();
                    }
                }
            }
        }
    }
}

/// The shards of this process (a forked child starts without any: threads
/// do not survive fork).
static SHARDS: ForkLocal<Vec<Arc<Shard>>> = ForkLocal::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A shard that serves `addr` or has room for it, started if need be.
fn shard_for(addr: usize) -> std::io::Result<Arc<Shard>> {
    SHARDS.with(|shards| {
        if let Some(s) = shards
            .iter()
            .find(|s| s.lock().entries.iter().any(|e| e.addr == addr))
            .or_else(|| shards.iter().find(|s| s.lock().addrs() < PER_SHARD))
        {
            return Ok(s.clone());
        }
        let s = Arc::new(Shard {
            ctl: AtomicU32::new(0),
            table: Mutex::new(Table::default()),
        });
        let s2 = s.clone();
        std::thread::Builder::new()
            .name("ipc-async-waiter".into())
            .spawn(move || s2.serve())?;
        shards.push(s.clone());
        Ok(s)
    })
}

/// Resolves once `*word != expected`, or the word is woken, or `check`
/// (run every [`SLICE`] by the waiter thread) returns `true`. Spurious
/// completions are possible: callers re-check their condition.
///
/// Cancel safe: dropping it removes the registration.
pub(crate) fn changed(
    word: &AtomicU32,
    expected: u32,
    keep: Keep,
    check: Option<Check>,
) -> Changed {
    Changed {
        addr: word as *const AtomicU32 as usize,
        expected,
        keep: Some(keep),
        check,
        relay: None,
        reg: None,
        fired: false,
    }
}

/// The future of [`changed`].
pub(crate) struct Changed {
    addr: usize,
    expected: u32,
    keep: Option<Keep>,
    check: Option<Check>,
    relay: Option<Check>,
    reg: Option<(Arc<Shard>, u64)>,
    fired: bool,
}

impl Changed {
    /// Runs `relay` if this future is dropped after the word was woken for
    /// it but before it completed: a wake-up meant for one waiter (a
    /// `notify(1)`) is then passed on instead of lost.
    pub(crate) fn relay(mut self, relay: Check) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Removes the registration; returns whether it had fired.
    fn deregister(&mut self) -> bool {
        let Some((shard, id)) = self.reg.take() else {
            return false;
        };
        let mut t = shard.lock();
        let fired = match t.entries.iter().position(|e| e.id == id) {
            Some(i) => {
                let e = t.entries.swap_remove(i);
                t.graveyard.push(e.keep);
                e.fired
            }
            None => false,
        };
        drop(t);
        shard.poke();
        fired
    }
}

impl Future for Changed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // SAFETY: the caller's object (whose mapping `keep` holds, and which
        // the caller borrows while awaiting) contains the word.
        let word = unsafe { &*(this.addr as *const AtomicU32) };
        // Acquire: as in `Shard::serve`.
        if word.load(Ordering::Acquire) != this.expected {
            this.deregister();
            return Poll::Ready(());
        }
        match &this.reg {
            None => {
                let Some(keep) = this.keep.take() else {
                    return Poll::Ready(());
                };
                let shard = match shard_for(this.addr) {
                    Ok(s) => s,
                    // No thread to be had: degrade to a wake-up per poll
                    // rather than sleeping for ever.
                    Err(_) => {
                        cx.waker().wake_by_ref();
                        this.keep = Some(keep);
                        return Poll::Pending;
                    }
                };
                // Relaxed: ids only need to be unique.
                let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                shard.lock().entries.push(Entry {
                    id,
                    addr: this.addr,
                    expected: this.expected,
                    waker: cx.waker().clone(),
                    fired: false,
                    keep,
                    check: this.check.clone(),
                });
                this.reg = Some((shard.clone(), id));
                shard.poke();
                Poll::Pending
            }
            Some((shard, id)) => {
                let mut t = shard.lock();
                let Some(e) = t.entries.iter_mut().find(|e| e.id == *id) else {
                    drop(t);
                    this.reg = None;
                    return Poll::Ready(());
                };
                if e.fired {
                    drop(t);
                    this.fired = true;
                    this.deregister();
                    return Poll::Ready(());
                }
                if !e.waker.will_wake(cx.waker()) {
                    e.waker = cx.waker().clone();
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Changed {
    fn drop(&mut self) {
        if self.deregister() && !self.fired {
            if let Some(r) = &self.relay {
                r();
            }
        }
    }
}

/// Waits until `cond` yields a value, sleeping on the wait point `wp`
/// (inside the mapping `keep` holds) between tries, with `check` run by
/// the waiter thread every [`SLICE`]. The async twin of
/// `WaitPoint::wait_until`, and cancel safe the same way: `cond` takes
/// what it returns in one synchronous step, so a dropped wait has taken
/// nothing; a wake-up it was given is passed on (`notify(1)`).
pub(crate) async fn wait_point<T>(
    wp: &crate::ring::wait::WaitPoint,
    keep: &Keep,
    check: Option<Check>,
    mut cond: impl FnMut() -> Option<T>,
) -> T {
    struct Registered<'a>(&'a crate::ring::wait::WaitPoint);
    impl Drop for Registered<'_> {
        fn drop(&mut self) {
            self.0.unregister();
        }
    }
    let at = wp as *const crate::ring::wait::WaitPoint as usize;
    let k = keep.clone();
    let relay: Check = Arc::new(move || {
        let _alive = &k;
        // SAFETY: `k` keeps the mapping that holds the wait point.
        unsafe { &*(at as *const crate::ring::wait::WaitPoint) }.notify(1);
        true
    });
    loop {
        if let Some(v) = cond() {
            return v;
        }
        let e = wp.register();
        let _r = Registered(wp);
        if let Some(v) = cond() {
            return v;
        }
        changed(wp.epoch(), e, keep.clone(), check.clone())
            .relay(relay.clone())
            .await;
    }
}
