//! Cross-process tests of the manager: every factory and proxy method used
//! from forked children and from a separately started program, the atomic
//! read-modify-write, concurrent clients, and the failure cases (dead
//! client, dead server, leftovers).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_core::pool::Pool;
use ipc_core::process::Process;
use ipc_core::queue::Queue;
use ipc_core::sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
use ipc_core::value::{Array, RawArray, Value};
use ipc_core::Error as CoreError;
use ipc_manager::{DictProxy, ListProxy, Manager, Namespace, Service};
use ipc_manager::{Error, Result};

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Regions of manager `name` still in /dev/shm.
fn leftovers(name: &str) -> Vec<String> {
    let prefix = format!("ipc.{name}");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|f| f == &prefix || f.starts_with(&format!("{prefix}.")))
        .collect()
}

fn run<R: ipc_core::process::TargetOutput>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R::Value> {
    let mut p = Process::new(f);
    p.start()?;
    Ok(p.join()?)
}

#[test]
fn every_factory_and_proxy_method_from_a_forked_child() -> Result<()> {
    let mgr = Manager::start()?;
    let d = mgr.named("d").dict::<String, u64>()?;
    let l = mgr.named("l").list::<String>()?;
    let ns = mgr.named("ns").namespace()?;
    let q = mgr.named("q").queue::<u64>(4)?;
    let jq = mgr.named("jq").joinable_queue::<u64>(0)?;
    let v = mgr.named("v").value::<u64>(7)?;
    let a = mgr.named("a").array::<u32>(&[1, 2, 3])?;
    let shm = mgr.named("shm").shared_memory(16)?;
    let lock = mgr.named("lock").lock()?;
    let rlock = mgr.named("rlock").rlock()?;
    let sem = mgr.named("sem").semaphore(2)?;
    let bsem = mgr.named("bsem").bounded_semaphore(1)?;
    let ev = mgr.named("ev").event()?;
    let cond = mgr.named("cond").condition()?;
    let bar = mgr.named("bar").barrier(2)?;
    d.insert(&"a".into(), &1)?;
    l.push(&"first".into())?;
    ns.set("x", &1.5f64)?;

    // The child uses inherited handles *and* looks everything up by name.
    let name = mgr.name().to_owned();
    let (d_, l_, ns_, jq_) = (d.clone(), l.clone(), ns.clone(), jq.clone());
    let child = Process::new(move || -> Result<()> {
        let (d, l, ns, jq) = (d_, l_, ns_, jq_);
        let m = Manager::connect(&name)?;
        let d2 = m.get::<DictProxy<String, u64>>("d")?;
        assert_eq!(d2.get(&"a".into())?, Some(1));
        assert_eq!(d.insert(&"b".into(), &2)?, None);
        assert_eq!(d.insert(&"b".into(), &3)?, Some(2));
        d.update([(&"c".to_string(), &4u64), (&"d".to_string(), &5u64)])?;
        assert_eq!(d.remove(&"d".into())?, Some(5));
        assert_eq!(d.remove(&"zz".into())?, None);
        assert!(d.contains_key(&"c".into())?);
        assert_eq!(d.setdefault(&"e".into(), &9)?, 9);
        assert_eq!(d.setdefault(&"e".into(), &10)?, 9);
        let l2 = m.get::<ListProxy<String>>("l")?;
        l2.push(&"second".into())?;
        l.extend(&["x".to_string(), "y".to_string(), "x".to_string()])?;
        l.insert(0, &"zeroth".into())?;
        l.set(-1, &"last".into())?;
        assert_eq!(l.get(1)?, "first");
        assert_eq!(l.index(&"x".into())?, Some(3));
        assert_eq!(l.count(&"x".into())?, 1);
        assert!(l.remove(&"y".into())?);
        assert!(!l.remove(&"nope".into())?);
        assert_eq!(l.pop(Some(0))?, "zeroth");
        let ns2 = m.get::<Namespace>("ns")?;
        assert_eq!(ns2.get::<f64>("x")?, Some(1.5));
        ns.set("y", &"why".to_string())?;
        m.get::<Queue<u64>>("q")?.put(&42)?;
        jq.put(&1)?;
        m.get::<Value<u64>>("v")?.update(|x| *x += 1)?;
        m.get::<Array<u32>>("a")?.set(0, 10)?;
        m.get::<RawArray<u8>>("shm")?.set(3, 0xab)?;
        let lk = m.get::<Lock>("lock")?;
        drop(
            lk.acquire()
                .map_err(|_| Error::Core(CoreError::OwnerDied))?,
        );
        let r = m.get::<RLock>("rlock")?;
        let g1 = r.acquire().map_err(|_| Error::Core(CoreError::OwnerDied))?;
        let g2 = r.acquire().map_err(|_| Error::Core(CoreError::OwnerDied))?;
        drop((g2, g1));
        m.get::<Semaphore>("sem")?.acquire()?;
        m.get::<BoundedSemaphore>("bsem")?.acquire()?;
        m.get::<Event>("ev")?.set();
        let _ = m.get::<Condition>("cond")?;
        m.get::<Barrier>("bar")?.wait()?;
        Ok(())
    });
    let mut child = child;
    child.start()?;
    bar.wait()?; // meets the child at the barrier
    child.join()?;

    assert_eq!(
        d.items()?,
        vec![
            ("a".to_string(), 1),
            ("b".to_string(), 3),
            ("c".to_string(), 4),
            ("e".to_string(), 9)
        ]
    );
    assert_eq!(d.keys()?.len(), 4);
    assert_eq!(d.values()?, vec![1, 3, 4, 9]);
    assert_eq!(d.len()?, 4);
    assert_eq!(d.copy()?.get("c"), Some(&4));
    assert_eq!(l.to_vec()?, ["first", "second", "x", "last"]);
    assert_eq!(l.len()?, 4);
    assert_eq!(ns.get::<String>("y")?.as_deref(), Some("why"));
    assert_eq!(ns.names()?, ["x", "y"]);
    assert!(ns.remove("y")?);
    assert_eq!(q.get_timeout(Duration::from_secs(5))?, 42);
    assert_eq!(jq.get()?, 1);
    jq.task_done()?;
    assert_eq!(v.get()?, 8);
    assert_eq!(a.to_vec()?, [10, 2, 3]);
    assert_eq!(shm.get(3)?, 0xab);
    assert_eq!(sem.value(), 1);
    assert!(bsem.try_acquire().is_err());
    assert!(ev.is_set());
    let _ = (&lock, &rlock, &cond);
    d.clear()?;
    l.clear()?;
    assert!(d.is_empty()? && l.is_empty()?);
    assert_eq!(
        mgr.names()?,
        [
            "a", "bar", "bsem", "cond", "d", "ev", "jq", "l", "lock", "ns", "q", "rlock", "sem",
            "shm", "v"
        ]
    );
    let name = mgr.name().to_owned();
    drop(child); // it still holds clones of the proxies
    drop((
        d, l, ns, q, jq, v, a, shm, lock, rlock, sem, bsem, ev, cond, bar,
    ));
    drop(mgr);
    assert_eq!(leftovers(&name), Vec::<String>::new());
    Ok(())
}

