//! A hostile client: garbage in its own mailbox earns it an error and
//! leaves the server and the other clients unaffected.

use crate::{Error, Result};
use ipc_core::process::Process;
use ipc_core::Error as CoreError;

use crate::control::{CONT, MORE};
use crate::wire::{Fault, Response};
use crate::Manager;

fn is_corrupt(r: &Result<Response>) -> bool {
    matches!(r, Ok(Response::Fault(Fault::Corrupt(_))))
}

#[test]
fn garbage_requests_get_errors_and_harm_nobody_else() -> Result<()> {
    let mgr = Manager::start()?;
    let d = mgr.dict::<u32, u32>()?;
    d.insert(&1, &10)?;
    let d2 = d.clone();
    let mut hostile = Process::new(move || -> Result<()> {
        let conn = d2.h.session.conn()?;
        // Random bytes, an empty request, a truncated valid one.
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in [1usize, 7, 64, 1000, 70_000] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert!(is_corrupt(&conn.call_raw(&bytes, 0)), "len {len}");
        }
        assert!(is_corrupt(&conn.call_raw(&[], 0)));
        // A continuation with nothing pending, and a length word larger
        // than the buffer.
        assert!(is_corrupt(&conn.call_raw(&[], CONT)));
        assert!(is_corrupt(&conn.call_raw(&[], MORE | 0x3fff_ffff)));
        // The same client still gets served afterwards.
        assert_eq!(d2.get(&1)?, Some(10));
        d2.insert(&2, &20)?;
        Ok(())
    });
    hostile.start()?;
    // Meanwhile this client keeps working.
    for i in 0..1000 {
        assert_eq!(d.get(&1)?, Some(10), "round {i}");
    }
    hostile.join()?;
    assert_eq!(d.get(&2)?, Some(20));
    assert!(mgr.is_running());
    Ok(())
}

#[test]
fn values_that_are_not_what_the_proxy_expects_are_refused() -> Result<()> {
    // Another program stored a String where this proxy expects a u64: the
    // reader validates and reports, never misreads.
    let mgr = Manager::start()?;
    let d = mgr.named("mixed").dict::<u32, String>()?;
    d.insert(&1, &"not a number".into())?;
    let wrong = crate::DictProxy::<u32, [u8; 64]>::from_handle(crate::proxy::Handle::named(
        mgr.session.clone(),
        d.h.id,
    ));
    assert!(matches!(
        wrong.get(&1),
        Err(Error::Core(CoreError::Corrupt(_)))
    ));
    Ok(())
}

