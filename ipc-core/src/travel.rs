//! How handles travel to other processes: as a [`Token`] (where the region
//! is, what kind of object, at which offset), never as a pointer.
//!
//! Every shareable handle (`Queue`, `Lock`, `Value`, a pipe `Connection`,
//! ...) is an `rkyv` [`Message`](crate::codec::Message) through its token,
//! so it can be an argument of a spawned [`Process`](crate::process::Process)
//! or be sent through a `Queue` or `Pipe`; the receiver re-opens the
//! region and validates it (kind, type, size) like any `open`.
//!
//! Anonymous regions and a pipe end's descriptors are located as
//! `/proc/<pid>/fd/<fd>` of the process that sent the handle. The sender
//! keeps a duplicate of each such descriptor until the
//! receiver has opened its own copy, or for [`KEEP_ALIVE`] (30 s) if it
//! never does: a handle can be sent and dropped at once, as in Python.
//!
//! # Examples
//!
//! ```
//! use ipc_core::{codec, queue::Queue};
//! let q = Queue::<u32>::new(4)?;
//! q.put(&7)?;
//! // Encode the handle as a spawned child's argument would be, and decode it.
//! let bytes = codec::to_vec(&q)?;
//! let again: Queue<u32> = codec::from_slice(&bytes)?;
//! assert_eq!(again.get()?, 7);
//! # Ok::<(), ipc_core::Error>(())
//! ```

use crate::Result;

pub(crate) mod keepalive;

/// How long a sent handle's descriptors stay open in its sender for a
/// receiver that has not opened them yet. A pipe end sent but never
/// received counts as open for its peer until then.
///
/// # Examples
///
/// ```
/// assert!(ipc_core::travel::KEEP_ALIVE >= std::time::Duration::from_secs(1));
/// ```
pub const KEEP_ALIVE: std::time::Duration = keepalive::KEEP;

/// A handle's travelling form.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(::serde::Serialize, ::serde::Deserialize))]
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

/// What [`travel_via_token!`] keeps between serialising a handle's token
/// and resolving it: the token itself, made once per encoding.
#[doc(hidden)]
pub struct HandleResolver {
    /// The token being written.
    pub token: Token,
    /// Its resolver.
    pub inner: TokenResolver,
}

impl std::fmt::Debug for HandleResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandleResolver")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
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
/// let bytes = ipc_core::codec::to_vec(&Handle(7))?;
/// assert_eq!(ipc_core::codec::from_slice::<Handle>(&bytes)?.0, 7);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[macro_export]
macro_rules! travel_via_token {
    ([$($g:tt)*] $ty:ty) => {
        impl<$($g)*> rkyv::Archive for $ty {
            type Archived = $crate::travel::ArchivedToken;
            type Resolver = $crate::travel::HandleResolver;
            fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
                rkyv::Archive::resolve(&resolver.token, resolver.inner, out)
            }
        }

        impl<__S: rkyv::rancor::Fallible + ?Sized, $($g)*> rkyv::Serialize<__S> for $ty
        where
            $crate::travel::Token: rkyv::Serialize<__S>,
        {
            fn serialize(&self, s: &mut __S) -> ::std::result::Result<Self::Resolver, __S::Error> {
                // One token per encoding: making one may keep descriptors
                // alive for its receiver.
                let token = $crate::travel::Travel::token(self);
                let inner = rkyv::Serialize::serialize(&token, s)?;
                Ok($crate::travel::HandleResolver { token, inner })
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

        $crate::__travel_serde!([$($g)*] $ty);
    };
}
pub use crate::travel_via_token;

/// With the `serde` feature: `serde`'s traits for a [`Travel`] handle,
/// through its token, so a handle can sit inside a `Serde<T>` value.
#[cfg(feature = "serde")]
#[doc(hidden)]
#[macro_export]
macro_rules! __travel_serde {
    ([$($g:tt)*] $ty:ty) => {
        impl<$($g)*> $crate::travel::serde::Serialize for $ty {
            fn serialize<__S: $crate::travel::serde::Serializer>(
                &self,
                s: __S,
            ) -> ::std::result::Result<__S::Ok, __S::Error> {
                $crate::travel::serde::Serialize::serialize(&$crate::travel::Travel::token(self), s)
            }
        }

        impl<'de, $($g)*> $crate::travel::serde::Deserialize<'de> for $ty {
            fn deserialize<__D: $crate::travel::serde::Deserializer<'de>>(
                d: __D,
            ) -> ::std::result::Result<Self, __D::Error> {
                let t = <$crate::travel::Token as $crate::travel::serde::Deserialize>::deserialize(d)?;
                <$ty as $crate::travel::Travel>::from_token(t)
                    .map_err(<__D::Error as $crate::travel::serde::de::Error>::custom)
            }
        }
    };
}

/// Without the `serde` feature, handles implement only `rkyv`'s traits.
#[cfg(not(feature = "serde"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __travel_serde {
    ([$($g:tt)*] $ty:ty) => {};
}

/// The `serde` crate, for [`travel_via_token!`]'s expansion.
#[cfg(feature = "serde")]
#[doc(hidden)]
pub use ::serde;
