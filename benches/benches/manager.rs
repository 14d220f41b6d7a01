//! Manager proxies: dict and list round trips, and the objects the
//! manager hands out in shared memory (Lock, Value), which need no round
//! trip; aggregate dict throughput with 1, 2 and 4 client processes. An
//! OS pipe round trip is measured in the same run as the baseline.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ipc_core::process::Process;
use ipc_manager::Manager;

fn proxies(c: &mut Criterion) {
    let mgr = Manager::start().unwrap();
    let d = mgr.dict::<u64, u64>().unwrap();
    let l = mgr.list::<u64>().unwrap();
    let lock = mgr.lock().unwrap();
    let v = mgr.value::<u64>(0).unwrap();
    d.insert(&1, &1).unwrap();
    let mut g = c.benchmark_group("manager");
    let mut i = 0u64;
    g.bench_function("dict_insert", |b| {
        b.iter(|| {
            i += 1;
            d.insert(&(i % 1024), &i).unwrap()
        })
    });
    g.bench_function("dict_get", |b| b.iter(|| d.get(&1).unwrap()));
    g.bench_function("list_push", |b| {
        b.iter_custom(|n| {
            let t0 = Instant::now();
            for k in 0..n {
                l.push(&k).unwrap();
            }
            let dt = t0.elapsed();
            l.clear().unwrap();
            dt
        })
    });
    g.bench_function("lock_acquire_release", |b| {
        b.iter(|| drop(lock.acquire().unwrap()))
    });
    g.bench_function("value_get", |b| b.iter(|| v.get().unwrap()));
    g.bench_function("value_set", |b| b.iter(|| v.set(7).unwrap()));
    g.finish();
}

/// Wall time per insert with `clients` processes inserting concurrently.
fn aggregate(c: &mut Criterion) {
    let mgr = Manager::start().unwrap();
    let d = mgr.dict::<u64, u64>().unwrap();
    let mut g = c.benchmark_group("manager_dict_aggregate");
    for clients in [1u64, 2, 4] {
        g.bench_function(format!("{clients}_clients"), |b| {
            b.iter_custom(|n| {
                let per = n.div_ceil(clients).max(1);
                let mut ps: Vec<Process<ipc_manager::Result<()>>> = (0..clients)
                    .map(|cl| {
                        let d = d.clone();
                        Process::new(move || {
                            d.len()?; // connect before the clock starts
                            for i in 0..per {
                                d.insert(&(cl << 32 | (i % 256)), &i)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                let t0 = Instant::now();
                for p in &mut ps {
                    p.start().unwrap();
                }
                for p in &mut ps {
                    p.join().unwrap();
                }
                // Per operation of all clients together.
                t0.elapsed() * (n as u32).max(1) / ((per * clients) as u32).max(1)
            })
        });
    }
    g.finish();
}

/// The baseline: an 8-byte round trip over two OS pipes to a forked child.
fn os_pipe(c: &mut Criterion) {
    use std::io::{Read, Write};
    let pipe = || {
        let (r, w) = nix::unistd::pipe().unwrap();
        (std::fs::File::from(r), std::fs::File::from(w))
    };
    let (a_rx, a_tx) = pipe();
    let (b_rx, b_tx) = pipe();
    let mut echo = Process::new(move || {
        let (mut rx, mut tx) = (a_rx, b_tx);
        let mut buf = [0u8; 8];
        while rx.read_exact(&mut buf).is_ok() {
            if tx.write_all(&buf).is_err() {
                break;
            }
        }
    });
    echo.start().unwrap();
    let (mut tx, mut rx) = (a_tx, b_rx);
    let mut buf = [0u8; 8];
    c.bench_function("manager_baseline/os_pipe_rtt", |b| {
        b.iter(|| {
            tx.write_all(&buf).unwrap();
            rx.read_exact(&mut buf).unwrap();
        })
    });
    // The child holds copies of every descriptor (fork), so it never sees
    // end-of-file: stop it.
    let _ = echo.kill();
    let _ = echo.join();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = proxies, aggregate, os_pipe
}
criterion_main!(benches);
