//! `tracing` events and spans, behind the `tracing` feature.
//!
//! Without the feature these macros expand to nothing (`event!`) or to
//! a unit struct (`span!`): their arguments are not even evaluated, so a call site
//! costs nothing on any path. With it they forward to `tracing`, with the
//! module path as the target (`ipc_core::queue`, `ipc_core::pool::core`...).

/// `event!(WARN, field = value, "message")`: a `tracing` event at that
/// level, or nothing without the feature.
macro_rules! event {
    ($lvl:ident, $($arg:tt)+) => {{
        #[cfg(feature = "tracing")]
        {
            ::tracing::event!(::tracing::Level::$lvl, $($arg)+);
        }
    }};
}
pub(crate) use event;

/// `let _s = span!(DEBUG, "name", field = value);`: an entered `tracing`
/// span, left when the guard drops; a [`NoSpan`] without the feature.
macro_rules! span {
    ($lvl:ident, $($arg:tt)+) => {{
        #[cfg(feature = "tracing")]
        let s = ::tracing::span!(::tracing::Level::$lvl, $($arg)+).entered();
        #[cfg(not(feature = "tracing"))]
        let s = $crate::trace::NoSpan;
        s
    }};
}
pub(crate) use span;

/// What [`span!`] gives without the feature: nothing to enter or leave.
#[cfg(not(feature = "tracing"))]
pub(crate) struct NoSpan;

/// `enabled!(WARN)`: whether a subscriber wants events at that level here
/// (to skip work done only to report); `false` without the feature.
macro_rules! enabled {
    ($lvl:ident) => {{
        #[cfg(feature = "tracing")]
        let e = ::tracing::enabled!(::tracing::Level::$lvl);
        #[cfg(not(feature = "tracing"))]
        let e = false;
        e
    }};
}
pub(crate) use enabled;
