//! Stress: 4 producer and 4 consumer processes pass 1,000,000 messages
//! through one `Queue`; every message arrives exactly once.

mod common;
use common::*;

use ipc_core::queue::Queue;
use ipc_core::value::Array;

const PRODUCERS: u64 = 4;
const CONSUMERS: usize = 4;
const PER_PRODUCER: u64 = 250_000;

#[test]
fn four_by_four_processes_one_million_messages_exactly_once() {
    let q = Queue::<u64>::new(1024).unwrap();
    // Per consumer: count, sum, and sum of squares (catches duplicates that
    // happen to compensate a loss in the plain sum).
    let stats = Array::new(&[0u64; CONSUMERS * 3]).unwrap();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|c| {
            let (q, stats) = (q.clone(), stats.clone());
            fork_child(move || {
                let (mut n, mut s, mut s2) = (0u64, 0u64, 0u64);
                loop {
                    match q.get() {
                        Ok(u64::MAX) => break,
                        Ok(v) => {
                            n += 1;
                            s = s.wrapping_add(v);
                            s2 = s2.wrapping_add(v.wrapping_mul(v));
                        }
                        Err(_) => return 1,
                    }
                }
                stats.set(c * 3, n).unwrap();
                stats.set(c * 3 + 1, s).unwrap();
                stats.set(c * 3 + 2, s2).unwrap();
                0
            })
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            fork_child(move || {
                for i in 0..PER_PRODUCER {
                    q.put(&(p * PER_PRODUCER + i)).unwrap();
                }
                0
            })
        })
        .collect();
    producers.into_iter().for_each(join_ok);
    for _ in 0..CONSUMERS {
        q.put(&u64::MAX).unwrap();
    }
    consumers.into_iter().for_each(join_ok);
    let st = stats.to_vec().unwrap();
    let total = PRODUCERS * PER_PRODUCER;
    let n: u64 = (0..CONSUMERS).map(|c| st[c * 3]).sum();
    let s = (0..CONSUMERS).fold(0u64, |a, c| a.wrapping_add(st[c * 3 + 1]));
    let s2 = (0..CONSUMERS).fold(0u64, |a, c| a.wrapping_add(st[c * 3 + 2]));
    assert_eq!(n, total);
    assert_eq!(s, (0..total).fold(0u64, |a, v| a.wrapping_add(v)));
    assert_eq!(
        s2,
        (0..total).fold(0u64, |a, v| a.wrapping_add(v.wrapping_mul(v)))
    );
    assert!(q.is_empty());
}
