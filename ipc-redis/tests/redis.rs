//! `ipc-redis` across real processes: a private `redis-server` per test
//! (loopback, no persistence), workers that are this test binary started
//! again with `--ipc-worker` (its `main` calls `ipc_redis::init()`), and
//! SIGKILLs of workers and of Redis itself.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use ipc_core::pool::{as_completed, wait, ProcessPoolExecutor, ReturnWhen};
use ipc_core::process::Process;
use ipc_redis::{Dict, Error, Queue, RedisPool, RedisPoolExecutor};
use libtest_mimic::{Arguments, Failed, Trial};

type R = Result<(), Failed>;

const LONG: Duration = Duration::from_secs(30);

fn square(x: u64) -> u64 {
    x * x
}

/// The value and the pid of the worker process (the local pool process's
/// parent) that ran it.
fn tag(x: u64) -> (u64, u32) {
    (x * 3, std::os::unix::process::parent_id())
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Marks the file, naps, returns how many runs marked it so far.
fn mark_then_nap((path, ms): (String, u64)) -> u64 {
    let n = mark(&path);
    std::thread::sleep(Duration::from_millis(ms));
    n as u64
}

/// Marks the file, then kills the process running it.
fn mark_then_die(path: String) -> u64 {
    mark(&path);
    // SAFETY: raise has no preconditions; SIGKILL ends this process.
    unsafe { libc::raise(libc::SIGKILL) };
    0
}

fn panics(_: ()) -> u64 {
    panic!("remote panic")
}

fn fails(code: u32) -> Result<u32, String> {
    Err(format!("failed with {code}"))
}

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn core_err(e: &Error) -> Option<&ipc_core::Error> {
    match e {
        Error::Core(c) => Some(c),
        _ => None,
    }
}

fn xlen(url: &str, key: &str) -> usize {
    redis::cmd("XLEN")
        .arg(key)
        .query(&mut raw(url))
        .unwrap_or(usize::MAX)
}

fn map_over_three_workers_returns_every_result_once_in_order() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start(&url, "jobs", 1))
        .collect::<Result<_, _>>()?;
    let pool = RedisPool::connect(&url, "jobs")?;
    let out = pool.map(tag, 0..1000u64, Some(1))?;
    check(
        out.len() == 1000,
        format!("{} results for 1000 tasks", out.len()),
    )?;
    for (i, (v, _)) in out.iter().enumerate() {
        check(*v == 3 * i as u64, format!("result {i} is {v}"))?;
    }
    let pids: HashSet<u32> = workers.iter().map(Worker::pid).collect();
    let served: HashSet<u32> = out.iter().map(|(_, p)| *p).collect();
    check(
        served.is_subset(&pids),
        format!("served by {served:?}, workers {pids:?}"),
    )?;
    check(
        served.len() >= 2,
        format!("all 1000 tasks went to {served:?}"),
    )?;
    // The executor: 1,000 futures, each with its own result.
    let ex = RedisPoolExecutor::connect(&url, "jobs")?;
    let fs: Vec<_> = (0..1000u64)
        .map(|i| ex.submit(square, i))
        .collect::<Result<_, _>>()?;
    for (i, f) in fs.iter().enumerate() {
        let v = f.result(Some(LONG))?;
        check(v == (i * i) as u64, format!("future {i} gave {v}"))?;
    }
    // Every entry acknowledged and deleted: nothing left to run again.
    check(
        xlen(&url, "ipc:{jobs}:tasks") == 0,
        "entries left in the stream",
    )
}