#[test]
fn lookups_check_names_and_types() -> Result<()> {
    let mgr = Manager::start()?;
    mgr.named("counts").dict::<String, u64>()?;
    mgr.named("flag").event()?;
    let e = mgr.get::<ListProxy<u64>>("counts").unwrap_err();
    assert!(
        matches!(e, Error::Core(CoreError::Incompatible { .. })),
        "{e:?}"
    );
    let e = mgr.get::<DictProxy<String, i64>>("counts").unwrap_err();
    assert!(
        matches!(e, Error::Core(CoreError::Incompatible { .. })),
        "{e:?}"
    );
    let e = mgr.get::<Lock>("flag").unwrap_err();
    assert!(
        matches!(e, Error::Core(CoreError::Incompatible { .. })),
        "{e:?}"
    );
    assert!(mgr.get::<Event>("flag").is_ok());
    let e = mgr.get::<Event>("nothing").unwrap_err();
    assert!(
        matches!(e, Error::Core(CoreError::NotFound { .. })),
        "{e:?}"
    );
    let e = mgr.named("counts").list::<u8>().unwrap_err();
    assert!(
        matches!(e, Error::Core(CoreError::AlreadyExists { .. })),
        "{e:?}"
    );
    let e = mgr.named("flag").lock().unwrap_err();
    assert!(
        matches!(e, Error::Core(CoreError::AlreadyExists { .. })),
        "{e:?}"
    );
    let e = mgr.named("bad/name").lock().unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e:?}");
    let ns = mgr.namespace()?;
    ns.set("n", &1u32)?;
    assert!(matches!(
        ns.get::<u64>("n"),
        Err(Error::Core(CoreError::Incompatible { .. }))
    ));
    let l = mgr.list::<u8>()?;
    assert!(matches!(
        l.get(0),
        Err(Error::Core(CoreError::IndexOutOfRange { .. }))
    ));
    assert!(matches!(
        l.pop(None),
        Err(Error::Core(CoreError::IndexOutOfRange { .. }))
    ));
    let e = Manager::connect("no-such-manager-here").unwrap_err();
    assert!(
        matches!(e, Error::Core(CoreError::NotFound { .. })),
        "{e:?}"
    );
    Ok(())
}

