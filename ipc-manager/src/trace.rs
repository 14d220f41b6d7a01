//! `tracing` events, behind the `tracing` feature.
//!
//! Without the feature `event!` expands to nothing: its arguments are not
//! even evaluated, so a call site costs nothing on any path. With it, it
//! forwards to `tracing`, with the module path as the target
//! (`ipc_manager::server`, `ipc_manager::manager`).

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