fn worker_killed_mid_task_has_its_task_redelivered() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let scratch = Scratch::new("redeliver");
    let path = scratch.file("runs");
    let pool = RedisPool::builder(&url, "jobs")
        .visibility_timeout(Duration::from_secs(1))
        .pool()?;
    let mut a = Worker::start(&url, "jobs", 1)?;
    let slow = pool.apply_async(mark_then_nap, (path.clone(), 1500))?;
    let quick: Vec<_> = (0..20u64)
        .map(|i| pool.apply_async(square, i))
        .collect::<Result<_, _>>()?;
    check(
        wait_until(LONG, || lines(&path) >= 1),
        "the slow task never started",
    )?;
    a.kill(); // SIGKILL, mid-task
    let _b = Worker::start(&url, "jobs", 1)?;
    let runs = slow.get(Some(LONG))?;
    check(
        runs == 2,
        format!("the slow task's run number {runs}, expected 2"),
    )?;
    for (i, q) in quick.iter().enumerate() {
        check(
            q.get(Some(LONG))? == (i * i) as u64,
            format!("quick task {i}"),
        )?;
    }
    check(
        lines(&path) == 2,
        format!("{} runs of the slow task", lines(&path)),
    )
}

fn redis_killed_mid_run_fails_every_pending_call_within_bound() -> R {
    let mut redis = Redis::start()?;
    let url = redis.url();
    let ex = RedisPoolExecutor::connect(&url, "jobs")?;
    let mut w = Worker::start(&url, "jobs", 1)?;
    let running = ex.submit(nap, 20_000)?;
    let queued: Vec<_> = (0..5)
        .map(|_| ex.submit(nap, 20_000))
        .collect::<Result<_, _>>()?;
    check(
        wait_until(LONG, || running.running()),
        "the task never started",
    )?;
    let q: Queue<u64> = Queue::create(&url, "q", 0)?;
    let d: Dict<String, u64> = Dict::open(&url, "d")?;
    d.insert(&"k".into(), &1)?;
    let getter = std::thread::spawn(move || q.get());
    std::thread::sleep(Duration::from_millis(200)); // the getter blocks in BLPOP
    let t0 = Instant::now();
    redis.kill();
    for (i, f) in std::iter::once(&running).chain(&queued).enumerate() {
        match f.result(None) {
            Err(Error::ConnectionLost { url: u, .. }) if u == url => {}
            other => return Err(format!("future {i}: {other:?}").into()),
        }
    }
    let r = getter.join().map_err(|_| "getter panicked")?;

    check(
        matches!(&r, Err(e) if e.is_connection()),
        format!("a get blocked on dead Redis: {r:?}"),
    )?;
    let r = d.get(&"k".into());
    check(
        matches!(&r, Err(e) if e.is_connection()),
        format!("dict: {r:?}"),
    )?;
    let r = ex.submit(nap, 1);
    check(
        matches!(&r, Err(e) if e.is_connection()),
        format!("submit: {r:?}"),
    )?;
    let took = t0.elapsed();
    check(
        took < Duration::from_secs(10),
        format!("errors took {took:?}"),
    )?;
    // The worker gives up too, with an error, instead of hanging.
    let s = w.wait_timeout(Duration::from_secs(15));
    check(
        s.is_some_and(|s| s.code() == Some(1)),
        format!("worker exit: {s:?}"),
    )
}

/// A copy of this test binary whose build id (or, without one, whose
/// bytes) differ: a different executable, as far as identity goes.
fn other_build(scratch: &Scratch) -> Result<std::path::PathBuf, Failed> {
    let me = std::env::current_exe()?;
    let mut bytes = std::fs::read(&me)?;
    let id = ipc_redis::executable_identity()?;
    if let Some(hex) = id.strip_prefix("build-id:") {
        let want: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()?;
        let at: Vec<usize> = bytes
            .windows(want.len())
            .enumerate()
            .filter(|(_, w)| *w == want.as_slice())
            .map(|(i, _)| i)
            .collect();
        check(!at.is_empty(), "the build id is not in the file")?;
        for i in at {
            bytes[i] ^= 0xff;
        }
    } else {
        bytes.push(0);
    }
    let copy = scratch.0.join("other-build");
    std::fs::write(&copy, &bytes)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o700))?;
    Ok(copy)
}

