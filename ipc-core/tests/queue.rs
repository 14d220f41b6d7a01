//! `Queue`, `JoinableQueue` and `SimpleQueue` across real processes.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::queue::{JoinableQueue, Queue, SimpleQueue};
use ipc_core::region::{Kind, Region};
use ipc_core::Error;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq, Clone)]
struct Job {
    id: u64,
    name: String,
    payload: Vec<u32>,
}

#[test]
fn children_fill_parent_drains() {
    let q = Queue::<Job>::new(16).unwrap();
    let kids: Vec<_> = (0..4u64)
        .map(|k| {
            let q = q.clone();
            fork_child(move || {
                for i in 0..100 {
                    let j = Job {
                        id: k * 1000 + i,
                        name: format!("job-{k}-{i}"),
                        payload: vec![i as u32; 3],
                    };
                    q.put(&j).unwrap();
                }
                0
            })
        })
        .collect();
    let mut ids = Vec::new();
    for _ in 0..400 {
        let j = q.get_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(j.name, format!("job-{}-{}", j.id / 1000, j.id % 1000));
        assert_eq!(j.payload, vec![(j.id % 1000) as u32; 3]);
        ids.push(j.id);
    }
    kids.into_iter().for_each(join_ok);
    ids.sort();
    let want: Vec<u64> = (0..4)
        .flat_map(|k| (0..100).map(move |i| k * 1000 + i))
        .collect();
    assert_eq!(ids, want);
    assert!(q.is_empty());
    // Per-producer FIFO order also holds; checked in `fifo_per_producer`.
}

#[test]
fn fifo_per_producer_and_blocking_put_when_full() {
    let q = Queue::<u32>::new(2).unwrap();
    let q2 = q.clone();
    let kid = fork_child(move || {
        for i in 0..1000 {
            q2.put(&i).unwrap(); // blocks whenever the parent lags
        }
        0
    });
    std::thread::sleep(Duration::from_millis(20));
    assert!(q.is_full());
    for i in 0..1000 {
        assert_eq!(q.get().unwrap(), i);
    }
    join_ok(kid);
}

