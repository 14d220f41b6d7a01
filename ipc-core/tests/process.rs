//! `Process` with the `Fork` start method: targets, results, failures,
//! signals, daemons, sentinels, zombies and orphans.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::process::{
    active_children, current_process, parent_process, wait, Process, StartMethod,
};
use ipc_core::queue::Queue;
use ipc_core::Error;

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn closure_and_fn_targets_return_values() {
    let base = 20u64; // captured: the child sees a copy
    let mut p = Process::builder()
        .name("closure")
        .start_method(StartMethod::Fork)
        .target(move || base + 1);
    let mut q = Process::builder()
        .start_method(StartMethod::Fork)
        .target_fn(double, 21);
    p.start().unwrap();
    q.start().unwrap();
    assert_eq!(p.join().unwrap(), 21);
    assert_eq!(q.join().unwrap(), 42);
    assert_eq!((p.exitcode(), q.exitcode()), (Some(0), Some(0)));
    assert!(!p.is_alive());
    assert_eq!(p.name(), "closure");
    assert!(q.name().starts_with("Process-"));
    // join again returns the same value
    assert_eq!(p.join().unwrap(), 21);
}

#[test]
fn tuple_arguments_and_string_results() {
    fn greet((name, n): (String, u32)) -> String {
        format!("{name}{}", "!".repeat(n as usize))
    }
    let mut p = Process::builder().target_fn(greet, ("hi".to_string(), 3));
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), "hi!!!");
}

#[test]
fn panic_and_err_give_typed_errors_and_exit_code_1() {
    let mut p = Process::new(|| -> u32 { panic!("boom {}", 7) });
    p.start().unwrap();
    match p.join() {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "boom 7"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.exitcode(), Some(1));
    let mut q = Process::new(|| -> Result<u32, String> { Err("bad input".into()) });
    q.start().unwrap();
    assert!(matches!(q.join(), Err(Error::TargetFailed { message, .. }) if message == "bad input"));
    assert_eq!(q.exitcode(), Some(1));
}

#[test]
fn exit_by_signal_terminate_and_kill() {
    let mut p = Process::new(|| -> () {
        // SAFETY: aborting the child itself (killed by SIGABRT).
        unsafe { libc::abort() }
    });
    p.start().unwrap();
    assert!(matches!(p.join(), Err(Error::Killed { signal: 6, .. })));
    assert_eq!(p.exitcode(), Some(-6));

    let mut t = Process::new(|| std::thread::sleep(Duration::from_secs(30)));
    t.start().unwrap();
    assert!(t.is_alive());
    t.terminate().unwrap();
    assert!(matches!(t.join(), Err(Error::Killed { signal: 15, .. })));
    assert_eq!(t.exitcode(), Some(-15));

    let mut k = Process::new(|| std::thread::sleep(Duration::from_secs(30)));
    k.start().unwrap();
    k.kill().unwrap();
    let _ = k.join();
    assert_eq!(k.exitcode(), Some(-9));
    k.kill().unwrap(); // no-op once exited
}

#[test]
fn join_timeout_and_state_errors() {
    let mut p = Process::new(|| std::thread::sleep(Duration::from_millis(300)));
    assert!(matches!(p.join(), Err(Error::NotStarted)));
    assert_eq!(p.exitcode(), None);
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted)));
    let t = Instant::now();
    assert!(matches!(
        p.join_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert_eq!(p.exitcode(), None);
    p.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn closure_with_spawn_method_is_refused() {
    let mut p = Process::builder()
        .start_method(StartMethod::Spawn)
        .target(|| 1u8);
    assert!(matches!(p.start(), Err(Error::InvalidArgument(_))));
}

#[test]
fn sentinel_wait_over_several_children() {
    let mut ps: Vec<Process<u64>> = [300u64, 30, 3000]
        .into_iter()
        .map(|ms| {
            Process::new(move || {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            })
        })
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    let sentinels: Vec<_> = ps.iter().map(|p| p.sentinel().unwrap()).collect();
    let ready = wait(&sentinels, Some(Duration::from_secs(10))).unwrap();
    assert_eq!(ready, vec![1]);
    let ready = wait(&sentinels[..1], Some(Duration::from_secs(10))).unwrap();
    assert_eq!(ready, vec![0]);
    assert!(wait(&sentinels[2..], Some(Duration::from_millis(10)))
        .unwrap()
        .is_empty());
    drop(sentinels);
    ps[2].kill().unwrap();
    assert_eq!(ps[1].join().unwrap(), 30);
}

#[test]
fn current_and_parent_process_in_the_child() {
    let q = Queue::<(String, u32, bool, u32)>::new(2).unwrap();
    let q2 = q.clone();
    let mut p = Process::builder().name("kid").target(move || {
        let me = current_process();
        let parent = parent_process().map_or(0, |p| p.pid);
        q2.put(&(me.name, me.pid, me.daemon, parent)).unwrap();
    });
    p.start().unwrap();
    let (name, pid, daemon, parent) = q.get_timeout(Duration::from_secs(10)).unwrap();
    p.join().unwrap();
    assert_eq!(
        (name.as_str(), Some(pid), daemon, parent),
        ("kid", p.pid(), false, std::process::id())
    );
    assert_eq!(current_process().name, "MainProcess");
    assert!(parent_process().is_none());
}

fn proc_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].chars().next()
}

