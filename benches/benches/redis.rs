//! `ipc-redis` over loopback Redis, next to the local
//! `ProcessPoolExecutor` in the same run: the `submit().result()` round
//! trip, `map` over 10,000 tiny tasks with chunking, and a `Queue`
//! put/get round trip. Starts its own `redis-server` (loopback, no
//! persistence) and two worker processes of this bench binary, one local
//! process each.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use ipc_core::pool::ProcessPoolExecutor;
use ipc_redis::testing::{Redis, Worker};
use ipc_redis::{Queue, RedisPoolExecutor};

fn inc(x: u64) -> u64 {
    x + 1
}

const ITEMS: u64 = 10_000;

fn redis(c: &mut Criterion) {
    let server = Redis::start().expect("redis-server");
    let url = server.url();
    let _workers: Vec<Worker> = (0..2)
        .map(|_| Worker::start(&url, "bench", 1).expect("worker"))
        .collect();
    let remote = RedisPoolExecutor::connect(&url, "bench").unwrap();
    let local = ProcessPoolExecutor::new(2).unwrap();
    // Both workers up before timing.
    let t = Instant::now();
    while remote.live_processes().unwrap() < 2 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut g = c.benchmark_group("redis_round_trip");
    g.bench_function("local_executor_submit_result", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                assert_eq!(local.submit(inc, i).unwrap().result(None).unwrap(), i + 1);
            }
            t.elapsed()
        })
    });
    g.bench_function("redis_executor_submit_result", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            for i in 0..n {
                assert_eq!(remote.submit(inc, i).unwrap().result(None).unwrap(), i + 1);
            }
            t.elapsed()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("redis_map_10k");
    g.throughput(Throughput::Elements(ITEMS));
    g.sample_size(10);
    for chunk in [100usize, 1000] {
        g.bench_function(format!("local_executor_chunksize_{chunk}"), |b| {
            b.iter(|| {
                let n = local.map(inc, 0..ITEMS, chunk).unwrap().count();
                assert_eq!(n, ITEMS as usize)
            })
        });
        g.bench_function(format!("redis_executor_chunksize_{chunk}"), |b| {
            b.iter(|| {
                let n = remote.map(inc, 0..ITEMS, chunk).unwrap().count();
                assert_eq!(n, ITEMS as usize)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("redis_queue");
    let lq = ipc_core::queue::Queue::<u64>::new(64).unwrap();
    let rq: Queue<u64> = Queue::create(&url, "bench", 0).unwrap();
    g.bench_function("local_queue_put_get", |b| {
        b.iter(|| {
            lq.put(&7).unwrap();
            assert_eq!(lq.get().unwrap(), 7)
        })
    });
    g.bench_function("redis_queue_put_get", |b| {
        b.iter(|| {
            rq.put(&7).unwrap();
            assert_eq!(rq.get().unwrap(), 7)
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
    targets = redis
}

fn main() {
    // The workers this bench starts serve here and exit.
    ipc_redis::init();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
