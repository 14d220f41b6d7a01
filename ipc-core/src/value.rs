//! `Value` and `Array` of plain-old-data in shared memory, with a lock
//! (Python's `multiprocessing.Value`/`Array`), and the lock-free
//! `RawValue`/`RawArray` (Python's `sharedctypes.RawValue`/`RawArray`).

use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

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
struct Cells<T> {
    region: Arc<Region>,
    len: usize,
    /// `Head::flags` as validated at open (fixed since creation).
    flags: u32,
    _t: PhantomData<T>,
}

impl<T: Pod> Cells<T> {
    /// The cells a builder makes: flagged as guarded by the given `lock`
    /// (Python's `lock=some_lock`) if there is one, else by their own.
    fn build(kind: Kind, name: Option<&str>, init: &[T], lock: Option<&Lock>) -> Result<Self> {
        let flags = if lock.is_some() { EXTERNAL_LOCK } else { 0 };
        Self::create(kind, name, init, flags)
    }

    /// The cells a builder makes without a lock (Python's `lock=False`):
    /// [`Error::InvalidArgument`]`(refusal)` if a `lock` was given.
    fn build_raw(
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

    fn create(kind: Kind, name: Option<&str>, init: &[T], flags: u32) -> Result<Self> {
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

    fn open(kind: Kind, name: &str) -> Result<Self> {
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
    fn validated(region: Region) -> Result<Self> {
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

    fn token(&self) -> crate::travel::Token {
        crate::travel::Token {
            locator: self.region.locator(),
            kind: self.region.kind() as u32,
            offset: 0,
            extra: Vec::new(),
        }
    }

    fn from_token(kind: Kind, t: &crate::travel::Token) -> Result<Self> {
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

    fn ptr(&self, i: usize) -> *mut T {
        debug_assert!(i < self.len);
        // SAFETY: i < len, and len elements fit after DATA_OFFSET (validated).
        unsafe { self.region.payload().add(DATA_OFFSET).cast::<T>().add(i) }
    }

    fn check(&self, i: usize) -> Result<()> {
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
    fn read(&self, i: usize) -> T {
        // SAFETY: in bounds and aligned (see `ptr`); T: Pod accepts any bytes.
        unsafe { self.ptr(i).read_volatile() }
    }

    fn write(&self, i: usize, v: T) {
        // SAFETY: in bounds and aligned; volatile because others read it.
        unsafe { self.ptr(i).write_volatile(v) }
    }

    /// Runs `f` holding the guarding lock: `external`, or the head's own.
    fn locked<R>(&self, external: Option<&Lock>, f: impl FnOnce() -> R) -> Result<R> {
        let lock = external.map_or(&self.head().lock, |l| l.raw_lock());
        if lock.is_owned_by_me() {
            // Held through `get_lock()` by this thread: Python's Value uses
            // an RLock, so `with v.get_lock(): v.value += 1` works; so does this.
            return Ok(f());
        }
        let died = match lock.lock(None) {
            Acquired::OwnerDied => true,
            Acquired::Corrupt(i) => return Err(Error::Corrupt(i.describe())),
            _ => false,
        };
        let r = f();
        lock.unlock();
        if died {
            // `f` ran and its effect stands; report that the previous
            // writer may have left the data half-written.
            return Err(Error::OwnerDied);
        }
        Ok(r)
    }

    fn lock_handle(&self, external: Option<&Lock>) -> Lock {
        external
            .cloned()
            .unwrap_or_else(|| Lock::from_shared(Shared::at(self.region.clone(), 0)))
    }

    /// The external lock a handle of these cells must use: `lock` if the
    /// creator chose one, an error if it did and none is given (or one is
    /// given for cells guarded by their own lock).
    fn check_lock(&self, lock: Option<Lock>) -> Result<Option<Lock>> {
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

/// A `T` in shared memory guarded by a [`Lock`] (Python's
/// `multiprocessing.Value`). `get` and `set` take the lock; use
/// [`update`](Value::update) for an atomic read-modify-write.
///
/// If a process died holding the lock, the call still completes and then
/// reports [`Error::OwnerDied`] once. Calls made while this thread holds
/// [`get_lock`](Value::get_lock) do not take the lock again (it behaves as
/// Python's, which is recursive).
///
/// # Examples
///
/// ```
/// use ipc_core::value::Value;
/// let v = Value::new(0u64)?;
/// v.set(41)?;
/// v.update(|x| *x += 1)?;
/// assert_eq!(v.get()?, 42);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Value<T> {
    cells: Cells<T>,
    /// The existing lock chosen at creation (`None`: the value's own).
    external: Option<Lock>,
}

/// Builder for a [`Value`]: a name, and the lock that guards it (Python's
/// `lock=` argument): its own (the default), an existing [`Lock`]
/// ([`lock`](ValueBuilder::lock), which may guard several values), or none
/// ([`build_raw`](ValueBuilder::build_raw), giving a [`RawValue`]).
///
/// # Examples
///
/// ```
/// use ipc_core::{sync::Lock, value::Value};
/// let lock = Lock::new()?;
/// let a = Value::builder(1u32).lock(lock.clone()).build()?;
/// let b = Value::builder(2u32).lock(lock.clone()).build()?;
/// {
///     let _g = lock.acquire()?; // one lock guards both
///     a.set(b.get()? + a.get()?)?;
/// }
/// assert_eq!(a.get()?, 3);
/// let raw = Value::builder(5u8).build_raw()?; // lock=False
/// assert_eq!(raw.get(), 5);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ValueBuilder<T> {
    init: T,
    name: Option<String>,
    lock: Option<Lock>,
}

impl<T: Pod> ValueBuilder<T> {
    /// Names the value so other processes can open it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Guards the value with an existing lock instead of its own (Python's
    /// `lock=some_lock`). Other processes then open it with
    /// [`Value::open_with_lock`]; it travels together with its lock.
    pub fn lock(mut self, lock: Lock) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Creates the value.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::InvalidName`], [`Error::Io`].
    pub fn build(self) -> Result<Value<T>> {
        Ok(Value {
            cells: Cells::build(
                Kind::Value,
                self.name.as_deref(),
                &[self.init],
                self.lock.as_ref(),
            )?,
            external: self.lock,
        })
    }

    /// Creates a value without a lock (Python's `lock=False`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a [`lock`](Self::lock) was given; as
    /// [`build`](Self::build).
    #[doc(alias = "RawValue")]
    pub fn build_raw(self) -> Result<RawValue<T>> {
        Ok(RawValue {
            cells: Cells::build_raw(
                Kind::Value,
                self.name.as_deref(),
                &[self.init],
                self.lock.as_ref(),
                "a value without a lock cannot take one",
            )?,
        })
    }
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

impl<T: Pod> Value<T> {
    /// An anonymous value (shared with children forked later).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn new(init: T) -> Result<Value<T>> {
        Self::builder(init).build()
    }

    /// A builder: name, and which lock guards the value.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = ipc_core::value::Value::builder(3i32).build()?;
    /// assert_eq!(v.get()?, 3);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn builder(init: T) -> ValueBuilder<T> {
        ValueBuilder {
            init,
            name: None,
            lock: None,
        }
    }

    /// A named value.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::InvalidName`], [`Error::Io`].
    pub fn create(name: &str, init: T) -> Result<Value<T>> {
        Self::builder(init).name(name).build()
    }

    named_ctors!(Value, Kind::Value, locked);

    /// Reads the value under the lock.
    ///
    /// # Errors
    /// [`Error::OwnerDied`] (the read still happened; it may be torn).
    /// [`Error::Corrupt`] if the lock word in shared memory is garbage.
    pub fn get(&self) -> Result<T> {
        self.cells
            .locked(self.external.as_ref(), || self.cells.read(0))
    }

    /// Writes the value under the lock.
    ///
    /// # Errors
    /// [`Error::OwnerDied`] (the write still happened).
    /// [`Error::Corrupt`] if the lock word in shared memory is garbage.
    pub fn set(&self, v: T) -> Result<()> {
        self.cells
            .locked(self.external.as_ref(), || self.cells.write(0, v))
    }

    /// Read-modify-write under the lock: `v.update(|x| *x += 1)` is the
    /// race-free form of Python's `v.value += 1`. Returns the new value.
    ///
    /// # Errors
    /// [`Error::OwnerDied`] (the update still happened).
    /// [`Error::Corrupt`] if the lock word in shared memory is garbage.
    pub fn update(&self, f: impl FnOnce(&mut T)) -> Result<T> {
        self.cells.locked(self.external.as_ref(), || {
            let mut x = self.cells.read(0);
            f(&mut x);
            self.cells.write(0, x);
            x
        })
    }

    /// The lock guarding the value (its own, or the one given to the
    /// builder), to hold it across several operations (the value's own
    /// calls still work while this thread holds it).
    pub fn get_lock(&self) -> Lock {
        self.cells.lock_handle(self.external.as_ref())
    }

    /// Reads without the lock (a concurrent writer may tear the read).
    pub fn get_unlocked(&self) -> T {
        self.cells.read(0)
    }

    /// Writes without the lock.
    pub fn set_unlocked(&self, v: T) {
        self.cells.write(0, v)
    }
}

/// A fixed-length array of `T` in shared memory guarded by a [`Lock`]
/// (Python's `multiprocessing.Array`).
///
/// # Examples
///
/// ```
/// use ipc_core::value::Array;
/// let a = Array::new(&[1i32, 2, 3])?;
/// a.set(0, 10)?;
/// assert_eq!(a.to_vec()?, vec![10, 2, 3]);
/// assert!(a.get(3).is_err());
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Array<T> {
    cells: Cells<T>,
    /// The existing lock chosen at creation (`None`: the array's own).
    external: Option<Lock>,
}

/// Builder for an [`Array`]: a name, and the lock that guards it (see
/// [`ValueBuilder`]).
///
/// # Examples
///
/// ```
/// use ipc_core::{sync::Lock, value::Array};
/// let lock = Lock::new()?;
/// let a = Array::builder(&[0u8; 4]).lock(lock.clone()).build()?;
/// a.set(0, 9)?;
/// assert!(lock.try_acquire().is_ok()); // the given lock is the one used
/// let raw = Array::builder(&[1i64, 2]).build_raw()?; // lock=False
/// assert_eq!(raw.to_vec(), vec![1, 2]);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ArrayBuilder<'a, T> {
    init: &'a [T],
    name: Option<String>,
    lock: Option<Lock>,
}

impl<T: Pod> ArrayBuilder<'_, T> {
    /// Names the array so other processes can open it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Guards the array with an existing lock instead of its own (Python's
    /// `lock=some_lock`); others open it with [`Array::open_with_lock`].
    pub fn lock(mut self, lock: Lock) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Creates the array.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if empty, [`Error::AlreadyExists`],
    /// [`Error::InvalidName`], [`Error::Io`].
    pub fn build(self) -> Result<Array<T>> {
        Ok(Array {
            cells: Cells::build(
                Kind::Array,
                self.name.as_deref(),
                self.init,
                self.lock.as_ref(),
            )?,
            external: self.lock,
        })
    }

    /// Creates an array without a lock (Python's `lock=False`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a [`lock`](Self::lock) was given; as
    /// [`build`](Self::build).
    #[doc(alias = "RawArray")]
    pub fn build_raw(self) -> Result<RawArray<T>> {
        Ok(RawArray {
            cells: Cells::build_raw(
                Kind::Array,
                self.name.as_deref(),
                self.init,
                self.lock.as_ref(),
                "an array without a lock cannot take one",
            )?,
        })
    }
}

impl<T: Pod> Array<T> {
    /// An anonymous array holding a copy of `init` (at least one element).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `init` is empty, [`Error::Io`].
    pub fn new(init: &[T]) -> Result<Array<T>> {
        Self::builder(init).build()
    }

    /// A builder: name, and which lock guards the array.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = ipc_core::value::Array::builder(&[1u8, 2]).build()?;
    /// assert_eq!(a.to_vec()?, vec![1, 2]);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn builder(init: &[T]) -> ArrayBuilder<'_, T> {
        ArrayBuilder {
            init,
            name: None,
            lock: None,
        }
    }

    /// A named array.
    ///
    /// # Errors
    /// As [`Array::new`], plus [`Error::AlreadyExists`], [`Error::InvalidName`].
    pub fn create(name: &str, init: &[T]) -> Result<Array<T>> {
        Self::builder(init).name(name).build()
    }

    named_ctors!(Array, Kind::Array, locked);

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Always false: arrays have at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Element `i`, under the lock.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`], [`Error::OwnerDied`].
    /// [`Error::Corrupt`] if the lock word in shared memory is garbage.
    pub fn get(&self, i: usize) -> Result<T> {
        self.cells.check(i)?;
        self.cells
            .locked(self.external.as_ref(), || self.cells.read(i))
    }

    /// Sets element `i`, under the lock.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`], [`Error::OwnerDied`].
    /// [`Error::Corrupt`] if the lock word in shared memory is garbage.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        self.cells.check(i)?;
        self.cells
            .locked(self.external.as_ref(), || self.cells.write(i, v))
    }

