//! `Process` with the `Spawn` and `ForkServer` start methods (every test
//! runs once per method). This test binary has its own `main`
//! (libtest-mimic) so that it can call `ipc_core::init()` first, as every
//! program using these methods must: they re-execute it.

mod common;

use std::time::{Duration, Instant};

use ipc_core::pipe::Connection;
use ipc_core::process::{wait, Process, StartMethod};
use ipc_core::queue::Queue;
use ipc_core::sync::Lock;
use ipc_core::value::Value;
use ipc_core::Error;
use libtest_mimic::{Arguments, Failed, Trial};

thread_local! {
    static METHOD: std::cell::Cell<StartMethod> = const { std::cell::Cell::new(StartMethod::Spawn) };
}

fn spawn_builder() -> ipc_core::process::ProcessBuilder {
    Process::builder().start_method(METHOD.with(|m| m.get()))
}

fn square(x: u64) -> u64 {
    x * x
}

fn concat((a, b, n): (String, String, u32)) -> String {
    format!("{a}{b}").repeat(n as usize)
}

fn fails(code: u32) -> Result<u32, String> {
    Err(format!("failed with {code}"))
}

fn panics(_: ()) -> u32 {
    panic!("spawned panic")
}

fn sleeps(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn whoami(_: ()) -> (String, bool, u32) {
    let me = ipc_core::process::current_process();
    let parent = ipc_core::process::parent_process().map_or(0, |p| p.pid);
    (me.name, me.daemon, parent)
}

/// The parent as a spawned or fork-server child sees it.
fn parent_seen(_: ()) -> (String, u32, bool, bool) {
    let p = ipc_core::process::parent_process().expect("started by ipc");
    let timed_out = matches!(
        p.join_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    );
    (p.name.clone(), p.pid, p.is_alive(), timed_out)
}

fn check(cond: bool, what: &str) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn fn_target_args_and_result() -> Result<(), Failed> {
    let mut p = spawn_builder().target_fn(square, 12);
    p.start()?;
    check(p.join()? == 144, "square")?;
    check(p.exitcode() == Some(0), "exit code 0")?;
    let mut q = spawn_builder().target_fn(concat, ("ab".into(), "c".into(), 2));
    q.start()?;
    check(q.join()? == "abcabc", "concat")
}

fn err_panic_and_signals() -> Result<(), Failed> {
    let mut f = spawn_builder().target_fn(fails, 3);
    f.start()?;
    check(
        matches!(f.join(), Err(Error::TargetFailed { ref message, .. }) if message == "failed with 3"),
        "TargetFailed",
    )?;
    check(f.exitcode() == Some(1), "exit 1 on Err")?;
    let mut p = spawn_builder().target_fn(panics, ());
    p.start()?;
    check(
        matches!(p.join(), Err(Error::Panicked { ref message, .. }) if message == "spawned panic"),
        "Panicked",
    )?;
    let mut t = spawn_builder().target_fn(sleeps, 30_000);
    t.start()?;
    check(t.is_alive(), "alive")?;
    t.terminate()?;
    check(
        matches!(t.join(), Err(Error::Killed { signal: 15, .. })),
        "terminated",
    )?;
    let mut k = spawn_builder().target_fn(sleeps, 30_000);
    k.start()?;
    k.kill()?;
    let _ = k.join();
    check(k.exitcode() == Some(-9), "killed")
}

fn join_timeout_and_sentinels() -> Result<(), Failed> {
    let mut ps: Vec<_> = [400u64, 50, 5000]
        .into_iter()
        .map(|ms| spawn_builder().target_fn(sleeps, ms))
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    check(
        matches!(
            ps[0].join_timeout(Duration::from_millis(10)),
            Err(Error::Timeout)
        ),
        "timeout",
    )?;
    let s: Vec<_> = ps.iter().map(|p| p.sentinel().unwrap()).collect();
    let ready = wait(&s, Some(Duration::from_secs(20)))?;
    check(ready == vec![1], "fastest first")?;
    drop(s);
    check(
        ps[0].join_timeout(Duration::from_secs(20))? == 400,
        "join after wait",
    )?;
    ps[2].kill()?;
    Ok(())
}

fn name_daemon_and_parent() -> Result<(), Failed> {
    let mut p = spawn_builder()
        .name("spawned-kid")
        .daemon(true)
        .target_fn(whoami, ());
    p.start()?;
    let (name, daemon, parent) = p.join()?;
    check(name == "spawned-kid", "name")?;
    check(daemon, "daemon flag")?;
    check(parent == std::process::id(), "parent pid")
}

/// Issue 14, item 15: the parent's name was the literal "parent".
fn parent_process_is_named_main_process_and_alive() -> Result<(), Failed> {
    let mut p = spawn_builder().target_fn(parent_seen, ());
    p.start()?;
    let (name, pid, alive, timed_out) = p.join()?;
    check(name == "MainProcess", &format!("parent name {name:?}"))?;
    check(pid == std::process::id(), "parent pid")?;
    check(alive, "parent alive")?;
    check(timed_out, "join_timeout on a live parent times out")
}

fn bogus_target_is_a_typed_error() -> Result<(), Failed> {
    // An address outside the executable's code: spawn must refuse it
    // before starting anything (the pointer is never called).
    let heap = Box::leak(Box::new([0u8; 64])).as_ptr() as usize;
    // SAFETY: a non-null value of fn-pointer type; never called.
    let bogus: fn(u32) -> u32 = unsafe { std::mem::transmute::<usize, fn(u32) -> u32>(heap) };
    let mut p = spawn_builder().target_fn(bogus, 1);
    check(
        matches!(p.start(), Err(Error::TargetNotFound(_))),
        "TargetNotFound",
    )
}

fn hundred_children_from_a_busy_threaded_parent() -> Result<(), Failed> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..8)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut v = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    v.push(format!("{i}")); // allocation churn: malloc locks held often
                    if v.len() > 1000 {
                        v.clear();
                    }
                }
            })
        })
        .collect();
    let t = Instant::now();
    let mut ps: Vec<_> = (0..100u64)
        .map(|i| spawn_builder().target_fn(square, i))
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    let mut sum = 0;
    for p in &mut ps {
        sum += p.join_timeout(Duration::from_secs(60))?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in busy {
        b.join().map_err(|_| "busy thread panicked")?;
    }
    check(
        sum == (0..100u64).map(|i| i * i).sum::<u64>(),
        "sum of squares",
    )?;
    eprintln!(
        "100 spawns from a busy 8-thread parent took {:?}",
        t.elapsed()
    );
    Ok(())
}