fn task_for_a_different_binary_is_refused_not_run() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let scratch = Scratch::new("other-build");
    let exe = other_build(&scratch)?;
    // Retry while the fresh file is "busy" (a descriptor of it may be
    // open in a child forked meanwhile).
    let mut w = None;
    for _ in 0..50 {
        match Worker::start_exe(exe.clone(), &url, "jobs", 1) {
            Ok(x) => {
                w = Some(x);
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let _w = w.ok_or("could not start the other build")?;
    let ex = RedisPoolExecutor::connect(&url, "jobs")?;
    let marker = scratch.file("ran");
    let f = ex.submit(mark_then_nap, (marker.clone(), 0))?;
    let mine = ipc_redis::executable_identity()?;
    match f.result(Some(LONG)) {
        Err(Error::WrongExecutable {
            expected, found, ..
        }) => {
            check(
                expected == mine,
                format!("expected {expected}, we are {mine}"),
            )?;
            check(found != mine, "the worker claims our identity")?;
        }
        other => return Err(format!("the other build answered {other:?}").into()),
    }
    check(lines(&marker) == 0, "the refused task ran anyway")
}

fn queue_and_dict_are_shared_between_two_processes() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let q: Queue<(u32, String)> = Queue::create(&url, "jobs", 16)?;
    let d: Dict<String, u64> = Dict::open(&url, "counts")?;
    let inherited = d.clone();
    let u = url.clone();
    let mut child = Process::new(move || {
        // Opened by name, as on another host; and one handle inherited
        // across the fork (it opens its own connection).
        let q: Queue<(u32, String)> = Queue::open(&u, "jobs").expect("open queue");
        let d: Dict<String, u64> = Dict::open(&u, "counts").expect("open dict");
        for i in 0..100u32 {
            q.put(&(i, format!("job {i}"))).expect("put");
            d.update_with(&"hits".into(), |v| v.unwrap_or(0) + 1)
                .expect("update");
        }
        inherited.insert(&"child".into(), &7).expect("insert");
    });
    child.start()?;
    for i in 0..100u32 {
        let (n, s) = q.get_timeout(LONG)?;
        check(
            n == i && s == format!("job {i}"),
            format!("got ({n}, {s}) at {i}"),
        )?;
        d.update_with(&"hits".into(), |v| v.unwrap_or(0) + 1)?;
    }
    child.join()?;
    check(d.get(&"hits".into())? == Some(200), "lost an update")?;
    check(d.get(&"child".into())? == Some(7), "the child's insert")?;
    check(q.is_empty()?, "the queue is not empty")?;
    let mut keys = d.keys()?;
    keys.sort();
    check(keys == ["child", "hits"], format!("keys {keys:?}"))
}

fn as_completed_mixes_local_and_remote_futures() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let _w = Worker::start(&url, "jobs", 1)?;
    let local = ProcessPoolExecutor::new(1)?;
    let ex = RedisPoolExecutor::connect(&url, "jobs")?;
    check(
        wait_until(LONG, || ex.live_processes().ok() == Some(1)),
        "the worker never came up",
    )?;
    let slow_local = local.submit(nap, 2000)?;
    let quick_remote = ex.submit(nap, 10)?;
    let order: Vec<usize> =
        as_completed(&[&slow_local, &quick_remote], Some(LONG)).collect::<Result<_, _>>()?;
    check(order == [1, 0], format!("order {order:?}"))?;
    let slow_remote = ex.submit(nap, 2000)?;
    let quick_local = local.submit(nap, 10)?;
    let r = wait(
        &[&slow_remote, &quick_local],
        Some(LONG),
        ReturnWhen::FirstCompleted,
    );
    check(r.done == [1], format!("first completed: {r:?}"))?;
    let r = wait(
        &[&slow_remote, &quick_local],
        Some(LONG),
        ReturnWhen::AllCompleted,
    );
    check(r.done == [0, 1], format!("all completed: {r:?}"))?;
    check(slow_remote.result(None)? == 2000, "remote value")
}

