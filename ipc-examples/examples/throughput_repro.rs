//! Reproduces an open performance question (not a correctness issue): one
//! producer and one forked consumer pass 4 KiB messages through a `Queue`
//! at ~0.3 µs per message, but a *second* producer/consumer pair created
//! later in the same process runs ~6x slower (~2 µs), consistently.
//! Run with `cargo run --release -p ipc-examples --example throughput_repro`.

use std::time::Instant;

use ipc_core::queue::Queue;
use nix::unistd::{fork, ForkResult};

fn one_pair() -> ipc_core::Result<()> {
    let data = Queue::<Vec<u8>>::builder()
        .capacity(256)
        .max_message_size(8192)
        .build()?;
    let done = Queue::<u64>::new(4)?;
    // SAFETY: the child only uses the two queues and leaves with `_exit`.
    let kid = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let mut n = 0u64;
            while let Ok(m) = data.get() {
                if m.is_empty() {
                    let _ = done.put(&n);
                    n = 0;
                } else {
                    n += m.len() as u64;
                }
            }
            // SAFETY: leaves the child without the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    let msg = vec![0xabu8; 4096];
    for round in 0..3 {
        let n = 100_000u32;
        let t = Instant::now();
        for _ in 0..n {
            data.put(&msg)?;
        }
        data.put(&Vec::new())?;
        done.get()?;
        println!("round {round}: {:?} per message", t.elapsed() / n);
    }
    data.close();
    let _ = nix::sys::wait::waitpid(kid, None);
    Ok(())
}

fn main() -> ipc_core::Result<()> {
    println!("first pair:");
    one_pair()?;
    println!("second pair:");
    one_pair()
}
