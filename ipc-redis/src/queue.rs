//! `Queue<T>`: a FIFO queue in a Redis list, reachable from any host.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipc_core::codec::Message;
use redis::Value;

use crate::conn::{reply, Conn, Endpoint, Timeouts};
use crate::keys::check_name;
use crate::wire;
use crate::{Error, Result};

/// Largest encoded item (Redis's own limit on a string is 512 MiB).
const MAX_ITEM: usize = 64 << 20;

/// `RPUSH` unless closed or full. KEYS: list, meta. ARGV: item,
/// capacity. Returns 1 (put), 0 (full), -1 (closed).
const PUT: &str = r#"
if redis.call('HGET', KEYS[2], 'closed') then return -1 end
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('LLEN', KEYS[1]) >= cap then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
"#;

struct Inner {
    conn: Mutex<Conn>,
    list: String,
    meta: String,
    name: String,
    capacity: usize,
}

/// A queue shared by every process, on any host, that opens the same
/// name on the same Redis (the local [`ipc_core::queue::Queue`]'s
/// methods, over the network). Items are `rkyv` messages, validated when
/// read; a bounded queue refuses a `put` past its capacity atomically on
/// the server.
///
/// Clones share one connection; a forked child opens its own.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ipc_redis::Queue;
/// # let redis = ipc_redis::testing::Redis::start().unwrap();
/// # let url = redis.url();
/// let q: Queue<String> = Queue::create(&url, "jobs", 2)?;
/// q.put(&"a".to_string())?;
/// q.try_put(&"b".to_string())?;
/// assert!(q.try_put(&"c".to_string()).is_err()); // full
/// let other: Queue<String> = Queue::open(&url, "jobs")?; // elsewhere
/// assert_eq!(other.get()?, "a");
/// assert_eq!(other.get_timeout(Duration::from_secs(1))?, "b");
/// assert!(other.try_get().is_err()); // empty
/// # Ok::<(), ipc_redis::Error>(())
/// ```
pub struct Queue<T> {
    inner: Arc<Inner>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.inner.name)
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

fn core(e: ipc_core::Error) -> Error {
    Error::Core(e)
}

impl<T: Message> Queue<T> {
    fn connect(url: &str, name: &str) -> Result<(Conn, String, String)> {
        check_name(name)?;
        let conn = Conn::connected(Endpoint::new(url, Timeouts::default())?)?;
        Ok((
            conn,
            format!("ipc:queue:{{{name}}}"),
            format!("ipc:queue:{{{name}}}:meta"),
        ))
    }

    /// Creates the queue `name` with room for `capacity` items (0:
    /// unbounded), or opens it if it exists with that capacity.
    ///
    /// # Errors
    /// [`ipc_core::Error::Incompatible`] if it exists with another
    /// capacity; [`Error::Unreachable`] (naming the URL) and other Redis
    /// errors.
    pub fn create(url: &str, name: &str, capacity: usize) -> Result<Queue<T>> {
        let (mut conn, list, meta) = Self::connect(url, name)?;
        conn.run::<Value>(
            redis::cmd("HSETNX")
                .arg(&meta)
                .arg("capacity")
                .arg(capacity),
        )?;
        let q = Self::opened(conn, list, meta, name)?;
        if q.inner.capacity != capacity {
            return Err(core(ipc_core::Error::Incompatible {
                what: "capacity",
                expected: capacity.to_string(),
                found: q.inner.capacity.to_string(),
            }));
        }
        Ok(q)
    }

    /// Opens the queue `name`, created by [`create`](Self::create)
    /// anywhere.
    ///
    /// # Errors
    /// [`ipc_core::Error::NotFound`] if it was never created; Redis
    /// errors.
    pub fn open(url: &str, name: &str) -> Result<Queue<T>> {
        let (conn, list, meta) = Self::connect(url, name)?;
        Self::opened(conn, list, meta, name)
    }

    fn opened(mut conn: Conn, list: String, meta: String, name: &str) -> Result<Queue<T>> {
        let cap: Option<String> = conn.run(redis::cmd("HGET").arg(&meta).arg("capacity"))?;
        let Some(cap) = cap else {
            return Err(core(ipc_core::Error::NotFound {
                name: name.to_owned(),
            }));
        };
        let capacity = cap
            .parse()
            .map_err(|_| Error::Corrupt(format!("queue {name:?} has capacity {cap:?}")))?;
        Ok(Queue {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                list,
                meta,
                name: name.to_owned(),
                capacity,
            }),
            _t: PhantomData,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Conn> {
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_put_raw(&self, bytes: &[u8]) -> Result<()> {
        let cap = self.inner.capacity.to_string();
        let r: i64 = self.conn().eval(
            PUT,
            &[&self.inner.list, &self.inner.meta],
            &[bytes, cap.as_bytes()],
        )?;
        match r {
            1 => Ok(()),
            0 => Err(core(ipc_core::Error::Full)),
            _ => Err(core(ipc_core::Error::Closed)),
        }
    }

    fn encode(item: &T) -> Result<Vec<u8>> {
        let b = wire::pack(wire::ITEM, item)?;
        if b.len() > MAX_ITEM {
            return Err(core(ipc_core::Error::MessageTooLarge {
                size: b.len(),
                max: MAX_ITEM,
            }));
        }
        Ok(b)
    }

    fn put_deadline(&self, item: &T, deadline: Option<Instant>) -> Result<()> {
        let b = Self::encode(item)?;
        let mut nap = Duration::from_millis(1);
        loop {
            match self.try_put_raw(&b) {
                Err(Error::Core(ipc_core::Error::Full)) => {}
                other => return other,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(core(ipc_core::Error::Timeout));
            }
            // A full remote queue is polled, backing off to 50 ms.
            let left = deadline.map_or(nap, |d| d.saturating_duration_since(Instant::now()));
            std::thread::sleep(nap.min(left));
            nap = (nap * 2).min(Duration::from_millis(50));
        }
    }

    /// Puts an item, waiting for room as long as needed.
    ///
    /// # Errors
    /// [`ipc_core::Error::Closed`], [`ipc_core::Error::MessageTooLarge`];
    /// Redis errors.
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_deadline(item, None)
    }

    /// Puts an item, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`ipc_core::Error::Timeout`], as [`put`](Self::put).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_deadline(item, Some(Instant::now() + timeout))
    }

