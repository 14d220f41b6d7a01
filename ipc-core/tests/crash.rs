//! Crash cases: a process dies (SIGKILL) at the worst moment, and nobody
//! else hangs or loses data.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::queue::Queue;
use ipc_core::sync::{Condition, Event, Lock, LockError, RLock};
use ipc_core::value::{Value, ValueError};
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
    assert!(matches!(v.get(), Err(ValueError::OwnerDied(_))));
    assert_eq!(v.get().unwrap(), 6);
}

/// Regression: `Value::get` reported `OwnerDied` and dropped the value it
/// had read under the lock, so the caller had to read again (and could
/// meet another death). The error now carries the value, as
/// `LockError::OwnerDied` carries the guard; `update` carries the new value.
#[test]
fn value_get_after_holder_sigkilled_returns_the_value_it_read_with_owner_died() {
    let v = Value::new(5u32).unwrap();
    let w = Value::new(10u64).unwrap();
    let held = Event::new().unwrap();
    let (v2, w2, h2) = (v.clone(), w.clone(), held.clone());
    let kid = fork_child(move || {
        let (lv, lw) = (v2.get_lock(), w2.get_lock());
        let _gv = lv.acquire().unwrap();
        let _gw = lw.acquire().unwrap();
        v2.set_unlocked(6);
        w2.set_unlocked(20);
        h2.set();
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    assert!(held.wait_timeout(Duration::from_secs(10)));
    kill_and_reap(kid);
    match v.get() {
        Err(ValueError::OwnerDied(x)) => assert_eq!(x, 6),
        other => panic!("expected OwnerDied(6), got {other:?}"),
    }
    match w.update(|x| *x += 1) {
        Err(ValueError::OwnerDied(x)) => assert_eq!(x, 21),
        other => panic!("expected OwnerDied(21), got {other:?}"),
    }
    // Reported once; the value stands.
    assert_eq!(v.get().unwrap(), 6);
    assert_eq!(w.get().unwrap(), 21);
    // It converts into the crate's error for `?`.
    assert!(matches!(
        Error::from(ValueError::OwnerDied(0u8)),
        Error::OwnerDied
    ));
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
    assert!(q.is_empty());
}

/// Reads/writes a u64 of the queue region's payload.
fn peek64(r: &ipc_core::region::Region, at: usize) -> u64 {
    // SAFETY: `at` is within the payload (checked by the callers' layout).
    unsafe { r.payload().add(at).cast::<u64>().read_volatile() }
}
fn poke64(r: &ipc_core::region::Region, at: usize, v: u64) {
    // SAFETY: as above; we are simulating another process's writes.
    unsafe { r.payload().add(at).cast::<u64>().write_volatile(v) }
}

// Queue layout: enqueue_pos at 128, dequeue_pos at 256 (each on its own
// 128-byte line); the process table (1024 packed identities) from 640; the
// slots from 8832, each a state word (`seq << 23 | tag`), a length and its
// data 16 bytes later.
const ENQ: usize = 128;
const DEQ: usize = 256;
const PROCS: usize = 640;
const SLOTS: usize = 8832;
const TAG_BITS: u32 = 23;

/// Offset of slot `i`'s state word in a queue of `q`'s geometry.
fn slot_at<T: ipc_core::codec::Message>(q: &Queue<T>, i: usize) -> usize {
    SLOTS + i * (q.slot_size().next_multiple_of(16) + 16)
}

/// Registers this process (tag 1) and then a child process (tag 2) in the
/// queue's process table, each with a put and a get, and lets the child
/// exit: its tag then names a dead process. Leaves both positions at 2.
fn tag_of_a_dead_process(q: &Queue<String>, name: &str, raw: &ipc_core::region::Region) -> u32 {
    q.put(&"warm-parent".to_string()).unwrap();
    assert_eq!(q.get().unwrap(), "warm-parent");
    let name = name.to_string();
    join_ok(fork_child(move || {
        let q = Queue::<String>::open(&name).unwrap();
        q.put(&"warm-child".to_string()).unwrap();
        i32::from(q.get().unwrap() != "warm-child")
    }));
    assert_eq!(
        (peek64(raw, ENQ), peek64(raw, DEQ)),
        (2, 2),
        "layout changed"
    );
    assert_ne!(peek64(raw, PROCS + 8), 0, "layout changed: no second entry");
    2
}

#[test]
fn consumer_dead_mid_get_does_not_wedge_producers() {
    let name = unique("wedge-consumer");
    let q = Queue::<String>::create(&name, 2).unwrap();
    let raw = ipc_core::region::Region::open(&name, ipc_core::region::Kind::Queue).unwrap();
    let dead = tag_of_a_dead_process(&q, &name, &raw);
    q.put(&"first-XXXXXXXXXXXX".to_string()).unwrap(); // position 2, slot 0
    q.put(&"second-YYYYYYYYYYY".to_string()).unwrap(); // position 3, slot 1
    assert_eq!(
        find(&raw, b"first-XXXX").map(|at| at & !15),
        Some(slot_at(&q, 0) + 16)
    );
    // A consumer claimed position 2 (state 2*2 + 1, named by its tag) and
    // died before moving dequeue_pos or releasing the slot.
    poke64(&raw, slot_at(&q, 0), (5 << TAG_BITS) | u64::from(dead));
    let t = Instant::now();
    q.put_timeout(&"third".to_string(), Duration::from_secs(5))
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(q.get().unwrap(), "second-YYYYYYYYYYY");
    assert_eq!(q.get().unwrap(), "third");
    drop((q, raw));
    assert_gone(&name);
}

#[test]
fn producer_dead_before_moving_enqueue_pos_does_not_wedge_anyone() {
    let name = unique("wedge-producer");
    let q = Queue::<String>::create(&name, 4).unwrap();
    let raw = ipc_core::region::Region::open(&name, ipc_core::region::Kind::Queue).unwrap();
    let dead = tag_of_a_dead_process(&q, &name, &raw);
    // A producer claimed position 2 (state 2*2, named by its tag) and died
    // at once: enqueue_pos still says 2.
    poke64(&raw, slot_at(&q, 2), (4 << TAG_BITS) | u64::from(dead));
    // Producers move the position on for it; the consumer skips the slot
    // once it sees its claimant is dead.
    q.put(&"after".to_string()).unwrap();
    assert_eq!(peek64(&raw, ENQ), 4, "the put helped and took position 3");
    let t = Instant::now();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), "after");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    drop((q, raw));
    assert_gone(&name);
}

