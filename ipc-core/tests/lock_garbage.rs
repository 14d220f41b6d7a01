//! Garbage in a lock word (issue 14, item 4): a word naming a thread that
//! cannot hold the lock must end every call with a typed error (or an
//! honest `OwnerDied` recovery), never a wait without end.
//!
//! Each case creates a named object, has one child open its region by name
//! and scribble the lock word, and runs the API call in another child under
//! a watchdog, so a regression fails the test instead of hanging the suite.

mod common;
use common::*;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_core::region::{Kind, Region};
use ipc_core::sync::{Barrier, Condition, Lock, LockError, RLock};
use ipc_core::value::{Array, Value};
use ipc_core::Error;

const CONTENDED: u32 = 1 << 31;

/// A generous bound for a call that must end: the unrecorded-thread rule
/// takes about a second, the others are immediate.
const MUST_END_WITHIN: Duration = Duration::from_secs(10);

/// A kernel thread's tid (`kthreadd` is 2 on every Linux without a pid
/// namespace), found by its `PF_KTHREAD` flag.
fn kernel_thread() -> Option<u32> {
    (2..64).find(|id| {
        std::fs::read_to_string(format!("/proc/{id}/stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 1..];
                rest.split_ascii_whitespace().nth(6)?.parse::<u64>().ok()
            })
            .is_some_and(|flags| flags & 0x0020_0000 != 0)
    })
}

/// From a child, opens region `name` of `kind` by name and writes `word`
/// into the lock word at the start of its payload.
fn plant(name: &str, kind: Kind, word: u32) {
    let n = name.to_owned();
    join_ok(fork_child(move || {
        let r = Region::open(&n, kind).unwrap();
        // SAFETY: every one of these kinds starts its payload with the
        // 4-byte, 4-aligned lock word; the region stays mapped meanwhile.
        unsafe { &*r.payload().cast::<AtomicU32>() }.store(word, Ordering::SeqCst);
        0
    }));
}

/// Runs `f` in a child; it must return true, within `MUST_END_WITHIN`
/// (plus slack for a loaded machine before the watchdog kills it).
fn in_child(what: &str, f: impl FnOnce() -> bool) {
    let kid = fork_child(move || {
        let t = Instant::now();
        let ok = f();
        i32::from(!(ok && t.elapsed() < MUST_END_WITHIN))
    });
    match wait_exit_within(kid, MUST_END_WITHIN + Duration::from_secs(20)) {
        nix::sys::wait::WaitStatus::Exited(_, 0) => {}
        s => panic!("{what}: child failed: {s:?}"),
    }
}

fn corrupt<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Corrupt(_)))
}

fn lock_corrupt<G>(r: Result<G, LockError<G>>) -> bool {
    matches!(r, Err(LockError::Corrupt(_)))
}

/// Words that no live thread of ours can have written.
fn impossible_words() -> Vec<(&'static str, u32)> {
    let mut v = vec![
        ("contended bit alone (tid 0)", CONTENDED),
        ("tid above 2^22", (1 << 22) + 5),
    ];
    match kernel_thread() {
        Some(k) => {
            v.push(("kernel thread", k));
            v.push(("kernel thread, contended", k | CONTENDED));
        }
        None => eprintln!("no kernel thread visible (pid namespace): that case is skipped"),
    }
    v
}

#[test]
fn lock_word_naming_a_kernel_thread_is_corrupt_not_a_hang() {
    for (what, word) in impossible_words() {
        let name = unique("garbage-lock");
        let lock = Lock::create(&name).unwrap();
        plant(&name, Kind::Lock, word);
        let n = name.clone();
        in_child(what, move || {
            lock_corrupt(Lock::open(&n).unwrap().acquire())
        });
        let n = name.clone();
        in_child(what, move || {
            lock_corrupt(Lock::open(&n).unwrap().try_acquire())
        });
        let n = name.clone();
        in_child(what, move || {
            lock_corrupt(
                Lock::open(&n)
                    .unwrap()
                    .acquire_timeout(Duration::from_secs(60)),
            )
        });
        drop(lock);
        assert_gone(&name);
    }
}

#[test]
fn rlock_and_condition_with_a_garbage_word_are_corrupt_not_a_hang() {
    for (what, word) in impossible_words() {
        let rn = unique("garbage-rlock");
        let rl = RLock::create(&rn).unwrap();
        plant(&rn, Kind::RLock, word);
        let n = rn.clone();
        in_child(what, move || {
            lock_corrupt(RLock::open(&n).unwrap().acquire())
        });
        let cn = unique("garbage-cond");
        let c = Condition::create(&cn).unwrap();
        plant(&cn, Kind::Condition, word);
        let n = cn.clone();
        in_child(what, move || {
            lock_corrupt(
                Condition::open(&n)
                    .unwrap()
                    .acquire()
                    .map(|_| ())
                    .map_err(|e| e.map(|_| ())),
            )
        });
        drop((rl, c));
        assert_gone(&rn);
        assert_gone(&cn);
    }
}

