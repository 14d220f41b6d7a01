//! Messages of any size through `Queue` built with defaults: large ones go
//! out of line in payload blocks of the queue's own file. Across real
//! processes, with SIGKILL at the worst moments; no block may leak and
//! nothing may be left in `/dev/shm`.

mod common;
use common::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_core::queue::{JoinableQueue, Queue, SimpleQueue};
use ipc_core::Error;

/// 4093 pseudo-random bytes (a prime length, so no page lines up).
fn base() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..4093)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A message of `len` bytes whose content depends on `seed` and on every
/// position (built and checked with memcpy/memcmp: fast in debug builds).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let b = base();
    let mut v = Vec::with_capacity(len);
    let mut at = usize::from(seed) % b.len();
    while v.len() < len {
        let n = (b.len() - at).min(len - v.len());
        v.extend_from_slice(&b[at..at + n]);
        at = 0;
    }
    v
}

fn check(v: &[u8], len: usize, seed: u8) -> bool {
    v.len() == len && v == pattern(len, seed).as_slice()
}

#[test]
fn sixteen_and_256_mib_messages_through_a_default_queue_to_a_forked_consumer() {
    let name = unique("large-default");
    let q = Queue::<Vec<u8>>::create(&name, 4).unwrap();
    let sizes = [16usize << 20, 256 << 20, 1, 100_000];
    let c = {
        let q = q.clone();
        fork_child(move || {
            for (k, len) in sizes.into_iter().enumerate() {
                let v = q.get().unwrap();
                if !check(&v, len, k as u8) {
                    return 1;
                }
            }
            0
        })
    };
    for (k, len) in sizes.into_iter().enumerate() {
        q.put(&pattern(len, k as u8)).unwrap();
    }
    join_ok(c);
    assert!(q.is_empty());
    assert_eq!(q.blocks_in_use(), 0, "a block leaked");
    drop(q);
    assert_gone(&name);
}

#[test]
fn joinable_and_simple_queues_carry_large_messages() {
    let q = JoinableQueue::<Vec<u8>>::new(2).unwrap();
    q.put(&pattern(3 << 20, 1)).unwrap();
    assert!(check(&q.get().unwrap(), 3 << 20, 1));
    q.task_done().unwrap();
    q.join();
    let s = SimpleQueue::<Vec<u8>>::new().unwrap();
    s.put(&pattern(1 << 20, 2)).unwrap();
    assert!(check(&s.get().unwrap(), 1 << 20, 2));
    assert!(s.is_empty());
}

#[test]
fn a_message_past_the_cap_is_message_too_large_never_truncated() {
    let q = Queue::<Vec<u8>>::builder()
        .max_message_size(1 << 20)
        .build()
        .unwrap();
    assert_eq!(q.max_message_size(), 1 << 20);
    match q.put(&vec![0u8; 1 << 20]) {
        Err(Error::MessageTooLarge { size, max }) => assert!(size > max && max == 1 << 20),
        r => panic!("{r:?}"),
    }
    q.put(&vec![5u8; (1 << 20) - 64]).unwrap();
    assert_eq!(q.get().unwrap(), vec![5u8; (1 << 20) - 64]);
    assert_eq!(q.blocks_in_use(), 0);
}

#[test]
fn try_put_of_a_large_message_is_full_when_every_block_is_queued() {
    // Capacity 1 still has 4 block entries; the ring slot fills first.
    let q = Queue::<Vec<u8>>::new(1).unwrap();
    q.try_put(&vec![1u8; 200_000]).unwrap();
    assert!(matches!(q.try_put(&vec![2u8; 200_000]), Err(Error::Full)));
    assert_eq!(q.blocks_in_use(), 1, "the refused put gave its block back");
    assert_eq!(q.try_get().unwrap(), vec![1u8; 200_000]);
    assert_eq!(q.blocks_in_use(), 0);
}

#[test]
fn an_anonymous_queue_travels_to_a_child_with_its_blocks() {
    let q = Queue::<Vec<u8>>::new(4).unwrap();
    // Blocks made before the child opens the queue: it maps them lazily.
    q.put(&pattern(5 << 20, 3)).unwrap();
    let c = fork_child({
        let q = q.clone();
        move || {
            let v = q.get().unwrap();
            q.put(&pattern(7 << 20, 4)).unwrap();
            i32::from(!check(&v, 5 << 20, 3))
        }
    });
    join_ok(c);
    assert!(check(&q.get().unwrap(), 7 << 20, 4));
    assert_eq!(q.blocks_in_use(), 0);
}

