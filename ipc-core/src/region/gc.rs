//! Listing this user's regions, and removing those left behind by dead
//! processes.
//!
//! # How `gc` knows that nobody uses a region
//!
//! The creator's death alone says nothing: a region outlives its creator
//! for as long as other processes map it. So:
//!
//! 1. Every [`Region`](super::Region) handle of a named region holds a
//!    shared `flock` on its descriptor, from creation or opening until it
//!    drops. A `flock` belongs to the open file description, so a child
//!    forked while the handle was alive (it inherits the mapping and the
//!    descriptor) holds it too, and the kernel drops it only when the last
//!    process holding that description closes it or dies (a dead process's
//!    descriptors are closed and its mappings removed together). A spawned
//!    child inherits neither (exec replaces the address space; region
//!    descriptors are close-on-exec) and opens the region afresh.
//! 2. `gc` takes an exclusive `flock` without waiting, on its own
//!    descriptor: it fails while any handle lives, in any process.
//! 3. While holding it, `gc` also looks for the file (device and inode) in
//!    `/proc/<pid>/maps` and `/proc/<pid>/fd` of every process it may read:
//!    this catches programs that map our files without this library, and a
//!    forked child that closed its descriptors but kept the mapping.
//! 4. It unlinks the name only if the name still refers to the file it
//!    locked, and releases the lock after. An opener that opened the file
//!    just before takes its shared lock just after, finds the file unlinked
//!    (`st_nlink == 0`) and looks the name up again.
//!
//! Only regular files of our effective uid with a valid header are ever
//! considered, even when running as root.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

use super::header::{Header, Kind, HEADER_LEN, MAGIC, STATE_READY};
use super::name::{validate_name, PREFIX};
use super::{check_regular, check_uid};
use crate::sys::proc::TaskId;
use crate::sys::shm;
use crate::{Error, Result};

/// Where named regions live.
const SHM_DIR: &str = "/dev/shm";

/// One region of this user in `/dev/shm`, as [`Region::list`] finds it.
///
/// [`Region::list`]: super::Region::list
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionInfo {
    /// The region's name (what [`Region::open`](super::Region::open) takes).
    pub name: String,
    /// What it holds, if its header names a known kind.
    pub kind: Option<Kind>,
    /// The file's size in bytes, header included.
    pub len: u64,
    /// The process that created it (or last [adopted](super::Region::adopt) it).
    pub creator: TaskId,
    /// Whether its creator finished initialising it.
    pub ready: bool,
    /// The header's layout version (this build reads
    /// [`VERSION`](super::VERSION); others are refused by `open`).
    pub version: u32,
    dev: u64,
    ino: u64,
}

impl RegionInfo {
    /// Removes the region's name now, whoever uses it (existing mappings
    /// stay valid), if the name still refers to the file that was listed.
    /// Returns whether it did. For a program that knows it owns the region,
    /// such as a manager removing what its dead server had adopted; to
    /// remove only what nobody uses, see [`Region::gc_where`].
    ///
    /// # Errors
    /// [`Error::Io`] if the name could not be removed.
    ///
    /// [`Region::gc_where`]: super::Region::gc_where
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::region::{Kind, Region};
    /// let name = format!("doc-info-unlink-{}", std::process::id());
    /// let mut r = Region::builder(Kind::Raw).name(&name).size(64).create()?;
    /// r.set_unlink_on_drop(false);
    /// let info = Region::list()?.into_iter().find(|i| i.name == name).unwrap();
    /// assert_eq!(info.kind, Some(Kind::Raw));
    /// assert!(info.unlink()?);
    /// assert!(Region::open(&name, Kind::Raw).is_err());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn unlink(&self) -> Result<bool> {
        if !self.still_named() {
            return Ok(false);
        }
        match shm::shm_unlink(&format!("{PREFIX}{}", self.name)) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::ENOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `/dev/shm/ipc.<name>` is still the file that was listed.
    fn still_named(&self) -> bool {
        std::fs::symlink_metadata(format!("{SHM_DIR}/{PREFIX}{}", self.name))
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
    }
}

