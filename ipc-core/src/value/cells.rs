//! The mapping and validated geometry behind the four value types
//! ([`Cells`]), and the macros that give each type its named
//! constructors and its travel.

use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

use super::error::ValueError;
use crate::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::region::{type_tag, Kind, Region, DEFAULT_OPEN_TIMEOUT};
use crate::shared::Shared;
use crate::sync::raw_lock::{Acquired, RawLock};
use crate::sync::Lock;
use crate::{Error, Result};

/// Bytes before the data: the lock, the length, padding to a cache line.
const DATA_OFFSET: usize = 64;

/// ```text
/// 0   lock   RawLock (16 bytes)
/// 16  len    number of elements (1 for a Value)
/// 24  flags  EXTERNAL_LOCK: guarded by another object's Lock, not `lock`
/// 64  data   [T; len]
/// ```
#[repr(C)]
struct Head {
    lock: RawLock,
    len: AtomicU64,
    flags: AtomicU32,
}

/// In `Head::flags`: the creator chose an existing [`Lock`] to guard the
/// data, so a handle must use that lock (opening by name alone is refused).
const EXTERNAL_LOCK: u32 = 1;

const _: () = assert!(std::mem::size_of::<Head>() <= DATA_OFFSET);

/// The mapping and validated geometry shared by all four types.
#[derive(Debug)]
pub(super) struct Cells<T> {
    pub(super) region: Arc<Region>,
    pub(super) len: usize,
    /// `Head::flags` as validated at open (fixed since creation).
    pub(super) flags: u32,
    _t: PhantomData<T>,
}

impl<T: Pod> Cells<T> {
    /// The cells a builder makes: flagged as guarded by the given `lock`
    /// (Python's `lock=some_lock`) if there is one, else by their own.
    pub(super) fn build(
        kind: Kind,
        name: Option<&str>,
        init: &[T],
        lock: Option<&Lock>,
    ) -> Result<Self> {
        let flags = if lock.is_some() { EXTERNAL_LOCK } else { 0 };
        Self::create(kind, name, init, flags)
    }

    /// The cells a builder makes without a lock (Python's `lock=False`):
    /// [`Error::InvalidArgument`]`(refusal)` if a `lock` was given.
    pub(super) fn build_raw(
        kind: Kind,
        name: Option<&str>,
        init: &[T],
        lock: Option<&Lock>,
        refusal: &'static str,
    ) -> Result<Self> {
        if lock.is_some() {
            return Err(Error::InvalidArgument(refusal));
        }
        Self::create(kind, name, init, 0)
    }

