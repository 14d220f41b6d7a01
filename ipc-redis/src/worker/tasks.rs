//! The worker's task loop: the reader thread, running and completing
//! tasks, the periodic tick, and claiming (`XAUTOCLAIM`) the tasks of
//! workers that died.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use ipc_core::pool::Pool;
use redis::Value;

use super::ctx::{
    execute, lock, member, read_config, Ctx, Job, Msg, PoolCfg, GIVE_UP, REPLY_TTL_MS,
};
use crate::conn::{reply, Conn};
use crate::keys::{self, lua, PoolKeys, GROUP};
use crate::wire::{self, Outcome};
use crate::{Error, Result};

/// The reader thread: takes new tasks while there is room.
pub(super) fn read_tasks(ctx: &Ctx, pool: &Pool, tx: &Sender<Msg>, mut conn: Conn) {
    let mut lost_since: Option<Instant> = None;
    while !ctx.stopping() {
        let free = {
            let mut g = lock(&ctx.inflight);
            if g.len() >= ctx.cap {
                g = ctx
                    .room
                    .wait_timeout(g, Duration::from_millis(200))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            ctx.cap.saturating_sub(g.len())
        };
        if free == 0 || ctx.stopping() {
            continue;
        }
        let block = Duration::from_millis(500);
        let r: Result<Value> = conn.blocking(
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&ctx.consumer)
                .arg("COUNT")
                .arg(free)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(&ctx.keys.tasks)
                .arg(">"),
            block,
        );
        match r.and_then(stream_entries) {
            Ok(entries) => {
                lost_since = None;
                for (entry, fields) in entries {
                    handle(ctx, pool, tx, entry, &fields, 1, 0);
                }
            }
            Err(Error::Server { message, .. }) if message.contains("NOGROUP") => {
                // The stream was deleted (FLUSHDB, or by hand): recreate it.
                if let Err(e) = keys::ensure_group(&mut conn, &ctx.keys) {
                    ctx.fail(e);
                    let _ = tx.send(Msg::Wake);
                }
            }
            Err(e) if e.is_connection() => {
                let since = *lost_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GIVE_UP {
                    ctx.fail(e);
                    let _ = tx.send(Msg::Wake);
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                ctx.fail(e);
                let _ = tx.send(Msg::Wake);
                return;
            }
        }
    }
}

/// The entries of an `XREADGROUP` reply (one stream).
pub(super) fn stream_entries(v: Value) -> Result<Vec<reply::Entry>> {
    let mut out = Vec::new();
    for s in reply::array(v)? {
        let mut s = reply::array(s)?.into_iter();
        let (Some(_name), Some(entries)) = (s.next(), s.next()) else {
            return Err(Error::Corrupt("a stream reply without entries".into()));
        };
        for e in reply::array(entries)? {
            out.extend(reply::entry(e)?);
        }
    }
    Ok(out)
}

/// Checks one delivered entry and starts it (or answers it at once).
/// `deliveries` counts this one; `prev` is the pid of the worker that
/// held it before (0: none or unknown).
pub(super) fn handle(
    ctx: &Ctx,
    pool: &Pool,
    tx: &Sender<Msg>,
    entry: String,
    fields: &[(Vec<u8>, Vec<u8>)],
    deliveries: u64,
    prev: u64,
) {
    if lock(&ctx.inflight).contains(&entry) {
        // Claimed again while it runs here (a refresh ran late): it is
        // still ours, and this is no new delivery to count.
        return;
    }
    let raw = fields
        .iter()
        .find(|(k, _)| k.as_slice() == wire::FIELD.as_bytes())
        .map(|(_, v)| v);
    let task = match raw.map(|r| wire::unpack::<wire::Task>(wire::TASK, r)) {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            ctx.warn(&format!("dropped entry {entry}: {e}"));
            let _ = tx.send(Msg::Drop { entry });
            return;
        }
        None => {
            ctx.warn(&format!("dropped entry {entry}: it has no task field"));
            let _ = tx.send(Msg::Drop { entry });
            return;
        }
    };
    if !ctx.keys.is_reply_key(&task.reply) {
        ctx.warn(&format!(
            "dropped entry {entry}: its reply key {:?} is not a reply list of this pool",
            task.reply
        ));
        let _ = tx.send(Msg::Drop { entry });
        return;
    }
    let answer = |entry: String, outcome: Outcome| Msg::Reply {
        entry,
        key: task.reply.clone(),
        reply: wire::Reply {
            id: task.id,
            worker: ctx.consumer.clone(),
            outcome,
        },
    };
    if task.exe != ctx.exe {
        ctx.warn(&format!(
            "refused task {entry}: it comes from executable {}, this worker is {}",
            task.exe, ctx.exe
        ));
        let found = ctx.exe.to_owned();
        let _ = tx.send(answer(
            entry,
            Outcome::Refused {
                expected: task.exe.clone(),
                found,
            },
        ));
        return;
    }
    if deliveries > lock(&ctx.cfg).max_deliveries {
        let _ = tx.send(answer(entry, Outcome::WorkerDied { pid: prev }));
        return;
    }
    if !lock(&ctx.inflight).insert(entry.clone()) {
        return; // taken by the other thread meanwhile
    }
    let job = Job {
        tramp: task.tramp,
        target: task.target,
        args: task.args.clone(),
    };
    let ok = {
        let (tx, entry, key, id, worker) = (
            tx.clone(),
            entry.clone(),
            task.reply.clone(),
            task.id,
            ctx.consumer.clone(),
        );
        move |outcome: Outcome| {
            let _ = tx.send(Msg::Reply {
                entry,
                key,
                reply: wire::Reply {
                    id,
                    worker,
                    outcome,
                },
            });
        }
    };
    let err = {
        let (tx, entry, key, id, worker) = (
            tx.clone(),
            entry.clone(),
            task.reply.clone(),
            task.id,
            ctx.consumer.clone(),
        );
        move |e: ipc_core::Error| {
            let _ = tx.send(match e {
                ipc_core::Error::WorkerDied { .. }
                | ipc_core::Error::BrokenPool(_)
                | ipc_core::Error::Closed => Msg::Forget { entry },
                e => Msg::Reply {
                    entry,
                    key,
                    reply: wire::Reply {
                        id,
                        worker,
                        outcome: Outcome::Setup(e.to_string()),
                    },
                },
            });
        }
    };
    if let Err(e) = pool.apply_async_with(execute, job, ok, err) {
        let _ = tx.send(answer(
            entry,
            Outcome::Setup(format!("the worker's local pool refused the task: {e}")),
        ));
    }
}

