//! Every synchronisation primitive across real processes: inherited by
//! fork, and opened by name.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, RLock, Semaphore,
};
use ipc_core::value::{RawValue, Value};
use ipc_core::Error;

#[test]
fn lock_protects_a_counter_across_forked_children() {
    let lock = Lock::new().unwrap();
    let counter = RawValue::new(0u64).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            let (lock, counter) = (lock.clone(), counter.clone());
            fork_child(move || {
                for _ in 0..10_000 {
                    let _g = lock.acquire().unwrap();
                    counter.set(counter.get() + 1);
                }
                0
            })
        })
        .collect();
    kids.into_iter().for_each(join_ok);
    assert_eq!(counter.get(), 40_000);
    assert!(!lock.is_locked());
}

#[test]
fn named_lock_opened_by_another_process() {
    let name = unique("lock");
    let lock = Lock::create(&name).unwrap();
    let g = lock.acquire().unwrap();
    let n = name.clone();
    let kid = fork_child(move || {
        let l = Lock::open(&n).unwrap();
        if l.try_acquire().is_ok() {
            return 1; // must be held by the parent
        }
        let t = Instant::now();
        let r = l.acquire_timeout(Duration::from_secs(10));
        let ok = r.is_ok() && t.elapsed() >= Duration::from_millis(50);
        i32::from(!ok)
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(g);
    join_ok(kid);
    drop(lock);
    assert_gone(&name);
}

#[test]
fn lock_timeout_and_release_errors() {
    let lock = Lock::new().unwrap();
    assert!(matches!(lock.release(), Err(Error::NotOwner)));
    let g = lock.acquire().unwrap();
    let l2 = lock.clone();
    let kid = fork_child(move || {
        let t = Instant::now();
        match l2.acquire_timeout(Duration::from_millis(200)) {
            Err(LockError::Timeout) if t.elapsed() >= Duration::from_millis(200) => 0,
            _ => 1,
        }
    });
    join_ok(kid);
    g.leak();
    assert!(lock.is_locked());
    lock.release().unwrap();
    assert!(!lock.is_locked());
}

#[test]
fn rlock_is_recursive_per_thread_and_exclusive_across_processes() {
    let name = unique("rlock");
    let r = RLock::create(&name).unwrap();
    let a = r.acquire().unwrap();
    let b = r.acquire().unwrap();
    assert_eq!(r.count(), 2);
    let n = name.clone();
    let kid = fork_child(move || {
        let r = RLock::open(&n).unwrap();
        let blocked = r.try_acquire().is_err();
        let got = r.acquire_timeout(Duration::from_secs(10)).is_ok();
        i32::from(!(blocked && got))
    });
    std::thread::sleep(Duration::from_millis(50));
    drop(b);
    assert!(r.is_owned());
    drop(a);
    join_ok(kid);
    assert!(matches!(r.release(), Err(Error::NotOwner)));
    drop(r);
    assert_gone(&name);
}

#[test]
fn semaphore_limits_concurrency_across_processes() {
    let sem = Semaphore::new(2).unwrap();
    let inside = Value::new(0i32).unwrap();
    let max_seen = Value::new(0i32).unwrap();
    let kids: Vec<_> = (0..5)
        .map(|_| {
            let (sem, inside, max_seen) = (sem.clone(), inside.clone(), max_seen.clone());
            fork_child(move || {
                for _ in 0..20 {
                    sem.acquire().unwrap();
                    let now = inside.update(|x| *x += 1).unwrap();
                    max_seen.update(|m| *m = (*m).max(now)).unwrap();
                    std::thread::sleep(Duration::from_micros(200));
                    inside.update(|x| *x -= 1).unwrap();
                    sem.release().unwrap();
                }
                0
            })
        })
        .collect();
    kids.into_iter().for_each(join_ok);
    assert_eq!(max_seen.get().unwrap(), 2);
    assert_eq!(sem.value(), 2);
}

#[test]
fn semaphore_timeout_and_named_open() {
    let name = unique("sem");
    let s = Semaphore::create(&name, 0).unwrap();
    assert!(matches!(s.try_acquire(), Err(Error::WouldBlock)));
    assert!(matches!(
        s.acquire_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    let n = name.clone();
    let kid = fork_child(move || {
        let s = Semaphore::open(&n).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.release().unwrap();
        0
    });
    s.acquire_timeout(Duration::from_secs(10)).unwrap();
    join_ok(kid);
    assert!(matches!(
        BoundedSemaphore::open(&name),
        Err(Error::Incompatible { .. })
    ));
    drop(s);
    assert_gone(&name);
}

#[test]
fn bounded_semaphore_refuses_extra_release_in_child() {
    let s = BoundedSemaphore::new(1).unwrap();
    s.acquire().unwrap();
    let s2 = s.clone();
    let kid = fork_child(move || {
        s2.release().unwrap();
        i32::from(!matches!(s2.release(), Err(Error::ReleasedTooManyTimes)))
    });
    join_ok(kid);
    assert_eq!(s.value(), 1);
}

#[test]
fn event_wakes_waiters_in_other_processes() {
    let name = unique("event");
    let e = Event::create(&name).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            let n = name.clone();
            fork_child(move || {
                let e = Event::open(&n).unwrap();
                i32::from(!e.wait_timeout(Duration::from_secs(10)))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!e.is_set());
    e.set();
    kids.into_iter().for_each(join_ok);
    e.clear();
    assert!(!e.wait_timeout(Duration::from_millis(10)));
    drop(e);
    assert_gone(&name);
}

#[test]
fn condition_notify_and_wait_for_across_processes() {
    let c = Condition::new().unwrap();
    let state = RawValue::new(0u32).unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| {
            let (c, state) = (c.clone(), state.clone());
            fork_child(move || {
                let g = c.acquire().unwrap();
                let (_g, ok) = g
                    .wait_for(|| state.get() == 1, Some(Duration::from_secs(10)))
                    .unwrap();
                i32::from(!ok)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    {
        let g = c.acquire().unwrap();
        state.set(1);
        g.notify_all();
    }
    kids.into_iter().for_each(join_ok);
    assert!(matches!(c.notify(1), Err(Error::NotOwner)));
    let g = c.acquire().unwrap();
    let (_g, notified) = g.wait_timeout(Duration::from_millis(20)).unwrap();
    assert!(!notified);
}

#[test]
fn condition_by_name() {
    let name = unique("cond");
    let c = Condition::create(&name).unwrap();
    let flag = RawValue::new(0u32).unwrap();
    let (n, f) = (name.clone(), flag.clone());
    let kid = fork_child(move || {
        let c = Condition::open(&n).unwrap();
        let mut g = c.acquire().unwrap();
        while f.get() == 0 {
            g = g.wait().unwrap();
        }
        0
    });
    std::thread::sleep(Duration::from_millis(50));
    let g = c.acquire().unwrap();
    flag.set(1);
    g.notify(1);
    drop(g);
    join_ok(kid);
    drop(c);
    assert_gone(&name);
}

#[test]
fn barrier_releases_all_parties_with_distinct_indices() {
    let b = Barrier::new(4).unwrap();
    let seen = ipc_core::value::Array::new(&[0u32; 4]).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            let (b, seen) = (b.clone(), seen.clone());
            fork_child(move || {
                for _ in 0..5 {
                    let i = b.wait().unwrap();
                    seen.update(i as usize, |x| *x += 1).unwrap();
                }
                0
            })
        })
        .collect();
    for _ in 0..5 {
        let i = b.wait().unwrap();
        seen.update(i as usize, |x| *x += 1).unwrap();
    }
    kids.into_iter().for_each(join_ok);
    // Each generation hands out indices 0..4 once each.
    assert_eq!(seen.to_vec().unwrap(), vec![5, 5, 5, 5]);
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn barrier_abort_timeout_and_reset_across_processes() {
    let name = unique("barrier");
    let b = Barrier::create(&name, 3).unwrap();
    let n = name.clone();
    let kid = fork_child(move || {
        let b = Barrier::open(&n).unwrap();
        i32::from(!matches!(b.wait(), Err(Error::BrokenBarrier)))
    });
    assert!(eventually(Duration::from_secs(5), || b.n_waiting() == 1));
    b.abort();
    join_ok(kid);
    assert!(b.broken());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset();
    assert!(!b.broken());
    // A timeout breaks the barrier for the other waiter too.
    let n = name.clone();
    let kid = fork_child(move || {
        let b = Barrier::open(&n).unwrap();
        i32::from(!matches!(b.wait(), Err(Error::BrokenBarrier)))
    });
    assert!(eventually(Duration::from_secs(5), || b.n_waiting() == 1));
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    join_ok(kid);
    // reset() breaks current waiters but leaves the barrier usable.
    b.reset();
    let n = name.clone();
    let kid = fork_child(move || {
        let b = Barrier::open(&n).unwrap();
        i32::from(!matches!(b.wait(), Err(Error::BrokenBarrier)))
    });
    assert!(eventually(Duration::from_secs(5), || b.n_waiting() == 1));
    b.reset();
    join_ok(kid);
    assert!(!b.broken());
    drop(b);
    assert_gone(&name);
}

#[test]
fn event_set_then_clear_still_releases_a_waiter() {
    // Regression (review finding 7): the waiter slept through set+clear.
    let e = Event::new().unwrap();
    let e2 = e.clone();
    let kid = fork_child(move || {
        let t = Instant::now();
        let r = e2.wait_timeout(Duration::from_secs(10));
        i32::from(!(r && t.elapsed() < Duration::from_secs(5)))
    });
    std::thread::sleep(Duration::from_millis(100));
    e.set();
    e.clear();
    join_ok(kid);
    assert!(!e.is_set());
}

#[test]
fn barrier_timeout_racing_the_last_arrival_does_not_break_later_generations() {
    // Regression (review finding 4), exercised many times: a waiter with a
    // short timeout and a last party arriving at about the same moment.
    for _ in 0..20 {
        let b = Barrier::new(2).unwrap();
        let b2 = b.clone();
        let kid = fork_child(move || match b2.wait_timeout(Duration::from_millis(20)) {
            Ok(_) | Err(Error::Timeout) => 0,
            Err(_) => 1,
        });
        std::thread::sleep(Duration::from_millis(19));
        let mine = b.wait_timeout(Duration::from_millis(200));
        join_ok(kid);
        if mine.is_ok() {
            // The generation completed: the barrier must not be broken.
            assert!(!b.broken());
        } else {
            b.reset();
        }
        // Either way a fresh generation works.
        let b3 = b.clone();
        let kid = fork_child(move || i32::from(b3.wait_timeout(Duration::from_secs(10)).is_err()));
        assert!(b.wait_timeout(Duration::from_secs(10)).is_ok());
        join_ok(kid);
    }
}

#[test]
fn try_acquire_takes_over_a_dead_holders_lock() {
    let lock = Lock::new().unwrap();
    let l2 = lock.clone();
    let kid = fork_child(move || {
        l2.acquire().unwrap().leak();
        0
    });
    join_ok(kid);
    assert!(matches!(lock.try_acquire(), Err(LockError::OwnerDied(_))));
    assert!(lock.try_acquire().is_ok());
}

#[test]
fn guard_after_manual_release_does_not_free_another_holders_lock() {
    // Regression (review finding 5).
    let lock = Lock::new().unwrap();
    let g = lock.acquire().unwrap();
    lock.release().unwrap();
    let l2 = lock.clone();
    let held = Event::new().unwrap();
    let h2 = held.clone();
    let kid = fork_child(move || {
        let _g = l2.acquire().unwrap();
        h2.set();
        std::thread::sleep(Duration::from_millis(300));
        0
    });
    assert!(held.wait_timeout(Duration::from_secs(10)));
    drop(g); // must not unlock the child's lock
    assert!(lock.is_locked());
    join_ok(kid);
}

#[test]
fn value_methods_work_while_holding_get_lock() {
    let v = Value::new(1u32).unwrap();
    let lock = v.get_lock();
    let _g = lock.acquire().unwrap();
    v.update(|x| *x += 1).unwrap(); // Python: with v.get_lock(): v.value += 1
    assert_eq!(v.get().unwrap(), 2);
}
