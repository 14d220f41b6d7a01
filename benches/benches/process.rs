//! Start + join of a trivial child, per start method. This bench has its
//! own `main` so it can call `ipc_core::init()` first: the `Spawn` and
//! `ForkServer` methods re-execute this binary.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, Criterion};
use ipc_core::process::{Process, StartMethod};

fn trivial(x: u32) -> u32 {
    x + 1
}

fn start_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_start_join");
    for (name, m) in [
        ("fork", StartMethod::Fork),
        ("forkserver", StartMethod::ForkServer),
        ("spawn", StartMethod::Spawn),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut p = Process::builder().start_method(m).target_fn(trivial, 1);
                p.start().unwrap();
                assert_eq!(p.join().unwrap(), 2);
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = start_join
}

fn main() {
    ipc_core::init();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
