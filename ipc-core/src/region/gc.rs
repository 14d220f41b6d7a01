//! Removal of regions left behind by dead processes.

use super::header::{Header, HEADER_LEN, MAGIC};
use super::name::PREFIX;
use crate::sys::proc::TaskId;
use crate::Result;

/// See [`super::Region::gc`].
pub(crate) fn gc() -> Result<Vec<String>> {
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| {
        crate::Error::Io(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    })?;
    let mut candidates = Vec::new();
    for entry in dir.flatten() {
        let file_name = entry.file_name();
        let Some(fname) = file_name.to_str() else {
            continue;
        };
        let Some(user) = fname.strip_prefix(PREFIX) else {
            continue;
        };
        if let Some(creator) = creator_of(&entry.path()) {
            if !creator.is_alive() {
                candidates.push((fname.to_owned(), user.to_owned()));
            }
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mapped = mapped_shm_files();
    let mut removed = Vec::new();
    for (fname, user) in candidates {
        if !mapped.contains(&fname) && super::Region::unlink(&user).is_ok() {
            removed.push(user);
        }
    }
    Ok(removed)
}

/// Reads the creator of a region file, if it has a valid header.
fn creator_of(path: &std::path::Path) -> Option<TaskId> {
    use std::io::Read;
    let mut buf = [0u8; HEADER_LEN];
    std::fs::File::open(path).ok()?.read_exact(&mut buf).ok()?;
    // SAFETY: `buf` holds HEADER_LEN bytes; the snapshot only reads integers
    // (any bit pattern is valid); the buffer is 1-aligned, so copy into an
    // aligned header-sized array first.
    let aligned: [u64; HEADER_LEN / 8] = bytemuck::cast(buf);
    // SAFETY: `aligned` is HEADER_LEN bytes, 8-aligned, alive for the call.
    let h = unsafe { Header::snapshot(aligned.as_ptr().cast()) };
    (h.magic == MAGIC).then(|| TaskId::unpack(h.creator))
}

/// Names of `/dev/shm` files mapped by any process we can inspect.
fn mapped_shm_files() -> std::collections::HashSet<String> {
    let mut set = std::collections::HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return set;
    };
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(maps) = std::fs::read_to_string(p.path().join("maps")) else {
            continue;
        };
        for line in maps.lines() {
            if let Some(i) = line.find("/dev/shm/") {
                let f = line[i + 9..].trim_end_matches(" (deleted)");
                set.insert(f.to_owned());
            }
        }
    }
    set
}
