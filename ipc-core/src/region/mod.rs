//! Named and anonymous shared-memory regions with a validated header.
//!
//! A [`Region`] is one mapping of a shared-memory file. Named regions live
//! in `/dev/shm/ipc.<name>` and can be opened by any process of the same
//! user; anonymous regions are `memfd`s, inherited across `fork` and gone
//! with the last process that maps them, so they can never leak.
//!
//! The supported surface is naming, creating, opening, listing and
//! collecting regions (Python's `shared_memory.SharedMemory` lifecycle);
//! their bytes are reached through the typed objects built on them (for a
//! plain byte buffer, Python's `SharedMemory.buf`, a
//! [`RawArray<u8>`](crate::value::RawArray)). The raw internals (the
//! `payload()` pointer, the descriptor, adoption, locators, the header
//! constants) are `#[doc(hidden)]`: they are public only for the other
//! crates of this workspace (ipc-manager, ipc-cli, the benches) and are
//! unsupported outside it; they may change in any release.
//!
//! # Examples
//!
//! ```
//! use ipc_core::region::{Kind, Region};
//! let a = Region::builder(Kind::Raw).name("doc-region-example").size(4096).create()?;
//! let b = Region::open("doc-region-example", Kind::Raw)?;
//! assert_eq!(b.payload_len(), 4096);
//! drop(b);
//! drop(a); // the creator unlinks the name
//! assert!(Region::open("doc-region-example", Kind::Raw).is_err());
//! # Ok::<(), ipc_core::Error>(())
//! ```

mod builder;
mod checks;
mod gc;
mod header;
mod name;

pub use builder::RegionBuilder;
pub use gc::RegionInfo;
pub use header::Kind;
#[doc(hidden)] // internal: for the workspace crates only
pub use header::{type_tag, HEADER_LEN, MAGIC, VERSION};
#[doc(hidden)] // internal: for the workspace crates only
pub use name::shm_name;
pub use name::validate_name;

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;

use crate::sys::{proc, shm};
use crate::{Error, Result};
use checks::*;
use header::Header;

/// How [`RegionBuilder::create`] treats an existing region of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CreateMode {
    /// Fail with [`Error::AlreadyExists`] if the name is taken.
    #[default]
    CreateExclusive,
    /// Open the existing region (validating it) or create a new one.
    OpenOrCreate,
}

/// Largest anonymous region whose pages are all allocated at creation
/// (named regions always are).
///
/// # Examples
///
/// ```
/// use std::os::unix::fs::MetadataExt;
/// use ipc_core::region::{Kind, Region, ANON_RESERVE_MAX};
/// let r = Region::builder(Kind::Raw).size(ANON_RESERVE_MAX / 2).create()?;
/// let allocated = r.file().metadata().unwrap().blocks() * 512;
/// assert!(allocated >= (ANON_RESERVE_MAX / 2) as u64);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub const ANON_RESERVE_MAX: usize = 1 << 20;

/// Default time an opener waits for a region still being initialised.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// One mapped shared-memory region. See the [module docs](self).
#[derive(Debug)]
pub struct Region {
    map: MmapRaw,
    file: File,
    name: Option<String>,
    kind: Kind,
    /// pid of the process that created the region, if this handle created
    /// it; only that process unlinks (a forked child's copy never does).
    creator_pid: Option<u32>,
    unlink_on_drop: bool,
}

// SAFETY: the mapping is shared memory accessed only through atomics and
// raw pointers by the typed objects built on it; the handle itself holds no
// thread-bound state.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` only exposes raw pointers and metadata.
unsafe impl Sync for Region {}

impl Region {
    /// Starts building a new region of `kind`.
    pub fn builder(kind: Kind) -> RegionBuilder {
        RegionBuilder {
            kind,
            name: None,
            size: 0,
            type_tag: 0,
            mode: 0o600,
            create_mode: CreateMode::CreateExclusive,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
        }
    }

    /// Opens the named region of `kind`, validating its file (it must
    /// belong to this user and be closed to group and others) and its
    /// header.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidName`],
    /// [`Error::ForeignOwner`] if another user owns the file,
    /// [`Error::InsecureMode`] if group or others may read or write it,
    /// [`Error::Incompatible`] (magic, version, kind or size: a region
    /// truncated by another process is refused here),
    /// [`Error::Timeout`] if its creator never finished initialising it.
    pub fn open(name: &str, kind: Kind) -> Result<Region> {
        Region::open_with(name, kind, 0, None, DEFAULT_OPEN_TIMEOUT)
    }

