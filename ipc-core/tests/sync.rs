//! Every synchronisation primitive across real processes: inherited by
//! fork, and opened by name.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, RLock, Semaphore,
};
use ipc_core::value::{RawArray, RawValue, Value};
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
    b.abort().unwrap();
    join_ok(kid);
    assert!(b.broken());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset().unwrap();
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
    b.reset().unwrap();
    let n = name.clone();
    let kid = fork_child(move || {
        let b = Barrier::open(&n).unwrap();
        i32::from(!matches!(b.wait(), Err(Error::BrokenBarrier)))
    });
    assert!(eventually(Duration::from_secs(5), || b.n_waiting() == 1));
    b.reset().unwrap();
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
            b.reset().unwrap();
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

/// Issue 14, item 14: a waiter between releasing the lock and sleeping took
/// the sequence change as its wake-up while `futex_wake(1)` woke another, so
/// `notify(1)` sometimes woke two. Waiters in two processes (two threads
/// each) and a thread of this process; every `notify(1)` must wake exactly
/// one, counted under the lock, over many rounds.
#[test]
fn condition_notify_one_never_wakes_two_waiters() {
    const ROUNDS: u64 = 2000;
    const WAITERS: u64 = 5;
    // Everyone on one CPU, waiters at the lowest priority: a waiter
    // releasing the lock inside `wait` wakes us (asleep on the lock) and we
    // run at once, while it has not reached its futex: the bug's window.
    pin_to_one_cpu();
    let c = Condition::new().unwrap();
    // [entered, woken, stop], changed under the condition's lock.
    let counts = RawArray::new(&[0u64; 3]).unwrap();
    let waiter = |c: Condition, counts: RawArray<u64>| -> bool {
        lowest_priority();
        loop {
            let g = c.acquire().unwrap();
            if counts.get(2).unwrap() == 1 {
                return true;
            }
            // Hold the lock a little, so the notifier often wakes meanwhile
            // and sleeps on the lock: our release inside `wait` then wakes
            // it, and it preempts us before we reach the futex.
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(30) {
                std::hint::spin_loop();
            }
            counts.set(0, counts.get(0).unwrap() + 1).unwrap();
            let (_g, notified) = g.wait_timeout(Duration::from_secs(60)).unwrap();
            if counts.get(2).unwrap() == 1 {
                return true;
            }
            if !notified {
                return false; // a wake-up that notify never sent
            }
            counts.set(1, counts.get(1).unwrap() + 1).unwrap();
        }
    };
    let kids: Vec<_> = (0..2)
        .map(|_| {
            let (c, counts) = (c.clone(), counts.clone());
            fork_child(move || {
                let t = {
                    let (c, counts) = (c.clone(), counts.clone());
                    std::thread::spawn(move || waiter(c, counts))
                };
                let a = waiter(c, counts);
                i32::from(!(a && t.join().unwrap()))
            })
        })
        .collect();
    let local = {
        let (c, counts) = (c.clone(), counts.clone());
        std::thread::spawn(move || waiter(c, counts))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    for round in 0..ROUNDS {
        // Notify as soon as all waiters are inside `wait` (each counts
        // itself under the lock, which `wait` releases), so some are still
        // between the release and the futex, where the bug struck.
        let g = loop {
            let g = c.acquire().unwrap();
            let (entered, woken) = (counts.get(0).unwrap(), counts.get(1).unwrap());
            assert_eq!(woken, round, "a notify(1) woke more than one waiter");
            if entered - woken == WAITERS {
                break g;
            }
            drop(g);
            assert!(Instant::now() < deadline, "waiters did not come back");
            std::thread::sleep(Duration::from_micros(10));
        };
        g.notify(1);
        drop(g);
        // Exactly one comes back.
        loop {
            let g = c.acquire().unwrap();
            let woken = counts.get(1).unwrap();
            drop(g);
            assert!(woken <= round + 1, "a notify(1) woke more than one waiter");
            if woken == round + 1 {
                break;
            }
            assert!(Instant::now() < deadline, "notify(1) woke nobody");
            std::thread::sleep(Duration::from_micros(10));
        }
    }
    // A late extra wake-up would show up here.
    std::thread::sleep(Duration::from_millis(200));
    {
        let g = c.acquire().unwrap();
        assert_eq!(counts.get(1).unwrap(), ROUNDS, "extra wake-ups");
        counts.set(2, 1).unwrap();
        g.notify_all();
    }
    assert!(local.join().unwrap());
    kids.into_iter().for_each(join_ok);
}

/// A waiter that starts waiting after a `notify(1)` must not take the
/// wake-up meant for the one already waiting (in another process).
#[test]
fn condition_notify_goes_to_a_waiter_that_was_waiting() {
    let c = Condition::new().unwrap();
    let state = RawArray::new(&[0u64; 2]).unwrap(); // [early waiting, early woken]
    let (c2, s2) = (c.clone(), state.clone());
    let early = fork_child(move || {
        let g = c2.acquire().unwrap();
        s2.set(0, 1).unwrap();
        let (_g, notified) = g.wait_timeout(Duration::from_secs(30)).unwrap();
        s2.set(1, u64::from(notified)).unwrap();
        i32::from(!notified)
    });
    let g = loop {
        let g = c.acquire().unwrap();
        if state.get(0).unwrap() == 1 {
            break g;
        }
        drop(g);
        std::thread::yield_now();
    };
    g.notify(1);
    // Still holding the lock, start waiting ourselves: we registered after
    // the notify, so we must time out even though the early waiter cannot
    // run until we release the lock.
    let (g, notified) = g.wait_timeout(Duration::from_millis(300)).unwrap();
    assert!(!notified, "a later waiter stole the notify");
    drop(g);
    join_ok(early);
    assert_eq!(state.get(1).unwrap(), 1);
}

/// Issue 14, item 18: a barrier's action runs in exactly one party (the
/// last to arrive, whichever process it is) per generation, before any
/// party is released.
#[test]
fn barrier_action_runs_once_per_generation_before_anyone_is_released() {
    const ROUNDS: u64 = 30;
    let trips = RawValue::new(0u64).unwrap();
    let t = trips.clone();
    // Set before forking: each child inherits its own copy of the action.
    let b = Barrier::new(3)
        .unwrap()
        .with_action(move || t.set(t.get() + 1));
    let party = |b: Barrier, trips: RawValue<u64>| -> bool {
        (0..ROUNDS).all(|round| {
            let ok = b.wait_timeout(Duration::from_secs(30)).is_ok();
            // The action of this generation ran before we were released.
            ok && trips.get() > round
        })
    };
    let kids: Vec<_> = (0..2)
        .map(|_| {
            let (b, trips) = (b.clone(), trips.clone());
            fork_child(move || i32::from(!party(b, trips)))
        })
        .collect();
    assert!(party(b.clone(), trips.clone()));
    kids.into_iter().for_each(join_ok);
    assert_eq!(trips.get(), ROUNDS);
}

#[test]
fn barrier_action_that_panics_breaks_the_barrier_for_the_others() {
    let b = Barrier::new(2).unwrap();
    let b2 = b.clone();
    let waiter = fork_child(move || i32::from(!matches!(b2.wait(), Err(Error::BrokenBarrier))));
    assert!(eventually(Duration::from_secs(10), || b.n_waiting() == 1));
    let last = b.clone().with_action(|| panic!("action failed"));
    let r = std::panic::catch_unwind(|| last.wait());
    assert!(r.is_err(), "the action's panic reaches its caller");
    join_ok(waiter);
    assert!(b.broken());
}

#[test]
fn barrier_default_timeout_applies_to_wait_in_another_process() {
    let b = Barrier::new(2).unwrap();
    let b2 = b.clone().with_timeout(Duration::from_millis(100));
    let kid = fork_child(move || i32::from(!matches!(b2.wait(), Err(Error::Timeout))));
    join_ok(kid);
    assert!(b.broken());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
}

/// The party running the action is SIGKILLed in it: the others must get
/// `BrokenBarrier` (they wait without a timeout) instead of waiting for ever.
#[test]
fn barrier_party_killed_inside_the_action_breaks_the_barrier_instead_of_a_hang() {
    let b = Barrier::new(2).unwrap();
    let in_action = RawValue::new(0u32).unwrap();
    let b2 = b.clone();
    let waiter = fork_child(move || i32::from(!matches!(b2.wait(), Err(Error::BrokenBarrier))));
    assert!(eventually(Duration::from_secs(10), || b.n_waiting() == 1));
    let (b3, flag) = (b.clone(), in_action.clone());
    let runner = fork_child(move || {
        let b3 = b3.with_action(move || {
            flag.set(1);
            std::thread::sleep(Duration::from_secs(60));
        });
        let _ = b3.wait();
        0
    });
    assert!(eventually(Duration::from_secs(10), || in_action.get() == 1));
    kill_and_reap(runner);
    match wait_exit_within(waiter, Duration::from_secs(30)) {
        nix::sys::wait::WaitStatus::Exited(_, 0) => {}
        s => panic!("waiter: {s:?}"),
    }
    // The barrier can be reset and used again.
    b.reset().unwrap();
    let b4 = b.clone();
    let kid = fork_child(move || i32::from(b4.wait_timeout(Duration::from_secs(10)).is_err()));
    assert!(b.wait_timeout(Duration::from_secs(10)).is_ok());
    join_ok(kid);
}

/// Restricts the calling thread (and the threads and processes it starts
/// from now on) to the first CPU it may run on.
fn pin_to_one_cpu() {
    // SAFETY: a zeroed cpu_set_t is valid; the calls get its exact size and
    // only read or write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .unwrap();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(first, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
    }
}

/// Gives the calling thread the lowest normal priority (nice 19; lowering
/// one's own priority needs no privilege), so a thread it wakes runs first.
fn lowest_priority() {
    // SAFETY: gettid and setpriority take plain integers; a thread may
    // renice itself.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}