/// Runs `f` in a fresh forked process, so that reaping done by tests
/// running concurrently in this one (`active_children` reaps every child
/// of the calling process) cannot interfere.
fn isolated(f: impl FnOnce() -> bool) {
    join_ok(fork_child(move || i32::from(!f())));
}

#[test]
fn exited_child_is_a_zombie_until_reaped_then_gone() {
    isolated(|| {
        let mut p = Process::new(|| ());
        p.start().unwrap();
        let pid = p.pid().unwrap();
        let zombie = eventually(Duration::from_secs(10), || proc_state(pid) == Some('Z'));
        let listed = active_children().iter().any(|c| c.pid == pid); // reaps it
        zombie && !listed && proc_state(pid).is_none() && p.exitcode() == Some(0)
    });
}

#[test]
fn dropped_process_is_reaped_without_blocking() {
    isolated(|| {
        let mut slow = Process::new(|| std::thread::sleep(Duration::from_millis(200)));
        slow.start().unwrap();
        let pid = slow.pid().unwrap();
        let t = Instant::now();
        drop(slow);
        let quick = t.elapsed() < Duration::from_millis(100);
        let listed = active_children().iter().any(|c| c.pid == pid);
        let reaped = eventually(Duration::from_secs(10), || {
            active_children();
            proc_state(pid).is_none()
        });
        quick && listed && reaped
    });
}

#[test]
fn daemon_child_dies_when_its_parent_is_sigkilled() {
    let q = Queue::<u32>::new(2).unwrap();
    let q2 = q.clone();
    // A middle process starts a daemon grandchild, reports its pid, and is
    // then killed; the grandchild must die too.
    let middle = fork_child(move || {
        let mut d = Process::builder()
            .daemon(true)
            .target(|| std::thread::sleep(Duration::from_secs(60)));
        d.start().unwrap();
        q2.put(&d.pid().unwrap()).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        0
    });
    let grandchild = q.get_timeout(Duration::from_secs(10)).unwrap();
    assert!(proc_state(grandchild).is_some());
    kill_and_reap(middle);
    assert!(
        eventually(Duration::from_secs(5), || matches!(
            proc_state(grandchild),
            None | Some('Z')
        )),
        "daemon grandchild {grandchild} survived its parent"
    );
}

