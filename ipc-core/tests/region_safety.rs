//! Regions that must not be trusted, lost or turned into signals (issue 14):
//! another user's region, or one open to other users, is refused (item 8);
//! `gc` removes only what nobody uses, never another user's file (item 9);
//! a full `/dev/shm` is an error, not a SIGBUS (item 2); a region cannot be
//! resized under its users, and a truncated one is refused (item 3).
//!
//! Tests that need a `/dev/shm` of their own (to fill it, to run `gc`
//! without touching the regions of tests running alongside, or to let
//! another user create files) run in a forked child inside a private mount
//! namespace, with a fresh tmpfs mounted over `/dev/shm`: nothing leaks to
//! the machine, and the tmpfs goes with the namespace. They need root (CI
//! runs as root); without it they print why they are skipped.

mod common;

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::{
    fork_child, fork_with, in_private_shm, join_ok, kill_and_reap, unique, wait_exit_within,
};
use ipc_core::queue::Queue;
use ipc_core::region::{CreateMode, Kind, Region, HEADER_LEN};
use ipc_core::sync::{Event, Lock};
use ipc_core::value::RawValue;
use ipc_core::Error;
use nix::sys::wait::WaitStatus;

/// The uid of `nobody`, the "other user" of these tests.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn path_of(name: &str) -> String {
    format!("/dev/shm/ipc.{name}")
}

/// In a forked child: become `nobody` (group and user).
fn become_nobody() {
    // SAFETY: plain credential calls with valid arguments.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(NOBODY), 0);
        assert_eq!(libc::setuid(NOBODY), 0);
    }
}

/// A child that another user runs: it creates a valid queue holding a
/// message under `name`, opens its file to everybody, and dies without
/// cleaning up (as an attacker pre-creating the name would).
fn plant_foreign_queue(name: &str) {
    let n = name.to_owned();
    join_ok(fork_child(move || {
        become_nobody();
        let q = Queue::<String>::create(&n, 4).unwrap();
        q.put(&"from the attacker".to_string()).unwrap();
        std::fs::set_permissions(path_of(&n), std::fs::Permissions::from_mode(0o666)).unwrap();
        std::mem::forget(q); // no unlink
        0
    }));
    let meta = std::fs::metadata(path_of(name)).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (NOBODY, 0o666));
}

#[test]
fn open_refuses_a_region_owned_by_another_user() {
    if !is_root() {
        eprintln!("SKIPPED: creating a file as another user needs root");
        return;
    }
    in_private_shm("8m", || {
        let n = unique("foreign");
        plant_foreign_queue(&n);
        let foreign = |e: &Error| matches!(e, Error::ForeignOwner { uid: NOBODY, .. });
        let e = Queue::<String>::open(&n).unwrap_err();
        assert!(foreign(&e), "{e:?}");
        let e = Region::open(&n, Kind::Queue).unwrap_err();
        assert!(foreign(&e), "{e:?}");
        let len = std::fs::metadata(path_of(&n)).unwrap().len() as usize;
        let e = Region::builder(Kind::Queue)
            .name(&n)
            .size(len - HEADER_LEN)
            .create_mode(CreateMode::OpenOrCreate)
            .create()
            .unwrap_err();
        assert!(foreign(&e), "{e:?}");
        assert!(e.to_string().contains("uid 65534"), "{e}");
        0
    });
}

#[test]
fn gc_never_removes_another_users_region() {
    if !is_root() {
        eprintln!("SKIPPED: creating a file as another user needs root");
        return;
    }
    in_private_shm("8m", || {
        let n = unique("gc-foreign");
        plant_foreign_queue(&n);
        // We are root, its creator is dead and nobody maps it: still not
        // ours to remove, nor to list.
        let removed = Region::gc().unwrap();
        assert!(!removed.contains(&n), "{removed:?}");
        assert!(std::path::Path::new(&path_of(&n)).exists());
        assert!(Region::list().unwrap().iter().all(|r| r.name != n));
        0
    });
}

