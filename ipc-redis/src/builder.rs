//! The settings a `RedisPool` or `RedisPoolExecutor` is built with.

use std::time::Duration;

use crate::client::Settings;

/// Settings of a [`RedisPool`](crate::RedisPool) or a
/// [`RedisPoolExecutor`](crate::RedisPoolExecutor), then
/// [`pool`](Builder::pool) or [`executor`](Builder::executor) connects.
///
/// The redelivery settings belong to the pool's name: a client publishes
/// them when it connects and the workers follow the latest.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let b = ipc_redis::Builder::new("redis://127.0.0.1:1/", "jobs")
///     .visibility_timeout(Duration::from_secs(5))
///     .max_deliveries(2)
///     .connect_timeout(Duration::from_millis(200));
/// assert!(b.executor().unwrap_err().is_connection()); // nothing listens there
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    pub(crate) url: String,
    pub(crate) name: String,
    pub(crate) settings: Settings,
}

impl Builder {
    /// Settings for the pool `name` at `url`
    /// (`redis://[user[:password]@]host[:port][/db]`), with defaults.
    pub fn new(url: &str, name: &str) -> Builder {
        Builder {
            url: url.to_owned(),
            name: name.to_owned(),
            settings: Settings::default(),
        }
    }

    /// How long a task may sit with a worker that sends no heartbeat
    /// before another worker claims it (default 30 s). Live workers
    /// refresh their tasks every third of it, so a long task is not
    /// re-delivered while its worker lives.
    pub fn visibility_timeout(mut self, d: Duration) -> Self {
        self.settings.visibility = d.max(Duration::from_millis(1));
        self
    }

    /// How many times a task is delivered before its worker's deaths fail
    /// it with [`ipc_core::Error::WorkerDied`] (default 3).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.settings.max_deliveries = n.max(1);
        self
    }

    /// Largest encoded task argument (default 1 MiB, the workers' local
    /// pools' limit); a larger one is refused with
    /// [`ipc_core::Error::MessageTooLarge`].
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.settings.max_message_size = n;
        self
    }

    /// How long connecting may take, and how long a broken connection is
    /// retried before the calls waiting on it fail (default 2 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.settings.timeouts.connect = d;
        self
    }

    /// How long Redis may take to answer a command (default 5 s).
    pub fn io_timeout(mut self, d: Duration) -> Self {
        self.settings.timeouts.io = d;
        self
    }

    /// Connects a [`RedisPool`](crate::RedisPool).
    ///
    /// # Errors
    /// As [`RedisPool::connect`](crate::RedisPool::connect).
    pub fn pool(self) -> crate::Result<crate::RedisPool> {
        crate::RedisPool::from_builder(self)
    }

    /// Connects a [`RedisPoolExecutor`](crate::RedisPoolExecutor).
    ///
    /// # Errors
    /// As [`RedisPoolExecutor::connect`](crate::RedisPoolExecutor::connect).
    pub fn executor(self) -> crate::Result<crate::RedisPoolExecutor> {
        crate::RedisPoolExecutor::from_builder(self)
    }
}