fn fill(q: (Queue<u64>, u64)) -> u64 {
    let (q, k) = q;
    for i in 0..250 {
        q.put(&(k * 1000 + i)).unwrap();
    }
    k
}

fn count((lock, v): (Lock, Value<u64>)) {
    for _ in 0..10_000 {
        let _g = lock.acquire().unwrap();
        v.set_unlocked(v.get_unlocked() + 1);
    }
}

fn echo(end: Connection) -> u32 {
    let mut n = 0;
    while let Ok(x) = end.recv::<u32>() {
        end.send(&(x + 1)).unwrap();
        n += 1;
    }
    n
}

fn queue_filled_by_four_spawned_children() -> Result<(), Failed> {
    let q = Queue::<u64>::new(64)?;
    let mut ps: Vec<_> = (0..4)
        .map(|k| spawn_builder().target_fn(fill, (q.clone(), k)))
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    let mut got: Vec<u64> = (0..1000)
        .map(|_| q.get_timeout(Duration::from_secs(30)))
        .collect::<Result<_, _>>()?;
    for (k, p) in ps.iter_mut().enumerate() {
        check(p.join()? == k as u64, "child index")?;
    }
    got.sort();
    let want: Vec<u64> = (0..4)
        .flat_map(|k| (0..250).map(move |i| k * 1000 + i))
        .collect();
    check(got == want, "every message exactly once")
}

