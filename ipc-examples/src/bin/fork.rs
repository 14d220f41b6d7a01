//! Seed 1.2.1.2 (fork): the lowest level. `fork` returns the child's pid
//! to the parent and 0 to the child.

use std::time::Duration;

fn demo() {
    println!("[INFO] do something by process {}", std::process::id());
    println!(
        "[INFO] this process parent pid is {}",
        nix::unistd::getppid()
    );
}

fn main() {
    // SAFETY: the child only prints and leaves with `_exit`.
    let process = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => child.as_raw(),
        Ok(nix::unistd::ForkResult::Child) => 0,
        Err(e) => {
            eprintln!("fork failed: {e}");
            std::process::exit(1);
        }
    };
    println!("{process}");
    if process == 0 {
        demo();
    }
    println!("main process {} is over", std::process::id());
    std::thread::sleep(Duration::from_millis(300));
    if process == 0 {
        // SAFETY: the child leaves without the parent's exit handlers.
        unsafe { libc::_exit(0) }
    }
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(process), None);
}
