//! What the remote `Pool` and executor share: the submitting connection,
//! the table of outstanding results, and a reader thread that pops this
//! client's reply list and completes them.
//!
//! Tasks are entries of the pool's stream. Each client has its own reply
//! list; its reader thread pops replies in batches (`LPOP key n`, else
//! `BLPOP` for half a second) and records them. A reply for a task that
//! already has a result (a re-delivered task that ran twice) is dropped,
//! so each caller sees one result per task.
//!
//! When the reader's connection breaks it reconnects; if that fails for
//! the connect timeout, or Redis came back as another server (a new
//! `run_id`: its streams and lists are gone), every outstanding task
//! fails with [`Error::ConnectionLost`]. Nothing waits forever on a dead
//! Redis.

mod replies;
mod results;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_core::pool::remote::Code;
use ipc_core::pool::FutureSource;
use redis::Value;

use crate::conn::{reply, Conn, Endpoint, Timeouts};
use crate::keys::{self, lua, PoolKeys, GROUP};
use crate::wire::{self, Outcome};
use crate::{Error, Result};
use replies::read_replies;

/// Settings of a client (`RedisPool` or `RedisPoolExecutor`).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub visibility: Duration,
    pub max_deliveries: u32,
    pub max_message_size: usize,
    pub timeouts: Timeouts,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            visibility: Duration::from_secs(30),
            max_deliveries: 3,
            max_message_size: 1 << 20,
            timeouts: Timeouts::default(),
        }
    }
}

/// Why a task has no value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    Failed {
        worker: String,
        message: String,
    },
    Panicked {
        worker: String,
        message: String,
    },
    Setup {
        worker: String,
        message: String,
    },
    WorkerDied(u64),
    Refused {
        worker: String,
        expected: String,
        found: String,
    },
    Lost(String),
    Cancelled,
}

impl Failure {
    pub fn to_error(&self, url: &str) -> Error {
        let name = |w: &str| format!("redis worker {w}");
        match self {
            Failure::Failed { worker, message } => Error::Core(ipc_core::Error::TargetFailed {
                name: name(worker),
                message: message.clone(),
            }),
            Failure::Panicked { worker, message } => Error::Core(ipc_core::Error::Panicked {
                name: name(worker),
                message: message.clone(),
            }),
            Failure::Setup { worker, message } => Error::Core(ipc_core::Error::Exited {
                name: name(worker),
                code: 1,
                detail: Some(message.clone()),
            }),
            Failure::WorkerDied(pid) => Error::Core(ipc_core::Error::WorkerDied { pid: *pid }),
            Failure::Refused {
                worker,
                expected,
                found,
            } => Error::WrongExecutable {
                worker: worker.clone(),
                expected: expected.clone(),
                found: found.clone(),
            },
            Failure::Lost(m) => Error::ConnectionLost {
                url: url.to_owned(),
                message: m.clone(),
            },
            Failure::Cancelled => Error::Core(ipc_core::Error::Cancelled),
        }
    }
}

pub(crate) type Done = std::result::Result<Vec<u8>, Failure>;
pub(crate) type Callback = Box<dyn FnOnce(&Done) + Send>;

#[derive(Default)]
struct Slot {
    /// The stream entry, once added.
    entry: Option<String>,
    result: Option<Done>,
    callback: Option<Callback>,
    /// Nobody holds a handle: drop the result when it comes.
    abandoned: bool,
}

#[derive(Default)]
struct State {
    slots: HashMap<u64, Slot>,
}

