use super::*;

fn unique(tag: &str) -> String {
    format!(
        "t-{tag}-{}-{}",
        proc::pid(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}
static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[test]
fn create_open_and_unlink() {
    let n = unique("basic");
    let a = Region::builder(Kind::Raw)
        .name(&n)
        .size(100)
        .create()
        .unwrap();
    assert_eq!(a.payload_len(), 100);
    assert!(a.is_creator());
    let b = Region::open(&n, Kind::Raw).unwrap();
    assert!(!b.is_creator());
    // SAFETY: both map the same 100-byte payload.
    unsafe {
        a.payload().write(42);
        assert_eq!(b.payload().read_volatile(), 42);
    }
    drop(a);
    assert!(matches!(
        Region::open(&n, Kind::Raw),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn exclusive_and_open_or_create() {
    let n = unique("excl");
    let a = Region::builder(Kind::Raw)
        .name(&n)
        .size(64)
        .create()
        .unwrap();
    let e = Region::builder(Kind::Raw)
        .name(&n)
        .size(64)
        .create()
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }));
    let (b, created) = Region::builder(Kind::Raw)
        .name(&n)
        .size(64)
        .create_mode(CreateMode::OpenOrCreate)
        .create_with(|_| Ok(()))
        .unwrap();
    assert!(!created);
    let e = Region::builder(Kind::Raw)
        .name(&n)
        .size(65)
        .create_mode(CreateMode::OpenOrCreate)
        .create()
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Incompatible {
                what: "payload size",
                ..
            }
        ),
        "{e:?}"
    );
    drop((a, b));
}

#[test]
fn bad_names() {
    for n in ["", "a/b", ".hidden", "sp ace", &"x".repeat(201)] {
        assert!(
            matches!(Region::open(n, Kind::Raw), Err(Error::InvalidName { .. })),
            "{n:?}"
        );
    }
}

#[test]
fn wrong_kind_type_and_corrupt_header() {
    let n = unique("kind");
    let a = Region::builder(Kind::Lock)
        .name(&n)
        .size(64)
        .type_tag(7)
        .create()
        .unwrap();
    let e = Region::open(&n, Kind::Queue).unwrap_err();
    assert!(matches!(e, Error::Incompatible { what: "kind", .. }), "{e}");
    let e = Region::open_with(&n, Kind::Lock, 8, None, DEFAULT_OPEN_TIMEOUT).unwrap_err();
    assert!(matches!(e, Error::Incompatible { what: "type", .. }), "{e}");
    // Scribble over the version, then the magic.
    // SAFETY: the header is within our mapping; we are testing validation.
    unsafe { a.map.as_mut_ptr().add(8).cast::<u32>().write_volatile(99) };
    let e = Region::open(&n, Kind::Lock).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Incompatible {
                what: "version",
                ..
            }
        ),
        "{e}"
    );
    // SAFETY: as above.
    unsafe { a.map.as_mut_ptr().cast::<u64>().write_volatile(0xdead_beef) };
    let e = Region::open(&n, Kind::Lock).unwrap_err();
    assert!(
        matches!(e, Error::Incompatible { what: "magic", .. }),
        "{e}"
    );
}

#[test]
fn never_initialised_region_times_out() {
    let n = unique("init");
    let f = shm::shm_open(&shm_name(&n).unwrap(), true, 0o600).unwrap();
    f.set_len(4096).unwrap();
    let t = std::time::Instant::now();
    let e = Region::open_with(&n, Kind::Raw, 0, None, Duration::from_millis(100)).unwrap_err();
    // Zero bytes: the magic is wrong too, so it is reported as incompatible.
    assert!(
        matches!(e, Error::Incompatible { what: "magic", .. }),
        "{e}"
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
    Region::unlink(&n).unwrap();
}

#[test]
fn anonymous_regions_have_no_name() {
    let a = Region::builder(Kind::Raw).size(10).create().unwrap();
    assert!(a.name().is_none());
    assert_eq!(a.payload() as usize % 64, 0);
}

/// Polls `f` for up to 10 s: a concurrent lister (another test's `gc` or
/// `list`) holds region files open for an instant, making them look used.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn gc_candidates_are_what_gc_would_remove_and_the_dry_run_removes_nothing() {
    let n = unique("candidates");
    let mut r = Region::builder(Kind::Raw)
        .name(&n)
        .size(64)
        .create()
        .unwrap();
    r.set_unlink_on_drop(false);
    // Its creator "died": the same pid with another start time.
    let mut dead = proc::TaskId::current_process();
    dead.start += 1;
    // SAFETY: the header lies within r's live mapping.
    unsafe { Header::creator(r.map.as_ptr()) }.store(dead.pack(), Ordering::Relaxed);
    let candidate = || Region::gc_candidates().unwrap().iter().any(|i| i.name == n);
    // A live handle (its shared flock) makes it in use.
    assert!(!candidate());
    assert!(Region::gc_where(|i| i.name == n).unwrap().is_empty());
    drop(r);
    assert!(eventually(candidate));
    assert!(std::path::Path::new(&format!("/dev/shm/ipc.{n}")).exists());
    assert!(eventually(
        || Region::gc_where(|i| i.name == n).unwrap() == [n.clone()]
    ));
    assert!(!candidate());
}

#[test]
fn info_says_why_a_file_is_not_a_region() {
    let n = unique("info-garbage");
    let path = format!("/dev/shm/ipc.{n}");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, &[7u8; 200]).unwrap();
    }
    let e = Region::info(&n).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(e, Error::Incompatible { what: "magic", .. }),
        "{e}"
    );
    assert!(matches!(Region::info(&n), Err(Error::NotFound { .. })));
}
