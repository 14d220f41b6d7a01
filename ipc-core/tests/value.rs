//! `Value`, `Array`, `RawValue`, `RawArray` across real processes.

mod common;
use common::*;

use ipc_core::value::{Array, RawArray, RawValue, Value};
use ipc_core::Error;
use std::time::Duration;

#[test]
fn value_update_is_atomic_across_children() {
    let v = Value::new(0u64).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            let v = v.clone();
            fork_child(move || {
                for _ in 0..10_000 {
                    v.update(|x| *x += 1).unwrap();
                }
                0
            })
        })
        .collect();
    kids.into_iter().for_each(join_ok);
    assert_eq!(v.get().unwrap(), 40_000);
}

#[test]
fn value_get_lock_guards_several_operations() {
    let v = Value::new(0i64).unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| {
            let v = v.clone();
            fork_child(move || {
                let lock = v.get_lock();
                for _ in 0..5_000 {
                    let _g = lock.acquire().unwrap();
                    let x = v.get_unlocked();
                    v.set_unlocked(x + 1);
                }
                0
            })
        })
        .collect();
    kids.into_iter().for_each(join_ok);
    assert_eq!(v.get().unwrap(), 10_000);
}

#[test]
fn named_value_and_array_opened_by_another_process() {
    let vn = unique("value");
    let an = unique("array");
    let v = Value::create(&vn, 1.5f64).unwrap();
    let a = Array::create(&an, &[1u32, 2, 3, 4]).unwrap();
    let (vn2, an2) = (vn.clone(), an.clone());
    let kid = fork_child(move || {
        let v = Value::<f64>::open(&vn2).unwrap();
        let a = Array::<u32>::open(&an2).unwrap();
        v.set(v.get().unwrap() * 2.0).unwrap();
        for i in 0..a.len() {
            a.update(i, |x| *x *= 10).unwrap();
        }
        let wrong = matches!(Value::<u32>::open(&vn2), Err(Error::Incompatible { .. }))
            && matches!(
                Array::<u32>::open(&vn2),
                Err(Error::Incompatible { what: "kind", .. })
            );
        i32::from(!wrong)
    });
    join_ok(kid);
    assert_eq!(v.get().unwrap(), 3.0);
    assert_eq!(a.to_vec().unwrap(), vec![10, 20, 30, 40]);
    assert!(matches!(
        a.get(4),
        Err(Error::IndexOutOfRange { index: 4, len: 4 })
    ));
    assert!(matches!(
        a.copy_from_slice(&[1, 2]),
        Err(Error::InvalidArgument(_))
    ));
    a.copy_from_slice(&[4, 3, 2, 1]).unwrap();
    assert_eq!(a.to_vec().unwrap(), vec![4, 3, 2, 1]);
    drop((v, a));
    assert_gone(&vn);
    assert_gone(&an);
}