    /// [`Region::open`] that also checks the payload's type tag (unless
    /// `type_tag` is 0) and size (if given), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Region::open`].
    pub fn open_with(
        name: &str,
        kind: Kind,
        type_tag: u64,
        payload_size: Option<usize>,
        timeout: Duration,
    ) -> Result<Region> {
        let shm = shm_name(name)?;
        let deadline = Instant::now() + timeout;
        loop {
            let file = match shm::shm_open(&shm, false, 0) {
                Ok(f) => f,
                Err(Errno::ENOENT) => {
                    return Err(Error::NotFound {
                        name: name.to_owned(),
                    })
                }
                Err(e) => return Err(e.into()),
            };
            lock_shared(&file, name, deadline)?;
            let meta = metadata(&file)?;
            check_owner(&meta, name, true)?;
            if meta.nlink() == 0 {
                // `gc` removed this file between our open and our lock: the
                // name, if it exists again, is another region.
                if Instant::now() >= deadline {
                    return Err(Error::NotFound {
                        name: name.to_owned(),
                    });
                }
                continue;
            }
            return Region::open_file(
                file,
                meta.len(),
                Some(name.to_owned()),
                kind,
                type_tag,
                payload_size,
                deadline,
            );
        }
    }

    /// Where another process can open this region: `shm:<name>` for a
    /// named region, `/proc/<pid>/fd/<fd>` for an anonymous one (a
    /// duplicate this process keeps open until the receiver has opened it,
    /// or for [`KEEP_ALIVE`](crate::travel::KEEP_ALIVE)).
    #[doc(hidden)] // internal: for the workspace crates only
    pub fn locator(&self) -> String {
        use std::os::fd::AsFd;
        match &self.name {
            Some(n) => format!("shm:{n}"),
            None => crate::travel::keepalive::locator(self.file.as_fd()),
        }
    }

