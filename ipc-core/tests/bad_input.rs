//! Bad input through the public API: each case gives its typed error.

mod common;
use common::*;

use std::time::Duration;

use ipc_core::pipe::Pipe;
use ipc_core::queue::Queue;
use ipc_core::region::{Kind, Region};
use ipc_core::sync::{Barrier, Event, Lock, Semaphore};
use ipc_core::value::{Array, Value};
use ipc_core::Error;

#[test]
fn opening_a_missing_name_is_not_found() {
    let n = unique("missing");
    assert!(matches!(Lock::open(&n), Err(Error::NotFound { .. })));
    assert!(matches!(Queue::<u8>::open(&n), Err(Error::NotFound { .. })));
    assert!(matches!(Value::<u8>::open(&n), Err(Error::NotFound { .. })));
}

#[test]
fn invalid_names_are_refused() {
    for n in ["", "a/b", "../etc", "with space", "ü"] {
        assert!(
            matches!(Lock::create(n), Err(Error::InvalidName { .. })),
            "{n:?}"
        );
        assert!(
            matches!(Queue::<u8>::open(n), Err(Error::InvalidName { .. })),
            "{n:?}"
        );
    }
    let long = "x".repeat(201);
    assert!(matches!(
        Event::create(&long),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn opening_a_region_of_another_kind_is_incompatible() {
    let n = unique("kind");
    let _q = Queue::<u8>::create(&n, 4).unwrap();
    for e in [
        Lock::open(&n).unwrap_err(),
        Semaphore::open(&n).unwrap_err(),
        Barrier::open(&n).unwrap_err(),
        Value::<u8>::open(&n).unwrap_err(),
    ] {
        assert!(matches!(e, Error::Incompatible { what: "kind", .. }), "{e}");
    }
}

#[test]
fn corrupted_header_is_incompatible_in_another_process() {
    let n = unique("corrupt");
    let lock = Lock::create(&n).unwrap();
    let raw = Region::open(&n, Kind::Lock).unwrap();
    // SAFETY: scribbling over the region header (magic, first 8 bytes) on
    // purpose; payload() - HEADER_LEN is the start of the mapping.
    unsafe {
        raw.payload()
            .sub(ipc_core::region::HEADER_LEN)
            .cast::<u64>()
            .write_volatile(0x0bad_0bad_0bad_0bad)
    };
    let n2 = n.clone();
    let kid = fork_child(move || {
        i32::from(!matches!(
            Lock::open(&n2),
            Err(Error::Incompatible { what: "magic", .. })
        ))
    });
    join_ok(kid);
    drop((lock, raw));
    assert_gone(&n);
}

#[test]
fn size_mismatch_is_incompatible() {
    let n = unique("size");
    let _r = Region::builder(Kind::Raw)
        .name(&n)
        .size(100)
        .create()
        .unwrap();
    let e = Region::open_with(&n, Kind::Raw, 0, Some(200), Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Incompatible {
                what: "payload size",
                ..
            }
        ),
        "{e}"
    );
    // A value region whose stored length exceeds the mapping is corrupt.
    let vn = unique("arrlen");
    let a = Array::create(&vn, &[1u64, 2]).unwrap();
    let raw = Region::open(&vn, Kind::Array).unwrap();
    // SAFETY: the length word sits at offset 16 of the payload (after the lock).
    unsafe { raw.payload().add(16).cast::<u64>().write_volatile(1 << 40) };
    assert!(matches!(Array::<u64>::open(&vn), Err(Error::Corrupt(_))));
    drop((a, raw));
}

#[test]
fn oversized_messages_are_refused_everywhere() {
    let q = Queue::<String>::builder()
        .capacity(2)
        .max_message_size(64)
        .build()
        .unwrap();
    assert!(matches!(
        q.put(&"x".repeat(100)),
        Err(Error::MessageTooLarge { .. })
    ));
    assert!(matches!(
        q.try_put(&"x".repeat(100)),
        Err(Error::MessageTooLarge { .. })
    ));
    let (a, _b) = Pipe::builder()
        .capacity(4096)
        .max_message_size(4096)
        .build()
        .unwrap();
    assert!(matches!(
        a.send(&vec![0u8; 10_000]),
        Err(Error::MessageTooLarge { .. })
    ));
}

#[test]
fn zero_sizes_are_invalid_arguments() {
    assert!(matches!(
        Queue::<u8>::new(0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(Barrier::new(0), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        ipc_core::sync::BoundedSemaphore::new(0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Region::builder(Kind::Raw).size(0).create(),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn name_taken_is_already_exists() {
    let n = unique("taken");
    let _l = Lock::create(&n).unwrap();
    assert!(matches!(Lock::create(&n), Err(Error::AlreadyExists { .. })));
}

#[test]
fn gc_removes_regions_of_dead_creators_only() {
    let n = unique("gc");
    let n2 = n.clone();
    let kid = fork_child(move || {
        let mut r = Region::builder(Kind::Raw)
            .name(&n2)
            .size(64)
            .create()
            .unwrap();
        r.set_unlink_on_drop(false);
        0 // exits without unlinking: the region is orphaned
    });
    join_ok(kid);
    assert!(std::path::Path::new(&format!("/dev/shm/ipc.{n}")).exists());
    let alive = Region::builder(Kind::Raw)
        .name(unique("gc-alive"))
        .size(64)
        .create()
        .unwrap();
    let removed = Region::gc().unwrap();
    assert!(removed.contains(&n), "{removed:?}");
    assert_gone(&n);
    assert!(Region::open(alive.name().unwrap(), Kind::Raw).is_ok());
}