#[test]
fn messages_larger_than_the_mailbox_travel_in_chunks() -> Result<()> {
    let mgr = Manager::builder().buffer_size(4096).start()?;
    let d = mgr.dict::<u32, String>()?;
    let big = "x".repeat(100_000);
    d.insert(&1, &big)?;
    assert_eq!(d.get(&1)?.as_deref(), Some(big.as_str()));
    d.remove(&1)?;
    let items: Vec<(u32, String)> = (0..2000).map(|i| (i, format!("value {i}"))).collect();
    d.update(items.iter().map(|(k, v)| (k, v)))?;
    assert_eq!(d.len()?, 2000);
    assert_eq!(d.items()?, items);
    // And from a child, which has its own mailbox.
    let d2 = d.clone();
    assert_eq!(run(move || d2.values().map(|v| v.len()))?, 2000);
    Ok(())
}

#[test]
fn proxies_travel_as_pool_task_arguments() -> Result<()> {
    let mgr = Manager::start()?;
    let d = mgr.dict::<u64, u64>()?;
    let q = mgr.queue::<u64>(0)?;
    let pool = Pool::new(2)?;
    fn square(args: (DictProxy<u64, u64>, Queue<u64>, u64)) -> Result<()> {
        let (d, q, i) = args;
        d.insert(&i, &(i * i))?;
        Ok(q.put(&i)?)
    }
    let tasks: Vec<_> = (0..20).map(|i| (d.clone(), q.clone(), i)).collect();
    pool.map(square, tasks, Some(1))?;
    pool.close();
    pool.join()?;
    let mut got: Vec<u64> = (0..20).map(|_| q.get()).collect::<ipc_core::Result<_>>()?;
    got.sort();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    for i in 0..20 {
        assert_eq!(d.get(&i)?, Some(i * i));
    }
    Ok(())
}

#[test]
fn eight_processes_increment_a_counter_atomically() -> Result<()> {
    let mgr = Manager::start()?;
    let d = mgr.dict::<String, u64>()?;
    let key = "counter".to_string();
    let mut ps: Vec<Process<Result<()>>> = (0..8)
        .map(|_| {
            let (d, key) = (d.clone(), key.clone());
            Process::new(move || -> Result<()> {
                for _ in 0..10_000 {
                    d.update_with(&key, |v| v.unwrap_or(0) + 1)?;
                }
                Ok(())
            })
        })
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    for p in &mut ps {
        p.join()?;
    }
    assert_eq!(d.get(&key)?, Some(80_000));
    Ok(())
}

#[test]
fn concurrent_clients_leave_a_consistent_state() -> Result<()> {
    const PROCS: u64 = 8;
    const OPS: u64 = 100_000;
    let mgr = Manager::start()?;
    let d = mgr.dict::<(u64, u64), u64>()?;
    let total = mgr.named("total").value::<u64>(0)?;
    // Each process owns 64 keys and mirrors its writes in a local model;
    // the final dict must equal the union of the models, and a shared
    // counter (a Value, no round trip) counts every insert.
    type Model = Vec<((u64, u64), u64)>;
    let mut ps: Vec<Process<Result<Model>>> = (0..PROCS)
        .map(|p| {
            let (d, total) = (d.clone(), total.clone());
            Process::new(move || -> Result<Model> {
                let mut model = std::collections::BTreeMap::new();
                let mut x = p * 7919 + 1;
                for i in 0..OPS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = (p, x % 64);
                    match i % 4 {
                        0 | 1 => {
                            let old = d.insert(&k, &i)?;
                            assert_eq!(old, model.insert(k, i));
                            total.update(|t| *t += 1)?;
                        }
                        2 => assert_eq!(d.get(&k)?, model.get(&k).copied()),
                        _ => assert_eq!(d.remove(&k)?, model.remove(&k)),
                    }
                }
                Ok(model.into_iter().collect())
            })
        })
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    let mut expected = Vec::new();
    for p in &mut ps {
        expected.extend(p.join()?);
    }
    let mut got = d.items()?;
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(total.get()?, PROCS * OPS / 2);
    Ok(())
}