fn connecting_to_an_unreachable_redis_fails_at_once_naming_the_url() -> R {
    let port = free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}/0");
    let shown = format!("redis://:***@127.0.0.1:{port}/0");
    let t0 = Instant::now();
    let errs = [
        RedisPool::connect(&url, "jobs").err(),
        RedisPoolExecutor::connect(&url, "jobs").err(),
        Queue::<u8>::open(&url, "q").err(),
        Dict::<u8, u8>::open(&url, "d").err(),
        ipc_redis::serve_worker(&url, "jobs", 1).err(),
    ];
    for e in errs {
        match &e {
            Some(e @ Error::Unreachable { url: u, .. }) if *u == shown => {
                let text = e.to_string();
                check(text.contains(&shown), &text)?;
                check(!text.contains("hunter2"), "the password is shown")?;
            }
            other => return Err(format!("{other:?}").into()),
        }
    }
    check(
        t0.elapsed() < Duration::from_secs(10),
        "connecting took too long",
    )?;
    let bad = RedisPool::connect("rediss://127.0.0.1:1/", "jobs");
    check(
        matches!(bad, Err(Error::InvalidUrl { .. })),
        format!("{bad:?}"),
    )
}

fn with_no_worker_submit_queues_and_result_times_out() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let ex = RedisPoolExecutor::connect(&url, "jobs")?;
    let f = ex.submit(square, 12)?;
    let t0 = Instant::now();
    let r = f.result(Some(Duration::from_millis(300)));
    check(
        matches!(
            r.as_ref().map_err(core_err),
            Err(Some(ipc_core::Error::Timeout))
        ),
        format!("{r:?}"),
    )?;
    check(t0.elapsed() < Duration::from_secs(5), "the timeout overran")?;
    check(
        !f.done() && !f.running(),
        "done or running without a worker",
    )?;
    check(ex.live_processes()? == 0, "a live worker?")?;
    let _w = Worker::start(&url, "jobs", 2)?;
    check(f.result(Some(LONG))? == 144, "the queued call")?;
    check(
        wait_until(LONG, || ex.live_processes().ok() == Some(2)),
        "the worker's heartbeat",
    )
}

fn password_and_acl_user_are_taken_from_the_url() -> R {
    let redis = Redis::start_with(&[
        "--requirepass",
        "s3cret",
        "--user",
        "alice",
        "on",
        ">pw",
        "~*",
        "&*",
        "+@all",
    ])?;
    let port = redis.port();
    let good = format!("redis://:s3cret@127.0.0.1:{port}/0");
    let alice = format!("redis://alice:pw@127.0.0.1:{port}/0");
    let _w = Worker::start(&alice, "jobs", 1)?;
    let ex = RedisPoolExecutor::connect(&good, "jobs")?;
    check(ex.submit(square, 5)?.result(Some(LONG))? == 25, "password")?;
    let pool = RedisPool::connect(&alice, "jobs")?;
    check(pool.apply(square, 6)? == 36, "ACL user")?;
    for bad in [
        format!("redis://:wrong@127.0.0.1:{port}/0"),
        format!("redis://alice:wrong@127.0.0.1:{port}/0"),
        format!("redis://127.0.0.1:{port}/0"),
    ] {
        let r = RedisPool::connect(&bad, "jobs");
        check(
            matches!(r, Err(Error::Auth { .. })),
            format!("{bad}: {r:?}"),
        )?;
    }
    Ok(())
}

fn task_killing_its_process_fails_with_worker_died_after_the_delivery_limit() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let scratch = Scratch::new("limit");
    let path = scratch.file("runs");
    let pool = RedisPool::builder(&url, "jobs")
        .visibility_timeout(Duration::from_secs(1))
        .max_deliveries(2)
        .pool()?;
    let _w = Worker::start(&url, "jobs", 1)?;
    let r = pool
        .apply_async(mark_then_die, path.clone())?
        .get(Some(LONG));
    check(
        matches!(
            r.as_ref().map_err(core_err),
            Err(Some(ipc_core::Error::WorkerDied { .. }))
        ),
        format!("{r:?}"),
    )?;
    check(
        lines(&path) == 2,
        format!("delivered {} times, limit 2", lines(&path)),
    )?;
    // The worker replaced its local process and serves on.
    check(pool.apply(square, 3)? == 9, "the worker after the deaths")
}

