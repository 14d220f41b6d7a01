//! The watchdog both hardening suites run their subjects under: the
//! integration tests (`tests/hardening.rs`) and the ones that need the
//! crate's private mailbox layout (`src/hardening_tests.rs`) include this
//! file with `#[path]`.

use std::time::Duration;

use ipc_core::process::{Process, TargetOutput};
use ipc_core::Error;

/// Runs `f` in a forked child and returns its result; a child still
/// running after `limit` is killed and the test fails.
pub fn in_child<R: TargetOutput>(
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R::Value {
    let mut p = Process::new(f);
    p.start().expect("fork");
    match p.join_timeout(limit) {
        Err(Error::Timeout) => {
            let _ = p.kill();
            let _ = p.join();
            panic!("the child did not finish within {limit:?}: a hang");
        }
        r => r.expect("the child failed"),
    }
}
