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

/// Pid of a process that has exited (so, as a tid, surely dead).
fn dead_tid() -> u32 {
    let kid = fork_child(|| 0);
    join_ok(kid);
    kid.as_raw() as u32
}

/// Reads/writes a u64 or u32 of the queue region's payload.
fn peek64(r: &ipc_core::region::Region, at: usize) -> u64 {
    // SAFETY: `at` is within the payload (checked by the callers' layout).
    unsafe { r.payload().add(at).cast::<u64>().read_volatile() }
}
fn poke64(r: &ipc_core::region::Region, at: usize, v: u64) {
    // SAFETY: as above; we are simulating another process's writes.
    unsafe { r.payload().add(at).cast::<u64>().write_volatile(v) }
}
fn poke32(r: &ipc_core::region::Region, at: usize, v: u32) {
    // SAFETY: as above.
    unsafe { r.payload().add(at).cast::<u32>().write_volatile(v) }
}

// Queue header layout: enqueue_pos at 128, dequeue_pos at 256 (each on its
// own 128-byte line); a slot's header (seq u64, len u32, claimer u32) sits
// 16 bytes before its data.
const ENQ: usize = 128;
const DEQ: usize = 256;

#[test]
fn consumer_dead_mid_get_does_not_wedge_producers() {
    let name = unique("wedge-consumer");
    let q = Queue::<String>::create(&name, 2).unwrap();
    let raw = ipc_core::region::Region::open(&name, ipc_core::region::Kind::Queue).unwrap();
    q.put(&"first-XXXXXXXXXXXX".to_string()).unwrap();
    q.put(&"second-YYYYYYYYYYY".to_string()).unwrap();
    assert_eq!(
        (peek64(&raw, ENQ), peek64(&raw, DEQ)),
        (2, 0),
        "layout changed"
    );
    // A consumer claimed position 0 and died before releasing the slot.
    let data = find(&raw, b"first-XXXX").expect("message bytes") & !15;
    poke64(&raw, DEQ, 1);
    poke32(&raw, data - 4, dead_tid());
    let t = Instant::now();
    q.put_timeout(&"third".to_string(), Duration::from_secs(5))
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(q.get().unwrap(), "second-YYYYYYYYYYY");
    assert_eq!(q.get().unwrap(), "third");
    drop((q, raw));
    assert_gone(&name);
}

#[test]
fn producer_dead_mid_put_does_not_wedge_consumers() {
    let name = unique("wedge-producer");
    let q = Queue::<String>::create(&name, 4).unwrap();
    let raw = ipc_core::region::Region::open(&name, ipc_core::region::Kind::Queue).unwrap();
    q.put(&"marker-ZZZZZZZZZZZ".to_string()).unwrap();
    assert_eq!(q.get().unwrap(), "marker-ZZZZZZZZZZZ");
    assert_eq!(
        (peek64(&raw, ENQ), peek64(&raw, DEQ)),
        (1, 1),
        "layout changed"
    );
    // A producer claimed position 1 and died before filling its slot.
    let slot0 = find(&raw, b"marker-ZZZZ").expect("message bytes") & !15;
    let stride = {
        // The second slot's data follows the first's after one stride; the
        // stride is the message size rounded up plus the 16-byte header.
        q.max_message_size() + 16
    };
    let slot1 = slot0 + stride;
    poke64(&raw, ENQ, 2);
    poke32(&raw, slot1 - 4, dead_tid());
    q.put(&"after".to_string()).unwrap(); // lands in position 2
    let t = Instant::now();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), "after");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    drop((q, raw));
    assert_gone(&name);
}