/// The completer: writes replies, and does the periodic work.
pub(super) fn complete(
    ctx: &Ctx,
    pool: &Pool,
    tx: &Sender<Msg>,
    rx: &mpsc::Receiver<Msg>,
    conn: &mut Conn,
    stop_at_start: i64,
) -> Result<()> {
    let processes = ctx.cap / 2;
    let mut batch: Vec<Msg> = Vec::new();
    let mut next_tick = Instant::now();
    let mut lost_since: Option<Instant> = None;
    let mut stopping = false;
    loop {
        if let Some(e) = lock(&ctx.fatal).take() {
            return Err(e);
        }
        if batch.is_empty() {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(m) => batch.push(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
            }
        }
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut r = Ok(());
        // Whether Redis answered something this round (only that ends a
        // loss of connection).
        let mut io = false;
        if !batch.is_empty() {
            io = true;
            r = write(ctx, conn, &batch);
            match &r {
                Ok(()) => {
                    for m in batch.drain(..) {
                        match m {
                            Msg::Reply { entry, .. }
                            | Msg::Drop { entry }
                            | Msg::Forget { entry } => ctx.finish(&entry),
                            Msg::Wake => {}
                        }
                    }
                }
                Err(e) if !e.is_connection() => {
                    // Redis refused part of the transaction (a reply key
                    // of the wrong type, out of memory): the rest was
                    // applied; nothing is gained by sending it again.
                    ctx.warn(&format!("could not write {} replies: {e}", batch.len()));
                    for m in batch.drain(..) {
                        match m {
                            Msg::Reply { entry, .. }
                            | Msg::Drop { entry }
                            | Msg::Forget { entry } => ctx.finish(&entry),
                            Msg::Wake => {}
                        }
                    }
                    r = Ok(());
                }
                Err(_) => {}
            }
        }
        if r.is_ok() && Instant::now() >= next_tick {
            io = true;
            r = tick(ctx, pool, tx, conn, processes).map(|cfg| {
                if cfg.stop > stop_at_start && !stopping {
                    stopping = true;
                    // Release: pairs with the Acquire in `stopping`.
                    ctx.stop.store(true, Ordering::Release);
                    ctx.room.notify_all();
                }
                next_tick = Instant::now() + tick_interval(&cfg);
            });
        }
        match r {
            Ok(()) if io => lost_since = None,
            Ok(()) => {}
            Err(e) if e.is_connection() => {
                let since = *lost_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GIVE_UP {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(100));
                // Try again at once, not a tick later.
                next_tick = Instant::now();
            }
            Err(e) => return Err(e),
        }
        if stopping && batch.is_empty() && lock(&ctx.inflight).is_empty() {
            return Ok(());
        }
    }
}