#[test]
fn custom_types_are_hosted_and_called_by_name() -> Result<()> {
    #[derive(Default)]
    struct Tally(Vec<String>);
    impl Service for Tally {
        type Request = String;
        type Response = u64;
        fn call(&mut self, who: String) -> u64 {
            self.0.push(who);
            self.0.len() as u64
        }
    }
    struct Other;
    impl Service for Other {
        type Request = u8;
        type Response = u8;
        fn call(&mut self, x: u8) -> u8 {
            x
        }
    }
    let mgr = Manager::builder()
        .register("Tally", Tally::default)
        .start()?;
    let t = mgr.named("tally").custom::<Tally>("Tally")?;
    t.call(&"parent".into())?;
    let name = mgr.name().to_owned();
    let n = run(move || -> Result<u64> {
        let m = Manager::connect(&name)?;
        m.get::<ipc_manager::ServiceProxy<Tally>>("tally")?
            .call(&"child".into())
    })?;
    assert_eq!(n, 2);
    assert!(matches!(
        mgr.custom::<Tally>("Nope"),
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        mgr.custom::<Other>("Tally"),
        Err(Error::Core(CoreError::Incompatible { .. }))
    ));
    Ok(())
}

/// Run as a separate program by `a_separate_program_connects_by_name`.
#[test]
fn helper_separate_program() -> Result<()> {
    let Ok(name) = std::env::var("IPC_MANAGER_TEST_NAME") else {
        return Ok(()); // only does something when run as the helper
    };
    let m = Manager::connect(&name)?;
    let d = m.get::<DictProxy<String, u64>>("shared")?;
    for (i, k) in ["alpha", "beta", "gamma"].iter().enumerate() {
        d.insert(&k.to_string(), &(i as u64))?;
    }
    m.get::<Queue<String>>("inbox")?
        .put(&"hello from another program".into())?;
    println!("helper saw {} entries", d.len()?);
    Ok(())
}

#[test]
fn a_separate_program_connects_by_name() -> Result<()> {
    let name = unique("sep");
    let mgr = Manager::start_named(&name)?;
    let d = mgr.named("shared").dict::<String, u64>()?;
    let inbox = mgr.named("inbox").queue::<String>(8)?;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_separate_program", "--nocapture"])
        .env("IPC_MANAGER_TEST_NAME", &name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("helper saw 3 entries"));
    assert_eq!(d.get(&"gamma".into())?, Some(2));
    assert_eq!(inbox.try_get()?, "hello from another program");
    Ok(())
}

#[test]
fn a_dead_clients_slot_is_reclaimed_and_its_lock_recovered() -> Result<()> {
    let mgr = Manager::builder().slots(2).start()?;
    let lock = mgr.lock()?;
    mgr.names()?; // this process holds slot 1
    let l2 = lock.clone();
    let m2 = mgr.clone();
    let mut dying = Process::new(move || {
        m2.names().unwrap(); // takes slot 2
        std::mem::forget(l2.acquire().ok());
        // SAFETY: raise SIGKILL on ourselves: die holding the lock and slot.
        unsafe { libc::raise(libc::SIGKILL) };
    });
    dying.start()?;
    assert!(matches!(dying.join(), Err(CoreError::Killed { .. })));
    // The slot comes back within a second, for a new client.
    let m3 = mgr.clone();
    let took = run(move || -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            match m3.names() {
                Ok(_) => return Ok(t0.elapsed()),
                Err(Error::TooManyClients { .. }) if t0.elapsed() < Duration::from_secs(3) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(e),
            }
        }
    })?;
    assert!(
        took < Duration::from_secs(1),
        "slot reclaimed after {took:?}"
    );
    match lock.acquire_timeout(Duration::from_secs(2)) {
        Err(ipc_core::sync::LockError::OwnerDied(_)) => {}
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    }
    Ok(())
}

#[test]
fn every_call_reports_server_gone_within_a_second_of_its_death() -> Result<()> {
    let mgr = Manager::start()?;
    let name = mgr.name().to_owned();
    let d = mgr.dict::<u32, u32>()?;
    let l = mgr.list::<u32>()?;
    d.insert(&1, &1)?;
    let pid = mgr.server_pid().expect("we started it");
    // A child is mid-way through a stream of calls when the server dies.
    let d2 = d.clone();
    let mut child = Process::new(move || -> Result<Duration> {
        loop {
            if let Err(e) = d2.get(&1) {
                let t0 = Instant::now();
                assert!(matches!(e, Error::ServerGone), "{e:?}");
                assert!(matches!(d2.len(), Err(Error::ServerGone)));
                return Ok(t0.elapsed());
            }
        }
    });
    child.start()?;
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) on the server's pid, a child of ours not yet reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let t0 = Instant::now();
    let e = d.get(&1).unwrap_err();
    assert!(matches!(e, Error::ServerGone), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(matches!(l.push(&1), Err(Error::ServerGone)));
    assert!(matches!(mgr.lock(), Err(Error::ServerGone)));
    child.join()?;
    assert!(!mgr.is_running());
    drop((d, l));
    drop(mgr);
    assert_eq!(leftovers(&name), Vec::<String>::new());
    Ok(())
}

