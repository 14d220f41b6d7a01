//! The `tokio` feature across processes (issue 12, part 2). ipc-core's
//! tests build with the feature on (see its dev-dependencies).
#![cfg(feature = "tokio")]

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::queue::Queue;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn get_async_receives_from_another_process() {
    let q = Queue::<String>::new(4).unwrap();
    let q2 = q.clone();
    let child = fork_child(move || {
        std::thread::sleep(Duration::from_millis(200));
        i32::from(q2.put(&"from the child".to_string()).is_err())
    });
    let got = rt().block_on(async { q.get_async().await }).unwrap();
    assert_eq!(got, "from the child");
    join_ok(child);
}

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use ipc_core::pipe::Pipe;
use ipc_core::process::Process;
use ipc_core::sync::{Event, Lock, LockError};
use ipc_core::Error;

/// Polls `f` once with a waker that does nothing.
fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn put_async_waits_for_room_another_process_makes() {
    let q = Queue::<u32>::new(1).unwrap();
    q.put(&1).unwrap();
    let q2 = q.clone();
    let child = fork_child(move || {
        std::thread::sleep(Duration::from_millis(200));
        let a = q2.get_timeout(Duration::from_secs(10)).unwrap();
        let b = q2.get_timeout(Duration::from_secs(10)).unwrap();
        i32::from((a, b) != (1, 2))
    });
    rt().block_on(async { q.put_async(&2).await }).unwrap();
    join_ok(child);
}

#[test]
fn dropping_a_pending_get_async_loses_no_message() {
    let q = Queue::<String>::new(4).unwrap();
    // Cancelled while waiting: nothing was taken.
    let r = rt()
        .block_on(async { tokio::time::timeout(Duration::from_millis(100), q.get_async()).await });
    assert!(r.is_err(), "nothing was there to get");
    // Cancelled after the waiter thread was woken for it, before it ran.
    {
        let mut f = pin!(q.get_async());
        assert!(poll_once(f.as_mut()).is_pending());
        let q2 = q.clone();
        join_ok(fork_child(move || {
            i32::from(q2.put(&"kept".to_string()).is_err())
        }));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), "kept");
    assert!(q.is_empty());
}

#[test]
fn dropping_a_pending_acquire_async_leaves_no_lock_held() {
    let lock = Lock::new().unwrap();
    let l2 = lock.clone();
    let ev = Event::new().unwrap();
    let e2 = ev.clone();
    let holder = fork_child(move || {
        let g = l2.acquire().unwrap();
        e2.set();
        std::thread::sleep(Duration::from_millis(300));
        drop(g);
        0
    });
    ev.wait();
    let r = rt().block_on(async {
        tokio::time::timeout(Duration::from_millis(50), lock.acquire_async()).await
    });
    assert!(r.is_err(), "the child holds it");
    {
        // Pending when the holder releases, dropped before it runs again.
        let mut f = pin!(lock.acquire_async());
        assert!(poll_once(f.as_mut()).is_pending());
        join_ok(holder);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nobody holds it: another process takes it at once.
    let l3 = lock.clone();
    join_ok(fork_child(move || i32::from(l3.try_acquire().is_err())));
    let g = rt().block_on(async { lock.acquire_async().await }).unwrap();
    drop(g);
}

#[test]
fn acquire_async_recovers_a_lock_whose_holder_was_sigkilled() {
    let lock = Lock::new().unwrap();
    let l2 = lock.clone();
    let holder = fork_child(move || {
        std::mem::forget(l2.acquire().unwrap());
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    assert!(eventually(Duration::from_secs(10), || lock
        .try_acquire()
        .is_err()));
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        kill_and_reap(holder);
    });
    let r = rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(10), lock.acquire_async()).await
    });
    killer.join().unwrap();
    assert!(matches!(r, Ok(Err(LockError::OwnerDied(_)))), "{r:?}");
}

#[test]
fn event_wait_async_is_released_by_another_process() {
    let ev = Event::new().unwrap();
    let e2 = ev.clone();
    let child = fork_child(move || {
        std::thread::sleep(Duration::from_millis(200));
        e2.set();
        0
    });
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(10), ev.wait_async())
            .await
            .expect("released")
    });
    assert!(ev.is_set());
    join_ok(child);
}

#[test]
fn recv_async_gets_messages_then_peer_closed_when_the_peer_dies() {
    let (a, b) = Pipe::new(true).unwrap();
    let child = fork_with(&b, move |b| {
        b.send(&"one".to_string()).unwrap();
        let back: String = b.recv().unwrap();
        // SAFETY: dying on the spot, as a crash would.
        unsafe { libc::raise(libc::SIGKILL) };
        i32::from(back != "two")
    });
    drop(b);
    rt().block_on(async {
        assert_eq!(a.recv_async::<String>().await.unwrap(), "one");
        a.send_async(&"two".to_string()).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), a.recv_async::<String>()).await;
        assert!(matches!(r, Ok(Err(Error::PeerClosed))), "{r:?}");
    });
    let _ = wait_exit_within(child, Duration::from_secs(10));
}

#[test]
fn join_async_and_result_async_wait_for_other_processes() {
    fn slow_square(x: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(100));
        x * x
    }
    rt().block_on(async {
        let mut p = Process::new(|| {
            std::thread::sleep(Duration::from_millis(100));
            7u32
        });
        p.start().unwrap();
        assert_eq!(p.join_async().await.unwrap(), 7);
        let ex = ipc_core::pool::ProcessPoolExecutor::new(2).unwrap();
        let fs: Vec<_> = (0..4u64)
            .map(|i| ex.submit(slow_square, i).unwrap())
            .collect();
        for (i, f) in fs.iter().enumerate() {
            assert_eq!(f.result_async().await.unwrap(), (i * i) as u64);
        }
    });
}

/// User + system CPU time of this process (all its threads).
fn cpu_time() -> Duration {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
    assert_eq!(r, 0);
    // SAFETY: initialised by the successful call.
    let u = unsafe { u.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[test]
fn a_thousand_tasks_waiting_on_a_thousand_queues_use_no_cpu_while_idle() {
    const N: usize = 1000;
    let queues: Vec<Queue<u32>> = (0..N)
        .map(|_| {
            Queue::builder()
                .capacity(1)
                .max_message_size(16)
                .build()
                .unwrap()
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tasks: Vec<_> = queues
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, q)| rt.spawn(async move { q.get_async().await.map(|v| v as usize == i) }))
        .collect();
    // Let every task register, then measure an idle second.
    std::thread::sleep(Duration::from_millis(500));
    let (c0, t0) = (cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let (used, wall) = (cpu_time() - c0, t0.elapsed());
    // Generous: the waiter threads' 100 ms liveness rounds cost a few ms.
    assert!(
        used < wall / 10,
        "{N} idle tasks used {used:?} of CPU in {wall:?}"
    );
    // Another process wakes every one of them.
    let qs = queues.clone();
    let child = fork_child(move || {
        for (i, q) in qs.iter().enumerate() {
            q.put(&(i as u32)).unwrap();
        }
        0
    });
    join_ok(child);
    rt.block_on(async {
        for t in tasks {
            let got = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("woken")
                .unwrap()
                .unwrap();
            assert!(got);
        }
    });
    eprintln!("{N} idle tasks on {N} queues: {used:?} CPU in {wall:?}");
}