/// A listed region with the descriptor it was read through.
struct Found {
    info: RegionInfo,
    file: File,
}

/// See [`super::Region::list`].
pub(crate) fn list() -> Result<Vec<RegionInfo>> {
    Ok(scan()?.into_iter().map(|f| f.info).collect())
}

/// Every regular file of ours named `ipc.<valid name>` with a valid magic.
fn scan() -> Result<Vec<Found>> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(io_error)?;
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|f| f.strip_prefix(PREFIX)) else {
            continue;
        };
        if let Ok(f) = probe(name) {
            found.push(f);
        }
    }
    Ok(found)
}

fn io_error(e: std::io::Error) -> Error {
    Error::Io(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

/// Reads and checks the header of `/dev/shm/ipc.<name>`, saying what is
/// wrong with it if it is not one of our regions.
fn probe(name: &str) -> Result<Found> {
    validate_name(name)?;
    let path = format!("{SHM_DIR}/{PREFIX}{name}");
    // No symlink is followed, a FIFO does not block us, and nothing is
    // read before we know the file is a regular file of ours.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                name: name.to_owned(),
            },
            _ => io_error(e),
        })?;
    let meta = file.metadata().map_err(io_error)?;
    check_regular(&meta)?;
    check_uid(&meta, name)?;
    let mut buf = [0u8; HEADER_LEN];
    // A read, not a mapping: a file shorter than a header is a short
    // read here, never a SIGBUS.
    if file.read_exact_at(&mut buf, 0).is_err() {
        return Err(Error::Incompatible {
            what: "size",
            expected: format!(">= {HEADER_LEN} bytes (a region header)"),
            found: format!("{} bytes", meta.len()),
        });
    }
    let aligned: [u64; HEADER_LEN / 8] = bytemuck::cast(buf);
    let base: *const u8 = aligned.as_ptr().cast();
    // SAFETY: `aligned` is HEADER_LEN bytes, 8-aligned and alive for
    // both calls; every field is an integer (any bit pattern is valid).
    let (h, state) = unsafe {
        (
            Header::snapshot(base),
            // Relaxed: a private copy, read by this thread only.
            Header::state(base).load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    if h.magic != MAGIC {
        return Err(Error::Incompatible {
            what: "magic",
            expected: format!("{MAGIC:#x} (an ipc region header)"),
            found: format!("{:#x}", h.magic),
        });
    }
    Ok(Found {
        info: RegionInfo {
            name: name.to_owned(),
            kind: Kind::from_u32(h.kind),
            len: meta.len(),
            creator: TaskId::unpack(h.creator),
            ready: state == STATE_READY,
            version: h.version,
            dev: meta.dev(),
            ino: meta.ino(),
        },
        file,
    })
}

/// See [`super::Region::info`].
pub(crate) fn info(name: &str) -> Result<RegionInfo> {
    probe(name).map(|f| f.info)
}

/// See [`super::Region::gc_where`].
pub(crate) fn gc_where(mut pred: impl FnMut(&RegionInfo) -> bool) -> Result<Vec<String>> {
    // Exclusive locks are taken (and kept until the end) only on the
    // candidates; they fail while any handle of the region lives.
    let locked: Vec<Found> = scan()?
        .into_iter()
        .filter(|f| !f.info.creator.is_alive() && pred(&f.info))
        .filter(|f| shm::try_flock(&f.file, true).is_ok())
        .collect();
    if locked.is_empty() {
        return Ok(Vec::new());
    }
    let own_fds: HashSet<i32> = locked.iter().map(|f| f.file.as_raw_fd()).collect();
    let used = files_in_use(&own_fds);
    let mut removed = Vec::new();
    for f in &locked {
        let id = (dev_pair(f.info.dev), f.info.ino);
        if !used.contains(&id) && f.info.unlink().unwrap_or(false) {
            crate::trace::event!(INFO, region = %f.info.name, kind = ?f.info.kind, creator = f.info.creator.id, "removed a stale region (creator dead, unused)");
            removed.push(f.info.name.clone());
        }
    }
    for f in &locked {
        // Explicitly, after the unlinks: a child forked meanwhile shares
        // our descriptions, and would otherwise hold the locks on.
        let _ = shm::unlock(&f.file);
    }
    Ok(removed)
}

/// See [`super::Region::gc_candidates`]. Takes no lock, so that looking
/// (`ipc ls`) never makes a concurrent `gc` skip a region: the handles'
/// shared `flock`s are read from `/proc/locks` instead.
pub(crate) fn candidates() -> Result<Vec<RegionInfo>> {
    let dead: Vec<Found> = scan()?
        .into_iter()
        .filter(|f| !f.info.creator.is_alive())
        .collect();
    if dead.is_empty() {
        return Ok(Vec::new());
    }
    let own_fds: HashSet<i32> = dead.iter().map(|f| f.file.as_raw_fd()).collect();
    let mut used = files_in_use(&own_fds);
    used.extend(flocked_files());
    Ok(dead
        .into_iter()
        .filter(|f| !used.contains(&(dev_pair(f.info.dev), f.info.ino)))
        .map(|f| f.info)
        .collect())
}

/// `(device, inode)` of every file someone holds (or waits for) a shared
/// `flock` on, as every region handle does, from `/proc/locks`:
/// `1: FLOCK  ADVISORY  READ  1234 00:1a:5678 0 EOF`. (Exclusive ones are
/// a concurrent `gc`'s, about to remove the file if nobody uses it.)
fn flocked_files() -> HashSet<((u32, u32), u64)> {
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return HashSet::new();
    };
    locks
        .lines()
        .filter(|l| l.contains("FLOCK") && l.contains(" READ "))
        .filter_map(|l| {
            let id = l
                .split_ascii_whitespace()
                .find(|t| t.matches(':').count() == 2)?;
            let mut it = id.split(':');
            let ma = u32::from_str_radix(it.next()?, 16).ok()?;
            let mi = u32::from_str_radix(it.next()?, 16).ok()?;
            let ino = it.next()?.parse().ok()?;
            Some(((ma, mi), ino))
        })
        .collect()
}

