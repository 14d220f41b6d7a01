//! Connections: one URL, timeouts on everything, typed errors, and a
//! connection that re-opens itself after a failure or in a forked child
//! (a TCP stream is never shared by two processes).

use std::sync::Arc;
use std::time::Duration;

use redis::{Client, Cmd, Connection, ErrorKind, FromRedisValue, Pipeline, RedisError, Value};

use crate::{Error, Result};

/// Connect and I/O timeouts. A lost connection is retried for
/// `connect` before callers waiting on it fail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub io: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            io: Duration::from_secs(5),
        }
    }
}

/// A Redis server as a URL: opens connections and names errors.
pub(crate) struct Endpoint {
    client: Client,
    /// The URL with its password hidden, for errors and logs.
    pub url: String,
    pub t: Timeouts,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.url).finish()
    }
}

/// `url` with the password (if any) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..auth_end].rfind('@') else {
        return url.to_owned();
    };
    let user = match rest[..at].split_once(':') {
        Some((u, _)) => format!("{u}:***"),
        None => rest[..at].to_owned(),
    };
    format!("{scheme}://{user}@{}", &rest[at + 1..])
}

impl Endpoint {
    pub fn new(url: &str, t: Timeouts) -> Result<Arc<Endpoint>> {
        let shown = redact(url);
        let invalid = |message: String| Error::InvalidUrl {
            url: shown.clone(),
            message,
        };
        if url.starts_with("rediss://") {
            return Err(invalid(
                "TLS (rediss://) is not built into ipc-redis; reach a TLS Redis through a local tunnel (stunnel, spiped) and a redis:// URL".into(),
            ));
        }
        if !url.starts_with("redis://")
            && !url.starts_with("redis+unix://")
            && !url.starts_with("unix://")
        {
            return Err(invalid(
                "expected redis://[user[:password]@]host[:port][/db]".into(),
            ));
        }
        let client = Client::open(url).map_err(|e| invalid(e.to_string()))?;
        Ok(Arc::new(Endpoint {
            client,
            url: shown,
            t,
        }))
    }

    /// A new connection, checked with a `PING` (so a wrong password or a
    /// missing one fails here, as [`Error::Auth`]).
    pub fn connect(&self) -> Result<Connection> {
        let mut c = self
            .client
            .get_connection_with_timeout(self.t.connect)
            .map_err(|e| self.connect_error(e))?;
        c.set_read_timeout(Some(self.t.io))
            .and_then(|_| c.set_write_timeout(Some(self.t.io)))
            .map_err(|e| self.connect_error(e))?;
        redis::cmd("PING")
            .query::<Value>(&mut c)
            .map_err(|e| self.connect_error(e))?;
        Ok(c)
    }

    fn connect_error(&self, e: RedisError) -> Error {
        match self.error(e) {
            Error::ConnectionLost { url, message } => Error::Unreachable { url, message },
            other => other,
        }
    }

    /// Classifies a failed command.
    pub fn error(&self, e: RedisError) -> Error {
        let url = self.url.clone();
        let message = e.to_string();
        let code = e.code().unwrap_or("");
        if e.kind() == ErrorKind::AuthenticationFailed
            || matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
        {
            Error::Auth { url, message }
        } else if e.is_io_error() || e.is_unrecoverable_error() {
            Error::ConnectionLost { url, message }
        } else if matches!(e.kind(), ErrorKind::TypeError | ErrorKind::ParseError) {
            Error::Corrupt(format!("unexpected reply from Redis: {message}"))
        } else {
            Error::Server { url, message }
        }
    }
}

/// A connection of this process, opened on first use and again after a
/// connection failure or a fork.
pub(crate) struct Conn {
    pub ep: Arc<Endpoint>,
    c: Option<(u32, Connection)>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("url", &self.ep.url).finish()
    }
}

impl Conn {
    pub fn new(ep: Arc<Endpoint>) -> Conn {
        Conn { ep, c: None }
    }

    /// A connection opened now (errors surface at once).
    pub fn connected(ep: Arc<Endpoint>) -> Result<Conn> {
        let mut c = Conn::new(ep);
        c.con()?;
        Ok(c)
    }

    fn con(&mut self) -> Result<&mut Connection> {
        let pid = std::process::id();
        if self.c.as_ref().is_some_and(|(p, _)| *p != pid) {
            // Inherited across fork: the parent owns that stream. Closing
            // our copy of the descriptor does not disturb it.
            self.c = None;
        }
        if self.c.is_none() {
            self.c = Some((pid, self.ep.connect()?));
        }
        Ok(&mut self.c.as_mut().expect("just set").1)
    }

