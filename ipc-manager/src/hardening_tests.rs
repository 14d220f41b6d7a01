//! Regression tests that need the mailbox layout: a forged control region
//! (issue 14, item 5) and a process scribbling on the mailboxes (item 7).
//! Each subject runs in a child process under a watchdog, so a regression
//! fails instead of hanging the suite.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::{Error, Result};
use ipc_core::process::Process;
use ipc_core::sys::proc::{self, TaskId};

use crate::control::{Control, RUNNING};
use crate::Manager;

#[path = "../tests/support/child.rs"]
mod child;
use child::in_child;

fn unique(tag: &str) -> String {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "h-{tag}-{}-{}",
        proc::pid(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A control region that says RUNNING and names `server` as its server,
/// with no server behind it.
fn forge(name: &str, server: TaskId) -> Result<Control> {
    let ctl = Control::create(name, 4, 4096)?;
    let h = ctl.header();
    h.server.store(server.pack(), Ordering::SeqCst);
    h.state.store(RUNNING, Ordering::SeqCst);
    Ok(ctl)
}

#[test]
fn connect_to_a_forged_control_region_fails_instead_of_hanging() -> Result<()> {
    // A live process that does not map the region and can be inspected
    // (a child started before the forgery): refused at once, even by the
    // plain `connect`.
    let mut bystander = Process::new(|| std::thread::sleep(Duration::from_secs(60)));
    bystander.start()?;
    let bystander_id = TaskId {
        id: bystander.pid().expect("started"),
        start: proc::start_time(bystander.pid().expect("started")).expect("alive"),
    };
    // pid 1: alive, not a manager, perhaps not inspectable (then only the
    // deadline can tell). This very process: alive and mapping the region
    // (it made it), but never answering.
    let init = TaskId {
        id: 1,
        start: proc::start_time(1).expect("pid 1 exists"),
    };
    let short = Some(Duration::from_secs(2));
    let cases = [
        (bystander_id, None, &["Err(Core(Incompatible"][..]),
        (
            init,
            short,
            &["Err(Core(Incompatible", "Err(Core(Timeout))"][..],
        ),
        (
            TaskId::current_process(),
            short,
            &["Err(Core(Timeout))"][..],
        ),
    ];
    for (server, timeout, expect) in cases {
        let name = unique("forged");
        let _forged = forge(&name, server)?;
        let (r, took) = in_child(Duration::from_secs(60), move || {
            let t0 = Instant::now();
            let r = match timeout {
                None => Manager::connect(&name).map(|_| ()),
                Some(t) => Manager::connect_timeout(&name, t).map(|_| ()),
            };
            (format!("{r:?}"), t0.elapsed().as_millis() as u64)
        });
        assert!(
            expect.iter().any(|e| r.starts_with(e)),
            "server {server:?}: {r} after {took} ms"
        );
    }
    bystander.kill()?;
    let _ = bystander.join();
    Ok(())
}

/// A xorshift generator (no dependency, reproducible per seed).
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// What the scribbled-mailbox client does: `gets` of known entries, each
/// answered with the right value or an error, never a wrong value.
#[derive(Debug, Default)]
struct Tally {
    right: u64,
    errors: u64,
    wrong: Vec<String>,
}

fn expected(k: u32) -> String {
    format!("value of {k}: {}", "#".repeat(k as usize % 40))
}

#[test]
fn a_scribbled_mailbox_never_yields_a_wrong_value() -> Result<()> {
    let mgr = Manager::builder().slots(4).buffer_size(4096).start()?;
    let d = mgr.dict::<u32, String>()?;
    for k in 0..64 {
        d.insert(&k, &expected(k))?;
    }
    // Another process of ours scribbles on every slot's request and
    // response buffers and on the slot headers' length, sequence and CRC
    // words, as fast as it can.
    let stop = ipc_core::sync::Event::new()?;
    let name = mgr.name().to_owned();
    let mut scribbler = Process::new({
        let stop = stop.clone();
        move || -> Result<u64> {
            let ctl = Control::open(&name, Duration::from_secs(2))?;
            let mut r = rng(0x5eed);
            let mut flips = 0u64;
            while !stop.is_set() {
                for _ in 0..100 {
                    // One flip every few microseconds: most exchanges stay
                    // intact, many are damaged once while in flight.
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(3) {
                        std::hint::spin_loop();
                    }
                    let v = r();
                    let i = (v % ctl.nslots() as u64) as usize;
                    let bit = 1u8 << ((v >> 8) % 8);
                    let off = ((v >> 16) % 96) as usize;
                    let p = match (v >> 32) % 16 {
                        0..=6 => ctl.req_buf(i).wrapping_add(off),
                        7..=14 => ctl.resp_buf(i).wrapping_add(off),
                        // The words after the owner: sequence numbers,
                        // lengths, the sleeping flag and the CRCs.
                        _ => std::ptr::from_ref(ctl.slot(i))
                            .cast::<u8>()
                            .cast_mut()
                            .wrapping_add(8 + off % 28),
                    };
                    // SAFETY: `p` lies inside the mapped control region (a
                    // buffer is 4096 bytes, the slot header 128); the access
                    // is atomic, as the other processes' are or tolerate.
                    unsafe { std::sync::atomic::AtomicU8::from_ptr(p) }
                        .fetch_xor(bit, Ordering::Relaxed);
                    flips += 1;
                }
                std::thread::yield_now();
            }
            Ok(flips)
        }
    });
    scribbler.start()?;
    // Stops the scribbler however this test ends (a failing watchdog too).
    struct Stop(ipc_core::sync::Event);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.set();
        }
    }
    let stop = Stop(stop);
    let tally = in_child(Duration::from_secs(120), move || -> Result<Vec<String>> {
        let mut t = Tally::default();
        let mut r = rng(0xc11e47);
        let t0 = Instant::now();
        // Enough round trips for thousands of hits, bounded in time.
        while t0.elapsed() < Duration::from_secs(6) && (t.errors < 2000 || t.right < 20_000) {
            let k = (r() % 64) as u32;
            match d.get(&k) {
                Ok(Some(v)) if v == expected(k) => t.right += 1,
                Ok(v) => t.wrong.push(format!("key {k}: {v:?}")),
                Err(Error::ServerGone) => return Err(Error::ServerGone),
                Err(_) => t.errors += 1,
            }
        }
        let mut out = vec![format!("{} right, {} errors", t.right, t.errors)];
        out.extend(t.wrong);
        Ok(out)
    });
    drop(stop);
    let flips = scribbler.join()?;
    eprintln!("scribbled mailbox: {} ({flips} flips)", tally[0]);
    assert!(
        tally.len() == 1,
        "wrong values returned ({}, {flips} flips): {:?}",
        tally[0],
        &tally[1..tally.len().min(20)]
    );
    // The scribbler did hit exchanges in flight (else this proved nothing).
    assert!(!tally[0].ends_with(" 0 errors"), "{}", tally[0]);
    assert!(mgr.is_running());
    Ok(())
}

