//! `Pipe` across real processes.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ipc_core::pipe::Pipe;
use ipc_core::Error;

#[test]
fn duplex_ping_pong_with_a_forked_child() {
    let ends = Pipe::new(true).unwrap();
    let kid = fork_with(&ends, |(a, b)| {
        drop(a);
        loop {
            match b.recv::<u64>() {
                Ok(v) => b.send(&(v * 2)).unwrap(),
                Err(Error::PeerClosed) => return 0,
                Err(_) => return 1,
            }
        }
    });
    let (a, b) = ends;
    drop(b);
    for i in 0..1000u64 {
        a.send(&i).unwrap();
        assert_eq!(a.recv::<u64>().unwrap(), i * 2);
    }
    drop(a); // the child sees PeerClosed and exits 0
    join_ok(kid);
}

#[test]
fn one_way_pipe_sends_0_to_20_and_drains() {
    let ends = Pipe::new(false).unwrap();
    assert!(matches!(ends.0.send(&1u8), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        ends.1.recv::<u8>(),
        Err(Error::InvalidArgument(_))
    ));
    let kid = fork_with(&ends, |(r, w)| {
        drop(r);
        for i in 0..20i32 {
            w.send(&i).unwrap();
        }
        0 // exiting closes the write end
    });
    let (r, w) = ends;
    drop(w);
    let mut got = Vec::new();
    loop {
        match r.recv::<i32>() {
            Ok(v) => got.push(v),
            Err(Error::PeerClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    join_ok(kid);
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}

#[test]
fn bytes_poll_and_recv_into() {
    let (a, b) = Pipe::new(true).unwrap();
    assert!(!b.poll(Duration::from_millis(10)).unwrap());
    let kid = fork_with(&a, |a| {
        std::thread::sleep(Duration::from_millis(30));
        a.send_bytes(b"hello world").unwrap();
        a.send_bytes(&[7u8; 3000]).unwrap();
        0
    });
    assert!(b.poll(Duration::from_secs(10)).unwrap());
    let mut small = [0u8; 16];
    assert_eq!(b.recv_bytes_into(&mut small).unwrap(), 11);
    assert_eq!(&small[..11], b"hello world");
    // Too small: nothing is consumed, the size needed is reported.
    let e = b.recv_bytes_into(&mut small).unwrap_err();
    assert!(
        matches!(
            e,
            Error::MessageTooLarge {
                size: 3000,
                max: 16
            }
        ),
        "{e}"
    );
    assert_eq!(b.recv_bytes().unwrap(), vec![7u8; 3000]);
    join_ok(kid);
    drop(a);
}

#[test]
fn wraparound_with_mixed_sizes_preserves_every_byte() {
    let ends = Pipe::builder()
        .duplex(false)
        .capacity(4096)
        .build()
        .unwrap();
    let kid = fork_with(&ends, |(r, w)| {
        drop(r);
        for i in 0..2000usize {
            let len = (i * 37) % 1500;
            let msg: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
            w.send_bytes(&msg).unwrap();
        }
        0
    });
    let (r, w) = ends;
    drop(w);
    for i in 0..2000usize {
        let m = r.recv_bytes().unwrap();
        let len = (i * 37) % 1500;
        assert_eq!(m.len(), len);
        assert!(
            m.iter().enumerate().all(|(j, b)| *b == (i + j) as u8),
            "message {i}"
        );
    }
    join_ok(kid);
}

#[test]
fn messages_past_the_cap_are_refused_and_larger_than_the_ring_stream() {
    let (a, b) = Pipe::builder()
        .capacity(4096)
        .max_message_size(6000)
        .build()
        .unwrap();
    let e = a.send_bytes(&[0u8; 6001]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::MessageTooLarge {
                size: 6001,
                max: 6000
            }
        ),
        "{e}"
    );
    assert_eq!(a.max_message_size(), 6000);
    // Larger than the 4 KiB ring: streams through in pieces.
    let big: Vec<u8> = (0..6000u32).map(|i| i as u8).collect();
    let kid = fork_with(&b, |b| {
        let got = b.recv_bytes().unwrap();
        i32::from(got != (0..6000u32).map(|i| i as u8).collect::<Vec<u8>>())
    });
    a.send_bytes(&big).unwrap();
    join_ok(kid);
}

#[test]
fn peer_sigkilled_gives_peer_closed_within_a_second() {
    let ends = Pipe::new(true).unwrap();
    let kid = fork_with(&ends, |(a, b)| {
        drop(a);
        b.send(&1u32).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let (a, b) = ends;
    drop(b);
    assert_eq!(a.recv::<u32>().unwrap(), 1);
    let t = Instant::now();
    kill_and_reap(kid);
    let r = a.recv::<u32>();
    assert!(matches!(r, Err(Error::PeerClosed)), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(a.peer_closed());
    // Sending to a dead peer is reported, not silently accepted.
    assert!(matches!(a.send(&2u32), Err(Error::PeerClosed)));
}

#[test]
fn blocked_recv_notices_peer_death() {
    let ends = Pipe::new(true).unwrap();
    let kid = fork_with(&ends, |(a, b)| {
        drop(a);
        std::thread::sleep(Duration::from_millis(200));
        drop(b);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let (a, b) = ends;
    drop(b);
    let t = Instant::now();
    // The child still lives but closed its end: recv must not hang.
    assert!(matches!(a.recv::<u32>(), Err(Error::PeerClosed)));
    assert!(t.elapsed() < Duration::from_secs(2));
    kill_and_reap(kid);
}

#[test]
fn largest_messages_fit_at_every_ring_position() {
    // Regression (review finding 1): a frame larger than the space on both
    // sides of the write position used to wait forever on an empty ring.
    let (a, b) = Pipe::builder().capacity(4096).build().unwrap();
    let max = 2048 - 8; // the largest message one frame of a 4 KiB ring holds
    for first in [8usize, 1000, 2000, 2040] {
        a.send_bytes(&vec![1u8; first]).unwrap();
        assert_eq!(b.recv_bytes().unwrap().len(), first);
        a.send_bytes_timeout(&vec![2u8; max], Duration::from_secs(5))
            .unwrap();
        assert_eq!(b.recv_bytes().unwrap(), vec![2u8; max]);
    }
}

#[test]
fn short_timeouts_still_report_a_closed_peer() {
    let (a, b) = Pipe::new(true).unwrap();
    drop(b);
    assert!(
        a.poll(Duration::ZERO).unwrap(),
        "poll returns true so recv can report"
    );
    assert!(matches!(
        a.recv_timeout::<u8>(Duration::from_millis(1)),
        Err(Error::PeerClosed)
    ));
}

#[test]
fn a_blocked_receiver_does_not_delay_another_users_timeout() {
    // Regression (review finding 2): the end lock was held across the wait.
    let (a, b) = Pipe::new(true).unwrap();
    let b = std::sync::Arc::new(b);
    let b2 = b.clone();
    let blocked = std::thread::spawn(move || b2.recv_timeout::<u8>(Duration::from_millis(1500)));
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    assert!(matches!(
        b.recv_timeout::<u8>(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "took {:?}",
        t.elapsed()
    );
    let _ = blocked.join();
    drop(a);
}