#[test]
fn raw_value_and_raw_array_share_writes() {
    let v = RawValue::new(0u32).unwrap();
    let a = RawArray::new(&[0u8; 8]).unwrap();
    let (v2, a2) = (v.clone(), a.clone());
    let kid = fork_child(move || {
        v2.set(77);
        for i in 0..8 {
            a2.set(i, i as u8 + 1).unwrap();
        }
        i32::from(a2.set(8, 0).is_ok())
    });
    join_ok(kid);
    assert_eq!(v.get(), 77);
    assert_eq!(a.to_vec(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn empty_array_is_refused() {
    assert!(matches!(
        Array::<u8>::new(&[]),
        Err(Error::InvalidArgument(_))
    ));
}

/// Issue 14, item 18: `Value(..., lock=some_lock)`. The value is guarded by
/// the given lock: while another process holds that lock, an update waits.
#[test]
fn value_built_with_an_existing_lock_waits_for_that_lock_across_processes() {
    use ipc_core::sync::Lock;
    let lock = Lock::new().unwrap();
    let v = Value::builder(0u64).lock(lock.clone()).build().unwrap();
    let w = Value::builder(0u64).lock(lock.clone()).build().unwrap();
    // [holding, marker]
    let shared = RawArray::new(&[0u64; 2]).unwrap();
    let (l2, s2) = (lock.clone(), shared.clone());
    let holder = fork_child(move || {
        let _g = l2.acquire().unwrap();
        s2.set(0, 1).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        s2.set(1, 77).unwrap(); // written while holding the lock
        0
    });
    assert!(eventually(Duration::from_secs(10), || shared
        .get(0)
        .unwrap()
        == 1));
    let (v2, s3) = (v.clone(), shared.clone());
    let updater = fork_child(move || {
        // Must wait for the holder: then it sees the marker.
        let x = v2.update(|x| *x = s3.get(1).unwrap()).unwrap();
        i32::from(x != 77)
    });
    join_ok(holder);
    join_ok(updater);
    assert_eq!(v.get().unwrap(), 77);
    // One lock held across both values; their own calls still work.
    {
        let l = v.get_lock();
        let _g = l.acquire().unwrap();
        assert!(w.get_lock().try_acquire().is_err(), "the same lock");
        w.set(v.get().unwrap() + 1).unwrap();
    }
    assert_eq!(w.get().unwrap(), 78);
}

#[test]
fn named_value_with_an_existing_lock_is_opened_with_that_lock_only() {
    use ipc_core::sync::Lock;
    let (vn, ln) = (unique("value-ext"), unique("lock-ext"));
    let lock = Lock::create(&ln).unwrap();
    let v = Value::builder(5u32)
        .name(&vn)
        .lock(lock.clone())
        .build()
        .unwrap();
    let a = Array::builder(&[1u8, 2])
        .name(format!("{vn}-a"))
        .lock(lock.clone())
        .build()
        .unwrap();
    let (n, l) = (vn.clone(), ln.clone());
    let kid = fork_child(move || {
        // Without its lock, opening is refused rather than silently using
        // another lock.
        let refused = matches!(
            Value::<u32>::open(&n),
            Err(Error::Incompatible { what: "lock", .. })
        ) && matches!(
            Array::<u8>::open(&format!("{n}-a")),
            Err(Error::Incompatible { what: "lock", .. })
        );
        let lock = Lock::open(&l).unwrap();
        let v = Value::<u32>::open_with_lock(&n, lock.clone()).unwrap();
        let a = Array::<u8>::open_with_lock(&format!("{n}-a"), lock.clone()).unwrap();
        let g = lock.acquire().unwrap();
        let ok = v.get().unwrap() == 5 && a.to_vec().unwrap() == vec![1, 2];
        v.set(6).unwrap();
        drop(g);
        i32::from(!(refused && ok))
    });
    join_ok(kid);
    assert_eq!(v.get().unwrap(), 6);
    // A value with its own lock refuses an external one.
    let own = unique("value-own");
    let _o = Value::create(&own, 1u8).unwrap();
    assert!(matches!(
        Value::<u8>::open_with_lock(&own, lock.clone()),
        Err(Error::Incompatible { what: "lock", .. })
    ));
    drop((v, a, lock));
    assert_gone(&vn);
    assert_gone(&ln);
}

/// `Value(..., lock=False)` / `Array(..., lock=False)`: raw, shared with a child.
#[test]
fn value_and_array_built_without_a_lock_are_raw_and_shared() {
    let v = Value::builder(1.5f64).build_raw().unwrap();
    let a = Array::builder(&[0u16; 3]).build_raw().unwrap();
    let (v2, a2) = (v.clone(), a.clone());
    let kid = fork_child(move || {
        v2.set(2.5);
        a2.set(2, 9).unwrap();
        0
    });
    join_ok(kid);
    assert_eq!(v.get(), 2.5);
    assert_eq!(a.to_vec(), vec![0, 0, 9]);
    let lock = ipc_core::sync::Lock::new().unwrap();
    assert!(matches!(
        Value::builder(0u8).lock(lock).build_raw(),
        Err(Error::InvalidArgument(_))
    ));
}