    /// Read-modify-write of element `i` under the lock; returns the new value.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`], [`Error::OwnerDied`].
    /// [`Error::Corrupt`] if the lock word in shared memory is garbage.
    pub fn update(&self, i: usize, f: impl FnOnce(&mut T)) -> Result<T> {
        self.cells.check(i)?;
        self.cells.locked(self.external.as_ref(), || {
            let mut x = self.cells.read(i);
            f(&mut x);
            self.cells.write(i, x);
            x
        })
    }

    /// A consistent copy of all elements (Python's `arr[:]`).
    ///
    /// # Errors
    /// [`Error::OwnerDied`].
    /// [`Error::Corrupt`] if the lock word in shared memory is garbage.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.cells.locked(self.external.as_ref(), || {
            (0..self.cells.len).map(|i| self.cells.read(i)).collect()
        })
    }

    /// Overwrites all elements atomically with respect to other lockers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the lengths differ, [`Error::OwnerDied`].
    /// [`Error::Corrupt`] if the lock word in shared memory is garbage.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        if src.len() != self.cells.len {
            return Err(Error::InvalidArgument(
                "slice length differs from the array's",
            ));
        }
        self.cells.locked(self.external.as_ref(), || {
            for (i, v) in src.iter().enumerate() {
                self.cells.write(i, *v);
            }
        })
    }

    /// The lock guarding the array (its own, or the one given to the
    /// builder).
    pub fn get_lock(&self) -> Lock {
        self.cells.lock_handle(self.external.as_ref())
    }
}

