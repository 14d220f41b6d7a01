//! Aggregate dict throughput of a manager with 1, 2, 4 and 8 client
//! processes (a quick look; the criterion benches are the reference).
//!
//! `cargo run --release -p ipc-manager --example manager_clients`

use std::time::Instant;

use ipc_core::process::Process;
use ipc_manager::Manager;

fn main() -> ipc_core::Result<()> {
    let mgr = Manager::start()?;
    let d = mgr.dict::<u64, u64>()?;
    for clients in [1u64, 2, 4, 8] {
        let ops = 20_000u64;
        let t0 = Instant::now();
        let mut ps: Vec<Process<ipc_core::Result<()>>> = (0..clients)
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
    Ok(())
}
