//! The real `ipc` binary against regions this test process creates: live
//! ones, stale ones whose creator was SIGKILLed, and garbage planted in
//! `/dev/shm`. `gc` is always given the test's own names, so concurrent
//! tests' regions are never touched.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_core::queue::Queue;
use ipc_core::region::{Kind, Region};
use ipc_core::sync::{Barrier, Event, Lock, Semaphore};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use serde_json::Value;

/// Runs `ipc ARGS`: (exit code, stdout, stderr).
fn ipc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipc"))
        .args(args)
        .output()
        .expect("run ipc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `ipc ARGS --json`, expects exit code `code`, parses stdout.
fn ipc_json(args: &[&str], code: i32) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (c, out, err) = ipc(&a);
    assert_eq!(c, code, "ipc {a:?}: stdout {out:?}, stderr {err:?}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ipc {a:?} printed {out:?}: {e}"))
}

/// The `ls --json` entry for `name`, if listed.
fn listed(name: &str) -> Option<Value> {
    let v = ipc_json(&["ls"], 0);
    v["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "test-cli-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn shm_path(name: &str) -> String {
    format!("/dev/shm/ipc.{name}")
}

fn exists(name: &str) -> bool {
    std::path::Path::new(&shm_path(name)).exists()
}

/// Forks a child that runs `f`, writes one byte to the returned pipe when
/// `f` is done, then sleeps until killed. It dies with this thread.
fn fork_and_hold(f: impl FnOnce()) -> (Pid, OwnedFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    ipc_core::sys::proc::pid();
    // SAFETY: the child runs `f` (code of this test), then sleeps; it never
    // returns into the test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Parent { child } => {
            drop(w);
            let mut f = std::fs::File::from(r.try_clone().expect("dup"));
            let mut b = [0u8; 1];
            f.read_exact(&mut b).expect("child ready");
            (child, r)
        }
        ForkResult::Child => {
            // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
            if ok {
                let _ = std::fs::File::from(w).write_all(b"x");
            }
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        }
    }
}

fn sigkill(pid: Pid) {
    kill(pid, Signal::SIGKILL).expect("kill");
    waitpid(pid, None).expect("reap");
}

/// Removes a planted file at the end of a test, even a failed one.
struct Planted(String);
impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(shm_path(&self.0));
    }
}

