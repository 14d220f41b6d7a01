//! Seed 1.1.2.1 (zombie process): a child that exits while its parent is
//! busy looping stays a zombie (`Z` in `ps`) until it is reaped; ipc reaps
//! it in `active_children()` (or `join`, or when the `Process` is dropped).

use std::time::Duration;

use ipc_core::process::{active_children, Process};

fn state(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..i + 3].to_owned()))
        .unwrap_or_else(|| "gone".to_owned())
}

fn main() -> ipc_core::Result<()> {
    ipc_core::init();
    let mut p = Process::new(|| println!("222"));
    p.start()?;
    let pid = p.pid().unwrap_or(0);
    // The parent "loops" without reaping, as in the seed.
    for _ in 0..3 {
        println!("111");
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("child {pid} state before reaping: {}", state(pid));
    let live = active_children(); // reaps finished children
    println!("active children: {}", live.len());
    println!("child {pid} state after reaping: {}", state(pid));
    println!("exit code: {:?}", p.exitcode());
    Ok(())
}