fn failing_and_panicking_tasks_fail_only_their_own_future() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let _w = Worker::start(&url, "jobs", 1)?;
    let ex = RedisPoolExecutor::connect(&url, "jobs")?;
    let p = ex.submit(panics, ())?;
    let e = ex.submit(fails, 7)?;
    let ok = ex.submit(square, 4)?;
    match p.result(Some(LONG)) {
        Err(Error::Core(ipc_core::Error::Panicked { message, .. }))
            if message == "remote panic" => {}
        other => return Err(format!("panic: {other:?}").into()),
    }
    match e.result(Some(LONG)) {
        Err(Error::Core(ipc_core::Error::TargetFailed { message, .. }))
            if message == "failed with 7" => {}
        other => return Err(format!("err: {other:?}").into()),
    }
    check(ok.result(Some(LONG))? == 16, "the other task")?;
    check(
        e.exception(None)?.is_some() && ok.exception(None)?.is_none(),
        "exception()",
    )
}

fn garbage_in_the_stream_and_reply_list_is_dropped_and_the_pool_carries_on() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let ex = RedisPoolExecutor::connect(&url, "jobs")?;
    let f = ex.submit(square, 9)?;
    let mut c = raw(&url);
    let stream = "ipc:{jobs}:tasks";
    // The reply list of our client, from the task we just queued.
    type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;
    let entries: Entries = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(&mut c)?;
    let task: ipc_redis::wire::Task =
        ipc_redis::wire::unpack(ipc_redis::wire::TASK, &entries[0].1[0].1)?;
    // Garbage replies, and a reply for a task nobody submitted.
    let stray = ipc_redis::wire::pack(
        ipc_redis::wire::REPLY,
        &ipc_redis::wire::Reply {
            id: 999_999,
            worker: "forged".into(),
            outcome: ipc_redis::wire::Outcome::Ok(vec![1]),
        },
    )?;
    redis::cmd("RPUSH")
        .arg(&task.reply)
        .arg(&b"junk"[..])
        .arg(&ipc_redis::wire::REPLY[..])
        .arg(stray)
        .query::<()>(&mut c)?;
    // Garbage tasks: no task field, junk, a valid tag on junk, and a valid
    // task whose reply key lies outside the pool.
    let mut outside = task.clone();
    outside.reply = "user:data".into();
    let forged = ipc_redis::wire::pack(ipc_redis::wire::TASK, &outside)?;
    let mut tagged = ipc_redis::wire::TASK.to_vec();
    tagged.extend_from_slice(&[0xee; 40]);
    for (field, value) in [
        ("x", b"1".to_vec()),
        ("t", b"junk".to_vec()),
        ("t", tagged),
        ("t", forged),
    ] {
        redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(field)
            .arg(value)
            .query::<String>(&mut c)?;
    }
    let _w = Worker::start(&url, "jobs", 1)?;
    check(f.result(Some(LONG))? == 81, "the real task")?;
    check(
        ex.submit(square, 10)?.result(Some(LONG))? == 100,
        "a later task",
    )?;
    check(
        wait_until(LONG, || xlen(&url, stream) == 0),
        "garbage entries left in the stream",
    )?;
    let exists: u32 = redis::cmd("EXISTS").arg("user:data").query(&mut c)?;
    check(exists == 0, "a task made the worker write outside the pool")
}

fn long_task_is_not_redelivered_while_its_worker_lives() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let scratch = Scratch::new("long");
    let path = scratch.file("runs");
    // Refreshed every 0.67 s: only a stall of 1.3 s would let the other
    // worker claim it.
    let pool = RedisPool::builder(&url, "jobs")
        .visibility_timeout(Duration::from_secs(2))
        .pool()?;
    let _a = Worker::start(&url, "jobs", 1)?;
    let _b = Worker::start(&url, "jobs", 1)?;
    let runs = pool.apply(mark_then_nap, (path.clone(), 5000))?;
    check(runs == 1, format!("run number {runs}"))?;
    std::thread::sleep(Duration::from_millis(300));
    check(
        lines(&path) == 1,
        format!(
            "{} runs of a 5 s task with a 2 s visibility timeout",
            lines(&path)
        ),
    )
}

