//! [`init`]: the Rust form of Python's `if __name__ == "__main__":`.

/// The Rust form of Python's `if __name__ == "__main__":`. Call it first
/// thing in `main`.
///
/// In a normal run it returns at once. In a child started with the `Spawn`
/// method it runs the requested target and exits with its status, so the
/// rest of `main` never runs there (code *before* the call runs in both,
/// exactly like module-level code in Python). Spawning without having
/// called it is refused with [`Error::InitNotCalled`](crate::Error::InitNotCalled) rather than
/// re-running `main` in every child.
///
/// # Examples
///
/// ```
/// // fn main() {
/// ipc_core::init(); // a spawned child runs its target here and exits
/// // ... the rest of the program runs only in the parent ...
/// // }
/// ```
pub fn init() {
    super::image::mark_init_called();
    if let Some(spec) = std::env::var_os(super::forkserver::ENV) {
        std::env::remove_var(super::forkserver::ENV);
        super::forkserver::serve(&spec.to_string_lossy());
    }
    let Some(spec) = std::env::var_os(super::spawn::ENV) else {
        return;
    };
    // Grandchildren must not inherit the request.
    std::env::remove_var(super::spawn::ENV);
    let code = match super::spawn::run_child(&spec.to_string_lossy()) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("ipc: spawned child could not start: {msg}");
            1
        }
    };
    // SAFETY: leaves the child at once: the rest of `main` must not run.
    unsafe { libc::_exit(code) }
}
