//! `Dict<K, V>`: a dict in a Redis hash, reachable from any host.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use ipc_core::codec::Message;
use redis::Value;

use crate::conn::{reply, Conn, Endpoint, Timeouts};
use crate::keys::check_name;
use crate::wire;
use crate::Result;

/// Sets a field, returns its old value. KEYS: hash. ARGV: field, value.
const INSERT: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return old
"#;

/// Deletes a field, returns its old value. KEYS: hash. ARGV: field.
const REMOVE: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then redis.call('HDEL', KEYS[1], ARGV[1]) end
return old
"#;

/// The value of a field, set to the default first if absent. KEYS: hash.
/// ARGV: field, default.
const SETDEFAULT: &str = r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then return v end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return ARGV[2]
"#;

/// Sets a field only if its value is still the expected one. KEYS: hash.
/// ARGV: field, '1' if a value is expected ('0': absent), expected, new.
const COMPARE_AND_SET: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (ARGV[2] == '0' and not cur) or (ARGV[2] == '1' and cur == ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  return 1
end
return 0
"#;

/// Invariant in `T`, `Send` and `Sync` whatever `T` is.
type Invariant<T> = fn(T) -> T;

struct Inner {
    conn: Mutex<Conn>,
    key: String,
    name: String,
}

/// A dict shared by every process, on any host, that opens the same
/// name on the same Redis: a hash whose fields are the encoded keys (the
/// methods of `ipc_manager`'s `DictProxy`). Keys and values are `rkyv`
/// messages, validated when read. Each call is one round trip, and the
/// read-modify-write calls run atomically on the server (Lua).
///
/// Order is not kept: [`keys`](Self::keys) and friends list in the hash's
/// order.
///
/// # Examples
///
/// ```
/// use ipc_redis::Dict;
/// # let redis = ipc_redis::testing::Redis::start().unwrap();
/// # let url = redis.url();
/// let hits: Dict<String, u64> = Dict::open(&url, "hits")?;
/// let page = "/index".to_string();
/// assert_eq!(hits.insert(&page, &1)?, None);
/// hits.update_with(&page, |n| n.unwrap_or(0) + 1)?; // hits[page] += 1, atomically
/// assert_eq!(hits.get(&page)?, Some(2));
/// assert_eq!(hits.len()?, 1);
/// assert_eq!(hits.remove(&page)?, Some(2));
/// # Ok::<(), ipc_redis::Error>(())
/// ```
pub struct Dict<K, V> {
    inner: Arc<Inner>,
    _t: PhantomData<Invariant<(K, V)>>,
}

impl<K, V> Clone for Dict<K, V> {
    fn clone(&self) -> Self {
        Dict {
            inner: self.inner.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for Dict<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dict")
            .field("name", &self.inner.name)
            .finish()
    }
}

fn enc<T: Message>(v: &T) -> Result<Vec<u8>> {
    wire::pack(wire::ITEM, v)
}

fn dec<T: Message>(b: &[u8]) -> Result<T> {
    wire::unpack(wire::ITEM, b)
}

impl<K: Message, V: Message> Dict<K, V> {
    /// Opens the dict `name` (it exists once it has an item).
    ///
    /// # Errors
    /// [`crate::Error::Unreachable`] (naming the URL) and other Redis
    /// errors; [`ipc_core::Error::InvalidArgument`] for a bad name.
    pub fn open(url: &str, name: &str) -> Result<Dict<K, V>> {
        check_name(name)?;
        let conn = Conn::connected(Endpoint::new(url, Timeouts::default())?)?;
        Ok(Dict {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                key: format!("ipc:dict:{{{name}}}"),
                name: name.to_owned(),
            }),
            _t: PhantomData,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Conn> {
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn maybe(v: Option<Vec<u8>>) -> Result<Option<V>> {
        v.map(|b| dec(&b)).transpose()
    }

    /// The value of `key` (Python's `d.get(k)`).
    ///
    /// # Errors
    /// [`crate::Error::Corrupt`] if the stored bytes are not a `V`; Redis
    /// errors.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let v: Option<Vec<u8>> = self
            .conn()
            .run(redis::cmd("HGET").arg(&self.inner.key).arg(enc(key)?))?;
        Self::maybe(v)
    }

    /// Sets `key` to `value` (`d[k] = v`); returns the old value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        let v: Option<Vec<u8>> =
            self.conn()
                .eval(INSERT, &[&self.inner.key], &[&enc(key)?, &enc(value)?])?;
        Self::maybe(v)
    }

    /// Removes `key`; returns its value (`d.pop(k, None)`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let v: Option<Vec<u8>> = self
            .conn()
            .eval(REMOVE, &[&self.inner.key], &[&enc(key)?])?;
        Self::maybe(v)
    }

    /// As [`remove`](Self::remove) (Python's name).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn pop(&self, key: &K) -> Result<Option<V>> {
        self.remove(key)
    }

    /// Whether `key` is present (`k in d`).
    ///
    /// # Errors
    /// Redis errors.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.conn()
            .run(redis::cmd("HEXISTS").arg(&self.inner.key).arg(enc(key)?))
    }

    /// Number of items (`len(d)`).
    ///
    /// # Errors
    /// Redis errors.
    pub fn len(&self) -> Result<usize> {
        self.conn().run(redis::cmd("HLEN").arg(&self.inner.key))
    }

    /// Whether there are no items.
    ///
    /// # Errors
    /// Redis errors.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    fn all(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let v: Value = self
            .conn()
            .run(redis::cmd("HGETALL").arg(&self.inner.key))?;
        let mut out = Vec::new();
        match v {
            Value::Map(m) => {
                for (k, v) in m {
                    out.push((reply::bytes(k)?, reply::bytes(v)?));
                }
            }
            v => {
                let mut it = reply::array(v)?.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    out.push((reply::bytes(k)?, reply::bytes(v)?));
                }
            }
        }
        Ok(out)
    }

    /// The keys (`list(d.keys())`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn keys(&self) -> Result<Vec<K>> {
        self.all()?.iter().map(|(k, _)| dec(k)).collect()
    }

    /// The values (`list(d.values())`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn values(&self) -> Result<Vec<V>> {
        self.all()?.iter().map(|(_, v)| dec(v)).collect()
    }

    /// The items (`list(d.items())`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.all()?
            .iter()
            .map(|(k, v)| Ok((dec(k)?, dec(v)?)))
            .collect()
    }

    /// Sets every pair, in one command (`d.update(...)`).
    ///
    /// # Errors
    /// Redis errors.
    pub fn update<'a>(&self, items: impl IntoIterator<Item = (&'a K, &'a V)>) -> Result<()>
    where
        K: 'a,
        V: 'a,
    {
        let mut c = redis::cmd("HSET");
        c.arg(&self.inner.key);
        let mut any = false;
        for (k, v) in items {
            c.arg(enc(k)?).arg(enc(v)?);
            any = true;
        }
        if any {
            self.conn().run::<Value>(&c)?;
        }
        Ok(())
    }

    /// Removes every item (`d.clear()`).
    ///
    /// # Errors
    /// Redis errors.
    pub fn clear(&self) -> Result<()> {
        self.conn()
            .run::<Value>(redis::cmd("DEL").arg(&self.inner.key))?;
        Ok(())
    }

    /// The value of `key`, set to `default` first if absent
    /// (`d.setdefault(k, v)`), atomically.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        let v: Vec<u8> = self.conn().eval(
            SETDEFAULT,
            &[&self.inner.key],
            &[&enc(key)?, &enc(default)?],
        )?;
        dec(&v)
    }

    /// Sets `key` to `new` only if its value is still `current` (`None`:
    /// absent), atomically; returns whether it did. Values are compared
    /// by their encoded bytes.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn compare_and_set(&self, key: &K, current: Option<&V>, new: &V) -> Result<bool> {
        let cur = current.map(enc).transpose()?;
        self.cas(&enc(key)?, cur.as_deref(), &enc(new)?)
    }

    fn cas(&self, key: &[u8], cur: Option<&[u8]>, new: &[u8]) -> Result<bool> {
        let flag: &[u8] = if cur.is_some() { b"1" } else { b"0" };
        let n: i64 = self.conn().eval(
            COMPARE_AND_SET,
            &[&self.inner.key],
            &[key, flag, cur.unwrap_or(b""), new],
        )?;
        Ok(n == 1)
    }

    /// Atomically replaces the value of `key` with `f(current)` and
    /// returns the new value: the read-modify-write that `d[k] += 1` is
    /// not. Built on [`compare_and_set`](Self::compare_and_set) (run on
    /// the server): `f` may run again if another process changed the
    /// value in between.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn update_with(&self, key: &K, mut f: impl FnMut(Option<V>) -> V) -> Result<V> {
        let k = enc(key)?;
        loop {
            let cur: Option<Vec<u8>> = self
                .conn()
                .run(redis::cmd("HGET").arg(&self.inner.key).arg(&k))?;
            let new = f(Self::maybe(cur.clone())?);
            if self.cas(&k, cur.as_deref(), &enc(&new)?)? {
                return Ok(new);
            }
        }
    }

    /// The dict's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}
