//! Shared-memory file descriptors: POSIX `shm_open` and `memfd_create`.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

/// Creates an anonymous shared-memory file that can be sealed (see
/// [`seal_size`]); otherwise as [`memfd`].
pub fn memfd_sealable(debug_name: &str) -> Result<File, Errno> {
    let cname = std::ffi::CString::new(debug_name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `cname` is a valid NUL-terminated string for the call's duration.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Sizes `file` to `len` bytes. With `allocate`, every page is allocated
/// now (`fallocate`), so that a full file system is `ENOSPC` here rather
/// than a `SIGBUS` at the first touch of a page; a file system that cannot
/// allocate ahead (`EOPNOTSUPP`) is then sized sparsely. Without it, the
/// file is sparse (`ftruncate`): pages are allocated when first touched.
pub fn reserve(file: &File, len: u64, allocate: bool) -> Result<(), Errno> {
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    loop {
        if !allocate {
            // SAFETY: ftruncate on a descriptor we own.
            return if unsafe { libc::ftruncate(file.as_raw_fd(), len) } == 0 {
                Ok(())
            } else {
                Err(Errno::last())
            };
        }
        // SAFETY: fallocate on a descriptor we own, mode 0 (allocate and
        // extend the size), with a non-negative range.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } == 0 {
            return Ok(());
        }
        match Errno::last() {
            // tmpfs gives up (undoing what it allocated) on a pending signal.
            Errno::EINTR => continue,
            Errno::EOPNOTSUPP => {
                // SAFETY: ftruncate on a descriptor we own.
                return if unsafe { libc::ftruncate(file.as_raw_fd(), len) } == 0 {
                    Ok(())
                } else {
                    Err(Errno::last())
                };
            }
            e => return Err(e),
        }
    }
}

/// Seals a [`memfd_sealable`] file against shrinking, growing and further
/// seals: no process that reaches it (through `/proc/<pid>/fd/<n>`) can
/// then truncate it under its users' mappings.
pub fn seal_size(file: &File) -> Result<(), Errno> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl(F_ADD_SEALS) on a descriptor we own, with an int argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Seals a [`memfd_sealable`] file against shrinking and further seals,
/// leaving it free to grow (a queue's file grows for its payload blocks):
/// a grown file never takes pages from under a mapping.
pub fn seal_shrink(file: &File) -> Result<(), Errno> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: fcntl(F_ADD_SEALS) on a descriptor we own, with an int argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Allocates `len` bytes at `offset` of `file` (`fallocate` mode 0),
/// extending its size if the range ends past it and never shrinking it,
/// so concurrent growers cannot undo each other. `ENOSPC` when the file
/// system is full; `EINTR` is retried.
pub fn allocate(file: &File, offset: u64, len: u64) -> Result<(), Errno> {
    let off = libc::off_t::try_from(offset).map_err(|_| Errno::EFBIG)?;
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    loop {
        // SAFETY: fallocate on a descriptor we own, with a non-negative range.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, off, len) } == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Gives back the pages of `len` bytes at `offset` of `file`, keeping its
/// size (`FALLOC_FL_PUNCH_HOLE`); the range reads as zeros afterwards.
pub fn punch(file: &File, offset: u64, len: u64) -> Result<(), Errno> {
    let off = libc::off_t::try_from(offset).map_err(|_| Errno::EFBIG)?;
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    loop {
        // SAFETY: fallocate on a descriptor we own, with a non-negative range.
        if unsafe { libc::fallocate(file.as_raw_fd(), mode, off, len) } == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// The seals of `file` (`F_SEAL_*` bits; 0 for a file that cannot be sealed).
pub fn seals(file: &File) -> Result<i32, Errno> {
    // SAFETY: fcntl(F_GET_SEALS) on a descriptor we own; no argument.
    let s = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    match s {
        s if s >= 0 => Ok(s),
        _ if Errno::last() == Errno::EINVAL => Ok(0),
        _ => Err(Errno::last()),
    }
}

/// Takes a `flock` on `file` without waiting: shared (`exclusive == false`)
/// or exclusive. `EWOULDBLOCK` if a conflicting lock is held. The lock
/// belongs to the open file description: it is shared with forked
/// children and released when the last descriptor of it is closed.
pub fn try_flock(file: &File, exclusive: bool) -> Result<(), Errno> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Releases the `flock` held through `file`'s open file description, for
/// every process that shares it (a child forked meanwhile included).
pub fn unlock(file: &File) -> Result<(), Errno> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) } == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// The effective uid of the calling process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