#[test]
fn barrier_reset_abort_and_wait_with_a_garbage_word_are_corrupt_not_a_hang() {
    for (what, word) in impossible_words() {
        let name = unique("garbage-barrier");
        let b = Barrier::create(&name, 2).unwrap();
        plant(&name, Kind::Barrier, word);
        let n = name.clone();
        in_child(what, move || corrupt(Barrier::open(&n).unwrap().reset()));
        let n = name.clone();
        in_child(what, move || corrupt(Barrier::open(&n).unwrap().abort()));
        let n = name.clone();
        in_child(what, move || corrupt(Barrier::open(&n).unwrap().wait()));
        drop(b);
        assert_gone(&name);
    }
}

#[test]
fn value_and_array_calls_with_a_garbage_word_are_corrupt_not_a_hang() {
    for (what, word) in impossible_words() {
        let vn = unique("garbage-value");
        let v = Value::create(&vn, 7u64).unwrap();
        plant(&vn, Kind::Value, word);
        let n = vn.clone();
        in_child(what, move || {
            let v = Value::<u64>::open(&n).unwrap();
            corrupt(v.get().map_err(Error::from))
                && corrupt(v.set(1))
                && corrupt(v.update(|x| *x += 1).map_err(Error::from))
        });
        let an = unique("garbage-array");
        let a = Array::create(&an, &[1u32, 2, 3]).unwrap();
        plant(&an, Kind::Array, word);
        let n = an.clone();
        in_child(what, move || {
            let a = Array::<u32>::open(&n).unwrap();
            corrupt(a.get(0))
                && corrupt(a.set(1, 5))
                && corrupt(a.to_vec())
                && corrupt(a.copy_from_slice(&[0, 0, 0]))
        });
        // Nothing was written through the garbage lock.
        assert_eq!(v.get_unlocked(), 7);
        drop((v, a));
        assert_gone(&vn);
        assert_gone(&an);
    }
}

#[test]
fn lock_word_naming_a_live_thread_that_never_recorded_itself_is_corrupt() {
    // The parent's main thread is alive and ours, but it never took the
    // lock: no owner record matches. A real holder records itself one store
    // after its CAS, so after a second this can only be garbage.
    let me = std::process::id();
    let name = unique("garbage-unrecorded");
    let v = Value::create(&name, 1u32).unwrap();
    plant(&name, Kind::Value, me | CONTENDED);
    let n = name.clone();
    in_child("unrecorded live thread", move || {
        let v = Value::<u32>::open(&n).unwrap();
        let t = Instant::now();
        // Not before the grace period: a live holder gets its chance.
        corrupt(v.get().map_err(Error::from)) && t.elapsed() >= Duration::from_millis(900)
    });
    let ln = unique("garbage-unrecorded-lock");
    let l = Lock::create(&ln).unwrap();
    plant(&ln, Kind::Lock, me);
    let n = ln.clone();
    in_child("unrecorded live thread, lock", move || {
        let l = Lock::open(&n).unwrap();
        // try_acquire cannot wait for the grace period: busy, not corrupt.
        matches!(l.try_acquire(), Err(LockError::WouldBlock)) && lock_corrupt(l.acquire())
    });
    drop((v, l));
    assert_gone(&name);
    assert_gone(&ln);
}

#[test]
fn lock_word_naming_a_dead_thread_is_recovered_as_owner_died() {
    // Honest answer for a tid that no longer exists: its holder died
    // (perhaps before recording itself); the lock is taken over.
    let dead = fork_child(|| 0);
    join_ok(dead);
    let dead = dead.as_raw() as u32;
    let name = unique("garbage-dead");
    let v = Value::create(&name, 1u32).unwrap();
    plant(&name, Kind::Value, dead | CONTENDED);
    let n = name.clone();
    in_child("dead tid", move || {
        let v = Value::<u32>::open(&n).unwrap();
        // The set happens, reported once as OwnerDied; then all is clean.
        matches!(v.set(5), Err(Error::OwnerDied)) && v.get().ok() == Some(5)
    });
    assert_eq!(v.get().unwrap(), 5);
    drop(v);
    assert_gone(&name);
}
