//! Seed 1.2.1.1 (entry function): with a re-executing start method, code
//! before the guard runs again in every child. `ipc_core::init()` is the
//! guard (Python's `if __name__ == "__main__":`): a spawned child runs its
//! target there and exits, so what follows runs only in the parent.

use std::time::Duration;

use ipc_core::process::{Process, StartMethod};

fn foo(_: ()) {
    // A re-imported Python module takes a moment before `foo` runs; this
    // pause keeps the seed's order (333 before 222) deterministic.
    std::thread::sleep(Duration::from_millis(100));
    println!("222");
}

fn main() -> ipc_core::Result<()> {
    // Unguarded "module level" code would go here and run in the child too.
    ipc_core::init();
    println!("It will be reload: 111");
    let mut p = Process::builder()
        .start_method(StartMethod::Spawn)
        .target_fn(foo, ());
    p.start()?;
    println!("333");
    p.join()?;
    Ok(())
}
