//! Zero-copy loans across real processes, with SIGKILL at the worst
//! moments: a receiver killed holding a buffer, a sender killed mid-fill,
//! and a garbage descriptor planted in the ring.

mod common;
use common::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ipc_core::loan::LoanQueue;
use ipc_core::Error;

/// A word in an anonymous shared mapping, inherited by forked children.
fn shared_flag() -> &'static AtomicU64 {
    let len = std::num::NonZeroUsize::new(8).unwrap();
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
    // SAFETY: 8 zeroed bytes, page-aligned, shared only through atomics.
    unsafe { &*p.as_ptr().cast::<AtomicU64>() }
}

/// Waits (recovery runs in blocked calls every 100 ms) until no buffer is
/// held.
fn all_free<T: bytemuck::Pod>(q: &LoanQueue<T>) -> bool {
    eventually(Duration::from_secs(10), || {
        let _ = q.recv_timeout(Duration::from_millis(150));
        q.blocks_in_use() == 0
    })
}

#[test]
fn loans_of_f32_reach_a_forked_receiver_in_place() {
    let q = LoanQueue::<f32>::new(4).unwrap();
    let c = {
        let q = q.clone();
        fork_child(move || {
            for k in 0..3 {
                let r = q.recv().unwrap();
                let n = 1 << (10 + 4 * k);
                if r.len() != n || r.iter().enumerate().any(|(i, x)| *x != (i % 1000) as f32) {
                    return 1;
                }
            }
            0
        })
    };
    for k in 0..3 {
        let n = 1 << (10 + 4 * k);
        let mut l = q.loan(n).unwrap();
        for (i, x) in l.iter_mut().enumerate() {
            *x = (i % 1000) as f32;
        }
        l.send().unwrap();
    }
    join_ok(c);
    assert!(all_free(&q));
}

#[test]
fn a_dropped_unsent_loan_gives_its_buffer_back() {
    let q = LoanQueue::<u8>::new(2).unwrap();
    let l = q.loan(4096).unwrap();
    assert_eq!(q.blocks_in_use(), 1);
    drop(l);
    assert_eq!(q.blocks_in_use(), 0);
    assert!(matches!(q.try_recv(), Err(Error::Empty)));
}

/// The receiver is SIGKILLed while it holds a `Lent`: the buffer is
/// recovered (its message died with the receiver), the queue keeps
/// working, and nothing is left in `/dev/shm`.
#[test]
fn receiver_killed_before_it_releases_its_buffer_is_recovered() {
    let name = unique("loan-kill-recv");
    let q = LoanQueue::<u8>::builder()
        .name(&name)
        .capacity(2)
        .build()
        .unwrap();
    let holding = shared_flag();
    let c = {
        let name = name.clone();
        fork_child(move || {
            let q = LoanQueue::<u8>::open(&name).unwrap();
            let r = q.recv().unwrap();
            holding.store(u64::from(r[0]) + 1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(60));
            drop(r);
            0
        })
    };
    let mut l = q.loan(1 << 20).unwrap();
    l[0] = 7;
    l.send().unwrap();
    assert!(eventually(Duration::from_secs(20), || holding
        .load(Ordering::SeqCst)
        == 8));
    assert_eq!(q.blocks_in_use(), 1, "the receiver holds its buffer");
    kill_and_reap(c);
    assert!(
        all_free(&q),
        "the dead receiver's buffer was never recovered"
    );
    let mut l = q.loan(1 << 20).unwrap();
    l[0] = 9;
    l.send().unwrap();
    assert_eq!(q.recv().unwrap()[0], 9);
    assert!(all_free(&q));
    drop(q);
    assert_gone(&name);
}