#[test]
fn claim_named_by_a_reused_pid_is_recovered() {
    // The table entry behind a claim names a live pid (ours) with another
    // start time: the process that claimed is gone and its pid was reused.
    let name = unique("wedge-reused");
    let q = Queue::<String>::create(&name, 1).unwrap();
    let raw = ipc_core::region::Region::open(&name, ipc_core::region::Kind::Queue).unwrap();
    q.put(&"held".to_string()).unwrap();
    let impostor = (u64::from(std::process::id()) << 40) | 1;
    poke64(&raw, PROCS + 8, impostor); // entry 1, tag 2
    poke64(&raw, slot_at(&q, 0), (1 << TAG_BITS) | 2);
    poke64(&raw, DEQ, 1);
    q.put_timeout(&"next".to_string(), Duration::from_secs(5))
        .unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), "next");
    drop((q, raw));
    assert_gone(&name);
}

#[test]
fn claim_by_a_live_slow_process_is_never_taken_over() {
    // A live process (this one, through entry 1) holds the only slot: a
    // blocked producer must wait, not recycle the slot under it.
    let name = unique("wedge-live");
    let q = Queue::<String>::create(&name, 1).unwrap();
    let raw = ipc_core::region::Region::open(&name, ipc_core::region::Kind::Queue).unwrap();
    q.put(&"held".to_string()).unwrap();
    let me = peek64(&raw, PROCS); // our own entry, tag 1
    poke64(&raw, PROCS + 8, me);
    poke64(&raw, slot_at(&q, 0), (1 << TAG_BITS) | 2);
    poke64(&raw, DEQ, 1);
    assert!(matches!(
        q.put_timeout(&"next".to_string(), Duration::from_millis(400)),
        Err(Error::Timeout)
    ));
    drop((q, raw));
    assert_gone(&name);
}
