//! `Value` and `Array` of plain-old-data in shared memory, with a lock
//! (Python's `multiprocessing.Value`/`Array`), and the lock-free
//! `RawValue`/`RawArray` (Python's `sharedctypes.RawValue`/`RawArray`).
//!
//! The layout and validation all four share is in `cells.rs`; `Array` is
//! in `array.rs`, the raw types in `raw.rs`.

#[macro_use]
mod cells;
mod array;
mod error;
mod raw;

use bytemuck::Pod;

use crate::region::Kind;
use crate::sync::Lock;
#[allow(unused_imports)] // `Error`: named by the doc links
use crate::{Error, Result};
use cells::Cells;

pub use array::{Array, ArrayBuilder};
pub use error::ValueError;
pub use raw::{RawArray, RawValue};

/// A `T` in shared memory guarded by a [`Lock`] (Python's
/// `multiprocessing.Value`). `get` and `set` take the lock; use
/// [`update`](Value::update) for an atomic read-modify-write.
///
/// If a process died holding the lock, the call still completes and then
/// reports the owner's death once: [`ValueError::OwnerDied`] (carrying the
/// value) from `get` and `update`, [`Error::OwnerDied`] from `set`. Calls made while this thread holds
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
    /// [`ValueError::OwnerDied`] carrying the value read (the read still
    /// happened; a writer that died may have left it half-written).
    /// [`ValueError::Corrupt`] if the lock word in shared memory is garbage.
    /// Both convert into [`Error`] for `?`.
    pub fn get(&self) -> std::result::Result<T, ValueError<T>> {
        self.cells
            .locked_value(self.external.as_ref(), || self.cells.read(0))
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
    /// [`ValueError::OwnerDied`] carrying the new value (the update still
    /// happened). [`ValueError::Corrupt`] if the lock word in shared memory
    /// is garbage. Both convert into [`Error`] for `?`.
    pub fn update(&self, f: impl FnOnce(&mut T)) -> std::result::Result<T, ValueError<T>> {
        self.cells.locked_value(self.external.as_ref(), || {
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

value_travel!(Value, Kind::Value, locked);
