//! A typed view of an object placed in a [`Region`].

use std::ptr::NonNull;
use std::sync::Arc;

use crate::region::{Kind, Region};
use crate::Result;

/// Marker for types that may live in shared memory.
///
/// # Safety
/// Implementors are `#[repr(C)]`, hold no pointers or references, are valid
/// when all-zero, and every field is an atomic (so any bit pattern another
/// process writes is a valid value and concurrent access is not a data race).
pub(crate) unsafe trait ShmSafe: Sized + 'static {}

/// A reference-counted handle to a `T` living inside a region. Cloning is
/// cheap; the region stays mapped while any clone lives.
pub(crate) struct Shared<T: ShmSafe> {
    region: Arc<Region>,
    ptr: NonNull<T>,
}

// SAFETY: `T: ShmSafe` is made of atomics only, so sharing `&T` across
// threads is sound; the region handle is Send + Sync.
unsafe impl<T: ShmSafe> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe> Sync for Shared<T> {}

impl<T: ShmSafe> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            region: self.region.clone(),
            ptr: self.ptr,
        }
    }
}

impl<T: ShmSafe> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("kind", &self.region.kind())
            .field("name", &self.region.name())
            .finish()
    }
}

impl<T: ShmSafe> Shared<T> {
    /// Creates a region holding one `T` (zeroed, then `init`), anonymous or
    /// named.
    pub fn create(kind: Kind, name: Option<&str>, init: impl FnOnce(&T)) -> Result<Self> {
        let (region, _) = Region::builder(kind)
            .maybe_name(name.map(str::to_owned))
            .size(std::mem::size_of::<T>())
            .type_tag(crate::region::type_tag::<T>(
                std::mem::size_of::<T>(),
                std::mem::align_of::<T>(),
            ))
            .create_with(|r| {
                // SAFETY: the payload is at least size_of::<T>() bytes, 64-aligned,
                // zeroed (a valid T per ShmSafe) and private to us until published.
                init(unsafe { &*r.payload().cast::<T>() });
                Ok(())
            })?;
        Ok(Self::at(Arc::new(region), 0))
    }

    /// Opens the named region holding a `T`, validating kind, type and size.
    pub fn open(kind: Kind, name: &str) -> Result<Self> {
        let region = Region::open_with(
            name,
            kind,
            crate::region::type_tag::<T>(std::mem::size_of::<T>(), std::mem::align_of::<T>()),
            Some(std::mem::size_of::<T>()),
            crate::region::DEFAULT_OPEN_TIMEOUT,
        )?;
        Ok(Self::at(Arc::new(region), 0))
    }

    /// The travelling form of this object (see [`crate::travel`]).
    pub fn token(&self) -> crate::travel::Token {
        crate::travel::Token {
            locator: self.region.locator(),
            kind: self.region.kind() as u32,
            offset: (self.ptr.as_ptr() as usize - self.region.payload() as usize) as u64,
            extra: Vec::new(),
        }
    }

    /// Re-opens an object of `kind` from its token.
    pub fn from_token(kind: Kind, t: &crate::travel::Token) -> Result<Self> {
        if t.kind != kind as u32 || t.offset != 0 {
            return Err(crate::Error::Incompatible {
                what: "kind",
                expected: format!("{kind:?}"),
                found: format!("kind code {} at offset {}", t.kind, t.offset),
            });
        }
        let region = Region::open_locator(
            &t.locator,
            kind,
            crate::region::type_tag::<T>(std::mem::size_of::<T>(), std::mem::align_of::<T>()),
            Some(std::mem::size_of::<T>()),
        )?;
        Ok(Self::at(Arc::new(region), 0))
    }

    /// A view of the `T` at `offset` into the region's payload.
    ///
    /// # Panics
    /// If `offset` is misaligned or `T` does not fit (a bug in the caller,
    /// never caused by the region's contents).
    pub fn at(region: Arc<Region>, offset: usize) -> Self {
        assert!(offset % std::mem::align_of::<T>() == 0);
        assert!(offset + std::mem::size_of::<T>() <= region.payload_len());
        // SAFETY: in bounds per the assert; payload() is non-null.
        let ptr = unsafe { NonNull::new_unchecked(region.payload().add(offset).cast::<T>()) };
        Shared { region, ptr }
    }

    /// The region the object lives in.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }
}

impl<T: ShmSafe> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` points into the mapping kept alive by `self.region`,
        // is aligned and in bounds (checked in `at`), and `T: ShmSafe` is
        // valid for any bytes and made of atomics.
        unsafe { self.ptr.as_ref() }
    }
}
