//! Setting up a child process before it runs anything of ours: dying with
//! its parent, and keeping inherited descriptors across `exec`.

use std::os::unix::process::CommandExt;

/// `PR_SET_PDEATHSIG(SIGKILL)`, then exits at once if the parent already
/// died before the call (the race `prctl` alone leaves open).
pub(crate) fn set_parent_death_signal(parent: u32) {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if nix::unistd::getppid().as_raw() as u32 != parent {
        // SAFETY: the parent is gone; leave without running anything.
        unsafe { libc::_exit(1) }
    }
}

/// Makes `cmd`'s child keep `fds` open across `exec` (they are CLOEXEC
/// here) and, with `die_with`, die with that parent process.
pub(crate) fn keep_across_exec<const N: usize>(
    cmd: &mut std::process::Command,
    fds: [std::os::fd::RawFd; N],
    die_with: Option<u32>,
) {
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (fcntl, prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(parent) = die_with {
                set_parent_death_signal(parent);
            }
            Ok(())
        })
    };
}