/// A `T` in shared memory without a lock (Python's `RawValue`): reads and
/// writes are single volatile accesses; a `T` wider than 8 bytes may tear.
///
/// # Examples
///
/// ```
/// let v = ipc_core::value::RawValue::new(1.5f64)?;
/// v.set(2.5);
/// assert_eq!(v.get(), 2.5);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RawValue<T> {
    cells: Cells<T>,
}

impl<T: Pod> RawValue<T> {
    /// An anonymous raw value.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn new(init: T) -> Result<RawValue<T>> {
        Ok(RawValue {
            cells: Cells::create(Kind::Value, None, &[init], 0)?,
        })
    }

    /// A named raw value (interchangeable with a named [`Value`] of the same type).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::InvalidName`], [`Error::Io`].
    pub fn create(name: &str, init: T) -> Result<RawValue<T>> {
        Ok(RawValue {
            cells: Cells::create(Kind::Value, Some(name), &[init], 0)?,
        })
    }

    named_ctors!(RawValue, Kind::Value);

    /// Reads the value.
    pub fn get(&self) -> T {
        self.cells.read(0)
    }

    /// Writes the value.
    pub fn set(&self, v: T) {
        self.cells.write(0, v)
    }
}

/// An array of `T` in shared memory without a lock (Python's `RawArray`).
///
/// # Examples
///
/// ```
/// let a = ipc_core::value::RawArray::new(&[0u8; 4])?;
/// a.set(1, 9)?;
/// assert_eq!(a.get(1)?, 9);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RawArray<T> {
    cells: Cells<T>,
}

