//! The demo: two processes talking through an ipc `Queue` and a `Pipe`.
//!
//! A producer child puts jobs on a `Queue`; the parent answers each job on
//! a `Pipe`; then both sides measure a round trip so a newcomer sees what
//! shared memory buys over an OS pipe. The `Process` API is not built yet,
//! so the child is started with a raw `fork`, as in the seed's section
//! 1.2.1.2.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ipc_core::pipe::Pipe;
use ipc_core::queue::Queue;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
struct Job {
    id: u32,
    text: String,
}

const ROUNDS: u32 = 20_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jobs = Queue::<Job>::new(16)?;
    let (parent_end, child_end) = Pipe::new(true)?;
    println!(
        "parent {}: created a Queue and a duplex Pipe in shared memory",
        std::process::id()
    );

    // SAFETY: the child only uses the handles above and exits with `_exit`.
    let child = match unsafe { fork() }? {
        ForkResult::Child => {
            drop(parent_end); // each process closes the end it does not use
            let code = match child_main(&jobs, &child_end) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("child failed: {e}");
                    1
                }
            };
            // SAFETY: leaves the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_end); // as in Python: close the end this process does not use

    for _ in 0..3 {
        let job = jobs.get_timeout(Duration::from_secs(10))?;
        println!("parent: got job #{} {:?} from the queue", job.id, job.text);
        parent_end.send(&format!("done: {}", job.text.to_uppercase()))?;
    }

    // Round trips: the child echoes what we send.
    let t = Instant::now();
    for i in 0..ROUNDS {
        parent_end.send(&i)?;
        let back: u32 = parent_end.recv()?;
        assert_eq!(back, i);
    }
    let ipc_rtt = t.elapsed() / ROUNDS;
    drop(parent_end); // the child sees PeerClosed and exits
    waitpid(child, None)?;

    let queue_rtt = queue_rtt()?;
    let os_rtt = os_pipe_rtt()?;
    println!();
    println!("round trip of a small message between two processes ({ROUNDS} rounds):");
    for (name, t) in [("ipc Pipe ", ipc_rtt), ("ipc Queue", queue_rtt)] {
        println!(
            "  {name}: {:>8.2} µs  ({:.0}x faster than the OS pipe)",
            t.as_secs_f64() * 1e6,
            os_rtt.as_secs_f64() / t.as_secs_f64().max(1e-12)
        );
    }
    println!(
        "  OS pipe  : {:>8.2} µs  (baseline, same run)",
        os_rtt.as_secs_f64() * 1e6
    );
    Ok(())
}

/// The same echo over two ipc Queues.
fn queue_rtt() -> Result<Duration, Box<dyn std::error::Error>> {
    let ping = Queue::<u32>::new(4)?;
    let pong = Queue::<u32>::new(4)?;
    // SAFETY: the child only echoes through the queues and exits with `_exit`.
    let child = match unsafe { fork() }? {
        ForkResult::Child => {
            while let Ok(v) = ping.get() {
                if v == u32::MAX || pong.put(&v).is_err() {
                    break;
                }
            }
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    let t = Instant::now();
    for i in 0..ROUNDS {
        ping.put(&i)?;
        let _ = pong.get()?;
    }
    let rtt = t.elapsed() / ROUNDS;
    ping.put(&u32::MAX)?;
    waitpid(child, None)?;
    Ok(rtt)
}

fn child_main(jobs: &Queue<Job>, end: &ipc_core::pipe::Connection) -> ipc_core::Result<()> {
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
    loop {
        match end.recv::<u32>() {
            Ok(v) => end.send(&v)?,
            Err(ipc_core::Error::PeerClosed) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The same echo over two OS pipes, for comparison.
fn os_pipe_rtt() -> Result<Duration, Box<dyn std::error::Error>> {
    let (r1, w1) = nix::unistd::pipe()?;
    let (r2, w2) = nix::unistd::pipe()?;
    // SAFETY: the child only echoes bytes and exits with `_exit`.
    let child = match unsafe { fork() }? {
        ForkResult::Child => {
            drop((w1, r2)); // or reading never sees end-of-file
            let (mut r, mut w) = (std::fs::File::from(r1), std::fs::File::from(w2));
            let mut b = [0u8; 4];
            while r.read_exact(&mut b).is_ok() && w.write_all(&b).is_ok() {}
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((r1, w2));
    let (mut w, mut r) = (std::fs::File::from(w1), std::fs::File::from(r2));
    let mut b = [0u8; 4];
    let t = Instant::now();
    for i in 0..ROUNDS {
        w.write_all(&i.to_le_bytes())?;
        r.read_exact(&mut b)?;
    }
    let rtt = t.elapsed() / ROUNDS;
    drop(w);
    waitpid(child, None)?;
    Ok(rtt)
}
