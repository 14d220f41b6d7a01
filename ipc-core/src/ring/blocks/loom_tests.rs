//! Loom model of the block state machine: put and get with concurrent recovery, and producers killed at its crash points.

use super::*;
use loom::sync::atomic::AtomicBool;

#[allow(dead_code)]
struct Mem(Box<BlocksHeader>, Vec<Entry>);

/// A table of one entry (the tightest case: every put and get meets
/// on it) over no real file.
fn table() -> (Arc<Mem>, Arc<Blocks>) {
    let hdr = Box::new(BlocksHeader {
        entries: AtomicU64::new(1),
        max_message: AtomicU64::new(1 << 20),
        file_end: AtomicU64::new(PAGE),
        _pad: Default::default(),
    });
    let entries = vec![Entry {
        state: AtomicU64::new(0),
        offset: AtomicU64::new(0),
        cap: AtomicU64::new(0),
        _pad: AtomicU64::new(0),
    }];
    let b = Blocks {
        hdr: &*hdr,
        entries: entries.as_ptr(),
        n: 1,
        max_message: 1 << 20,
        base: PAGE,
        file: File::open("/dev/null").unwrap(),
        maps: Mutex::new(vec![None]),
    };
    (Arc::new(Mem(hdr, entries)), Arc::new(b))
}

const P: u32 = 1;
const C: u32 = 2;

/// A producer that dies at crash point `DIE` (0: never; 1: after
/// claiming the block; 2: after pushing the descriptor, before
/// publishing), a consumer, and a recovering third party, all at once:
/// the block ends free; the consumer gets the message at most once,
/// and always if the producer did not die before pushing it.
fn producer_dies_at<const DIE: u8>() {
    let mut m = loom::model::Builder::new();
    if m.preemption_bound.is_none() {
        m.preemption_bound = Some(3);
    }
    m.check(|| {
        let (_mem, t) = table();
        // The ring, reduced to one slot: 0 empty, else `gen + 1`.
        let ring = Arc::new(AtomicU64::new(0));
        let dead = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let judge = {
            let dead = dead.clone();
            move |tag: u32| {
                if tag == P && dead.load(Ordering::SeqCst) {
                    Claimant::Dead
                } else {
                    Claimant::Alive
                }
            }
        };
        let producer = {
            let (t, ring, dead, done) = (t.clone(), ring.clone(), dead.clone(), done.clone());
            loom::thread::spawn(move || {
                let b = t.acquire(100, P).unwrap().expect("the only entry is free");
                if DIE != 1 {
                    ring.store(u64::from(b.gen) + 1, Ordering::Release);
                    if DIE != 2 {
                        t.publish(&b, P);
                    }
                }
                dead.store(DIE != 0, Ordering::SeqCst);
                done.store(true, Ordering::SeqCst);
            })
        };
        let recoverer = {
            let (t, judge) = (t.clone(), judge.clone());
            loom::thread::spawn(move || {
                t.recover(judge);
            })
        };
        // The consumer, in this thread.
        let mut got = 0;
        loop {
            let finished = done.load(Ordering::SeqCst);
            // The only consumer: a load is a take.
            let w = ring.load(Ordering::Acquire);
            if w != 0 {
                let d = Desc {
                    entry: 0,
                    gen: (w - 1) as u32,
                    len: 100,
                    at: 0,
                    producer: P,
                };
                match t.claim(&d, C).unwrap() {
                    Claim::Held(b) => {
                        got += 1;
                        t.release(b, C);
                    }
                    Claim::Stale => {}
                }
                break;
            }
            if finished {
                break;
            }
            loom::thread::yield_now();
        }
        producer.join().unwrap();
        recoverer.join().unwrap();
        t.recover(judge);
        assert!(got <= 1);
        if DIE == 0 {
            assert_eq!(got, 1, "a completed put was lost");
        }
        if DIE == 1 {
            assert_eq!(got, 0, "a message never pushed was delivered");
        }
        assert_eq!(t.in_use(), 0, "a block leaked");
    });
}

#[test]
fn block_put_and_get_with_concurrent_recovery() {
    producer_dies_at::<0>();
}

#[test]
fn block_producer_killed_after_claim_is_recovered() {
    producer_dies_at::<1>();
}

#[test]
fn block_producer_killed_after_push_before_publish_is_recovered_or_consumed() {
    producer_dies_at::<2>();
}