impl<T: Pod> RawArray<T> {
    /// An anonymous raw array holding a copy of `init`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if empty, [`Error::Io`].
    pub fn new(init: &[T]) -> Result<RawArray<T>> {
        Ok(RawArray {
            cells: Cells::create(Kind::Array, None, init, 0)?,
        })
    }

    /// A named raw array.
    ///
    /// # Errors
    /// As [`RawArray::new`], plus [`Error::AlreadyExists`], [`Error::InvalidName`].
    pub fn create(name: &str, init: &[T]) -> Result<RawArray<T>> {
        Ok(RawArray {
            cells: Cells::create(Kind::Array, Some(name), init, 0)?,
        })
    }

    named_ctors!(RawArray, Kind::Array);

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Always false: arrays have at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Element `i`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn get(&self, i: usize) -> Result<T> {
        self.cells.check(i)?;
        Ok(self.cells.read(i))
    }

    /// Sets element `i`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        self.cells.check(i)?;
        self.cells.write(i, v);
        Ok(())
    }

    /// A copy of all elements (not atomic as a whole).
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.cells.len).map(|i| self.cells.read(i)).collect()
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
                        let bad = || Error::Corrupt("value token: lock extras".into());
                        Some(<Lock as crate::travel::Travel>::from_token(crate::travel::Token {
                            locator: locator.clone(),
                            kind: kind.parse().map_err(|_| bad())?,
                            offset: offset.parse().map_err(|_| bad())?,
                            extra: Vec::new(),
                        })?)
                    }
                    _ => return Err(Error::Corrupt("value token: extras".into())),
                };
                let cells = Cells::from_token($kind, &t)?;
                let external = cells.check_lock(lock)?;
                Ok($ty { cells, external })
            }
        }
        crate::travel::travel_via_token!([T: Pod] $ty<T>);
    };
}
value_travel!(Value, Kind::Value, locked);
value_travel!(Array, Kind::Array, locked);
value_travel!(RawValue, Kind::Value);
value_travel!(RawArray, Kind::Array);