fn cancel_and_shutdown_cancel_futures_before_any_worker_takes_them() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let scratch = Scratch::new("cancel");
    let path = scratch.file("runs");
    let ex = RedisPoolExecutor::connect(&url, "jobs")?;
    let fs: Vec<_> = (0..3)
        .map(|_| ex.submit(mark_then_nap, (path.clone(), 0)))
        .collect::<Result<_, _>>()?;
    check(
        fs[0].cancel() && fs[0].cancelled() && fs[0].done(),
        "cancel",
    )?;
    ex.shutdown(false, true);
    check(fs.iter().all(|f| f.cancelled()), "shutdown(cancel_futures)")?;
    let r = ex.submit(square, 1);
    check(
        matches!(
            r.as_ref().map_err(core_err),
            Err(Some(ipc_core::Error::Closed))
        ),
        format!("{r:?}"),
    )?;
    check(
        xlen(&url, "ipc:{jobs}:tasks") == 0,
        "cancelled entries left",
    )?;
    // A worker that comes now finds nothing to run.
    let _w = Worker::start(&url, "jobs", 1)?;
    let pool = RedisPool::connect(&url, "jobs")?;
    check(pool.apply(square, 2)? == 4, "the worker")?;
    check(lines(&path) == 0, "a cancelled task ran")
}

fn imap_imap_unordered_and_starmap_give_every_result() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let _w = Worker::start(&url, "jobs", 2)?;
    let pool = RedisPool::connect(&url, "jobs")?;
    let v: Vec<u64> = pool.imap(square, 0..50u64, 3).collect::<Result<_, _>>()?;
    check(v == (0..50).map(|x| x * x).collect::<Vec<_>>(), "imap")?;
    let mut u: Vec<u64> = pool
        .imap_unordered(nap, [1000u64, 1, 2], 1)
        .collect::<Result<_, _>>()?;
    check(u[0] != 1000, format!("imap_unordered order {u:?}"))?;
    u.sort();
    check(u == [1, 2, 1000], "imap_unordered")?;
    check(pool.map(add, [(1, 2), (3, 4)], None)? == [3, 7], "starmap")?;
    let a = pool.map_async(square, 0..10u64, Some(4))?;
    check(
        a.get(Some(LONG))? == (0..10).map(|x| x * x).collect::<Vec<_>>(),
        "map_async",
    )?;
    let e = pool.map(fails, [1, 2], None);
    check(
        matches!(e, Err(Error::Core(ipc_core::Error::TargetFailed { .. }))),
        format!("{e:?}"),
    )?;
    pool.close();
    pool.join()?;
    Ok(())
}

fn queue_bounds_timeouts_close_and_bad_items_are_typed() -> R {
    let redis = Redis::start()?;
    let url = redis.url();
    let q: Queue<u64> = Queue::create(&url, "q", 2)?;
    q.put(&1)?;
    q.put(&2)?;
    check(q.is_full()? && q.len()? == 2, "full")?;
    let t0 = Instant::now();
    let r = q.put_timeout(&3, Duration::from_millis(200));
    check(
        matches!(
            r.as_ref().map_err(core_err),
            Err(Some(ipc_core::Error::Timeout))
        ),
        format!("{r:?}"),
    )?;
    check(t0.elapsed() < Duration::from_secs(5), "put_timeout overran")?;
    let r = q.try_put(&3);
    check(
        matches!(
            r.as_ref().map_err(core_err),
            Err(Some(ipc_core::Error::Full))
        ),
        format!("{r:?}"),
    )?;
    check(q.get()? == 1 && q.get()? == 2, "fifo")?;
    let r = q.get_timeout(Duration::from_millis(200));
    check(
        matches!(
            r.as_ref().map_err(core_err),
            Err(Some(ipc_core::Error::Timeout))
        ),
        format!("{r:?}"),
    )?;
    let r = Queue::<u64>::create(&url, "q", 5);
    check(
        matches!(
            r.as_ref().map_err(core_err),
            Err(Some(ipc_core::Error::Incompatible { .. }))
        ),
        format!("{r:?}"),
    )?;
    let r = Queue::<u64>::open(&url, "nobody");
    check(
        matches!(
            r.as_ref().map_err(core_err),
            Err(Some(ipc_core::Error::NotFound { .. }))
        ),
        format!("{r:?}"),
    )?;
    // Garbage pushed by someone else is reported, not trusted.
    redis::cmd("RPUSH")
        .arg("ipc:queue:{q}")
        .arg("junk")
        .query::<()>(&mut raw(&url))?;
    check(matches!(q.get(), Err(Error::Corrupt(_))), "garbage item")?;
    // Close: puts fail, gets drain then fail, a blocked get wakes.
    q.put(&5)?;
    let q2 = Queue::<u64>::open(&url, "q")?;
    q.close()?;
    let r = q.put(&6);
    check(
        matches!(
            r.as_ref().map_err(core_err),
            Err(Some(ipc_core::Error::Closed))
        ),
        format!("{r:?}"),
    )?;
    check(q2.get()? == 5, "drain after close")?;
    let r = q2.get();
    check(
        matches!(
            r.as_ref().map_err(core_err),
            Err(Some(ipc_core::Error::Closed))
        ),
        format!("{r:?}"),
    )?;
    Ok(())
}

