//! [`Array`] (Python's `multiprocessing.Array`) and its builder.

use bytemuck::Pod;

use super::cells::Cells;
use super::raw::RawArray;
use crate::region::Kind;
use crate::sync::Lock;
use crate::{Error, Result};

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
/// [`ValueBuilder`](super::ValueBuilder)).
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

value_travel!(Array, Kind::Array, locked);