#[test]
fn a_panicking_custom_method_fails_the_call_not_the_server() -> Result<()> {
    struct Divider;
    impl crate::Service for Divider {
        type Request = u32;
        type Response = u32;
        fn call(&mut self, x: u32) -> u32 {
            if x == 0 {
                panic!("division by zero");
            }
            100 / x
        }
    }
    let mgr = Manager::builder().register("Divider", || Divider).start()?;
    let d = mgr.custom::<Divider>("Divider")?;
    match d.call(&0) {
        Err(Error::Refused(m)) => assert!(m.contains("division by zero"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(d.call(&4)?, 25);
    assert!(mgr.is_running());
    Ok(())
}

#[test]
fn a_stolen_slot_gives_an_error_then_a_fresh_connection() -> Result<()> {
    let mgr = Manager::start()?;
    let l = mgr.list::<u32>()?;
    l.push(&1)?;
    // A hostile process marks our slot closed; the server frees it.
    let conn = mgr.session.conn()?;
    conn.steal_for_test();
    let t0 = std::time::Instant::now();
    let r = l.len();
    assert!(
        matches!(r, Err(Error::Core(CoreError::Corrupt(_))) | Ok(1)),
        "{r:?} after {:?}",
        t0.elapsed()
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(2));
    // The next call connects again.
    assert_eq!(l.len()?, 1);
    Ok(())
}

#[test]
fn manager_names_with_dots_are_refused() {
    let e = Manager::start_named("a.b").unwrap_err();
    assert!(
        matches!(e, Error::Core(CoreError::InvalidName { .. })),
        "{e:?}"
    );
}

/// Waits (at most 3 s) until container `id` is freed.
fn wait_freed(mgr: &Manager, id: u64) -> Result<()> {
    let t0 = std::time::Instant::now();
    while exists(mgr, id)? {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(3),
            "not freed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Whether container `id` still exists on the server.
fn exists(mgr: &Manager, id: u64) -> Result<bool> {
    let probe =
        crate::ListProxy::<u8>::from_handle(crate::proxy::Handle::named(mgr.session.clone(), id));
    match probe.len() {
        Err(Error::Core(CoreError::NotFound { .. })) => Ok(false),
        // It is a dict, not a list: but it exists.
        Err(Error::Core(CoreError::Incompatible { .. })) | Ok(_) => Ok(true),
        Err(e) => Err(e),
    }
}

#[test]
fn an_unnamed_container_is_freed_with_its_last_proxy() -> Result<()> {
    let mgr = Manager::start()?;
    let d = mgr.dict::<u8, u8>()?;
    let id = d.h.id;
    let d2 = d.clone();
    drop(d);
    assert!(exists(&mgr, id)?, "a clone still holds it");
    drop(d2);
    // Freed after a grace period (a proxy handed over may still claim it).
    wait_freed(&mgr, id)?;
    // Named containers stay.
    let n = mgr.named("kept").dict::<u8, u8>()?;
    let nid = n.h.id;
    drop(n);
    assert!(exists(&mgr, nid)?);
    Ok(())
}

#[test]
fn a_childs_proxies_keep_a_container_until_the_child_dies() -> Result<()> {
    let mgr = Manager::start()?;
    let l = mgr.list::<u32>()?;
    let id = l.h.id;
    let ready = ipc_core::sync::Event::new()?;
    let mut child = Process::new({
        let (l, ready) = (l.clone(), ready.clone());
        move || {
            l.push(&1).unwrap(); // first use in the child: it holds the list
            ready.set();
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
    });
    child.start()?;
    assert!(ready.wait_timeout(std::time::Duration::from_secs(5)));
    drop(l);
    assert!(exists(&mgr, id)?, "the child holds it");
    child.kill()?;
    let _ = child.join();
    wait_freed(&mgr, id)?;
    Ok(())
}

#[test]
fn proxies_passed_to_pool_tasks_are_counted_and_released() -> Result<()> {
    fn add(d: crate::DictProxy<u32, u32>) -> Result<()> {
        d.update_with(&0, |v| v.unwrap_or(0) + 1).map(|_| ())
    }
    let mgr = Manager::start()?;
    let d = mgr.dict::<u32, u32>()?;
    let id = d.h.id;
    let pool = ipc_core::pool::Pool::new(2)?;
    let tasks: Vec<_> = (0..10).map(|_| d.clone()).collect();
    pool.map(add, tasks, Some(1))?;
    pool.close();
    pool.join()?;
    assert_eq!(d.get(&0)?, Some(10));
    drop(d);
    // The workers' decoded copies were dropped (or their processes ended).
    wait_freed(&mgr, id)?;
    Ok(())
}

#[test]
fn a_proxy_moved_into_a_child_survives_its_senders_drop() -> Result<()> {
    fn fill(d: crate::DictProxy<u32, u32>) -> Result<usize> {
        std::thread::sleep(std::time::Duration::from_millis(100));
        d.insert(&1, &1)?;
        d.len()
    }
    let mgr = Manager::start()?;
    let d = mgr.dict::<u32, u32>()?;
    // Moved: the parent's last proxy is dropped right after the fork,
    // before the child first uses its copy.
    let mut p = Process::builder().target_fn(fill, d);
    p.start()?;
    assert_eq!(p.join()?, 1);
    Ok(())
}

#[test]
fn a_stored_proxy_holds_its_container_until_overwritten_removed_or_its_holder_is_freed(
) -> Result<()> {
    let past_grace = std::time::Duration::from_millis(1500);
    let mgr = Manager::start()?;
    let outer = mgr.dict::<u8, crate::DictProxy<u8, u8>>()?;
    let ids: Vec<u64> = (0..3)
        .map(|k| {
            let inner = mgr.dict::<u8, u8>()?;
            outer.insert(&k, &inner)?;
            Ok(inner.h.id)
        })
        .collect::<Result<_>>()?;
    let held = mgr.list::<crate::ListProxy<u8>>()?;
    let (list_id, inner_list) = {
        let l = mgr.list::<u8>()?;
        held.push(&l)?;
        (held.h.id, l.h.id)
    };
    std::thread::sleep(past_grace);
    for id in ids.iter().chain([&inner_list]) {
        assert!(exists(&mgr, *id)?, "#{id} is held by a stored value");
    }
    // Removed, overwritten (by a proxy of another container, which is
    // then held instead), cleared.
    outer.remove(&0)?;
    wait_freed(&mgr, ids[0])?;
    let other = outer.get(&2)?.expect("stored");
    outer.insert(&1, &other)?;
    drop(other);
    wait_freed(&mgr, ids[1])?;
    std::thread::sleep(past_grace);
    assert!(exists(&mgr, ids[2])?, "held twice now");
    // The holding container freed: what it held follows.
    drop(held);
    wait_freed(&mgr, list_id)?;
    wait_freed(&mgr, inner_list)?;
    outer.clear()?;
    wait_freed(&mgr, ids[2])?;
    Ok(())
}
