//! [`Serde<T>`]: any `serde` type as a [`Message`](super::Message),
//! encoded with `postcard` (feature `serde`).
//!
//! The wrapper archives as `rkyv` bytes holding the postcard encoding, so
//! it composes with everything that takes a `Message`: a `Vec<Serde<T>>`,
//! a tuple with one, a pool task's argument and result, a Manager dict's
//! values. Decoding validates twice: `rkyv` checks the byte string, then
//! postcard checks the value (a malformed one is [`Error::Corrupt`]).
//!
//! [`Error::Corrupt`]: crate::Error::Corrupt

use std::ops::{Deref, DerefMut};

use rkyv::rancor::{Fallible, Source};
use rkyv::ser::{Allocator, Writer};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Deserialize, Place, Serialize};

/// A value that travels encoded with `postcard` through its `serde`
/// derives, so a type needs no `rkyv` derives to go anywhere a
/// [`Message`](super::Message) goes.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use ipc_core::codec::Serde;
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// enum Shape { Circle { r: f64 }, Named(String) }
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Job { name: String, shapes: Vec<Shape>, tags: HashMap<String, u32> }
///
/// let job = Job {
///     name: "draw".into(),
///     shapes: vec![Shape::Circle { r: 1.5 }, Shape::Named("star".into())],
///     tags: HashMap::from([("prio".into(), 3)]),
/// };
/// let q = ipc_core::queue::Queue::<Serde<Job>>::new(4)?;
/// q.put(&Serde(job))?;
/// let Serde(back) = q.get()?;
/// assert_eq!(back.shapes[1], Shape::Named("star".into()));
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Serde<T>(pub T);

impl<T> Serde<T> {
    /// The wrapped value.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(ipc_core::codec::Serde(3u8).into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Serde<T> {
    fn from(v: T) -> Self {
        Serde(v)
    }
}

impl<T> Deref for Serde<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Serde<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// Between serializing the bytes and resolving the archived vector.
#[doc(hidden)]
pub struct SerdeResolver {
    inner: VecResolver,
    len: usize,
}

impl<T: ::serde::Serialize> Archive for Serde<T> {
    type Archived = ArchivedVec<u8>;
    type Resolver = SerdeResolver;

    fn resolve(&self, resolver: SerdeResolver, out: Place<ArchivedVec<u8>>) {
        ArchivedVec::resolve_from_len(resolver.len, resolver.inner, out);
    }
}

impl<T, S> Serialize<S> for Serde<T>
where
    T: ::serde::Serialize,
    S: Fallible + Allocator + Writer + ?Sized,
    S::Error: Source,
{
    fn serialize(&self, s: &mut S) -> Result<SerdeResolver, S::Error> {
        let bytes = postcard::to_allocvec(&self.0).map_err(S::Error::new)?;
        let inner = ArchivedVec::<u8>::serialize_from_slice(&bytes, s)?;
        Ok(SerdeResolver {
            inner,
            len: bytes.len(),
        })
    }
}

impl<T, D> Deserialize<Serde<T>, D> for ArchivedVec<u8>
where
    T: ::serde::de::DeserializeOwned,
    D: Fallible + ?Sized,
    D::Error: Source,
{
    fn deserialize(&self, _: &mut D) -> Result<Serde<T>, D::Error> {
        postcard::from_bytes(self.as_slice())
            .map(Serde)
            .map_err(D::Error::new)
    }
}

#[cfg(test)]
mod tests {
    use super::Serde;
    use crate::codec::{from_slice, to_vec};
    use std::collections::HashMap;

    #[derive(::serde::Serialize, ::serde::Deserialize, Debug, PartialEq, Clone)]
    struct Row {
        id: u64,
        name: String,
        cells: Vec<f64>,
        meta: HashMap<String, Option<i32>>,
    }

    fn row() -> Row {
        Row {
            id: 9,
            name: "r".repeat(300),
            cells: (0..1000).map(|i| i as f64 * 0.5).collect(),
            meta: HashMap::from([("a".into(), Some(-1)), ("b".into(), None)]),
        }
    }

    #[test]
    fn serde_values_round_trip_alone_and_inside_rkyv_containers() {
        let r = row();
        let back: Serde<Row> = from_slice(&to_vec(&Serde(r.clone())).unwrap()).unwrap();
        assert_eq!(back.0, r);
        let many = vec![Serde(r.clone()), Serde(r.clone())];
        let back: Vec<Serde<Row>> = from_slice(&to_vec(&many).unwrap()).unwrap();
        assert_eq!(back, many);
        let pair = (7u32, Serde(r.clone()));
        let back: (u32, Serde<Row>) = from_slice(&to_vec(&pair).unwrap()).unwrap();
        assert_eq!(back, pair);
    }

    #[test]
    fn truncated_or_garbage_postcard_bytes_are_corrupt_not_a_panic() {
        // A valid rkyv byte string whose contents are not a valid `Row`.
        let bytes = to_vec(&vec![0xffu8; 3]).unwrap();
        assert!(matches!(
            from_slice::<Serde<Row>>(&bytes),
            Err(crate::Error::Corrupt(_))
        ));
        let good = to_vec(&Serde(row())).unwrap();
        for cut in [0, 1, 8, good.len() / 2, good.len() - 1] {
            assert!(from_slice::<Serde<Row>>(&good[..cut]).is_err());
        }
    }
}
