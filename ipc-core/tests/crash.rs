//! Crash cases: a process dies (SIGKILL) at the worst moment, and nobody
//! else hangs or loses data.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::queue::Queue;
use ipc_core::sync::{Condition, Event, Lock, LockError, RLock};
use ipc_core::value::Value;
use ipc_core::Error;

#[test]
fn sigkilled_lock_holder_is_recovered_with_owner_died_within_a_second() {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let (l2, h2) = (lock.clone(), held.clone());
    let kid = fork_child(move || {
        let g = l2.acquire().unwrap();
        h2.set();
        std::thread::sleep(Duration::from_secs(60));
        drop(g);
        0
    });
    assert!(held.wait_timeout(Duration::from_secs(10)));
    kill_and_reap(kid);
    let t = Instant::now();
    match lock.acquire_timeout(Duration::from_secs(5)) {
        Err(LockError::OwnerDied(g)) => drop(g),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    // Recovered: the next acquisition is clean.
    assert!(lock.acquire().is_ok());
}

#[test]
fn waiter_already_blocked_when_holder_dies_gets_owner_died() {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let (l2, h2) = (lock.clone(), held.clone());
    let holder = fork_child(move || {
        let _g = l2.acquire().unwrap();
        h2.set();
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    assert!(held.wait_timeout(Duration::from_secs(10)));
    let l3 = lock.clone();
    let waiter = fork_child(move || {
        let t = Instant::now();
        match l3.acquire() {
            Err(LockError::OwnerDied(_)) if t.elapsed() >= Duration::from_millis(100) => 0,
            _ => 1,
        }
    });
    std::thread::sleep(Duration::from_millis(150));
    let t = Instant::now();
    kill_and_reap(holder);
    join_ok(waiter);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn sigkilled_rlock_and_condition_holders_are_recovered() {
    let r = RLock::new().unwrap();
    let c = Condition::new().unwrap();
    let held = Event::new().unwrap();
    let (r2, c2, h2) = (r.clone(), c.clone(), held.clone());
    let kid = fork_child(move || {
        let _a = r2.acquire().unwrap();
        let _b = r2.acquire().unwrap();
        let _c = c2.acquire().unwrap();
        h2.set();
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    assert!(held.wait_timeout(Duration::from_secs(10)));
    kill_and_reap(kid);
    let g = r
        .acquire_timeout(Duration::from_secs(2))
        .unwrap_err()
        .into_guard()
        .expect("OwnerDied");
    assert_eq!(r.count(), 1, "the dead owner's recursion count is void");
    drop(g);
    assert!(!r.is_owned());
    assert!(matches!(
        c.acquire_timeout(Duration::from_secs(2)),
        Err(LockError::OwnerDied(_))
    ));
}

#[test]
fn value_whose_writer_died_reports_owner_died_once() {
    let v = Value::new(5u32).unwrap();
    let held = Event::new().unwrap();
    let (v2, h2) = (v.clone(), held.clone());
    let kid = fork_child(move || {
        let lock = v2.get_lock();
        let _g = lock.acquire().unwrap();
        v2.set_unlocked(6);
        h2.set();
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    assert!(held.wait_timeout(Duration::from_secs(10)));
    kill_and_reap(kid);
    assert!(matches!(v.get(), Err(Error::OwnerDied)));
    assert_eq!(v.get().unwrap(), 6);
}

#[test]
fn consumer_killed_while_blocked_in_get_loses_nothing() {
    let q = Queue::<u64>::new(64).unwrap();
    let sum = Value::new(0u64).unwrap();
    // Two consumers block in get() on an empty queue; one is killed.
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (q, sum) = (q.clone(), sum.clone());
            fork_child(move || loop {
                match q.get() {
                    Ok(u64::MAX) => return 0,
                    Ok(v) => {
                        sum.update(|s| *s += v).unwrap();
                    }
                    Err(_) => return 1,
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut consumers = consumers.into_iter();
    kill_and_reap(consumers.next().unwrap());
    let survivor = consumers.next().unwrap();
    // Producers keep working; every acknowledged put arrives exactly once.
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            let q = q.clone();
            fork_child(move || {
                for i in 0..5_000u64 {
                    q.put(&(p * 5_000 + i)).unwrap();
                }
                0
            })
        })
        .collect();
    producers.into_iter().for_each(join_ok);
    q.put(&u64::MAX).unwrap();
    join_ok(survivor);
    assert_eq!(sum.get().unwrap(), (0..10_000u64).sum::<u64>());
    assert!(q.empty());
}