/// Polls (every 200 µs, for at most 20 s) until `f`; false on timeout.
fn poll(mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// A producer SIGKILLed inside the `put` of a large message, holding a
/// filled block whose descriptor it has not pushed (the ring is full):
/// the queue does not wedge, the acknowledged messages are delivered, and
/// once recovery has run (every 100 ms in a blocked caller) no block is
/// left held.
#[test]
fn producer_killed_mid_put_of_a_large_message_leaks_no_block() {
    let name = unique("large-kill-put");
    let q = Queue::<Vec<u8>>::create(&name, 2).unwrap();
    let p = {
        let q = q.clone();
        fork_child(move || {
            let v = vec![9u8; 16 << 20];
            loop {
                let _ = q.put(&v);
            }
        })
    };
    // Two messages queued, a third block claimed by the blocked put.
    let caught = poll(|| q.is_full() && q.blocks_in_use() == 3);
    kill_and_reap(p);
    assert!(caught, "never saw the producer inside its put");
    // The two acknowledged messages arrive; then messages flow again.
    for _ in 0..2 {
        assert_eq!(q.get().unwrap().len(), 16 << 20);
    }
    for k in 0..3u8 {
        q.put_timeout(&pattern(2 << 20, k), Duration::from_secs(20))
            .unwrap();
        let got = loop {
            let v = q.get_timeout(Duration::from_secs(20)).unwrap();
            if v.len() == 2 << 20 {
                break v;
            }
        };
        assert!(check(&got, 2 << 20, k));
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            let _ = q.get_timeout(Duration::from_millis(150));
            q.blocks_in_use() == 0
        }),
        "blocks still in use: {}",
        q.blocks_in_use()
    );
    drop(q);
    assert_gone(&name);
}

/// A consumer SIGKILLed while it copies a large message out of its block
/// (the ring is empty and the block still held): the block is recovered,
/// the queue keeps working, nothing leaks.
#[test]
fn consumer_killed_mid_get_of_a_large_message_leaks_no_block() {
    let name = unique("large-kill-get");
    let q = Queue::<Vec<u8>>::create(&name, 2).unwrap();
    let c = {
        let q = q.clone();
        fork_child(move || loop {
            let _ = q.get();
        })
    };
    let v = vec![3u8; 64 << 20];
    let mut caught = false;
    for _ in 0..20 {
        q.put(&v).unwrap();
        // Inside the copy out: the descriptor is taken, the block held.
        caught = poll(|| q.blocks_in_use() == 0 || q.is_empty());
        if caught && q.blocks_in_use() == 1 {
            break;
        }
        caught = false;
        assert!(poll(|| q.blocks_in_use() == 0));
    }
    kill_and_reap(c);
    assert!(caught, "never saw the consumer inside its get");
    while q.get_timeout(Duration::from_millis(300)).is_ok() {}
    for k in 0..3u8 {
        q.put_timeout(&pattern(1 << 20, k), Duration::from_secs(20))
            .unwrap();
        assert!(check(
            &q.get_timeout(Duration::from_secs(20)).unwrap(),
            1 << 20,
            k
        ));
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            let _ = q.get_timeout(Duration::from_millis(150));
            q.blocks_in_use() == 0
        }),
        "blocks still in use: {}",
        q.blocks_in_use()
    );
    drop(q);
    assert_gone(&name);
}

/// 4 producers × 4 consumers, sizes from 1 B to 8 MiB: every message is
/// delivered exactly once (bitmaps in shared memory), intact.
#[test]
fn exactly_once_with_mixed_sizes_across_four_producers_and_four_consumers() {
    const PER: u64 = 30;
    const P: u64 = 4;
    let q = Queue::<(u64, Vec<u8>)>::new(16).unwrap();
    let seen = SharedWords::new(((P * PER) as usize).div_ceil(64) + 2);
    let size = |id: u64| -> usize {
        match id % 6 {
            0 => 1,
            1 => 100,
            2 => 60_000,
            3 => 70_000,
            4 => 1 << 20,
            _ => 8 << 20,
        }
    };
    let producers: Vec<_> = (0..P)
        .map(|p| {
            let q = q.clone();
            fork_child(move || {
                for k in 0..PER {
                    let id = p * PER + k;
                    q.put(&(id, pattern(size(id), id as u8))).unwrap();
                }
                0
            })
        })
        .collect();
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            fork_child(move || loop {
                match q.get() {
                    Ok((id, v)) if id == u64::MAX => return i32::from(!v.is_empty()),
                    Ok((id, v)) => {
                        if id >= P * PER || !check(&v, size(id), id as u8) {
                            return 2;
                        }
                        let bit = 1u64 << (id % 64);
                        if seen.w(id as usize / 64).fetch_or(bit, Ordering::SeqCst) & bit != 0 {
                            return 3; // delivered twice
                        }
                    }
                    Err(_) => return 4,
                }
            })
        })
        .collect();
    for p in producers {
        join_ok(p);
    }
    for _ in 0..4 {
        q.put(&(u64::MAX, Vec::new())).unwrap();
    }
    for c in consumers {
        join_ok(c);
    }
    for id in 0..P * PER {
        assert!(
            seen.w(id as usize / 64).load(Ordering::SeqCst) & (1 << (id % 64)) != 0,
            "message {id} never arrived"
        );
    }
    assert_eq!(q.blocks_in_use(), 0);
}

