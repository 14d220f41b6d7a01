//! Bulk one-way throughput: one producer (this process) and one forked
//! consumer, the same protocol for every transport, so that criterion
//! (`benches/core.rs`, group `bulk`) and the comparison runner measure the
//! same thing.
//!
//! A batch of `n` messages: the producer announces `n` on a control queue,
//! sends `n` messages of the case's size, and waits for the consumer's
//! acknowledgement after it has received (and, in copy mode, copied out)
//! all of them. The consumer checks every message's length.
//!
//! The transports are built by one helper each ([`bulk_queue`],
//! [`bulk_pipe`], [`bulk_loan`]), with their defaults.

use std::io::{Read, Write};
use std::time::Duration;

use ipc_core::pipe::{Connection, Pipe};
use ipc_core::queue::Queue;

use crate::Peer;

/// The message sizes of every bulk table: 64 B, 4 KiB, 64 KiB, 1 MiB, 16 MiB.
pub const SIZES: [usize; 5] = [64, 4 << 10, 64 << 10, 1 << 20, 16 << 20];

/// Ends a consumer's loop (a batch size no run uses).
const STOP: u64 = u64::MAX;
/// The consumer's first acknowledgement: set up and listening.
const READY: u64 = u64::MAX - 1;

/// `64 B`, `4 KiB`, `16 MiB`.
pub fn label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// Messages a transport buffers for `size`-byte messages: about 64 MiB in
/// flight at most, between 4 and 1024 messages (1024 is `Queue`'s default
/// capacity).
pub fn slots(size: usize) -> usize {
    ((64 << 20) / size.max(1)).clamp(4, 1024)
}

/// The `Queue` every bulk case uses: the defaults (messages past a slot
/// travel out of line), with a capacity of [`slots`].
pub fn bulk_queue(size: usize) -> Queue<Vec<u8>> {
    Queue::<Vec<u8>>::new(slots(size)).expect("bulk queue")
}

/// The one-way `Pipe` every bulk case uses, as `(receiver, sender)`: the
/// defaults (a message past the ring streams through it in pieces).
pub fn bulk_pipe(size: usize) -> (Connection, Connection) {
    let _ = size;
    Pipe::new(false).expect("bulk pipe")
}

/// A case that can push `n` messages and wait until they were consumed.
pub trait Bulk {
    /// Sends `n` messages and returns once the consumer has all of them.
    fn run(&mut self, n: u64);
}

/// A producer in this process and a consumer in a forked peer.
pub struct OneWay {
    send: Box<dyn FnMut()>,
    ctl: Queue<u64>,
    done: Queue<u64>,
    peer: Option<Peer>,
}

impl OneWay {
    /// Forks the consumer, which runs `setup_rx` (giving its receive-one
    /// function), acknowledges, then serves batches; then runs `setup_tx`
    /// here (giving the send-one function).
    pub fn new<R: FnMut()>(
        setup_rx: impl FnOnce() -> R,
        setup_tx: impl FnOnce() -> Box<dyn FnMut()>,
    ) -> OneWay {
        let ctl = Queue::<u64>::new(4).expect("control queue");
        let done = Queue::<u64>::new(4).expect("done queue");
        let peer = Peer::spawn(|| {
            let mut recv_one = setup_rx();
            if done.put(&READY).is_err() {
                return;
            }
            while let Ok(n) = ctl.get() {
                if n == STOP {
                    break;
                }
                for _ in 0..n {
                    recv_one();
                }
                if done.put(&n).is_err() {
                    break;
                }
            }
            // Dropping `recv_one` here lets a peer clean up (iceoryx2).
        });
        assert_eq!(done.get().expect("consumer ready"), READY);
        OneWay {
            send: setup_tx(),
            ctl,
            done,
            peer: Some(peer),
        }
    }
}

impl Bulk for OneWay {
    fn run(&mut self, n: u64) {
        self.ctl.put(&n).expect("announce batch");
        for _ in 0..n {
            (self.send)();
        }
        assert_eq!(self.done.get().expect("batch acknowledged"), n);
    }
}

