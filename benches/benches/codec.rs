//! Encoding cost: an `rkyv` message against the same data as
//! `Serde<T>` (postcard inside an rkyv byte string), encode + decode in
//! one process, for a small struct and a large numeric vector; and a
//! `Queue`'s `get` (deserialize) against `get_archived` (read in place)
//! for a batch of 10 000 string rows, put and taken in one process.
//!
//! `cargo bench -p benches --bench codec`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipc_core::codec::{self, Serde};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone)]
struct SmallR {
    id: u64,
    name: String,
    tags: Vec<u32>,
}

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct SmallS {
    id: u64,
    name: String,
    tags: Vec<u32>,
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let r = SmallR {
        id: 7,
        name: "a job name".into(),
        tags: vec![1, 2, 3, 4],
    };
    let s = SmallS {
        id: 7,
        name: "a job name".into(),
        tags: vec![1, 2, 3, 4],
    };
    g.bench_function("small_struct/rkyv", |b| {
        b.iter(|| codec::from_slice::<SmallR>(&codec::to_vec(&r).unwrap()).unwrap())
    });
    g.bench_function("small_struct/serde_postcard", |b| {
        b.iter(|| {
            codec::from_slice::<Serde<SmallS>>(&codec::to_vec(&Serde(s.clone())).unwrap()).unwrap()
        })
    });
    let v: Vec<f64> = (0..1 << 17).map(|i| i as f64 * 0.25).collect();
    g.throughput(Throughput::Bytes((v.len() * 8) as u64));
    g.bench_function("f64_vec_1MiB/rkyv", |b| {
        b.iter(|| codec::from_slice::<Vec<f64>>(&codec::to_vec(&v).unwrap()).unwrap())
    });
    let sv = Serde(v.clone());
    g.bench_function("f64_vec_1MiB/serde_postcard", |b| {
        b.iter(|| codec::from_slice::<Serde<Vec<f64>>>(&codec::to_vec(&sv).unwrap()).unwrap())
    });
    g.finish();
}

fn archived(c: &mut Criterion) {
    let rows: Vec<String> = (0..10_000).map(|i| format!("row number {i}")).collect();
    let q = ipc_core::queue::Queue::<Vec<String>>::new(4).unwrap();
    let mut g = c.benchmark_group("queue_rows_10k");
    g.bench_function("get", |b| {
        b.iter(|| {
            q.put(&rows).unwrap();
            let v = q.get().unwrap();
            v.iter().map(String::len).sum::<usize>()
        })
    });
    g.bench_function("get_archived", |b| {
        b.iter(|| {
            q.put(&rows).unwrap();
            let v = q.get_archived().unwrap();
            v.iter().map(|s| s.len()).sum::<usize>()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = codec, archived
}
criterion_main!(benches);