/// The sender is SIGKILLed while it fills a loan: that buffer is never
/// delivered, it is recovered, and later loans flow.
#[test]
fn sender_killed_mid_fill_is_never_delivered_and_its_buffer_is_recovered() {
    let name = unique("loan-kill-send");
    let q = LoanQueue::<u8>::builder()
        .name(&name)
        .capacity(2)
        .build()
        .unwrap();
    let filling = shared_flag();
    let c = {
        let name = name.clone();
        fork_child(move || {
            let q = LoanQueue::<u8>::open(&name).unwrap();
            let mut l = q.loan(1 << 20).unwrap();
            l[..4096].fill(0xee);
            filling.store(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(60));
            l.send().unwrap();
            0
        })
    };
    assert!(eventually(Duration::from_secs(20), || filling
        .load(Ordering::SeqCst)
        == 1));
    assert_eq!(q.blocks_in_use(), 1);
    kill_and_reap(c);
    assert!(matches!(
        q.recv_timeout(Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    assert!(all_free(&q), "the dead sender's buffer was never recovered");
    let mut l = q.loan(10).unwrap();
    l.fill(1);
    l.send().unwrap();
    assert_eq!(&*q.recv().unwrap(), &[1u8; 10]);
    drop(q);
    assert_gone(&name);
}

// Ring layout (as in `tests/crash.rs`): slots from 8832, each a state word,
// a length and a kind, its data 16 bytes later. A loan queue's slots hold
// 32 bytes.
const SLOTS: usize = 8832;
const STRIDE: usize = 48;

/// A descriptor overwritten with garbage in the ring (by another process)
/// is `Error::Corrupt` for the receiver, consumed, and the queue keeps
/// working.
#[test]
fn a_garbage_descriptor_in_the_ring_is_corrupt_and_the_queue_keeps_working() {
    let name = unique("loan-garbage");
    let q = LoanQueue::<u8>::builder()
        .name(&name)
        .capacity(4)
        .build()
        .unwrap();
    let raw = ipc_core::region::Region::open(&name, ipc_core::region::Kind::Queue).unwrap();
    let planted = [
        // Entry index far past the table.
        (u32::MAX.to_le_bytes(), 0usize),
        // The right entry and generation, a length past the block:
        // never a read past it.
        (0u32.to_le_bytes(), 1),
        // A broken magic.
        (0u32.to_le_bytes(), 2),
    ];
    for (k, (entry, how)) in planted.into_iter().enumerate() {
        let mut l = q.loan(100).unwrap();
        l.fill(k as u8);
        l.send().unwrap();
        let at = SLOTS + (k % 4) * STRIDE + 16;
        // SAFETY: `at` lies in the ring's slot data; we play a scribbler.
        unsafe {
            let p = raw.payload().add(at);
            match how {
                0 => std::ptr::copy_nonoverlapping(entry.as_ptr(), p, 4),
                1 => p.add(8).cast::<u64>().write_unaligned(u64::MAX),
                _ => p.add(20).write(b'X'),
            }
        }
        match q.recv_timeout(Duration::from_secs(5)) {
            Err(Error::Corrupt(_)) => {}
            r => panic!("garbage descriptor {k}: {r:?}"),
        }
    }
    let mut l = q.loan(3).unwrap();
    l.copy_from_slice(b"ok!");
    l.send().unwrap();
    assert_eq!(&*q.recv().unwrap(), b"ok!");
    drop((q, raw));
    assert_gone(&name);
}

#[test]
fn a_loan_queue_travels_to_a_spawned_style_token_and_back() {
    // Through a Queue of handles, as a pool task would carry it.
    let q = LoanQueue::<u16>::new(2).unwrap();
    let handles = ipc_core::queue::Queue::<LoanQueue<u16>>::new(1).unwrap();
    handles.put(&q).unwrap();
    let c = {
        let handles = handles.clone();
        fork_child(move || {
            let q = handles.get().unwrap();
            let mut l = q.loan(2).unwrap();
            l.copy_from_slice(&[513, 1027]);
            i32::from(l.send().is_err())
        })
    };
    assert_eq!(
        &*q.recv_timeout(Duration::from_secs(20)).unwrap(),
        &[513, 1027]
    );
    join_ok(c);
}

/// The ring's process table starts at payload offset 640: 1024 packed
/// identities (`tests/crash.rs` has the same layout).
const PROCS_AT: usize = 640;
const PROCS: usize = 1024;

/// A dead receiver's tag must not be handed to a new process while a
/// buffer still names it: with the process table full of dead entries, a
/// newcomer once took the dead receiver's entry, its buffer then looked
/// held by a live process and was never recovered.
#[test]
fn a_dead_holders_tag_is_not_reused_while_its_buffer_is_unrecovered() {
    let name = unique("loan-tag-reuse");
    let q = LoanQueue::<u8>::builder()
        .name(&name)
        .capacity(2)
        .build()
        .unwrap();
    let raw = ipc_core::region::Region::open(&name, ipc_core::region::Kind::Queue).unwrap();
    let flag = shared_flag();
    // This process is entry 0; the receiver becomes entry 1 and dies
    // holding its buffer.
    q.loan(8).unwrap().send().unwrap();
    let rx = {
        let name = name.clone();
        fork_child(move || {
            let q = LoanQueue::<u8>::open(&name).unwrap();
            let r = q.recv().unwrap();
            flag.store(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(60));
            drop(r);
            0
        })
    };
    assert!(eventually(Duration::from_secs(20), || flag
        .load(Ordering::SeqCst)
        == 1));
    kill_and_reap(rx);
    // SAFETY: the table lies within the payload; we play other processes
    // registering (every other entry: the same dead identity).
    let dead = unsafe {
        raw.payload()
            .add(PROCS_AT + 8)
            .cast::<u64>()
            .read_volatile()
    };
    assert_ne!(dead, 0, "layout changed");
    for k in 2..PROCS {
        // SAFETY: as above.
        unsafe {
            raw.payload()
                .add(PROCS_AT + 8 * k)
                .cast::<u64>()
                .write_volatile(dead)
        };
    }
    // A newcomer registers (no free entry: it reuses a dead one) and stays.
    flag.store(0, Ordering::SeqCst);
    let newcomer = {
        let name = name.clone();
        fork_child(move || {
            let q = LoanQueue::<u8>::open(&name).unwrap();
            let _ = q.try_recv();
            flag.store(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(60));
            0
        })
    };
    assert!(eventually(Duration::from_secs(20), || flag
        .load(Ordering::SeqCst)
        == 1));
    let freed = all_free(&q);
    kill_and_reap(newcomer);
    assert!(
        freed,
        "the dead receiver's buffer looked held by the newcomer"
    );
    drop((q, raw));
    assert_gone(&name);
}
