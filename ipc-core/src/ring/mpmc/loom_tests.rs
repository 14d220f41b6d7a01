//! Loom models of the ring: exactly once, and no wedge when a party dies at any crash point.

use super::*;
use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;

#[allow(dead_code)]
struct Mem(Box<MpmcHeader>, Vec<SlotHeader>, Vec<u8>);

fn ring(cap: u64) -> (Arc<Mem>, Arc<Mpmc>) {
    let hdr = Box::new(MpmcHeader {
        capacity: AtomicU64::new(cap),
        slot_size: AtomicU64::new(8),
        closed: AtomicU32::new(0),
        unfinished: AtomicU32::new(0),
        enqueue_pos: Padded(AtomicU64::new(0)),
        dequeue_pos: Padded(AtomicU64::new(0)),
        not_empty: Padded(WaitPoint::new()),
        not_full: Padded(WaitPoint::new()),
    });
    let slots: Vec<SlotHeader> = (0..cap)
        .map(|i| SlotHeader {
            state: AtomicU64::new(pack(2 * i, 0)),
            len: AtomicU32::new(0),
            kind: AtomicU32::new(0),
        })
        .collect();
    let mut data = vec![0u8; cap as usize * 8];
    let r = Mpmc {
        hdr: &*hdr,
        procs: std::ptr::null(),
        slots: data.as_mut_ptr(),
        cap,
        slot_size: 8,
        stride: 8,
        me: std::sync::atomic::AtomicU64::new(0),
        loom_slots: slots.as_ptr(),
    };
    (Arc::new(Mem(hdr, slots, data)), Arc::new(r))
}

/// Runs a model with at most 3 preemptions per execution (loom's
/// guidance: bugs almost always show within 2 or 3), unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Which tags belong to "processes" that have died (index = tag).
fn graveyard() -> Arc<Vec<AtomicBool>> {
    Arc::new((0..4).map(|_| AtomicBool::new(false)).collect())
}

fn judge(dead: &[AtomicBool], t: u32) -> Claimant {
    if dead[t as usize].load(Ordering::SeqCst) {
        Claimant::Dead
    } else {
        Claimant::Alive
    }
}

fn read_byte(p: *const u8, _: usize, _: u32) -> u8 {
    // SAFETY: every message in these models is one byte, readable while
    // the slot is held.
    unsafe { p.read() }
}

/// Pops one byte as `me`, recovering dead claims while the ring is empty.
fn pop_recovering(r: &Mpmc, me: u32, dead: &[AtomicBool]) -> u8 {
    loop {
        match r.try_pop(me, read_byte) {
            Pop::Item(v) => return v,
            Pop::Corrupt(_) | Pop::Broken => panic!("corrupt"),
            Pop::Empty => {
                r.recover_with(|t| judge(&dead, t), |_, _| ());
                loom::thread::yield_now();
            }
        }
    }
}

/// Pushes one byte as `me`, recovering dead claims while the ring is full.
fn push_recovering(r: &Mpmc, v: u8, me: u32, dead: &[AtomicBool]) {
    while r.try_push(&[v], me) != Push::Done {
        r.recover_with(|t| judge(&dead, t), |_, _| ());
        loom::thread::yield_now();
    }
}

#[test]
fn two_producers_one_consumer_exactly_once() {
    model(|| {
        let (_mem, r) = ring(2);
        let dead = graveyard();
        let ps: Vec<_> = (1..=2u8)
            .map(|v| {
                let r = r.clone();
                let dead = dead.clone();
                loom::thread::spawn(move || push_recovering(&r, v, u32::from(v), &dead))
            })
            .collect();
        let mut got = vec![pop_recovering(&r, 3, &dead), pop_recovering(&r, 3, &dead)];
        for p in ps {
            p.join().unwrap();
        }
        got.sort();
        assert_eq!(got, vec![1, 2]);
    });
}

#[test]
fn wraparound_with_concurrent_consumer() {
    model(|| {
        let (_mem, r) = ring(1);
        let dead = graveyard();
        let c = {
            let (r, dead) = (r.clone(), dead.clone());
            loom::thread::spawn(move || {
                vec![pop_recovering(&r, 2, &dead), pop_recovering(&r, 2, &dead)]
            })
        };
        for v in [7u8, 8] {
            push_recovering(&r, v, 1, &dead);
        }
        assert_eq!(c.join().unwrap(), vec![7, 8]);
    });
}

/// A producer killed at crash point `DIE` while another producer and a
/// consumer run: the consumer gets the live producer's message exactly
/// once (and, if the dying one had finished its copy but not released,
/// nothing else), and never waits for ever.
fn producer_killed_at<const DIE: u8>() {
    model(|| {
        let (_mem, r) = ring(2);
        let dead = graveyard();
        let dying = {
            let (r, dead) = (r.clone(), dead.clone());
            loom::thread::spawn(move || {
                assert_eq!(r.push_dying_at::<DIE>(&[9], 0, 1), Push::Done);
                dead[1].store(true, Ordering::SeqCst);
            })
        };
        let live = {
            let (r, dead) = (r.clone(), dead.clone());
            loom::thread::spawn(move || push_recovering(&r, 5, 2, &dead))
        };
        assert_eq!(pop_recovering(&r, 3, &dead), 5);
        live.join().unwrap();
        dying.join().unwrap();
        // The dead producer's slot is a tombstone (or recovered into one
        // on the next try): the ring holds nothing else.
        r.recover_with(|t| judge(&dead, t), |_, _| ());
        assert!(matches!(r.try_pop(3, read_byte), Pop::Empty));
    });
}

#[test]
fn producer_killed_after_claim_before_moving_the_position() {
    producer_killed_at::<1>();
}

#[test]
fn producer_killed_after_moving_the_position() {
    producer_killed_at::<2>();
}

#[test]
fn producer_killed_after_copy_before_release() {
    producer_killed_at::<3>();
}

/// A consumer killed at crash point `DIE` holding the only slot: a
/// producer blocked on the full ring recovers the slot, and the next
/// message is delivered exactly once (the first died with its consumer).
fn consumer_killed_at<const DIE: u8>() {
    model(|| {
        let (_mem, r) = ring(1);
        let dead = graveyard();
        assert_eq!(r.try_push(&[1], 1), Push::Done);
        let dying = {
            let (r, dead) = (r.clone(), dead.clone());
            loom::thread::spawn(move || {
                let got = r.pop_dying_at::<DIE, u8>(2, read_byte);
                assert!(!matches!(got, Pop::Empty | Pop::Broken));
                dead[2].store(true, Ordering::SeqCst);
            })
        };
        push_recovering(&r, 2, 1, &dead);
        assert_eq!(pop_recovering(&r, 3, &dead), 2);
        dying.join().unwrap();
        assert!(matches!(r.try_pop(3, read_byte), Pop::Empty));
    });
}

#[test]
fn consumer_killed_after_claim_before_moving_the_position() {
    consumer_killed_at::<1>();
}

#[test]
fn consumer_killed_after_moving_the_position() {
    consumer_killed_at::<2>();
}

#[test]
fn consumer_killed_after_read_before_release() {
    consumer_killed_at::<3>();
}