/// A service that says it started, then sleeps `ms` milliseconds in the
/// server (so a client's exchange stays in flight meanwhile).
struct Sleepy(ipc_core::sync::Event);

impl crate::Service for Sleepy {
    type Request = u64;
    type Response = u64;
    fn call(&mut self, ms: u64) -> u64 {
        self.0.set();
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

#[test]
fn an_overwritten_request_sequence_is_out_of_step_not_a_wait() -> Result<()> {
    // While this process waits for an answer, another process overwrites
    // its slot's request sequence number: no answer for it can come, and
    // the call must say so as `OutOfStep` (a variant a caller can match),
    // then the next call works on a fresh connection.
    let busy = ipc_core::sync::Event::new()?;
    let mgr = Manager::builder()
        .slots(2)
        .register("Sleepy", {
            let busy = busy.clone();
            move || Sleepy(busy.clone())
        })
        .start()?;
    let sleepy = mgr.custom::<Sleepy>("Sleepy")?;
    let name = mgr.name().to_owned();
    let mut meddler = Process::new(move || -> Result<u32> {
        if !busy.wait_timeout(Duration::from_secs(60)) {
            return Err(ipc_core::Error::Timeout.into());
        }
        let ctl = Control::open(&name, Duration::from_secs(2))?;
        // Slot 0 is the test process's: the only client so far.
        let s = ctl.slot(0);
        let forged = s.req_seq.load(Ordering::SeqCst).wrapping_add(1000);
        s.req_seq.store(forged, Ordering::SeqCst);
        Ok(forged)
    });
    meddler.start()?;
    // In this process (slot 0); the server answers within 2 s whatever
    // happens, so no watchdog is needed.
    let first = sleepy.call(&2000);
    let forged = meddler.join()?;
    match first {
        Err(Error::OutOfStep { expected, found }) => {
            assert_eq!(found, forged);
            assert_eq!(expected.wrapping_add(1000), forged);
        }
        other => panic!("not OutOfStep: {other:?}"),
    }
    // A fresh connection (slot 1) gets its answer.
    assert_eq!(sleepy.call(&0)?, 0);
    Ok(())
}