#[test]
fn orphan_outlives_its_parent_and_finishes_its_work() {
    let q = Queue::<(u32, u32)>::new(4).unwrap();
    let q2 = q.clone();
    let middle = fork_child(move || {
        let q3 = q2.clone();
        let me = std::process::id();
        let mut o = Process::new(move || {
            // Keep working until the parent is gone and we are re-parented.
            for _ in 0..500 {
                if nix::unistd::getppid().as_raw() as u32 != me {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            q3.put(&(me, nix::unistd::getppid().as_raw() as u32))
                .unwrap();
        });
        o.start().unwrap();
        std::mem::forget(o); // the parent exits without joining
                             // SAFETY: leaving at once, as the seed's orphan example does.
        unsafe { libc::_exit(0) }
    });
    join_ok(middle);
    let (before, after) = q.get_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(before, middle.as_raw() as u32);
    assert_ne!(after, before, "the orphan was re-parented");
}

#[test]
fn non_daemon_children_are_joined_when_the_parent_exits() {
    // A middle process starts a slow non-daemon child and exits at once
    // through `exit` (atexit handlers run): it must wait for the child,
    // as Python joins non-daemon children at interpreter exit.
    let q = Queue::<u8>::new(2).unwrap();
    let q2 = q.clone();
    let t = Instant::now();
    let middle = fork_child(move || {
        let q3 = q2.clone();
        let mut c = Process::new(move || {
            std::thread::sleep(Duration::from_millis(300));
            q3.put(&1).unwrap();
        });
        c.start().unwrap();
        drop(c); // no join: the exit handler does it
        std::process::exit(0)
    });
    join_ok(middle);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "parent exited before its child"
    );
    assert_eq!(
        q.try_get().unwrap(),
        1,
        "the child finished before the parent exited"
    );
}

#[test]
fn daemon_started_from_a_short_lived_thread_outlives_the_thread() {
    // PR_SET_PDEATHSIG follows the creating *thread*; ipc creates daemon
    // children from a thread that lives as long as the process.
    let mut p = std::thread::spawn(|| {
        let mut p = Process::builder()
            .daemon(true)
            .target(|| std::thread::sleep(Duration::from_secs(30)));
        p.start().unwrap();
        p
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        p.is_alive(),
        "the daemon died with the thread that started it"
    );
    p.kill().unwrap();
    let _ = p.join();
}

#[test]
fn concurrent_reaping_never_loses_an_exit_status() {
    // Regression (review): a join racing `active_children()` lost the status.
    isolated(|| {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let h = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = active_children();
            }
        });
        let mut bad = 0;
        for _ in 0..300 {
            let mut p = Process::new(|| 5u64);
            p.start().unwrap();
            if p.join().ok() != Some(5) || p.exitcode() != Some(0) {
                bad += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        h.join().unwrap();
        bad == 0
    });
}

#[test]
fn a_forked_grandchild_knows_its_own_name_and_parent() {
    // Regression (review): the inherited name was never replaced.
    let mut p = Process::builder().name("outer").target(|| {
        let outer = std::process::id();
        let mut q = Process::builder().name("inner").target(|| {
            (
                current_process().name,
                parent_process().map_or(0, |p| p.pid),
            )
        });
        q.start().unwrap();
        let (name, parent) = q.join().unwrap();
        name == "inner" && parent == outer
    });
    p.start().unwrap();
    assert!(p.join().unwrap());
}

/// Issue 14, item 15: `parent_process().name` was the literal "parent".
/// A grandchild sees its parent's real name, and can watch it: alive while
/// it runs, `join` returns once it has exited, then `is_alive` is false.
#[test]
fn parent_process_has_its_real_name_is_alive_and_join() {
    use ipc_core::sync::Event;
    use ipc_core::value::RawArray;
    // [done, name ok, alive before, join_timeout timed out, join ok, dead after]
    let out = RawArray::new(&[0u64; 6]).unwrap();
    let checked = Event::new().unwrap();
    let (o, ev) = (out.clone(), checked.clone());
    let mut middle = Process::builder().name("middle").target(move || {
        let ev2 = ev.clone();
        let mut leaf = Process::builder().name("leaf").target(move || {
            let p = parent_process().expect("started by ipc");
            o.set(1, u64::from(p.name == "middle")).unwrap();
            o.set(2, u64::from(p.is_alive())).unwrap();
            let t = p.join_timeout(Duration::from_millis(50));
            o.set(3, u64::from(matches!(t, Err(Error::Timeout))))
                .unwrap();
            ev2.set();
            // Our parent returns once we have checked; wait for its end.
            o.set(
                4,
                u64::from(p.join_timeout(Duration::from_secs(30)).is_ok()),
            )
            .unwrap();
            o.set(5, u64::from(!p.is_alive())).unwrap();
            o.set(0, 1).unwrap();
        });
        leaf.start().unwrap();
        assert!(ev.wait_timeout(Duration::from_secs(30)));
        // Return without joining: the leaf outlives us.
        std::mem::forget(leaf);
    });
    middle.start().unwrap();
    middle.join().unwrap();
    assert!(eventually(Duration::from_secs(40), || out.get(0).unwrap() == 1));
    assert_eq!(
        out.to_vec(),
        vec![1; 6],
        "[done, name, alive, timeout, join, dead]"
    );
}

#[test]
fn parent_of_a_child_of_the_main_process_is_main_process() {
    let q = Queue::<(String, u32, bool)>::new(1).unwrap();
    let q2 = q.clone();
    let mut p = Process::new(move || {
        let parent = parent_process().unwrap();
        q2.put(&(parent.name.clone(), parent.pid, parent.is_alive()))
            .unwrap();
    });
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(
        q.get_timeout(Duration::from_secs(10)).unwrap(),
        ("MainProcess".to_string(), std::process::id(), true)
    );
}

/// Issue 14, item 18: `Process::close` (Python 3.7+).
#[test]
fn process_close_refuses_a_running_child_then_releases_and_refuses_further_use() {
    // In a fresh process, so that counting our pidfds is not disturbed by
    // other tests' children.
    isolated(|| {
        let pidfds = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.to_string_lossy().contains("pidfd"))
                .count()
        };
        let before = pidfds();
        let mut p = Process::new(|| std::thread::sleep(Duration::from_millis(300)));
        p.start().unwrap();
        if !matches!(p.close(), Err(Error::StillRunning)) {
            return false;
        }
        // Still usable after the refused close.
        p.join().unwrap();
        let held = pidfds();
        p.close().unwrap();
        p.close().unwrap(); // twice is fine, as in Python
        let released = pidfds();
        let refused = matches!(p.join(), Err(Error::Closed))
            && matches!(p.start(), Err(Error::Closed))
            && matches!(p.kill(), Err(Error::Closed))
            && matches!(p.terminate(), Err(Error::Closed));
        let inert =
            !p.is_alive() && (p.exitcode(), p.pid()) == (None, None) && p.sentinel().is_none();
        // A never-started process can be closed too.
        let mut q = Process::new(|| ());
        q.close().unwrap();
        let never = matches!(q.start(), Err(Error::Closed));
        held == before + 1 && released == before && refused && inert && never
    });
}