    /// Puts an item if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    /// [`ipc_core::Error::Full`], as [`put`](Self::put).
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: &T) -> Result<()> {
        self.try_put_raw(&Self::encode(item)?)
    }

    fn decode(b: Vec<u8>) -> Result<T> {
        wire::unpack(wire::ITEM, &b)
    }

    fn get_deadline(&self, deadline: Option<Instant>) -> Result<T> {
        loop {
            // Slices of at most a second, so a closed queue is noticed.
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let slice = left.map_or(Duration::from_secs(1), |l| l.min(Duration::from_secs(1)));
            if slice.is_zero() {
                return match self.try_get() {
                    Err(Error::Core(ipc_core::Error::Empty)) => Err(core(ipc_core::Error::Timeout)),
                    other => other,
                };
            }
            let v: Value = self.conn().blocking(
                redis::cmd("BLPOP")
                    .arg(&self.inner.list)
                    .arg(slice.as_secs_f64().max(0.001)),
                slice,
            )?;
            let mut kv = reply::array(v)?.into_iter();
            if let (Some(_), Some(b)) = (kv.next(), kv.next()) {
                return Self::decode(reply::bytes(b)?);
            }
            if self.is_closed()? {
                return Err(core(ipc_core::Error::Closed));
            }
        }
    }

    /// Takes the oldest item, waiting as long as needed.
    ///
    /// # Errors
    /// [`ipc_core::Error::Closed`] once closed and drained;
    /// [`Error::Corrupt`] if the item is not a valid `T`; Redis errors
    /// ([`Error::ConnectionLost`] within the I/O timeout if Redis dies).
    pub fn get(&self) -> Result<T> {
        self.get_deadline(None)
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`ipc_core::Error::Timeout`], as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_deadline(Some(Instant::now() + timeout))
    }

    /// Takes the oldest item if there is one (Python's `get_nowait`).
    ///
    /// # Errors
    /// [`ipc_core::Error::Empty`], as [`get`](Self::get).
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T> {
        let v: Option<Vec<u8>> = self.conn().run(redis::cmd("LPOP").arg(&self.inner.list))?;
        match v {
            Some(b) => Self::decode(b),
            None if self.is_closed()? => Err(core(ipc_core::Error::Closed)),
            None => Err(core(ipc_core::Error::Empty)),
        }
    }

    /// Number of items queued (Python's `qsize()`).
    ///
    /// # Errors
    /// Redis errors.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> Result<usize> {
        let n: usize = self.conn().run(redis::cmd("LLEN").arg(&self.inner.list))?;
        Ok(n)
    }

    /// Whether the queue is empty (Python's `empty()`).
    ///
    /// # Errors
    /// Redis errors.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Whether the queue is full (Python's `full()`; never for an
    /// unbounded queue).
    ///
    /// # Errors
    /// Redis errors.
    #[doc(alias = "full")]
    pub fn is_full(&self) -> Result<bool> {
        Ok(self.inner.capacity > 0 && self.len()? >= self.inner.capacity)
    }

    /// Capacity in items (0: unbounded).
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Closes the queue for everyone: `put`s fail with
    /// [`ipc_core::Error::Closed`]; `get`s drain what is queued, then fail
    /// with it (within a second, for those waiting).
    ///
    /// # Errors
    /// Redis errors.
    pub fn close(&self) -> Result<()> {
        self.conn().run::<Value>(
            redis::cmd("HSET")
                .arg(&self.inner.meta)
                .arg("closed")
                .arg(1),
        )?;
        Ok(())
    }

    /// Whether [`close`](Self::close) was called anywhere.
    ///
    /// # Errors
    /// Redis errors.
    pub fn is_closed(&self) -> Result<bool> {
        let v: Option<String> = self
            .conn()
            .run(redis::cmd("HGET").arg(&self.inner.meta).arg("closed"))?;
        Ok(v.is_some())
    }

    /// Deletes the queue and its items (for everyone).
    ///
    /// # Errors
    /// Redis errors.
    pub fn destroy(self) -> Result<()> {
        self.conn().run::<Value>(
            redis::cmd("DEL")
                .arg(&self.inner.list)
                .arg(&self.inner.meta),
        )?;
        Ok(())
    }
}
