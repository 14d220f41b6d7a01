//! A large `put` encodes straight into its payload block (one copy in), and
//! a `get::<Vec<u8>>()` copies the block straight into the `Vec` it
//! returns (one copy out). Across real processes: content intact at 16 and
//! 200 MiB, a producer SIGKILLed while it encodes into a block leaks
//! nothing, `try_put` with no block is `Full`, and hostile bytes in a
//! block are `Corrupt` while the queue keeps working.

mod common;
use common::*;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use ipc_core::queue::Queue;
use ipc_core::Error;

/// A message of `len` bytes whose content depends on `seed` and on every
/// position (a 4093-byte pattern, repeated: fast to build and compare in
/// debug builds).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    let base: Vec<u8> = (0..4093)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let n = base.len().min(len - v.len());
        v.extend_from_slice(&base[..n]);
    }
    v
}

#[test]
fn sixteen_and_200_mib_messages_encoded_into_their_blocks_arrive_intact() {
    let name = unique("direct-large");
    let q = Queue::<Vec<u8>>::create(&name, 4).unwrap();
    // The first large put of a process copies its encoding into a block;
    // every one after it (while messages stay large) encodes straight in.
    let sizes = [70_000usize, 16 << 20, 200 << 20, (16 << 20) + 1, 70_000];
    let c = {
        let q = q.clone();
        fork_child(move || {
            for (k, len) in sizes.into_iter().enumerate() {
                let v = q.get().unwrap();
                if v.len() != len {
                    return 1;
                }
                if v != pattern(len, k as u8) {
                    return 2;
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

/// The producer loops `put`s of 64 MiB messages, each encoded straight
/// into a block; the parent kills it while a block is held and not yet
/// queued (`blocks_in_use > len`: mid-encode, or just after). Every
/// message queued before arrives intact, recovery frees the dead
/// producer's block, and later messages flow.
#[test]
fn producer_killed_while_encoding_into_a_block_leaks_no_block() {
    let name = unique("direct-kill");
    let q = Queue::<Vec<u8>>::create(&name, 8).unwrap();
    let len = 64 << 20;
    let p = {
        let q = q.clone();
        fork_child(move || {
            let v = pattern(len, 7);
            loop {
                let _ = q.put(&v);
            }
        })
    };
    // Consume slowly, until a block is seen held beyond the queued ones.
    let start = Instant::now();
    let mut caught = false;
    while start.elapsed() < Duration::from_secs(30) {
        if q.blocks_in_use() > q.len() && !q.is_full() {
            caught = true;
            break;
        }
        if q.len() >= 2 {
            let v = q.get().unwrap();
            assert_eq!(v.len(), len);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    kill_and_reap(p);
    assert!(caught, "never saw the producer writing a block");
    let want = pattern(len, 7);
    while let Ok(v) = q.get_timeout(Duration::from_millis(300)) {
        assert!(v == want, "a queued message arrived damaged");
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            let _ = q.get_timeout(Duration::from_millis(150));
            q.blocks_in_use() == 0
        }),
        "blocks still in use: {}",
        q.blocks_in_use()
    );
    for k in 0..3u8 {
        q.put_timeout(&pattern(3 << 20, k), Duration::from_secs(20))
            .unwrap();
        assert!(q.get_timeout(Duration::from_secs(20)).unwrap() == pattern(3 << 20, k));
    }
    assert_eq!(q.blocks_in_use(), 0);
    drop(q);
    assert_gone(&name);
}

#[test]
fn try_put_that_finds_no_block_is_full_and_holds_nothing() {
    // Capacity 4: 4 ring slots and 4 block entries. A forked producer
    // queues 4 large messages: every entry is queued.
    let q = Queue::<Vec<u8>>::new(4).unwrap();
    // A large message first, so that this process's next puts encode
    // straight into blocks.
    q.put(&pattern(300_000, 8)).unwrap();
    assert!(q.get().unwrap() == pattern(300_000, 8));
    join_ok(fork_child({
        let q = q.clone();
        move || {
            for k in 0..4u8 {
                if q.put(&pattern(300_000, k)).is_err() {
                    return 1;
                }
            }
            0
        }
    }));
    assert_eq!(q.blocks_in_use(), 4);
    assert!(matches!(q.try_put(&pattern(300_000, 9)), Err(Error::Full)));
    assert!(matches!(
        q.put_timeout(&pattern(300_000, 9), Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert_eq!(q.blocks_in_use(), 4, "a refused put holds a block");
    assert_eq!(q.len(), 4);
    // Small messages are refused by the full ring, not by the blocks.
    assert!(matches!(q.try_put(&vec![1u8; 10]), Err(Error::Full)));
    for k in 0..4u8 {
        assert!(q.get().unwrap() == pattern(300_000, k));
    }
    q.try_put(&pattern(300_000, 9)).unwrap();
    assert!(q.get().unwrap() == pattern(300_000, 9));
    assert_eq!(q.blocks_in_use(), 0);
}

/// Offset in the queue's file of the first block: the region's end,
/// rounded up to a page (the file before any block was made).
fn first_block(name: &str) -> (std::fs::File, u64) {
    let path = format!("/dev/shm/ipc.{name}");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let end = f.metadata().unwrap().len().next_multiple_of(4096);
    (f, end)
}

/// Bytes to write at file offsets.
type Pokes = Vec<(u64, Vec<u8>)>;

/// A block whose archive was scribbled on after its descriptor was queued
/// (garbage, a `Vec<u8>` root whose length runs past the message, or whose
/// offset points outside it): `get::<Vec<u8>>()` is `Corrupt`, the block
/// is freed, and the queue keeps working.
#[test]
fn hostile_archive_in_a_block_is_corrupt_for_a_vec_u8_get_and_the_queue_keeps_working() {
    let name = unique("direct-hostile");
    let q = Queue::<Vec<u8>>::create(&name, 4).unwrap();
    let (file, at) = first_block(&name);
    let len = 100_000usize; // root at `len` (4-aligned): offset i32, length u32
    let root = len as u64;
    // Offsets from the message's start in its block.
    let cases: [(&str, Pokes); 4] = [
        ("garbage", vec![(0, vec![0xa5; 256]), (root, vec![0xff; 8])]),
        (
            "length past the end",
            vec![(root + 4, (len as u32 + 1).to_le_bytes().to_vec())],
        ),
        (
            "offset before the message",
            vec![(root, (-(len as i32) - 4096).to_le_bytes().to_vec())],
        ),
        (
            "offset past the message",
            vec![(root, 64i32.to_le_bytes().to_vec())],
        ),
    ];
    for (what, pokes) in cases {
        // A forked producer queues the message; every one lands in the
        // first entry (its block reused, same size class).
        join_ok(fork_child({
            let q = q.clone();
            move || i32::from(q.put(&pattern(len, 1)).is_err())
        }));
        assert_eq!(q.blocks_in_use(), 1);
        // The message starts within the block's first page (placed away
        // from its source modulo 4 KiB): find it.
        let mut head = vec![0u8; 8192];
        file.read_exact_at(&mut head, at).unwrap();
        let start = at
            + head
                .windows(64)
                .position(|w| w == &pattern(len, 1)[..64])
                .expect("the message in its block") as u64;
        for (off, bytes) in pokes {
            file.write_all_at(&bytes, start + off).unwrap();
        }
        match q.get() {
            Err(Error::Corrupt(_)) => {}
            r => panic!("{what}: {:?}", r.map(|v| v.len())),
        }
        assert_eq!(q.blocks_in_use(), 0, "{what}: the bad block was kept");
        q.put(&pattern(len, 2)).unwrap();
        assert!(q.get().unwrap() == pattern(len, 2), "{what}");
    }
    drop(q);
    assert_gone(&name);
}