fn lock_and_value_shared_with_spawned_children() -> Result<(), Failed> {
    let lock = Lock::new()?;
    let v = Value::new(0u64)?;
    let mut ps: Vec<_> = (0..4)
        .map(|_| spawn_builder().target_fn(count, (lock.clone(), v.clone())))
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    for p in &mut ps {
        p.join()?;
    }
    check(v.get()? == 40_000, "40,000 increments")
}

fn pipe_end_passed_to_a_spawned_child() -> Result<(), Failed> {
    let (a, b) = ipc_core::pipe::Pipe::new(true)?;
    let mut p = spawn_builder().target_fn(echo, b);
    p.start()?;
    for i in 0..100u32 {
        a.send(&i)?;
        check(a.recv::<u32>()? == i + 1, "echo")?;
    }
    // Our copy of `b` went into the Process (dropped with the job once the
    // child started); closing `a` ends the child's loop with PeerClosed.
    drop(a);
    check(
        p.join_timeout(Duration::from_secs(20))? == 100,
        "child saw 100 messages",
    )
}

fn pool_and_executor_workers() -> Result<(), Failed> {
    let m = METHOD.with(|m| m.get());
    let pool = ipc_core::pool::Pool::builder()
        .processes(2)
        .start_method(m)
        .build()?;
    check(
        pool.map(square, 0..50u64, None)? == (0..50u64).map(|x| x * x).collect::<Vec<_>>(),
        "pool map",
    )?;
    let q = Queue::<u64>::new(256)?; // `fill` puts 250 items
    check(
        pool.apply(fill, (q.clone(), 3))? == 3,
        "queue handle through a pool task",
    )?;
    check(
        q.get_timeout(Duration::from_secs(10))? == 3000,
        "queue content",
    )?;
    drop(pool);
    let ex = ipc_core::pool::ProcessPoolExecutor::builder()
        .max_workers(2)
        .start_method(m)
        .build()?;
    check(
        ex.submit(square, 11)?.result(None)? == 121,
        "executor submit",
    )?;
    ex.shutdown(true, false);
    Ok(())
}

type TestFn = fn() -> Result<(), Failed>;

fn main() {
    ipc_core::init();
    let args = Arguments::from_args();
    let tests: Vec<(&str, TestFn)> = vec![
        ("fn_target_args_and_result", fn_target_args_and_result),
        ("err_panic_and_signals", err_panic_and_signals),
        ("join_timeout_and_sentinels", join_timeout_and_sentinels),
        ("name_daemon_and_parent", name_daemon_and_parent),
        (
            "parent_process_is_named_main_process_and_alive",
            parent_process_is_named_main_process_and_alive,
        ),
        (
            "queue_filled_by_four_spawned_children",
            queue_filled_by_four_spawned_children,
        ),
        (
            "lock_and_value_shared_with_spawned_children",
            lock_and_value_shared_with_spawned_children,
        ),
        (
            "pipe_end_passed_to_a_spawned_child",
            pipe_end_passed_to_a_spawned_child,
        ),
        (
            "bogus_target_is_a_typed_error",
            bogus_target_is_a_typed_error,
        ),
        ("pool_and_executor_workers", pool_and_executor_workers),
        (
            "hundred_children_from_a_busy_threaded_parent",
            hundred_children_from_a_busy_threaded_parent,
        ),
    ];
    let tests = [
        ("spawn", StartMethod::Spawn),
        ("forkserver", StartMethod::ForkServer),
    ]
    .into_iter()
    .flat_map(|(tag, m)| {
        tests.iter().map(move |(name, f)| {
            let f = *f;
            Trial::test(format!("{tag}::{name}"), move || {
                METHOD.with(|c| c.set(m));
                f()
            })
        })
    })
    .collect();
    libtest_mimic::run(&args, tests).exit();
}
