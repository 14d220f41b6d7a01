//! Seed 1.1.2.2 (orphan process): the parent leaves with `_exit` right
//! after starting a child; the child keeps working and is adopted by
//! another process (init or a subreaper), which reaps it in the end.

use std::time::Duration;

use ipc_core::process::Process;

fn main() -> ipc_core::Result<()> {
    ipc_core::init();
    let parent = std::process::id();
    let mut p = Process::new(move || {
        for _ in 0..5 {
            let ppid = nix::unistd::getppid().as_raw() as u32;
            let note = if ppid == parent {
                "parent alive"
            } else {
                "adopted"
            };
            println!("222 (parent pid {ppid}, {note})");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    p.start()?;
    std::mem::forget(p); // leave without joining, as os._exit does
    println!("111 (parent {parent} exits now)");
    // SAFETY: leaves at once, like Python's os._exit(0): no exit handlers.
    unsafe { libc::_exit(0) }
}