#[test]
fn named_queue_between_processes_and_type_check() {
    let name = unique("queue");
    let q = Queue::<String>::create(&name, 8).unwrap();
    let n = name.clone();
    let kid = fork_child(move || {
        let q = Queue::<String>::open(&n).unwrap();
        let s = q.get_timeout(Duration::from_secs(10)).unwrap();
        q.put(&format!("{s} back")).unwrap();
        0
    });
    q.put(&"there".to_string()).unwrap();
    join_ok(kid);
    assert_eq!(q.get().unwrap(), "there back");
    assert!(matches!(
        Queue::<u64>::open(&name),
        Err(Error::Incompatible { what: "type", .. })
    ));
    drop(q);
    assert_gone(&name);
    assert!(matches!(
        Queue::<String>::open(&name),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn nowait_and_timeouts() {
    let q = Queue::<u8>::new(1).unwrap();
    assert!(matches!(q.try_get(), Err(Error::Empty)));
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(30)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(30));
    q.try_put(&1).unwrap();
    assert!(matches!(q.try_put(&2), Err(Error::Full)));
    assert!(matches!(
        q.put_timeout(&2, Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert_eq!(q.len(), 1);
    assert_eq!(q.try_get().unwrap(), 1);
}

#[test]
fn oversized_message_is_refused_not_truncated() {
    let q = Queue::<Vec<u8>>::builder()
        .capacity(4)
        .max_message_size(1024)
        .build()
        .unwrap();
    let e = q.put(&vec![0u8; 2000]).unwrap_err();
    assert!(
        matches!(e, Error::MessageTooLarge { size, max: 1024 } if size > 2000),
        "{e}"
    );
    assert!(q.is_empty());
    q.put(&vec![1u8; 900]).unwrap();
    assert_eq!(q.get().unwrap(), vec![1u8; 900]);
}

#[test]
fn close_wakes_a_blocked_consumer_in_another_process() {
    let q = Queue::<u32>::new(4).unwrap();
    q.put(&5).unwrap();
    let q2 = q.clone();
    let kid = fork_child(move || {
        let first = q2.get().unwrap();
        // Blocks until the parent closes the queue.
        i32::from(!(first == 5 && matches!(q2.get(), Err(Error::Closed))))
    });
    std::thread::sleep(Duration::from_millis(50));
    q.close();
    join_ok(kid);
    assert!(matches!(q.put(&1), Err(Error::Closed)));
}

#[test]
fn joinable_queue_join_waits_for_task_done_in_children() {
    let q = JoinableQueue::<u32>::new(64).unwrap();
    for i in 0..40 {
        q.put(&i).unwrap();
    }
    let kids: Vec<_> = (0..2)
        .map(|_| {
            let q = q.clone();
            fork_child(move || loop {
                match q.queue().try_get() {
                    Ok(_) => {
                        std::thread::sleep(Duration::from_millis(1));
                        q.task_done().unwrap();
                    }
                    Err(Error::Empty) => return 0,
                    Err(_) => return 1,
                }
            })
        })
        .collect();
    assert!(q.join_timeout(Duration::from_secs(20)));
    kids.into_iter().for_each(join_ok);
    assert!(matches!(q.task_done(), Err(Error::ReleasedTooManyTimes)));
}

#[test]
fn simple_queue_across_fork() {
    let q = SimpleQueue::<String>::new().unwrap();
    let q2 = q.clone();
    let kid = fork_child(move || {
        q2.put(&"from child".into()).unwrap();
        0
    });
    assert_eq!(q.get().unwrap(), "from child");
    join_ok(kid);
    assert!(q.is_empty());
}

#[test]
fn garbage_written_into_slots_gives_typed_errors() {
    let name = unique("garbage");
    let q = Queue::<String>::create(&name, 4).unwrap();
    let raw = Region::open(&name, Kind::Queue).unwrap();
    let marker = "MARKER-0123456789-abcdefghij";

    // 1. Random bytes over the archived message.
    q.put(&marker.to_string()).unwrap();
    let at = find(&raw, marker.as_bytes()).expect("message bytes in the slot");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // SAFETY: within the slot's data area (messages start 16-aligned
        // and the slot holds 64 KiB).
        unsafe {
            raw.payload()
                .add(at - (at % 16) + i)
                .write_volatile(x as u8)
        };
    }
    assert!(matches!(q.get(), Err(Error::Corrupt(_))));

    // 2. A length larger than the slot.
    q.put(&marker.to_string()).unwrap();
    let at = find(&raw, marker.as_bytes()).expect("message bytes in the slot");
    let data_start = at - (at % 16);
    // SAFETY: the slot header (seq u64, len u32, pad u32) precedes the data.
    unsafe {
        raw.payload()
            .add(data_start - 8)
            .cast::<u32>()
            .write_volatile(u32::MAX)
    };
    assert!(matches!(q.get(), Err(Error::Corrupt(_))));

    // The queue keeps working afterwards.
    q.put(&"fine".to_string()).unwrap();
    assert_eq!(q.get().unwrap(), "fine");
    drop((q, raw));
    assert_gone(&name);
}

/// Puts `marker`, writes `state` over its slot's state word, and checks
/// that `get` reports `Corrupt` well within its timeout (`within`), after
/// which the queue keeps working.
fn garbage_state_word_gives_corrupt(tag: &str, marker: &str, state: u64, within: Duration) {
    let name = unique(tag);
    let q = Queue::<String>::create(&name, 2).unwrap();
    let raw = Region::open(&name, Kind::Queue).unwrap();
    q.put(&marker.to_string()).unwrap();
    let at = find(&raw, marker.as_bytes()).expect("message bytes in the slot");
    let state_at = at - (at % 16) - 16;
    // SAFETY: the slot's state word (u64) precedes the 16-aligned data.
    unsafe {
        raw.payload()
            .add(state_at)
            .cast::<u64>()
            .write_volatile(state)
    };
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_secs(5)),
        Err(Error::Corrupt(_))
    ));
    assert!(t.elapsed() < within);
    // The garbage slot was skipped: the queue keeps working.
    q.put(&"fine".to_string()).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), "fine");
    drop((q, raw));
    assert_gone(&name);
}

#[test]
fn garbage_sequence_numbers_give_corrupt_instead_of_spinning() {
    // Regression (review finding 6): a slot sequence number ahead of the
    // position made get/put spin forever. The state word is `seq << 23 |
    // tag`; a sequence number far ahead is garbage.
    garbage_state_word_gives_corrupt(
        "garbage-seq",
        "SEQ-MARKER-0123456789",
        1000 << 23,
        Duration::from_secs(1),
    );
}

#[test]
fn claim_naming_no_known_process_gives_corrupt_instead_of_wedging() {
    // A state word claiming the slot for tag 1000, an empty entry of the
    // process table: the message is reported lost, and the queue goes on.
    garbage_state_word_gives_corrupt(
        "garbage-tag",
        "TAG-MARKER-0123456789",
        1000,
        Duration::from_secs(2),
    );
}