/// A device number as the `(major, minor)` pair `/proc/<pid>/maps` shows.
fn dev_pair(dev: u64) -> (u32, u32) {
    (libc::major(dev), libc::minor(dev))
}

/// `(device, inode)` of every `/dev/shm` file that a process we may
/// inspect maps or holds open (our own descriptors in `skip_fds` aside).
fn files_in_use(skip_fds: &HashSet<i32>) -> HashSet<((u32, u32), u64)> {
    let mut set = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return set;
    };
    let me = crate::sys::proc::pid().to_string();
    for p in procs.flatten() {
        let pid = p.file_name();
        let Some(pid) = pid
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let dir = p.path();
        if let Ok(maps) = std::fs::read_to_string(dir.join("maps")) {
            // "addr perms offset MM:mm inode path"
            for line in maps.lines().filter(|l| l.contains("/dev/shm/")) {
                let mut it = line.split_ascii_whitespace().skip(3);
                let (Some(dev), Some(ino)) = (it.next(), it.next()) else {
                    continue;
                };
                let Some((ma, mi)) = dev.split_once(':') else {
                    continue;
                };
                if let (Ok(ma), Ok(mi), Ok(ino)) = (
                    u32::from_str_radix(ma, 16),
                    u32::from_str_radix(mi, 16),
                    ino.parse(),
                ) {
                    set.insert(((ma, mi), ino));
                }
            }
        }
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if pid == me
                && fd
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse().ok())
                    .is_some_and(|n: i32| skip_fds.contains(&n))
            {
                continue;
            }
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            if !target.starts_with("/dev/shm/") {
                continue;
            }
            // Through the magic link: the open file itself.
            if let Ok(m) = std::fs::metadata(fd.path()) {
                set.insert((dev_pair(m.dev()), m.ino()));
            }
        }
    }
    set
}