/// Plants `/dev/shm/ipc.<name>` (mode 0600) holding `bytes`.
fn plant(name: &str, bytes: &[u8]) -> Planted {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(shm_path(name))
        .expect("plant");
    f.write_all(bytes).expect("write");
    Planted(name.to_owned())
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
fn ls_shows_a_live_queue_with_its_kind_size_and_living_creator() {
    let name = unique("ls");
    let q = Queue::<u64>::create(&name, 8).unwrap();
    let e = listed(&name).expect("listed");
    assert_eq!(e["kind"], "Queue");
    assert_eq!(e["creator_pid"], std::process::id());
    assert_eq!(e["creator_alive"], true);
    assert_eq!(e["status"], "live");
    assert_eq!(e["stale"], false);
    assert!(e["size"].as_u64().unwrap() > 8 * 64 * 1024);
    assert!(e["age_seconds"].is_u64());
    let (code, text, _) = ipc(&["ls"]);
    assert_eq!(code, 0);
    let line = text.lines().find(|l| l.starts_with(&name)).expect("a line");
    assert!(line.contains("Queue") && line.contains("alive") && line.contains("live"));
    drop(q);
    assert!(listed(&name).is_none());
}

#[test]
fn region_of_a_sigkilled_creator_is_listed_stale_and_removed_by_gc() {
    let name = unique("stale");
    let n = name.clone();
    let (child, _sync) = fork_and_hold(move || {
        std::mem::forget(Lock::create(&n).unwrap());
    });
    sigkill(child);
    let e = listed(&name).expect("listed");
    assert_eq!(e["kind"], "Lock");
    assert_eq!(e["creator_pid"], child.as_raw() as u32);
    assert_eq!(e["creator_alive"], false);
    // Any process listing regions at the same moment (another test, a
    // concurrent `ipc ls`) holds the file open for an instant, which makes
    // it "in use" for that instant: poll.
    assert!(eventually(Duration::from_secs(10), || {
        listed(&name).is_some_and(|e| e["status"] == "stale")
    }));

    assert!(eventually(Duration::from_secs(10), || {
        ipc_json(&["gc", "--dry-run", &name], 0)["would_remove"][0]["name"] == name.as_str()
    }));
    assert!(exists(&name), "a dry run removed it");
    assert!(eventually(Duration::from_secs(10), || {
        let (code, text, _) = ipc(&["gc", "--dry-run", &name]);
        code == 0 && text.contains(&format!("would remove {name}"))
    }));

    // Only a concurrent unrestricted `Region::gc` (another test) could
    // remove it first; then it is gone all the same.
    assert!(eventually(Duration::from_secs(10), || {
        let done = ipc_json(&["gc", &name], 0);
        done["removed"][0]["name"] == name.as_str() || !exists(&name)
    }));
    assert!(!exists(&name), "gc left it");
    let again = ipc_json(&["gc", &name], 0);
    assert_eq!(again["removed"].as_array().unwrap().len(), 0);
}

#[test]
fn gc_keeps_a_stale_looking_region_that_a_process_still_maps() {
    let name = unique("in-use");
    let n = name.clone();
    let (child, _sync) = fork_and_hold(move || {
        std::mem::forget(Event::create(&n).unwrap());
    });
    let held = Region::open(&name, Kind::Event).unwrap();
    sigkill(child);
    assert_eq!(listed(&name).unwrap()["status"], "in-use");
    let done = ipc_json(&["gc", &name], 0);
    assert_eq!(done["removed"].as_array().unwrap().len(), 0);
    let (code, _, err) = ipc(&["rm", &name]);
    assert_eq!(code, 1);
    assert!(err.contains("in use"), "{err}");
    assert!(exists(&name));
    drop(held);
    // (Polled: a concurrent lister holds the file open for an instant.)
    assert!(eventually(Duration::from_secs(10), || ipc(&["rm", &name])
        .0
        == 0));
    assert!(!exists(&name));
}

#[test]
fn rm_refuses_a_live_region_without_force() {
    let name = unique("rm-live");
    let r = Region::builder(Kind::Raw)
        .name(&name)
        .size(64)
        .create()
        .unwrap();
    let (code, _, err) = ipc(&["rm", &name]);
    assert_eq!(code, 1);
    assert!(err.contains("live") && err.contains("--force"), "{err}");
    assert!(exists(&name));
    let (code, text, _) = ipc(&["rm", "--force", &name]);
    assert_eq!(code, 0, "{text}");
    assert!(!exists(&name));
    drop(r);
    let (code, _, err) = ipc(&["rm", &name]);
    assert_eq!(code, 1);
    assert!(err.contains("no shared-memory region"), "{err}");
}

#[test]
fn inspect_lock_names_a_live_owner_and_a_sigkilled_one_as_dead() {
    let name = unique("lock");
    let lock = Lock::create(&name).unwrap();
    let v = ipc_json(&["inspect", &name], 0);
    assert_eq!(v["detail"]["locked"], false);
    {
        let _g = lock.acquire().unwrap();
        let v = ipc_json(&["inspect", &name], 0);
        let owner = &v["detail"]["owner"];
        assert_eq!(owner["pid"], std::process::id());
        assert_eq!(owner["tid"], ipc_core::sys::proc::tid());
        assert_eq!(owner["alive"], true);
    }
    let n = name.clone();
    let (child, _sync) = fork_and_hold(move || {
        let l = Lock::open(&n).unwrap();
        std::mem::forget(l.acquire().unwrap());
        std::mem::forget(l);
    });
    sigkill(child);
    let v = ipc_json(&["inspect", &name], 0);
    assert_eq!(v["detail"]["locked"], true);
    assert_eq!(v["detail"]["owner"]["tid"], child.as_raw() as u32);
    assert_eq!(v["detail"]["owner"]["alive"], false);
    let (_, text, _) = ipc(&["inspect", &name]);
    assert!(text.contains("dead"), "{text}");
}

#[test]
fn inspect_rlock_shows_its_recursion_depth() {
    let name = unique("rlock");
    let l = ipc_core::sync::RLock::create(&name).unwrap();
    let _a = l.acquire().unwrap();
    let _b = l.acquire().unwrap();
    let v = ipc_json(&["inspect", &name], 0);
    assert_eq!(v["kind"], "RLock");
    assert_eq!(v["detail"]["count"], 2);
    assert_eq!(v["detail"]["owner"]["alive"], true);
}

// Queue layout (as ipc-core's crash tests pin it): the process table
// (1024 packed identities) from payload offset 640, the slots from 8832,
// each a state word (`seq << 23 | tag`), a length, and its data.
const PROCS: usize = 640;
const SLOTS: usize = 8832;
const TAG_BITS: u32 = 23;

fn poke64(r: &Region, at: usize, v: u64) {
    assert!(at + 8 <= r.payload_len());
    // SAFETY: in bounds (checked); we play a process that writes the ring.
    unsafe { r.payload().add(at).cast::<u64>().write_volatile(v) }
}
fn peek64(r: &Region, at: usize) -> u64 {
    assert!(at + 8 <= r.payload_len());
    // SAFETY: as above.
    unsafe { r.payload().add(at).cast::<u64>().read_volatile() }
}

#[test]
fn inspect_queue_reports_depth_capacity_largest_message_and_slots_held_by_dead() {
    let name = unique("queue");
    let q = Queue::<String>::create(&name, 4).unwrap();
    let raw = Region::open(&name, Kind::Queue).unwrap();
    // This process takes tag 1, a child (which then exits) tag 2.
    q.put(&"warm".to_string()).unwrap();
    q.get().unwrap();
    let n = name.clone();
    let (child, _sync) = fork_and_hold(move || {
        let q = Queue::<String>::open(&n).unwrap();
        q.put(&"child".to_string()).unwrap();
        q.get().unwrap();
    });
    sigkill(child);
    assert_ne!(
        peek64(&raw, PROCS + 8),
        0,
        "layout changed: no second entry"
    );
    q.put(&"a".repeat(10)).unwrap(); // position 2, slot 2
    q.put(&"b".repeat(100)).unwrap(); // position 3, slot 3
    let v = ipc_json(&["inspect", &name], 0);
    let d = &v["detail"];
    assert_eq!(
        (d["depth"].as_u64(), d["capacity"].as_u64()),
        (Some(2), Some(4))
    );
    assert!(d["largest_queued"].as_u64().unwrap() >= 100);
    assert_eq!(d["max_message_size"], q.max_message_size());
    assert_eq!(d["slots_held_by_dead"], 0);
    assert_eq!(d["processes_dead"], 1);

    // The dead child claimed position 2 as a consumer and died holding it.
    let stride = q.slot_size().next_multiple_of(16) + 16;
    poke64(&raw, SLOTS + 2 * stride, (5 << TAG_BITS) | 2);
    let v = ipc_json(&["inspect", &name], 0);
    assert_eq!(v["detail"]["slots_held_by_dead"], 1);
    let (_, text, _) = ipc(&["inspect", &name]);
    assert!(text.contains("1 held by dead processes"), "{text}");
    // A blocked caller recovers it, as before.
    assert_eq!(q.get().unwrap(), "b".repeat(100));
}

#[test]
fn inspect_queue_shows_its_slot_size_and_the_payload_blocks_in_use() {
    let name = unique("blocks");
    let q = Queue::<Vec<u8>>::builder()
        .capacity(4)
        .slot_size(1024)
        .name(&name)
        .build()
        .unwrap();
    q.put(&vec![7u8; 10]).unwrap();
    q.put(&vec![8u8; 5000]).unwrap(); // past the slot: a payload block
    let v = ipc_json(&["inspect", &name], 0);
    assert_eq!(v["detail"]["slot_size"], q.slot_size());
    assert_eq!(v["detail"]["blocks_in_use"], 1);
    let (_, text, _) = ipc(&["inspect", &name]);
    assert!(text.contains("in 1 payload block now"), "{text}");
    assert_eq!(q.get().unwrap(), vec![7u8; 10]);
    assert_eq!(q.get().unwrap(), vec![8u8; 5000]);
    let v = ipc_json(&["inspect", &name], 0);
    assert_eq!(v["detail"]["blocks_in_use"], 0, "a consumed block is free");
    drop(q);
    assert!(!exists(&name), "the creator's drop removes the region");
}

#[test]
fn inspect_event_semaphore_and_barrier_show_their_state() {
    let ev = unique("event");
    let e = Event::create(&ev).unwrap();
    assert_eq!(ipc_json(&["inspect", &ev], 0)["detail"]["set"], false);
    e.set();
    assert_eq!(ipc_json(&["inspect", &ev], 0)["detail"]["set"], true);

    let sem = unique("sem");
    let s = Semaphore::create(&sem, 3).unwrap();
    s.acquire().unwrap();
    assert_eq!(ipc_json(&["inspect", &sem], 0)["detail"]["value"], 2);

    let bar = unique("barrier");
    let b = Barrier::create(&bar, 3).unwrap();
    let name = bar.clone();
    let (child, _sync) = fork_and_hold(move || {
        let b = Barrier::open(&name).unwrap();
        std::thread::spawn(move || {
            let _ = b.wait_timeout(Duration::from_secs(60));
        });
        // The waiter registers just after this returns: the parent polls.
    });
    assert!(eventually(Duration::from_secs(10), || {
        let d = ipc_json(&["inspect", &bar], 0)["detail"].clone();
        d["parties"] == 3 && d["waiting"] == 1
    }));
    sigkill(child);
    b.abort().unwrap();
    assert_eq!(ipc_json(&["inspect", &bar], 0)["detail"]["broken"], true);
}

#[test]
fn inspect_manager_lists_its_clients_objects_and_server_cpu() {
    let name = unique("mgr");
    let mgr = ipc_manager::Manager::start_named(&name).unwrap();
    let _q = mgr.named("jobs").queue::<u32>(8).unwrap();
    let _l = mgr.lock().unwrap();
    let n = name.clone();
    let (child, _sync) = fork_and_hold(move || {
        let m = ipc_manager::Manager::connect(&n).unwrap();
        std::mem::forget(m);
    });
    let v = ipc_json(&["inspect", &name], 0);
    let d = &v["detail"];
    assert_eq!(v["kind"], "Manager");
    assert_eq!(d["state"], "running");
    assert_eq!(d["server_pid"], mgr.server_pid().unwrap());
    assert_eq!(d["server_alive"], true);
    assert!(d["server_cpu_seconds"].as_f64().is_some());
    let clients = d["clients"].as_array().unwrap();
    for pid in [std::process::id(), child.as_raw() as u32] {
        assert!(
            clients
                .iter()
                .any(|c| c["pid"] == pid && c["alive"] == true),
            "{pid} not in {clients:?}"
        );
    }
    let kinds: Vec<&str> = d["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"Queue") && kinds.contains(&"Lock"),
        "{kinds:?}"
    );
    assert_eq!(listed(&name).unwrap()["clients"], 2);
    let (_, text, _) = ipc(&["inspect", &name]);
    assert!(text.contains("CPU") && text.contains("objects:"), "{text}");
    sigkill(child);
    mgr.shutdown().unwrap();
}

#[test]
fn garbage_planted_in_dev_shm_is_reported_never_crashed_on() {
    // Random bytes, a file shorter than a header, and a valid header over a
    // queue whose geometry is garbage.
    let junk = unique("junk");
    let _j = plant(&junk, &[0xa5; 300]);
    let short = unique("short");
    let _s = plant(&short, b"IPC");
    let forged = unique("forged");
    let len = 128 + 4096;
    let mut bytes = vec![0xffu8; len];
    bytes[..8].copy_from_slice(b"IPCRGN\x00\x01");
    bytes[8..12].copy_from_slice(&ipc_core::region::VERSION.to_le_bytes());
    bytes[12..16].copy_from_slice(&(Kind::Queue as u32).to_le_bytes());
    bytes[16..24].copy_from_slice(&(len as u64).to_le_bytes());
    bytes[24..40].fill(0);
    bytes[40..44].copy_from_slice(&1u32.to_le_bytes()); // ready
    let _f = plant(&forged, &bytes);

    for n in [&junk, &short] {
        let e = listed(n).expect("listed");
        assert_eq!(e["status"], "invalid", "{e}");
        let (code, _, err) = ipc(&["inspect", n]);
        assert_eq!(code, 1);
        assert!(
            err.contains("not an ipc region") || err.contains("header"),
            "{err}"
        );
        let v = ipc_json(&["inspect", n], 1);
        assert!(v["error"].is_string());
        // gc never touches what is not a region; rm wants --force.
        ipc_json(&["gc", n], 0);
        assert!(exists(n));
        let (code, _, err) = ipc(&["rm", n]);
        assert_eq!(code, 1);
        assert!(err.contains("--force"), "{err}");
        assert!(exists(n));
    }
    let v = ipc_json(&["inspect", &forged], 1);
    assert_eq!(v["kind"], "Queue");
    assert!(
        v["error"].as_str().unwrap().contains("cannot be read"),
        "{v}"
    );
    let (code, text, err) = ipc(&["inspect", &forged]);
    assert_eq!(code, 1);
    assert!(
        text.contains("cannot be read") && err.contains("corrupt"),
        "{text} {err}"
    );
    let (code, _, _) = ipc(&["rm", "--force", &junk]);
    assert_eq!(code, 0);
    assert!(!exists(&junk));
}

#[test]
fn usage_errors_exit_with_2_and_help_with_0() {
    assert_eq!(ipc(&["inspect"]).0, 2);
    assert_eq!(ipc(&["frobnicate"]).0, 2);
    assert_eq!(ipc(&["ls", "--bogus"]).0, 2);
    assert_eq!(ipc(&["--help"]).0, 0);
    let (code, _, err) = ipc(&["inspect", "bad/name"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid region name"), "{err}");
}