fn main() {
    // A worker started by these tests serves here and exits.
    ipc_redis::init();
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test(
            "map_over_three_workers_returns_every_result_once_in_order",
            map_over_three_workers_returns_every_result_once_in_order,
        ),
        Trial::test(
            "worker_killed_mid_task_has_its_task_redelivered",
            worker_killed_mid_task_has_its_task_redelivered,
        ),
        Trial::test(
            "redis_killed_mid_run_fails_every_pending_call_within_bound",
            redis_killed_mid_run_fails_every_pending_call_within_bound,
        ),
        Trial::test(
            "task_for_a_different_binary_is_refused_not_run",
            task_for_a_different_binary_is_refused_not_run,
        ),
        Trial::test(
            "queue_and_dict_are_shared_between_two_processes",
            queue_and_dict_are_shared_between_two_processes,
        ),
        Trial::test(
            "as_completed_mixes_local_and_remote_futures",
            as_completed_mixes_local_and_remote_futures,
        ),
        Trial::test(
            "connecting_to_an_unreachable_redis_fails_at_once_naming_the_url",
            connecting_to_an_unreachable_redis_fails_at_once_naming_the_url,
        ),
        Trial::test(
            "with_no_worker_submit_queues_and_result_times_out",
            with_no_worker_submit_queues_and_result_times_out,
        ),
        Trial::test(
            "password_and_acl_user_are_taken_from_the_url",
            password_and_acl_user_are_taken_from_the_url,
        ),
        Trial::test(
            "task_killing_its_process_fails_with_worker_died_after_the_delivery_limit",
            task_killing_its_process_fails_with_worker_died_after_the_delivery_limit,
        ),
        Trial::test(
            "failing_and_panicking_tasks_fail_only_their_own_future",
            failing_and_panicking_tasks_fail_only_their_own_future,
        ),
        Trial::test(
            "garbage_in_the_stream_and_reply_list_is_dropped_and_the_pool_carries_on",
            garbage_in_the_stream_and_reply_list_is_dropped_and_the_pool_carries_on,
        ),
        Trial::test(
            "long_task_is_not_redelivered_while_its_worker_lives",
            long_task_is_not_redelivered_while_its_worker_lives,
        ),
        Trial::test(
            "cancel_and_shutdown_cancel_futures_before_any_worker_takes_them",
            cancel_and_shutdown_cancel_futures_before_any_worker_takes_them,
        ),
        Trial::test(
            "imap_imap_unordered_and_starmap_give_every_result",
            imap_imap_unordered_and_starmap_give_every_result,
        ),
        Trial::test(
            "queue_bounds_timeouts_close_and_bad_items_are_typed",
            queue_bounds_timeouts_close_and_bad_items_are_typed,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