#[test]
fn open_refuses_a_region_open_to_other_users() {
    let n = unique("mode");
    // A queue of ours holding a message, its file opened up to everybody
    // (anyone could have written it).
    let q = Queue::<u32>::create(&n, 4).unwrap();
    q.put(&7).unwrap();
    std::fs::set_permissions(path_of(&n), std::fs::Permissions::from_mode(0o666)).unwrap();
    let len = std::fs::metadata(path_of(&n)).unwrap().len() as usize;
    // Another process refuses it, however it asks.
    let n2 = n.clone();
    join_ok(fork_child(move || {
        let insecure = |e: &Error| matches!(e, Error::InsecureMode { mode: 0o666, .. });
        let errors = [
            Queue::<u32>::open(&n2).map(drop).unwrap_err(),
            Region::open(&n2, Kind::Queue).map(drop).unwrap_err(),
            Region::builder(Kind::Queue)
                .name(&n2)
                .size(len - HEADER_LEN)
                .create_mode(CreateMode::OpenOrCreate)
                .create()
                .map(drop)
                .unwrap_err(),
        ];
        for e in &errors {
            assert!(insecure(e), "{e:?}");
        }
        0
    }));
    drop(q);
    // Nor can such a region be made on purpose.
    let e = Region::builder(Kind::Raw)
        .name(unique("mode-666"))
        .size(64)
        .mode(0o666)
        .create()
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
}

#[test]
fn create_on_a_full_dev_shm_is_an_error_not_sigbus() {
    let ran = in_private_shm("1m", || {
        // A queue made while there is room: large puts into it must work
        // once /dev/shm is full (its pages were reserved at creation).
        let q = Queue::<Vec<u8>>::builder()
            .name(unique("full-q"))
            .capacity(2)
            .max_message_size(128 * 1024)
            .build()
            .unwrap();
        let mut regions = Vec::new();
        let mut fill = |size: usize| loop {
            match Region::builder(Kind::Raw)
                .name(unique("fill"))
                .size(size)
                .create()
            {
                Ok(r) => regions.push(r),
                Err(e) => break e,
            }
            assert!(regions.len() < 300, "a 1 MiB /dev/shm never filled up");
        };
        let e = fill(32 * 1024);
        assert!(
            matches!(e, Error::NoSpace { name: Some(_), size } if size == 32 * 1024 + HEADER_LEN),
            "{e:?}"
        );
        assert!(e.to_string().contains("/dev/shm"), "{e}");
        // Fill the last pages too.
        let e = fill(64);
        assert!(matches!(e, Error::NoSpace { .. }), "{e:?}");
        // The failed creations left nothing behind.
        let files = std::fs::read_dir("/dev/shm").unwrap().count();
        assert_eq!(files, regions.len() + 1);
        // Objects built on regions report the same error.
        let e = Lock::create(&unique("full-lock")).unwrap_err();
        assert!(matches!(e, Error::NoSpace { .. }), "{e:?}");
        let e = Queue::<u64>::create(&unique("full-q2"), 16).unwrap_err();
        assert!(matches!(e, Error::NoSpace { .. }), "{e:?}");
        // Every page handed out is really there.
        for r in &regions {
            // SAFETY: the payload is `payload_len` writable bytes, ours.
            unsafe { std::ptr::write_bytes(r.payload(), 0xa5, r.payload_len()) };
        }
        let big = vec![7u8; 100_000];
        for _ in 0..3 {
            match q.put(&big) {
                Ok(()) => assert_eq!(q.get().unwrap(), big),
                // A queue that carries large messages out of line may need
                // more room: an error then, never a signal.
                Err(Error::NoSpace { .. }) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        // Room comes back when a region goes.
        regions.truncate(regions.len() - 2);
        assert!(Region::builder(Kind::Raw)
            .name(unique("fill-again"))
            .size(64)
            .create()
            .is_ok());
        0
    });
    if !ran {
        eprintln!("SKIPPED: create_on_a_full_dev_shm_is_an_error_not_sigbus");
    }
}

#[test]
fn named_and_small_anonymous_regions_reserve_their_pages() {
    let size = 512 * 1024;
    let named = Region::builder(Kind::Raw)
        .name(unique("reserve"))
        .size(size)
        .create()
        .unwrap();
    let anonymous = Region::builder(Kind::Raw).size(size).create().unwrap();
    for r in [&named, &anonymous] {
        let allocated = r.file().metadata().unwrap().blocks() * 512;
        assert!(
            allocated >= (size + HEADER_LEN) as u64,
            "{:?}: {allocated} bytes allocated of {}",
            r.name(),
            size + HEADER_LEN
        );
    }
}

#[test]
fn ftruncate_of_an_anonymous_region_through_proc_fails_with_eperm() {
    let len = 256 * 1024;
    let r = Region::builder(Kind::Raw).size(len).create().unwrap();
    // SAFETY: the payload is `len` writable bytes, ours.
    unsafe { std::ptr::write_bytes(r.payload(), 1, len) };
    let seals = ipc_core::sys::shm::seals(r.file()).unwrap();
    assert_eq!(
        seals & (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL),
        libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL
    );
    let locator = r.locator();
    assert!(locator.starts_with("/proc/"), "{locator}");
    // Another process reaches the memfd through /proc, as any process of
    // the same user can, and tries to shrink and to grow it.
    // The descriptor's path, without the keep-alive's query.
    let loc = locator.split('?').next().unwrap().to_string();
    join_ok(fork_child(move || {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&loc)
            .unwrap();
        for size in [0, 4096, 4 * len as u64] {
            let e = f.set_len(size).unwrap_err();
            if e.raw_os_error() != Some(libc::EPERM) {
                eprintln!("ftruncate to {size}: {e}");
                return 1;
            }
        }
        0
    }));
    // The users are unharmed: every byte is still there, for us and for a
    // process that opens it afresh.
    // SAFETY: the payload is `len` readable bytes, mapped while `r` lives.
    let all_ones = unsafe { std::slice::from_raw_parts(r.payload(), len) }
        .iter()
        .all(|b| *b == 1);
    assert!(all_ones);
    let loc = locator.clone();
    join_ok(fork_child(move || {
        let o = Region::open_locator(&loc, Kind::Raw, 0, Some(len)).unwrap();
        // SAFETY: as above, for `o`.
        let last = unsafe { o.payload().add(len - 1).read_volatile() };
        i32::from(last != 1)
    }));
}

#[test]
fn open_of_a_truncated_named_region_is_an_error_not_sigbus() {
    let n = unique("trunc");
    let r = Region::builder(Kind::Raw)
        .name(&n)
        .size(64 * 1024)
        .create()
        .unwrap();
    // Shrink keeping the header, grow, cut into the header, empty it.
    for size in [4096u64, 200_000, 100, 0] {
        let p = path_of(&n);
        join_ok(fork_child(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(size).unwrap();
            0
        }));
        // A fresh open, in yet another process: a typed error, no signal.
        let n2 = n.clone();
        join_ok(fork_child(move || {
            match Region::open_with(&n2, Kind::Raw, 0, None, Duration::from_millis(200)) {
                Err(Error::Incompatible { what: "size", .. }) => 0,
                other => {
                    eprintln!("truncated to {size}: {other:?}");
                    1
                }
            }
        }));
    }
    // The creator's own handle would fault on the truncated header (the
    // README's limit for named regions): leave it mapped, remove the name.
    std::mem::forget(r);
    Region::unlink(&n).unwrap();
}

