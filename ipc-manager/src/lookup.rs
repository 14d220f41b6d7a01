//! What [`Manager::get`](crate::Manager::get) resolves a name to: the
//! [`Hosted`] types and their type tags.

pub(crate) mod sealed {
    /// What a registered name resolves to; see [`super::Hosted`].
    pub trait Lookup: Sized {
        #[doc(hidden)]
        fn tag() -> u64;
        #[doc(hidden)]
        fn from_entry(
            session: &std::sync::Arc<crate::session::Session>,
            e: crate::wire::Entry,
        ) -> crate::Result<Self>;
    }
}

/// A type a manager hosts and [`Manager::get`](crate::Manager::get) can look up by name: the
/// shared-memory objects (`Lock`, `Value<T>`, `Queue<T>`, ...) and the
/// proxies ([`DictProxy`](crate::DictProxy), [`ListProxy`](crate::ListProxy),
/// [`Namespace`](crate::Namespace), [`ServiceProxy`](crate::ServiceProxy)).
pub trait Hosted: sealed::Lookup {}
impl<T: sealed::Lookup> Hosted for T {}
