//! Chaos soak: 4 producer and 4 consumer processes on one named `Queue`,
//! one of them SIGKILLed every 50-500 ms and replaced, for
//! `IPC_SOAK_SECS` seconds (default 10; the target run is 600).
//!
//! Pins issue 14.1 (a queue wedged for good when a process died between
//! claiming a slot and recording itself): no put or get may wait longer
//! than 20 s (a wedge), no message may arrive twice, and the acknowledged
//! messages that never arrive are at most the consumers killed inside
//! `get`.

mod common;
use common::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_core::queue::Queue;
use nix::unistd::Pid;

const PRODUCERS: usize = 4;
const CONSUMERS: usize = 4;
/// Message ids the bitmaps can hold (lazily mapped: untouched pages cost
/// nothing).
const MAX_IDS: u64 = 1 << 32;
const WEDGE: Duration = Duration::from_secs(20);
const STOP: u64 = u64::MAX;

/// Shared accounting, in an anonymous shared mapping inherited by every
/// forked child.
struct Book {
    words: &'static [AtomicU64],
}

// Word layout.
const NEXT_ID: usize = 0;
const DUPLICATES: usize = 1;
const WEDGED: usize = 2;
const STOPPING: usize = 3;
/// Per consumer: 1 while inside `get` or recording what it got.
const IN_GET: usize = 8;
const BITMAPS: usize = 64;
const BITMAP_WORDS: usize = (MAX_IDS / 64) as usize;

impl Book {
    fn new() -> Book {
        let words = BITMAPS + 2 * BITMAP_WORDS;
        let len = std::num::NonZeroUsize::new(words * 8).unwrap();
        // SAFETY: a fresh anonymous shared mapping, zero-filled, never
        // unmapped while the test runs (leaked for 'static).
        let p = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED | nix::sys::mman::MapFlags::MAP_NORESERVE,
            )
        }
        .expect("mmap");
        // SAFETY: `words` zeroed u64s, 8-aligned (page-aligned), shared
        // between processes only through atomics.
        let words = unsafe { std::slice::from_raw_parts(p.as_ptr().cast::<AtomicU64>(), words) };
        Book { words }
    }
    fn w(&self, i: usize) -> &AtomicU64 {
        &self.words[i]
    }
    /// Sets bit `id` of bitmap `which` (0 acked, 1 delivered); returns
    /// whether it was set already.
    fn mark(&self, which: usize, id: u64) -> bool {
        let word = BITMAPS + which * BITMAP_WORDS + (id / 64) as usize;
        let bit = 1u64 << (id % 64);
        self.words[word].fetch_or(bit, Ordering::SeqCst) & bit != 0
    }
    fn is_marked(&self, which: usize, id: u64) -> bool {
        let word = BITMAPS + which * BITMAP_WORDS + (id / 64) as usize;
        self.words[word].load(Ordering::SeqCst) & (1u64 << (id % 64)) != 0
    }
}

fn producer(name: &str, book: &'static Book) -> Pid {
    let name = name.to_string();
    fork_child(move || {
        let q = Queue::<u64>::open(&name).unwrap();
        while book.w(STOPPING).load(Ordering::SeqCst) == 0 {
            let id = book.w(NEXT_ID).fetch_add(1, Ordering::SeqCst);
            if id >= MAX_IDS {
                return 0;
            }
            match q.put_timeout(&id, WEDGE) {
                Ok(()) => {
                    book.mark(0, id);
                }
                Err(_) => {
                    book.w(WEDGED).fetch_add(1, Ordering::SeqCst);
                    return 3;
                }
            }
        }
        0
    })
}

fn consumer(name: &str, c: usize, book: &'static Book) -> Pid {
    let name = name.to_string();
    fork_child(move || {
        let q = Queue::<u64>::open(&name).unwrap();
        loop {
            book.w(IN_GET + c).store(1, Ordering::SeqCst);
            let got = q.get_timeout(WEDGE);
            let id = match got {
                Ok(STOP) => {
                    book.w(IN_GET + c).store(0, Ordering::SeqCst);
                    return 0;
                }
                Ok(id) => id,
                Err(_) => {
                    book.w(WEDGED).fetch_add(1, Ordering::SeqCst);
                    return 3;
                }
            };
            if book.mark(1, id) {
                book.w(DUPLICATES).fetch_add(1, Ordering::SeqCst);
            }
            book.w(IN_GET + c).store(0, Ordering::SeqCst);
        }
    })
}

/// xorshift64*: enough randomness to pick victims and delays.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn queue_never_wedges_under_random_sigkills() {
    let secs: u64 = std::env::var("IPC_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let book: &'static Book = Box::leak(Box::new(Book::new()));
    let name = unique("soak");
    let q = Queue::<u64>::create(&name, 64).unwrap();
    let mut prods: Vec<Pid> = (0..PRODUCERS).map(|_| producer(&name, book)).collect();
    let mut cons: Vec<Pid> = (0..CONSUMERS).map(|c| consumer(&name, c, book)).collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("soak: {secs} s, seed {seed:#x}");
    let mut rng = Rng(seed);
    let (mut kills, mut consumer_kills_in_get) = (0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50 + rng.next(451)));
        let v = rng.next((PRODUCERS + CONSUMERS) as u64) as usize;
        if v < PRODUCERS {
            kill_and_reap(prods[v]);
            prods[v] = producer(&name, book);
        } else {
            let c = v - PRODUCERS;
            kill_and_reap(cons[c]);
            // Dead now: its flag says where it was.
            if book.w(IN_GET + c).swap(0, Ordering::SeqCst) == 1 {
                consumer_kills_in_get += 1;
            }
            cons[c] = consumer(&name, c, book);
        }
        kills += 1;
        assert_eq!(
            book.w(WEDGED).load(Ordering::SeqCst),
            0,
            "a put or get wedged"
        );
    }
    book.w(STOPPING).store(1, Ordering::SeqCst);
    for p in prods {
        join_ok(p);
    }
    for _ in 0..CONSUMERS {
        q.put_timeout(&STOP, WEDGE).expect("the queue wedged");
    }
    for c in cons {
        join_ok(c);
    }
    let sent = book.w(NEXT_ID).load(Ordering::SeqCst).min(MAX_IDS);
    let (mut acked, mut lost, mut unacked_delivered) = (0u64, 0u64, 0u64);
    for id in 0..sent {
        match (book.is_marked(0, id), book.is_marked(1, id)) {
            (true, true) => acked += 1,
            (true, false) => {
                acked += 1;
                lost += 1
            }
            (false, true) => unacked_delivered += 1,
            (false, false) => {}
        }
    }
    let dups = book.w(DUPLICATES).load(Ordering::SeqCst);
    eprintln!(
        "soak: {kills} kills ({consumer_kills_in_get} consumers inside get), \
         {acked} acknowledged, {lost} lost, {dups} duplicates, \
         {unacked_delivered} delivered unacknowledged (producer killed after the put)"
    );
    assert_eq!(
        book.w(WEDGED).load(Ordering::SeqCst),
        0,
        "a put or get wedged"
    );
    assert_eq!(dups, 0, "duplicates");
    assert!(
        lost <= consumer_kills_in_get,
        "lost {lost} > consumers killed inside get {consumer_kills_in_get}"
    );
    assert!(acked > 0);
    assert!(q.is_empty());
    drop(q);
    assert_gone(&name);
}
