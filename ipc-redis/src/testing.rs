//! For tests, doctests and benches (hidden, not a stable API): a private
//! `redis-server` on a free loopback port, and worker processes of the
//! running program. Both are killed when dropped (even when a test
//! panics) and die with the process that started them.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Makes `cmd`'s child die with the thread that starts it.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before the prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    };
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A `redis-server` of our own on 127.0.0.1, in a temporary directory,
/// with no persistence (`--save '' --appendonly no`).
#[derive(Debug)]
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl Redis {
    /// Starts one; fails (never skips) without `redis-server` on `PATH`.
    ///
    /// # Errors
    /// What starting it returned.
    pub fn start() -> std::io::Result<Redis> {
        Redis::start_with(&[])
    }

    /// Starts one with extra arguments (`--requirepass pw`, ...).
    ///
    /// # Errors
    /// What starting it returned.
    pub fn start_with(args: &[&str]) -> std::io::Result<Redis> {
        let dir = std::env::temp_dir().join(format!(
            "ipc-redis-test-{}-{}",
            std::process::id(),
            crate::keys::random_id()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut r = Redis {
            child: None,
            port: 0,
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        let mut last = None;
        for _ in 0..5 {
            match r.launch(None) {
                Ok(()) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried"))
    }

    fn launch(&mut self, port: Option<u16>) -> std::io::Result<()> {
        let port = match port {
            Some(p) => p,
            None => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        };
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot start redis-server (apt-get install redis-server): {e}"),
            )
        })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = child.try_wait()? {
                return Err(std::io::Error::other(format!("redis-server exited: {s}")));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                self.child = Some(child);
                self.port = port;
                return Ok(());
            }
            if Instant::now() > deadline {
                kill(&mut child);
                return Err(std::io::Error::other("redis-server did not start"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILLs the server now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    /// Starts a fresh (empty) server on the same port.
    ///
    /// # Errors
    /// What starting it returned.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.launch(Some(self.port))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A worker process: this program started again with `--ipc-worker URL
/// NAME --ipc-processes N` (its `main` must call [`crate::init`] first).
#[derive(Debug)]
pub struct Worker {
    child: Option<Child>,
}

impl Worker {
    /// Starts one of this program.
    ///
    /// # Errors
    /// What starting it returned.
    pub fn start(url: &str, name: &str, processes: usize) -> std::io::Result<Worker> {
        Worker::start_exe(std::env::current_exe()?, url, name, processes)
    }

    /// Starts one of the program `exe`.
    ///
    /// # Errors
    /// What starting it returned.
    pub fn start_exe(
        exe: PathBuf,
        url: &str,
        name: &str,
        processes: usize,
    ) -> std::io::Result<Worker> {
        let mut cmd = Command::new(exe);
        cmd.args([
            "--ipc-worker",
            url,
            name,
            "--ipc-processes",
            &processes.to_string(),
        ])
        .stdin(Stdio::null());
        die_with_parent(&mut cmd);
        Ok(Worker {
            child: Some(cmd.spawn()?),
        })
    }

    /// The worker's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGKILLs it now and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    /// Waits for it to exit, at most `limit`; its exit code (`None`:
    /// still running, or killed by a signal).
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                self.child = None;
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}
