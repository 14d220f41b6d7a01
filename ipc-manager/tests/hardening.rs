//! Regression tests of the manager's hardening (issue 14): start-up and
//! connect never hang or misreport, and containers referenced from other
//! containers stay alive. Every test runs its subject in a child process
//! under a watchdog, so a regression fails instead of hanging the suite.

use std::time::Duration;

use ipc_core::Error as CoreError;
use ipc_manager::{DictProxy, ListProxy, Manager};
use ipc_manager::{Error, Result};

#[path = "support/child.rs"]
mod child;
use child::in_child;

/// Lowers this process's descriptor limit to `n` and fills it up, leaving
/// `free` descriptors unused.
fn exhaust_fds(n: u64, free: usize) -> Vec<std::fs::File> {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit with a valid rlimit struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut files = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        files.push(f);
    }
    files.truncate(files.len().saturating_sub(free));
    files
}

#[test]
fn manager_start_out_of_fds_reports_emfile_not_server_gone() {
    // With 0, 1, 2, ... descriptors left, start either works or reports
    // the real cause; never `ServerGone` (nothing was ever running).
    let seen = in_child(Duration::from_secs(120), || -> Result<Vec<String>> {
        let mut seen = Vec::new();
        for free in 0..24 {
            let held = exhaust_fds(256, free);
            let r = Manager::start();
            match &r {
                Ok(_) => {}
                Err(Error::Core(CoreError::Io(e))) if *e as i32 == libc::EMFILE => {}
                Err(e) => panic!("with {free} descriptors free: {e:?}"),
            }
            seen.push(format!("{free}: {:?}", r.as_ref().map(|_| ())));
            drop(r);
            drop(held);
        }
        Ok(seen)
    });
    assert!(seen[0].ends_with("Err(Core(Io(EMFILE)))"), "{seen:?}");
    assert!(seen.last().unwrap().ends_with("Ok(())"), "{seen:?}");
}

/// Past the server's grace period for unheld containers (1 s) and its
/// housekeeping period (200 ms), with room for a loaded machine.
const PAST_GRACE: Duration = Duration::from_millis(2500);

#[test]
fn a_proxy_stored_in_a_container_keeps_its_container_alive() -> Result<()> {
    let mgr = Manager::start()?;
    // A dict of dicts and a list holding a list proxy; the only proxies
    // of the inner containers are dropped at once.
    let outer = mgr.dict::<String, DictProxy<u32, u32>>()?;
    let lists = mgr.list::<ListProxy<String>>()?;
    {
        let inner = mgr.dict::<u32, u32>()?;
        inner.insert(&1, &10)?;
        outer.insert(&"inner".into(), &inner)?;
        let l = mgr.list::<String>()?;
        l.push(&"kept".into())?;
        lists.push(&l)?;
    }
    std::thread::sleep(PAST_GRACE);
    // Another process reaches them through the outer containers.
    let (o, ls) = (outer.clone(), lists.clone());
    let (v, s) = in_child(Duration::from_secs(60), move || -> Result<(u32, String)> {
        let inner = o.get(&"inner".into())?.expect("stored");
        let l = ls.get(0)?;
        // Its own proxies count for it while it holds them.
        inner.insert(&2, &20)?;
        Ok((inner.get(&1)?.unwrap_or(0), l.get(0)?))
    });
    assert_eq!((v, s.as_str()), (10, "kept"));
    std::thread::sleep(PAST_GRACE);
    // The child's proxies are gone, the stored ones still hold them.
    let inner = outer.get(&"inner".into())?.expect("stored");
    assert_eq!(inner.get(&2)?, Some(20));
    assert_eq!(lists.get(0)?.len()?, 1);
    Ok(())
}

#[test]
fn a_manager_server_out_of_fds_does_not_take_its_clients_for_dead() {
    // The server keeps a descriptor per adopted object. Out of them, it
    // cannot read /proc to check its clients and owner: that must not make
    // it drop their slots and holds, or stop.
    let got = in_child(Duration::from_secs(60), || -> Result<Option<u32>> {
        let lim = libc::rlimit {
            rlim_cur: 128,
            rlim_max: 128,
        };
        // SAFETY: setrlimit with a valid rlimit struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        let mgr = Manager::start()?;
        let d = mgr.dict::<u32, u32>()?;
        d.insert(&1, &10)?;
        // Adopted locks stay in the server; ours are dropped at once.
        let mut adopted = 0;
        loop {
            match mgr.lock() {
                Ok(l) => drop(l),
                Err(Error::Refused(_)) => break, // the server is out
                Err(e) => return Err(e),
            }
            adopted += 1;
            assert!(adopted < 1000, "the server never ran out");
        }
        std::thread::sleep(PAST_GRACE);
        d.get(&1)
    });
    assert_eq!(got, Some(10));
}
