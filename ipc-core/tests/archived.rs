//! `Queue::get_archived`: a message read in place, validated in private
//! memory, across real processes.

mod common;
use common::*;

use ipc_core::queue::Queue;
use ipc_core::region::{Kind, Region};
use ipc_core::Error;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq, Clone)]
struct Batch {
    id: u64,
    tag: String,
    rows: Vec<Row>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq, Clone)]
struct Row {
    key: String,
    values: Vec<f64>,
    flag: Option<u32>,
}

fn batch(id: u64, rows: usize) -> Batch {
    Batch {
        id,
        tag: format!("batch-{id}"),
        rows: (0..rows)
            .map(|i| Row {
                key: format!("row-{i}"),
                values: vec![i as f64; i % 7],
                flag: (i % 3 == 0).then_some(i as u32),
            })
            .collect(),
    }
}

/// Every field of `b` as an archived batch equals `want`'s.
fn same(b: &ArchivedBatch, want: &Batch) -> bool {
    b.id == want.id
        && b.tag == want.tag.as_str()
        && b.rows.len() == want.rows.len()
        && b.rows.iter().zip(&want.rows).all(|(a, w)| {
            a.key == w.key.as_str()
                && a.values
                    .iter()
                    .map(|v| v.to_native())
                    .eq(w.values.iter().copied())
                && a.flag.as_ref().map(|f| f.to_native()) == w.flag
        })
}

#[test]
fn nested_batches_from_a_forked_producer_are_read_in_place() {
    let q = Queue::<Batch>::new(8).unwrap();
    let kid = fork_with(&q, |q| {
        // Inline (small) and out-of-line (past the 64 KiB slot) messages.
        for (id, rows) in [(1, 3), (2, 5000), (3, 0)] {
            if q.put(&batch(id, rows)).is_err() {
                return 1;
            }
        }
        0
    });
    for (id, rows) in [(1, 3), (2, 5000), (3, 0)] {
        let b = q.get_archived().unwrap();
        assert!(same(&b, &batch(id, rows)), "batch {id} read in place");
        assert_eq!(b.deserialize().unwrap(), batch(id, rows));
    }
    join_ok(kid);
    assert_eq!(q.blocks_in_use(), 0, "the large message's block was freed");
}

#[test]
fn an_archived_message_is_unchanged_by_a_scribbler_after_the_get() {
    let name = unique("archived-scribble");
    let q = Queue::<Batch>::create(&name, 4).unwrap();
    let want = batch(42, 20);
    q.put(&want).unwrap();
    let raw = Region::open(&name, Kind::Queue).unwrap();
    let at = find(&raw, b"batch-42").expect("the message's bytes in its slot");
    let held = q.get_archived().unwrap();
    // Another process overwrites the slot the message travelled in.
    let kid = fork_with(&raw, |raw| {
        for i in 0..4096.min(raw.payload_len() - (at & !4095)) {
            // SAFETY: within the region's payload (bounded above).
            unsafe { raw.payload().add((at & !4095) + i).write_volatile(0xff) };
        }
        0
    });
    join_ok(kid);
    assert!(
        find(&raw, b"batch-42").is_none(),
        "the scribbler hit the slot"
    );
    // What we hold was checked and copied before: the scribble cannot reach it.
    assert!(same(&held, &want));
    drop((held, q, raw));
    assert_gone(&name);
}

#[test]
fn a_scribbled_message_is_corrupt_for_get_archived_and_the_queue_keeps_working() {
    let name = unique("archived-corrupt");
    let q = Queue::<Batch>::create(&name, 4).unwrap();
    let raw = Region::open(&name, Kind::Queue).unwrap();
    q.put(&batch(7, 4)).unwrap();
    let at = find(&raw, b"batch-7").expect("the message's bytes in its slot");
    // A child rewrites the archive's bytes (the root and its relative
    // pointers sit after the strings, at the end of the message).
    let kid = fork_with(&raw, |raw| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..512 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // SAFETY: within the slot's data area (the slot holds 64 KiB).
            unsafe { raw.payload().add((at & !15) + i).write_volatile(x as u8) };
        }
        0
    });
    join_ok(kid);
    assert!(matches!(q.get_archived(), Err(Error::Corrupt(_))));
    q.put(&batch(8, 2)).unwrap();
    assert!(same(&q.try_get_archived().unwrap(), &batch(8, 2)));
    drop((q, raw));
    assert_gone(&name);
}

#[test]
fn pipe_batches_from_a_forked_sender_are_read_in_place() {
    let (a, b) = ipc_core::pipe::Pipe::new(true).unwrap();
    // Small, and larger than the 256 KiB ring (streamed in pieces).
    let sizes = [(1, 3), (2, 20_000), (3, 0)];
    let kid = fork_with(&b, move |b| {
        for (id, rows) in sizes {
            if b.send(&batch(id, rows)).is_err() {
                return 1;
            }
        }
        0
    });
    for (id, rows) in sizes {
        let m = a.recv_archived::<Batch>().unwrap();
        assert!(same(&m, &batch(id, rows)), "batch {id} read in place");
    }
    join_ok(kid);
}

#[test]
fn byte_messages_inline_and_in_blocks_are_read_in_place() {
    let q = Queue::<Vec<u8>>::new(4).unwrap();
    let sizes = [10usize, 1 << 20];
    let kid = fork_with(&q, move |q| {
        for n in sizes {
            if q.put(&vec![n as u8 ^ 0x5a; n]).is_err() {
                return 1;
            }
        }
        0
    });
    for n in sizes {
        let m = q.get_archived().unwrap();
        assert_eq!(m.len(), n);
        assert!(m.iter().all(|&b| b == n as u8 ^ 0x5a));
    }
    join_ok(kid);
    assert_eq!(q.blocks_in_use(), 0);
}
