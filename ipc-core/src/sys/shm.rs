//! Shared-memory file descriptors: POSIX `shm_open` and `memfd_create`.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// Opens or creates `/dev/shm/<name>` (`name` without the leading `/`).
pub fn shm_open(name: &str, create_exclusive: bool, mode: u32) -> Result<File, Errno> {
    let path = format!("/{name}");
    let flags = if create_exclusive {
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL
    } else {
        OFlag::O_RDWR
    };
    let fd = nix::sys::mman::shm_open(path.as_str(), flags, Mode::from_bits_truncate(mode))?;
    Ok(File::from(fd))
}

/// Removes the name `/dev/shm/<name>`. Existing mappings stay valid.
pub fn shm_unlink(name: &str) -> Result<(), Errno> {
    nix::sys::mman::shm_unlink(format!("/{name}").as_str())
}

/// Creates an anonymous shared-memory file that vanishes with its last
/// descriptor and mapping.
pub fn memfd(debug_name: &str) -> Result<File, Errno> {
    let cname = std::ffi::CString::new(debug_name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `cname` is a valid NUL-terminated string for the call's duration.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Opens a pidfd for `pid` (pollable: readable when the process exits).
pub fn pidfd_open(pid: u32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