#[test]
fn the_server_stops_when_its_owner_dies() -> Result<()> {
    // A child starts a manager and is killed; the server notices and
    // removes its regions.
    let name = unique("owner");
    let n2 = name.clone();
    let mut owner = Process::new(move || {
        let m = Manager::start_named(&n2).unwrap();
        let _keep = m.named("x").value::<u64>(1).unwrap();
        std::mem::forget(m);
        // SAFETY: die without cleaning up.
        unsafe { libc::raise(libc::SIGKILL) };
    });
    owner.start()?;
    let _ = owner.join();
    let t0 = Instant::now();
    while !leftovers(&name).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "left behind: {:?}",
            leftovers(&name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[test]
fn shutdown_removes_every_region_and_ends_all_proxies() -> Result<()> {
    let mgr = Manager::start()?;
    let name = mgr.name().to_owned();
    let v = mgr.value::<u32>(1)?;
    let q = mgr.queue::<u32>(2)?;
    let d = mgr.dict::<u8, u8>()?;
    assert!(!leftovers(&name).is_empty());
    mgr.shutdown()?;
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // Objects already opened stay usable in this process (their memory is
    // mapped); container proxies report the server gone.
    assert_eq!(v.get()?, 1);
    q.put(&3)?;
    assert!(matches!(d.len(), Err(Error::ServerGone)));
    assert!(matches!(mgr.shutdown(), Err(Error::ServerGone)));
    assert!(matches!(
        Manager::connect(&name),
        Err(Error::Core(CoreError::NotFound { .. }))
    ));
    Ok(())
}

#[test]
fn a_child_left_with_the_only_proxies_gets_server_gone_not_a_hang() -> Result<()> {
    // The server lives as long as the starting process holds a handle; a
    // child's copies do not keep it running (as in Python). A child that
    // outlives them gets ServerGone.
    let d = Manager::start()?.dict::<u32, u32>()?;
    let name = d_name(&d);
    let ev = ipc_core::sync::Event::new()?;
    let mut child = Process::new({
        let (d, ev) = (d.clone(), ev.clone());
        move || -> Result<bool> {
            d.insert(&1, &1)?;
            ev.set();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                match d.get(&1) {
                    Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                    Err(Error::ServerGone) => return Ok(true),
                    Err(e) => return Err(e),
                }
            }
            Ok(false)
        }
    });
    child.start()?;
    assert!(ev.wait_timeout(Duration::from_secs(5)));
    drop(d); // the parent's last handle: the server stops
    assert!(child.join()?, "the child never saw ServerGone");
    assert_eq!(leftovers(&name), Vec::<String>::new());
    Ok(())
}

/// The manager name behind a proxy, from its travelling token.
fn d_name(d: &DictProxy<u32, u32>) -> String {
    use ipc_core::travel::Travel;
    d.token().locator["manager:".len()..].to_owned()
}

#[test]
fn a_proxy_decoded_after_its_server_died_keeps_server_gone_through_the_core_error() -> Result<()> {
    use ipc_core::travel::Travel;
    let mgr = Manager::start()?;
    let name = mgr.name().to_owned();
    let d = mgr.dict::<u32, u32>()?;
    let token = d.token();
    let pid = mgr.server_pid().expect("we started it");
    // SAFETY: kill(2) on the server's pid, a child of ours not yet reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    // `Travel::from_token` can only return an `ipc_core::Error`: the
    // manager's own failure travels inside it, not mapped to a lookalike.
    let e = DictProxy::<u32, u32>::from_token(token).unwrap_err();
    match &e {
        CoreError::External(inner) => assert!(
            matches!(inner.downcast_ref::<Error>(), Some(Error::ServerGone)),
            "{inner:?}"
        ),
        e => panic!("expected the manager's error inside External, got {e:?}"),
    }
    assert!(matches!(Error::from(e), Error::ServerGone));
    drop((d, mgr));
    assert_eq!(leftovers(&name), Vec::<String>::new());
    Ok(())
}
