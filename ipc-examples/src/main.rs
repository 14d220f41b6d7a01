//! The demo: a short guided tour of ipc, then a live latency table.
//!
//! `cargo run --release -p ipc-examples` (the README's first command).
//! Each step names the section of the Python tutorial it mirrors; the
//! last step measures round trips of ipc's `Pipe`, `Queue` and Manager
//! dict against an OS pipe, all in this same run. The tour ends by
//! checking that `/dev/shm` holds nothing of its own.

use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipc_core::pipe::{Connection, Pipe};
use ipc_core::pool::Pool;
use ipc_core::process::{cpu_count, Process, StartMethod};
use ipc_core::queue::Queue;
use ipc_core::sync::{Lock, LockError};
use ipc_core::value::RawArray;
use ipc_manager::{DictProxy, Manager};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
struct Job {
    id: u32,
    text: String,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const ROUNDS: u32 = 20_000;

/// Names of the named regions the tour made (the rest are anonymous
/// memfds, which never appear in `/dev/shm`).
static NAMED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn remember(name: &str) {
    NAMED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(name.to_owned());
}

fn step(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

fn main() -> Res<()> {
    ipc_core::init();
    println!(
        "ipc tour: Python's multiprocessing for Rust, on shared memory ({} CPUs)",
        cpu_count()
    );
    queue_and_pipe()?;
    pool()?;
    manager()?;
    dead_holder()?;
    spawned_by_name()?;
    latency_table()?;
    let named = NAMED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    println!("\nend of the tour: {}", ipc_examples::shm::report(&named));
    Ok(())
}

/// A child produces jobs on a Queue; the parent answers on a Pipe.
fn queue_and_pipe() -> Res<()> {
    step(1, "Process + Queue + Pipe (tutorial 1.2.2, 3.1, 3.2)");
    let jobs = Queue::<Job>::new(16)?;
    let (parent_end, child_end) = Pipe::new(true)?;
    let mut child = Process::new({
        let jobs = jobs.clone();
        move || child_main(&jobs, &child_end)
    });
    child.start()?;
    for _ in 0..3 {
        let job = jobs.get_timeout(Duration::from_secs(10))?;
        println!("parent: got job #{} {:?} from the queue", job.id, job.text);
        parent_end.send(&format!("done: {}", job.text.to_uppercase()))?;
    }
    child.join()?;
    let code = child.exitcode();
    println!("parent: child {} exited with code {code:?}", child.name());
    Ok(())
}

fn child_main(jobs: &Queue<Job>, end: &Connection) -> ipc_core::Result<()> {
    for (id, text) in ["resize photo", "send mail", "compress logs"]
        .into_iter()
        .enumerate()
    {
        jobs.put(&Job {
            id: id as u32 + 1,
            text: text.into(),
        })?;
        let reply: String = end.recv()?;
        println!("child  {}: parent replied {reply:?}", std::process::id());
    }
    Ok(())
}

fn square(x: u64) -> u64 {
    x * x
}

/// A pool maps a function over items in worker processes.
fn pool() -> Res<()> {
    step(2, "Pool.map (tutorial 2.1)");
    let pool = Pool::new(cpu_count())?;
    let squares = pool.map(square, 0..10u64, None)?;
    println!(
        "pool of {} workers: squares of 0..10 = {squares:?}",
        cpu_count()
    );
    pool.close();
    pool.join()?;
    Ok(())
}

fn fill(d: DictProxy<u32, String>) -> ipc_manager::Result<()> {
    for (i, fruit) in ["apple", "banana", "cherry"].into_iter().enumerate() {
        d.insert(&(i as u32), &fruit.to_string())?;
    }
    Ok(())
}

/// A Manager dict filled by one process, read by another.
fn manager() -> Res<()> {
    step(3, "Manager().dict() (tutorial 3.1.2)");
    let mgr = Manager::start()?;
    remember(mgr.name());
    let d = mgr.dict::<u32, String>()?;
    let mut writer = Process::builder().target_fn(fill, d.clone());
    writer.start()?;
    writer.join()?;
    let reader = {
        let d = d.clone();
        Process::new(move || d.items())
    };
    let mut reader = reader;
    reader.start()?;
    println!("another process reads the dict: {:?}", reader.join()?);
    Ok(())
}

/// A process killed while holding a lock does not deadlock the others.
fn dead_holder() -> Res<()> {
    step(4, "A lock holder is killed (what Python cannot survive)");
    let lock = Lock::new()?;
    let mut holder = Process::new({
        let lock = lock.clone();
        move || {
            std::mem::forget(lock.acquire());
            // SAFETY: raise(2) on ourselves: die holding the lock.
            unsafe { libc::raise(libc::SIGKILL) };
        }
    });
    holder.start()?;
    let how = holder.join().map(|_| ()).unwrap_err();
    let t = Instant::now();
    match lock.acquire_timeout(Duration::from_secs(5)) {
        Err(LockError::OwnerDied(_guard)) => println!(
            "holder ended ({how}); the next acquirer got the lock after {:.0} ms, flagged OwnerDied",
            t.elapsed().as_secs_f64() * 1e3
        ),
        other => println!("unexpected: {:?}", other.map(|_| ())),
    }
    Ok(())
}

/// Bytes 0.. of `block` up to the first zero, as text.
fn text_at(block: &RawArray<u8>, from: usize) -> String {
    let bytes: Vec<u8> = block.to_vec()[from..]
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn write_at(block: &RawArray<u8>, from: usize, text: &str) -> ipc_core::Result<()> {
    for (i, b) in text.bytes().enumerate() {
        block.set(from + i, b)?;
    }
    Ok(())
}

/// How many mappings of `path` this process has.
fn mappings_of(path: &str) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().filter(|l| l.ends_with(path)).count())
        .unwrap_or(0)
}

/// The spawned child: a fresh run of this program, which has mapped
/// nothing of its parent's, opens the region by name.
fn read_by_name(name: String) -> ipc_core::Result<String> {
    let path = format!("/dev/shm/ipc.{name}");
    let before = mappings_of(&path);
    let block = RawArray::<u8>::open(&name)?;
    let text = text_at(&block, 0);
    println!(
        "child  {}: a fresh program (spawned); {before} mapping(s) of {path} before opening it by name, {} after; it reads {text:?}",
        std::process::id(),
        mappings_of(&path)
    );
    write_at(
        &block,
        64,
        &format!("hello back from the child, pid {}", std::process::id()),
    )?;
    Ok(text)
}

/// A child started with `Spawn` (no fork: nothing inherited) opens a
/// named region by its name, as an unrelated program would.
fn spawned_by_name() -> Res<()> {
    step(
        5,
        "A spawned program opens a named region by name (shared_memory.SharedMemory(name))",
    );
    let name = format!("tour-{}", std::process::id());
    remember(&name);
    let block = RawArray::<u8>::create(&name, &[0u8; 128])?;
    let text = format!("hello from the parent, pid {}", std::process::id());
    write_at(&block, 0, &text)?;
    println!("parent: wrote {text:?} into /dev/shm/ipc.{name}");
    let mut child = Process::builder()
        .start_method(StartMethod::Spawn)
        .target_fn(read_by_name, name.clone());
    child.start()?;
    let seen = child.join()?;
    let same = if seen == text {
        "the same bytes"
    } else {
        "DIFFERENT bytes"
    };
    println!("parent: the child read {seen:?}: {same}");
    println!(
        "parent: and the parent reads what the child wrote at offset 64: {:?}",
        text_at(&block, 64)
    );
    drop(block); // the creator removes the name
    Ok(())
}

/// Round trips measured now, on this machine.
fn latency_table() -> Res<()> {
    step(
        6,
        "Round trip of a small message between two processes, measured now",
    );
    let pipe = pipe_rtt()?;
    let queue = queue_rtt()?;
    let dict = manager_rtt()?;
    let os = os_pipe_rtt()?;
    let x = |t: Duration| os.as_secs_f64() / t.as_secs_f64().max(1e-12);
    println!(
        "  ipc Pipe    : {:>8.2} µs  ({:.0}x faster than the OS pipe)",
        us(pipe),
        x(pipe)
    );
    println!(
        "  ipc Queue   : {:>8.2} µs  ({:.0}x faster than the OS pipe)",
        us(queue),
        x(queue)
    );
    println!(
        "  Manager dict: {:>8.2} µs  ({:.0}x faster than the OS pipe; Python's: ~70 µs)",
        us(dict),
        x(dict)
    );
    println!("  OS pipe     : {:>8.2} µs  (baseline, same run)", us(os));
    Ok(())
}

fn us(t: Duration) -> f64 {
    t.as_secs_f64() * 1e6
}

fn pipe_rtt() -> Res<Duration> {
    let (a, b) = Pipe::new(true)?;
    let mut echo = Process::new(move || {
        // The child has a copy of `a` too (fork copies everything), so it
        // would never see PeerClosed: stop on a sentinel instead.
        while let Ok(v) = b.recv::<u32>() {
            if v == u32::MAX || b.send(&v).is_err() {
                break;
            }
        }
    });
    echo.start()?;
    let t = Instant::now();
    for i in 0..ROUNDS {
        a.send(&i)?;
        let _: u32 = a.recv()?;
    }
    let rtt = t.elapsed() / ROUNDS;
    a.send(&u32::MAX)?;
    echo.join()?;
    Ok(rtt)
}

fn queue_rtt() -> Res<Duration> {
    let ping = Queue::<u32>::new(4)?;
    let pong = Queue::<u32>::new(4)?;
    let mut echo = Process::new({
        let (ping, pong) = (ping.clone(), pong.clone());
        move || {
            while let Ok(v) = ping.get() {
                if v == u32::MAX || pong.put(&v).is_err() {
                    break;
                }
            }
        }
    });
    echo.start()?;
    let t = Instant::now();
    for i in 0..ROUNDS {
        ping.put(&i)?;
        let _ = pong.get()?;
    }
    let rtt = t.elapsed() / ROUNDS;
    ping.put(&u32::MAX)?;
    echo.join()?;
    Ok(rtt)
}

fn manager_rtt() -> Res<Duration> {
    let mgr = Manager::start()?;
    remember(mgr.name());
    let d = mgr.dict::<u32, u32>()?;
    d.insert(&1, &1)?;
    let t = Instant::now();
    for _ in 0..ROUNDS {
        d.get(&1)?;
    }
    Ok(t.elapsed() / ROUNDS)
}

fn os_pipe_rtt() -> Res<Duration> {
    let (r1, w1) = nix::unistd::pipe()?;
    let (r2, w2) = nix::unistd::pipe()?;
    let (mut cr, mut cw) = (std::fs::File::from(r1), std::fs::File::from(w2));
    let mut echo = Process::new(move || {
        let mut b = [0u8; 4];
        while cr.read_exact(&mut b).is_ok() && b != [0xff; 4] && cw.write_all(&b).is_ok() {}
    });
    echo.start()?;
    let (mut w, mut r) = (std::fs::File::from(w1), std::fs::File::from(r2));
    let mut b = [0u8; 4];
    let rounds = ROUNDS / 4; // slow: fewer rounds keep the tour short
    let t = Instant::now();
    for i in 0..rounds {
        w.write_all(&i.to_le_bytes())?;
        r.read_exact(&mut b)?;
    }
    let rtt = t.elapsed() / rounds;
    w.write_all(&[0xff; 4])?; // the child keeps copies of our ends: tell it
    echo.join()?;
    Ok(rtt)
}
