//! `Pipe` messages larger than one frame of the ring, across real
//! processes: any size with the defaults, order with mixed sizes, and a
//! sender or a receiver SIGKILLed mid-message.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::pipe::Pipe;
use ipc_core::Error;
use nix::sys::signal::{kill, Signal};

/// `len` bytes whose every 4 KiB block is distinct (block index in its
/// first 8 bytes), from a seed: cheap to make and to check in debug builds.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let block: Vec<u8> = (0..4096u32).map(|i| (i as u8) ^ seed).collect();
    let mut v = Vec::with_capacity(len);
    let mut k = 0u64;
    while v.len() < len {
        let mut b = block.clone();
        b[..8].copy_from_slice(&k.to_le_bytes());
        let n = (len - v.len()).min(4096);
        v.extend_from_slice(&b[..n]);
        k += 1;
    }
    v
}

const MIB: usize = 1 << 20;

#[test]
fn messages_of_16_and_256_mib_cross_a_default_pipe_both_ways() {
    let ends = Pipe::new(true).unwrap();
    let kid = fork_with(&ends, |(a, b)| {
        drop(a);
        // Echo raw bytes, then a typed message (decoded and re-encoded).
        for _ in 0..2 {
            let m = b.recv_bytes().unwrap();
            b.send_bytes(&m).unwrap();
        }
        let v: Vec<u8> = b.recv().unwrap();
        i32::from(v != pattern(2 * MIB, 9)) + i32::from(b.send(&v).is_err())
    });
    let (a, b) = ends;
    drop(b);
    for (len, seed) in [(16 * MIB, 1u8), (256 * MIB, 2)] {
        let m = pattern(len, seed);
        a.send_bytes(&m).unwrap();
        let back = a.recv_bytes().unwrap();
        assert_eq!(back.len(), len);
        assert!(back == m, "{len}-byte message came back altered");
    }
    let v = pattern(2 * MIB, 9);
    a.send(&v).unwrap();
    assert!(a.recv::<Vec<u8>>().unwrap() == v);
    join_ok(kid);
}

#[test]
fn mixed_sizes_from_1_byte_to_8_mib_arrive_whole_and_in_order() {
    let sizes: Vec<usize> = [
        1,
        7,
        100,
        4096,
        131_064,
        131_065,
        200_000,
        MIB,
        3,
        8 * MIB,
        65_536,
        1,
        2 * MIB + 5,
        0,
        8 * MIB,
        12,
    ]
    .into_iter()
    .cycle()
    .take(40)
    .collect();
    let ends = Pipe::new(false).unwrap();
    let s2 = sizes.clone();
    let kid = fork_with(&ends, move |(r, w)| {
        drop(r);
        for (i, n) in s2.iter().enumerate() {
            w.send_bytes(&pattern(*n, i as u8)).unwrap();
        }
        0
    });
    let (r, w) = ends;
    drop(w);
    for (i, n) in sizes.iter().enumerate() {
        let m = r.recv_bytes().unwrap();
        assert_eq!(m.len(), *n, "message {i}");
        assert!(m == pattern(*n, i as u8), "message {i} altered");
    }
    assert!(matches!(r.recv_bytes(), Err(Error::PeerClosed)));
    join_ok(kid);
}

