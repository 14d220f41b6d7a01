//! [`RawValue`] and [`RawArray`] (Python's `sharedctypes.RawValue` /
//! `RawArray`): the same cells, without a lock.

use bytemuck::Pod;

use super::cells::Cells;
use crate::region::Kind;
#[allow(unused_imports)] // `Error`: named by the doc links
use crate::{Error, Result};

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
    pub(super) cells: Cells<T>,
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

    /// A named raw value (interchangeable with a named [`Value`](super::Value) of the same type).
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
    pub(super) cells: Cells<T>,
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

value_travel!(RawValue, Kind::Value);
value_travel!(RawArray, Kind::Array);