/// One client of a pool.
pub(crate) struct Shared {
    pub ep: Arc<Endpoint>,
    pub keys: PoolKeys,
    pub name: String,
    pub settings: Settings,
    exe: &'static str,
    reply_key: String,
    conn: Mutex<Conn>,
    st: Mutex<State>,
    cv: Condvar,
    next_id: AtomicU64,
    closed: AtomicBool,
    stop: Arc<AtomicBool>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.ep.url)
            .field("name", &self.name)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Connects, creates the stream and group if need be, publishes the
    /// redelivery settings for the workers, and starts the reader.
    pub fn connect(url: &str, name: &str, settings: Settings) -> Result<Arc<Shared>> {
        let ep = Endpoint::new(url, settings.timeouts)?;
        let keys = PoolKeys::new(name)?;
        let exe = crate::executable_identity()?;
        let mut conn = Conn::connected(ep.clone())?;
        keys::ensure_group(&mut conn, &keys)?;
        conn.run::<Value>(
            redis::cmd("HSET")
                .arg(&keys.config)
                .arg("visibility_ms")
                .arg(settings.visibility.as_millis().max(1) as u64)
                .arg("max_deliveries")
                .arg(settings.max_deliveries.max(1)),
        )?;
        let mut rconn = Conn::connected(ep.clone())?;
        let run_id = rconn.run_id()?;
        let reply_key = format!("{}{}", keys.reply_prefix, keys::random_id());
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            ep,
            keys,
            name: name.to_owned(),
            settings,
            exe,
            reply_key: reply_key.clone(),
            conn: Mutex::new(conn),
            st: Mutex::new(State::default()),
            cv: Condvar::new(),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            stop: stop.clone(),
            reader: Mutex::new(None),
        });
        let weak = Arc::downgrade(&shared);
        let connect_timeout = shared.settings.timeouts.connect;
        let h = std::thread::Builder::new()
            .name("ipc-redis-replies".into())
            .spawn(move || read_replies(weak, rconn, reply_key, stop, run_id, connect_timeout))
            .map_err(|e| crate::io_error(&e))?;
        *lock(&shared.reader) = Some(h);
        Ok(shared)
    }

    fn check_open(&self) -> Result<()> {
        // Acquire: pairs with the Release in `close`.
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Core(ipc_core::Error::Closed));
        }
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close`.
        self.closed.load(Ordering::Acquire)
    }

    /// No more submissions.
    pub fn close(&self) {
        // Release: pairs with the Acquire in `check_open`.
        self.closed.store(true, Ordering::Release);
    }

    fn task(&self, code: Code, args: Vec<u8>) -> Result<(u64, Vec<u8>)> {
        let max = self.settings.max_message_size;
        if args.len() > max {
            return Err(Error::Core(ipc_core::Error::MessageTooLarge {
                size: args.len(),
                max,
            }));
        }
        // Relaxed: ids only need to be unique.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tramp, target) = code.offsets();
        let t = wire::Task {
            exe: self.exe.to_owned(),
            id,
            reply: self.reply_key.clone(),
            tramp,
            target,
            args,
        };
        Ok((id, wire::pack(wire::TASK, &t)?))
    }

    /// Adds tasks to the stream in one round trip; returns their ids. On
    /// error nothing of this call is registered (tasks already added may
    /// still run; their results are dropped).
    pub fn submit_many(&self, tasks: Vec<(Code, Vec<u8>, Option<Callback>)>) -> Result<Vec<u64>> {
        self.check_open()?;
        let mut packed = Vec::with_capacity(tasks.len());
        let mut cbs = Vec::with_capacity(tasks.len());
        for (code, args, cb) in tasks {
            packed.push(self.task(code, args)?);
            cbs.push(cb);
        }
        {
            let mut st = lock(&self.st);
            for ((id, _), cb) in packed.iter().zip(cbs) {
                st.slots.insert(
                    *id,
                    Slot {
                        callback: cb,
                        ..Slot::default()
                    },
                );
            }
        }
        let ids: Vec<u64> = packed.iter().map(|(id, _)| *id).collect();
        let r = (|| {
            let mut entries = Vec::with_capacity(packed.len());
            let mut conn = lock(&self.conn);
            for batch in packed.chunks(512) {
                let mut p = redis::pipe();
                for (_, bytes) in batch {
                    p.cmd("XADD")
                        .arg(&self.keys.tasks)
                        .arg("*")
                        .arg(wire::FIELD)
                        .arg(bytes.as_slice());
                }
                let got: Vec<Value> = conn.pipe(&p)?;
                for v in got {
                    entries.push(reply::string(v)?);
                }
            }
            Ok(entries)
        })();
        let mut st = lock(&self.st);
        match r {
            Ok(entries) => {
                for (id, e) in ids.iter().zip(entries) {
                    if let Some(s) = st.slots.get_mut(id) {
                        s.entry = Some(e);
                    }
                }
                Ok(ids)
            }
            Err(e) => {
                for id in &ids {
                    st.slots.remove(id);
                }
                Err(e)
            }
        }
    }

    /// Adds one task.
    pub fn submit(&self, code: Code, args: Vec<u8>, cb: Option<Callback>) -> Result<u64> {
        Ok(self.submit_many(vec![(code, args, cb)])?[0])
    }

    /// Records a reply read from the list (validated; garbage is dropped).
    fn dispatch(&self, bytes: &[u8]) {
        let r: wire::Reply = match wire::unpack(wire::REPLY, bytes) {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "ipc-redis: dropped an invalid reply on {}: {e}",
                    self.reply_key
                );
                return;
            }
        };
        let worker = r.worker;
        let done = match r.outcome {
            Outcome::Ok(b) => Ok(b),
            Outcome::Failed(message) => Err(Failure::Failed { worker, message }),
            Outcome::Panicked(message) => Err(Failure::Panicked { worker, message }),
            Outcome::Setup(message) => Err(Failure::Setup { worker, message }),
            Outcome::WorkerDied { pid } => Err(Failure::WorkerDied(pid)),
            Outcome::Refused { expected, found } => Err(Failure::Refused {
                worker,
                expected,
                found,
            }),
        };
        self.record(r.id, done);
    }

    fn entry(&self, id: u64) -> Option<String> {
        lock(&self.st).slots.get(&id).and_then(|s| s.entry.clone())
    }

    /// Cancels a task no worker has taken: its entry is deleted on the
    /// server, atomically with the check. Returns whether it is cancelled.
    ///
    /// # Errors
    /// Redis errors.
    pub fn cancel(&self, id: u64) -> Result<bool> {
        if let Some(r) = self.result_of(id) {
            return Ok(r == Err(Failure::Cancelled));
        }
        let Some(entry) = self.entry(id) else {
            return Ok(false);
        };
        let n: i64 = lock(&self.conn).eval(
            lua::CANCEL,
            &[&self.keys.tasks],
            &[GROUP.as_bytes(), entry.as_bytes()],
        )?;
        if n == 1 {
            self.record(id, Err(Failure::Cancelled));
        }
        Ok(self.result_of(id) == Some(Err(Failure::Cancelled)))
    }

    /// Cancels every outstanding task no worker has taken.
    pub fn cancel_pending(&self) {
        let ids: Vec<u64> = lock(&self.st)
            .slots
            .iter()
            .filter(|(_, s)| s.result.is_none())
            .map(|(i, _)| *i)
            .collect();
        for id in ids {
            let _ = self.cancel(id);
        }
    }

    /// Whether a worker holds the task (it is in the group's pending list).
    pub fn running(&self, id: u64) -> bool {
        if self.done(id) {
            return false;
        }
        let Some(entry) = self.entry(id) else {
            return false;
        };
        let r: Result<Value> = lock(&self.conn).run(
            redis::cmd("XPENDING")
                .arg(&self.keys.tasks)
                .arg(GROUP)
                .arg(&entry)
                .arg(&entry)
                .arg(1),
        );
        r.and_then(reply::array).is_ok_and(|a| !a.is_empty())
    }

    /// Waits until no task is without a result.
    pub fn wait_idle(&self) {
        let mut st = lock(&self.st);
        while st.slots.values().any(|s| s.result.is_none()) {
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Worker processes alive now, by their heartbeats.
    pub fn live_processes(&self) -> Result<usize> {
        keys::live_processes(&mut lock(&self.conn), &self.keys)
    }

    /// Decodes a task's value.
    pub fn value<T: ipc_core::codec::Message>(&self, d: &Done) -> Result<T> {
        match d {
            Ok(b) => wire::value(b),
            Err(f) => Err(f.to_error(&self.ep.url)),
        }
    }
}

impl FutureSource for Shared {
    fn is_done(&self, id: u64) -> bool {
        self.done(id)
    }
    fn is_failed(&self, id: u64) -> bool {
        matches!(self.result_of(id), Some(Err(_)))
    }
    fn wait_any(&self, ids: &[u64], deadline: Option<Instant>) {
        self.wait_any_done(ids, deadline);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Release: pairs with the Acquire in `read_replies`.
        self.stop.store(true, Ordering::Release);
        let h = lock(&self.reader).take();
        if let Some(h) = h {
            // The reader may drop the last handle itself: never join it
            // from there.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        // Best effort: the list also expires by itself.
        let _ = self
            .conn
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .run::<Value>(redis::cmd("DEL").arg(&self.reply_key));
    }
}