/// A shared anonymous mapping of u64 words, inherited by forked children.
#[derive(Clone, Copy)]
struct SharedWords(&'static [AtomicU64]);

impl SharedWords {
    fn new(n: usize) -> SharedWords {
        let len = std::num::NonZeroUsize::new(n * 8).unwrap();
        // SAFETY: a fresh anonymous shared mapping, zero-filled, never
        // unmapped while the test runs (leaked for 'static).
        let p = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
            )
        }
        .expect("mmap");
        // SAFETY: `n` zeroed u64s, page-aligned, shared only through atomics.
        SharedWords(unsafe { std::slice::from_raw_parts(p.as_ptr().cast::<AtomicU64>(), n) })
    }
    fn w(&self, i: usize) -> &AtomicU64 {
        &self.0[i]
    }
}

/// A queue whose file cannot grow (a private 2 MiB tmpfs as `/dev/shm`,
/// in a user and mount namespace): a large put is `NoSpace`, never a
/// SIGBUS, and small messages keep flowing.
#[test]
fn a_large_put_on_a_full_file_system_is_no_space_not_sigbus() {
    let ran = in_private_shm("4m", || {
        let q = match Queue::<Vec<u8>>::create("large-nospace", 4) {
            Ok(q) => q,
            Err(_) => return 10,
        };
        match q.put(&vec![1u8; 8 << 20]) {
            Err(Error::NoSpace { .. }) => {}
            _ => return 11,
        }
        if q.blocks_in_use() != 0 {
            return 12;
        }
        if q.put(&vec![2u8; 1000]).is_err() || q.get().ok() != Some(vec![2u8; 1000]) {
            return 13;
        }
        0
    });
    if !ran {
        eprintln!("skipped: no user namespaces here");
    }
}

// Queue layout (as in `tests/crash.rs`): the slots from 8832, each a state
// word (`seq << 23 | tag`), a length, a kind and its data 16 bytes later.
const SLOTS: usize = 8832;
const TAG_BITS: u32 = 23;

fn poke64(r: &ipc_core::region::Region, at: usize, v: u64) {
    // SAFETY: `at` is within the payload (the ring's layout); we are
    // simulating another process's writes.
    unsafe { r.payload().add(at).cast::<u64>().write_volatile(v) }
}

/// This process takes tag 1 and a child that then exits tag 2 (each with a
/// put and a get): tag 2 names a dead process. Leaves the positions at 2.
fn tag_of_a_dead_process(q: &Queue<Vec<u8>>, name: &str) -> u32 {
    q.put(&vec![1]).unwrap();
    q.get().unwrap();
    let name = name.to_string();
    join_ok(fork_child(move || {
        let q = Queue::<Vec<u8>>::open(&name).unwrap();
        q.put(&vec![2]).unwrap();
        i32::from(q.get().unwrap() != [2])
    }));
    2
}

/// A consumer that died holding the ring slot of a block descriptor,
/// before it claimed the block: the ring's recovery frees the slot (its
/// message died with the consumer) and hands the descriptor back, so the
/// block is freed too instead of staying queued for ever.
#[test]
fn consumer_dead_holding_a_descriptor_slot_frees_its_block() {
    let name = unique("large-dead-slot");
    let q = Queue::<Vec<u8>>::create(&name, 2).unwrap();
    let raw = ipc_core::region::Region::open(&name, ipc_core::region::Kind::Queue).unwrap();
    let dead = tag_of_a_dead_process(&q, &name);
    q.put(&pattern(1 << 20, 5)).unwrap(); // position 2, slot 0: a descriptor
    assert_eq!(q.blocks_in_use(), 1);
    // The dead consumer claimed position 2 (state 2*2 + 1, its tag).
    poke64(&raw, SLOTS, (5 << TAG_BITS) | u64::from(dead));
    q.put(&vec![3]).unwrap(); // position 3, slot 1
                              // Position 4 needs slot 0: this put blocks and recovers it.
    q.put_timeout(&vec![4], Duration::from_secs(10)).unwrap();
    assert_eq!(q.blocks_in_use(), 0, "the dead consumer's block leaked");
    assert_eq!(q.get().unwrap(), [3]);
    assert_eq!(q.get().unwrap(), [4]);
    drop((q, raw));
    assert_gone(&name);
}
