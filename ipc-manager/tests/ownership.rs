//! What a manager may remove, and whom it may trust (issue 14): its
//! start-up sweep removes only what dead managers left (item 9), stopping
//! it removes only the regions its server owns, by identity, never by name
//! prefix (item 10), and a control region of another user is refused
//! (item 8).
//!
//! Tests that need a `/dev/shm` of their own (so that nothing another test
//! does can remove their regions, or to let another user create files) run
//! in a child process inside a private mount namespace with a fresh tmpfs
//! over `/dev/shm`. They need root (CI runs as root) and say so when
//! skipped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_core::process::Process;
use ipc_core::queue::Queue;
use ipc_core::region::{Kind, Region};
use ipc_core::sync::Event;
use ipc_core::Error as CoreError;
use ipc_manager::Manager;
use ipc_manager::{Error, Result};

const NOBODY: u32 = 65534;

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/ipc.{name}")).exists()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `body` in a child process with its own empty tmpfs on `/dev/shm`
/// (a private mount namespace) that reaps every orphan it inherits.
/// Returns `false`, saying why, if the namespace cannot be set up.
fn in_private_shm(body: impl FnOnce() -> Result<()> + Send + 'static) -> Result<bool> {
    let mut p = Process::new(move || -> Result<bool> {
        // SAFETY: unshare, mount and prctl with valid NUL-terminated strings
        // (or null where the call allows it), in a single-threaded child.
        let ok = unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/dev/shm".as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"size=64m,mode=1777".as_ptr().cast(),
                ) == 0
                && libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) == 0
        };
        if !ok {
            return Ok(false);
        }
        let r = body();
        // Reap the orphans (a killed program's server) re-parented to us.
        // SAFETY: waitpid on any child, without blocking.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        r.map(|()| true)
    });
    p.start()?;
    let ran = p.join()?;
    if !ran {
        eprintln!("SKIPPED: cannot mount a private /dev/shm (needs root with CAP_SYS_ADMIN)");
    }
    Ok(ran)
}

/// Leaves queue `name` holding 42, its creator dead (killed, no cleanup).
fn orphan_queue(name: &str) -> Result<()> {
    let n = name.to_owned();
    let mut p = Process::new(move || {
        let q = Queue::<u64>::create(&n, 4).unwrap();
        q.put(&42).unwrap();
        // SAFETY: dying on the spot, without destructors.
        unsafe { libc::raise(libc::SIGKILL) };
    });
    p.start()?;
    assert!(matches!(p.join(), Err(CoreError::Killed { .. })));
    assert!(exists(name));
    Ok(())
}

#[test]
fn manager_start_leaves_a_dead_creators_queue_and_its_message_alone() -> Result<()> {
    in_private_shm(|| {
        let n = unique("orphan");
        orphan_queue(&n)?;
        // Nobody maps it and its creator is dead: but it is no manager's.
        let mgr = Manager::start()?;
        assert!(exists(&n));
        drop(mgr);
        assert!(exists(&n));
        let q = Queue::<u64>::open(&n)?;
        assert_eq!(q.get_timeout(Duration::from_secs(5))?, 42);
        Ok(())
    })?;
    Ok(())
}

