//! The `tracing` feature's events in the manager: the server gone (seen
//! by a client), a dead client's slot reclaimed (seen by the server, a
//! forked child that shares the recorder). ipc-manager's tests build with
//! the feature on (see its dev-dependencies).
#![cfg(feature = "tracing")]

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ipc_core::process::Process;
use ipc_core::Error as CoreError;
use ipc_manager::Error;
use ipc_manager::Manager;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every event and span recorded in this process and in the children it
/// forks after `record()`, one line each (`LEVEL message field=value ...`
/// or `SPAN name field=value ...`), appended to one memfd whose open file
/// (O_APPEND) the children share.
static LOG: OnceLock<std::fs::File> = OnceLock::new();

struct Recorder;
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={v:?}", f.name());
    }
}

fn append(mut line: String) {
    use std::io::Write;
    line.push('\n');
    if let Some(mut f) = LOG.get() {
        // One write per line: appends from several processes never mix.
        let _ = f.write_all(line.as_bytes());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, a: &Attributes<'_>) -> Id {
        let mut f = Fields(format!("SPAN {}", a.metadata().name()));
        a.record(&mut f);
        append(f.0);
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut f = Fields(e.metadata().level().to_string());
        e.record(&mut f);
        append(f.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Installs the recorder as this process's global subscriber (once).
fn record() {
    LOG.get_or_init(|| {
        // SAFETY: memfd_create with a valid C string and flags.
        let fd = unsafe { libc::memfd_create(c"ipc-trace".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create");
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("/proc/self/fd/{fd}"))
            .expect("reopen the memfd for appending");
        // SAFETY: fd is ours and no longer needed (f has its own).
        unsafe { libc::close(fd) };
        tracing::subscriber::set_global_default(Recorder).expect("subscriber");
        f
    });
}

fn dump() -> String {
    use std::os::fd::AsRawFd;
    let fd = LOG.get().expect("record() first").as_raw_fd();
    std::fs::read_to_string(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

/// Whether a recorded line contains every one of `parts`.
fn logged(parts: &[&str]) -> bool {
    dump().lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let d = Instant::now() + limit;
    while Instant::now() < d {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn reclaimed_client_and_server_gone_are_events() {
    record();
    let mgr = Manager::start().unwrap();
    let l = mgr.list::<u32>().unwrap();
    let m2 = mgr.clone();
    let mut dying = Process::new(move || {
        m2.names().unwrap(); // takes a slot
                             // SAFETY: raise SIGKILL on ourselves: die holding the slot.
        unsafe { libc::raise(libc::SIGKILL) };
    });
    dying.start().unwrap();
    let pid = dying.pid().unwrap();
    assert!(matches!(dying.join(), Err(CoreError::Killed { .. })));
    assert!(
        eventually(Duration::from_secs(10), || logged(&[
            "INFO",
            "reclaimed the slot of a dead client",
            &format!("pid={pid}")
        ])),
        "{}",
        dump()
    );
    let server = mgr.server_pid().unwrap();
    // SAFETY: kill(2) on the server process this test started.
    assert_eq!(unsafe { libc::kill(server as i32, libc::SIGKILL) }, 0);
    assert!(eventually(Duration::from_secs(10), || matches!(
        l.len(),
        Err(Error::ServerGone)
    )));
    assert!(logged(&["WARN", "manager server is gone"]), "{}", dump());
}