impl Drop for OneWay {
    fn drop(&mut self) {
        let _ = self.ctl.put(&STOP);
        if let Some(p) = self.peer.take() {
            p.join_timeout(Duration::from_secs(5));
        }
    }
}

/// Panics unless a received message has the expected length (checked for
/// every message of every case, so that no transport can win by dropping).
#[inline]
fn check(len: usize, size: usize) {
    assert_eq!(len, size, "a bulk message arrived truncated or padded");
}

/// The OS baseline: an anonymous pipe (default 64 KiB kernel buffer),
/// `write_all` / `read_exact` into a reused buffer.
pub fn os_pipe(size: usize) -> OneWay {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let (mut r, mut w) = (std::fs::File::from(r), std::fs::File::from(w));
    let msg = vec![0xabu8; size];
    OneWay::new(
        move || {
            let mut buf = vec![0u8; size];
            move || {
                r.read_exact(&mut buf).expect("read");
                check(std::hint::black_box(&buf).len(), size);
            }
        },
        move || Box::new(move || w.write_all(&msg).expect("write")),
    )
}

/// `Queue<Vec<u8>>`: `put(&msg)` (encode into the slot), `get()` (a fresh
/// `Vec`, copy out).
pub fn ipc_queue(size: usize) -> OneWay {
    let q = bulk_queue(size);
    let q2 = q.clone();
    let msg = vec![0xabu8; size];
    OneWay::new(
        move || {
            move || {
                let m = q2.get().expect("get");
                check(std::hint::black_box(&m).len(), size);
            }
        },
        move || Box::new(move || q.put(&msg).expect("put")),
    )
}

/// `Pipe`: `send_bytes(&msg)`, `recv_bytes()` (a fresh `Vec`, copy out).
pub fn ipc_pipe(size: usize) -> OneWay {
    let (r, w) = bulk_pipe(size);
    let msg = vec![0xabu8; size];
    OneWay::new(
        move || {
            move || {
                let m = r.recv_bytes().expect("recv_bytes");
                check(std::hint::black_box(&m).len(), size);
            }
        },
        move || Box::new(move || w.send_bytes(&msg).expect("send_bytes")),
    )
}

// The loan API: copy in, zero-copy read.
/// The `LoanQueue` every loan case uses.
pub fn bulk_loan(size: usize) -> ipc_core::loan::LoanQueue<u8> {
    let _ = size;
    ipc_core::loan::LoanQueue::<u8>::new(slots(size)).expect("loan queue")
}

/// `LoanQueue<u8>`: `loan(size)`, fill in place, `send()`; `recv()` reads
/// the first and last byte in shared memory and gives the buffer back.
pub fn ipc_loan(size: usize) -> OneWay {
    let q = bulk_loan(size);
    let q2 = q.clone();
    let msg = vec![0xabu8; size];
    OneWay::new(
        move || {
            move || {
                let l = q2.recv().expect("recv");
                check(l.len(), size);
                std::hint::black_box((l[0], l[l.len() - 1]));
            }
        },
        move || {
            Box::new(move || {
                let mut l = q.loan(size).expect("loan");
                l.copy_from_slice(&msg);
                l.send().expect("send");
            })
        },
    )
}

/// The ceiling: `copy_from_slice` between two buffers in this process.
pub struct Memcpy {
    src: Vec<u8>,
    dst: Vec<u8>,
}

impl Memcpy {
    /// Two `size`-byte buffers, both touched once.
    pub fn new(size: usize) -> Memcpy {
        Memcpy {
            src: vec![0xab; size],
            dst: vec![1; size],
        }
    }
}

impl Bulk for Memcpy {
    fn run(&mut self, n: u64) {
        for _ in 0..n {
            std::hint::black_box(&mut self.dst).copy_from_slice(std::hint::black_box(&self.src));
        }
    }
}
