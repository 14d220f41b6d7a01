//! How handles travel to other processes: as a [`Token`] (where the region
//! is, what kind of object, at which offset), never as a pointer.
//!
//! Every shareable handle (`Queue`, `Lock`, `Value`, a pipe `Connection`,
//! ...) is an `rkyv` [`Message`](crate::codec::Message) through its token,
//! so it can be an argument of a spawned [`Process`](crate::process::Process)
//! or be sent through a `Queue` or `Pipe`; the receiver re-opens the
//! region and validates it (kind, type, size) like any `open`.
//!
//! Anonymous regions are located as `/proc/<pid>/fd/<fd>` of the process
//! that sent the handle, so that process must still hold the handle when
//! the receiver decodes it (as with Python, pass handles from a live parent).
//!
//! # Examples
//!
//! ```
//! use ipc_core::{codec, queue::Queue};
//! let q = Queue::<u32>::new(4)?;
//! q.put(&7)?;
//! // Encode the handle as a spawned child's argument would be, and decode it.
//! let bytes = codec::encode_with(&q, |b| {
//!     let mut v = rkyv::util::AlignedVec::<16>::new();
//!     v.extend_from_slice(b);
//!     v
//! })?;
//! let again: Queue<u32> = codec::decode(&bytes)?;
//! assert_eq!(again.get()?, 7);
//! # Ok::<(), ipc_core::Error>(())
//! ```

use crate::Result;

/// A handle's travelling form.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Where the region is (see [`Region::locator`](crate::region::Region::locator)).
    pub locator: String,
    /// The region's [`Kind`](crate::region::Kind) code.
    pub kind: u32,
    /// Offset of the object in the region's payload.
    pub offset: u64,
    /// Object-specific extras (a pipe end's ring indices and descriptors).
    pub extra: Vec<String>,
}

/// A handle that can be turned into a [`Token`] and back.
pub trait Travel: Sized {
    /// The travelling form of this handle.
    fn token(&self) -> Token;
    /// Re-opens a handle from its token, validating what it finds.
    ///
    /// # Errors
    /// Whatever opening the region returns ([`crate::Error::NotFound`],
    /// [`crate::Error::Incompatible`], ...).
    fn from_token(t: Token) -> Result<Self>;
}

/// Implements `rkyv`'s traits for a [`Travel`] handle through its token,
/// making the handle a [`Message`](crate::codec::Message). The calling
/// crate needs `rkyv` as a dependency.
///
/// # Examples
///
/// ```
/// use ipc_core::travel::{Token, Travel};
/// struct Handle(u64);
/// impl Travel for Handle {
///     fn token(&self) -> Token {
///         Token { locator: String::new(), kind: 0, offset: self.0, extra: vec![] }
///     }
///     fn from_token(t: Token) -> ipc_core::Result<Self> {
///         Ok(Handle(t.offset))
///     }
/// }
/// ipc_core::travel_via_token!([] Handle);
///
/// let bytes = ipc_core::codec::encode_with(&Handle(7), |b| {
///     let mut v = rkyv::util::AlignedVec::<16>::new();
///     v.extend_from_slice(b);
///     v
/// })?;
/// assert_eq!(ipc_core::codec::decode::<Handle>(&bytes)?.0, 7);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[macro_export]
macro_rules! travel_via_token {
    ([$($g:tt)*] $ty:ty) => {
        impl<$($g)*> rkyv::Archive for $ty {
            type Archived = $crate::travel::ArchivedToken;
            type Resolver = $crate::travel::TokenResolver;
            fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
                rkyv::Archive::resolve(&$crate::travel::Travel::token(self), resolver, out)
            }
        }

        impl<__S: rkyv::rancor::Fallible + ?Sized, $($g)*> rkyv::Serialize<__S> for $ty
        where
            $crate::travel::Token: rkyv::Serialize<__S>,
        {
            fn serialize(&self, s: &mut __S) -> ::std::result::Result<Self::Resolver, __S::Error> {
                rkyv::Serialize::serialize(&$crate::travel::Travel::token(self), s)
            }
        }

        impl<__D: rkyv::rancor::Fallible + ?Sized, $($g)*> rkyv::Deserialize<$ty, __D>
            for $crate::travel::ArchivedToken
        where
            __D::Error: rkyv::rancor::Source,
        {
            fn deserialize(&self, d: &mut __D) -> ::std::result::Result<$ty, __D::Error> {
                let t: $crate::travel::Token =
                    <$crate::travel::ArchivedToken as rkyv::Deserialize<$crate::travel::Token, __D>>::deserialize(self, d)?;
                <$ty as $crate::travel::Travel>::from_token(t)
                    .map_err(<__D::Error as rkyv::rancor::Source>::new)
            }
        }
    };
}
pub use crate::travel_via_token;
