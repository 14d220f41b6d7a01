//! Aggregate dict throughput of a manager with 1, 2, 4 and 8 client
//! processes (a quick look; the criterion benches are the reference), then
//! the server's CPU use while idle for 10 s.
//!
//! `cargo run --release -p ipc-manager --example manager_clients`

use std::time::{Duration, Instant};

use ipc_core::process::Process;
use ipc_manager::Manager;

fn main() -> ipc_manager::Result<()> {
    let mgr = Manager::start()?;
    let d = mgr.dict::<u64, u64>()?;
    for clients in [1u64, 2, 4, 8] {
        let ops = 20_000u64;
        let t0 = Instant::now();
        let mut ps: Vec<Process<ipc_manager::Result<()>>> = (0..clients)
            .map(|c| {
                let d = d.clone();
                Process::new(move || {
                    for i in 0..ops {
                        d.insert(&(c * ops + i % 64), &i)?;
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
        let dt = t0.elapsed();
        println!(
            "{clients} client(s): {:.2} us per op, {:.0} ops/s in total",
            dt.as_secs_f64() * 1e6 / (clients * ops) as f64,
            (clients * ops) as f64 / dt.as_secs_f64()
        );
    }
    let pid = mgr.server_pid().expect("we started it");
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(10));
    let used = cpu_ticks(pid) - before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    println!(
        "server idle for 10 s: {:.0} ms of CPU ({:.2} % of a core)",
        used as f64 * 1000.0 / hz,
        used as f64 / hz / 10.0 * 100.0
    );
    Ok(())
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}
