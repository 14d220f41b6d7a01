//! Region names: what users may choose and what lands in `/dev/shm`.

use crate::{Error, Result};

/// Prefix of every region file we create in `/dev/shm`.
pub const PREFIX: &str = "ipc.";
/// Longest user name accepted (the kernel's limit is 255 bytes).
pub const MAX_NAME_LEN: usize = 200;

/// Checks a user-chosen region name: 1 to 200 bytes of ASCII letters,
/// digits, `.`, `_` and `-`, not starting with `.`.
///
/// # Errors
/// [`Error::InvalidName`] saying what is wrong.
///
/// # Examples
///
/// ```
/// use ipc_core::region::validate_name;
/// assert!(validate_name("jobs-1").is_ok());
/// assert!(validate_name("a/b").is_err());
/// assert!(validate_name("").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 200 bytes");
    }
    if name.contains('/') {
        return bad("contains '/'");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// The `/dev/shm` file name (without `/`) for a validated user name.
///
/// # Errors
/// As [`validate_name`].
///
/// # Examples
///
/// ```
/// assert_eq!(ipc_core::region::shm_name("jobs")?, "ipc.jobs");
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub fn shm_name(name: &str) -> Result<String> {
    validate_name(name)?;
    Ok(format!("{PREFIX}{name}"))
}