/// A region `name` whose creator put 42 into it and died without cleaning
/// up (as a SIGKILL leaves it).
fn orphan_queue_with_a_message(name: &str) {
    let n = name.to_owned();
    let creator = fork_child(move || {
        let q = Queue::<u64>::create(&n, 4).unwrap();
        q.put(&42).unwrap();
        // SAFETY: dying on the spot, without destructors.
        unsafe { libc::raise(libc::SIGKILL) };
        1
    });
    let s = wait_exit_within(creator, Duration::from_secs(60));
    assert!(matches!(s, WaitStatus::Signaled(..)), "{s:?}");
    assert!(std::path::Path::new(&path_of(name)).exists());
}

#[test]
fn gc_keeps_a_dead_creators_queue_while_another_process_maps_it() {
    in_private_shm("64m", || {
        let n = unique("gc-mapped");
        orphan_queue_with_a_message(&n);
        let ready = Event::new().unwrap();
        let (n2, ready2) = (n.clone(), ready.clone());
        let user = fork_child(move || {
            let _q = Queue::<u64>::open(&n2).unwrap();
            ready2.set();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        assert!(ready.wait_timeout(Duration::from_secs(30)));
        let removed = Region::gc().unwrap();
        assert!(!removed.contains(&n), "{removed:?}");
        // The message is still there.
        let q = Queue::<u64>::open(&n).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 42);
        drop(q);
        kill_and_reap(user);
        // Now nobody maps it.
        let removed = Region::gc().unwrap();
        assert!(removed.contains(&n), "{removed:?}");
        assert!(!std::path::Path::new(&path_of(&n)).exists());
        0
    });
}

#[test]
fn gc_keeps_a_region_held_only_through_a_handle_inherited_across_fork() {
    in_private_shm("64m", || {
        let n = unique("gc-inherited");
        // SAFETY: prctl with a valid option: orphans of our children are
        // re-parented to us, so we can reap the grandchild.
        assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
        let me = std::process::id() as i32;
        let heir_pid = RawValue::new(0i32).unwrap();
        let heir_ready = Event::new().unwrap();
        let (n2, pid2, ready2) = (n.clone(), heir_pid.clone(), heir_ready.clone());
        let creator = fork_child(move || {
            let mut r = Region::builder(Kind::Raw)
                .name(&n2)
                .size(4096)
                .create()
                .unwrap();
            r.set_unlink_on_drop(false);
            // The heir inherits `r` (its mapping and descriptor) and never
            // opens the region itself.
            // SAFETY: the child only sleeps and polls getppid.
            match unsafe { libc::fork() } {
                0 => loop {
                    // Die with us once re-parented (no stray process).
                    // SAFETY: getppid and prctl have no preconditions.
                    unsafe {
                        if libc::getppid() == me {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            ready2.set();
                            loop {
                                libc::pause();
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                },
                pid => {
                    pid2.set(pid);
                    std::mem::forget(r);
                    // SAFETY: dying on the spot, without destructors.
                    unsafe { libc::raise(libc::SIGKILL) };
                    1
                }
            }
        });
        let _ = wait_exit_within(creator, Duration::from_secs(60));
        assert!(heir_ready.wait_timeout(Duration::from_secs(30)));
        let heir = nix::unistd::Pid::from_raw(heir_pid.get());
        let removed = Region::gc().unwrap();
        assert!(!removed.contains(&n), "{removed:?}");
        kill_and_reap(heir);
        let removed = Region::gc().unwrap();
        assert!(removed.contains(&n), "{removed:?}");
        0
    });
}

#[test]
fn gc_keeps_a_region_that_a_program_without_ipc_maps_or_holds_open() {
    in_private_shm("64m", || {
        for map in [true, false] {
            let n = unique("gc-foreign-program");
            orphan_queue_with_a_message(&n);
            let ready = Event::new().unwrap();
            let ready2 = ready.clone();
            let p = CString::new(path_of(&n)).unwrap();
            // Another program maps the file and closes its descriptor, or
            // only holds it open: no flock, only /proc shows it.
            let user = fork_child(move || {
                // SAFETY: open/mmap/close with valid arguments; the mapping
                // is never touched.
                unsafe {
                    let fd = libc::open(p.as_ptr(), libc::O_RDWR);
                    assert!(fd >= 0);
                    if map {
                        let m = libc::mmap(
                            std::ptr::null_mut(),
                            4096,
                            libc::PROT_READ,
                            libc::MAP_SHARED,
                            fd,
                            0,
                        );
                        assert_ne!(m, libc::MAP_FAILED);
                        libc::close(fd);
                    }
                }
                ready2.set();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
            assert!(ready.wait_timeout(Duration::from_secs(30)));
            let removed = Region::gc().unwrap();
            assert!(!removed.contains(&n), "map={map}: {removed:?}");
            kill_and_reap(user);
            let removed = Region::gc().unwrap();
            assert!(removed.contains(&n), "map={map}: {removed:?}");
        }
        0
    });
}

#[test]
fn an_open_that_gc_unlinked_under_it_looks_the_name_up_again() {
    // gc locks a dead creator's region, an opener finds the file and waits
    // for the lock, gc unlinks it and a new region takes the name. The
    // opener must end up with the new region, never the removed one that
    // nobody else can reach.
    let n = unique("gc-successor");
    let write_marker = |r: &Region, v: u64| {
        // SAFETY: the payload is at least 8 bytes, 128-aligned, ours.
        unsafe { r.payload().cast::<u64>().write_volatile(v) }
    };
    let mut old = Region::builder(Kind::Raw)
        .name(&n)
        .size(64)
        .create()
        .unwrap();
    write_marker(&old, 1);
    old.set_unlink_on_drop(false);
    drop(old);
    // What gc does: an exclusive lock on its own descriptor.
    let gc_fd = std::fs::File::open(path_of(&n)).unwrap();
    ipc_core::sys::shm::try_flock(&gc_fd, true).unwrap();
    let n2 = n.clone();
    let opener = fork_with(&gc_fd, move |inherited| {
        // The lock belongs to the open file description, which the fork
        // shared with us: close our copy, as a separate program has none.
        drop(inherited);
        let r = Region::open_with(&n2, Kind::Raw, 0, Some(64), Duration::from_secs(30)).unwrap();
        // SAFETY: as above.
        let v = unsafe { r.payload().cast::<u64>().read_volatile() };
        i32::from(v != 2)
    });
    // The opener has found the file by now and waits for the lock.
    std::thread::sleep(Duration::from_millis(200));
    Region::unlink(&n).unwrap();
    let new = Region::builder(Kind::Raw)
        .name(&n)
        .size(64)
        .create()
        .unwrap();
    write_marker(&new, 2);
    drop(gc_fd); // releases the lock
    join_ok(opener);
}