    fn check<T>(&mut self, r: std::result::Result<T, RedisError>) -> Result<T> {
        r.map_err(|e| {
            let err = self.ep.error(e);
            if matches!(err, Error::ConnectionLost { .. } | Error::Corrupt(_)) {
                // Out of step with the server: start afresh next time.
                self.c = None;
            }
            err
        })
    }

    /// Runs one command.
    pub fn run<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T> {
        let r = cmd.query(self.con()?);
        self.check(r)
    }

    /// Runs a pipeline (atomic if built with `.atomic()`).
    pub fn pipe<T: FromRedisValue>(&mut self, p: &Pipeline) -> Result<T> {
        let r = p.query(self.con()?);
        self.check(r)
    }

    /// Runs a command that blocks on the server for up to `block`: the
    /// read timeout is `block` plus the I/O timeout.
    pub fn blocking<T: FromRedisValue>(&mut self, cmd: &Cmd, block: Duration) -> Result<T> {
        let io = self.ep.t.io;
        let c = self.con()?;
        let r = c
            .set_read_timeout(Some(block + io))
            .and_then(|_| cmd.query(c))
            .and_then(|v| c.set_read_timeout(Some(io)).map(|_| v));
        self.check(r)
    }

    /// Runs a Lua script (atomic on the server).
    pub fn eval<T: FromRedisValue>(
        &mut self,
        script: &str,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T> {
        let mut c = redis::cmd("EVAL");
        c.arg(script).arg(keys.len());
        for k in keys {
            c.arg(*k);
        }
        for a in args {
            c.arg(*a);
        }
        self.run(&c)
    }

    /// The server's `run_id`: it changes when Redis restarts (and with
    /// it, unless persisted, every stream and list).
    pub fn run_id(&mut self) -> Result<String> {
        let info: String = self.run(redis::cmd("INFO").arg("server"))?;
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|s| s.trim().to_owned())
            .ok_or_else(|| Error::Corrupt("INFO server has no run_id".into()))
    }
}

/// Helpers to read replies, validating their shape.
pub(crate) mod reply {
    use redis::Value;

    use crate::{Error, Result};

    fn bad(what: &str, v: &Value) -> Error {
        Error::Corrupt(format!("expected {what} from Redis, got {v:?}"))
    }

    pub fn array(v: Value) -> Result<Vec<Value>> {
        match v {
            Value::Array(a) | Value::Set(a) => Ok(a),
            Value::Nil => Ok(Vec::new()),
            v => Err(bad("an array", &v)),
        }
    }

    pub fn bytes(v: Value) -> Result<Vec<u8>> {
        match v {
            Value::BulkString(b) => Ok(b),
            Value::SimpleString(s) => Ok(s.into_bytes()),
            v => Err(bad("a string", &v)),
        }
    }

    pub fn string(v: Value) -> Result<String> {
        String::from_utf8(bytes(v)?).map_err(|_| Error::Corrupt("a reply is not UTF-8".into()))
    }

    pub fn int(v: Value) -> Result<i64> {
        match v {
            Value::Int(i) => Ok(i),
            Value::BulkString(ref b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("an integer", &v)),
            v => Err(bad("an integer", &v)),
        }
    }

    /// A stream entry's id and its fields.
    pub type Entry = (String, Vec<(Vec<u8>, Vec<u8>)>);

    /// One stream entry: `[id, [field, value, ...]]` (`None`: an entry
    /// deleted while pending, which Redis 6.2 reports as nil).
    pub fn entry(v: Value) -> Result<Option<Entry>> {
        if v == Value::Nil {
            return Ok(None);
        }
        let mut e = array(v)?.into_iter();
        let (Some(id), Some(fields)) = (e.next(), e.next()) else {
            return Err(Error::Corrupt("a stream entry without id or fields".into()));
        };
        let id = string(id)?;
        if fields == Value::Nil {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut f = array(fields)?.into_iter();
        while let Some(k) = f.next() {
            let v = f
                .next()
                .ok_or_else(|| Error::Corrupt("a stream entry with an odd field list".into()))?;
            out.push((bytes(k)?, bytes(v)?));
        }
        Ok(Some((id, out)))
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_appear_in_a_shown_url() {
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://alice:p@ss@h/0"), "redis://alice:***@h/0");
        assert_eq!(redact("redis://alice@h"), "redis://alice@h");
        assert_eq!(redact("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
        assert_eq!(redact("garbage"), "garbage");
    }
}
