//! Seed 1.2.2 (Process): four processes with a positional and a
//! keyword-like argument and random sleeps; the parent waits on their
//! sentinels, joins them, then prints 2222.

use std::time::Duration;

use ipc_core::process::{wait, Process};

/// Python's `foo(a, *, b)`: Rust passes both in one struct-like tuple.
fn foo((a, b, s): (u32, u32, u64)) {
    std::thread::sleep(Duration::from_millis(s * 100));
    println!("{a} {b} {s}");
}

fn main() -> ipc_core::Result<()> {
    ipc_core::init();
    let mut ps: Vec<Process> = (0..4)
        .map(|i: u64| Process::builder().target_fn(foo, (1, 2, (i * 7 + 3) % 3)))
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    let sentinels: Vec<_> = ps.iter().filter_map(|p| p.sentinel()).collect();
    let first = wait(&sentinels, None)?;
    println!("first finished: {first:?}");
    drop(sentinels);
    for p in &mut ps {
        p.join()?;
    }
    println!("2222");
    Ok(())
}
