//! A worker: reads tasks from the pool's stream in the consumer group,
//! runs them in a local `ipc_core::pool::Pool`, pushes each reply and
//! acknowledges its entry in one transaction.
//!
//! Threads: the reader (`XREADGROUP`, only while a local process is free
//! or about to be) and the completer (this thread: writes replies and
//! acknowledgements in batches, and every third of the visibility
//! timeout refreshes the running tasks' idle time, beats its heartbeat,
//! reads the pool's settings and claims (`XAUTOCLAIM`) the tasks of
//! workers that died).
//!
//! Delivery is at least once: a task whose worker died runs again; one
//! delivered more than `max_deliveries` times fails with `WorkerDied`. A
//! local process killed under a task leaves the task unacknowledged, so
//! it is claimed again like any dead worker's.

//!
//! Its shared state is in `ctx.rs`, the task loop (reading, running,
//! completing, and claiming dead workers' tasks) in `tasks.rs`.

mod ctx;
mod tasks;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

use ipc_core::pool::Pool;
use redis::Value;

use crate::conn::{Conn, Endpoint, Timeouts};
use crate::keys::{self, PoolKeys};
use crate::{Error, Result};
use ctx::{member, read_config, Ctx};
use tasks::{complete, read_tasks};

/// Serves the pool `name` at `url` with `processes` local worker
/// processes (an [`ipc_core::pool::Pool`]), until
/// [`stop_workers`](crate::stop_workers) is called for the pool (then it
/// finishes the tasks it holds and returns `Ok`) or Redis is lost for
/// more than a few seconds (`Err`). Start it on any host, in a build of
/// the same program as the clients; or use the CLI form through
/// [`init`](crate::init).
///
/// # Errors
/// [`Error::Unreachable`] (naming the URL), [`Error::Auth`],
/// [`Error::ConnectionLost`]; what starting the local pool returns.
///
/// # Examples
///
/// ```
/// fn double(x: u32) -> u32 { 2 * x }
/// ipc_redis::init();
/// # let redis = ipc_redis::testing::Redis::start().unwrap();
/// # let url = redis.url();
/// let u = url.clone();
/// let worker = std::thread::spawn(move || ipc_redis::serve_worker(&u, "jobs", 1));
/// let pool = ipc_redis::RedisPool::connect(&url, "jobs")?;
/// assert_eq!(pool.apply(double, 21)?, 42);
/// ipc_redis::stop_workers(&url, "jobs")?;
/// worker.join().unwrap()?;
/// # Ok::<(), ipc_redis::Error>(())
/// ```
pub fn serve_worker(url: &str, name: &str, processes: usize) -> Result<()> {
    if processes == 0 {
        return Err(Error::Core(ipc_core::Error::InvalidArgument(
            "a worker needs at least one process",
        )));
    }
    let ep = Endpoint::new(url, Timeouts::default())?;
    let keys = PoolKeys::new(name)?;
    let exe = crate::executable_identity()?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let consumer = format!("{host}:{}:{}", std::process::id(), &keys::random_id()[..8]);
    let mut conn = Conn::connected(ep.clone())?;
    keys::ensure_group(&mut conn, &keys)?;
    let cfg = read_config(&mut conn, &keys)?;
    let rconn = Conn::connected(ep.clone())?;
    let pool = Arc::new(Pool::new(processes).map_err(Error::Core)?);
    let ctx = Arc::new(Ctx {
        keys,
        exe,
        consumer,
        cap: processes * 2,
        inflight: Mutex::new(HashSet::new()),
        room: Condvar::new(),
        stop: AtomicBool::new(false),
        fatal: Mutex::new(None),
        cfg: Mutex::new(cfg),
    });
    let (tx, rx) = mpsc::channel();
    let reader = {
        let (ctx, pool, tx) = (ctx.clone(), pool.clone(), tx.clone());
        std::thread::Builder::new()
            .name("ipc-redis-worker-reader".into())
            .spawn(move || read_tasks(&ctx, &pool, &tx, rconn))
            .map_err(|e| crate::io_error(&e))?
    };
    let r = complete(&ctx, &pool, &tx, &rx, &mut conn, cfg.stop);

    // Release: pairs with the Acquire in `stopping`.
    ctx.stop.store(true, Ordering::Release);
    ctx.room.notify_all();
    let _ = reader.join();
    let _ = conn.run::<Value>(
        redis::cmd("ZREM")
            .arg(&ctx.keys.workers)
            .arg(member(&ctx, processes)),
    );
    drop(pool);
    r
}

/// Asks every worker of the pool `name` to stop: each finishes the tasks
/// it holds, then [`serve_worker`] returns `Ok` (the CLI form exits 0).
/// Workers started later are not affected.
///
/// # Errors
/// Redis errors.
///
/// # Examples
///
/// See [`serve_worker`].
pub fn stop_workers(url: &str, name: &str) -> Result<()> {
    let keys = PoolKeys::new(name)?;
    let mut conn = Conn::connected(Endpoint::new(url, Timeouts::default())?)?;
    conn.run::<Value>(redis::cmd("HINCRBY").arg(&keys.config).arg("stop").arg(1))?;
    Ok(())
}

/// The CLI form: `--ipc-worker URL NAME [--ipc-processes N]` anywhere in
/// the arguments.
pub(crate) fn from_args() {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some(i) = args.iter().position(|a| a == "--ipc-worker") else {
        return;
    };
    let usage =
        "usage: --ipc-worker redis://[user[:password]@]host[:port][/db] NAME [--ipc-processes N]";
    let (Some(url), Some(name)) = (args.get(i + 1), args.get(i + 2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let processes = match args.iter().position(|a| a == "--ipc-processes") {
        None => ipc_core::process::cpu_count(),
        Some(j) => match args.get(j + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n > 0 => n,
            _ => {
                eprintln!("{usage}");
                std::process::exit(2);
            }
        },
    };
    let code = match serve_worker(url, name, processes) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "ipc-redis worker for {name:?} at {}: {e}",
                crate::conn::redact(url)
            );
            1
        }
    };
    std::process::exit(code);
}
