//! The Redis keys of a pool, a queue and a dict, and the setup of a
//! pool's stream. A pool's keys share one `{hash tag}`.

use crate::conn::{reply, Conn};
use crate::{Error, Result};

/// The consumer group every worker of a pool reads in.
pub(crate) const GROUP: &str = "workers";

/// Checks a user-given name: 1 to 200 characters of `[A-Za-z0-9_.:-]`.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Core(ipc_core::Error::InvalidArgument(
            "a name is 1 to 200 characters of [A-Za-z0-9_.:-]",
        )))
    }
}

/// The keys of the pool `name`.
#[derive(Debug, Clone)]
pub(crate) struct PoolKeys {
    /// The task stream.
    pub tasks: String,
    /// Settings written by clients, read by workers (hash).
    pub config: String,
    /// Live workers: member `processes|consumer`, score = expiry in ms
    /// of the server's clock (sorted set).
    pub workers: String,
    /// Prefix of the clients' reply lists.
    pub reply_prefix: String,
}

impl PoolKeys {
    pub fn new(name: &str) -> Result<PoolKeys> {
        check_name(name)?;
        let p = format!("ipc:{{{name}}}");
        Ok(PoolKeys {
            tasks: format!("{p}:tasks"),
            config: format!("{p}:config"),
            workers: format!("{p}:workers"),
            reply_prefix: format!("{p}:reply:"),
        })
    }

    /// Whether `key` is a reply list of this pool (a task is input: its
    /// worker pushes the result only to such a key).
    pub fn is_reply_key(&self, key: &str) -> bool {
        key.strip_prefix(&self.reply_prefix).is_some_and(|id| {
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
        })
    }
}

/// Creates the stream and its consumer group unless they exist. The group
/// starts at `0`, so tasks added before it are delivered too.
pub(crate) fn ensure_group(conn: &mut Conn, keys: &PoolKeys) -> Result<()> {
    let r: Result<redis::Value> = conn.run(
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.tasks)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM"),
    );
    match r {
        Ok(_) => Ok(()),
        Err(Error::Server { message, .. }) if message.contains("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

/// 16 random bytes as hex (client and worker ids).
pub(crate) fn random_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // Unique enough without /dev/urandom: pid, time and a counter.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        b[..8].copy_from_slice(&h.finish().to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Lua scripts (each runs atomically on the server).
pub(crate) mod lua {
    /// Cancels a task not yet delivered: deletes its entry unless a worker
    /// holds it. KEYS: stream. ARGV: group, entry id. Returns 1 if
    /// cancelled.
    pub const CANCEL: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p > 0 then return 0 end
return redis.call('XDEL', KEYS[1], ARGV[2])
"#;

    /// Resets the idle time of the entries still held by this consumer
    /// (a worker's heartbeat for its running tasks), without counting a
    /// delivery. KEYS: stream. ARGV: group, consumer, ids... Returns the
    /// ids another worker claimed meanwhile.
    pub const REFRESH: &str = r#"
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p > 0 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"#;

    /// A worker's heartbeat. KEYS: workers set. ARGV: member, ttl ms.
    pub const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"#;

    /// The live workers' members. KEYS: workers set.
    pub const LIVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#;
}

/// Live worker processes of a pool, by its heartbeats.
pub(crate) fn live_processes(conn: &mut Conn, keys: &PoolKeys) -> Result<usize> {
    let v: redis::Value = conn.eval(lua::LIVE, &[&keys.workers], &[])?;
    let mut n = 0usize;
    for m in reply::array(v)? {
        let m = reply::string(m)?;
        let p = m
            .split_once('|')
            .and_then(|(p, _)| p.parse::<usize>().ok())
            .unwrap_or(1);
        n = n.saturating_add(p);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_reply_keys_are_checked() {
        assert!(check_name("jobs-1.a:b_c").is_ok());
        for bad in ["", "a b", "a{b}", "x\n", &"a".repeat(201)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let k = PoolKeys::new("jobs").unwrap();
        assert_eq!(k.tasks, "ipc:{jobs}:tasks");
        assert!(k.is_reply_key("ipc:{jobs}:reply:00ff"));
        assert!(!k.is_reply_key("ipc:{jobs}:reply:"));
        assert!(!k.is_reply_key("ipc:{jobs}:reply:zz"));
        assert!(!k.is_reply_key("ipc:{other}:reply:00"));
        assert!(!k.is_reply_key("user:data"));
    }
}