    pub(super) fn create(kind: Kind, name: Option<&str>, init: &[T], flags: u32) -> Result<Self> {
        if std::mem::align_of::<T>() > DATA_OFFSET {
            return Err(Error::InvalidArgument(
                "alignment above 64 is not supported",
            ));
        }
        if init.is_empty() {
            return Err(Error::InvalidArgument(
                "an array needs at least one element",
            ));
        }
        let bytes = std::mem::size_of_val(init);
        let (region, _) = Region::builder(kind)
            .maybe_name(name.map(str::to_owned))
            .size(DATA_OFFSET + bytes.max(1))
            .type_tag(type_tag::<T>(
                std::mem::size_of::<T>(),
                std::mem::align_of::<T>(),
            ))
            .create_with(|r| {
                // SAFETY: the payload is DATA_OFFSET + bytes zeroed bytes,
                // 64-aligned (so T, align <= 64, is aligned at DATA_OFFSET),
                // private to us until published.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        init.as_ptr().cast::<u8>(),
                        r.payload().add(DATA_OFFSET),
                        bytes,
                    );
                    // Relaxed: published by the region's Release.
                    let head = &*r.payload().cast::<Head>();
                    head.len.store(init.len() as u64, Ordering::Relaxed);
                    head.flags.store(flags, Ordering::Relaxed);
                }
                Ok(())
            })?;
        Ok(Cells {
            region: Arc::new(region),
            len: init.len(),
            flags,
            _t: PhantomData,
        })
    }

    pub(super) fn open(kind: Kind, name: &str) -> Result<Self> {
        let region = Region::open_with(
            name,
            kind,
            type_tag::<T>(std::mem::size_of::<T>(), std::mem::align_of::<T>()),
            None,
            DEFAULT_OPEN_TIMEOUT,
        )?;
        Self::validated(region)
    }

    /// Checks the stored length against the mapping before trusting it.
    pub(super) fn validated(region: Region) -> Result<Self> {
        if region.payload_len() < DATA_OFFSET {
            return Err(Error::Corrupt("value region too small".into()));
        }
        // SAFETY: payload is 64-aligned and at least DATA_OFFSET bytes; Head
        // is made of atomics (any bytes valid).
        // Relaxed (the loads): written before publication, which `open`
        // observed with Acquire.
        let head = unsafe { &*region.payload().cast::<Head>() };
        let len = head.len.load(Ordering::Relaxed);
        let flags = head.flags.load(Ordering::Relaxed);
        if flags & !EXTERNAL_LOCK != 0 {
            return Err(Error::Corrupt(format!("value flags {flags:#x} unknown")));
        }
        let room = (region.payload_len() - DATA_OFFSET) / std::mem::size_of::<T>().max(1);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= room && *l > 0)
            .ok_or_else(|| Error::Corrupt(format!("value length {len} does not fit the region")))?;
        Ok(Cells {
            region: Arc::new(region),
            len,
            flags,
            _t: PhantomData,
        })
    }

    pub(super) fn token(&self) -> crate::travel::Token {
        crate::travel::Token {
            locator: self.region.locator(),
            kind: self.region.kind() as u32,
            offset: 0,
            extra: Vec::new(),
        }
    }

    pub(super) fn from_token(kind: Kind, t: &crate::travel::Token) -> Result<Self> {
        if t.kind != kind as u32 {
            return Err(Error::Incompatible {
                what: "kind",
                expected: format!("{kind:?}"),
                found: format!("kind code {}", t.kind),
            });
        }
        let region = Region::open_locator(
            &t.locator,
            kind,
            type_tag::<T>(std::mem::size_of::<T>(), std::mem::align_of::<T>()),
            None,
        )?;
        Self::validated(region)
    }

    fn head(&self) -> &Head {
        // SAFETY: the payload starts with a Head (validated size), kept
        // mapped by `self.region`.
        unsafe { &*self.region.payload().cast::<Head>() }
    }

    pub(super) fn ptr(&self, i: usize) -> *mut T {
        debug_assert!(i < self.len);
        // SAFETY: i < len, and len elements fit after DATA_OFFSET (validated).
        unsafe { self.region.payload().add(DATA_OFFSET).cast::<T>().add(i) }
    }

    pub(super) fn check(&self, i: usize) -> Result<()> {
        if i < self.len {
            Ok(())
        } else {
            Err(Error::IndexOutOfRange {
                index: i,
                len: self.len,
            })
        }
    }

    /// Volatile read: another process may write concurrently (a torn read
    /// is possible without the lock, but any bytes are a valid `T: Pod`).
    pub(super) fn read(&self, i: usize) -> T {
        // SAFETY: in bounds and aligned (see `ptr`); T: Pod accepts any bytes.
        unsafe { self.ptr(i).read_volatile() }
    }

    pub(super) fn write(&self, i: usize, v: T) {
        // SAFETY: in bounds and aligned; volatile because others read it.
        unsafe { self.ptr(i).write_volatile(v) }
    }

    /// Runs `f` holding the guarding lock: `external`, or the head's own.
    pub(super) fn locked<R>(&self, external: Option<&Lock>, f: impl FnOnce() -> R) -> Result<R> {
        self.locked_value(external, f).map_err(Error::from)
    }

    /// As [`locked`](Self::locked), and an owner death carries `f`'s
    /// result ([`ValueError::OwnerDied`]).
    pub(super) fn locked_value<R>(
        &self,
        external: Option<&Lock>,
        f: impl FnOnce() -> R,
    ) -> std::result::Result<R, ValueError<R>> {
        let lock = external.map_or(&self.head().lock, |l| l.raw_lock());
        if lock.is_owned_by_me() {
            // Held through `get_lock()` by this thread: Python's Value uses
            // an RLock, so `with v.get_lock(): v.value += 1` works; so does this.
            return Ok(f());
        }
        let died = match lock.lock(None) {
            Acquired::OwnerDied => true,
            Acquired::Corrupt(i) => return Err(ValueError::Corrupt(i.describe())),
            _ => false,
        };
        let r = f();
        lock.unlock();
        if died {
            // `f` ran and its effect stands; report that the previous
            // writer may have left the data half-written, with the result.
            return Err(ValueError::OwnerDied(r));
        }
        Ok(r)
    }

    pub(super) fn lock_handle(&self, external: Option<&Lock>) -> Lock {
        external
            .cloned()
            .unwrap_or_else(|| Lock::from_shared(Shared::at(self.region.clone(), 0)))
    }

    /// The external lock a handle of these cells must use: `lock` if the
    /// creator chose one, an error if it did and none is given (or one is
    /// given for cells guarded by their own lock).
    pub(super) fn check_lock(&self, lock: Option<Lock>) -> Result<Option<Lock>> {
        match (self.flags & EXTERNAL_LOCK != 0, lock) {
            (true, Some(l)) => Ok(Some(l)),
            (false, None) => Ok(None),
            (true, None) => Err(Error::Incompatible {
                what: "lock",
                expected: "its own lock".into(),
                found: "an existing Lock chosen by its creator (open it with open_with_lock)"
                    .into(),
            }),
            (false, Some(_)) => Err(Error::Incompatible {
                what: "lock",
                expected: "an existing Lock".into(),
                found: "its own lock".into(),
            }),
        }
    }
}