    /// Opens a region from a [`locator`](Region::locator), validating it as
    /// [`Region::open_with`] does.
    ///
    /// # Errors
    /// As [`Region::open_with`]; [`Error::NotFound`] if the process that
    /// held an anonymous region is gone.
    #[doc(hidden)] // internal: for the workspace crates only
    pub fn open_locator(
        locator: &str,
        kind: Kind,
        type_tag: u64,
        payload_size: Option<usize>,
    ) -> Result<Region> {
        if let Some(name) = locator.strip_prefix("shm:") {
            return Region::open_with(name, kind, type_tag, payload_size, DEFAULT_OPEN_TIMEOUT);
        }
        let path =
            crate::travel::keepalive::ProcFd::parse(locator).ok_or_else(|| Error::InvalidName {
                name: locator.to_owned(),
                reason: "not a region locator (shm:<name> or /proc/<pid>/fd/<fd>)",
            })?;
        let file = path
            .open(std::fs::OpenOptions::new().read(true).write(true))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound {
                    name: locator.to_owned(),
                },
                _ => Error::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0))),
            })?;
        let meta = metadata(&file)?;
        check_owner(&meta, locator, false)?;
        // Anonymous regions are sealed at creation: anything else behind
        // this descriptor could be truncated under our mapping.
        let want = if kind.grows() {
            libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL
        } else {
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW
        };
        let seals = shm::seals(&file)?;
        if seals & want != want {
            return Err(Error::Incompatible {
                what: "seals",
                expected: if kind.grows() {
                    "a memfd sealed against shrinking".into()
                } else {
                    "a memfd sealed against shrinking and growing".into()
                },
                found: format!("seals {seals:#x}"),
            });
        }
        Region::open_file(
            file,
            meta.len(),
            None,
            kind,
            type_tag,
            payload_size,
            Instant::now() + DEFAULT_OPEN_TIMEOUT,
        )
    }

    /// Maps and validates an opened region file whose length was `len`.
    fn open_file(
        file: File,
        mut len: u64,
        name: Option<String>,
        kind: Kind,
        type_tag: u64,
        payload_size: Option<usize>,
        deadline: Instant,
    ) -> Result<Region> {
        // The creator sizes the file right after creating it: wait for it.
        let len = loop {
            if len >= HEADER_LEN as u64 {
                break len;
            }
            if Instant::now() >= deadline {
                return Err(Error::Incompatible {
                    what: "size",
                    expected: format!(">= {HEADER_LEN} bytes"),
                    found: format!("{len} bytes"),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
            len = metadata(&file)?.len();
        };
        let len = usize::try_from(len).map_err(|_| Error::InvalidArgument("region too large"))?;
        let mut map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| Error::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        let mut base = map.as_ptr();
        loop {
            // SAFETY: the mapping is at least HEADER_LEN bytes.
            if unsafe { Header::is_ready(base) } {
                break;
            }
            if Instant::now() >= deadline {
                // SAFETY: as above.
                let h = unsafe { Header::snapshot(base) };
                if h.magic != MAGIC {
                    return Err(incompatible("magic", MAGIC, h.magic));
                }
                return Err(Error::Timeout);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // SAFETY: as above.
        let h = unsafe { Header::snapshot(base) };
        if h.magic != MAGIC {
            return Err(incompatible("magic", MAGIC, h.magic));
        }
        if h.version != VERSION {
            return Err(incompatible("version", VERSION, h.version));
        }
        if h.kind != kind as u32 {
            return Err(Error::Incompatible {
                what: "kind",
                expected: format!("{kind:?}"),
                found: Kind::from_u32(h.kind)
                    .map_or_else(|| format!("unknown kind {}", h.kind), |k| format!("{k:?}")),
            });
        }
        // A growing kind's file may be longer than its region (payload
        // blocks past it): map only the region.
        let grown = kind.grows() && h.size >= HEADER_LEN as u64 && h.size < len as u64;
        if h.size != len as u64 && !grown {
            return Err(incompatible("size", len, h.size));
        }
        let len = if grown {
            let size = h.size as usize;
            map = MmapOptions::new()
                .len(size)
                .map_raw(&file)
                .map_err(|e| Error::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
            base = map.as_ptr();
            // SAFETY: the new mapping is `size >= HEADER_LEN` bytes.
            if unsafe { Header::snapshot(base) }.size != h.size {
                return Err(incompatible("size", size, h.size));
            }
            size
        } else {
            len
        };
        if let Some(p) = payload_size {
            if p + HEADER_LEN != len {
                return Err(incompatible("payload size", p, len - HEADER_LEN));
            }
        }
        if type_tag != 0 && h.type_tag != type_tag {
            return Err(Error::Incompatible {
                what: "type",
                expected: format!("tag {type_tag:#x}"),
                found: format!("tag {:#x}", h.type_tag),
            });
        }
        Ok(Region {
            map,
            file,
            name,
            kind,
            creator_pid: None,
            unlink_on_drop: false,
        })
    }

    /// Pointer to the first payload byte (cache-line aligned).
    #[doc(hidden)] // internal: for the workspace crates only
    pub fn payload(&self) -> *mut u8 {
        // SAFETY: HEADER_LEN < mapping length, checked at create/open.
        unsafe { self.map.as_mut_ptr().add(HEADER_LEN) }
    }

    /// Payload length in bytes.
    pub fn payload_len(&self) -> usize {
        self.map.len() - HEADER_LEN
    }

    /// The region's name, or `None` for an anonymous region.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// What the region holds.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether this handle (in this process) created the region, or
    /// [adopted](Region::adopt) it, and no other process adopted it since.
    pub fn is_creator(&self) -> bool {
        let pid = proc::pid();
        // SAFETY: the header lies within our live mapping.
        // Relaxed: ownership changes hands by a message exchange (the adopter
        // replies after adopting), which orders it for the creator.
        let owner = unsafe { Header::creator(self.map.as_ptr()) }.load(Ordering::Relaxed);
        self.creator_pid == Some(pid) && proc::TaskId::unpack(owner).id == pid
    }

    /// Takes over the region from its creator: from now on this process is
    /// the one that unlinks the name when its handle drops, the creator's
    /// handle no longer does, and [`Region::gc`] judges the region by this
    /// process's life. A manager server adopts the objects its clients
    /// create, so they outlive the client.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an anonymous region (it has no name to
    /// own).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::region::{Kind, Region};
    /// let name = format!("doc-adopt-{}", std::process::id());
    /// let created = Region::builder(Kind::Raw).name(&name).size(64).create()?;
    /// let mut adopter = Region::open(&name, Kind::Raw)?;
    /// adopter.adopt()?;
    /// assert!(adopter.is_creator());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(hidden)] // internal: for the workspace crates only
    pub fn adopt(&mut self) -> Result<()> {
        if self.name.is_none() {
            return Err(Error::InvalidArgument("only a named region can be adopted"));
        }
        let me = proc::TaskId::current_process().pack();
        // SAFETY: the header lies within our live mapping.
        // Relaxed: see `is_creator`.
        unsafe { Header::creator(self.map.as_ptr()) }.store(me, Ordering::Relaxed);
        self.creator_pid = Some(proc::pid());
        self.unlink_on_drop = true;
        Ok(())
    }

    /// Keeps the name after the creator drops the region (it is unlinked by
    /// default). A kept region is removed by [`Region::unlink`] or [`Region::gc`]
    /// once its creator is dead and nobody maps it.
    #[doc(hidden)] // internal: for the workspace crates only
    pub fn set_unlink_on_drop(&mut self, unlink: bool) {
        self.unlink_on_drop = unlink;
    }

    /// Removes the name of region `name` now (existing mappings stay valid).
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is no such region.
    pub fn unlink(name: &str) -> Result<()> {
        match shm::shm_unlink(&shm_name(name)?) {
            Ok(()) => Ok(()),
            Err(Errno::ENOENT) => Err(Error::NotFound {
                name: name.to_owned(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the named regions left behind by dead processes; returns the
    /// names removed.
    ///
    /// A region is removed only if all of these hold:
    /// - its file in `/dev/shm` is a regular file of this user (never
    ///   another user's, even when running as root) with a valid header;
    /// - its creator (or the process that last [adopted](Region::adopt)
    ///   it) is dead;
    /// - no process holds a [`Region`] of it (each handle holds a shared
    ///   `flock` on its descriptor, which forked children share; `gc` must
    ///   get an exclusive one);
    /// - no process whose `/proc/<pid>` we may read maps it or holds it
    ///   open (this catches programs that map it without this library).
    ///
    /// So a region whose creator died stays, with its contents, for as long
    /// as anybody uses it. Anonymous regions never need collecting, and
    /// files that are not ours (another program's, a file with no valid
    /// header) are never touched.
    ///
    /// # Errors
    /// [`Error::Io`] if `/dev/shm` cannot be listed.
    ///
    /// # Examples
    ///
    /// ```
    /// let removed = ipc_core::region::Region::gc()?;
    /// println!("removed {} stale regions", removed.len());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn gc() -> Result<Vec<String>> {
        gc::gc_where(|_| true)
    }

    /// [`Region::gc`] restricted to the regions for which `pred` returns
    /// `true`: it never removes a region that `gc` would keep.
    ///
    /// # Errors
    /// As [`Region::gc`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::region::{Kind, Region};
    /// let name = format!("doc-gc-where-{}", std::process::id());
    /// let mut r = Region::builder(Kind::Raw).name(&name).size(64).create()?;
    /// r.set_unlink_on_drop(false);
    /// drop(r);
    /// // Nobody maps it, but its creator (this process) is alive: kept.
    /// assert!(Region::gc_where(|i| i.name == name)?.is_empty());
    /// Region::unlink(&name)?;
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn gc_where(pred: impl FnMut(&RegionInfo) -> bool) -> Result<Vec<String>> {
        gc::gc_where(pred)
    }

    /// The named regions of this user in `/dev/shm` (regular files of our
    /// uid named `ipc.<name>` with a valid magic), whoever created them.
    ///
    /// # Errors
    /// [`Error::Io`] if `/dev/shm` cannot be listed.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::region::{Kind, Region};
    /// let name = format!("doc-list-{}", std::process::id());
    /// let r = Region::builder(Kind::Raw).name(&name).size(64).create()?;
    /// let info = Region::list()?.into_iter().find(|i| i.name == name).unwrap();
    /// assert!(info.ready && info.creator.id == std::process::id());
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn list() -> Result<Vec<RegionInfo>> {
        gc::list()
    }

    /// What [`Region::list`] would say about the named region, or why it is
    /// not a region of ours: for tools that look at regions they did not
    /// create. Reads the header with a plain read (never a mapping), so a
    /// truncated or garbage file is an error, never a crash.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidName`], [`Error::ForeignOwner`],
    /// [`Error::Incompatible`] (not a regular file, shorter than a header,
    /// or a bad magic), [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::region::{Kind, Region};
    /// let name = format!("doc-info-{}", std::process::id());
    /// let r = Region::builder(Kind::Event).name(&name).size(64).create()?;
    /// assert_eq!(Region::info(&name)?.kind, Some(Kind::Event));
    /// assert!(matches!(Region::info("doc-no-such-region"), Err(ipc_core::Error::NotFound { .. })));
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn info(name: &str) -> Result<RegionInfo> {
        gc::info(name)
    }

    /// The regions [`Region::gc`] would remove if called now, removing
    /// nothing (for a dry run). The answer can be stale as soon as it is
    /// returned: a process may open a region, or a creator die, meanwhile.
    ///
    /// # Errors
    /// As [`Region::gc`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::region::{Kind, Region};
    /// let name = format!("doc-candidates-{}", std::process::id());
    /// let r = Region::builder(Kind::Raw).name(&name).size(64).create()?;
    /// // Its creator (this process) is alive: not a candidate.
    /// assert!(Region::gc_candidates()?.iter().all(|i| i.name != name));
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    #[doc(hidden)] // internal: for the workspace crates only
    pub fn gc_candidates() -> Result<Vec<RegionInfo>> {
        gc::candidates()
    }

    /// The descriptor behind the mapping.
    #[doc(hidden)] // internal: for the workspace crates only
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.unlink_on_drop && self.is_creator() {
            if let Some(n) = &self.name {
                if let Ok(s) = shm_name(n) {
                    let _ = shm::shm_unlink(&s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