/// Waits until the ring has data and the sender has had time to fill it.
fn wait_until_ring_filled(r: &ipc_core::pipe::Connection) {
    assert!(r.poll(Duration::from_secs(20)).unwrap());
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn a_sender_killed_mid_message_neither_wedges_nor_corrupts_the_pipe() {
    let (r, w) = Pipe::new(false).unwrap();
    // The victim blocks mid-message (nobody reads yet), holding the push lock.
    let victim = fork_with(&w, |w| {
        let _ = w.send_bytes(&pattern(8 * MIB, 3));
        0
    });
    wait_until_ring_filled(&r);
    kill_and_reap(victim);
    // The parent still holds the sending end, so the peer is not gone: the
    // receiver must find out from the dead holder of the push lock.
    let t = Instant::now();
    let e = r.recv_timeout::<Vec<u8>>(Duration::from_millis(300));
    assert!(matches!(e, Err(Error::Timeout)), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // A second victim, killed mid-message, and a sender after it that
    // recovers the push lock: the receiver discards the partial message
    // when the next one begins.
    let victim = fork_with(&w, |w| {
        let _ = w.send_bytes(&pattern(8 * MIB, 4));
        0
    });
    wait_until_ring_filled(&r);
    kill_and_reap(victim);
    let next = fork_with(&w, |w| {
        w.send(&b"after".to_vec()).unwrap();
        w.send_bytes(&pattern(3 * MIB, 5)).unwrap();
        0
    });
    drop(w);
    let m = r.recv_timeout::<Vec<u8>>(Duration::from_secs(20)).unwrap();
    assert_eq!(m, b"after");
    assert!(r.recv_bytes().unwrap() == pattern(3 * MIB, 5));
    join_ok(next);
    assert!(matches!(r.recv_bytes(), Err(Error::PeerClosed)));
}

#[test]
fn a_receiver_killed_mid_message_lets_the_next_receiver_get_the_next_whole_message() {
    let (r, w) = Pipe::new(false).unwrap();
    let sender = fork_with(&w, |w| {
        w.send_bytes(&pattern(16 * MIB, 6)).unwrap();
        w.send_bytes(b"next").unwrap();
        w.send_bytes(&pattern(2 * MIB, 7)).unwrap();
        0
    });
    drop(w);
    wait_until_ring_filled(&r);
    // Freeze the sender mid-message, let a receiver take what is in the
    // ring and wait for the rest (holding the pop lock), then kill it.
    kill(sender, Signal::SIGSTOP).unwrap();
    let victim = fork_with(&r, |r| {
        let _ = r.recv_bytes();
        0
    });
    assert!(
        eventually(Duration::from_secs(20), || !r.poll(Duration::ZERO).unwrap()),
        "the receiver never drained the ring"
    );
    std::thread::sleep(Duration::from_millis(100));
    kill_and_reap(victim);
    kill(sender, Signal::SIGCONT).unwrap();
    // The rest of the 16 MiB message is skipped; the next ones are whole.
    assert_eq!(r.recv_bytes().unwrap(), b"next");
    assert!(r.recv_bytes().unwrap() == pattern(2 * MIB, 7));
    join_ok(sender);
    assert!(matches!(r.recv_bytes(), Err(Error::PeerClosed)));
}

#[test]
fn a_sender_that_times_out_mid_message_leaves_no_partial_message_behind() {
    let (r, w) = Pipe::builder()
        .duplex(false)
        .capacity(4096)
        .build()
        .unwrap();
    let e = w.send_bytes_timeout(&pattern(100_000, 1), Duration::from_millis(50));
    assert!(matches!(e, Err(Error::Timeout)), "{e:?}");
    // The receiver takes the partial message's pieces, then the next
    // message (it sees it begin, or the push lock free, and discards).
    let rx = std::thread::spawn(move || r.recv_bytes());
    w.send_bytes(b"whole").unwrap();
    assert_eq!(rx.join().unwrap().unwrap(), b"whole");
}

#[test]
fn recv_bytes_into_a_short_buffer_reports_a_large_messages_size_and_consumes_nothing() {
    let (r, w) = Pipe::new(false).unwrap();
    let m = pattern(MIB, 8);
    let kid = fork_with(&w, |w| i32::from(w.send_bytes(&pattern(MIB, 8)).is_err()));
    drop(w);
    let mut small = vec![0u8; 1000];
    assert!(r.poll(Duration::from_secs(20)).unwrap());
    let e = r.recv_bytes_into(&mut small).unwrap_err();
    assert!(
        matches!(e, Error::MessageTooLarge { size, max: 1000 } if size == MIB),
        "{e}"
    );
    let mut big = vec![0u8; MIB + 10];
    assert_eq!(r.recv_bytes_into(&mut big).unwrap(), MIB);
    assert!(big[..MIB] == m[..]);
    join_ok(kid);
}