/// Writes a batch in one transaction.
pub(super) fn write(ctx: &Ctx, conn: &mut Conn, batch: &[Msg]) -> Result<()> {
    let mut p = redis::pipe();
    p.atomic();
    let tasks = &ctx.keys.tasks;
    for m in batch {
        let entry = match m {
            Msg::Reply { entry, key, reply } => {
                p.cmd("RPUSH")
                    .arg(key)
                    .arg(wire::pack(wire::REPLY, reply)?)
                    .ignore();
                p.cmd("PEXPIRE").arg(key).arg(REPLY_TTL_MS).ignore();
                entry
            }
            Msg::Drop { entry } => entry,
            Msg::Forget { .. } | Msg::Wake => continue,
        };
        p.cmd("XACK").arg(tasks).arg(GROUP).arg(entry).ignore();
        p.cmd("XDEL").arg(tasks).arg(entry).ignore();
    }
    conn.pipe::<()>(&p)
}

/// The periodic work: settings, heartbeat, refresh of the running tasks,
/// and claiming dead workers' tasks while there is room.
pub(super) fn tick(
    ctx: &Ctx,
    pool: &Pool,
    tx: &Sender<Msg>,
    conn: &mut Conn,
    processes: usize,
) -> Result<PoolCfg> {
    let cfg = read_config(conn, &ctx.keys)?;
    *lock(&ctx.cfg) = cfg;
    let interval = tick_interval(&cfg);
    let ttl = (interval * 3).max(Duration::from_secs(1));
    conn.eval::<Value>(
        lua::HEARTBEAT,
        &[&ctx.keys.workers],
        &[
            member(ctx, processes).as_bytes(),
            (ttl.as_millis() as u64).to_string().as_bytes(),
        ],
    )?;
    let held: Vec<String> = lock(&ctx.inflight).iter().cloned().collect();
    if !held.is_empty() {
        let mut args: Vec<&[u8]> = vec![GROUP.as_bytes(), ctx.consumer.as_bytes()];
        args.extend(held.iter().map(|e| e.as_bytes()));
        let lost: Value = conn.eval(lua::REFRESH, &[&ctx.keys.tasks], &args)?;
        for id in reply::array(lost)? {
            ctx.warn(&format!(
                "task {} was claimed by another worker while running here (it ran late); both may answer",
                reply::string(id)?
            ));
        }
    }
    let free = ctx.cap.saturating_sub(lock(&ctx.inflight).len());
    if free > 0 && !ctx.stopping() {
        for (entry, fields, deliveries, prev) in claim(ctx, conn, &cfg, free)? {
            handle(ctx, pool, tx, entry, &fields, deliveries, prev);
        }
    }
    Ok(cfg)
}