#[test]
fn manager_start_removes_what_a_dead_manager_left_and_nothing_else() -> Result<()> {
    in_private_shm(|| {
        let m = unique("dead-mgr");
        let own = format!("{m}.jobs");
        // A program starts manager `m`, gets a queue from it (adopted by
        // the server) and makes its own `m.jobs`; its server and then the
        // program are killed, so nothing is cleaned up.
        let mut prog = Process::new({
            let (m, own) = (m.clone(), own.clone());
            move || {
                let mgr = Manager::start_named(&m).unwrap();
                let q = mgr.named("q").queue::<u64>(4).unwrap();
                q.put(&1).unwrap();
                let mine = Queue::<u64>::create(&own, 4).unwrap();
                mine.put(&2).unwrap();
                let server = mgr.server_pid().unwrap() as i32;
                // SAFETY: kill(2) on our own child, then on ourselves.
                unsafe {
                    libc::kill(server, libc::SIGKILL);
                    libc::raise(libc::SIGKILL);
                }
            }
        });
        prog.start()?;
        let _ = prog.join();
        let adopted: Vec<String> = Region::list()?
            .into_iter()
            .filter(|r| r.kind == Some(Kind::Queue) && r.name.starts_with(&format!("{m}.")))
            .map(|r| r.name)
            .filter(|n| *n != own)
            .collect();
        assert_eq!(adopted.len(), 1, "{adopted:?}");
        assert!(exists(&m) && exists(&own));
        // Another process still uses the manager's queue.
        let ready = Event::new()?;
        // A daemon: it dies with us, even if an assertion below fails.
        let mut user = Process::builder().daemon(true).target({
            let (q, ready) = (adopted[0].clone(), ready.clone());
            move || {
                let _q = Queue::<u64>::open(&q).unwrap();
                ready.set();
                std::thread::sleep(Duration::from_secs(600));
            }
        });
        user.start()?;
        assert!(ready.wait_timeout(Duration::from_secs(30)));
        drop(Manager::start()?);
        // In use: kept, and so is the control region that identifies it.
        assert!(exists(&adopted[0]) && exists(&m) && exists(&own));
        user.kill()?;
        let _ = user.join();
        drop(Manager::start()?);
        assert!(!exists(&adopted[0]), "the dead manager's queue is left");
        assert!(!exists(&m), "the dead manager's control region is left");
        // The program's own queue is not the manager's: it stays, message
        // and all (`Region::gc` is the user's call).
        assert!(exists(&own));
        assert_eq!(
            Queue::<u64>::open(&own)?.get_timeout(Duration::from_secs(5))?,
            2
        );
        Ok(())
    })?;
    Ok(())
}

#[test]
fn stopping_manager_x_keeps_the_programs_own_queue_x_jobs() -> Result<()> {
    for kill_server in [false, true] {
        let x = unique("x");
        let jobs_name = format!("{x}.jobs");
        let mgr = Manager::start_named(&x)?;
        let managed = mgr.named("m").queue::<u64>(4)?;
        let jobs = Queue::<String>::create(&jobs_name, 4)?;
        jobs.put(&"keep me".to_string())?;
        let adopted: Vec<String> = Region::list()?
            .into_iter()
            .filter(|r| r.kind == Some(Kind::Queue) && r.name.starts_with(&format!("{x}.")))
            .map(|r| r.name)
            .filter(|n| *n != jobs_name)
            .collect();
        assert_eq!(adopted.len(), 1, "{adopted:?}");
        if kill_server {
            // The owner's sweep after reaping a killed server.
            let pid = mgr.server_pid().expect("we started it") as i32;
            // SAFETY: kill(2) on the server, a child of ours not yet reaped.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            let t0 = Instant::now();
            while mgr.is_running() {
                assert!(t0.elapsed() < Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        drop((managed, mgr));
        assert!(
            !exists(&x),
            "kill_server={kill_server}: control region left"
        );
        assert!(
            !exists(&adopted[0]),
            "kill_server={kill_server}: {adopted:?} left"
        );
        assert!(
            exists(&jobs_name),
            "kill_server={kill_server}: X.jobs removed"
        );
        // Another process still finds the message.
        let mut p = Process::new({
            let n = jobs_name.clone();
            move || Queue::<String>::open(&n)?.get_timeout(Duration::from_secs(5))
        });
        p.start()?;
        assert_eq!(p.join()?, "keep me");
        drop(jobs);
        assert!(!exists(&jobs_name));
    }
    Ok(())
}

#[test]
fn connect_refuses_a_manager_owned_by_another_user() -> Result<()> {
    if !is_root() {
        eprintln!("SKIPPED: running a manager as another user needs root");
        return Ok(());
    }
    in_private_shm(|| {
        let name = unique("evil");
        let (ready, done) = (Event::new()?, Event::new()?);
        let mut evil = Process::new({
            let (name, ready, done) = (name.clone(), ready.clone(), done.clone());
            move || -> Result<()> {
                // SAFETY: plain credential calls with valid arguments.
                unsafe {
                    assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
                    assert_eq!(libc::setgid(NOBODY), 0);
                    assert_eq!(libc::setuid(NOBODY), 0);
                }
                let _m = Manager::start_named(&name)?;
                ready.set();
                done.wait_timeout(Duration::from_secs(60));
                Ok(())
            }
        });
        evil.start()?;
        assert!(ready.wait_timeout(Duration::from_secs(30)));
        let e = Manager::connect(&name).unwrap_err();
        assert!(
            matches!(e, Error::Core(CoreError::ForeignOwner { uid: NOBODY, .. })),
            "{e:?}"
        );
        done.set();
        evil.join()?;
        Ok(())
    })?;
    Ok(())
}
