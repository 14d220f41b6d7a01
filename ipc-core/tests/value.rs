//! `Value`, `Array`, `RawValue`, `RawArray` across real processes.

mod common;
use common::*;

use ipc_core::value::{Array, RawArray, RawValue, Value};
use ipc_core::Error;

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