/// A third of the visibility timeout, within 50 ms to 2 s (so a stop
/// request or a lost Redis is seen within 2 s).
pub(super) fn tick_interval(cfg: &PoolCfg) -> Duration {
    (cfg.visibility / 3).clamp(Duration::from_millis(50), Duration::from_secs(2))
}

pub(super) type Claimed = (String, Vec<(Vec<u8>, Vec<u8>)>, u64, u64);

/// Claims up to `n` tasks idle for the visibility timeout (their worker
/// died, or lost its connection), with their delivery counts (this
/// delivery included) and previous holders' pids.
pub(super) fn claim(ctx: &Ctx, conn: &mut Conn, cfg: &PoolCfg, n: usize) -> Result<Vec<Claimed>> {
    let idle = cfg.visibility.as_millis() as u64;
    let pending = reply::array(
        conn.run(
            redis::cmd("XPENDING")
                .arg(&ctx.keys.tasks)
                .arg(GROUP)
                .arg("IDLE")
                .arg(idle)
                .arg("-")
                .arg("+")
                .arg(n),
        )?,
    )?;
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    // id -> (holder, deliveries so far)
    let mut before: HashMap<String, (String, u64)> = HashMap::new();
    for p in pending {
        let mut p = reply::array(p)?.into_iter();
        if let (Some(id), Some(holder), Some(_idle), Some(count)) =
            (p.next(), p.next(), p.next(), p.next())
        {
            before.insert(
                reply::string(id)?,
                (reply::string(holder)?, reply::int(count)?.max(0) as u64),
            );
        }
    }
    let v = reply::array(
        conn.run(
            redis::cmd("XAUTOCLAIM")
                .arg(&ctx.keys.tasks)
                .arg(GROUP)
                .arg(&ctx.consumer)
                .arg(idle)
                .arg("0-0")
                .arg("COUNT")
                .arg(n),
        )?,
    )?;
    let entries = v
        .into_iter()
        .nth(1)
        .ok_or_else(|| Error::Corrupt("an XAUTOCLAIM reply without entries".into()))?;
    let mut out = Vec::new();
    for e in reply::array(entries)? {
        let Some((id, fields)) = reply::entry(e)? else {
            continue;
        };
        let (deliveries, holder) = match before.get(&id) {
            Some((holder, count)) => (count + 1, holder.clone()),
            None => (deliveries_of(conn, &ctx.keys, &id)?, String::new()),
        };
        // Consumers are named host:pid:nonce.
        let pid = holder
            .rsplit(':')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if holder == ctx.consumer {
            // Our own: its local process died (or we ran late).
        } else if !holder.is_empty() {
            ctx.warn(&format!(
                "claimed task {id} of worker {holder} (delivery {deliveries})"
            ));
        }
        out.push((id, fields, deliveries, pid));
    }
    Ok(out)
}

pub(super) fn deliveries_of(conn: &mut Conn, keys: &PoolKeys, id: &str) -> Result<u64> {
    let p = reply::array(
        conn.run(
            redis::cmd("XPENDING")
                .arg(&keys.tasks)
                .arg(GROUP)
                .arg(id)
                .arg(id)
                .arg(1),
        )?,
    )?;
    let count = p
        .into_iter()
        .next()
        .map(reply::array)
        .transpose()?
        .and_then(|e| e.into_iter().nth(3))
        .map(reply::int)
        .transpose()?
        .unwrap_or(1);
    Ok(count.max(1) as u64)
}