macro_rules! named_ctors {
    ($ty:ident, $kind:expr) => {
        /// Opens one created by another process by name.
        ///
        /// # Errors
        /// [`Error::NotFound`], [`Error::Incompatible`] (kind, or element
        /// type), [`Error::Corrupt`] (invalid length).
        pub fn open(name: &str) -> Result<$ty<T>> {
            Ok($ty {
                cells: Cells::open($kind, name)?,
            })
        }

        /// The name it was created or opened with.
        pub fn name(&self) -> Option<&str> {
            self.cells.region.name()
        }
    };
    ($ty:ident, $kind:expr, locked) => {
        /// Opens one created by another process by name.
        ///
        /// # Errors
        /// [`Error::NotFound`], [`Error::Incompatible`] (kind, element
        /// type, or its creator chose an existing lock: use
        /// `open_with_lock`), [`Error::Corrupt`] (invalid length).
        pub fn open(name: &str) -> Result<$ty<T>> {
            let cells = Cells::open($kind, name)?;
            let external = cells.check_lock(None)?;
            Ok($ty { cells, external })
        }

        /// Opens one whose creator guarded it with an existing [`Lock`]
        /// (see the builder's `lock`); `lock` must be that lock (opened
        /// by name, inherited, or received).
        ///
        /// # Examples
        ///
        /// ```
        /// use ipc_core::{sync::Lock, value::Value};
        /// let (l, n) = (format!("doc-guard-{}", std::process::id()), format!("doc-guarded-{}", std::process::id()));
        /// let lock = Lock::create(&l)?;
        /// let v = Value::builder(1u8).name(&n).lock(lock.clone()).build()?;
        /// assert!(Value::<u8>::open(&n).is_err()); // needs its lock
        /// let w = Value::<u8>::open_with_lock(&n, Lock::open(&l)?)?;
        /// w.set(2)?;
        /// assert_eq!(v.get()?, 2);
        /// # Ok::<(), ipc_core::Error>(())
        /// ```
        ///
        /// # Errors
        /// As `open`; [`Error::Incompatible`] if it is guarded by its own
        /// lock.
        pub fn open_with_lock(name: &str, lock: Lock) -> Result<$ty<T>> {
            let cells = Cells::open($kind, name)?;
            let external = cells.check_lock(Some(lock))?;
            Ok($ty { cells, external })
        }

        /// The name it was created or opened with.
        pub fn name(&self) -> Option<&str> {
            self.cells.region.name()
        }
    };
}

impl<T> Clone for Cells<T> {
    fn clone(&self) -> Self {
        Cells {
            region: self.region.clone(),
            len: self.len,
            flags: self.flags,
            _t: PhantomData,
        }
    }
}

macro_rules! value_travel {
    ($ty:ident, $kind:expr) => {
        impl<T: Pod> crate::travel::Travel for $ty<T> {
            fn token(&self) -> crate::travel::Token {
                self.cells.token()
            }
            fn from_token(t: crate::travel::Token) -> Result<Self> {
                Ok($ty {
                    cells: Cells::from_token($kind, &t)?,
                })
            }
        }
        crate::travel::travel_via_token!([T: Pod] $ty<T>);
    };
    ($ty:ident, $kind:expr, locked) => {
        /// Travels with its lock: an existing lock chosen at creation goes
        /// in the token's extras (its locator, kind and offset).
        impl<T: Pod> crate::travel::Travel for $ty<T> {
            fn token(&self) -> crate::travel::Token {
                let mut t = self.cells.token();
                if let Some(l) = &self.external {
                    let lt = crate::travel::Travel::token(l);
                    t.extra = vec![lt.locator, lt.kind.to_string(), lt.offset.to_string()];
                }
                t
            }
            fn from_token(t: crate::travel::Token) -> Result<Self> {
                let lock = match t.extra.as_slice() {
                    [] => None,
                    [locator, kind, offset] => {
                        let bad = || crate::Error::Corrupt("value token: lock extras".into());
                        Some(<Lock as crate::travel::Travel>::from_token(crate::travel::Token {
                            locator: locator.clone(),
                            kind: kind.parse().map_err(|_| bad())?,
                            offset: offset.parse().map_err(|_| bad())?,
                            extra: Vec::new(),
                        })?)
                    }
                    _ => return Err(crate::Error::Corrupt("value token: extras".into())),
                };
                let cells = Cells::from_token($kind, &t)?;
                let external = cells.check_lock(lock)?;
                Ok($ty { cells, external })
            }
        }
        crate::travel::travel_via_token!([T: Pod] $ty<T>);
    };
}
