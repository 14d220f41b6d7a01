//! Checks of a region's file before it is trusted: owner, mode, kind of file, and the shared lock.

use super::*;

pub(super) fn metadata(file: &File) -> Result<std::fs::Metadata> {
    file.metadata()
        .map_err(|e| Error::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0))))
}

/// Refuses a region file that is not a regular file of ours, or (for a
/// named region) that other users may read or write.
pub(super) fn check_owner(meta: &std::fs::Metadata, name: &str, named: bool) -> Result<()> {
    check_uid(meta, name)?;
    if named && meta.mode() & 0o077 != 0 {
        return Err(Error::InsecureMode {
            name: name.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    check_regular(meta)
}

/// Refuses a region file another user owns.
pub(super) fn check_uid(meta: &std::fs::Metadata, name: &str) -> Result<()> {
    let euid = shm::euid();
    if meta.uid() != euid {
        return Err(Error::ForeignOwner {
            name: name.to_owned(),
            uid: meta.uid(),
            euid,
        });
    }
    Ok(())
}

/// Refuses a region file that is not a regular file.
pub(super) fn check_regular(meta: &std::fs::Metadata) -> Result<()> {
    if !meta.file_type().is_file() {
        return Err(Error::Incompatible {
            what: "file type",
            expected: "a regular file".into(),
            found: format!("mode {:#o}", meta.mode()),
        });
    }
    Ok(())
}

/// Takes the shared `flock` every handle of a named region holds (see
/// `gc`), waiting at most until `deadline` if someone holds it exclusively
/// (`gc` does, while it checks whether a dead creator's region is in use).
pub(super) fn lock_shared(file: &File, name: &str, deadline: Instant) -> Result<()> {
    loop {
        match shm::try_flock(file, false) {
            Ok(()) => return Ok(()),
            Err(Errno::EWOULDBLOCK) => {
                // Refuse a foreign file at once rather than wait on it.
                check_owner(&metadata(file)?, name, true)?;
                if Instant::now() >= deadline {
                    return Err(Error::Timeout);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub(super) fn incompatible(
    what: &'static str,
    expected: impl std::fmt::Display,
    found: impl std::fmt::Display,
) -> Error {
    Error::Incompatible {
        what,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}
