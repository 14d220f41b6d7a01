//! Pool and executor costs: per-item cost of `map` over 10,000 tiny tasks
//! (automatic chunksize and chunksize 1), and the round trip of
//! `apply_async(..).get()` and `submit(..).result()`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use ipc_core::pool::{Pool, ProcessPoolExecutor};

fn inc(x: u64) -> u64 {
    x + 1
}

const ITEMS: u64 = 10_000;

fn pool(c: &mut Criterion) {
    let pool = Pool::new(2).unwrap();
    let mut g = c.benchmark_group("pool");
    g.throughput(Throughput::Elements(ITEMS));
    g.bench_function("map_10k_auto_chunksize", |b| {
        b.iter(|| assert_eq!(pool.map(inc, 0..ITEMS, None).unwrap().len(), ITEMS as usize))
    });
    g.sample_size(10);
    g.bench_function("map_10k_chunksize_1", |b| {
        b.iter(|| {
            assert_eq!(
                pool.map(inc, 0..ITEMS, Some(1)).unwrap().len(),
                ITEMS as usize
            )
        })
    });
    g.finish();
    let mut g = c.benchmark_group("round_trip");
    g.bench_function("pool_apply_async_get", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                assert_eq!(pool.apply_async(inc, i).unwrap().get(None).unwrap(), i + 1);
            }
            t.elapsed()
        })
    });
    let ex = ProcessPoolExecutor::new(2).unwrap();
    g.bench_function("executor_submit_result", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                assert_eq!(ex.submit(inc, i).unwrap().result(None).unwrap(), i + 1);
            }
            t.elapsed()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = pool
}

fn main() {
    ipc_core::init();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
