//! Named and anonymous shared-memory regions with a validated header.
//!
//! A [`Region`] is one mapping of a shared-memory file. Named regions live
//! in `/dev/shm/ipc.<name>` and can be opened by any process of the same
//! user; anonymous regions are `memfd`s, inherited across `fork` and gone
//! with the last process that maps them, so they can never leak.
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

mod gc;
mod header;
mod name;

pub use header::{type_tag, Kind, HEADER_LEN, MAGIC, VERSION};
pub use name::{shm_name, validate_name};

use std::fs::File;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;

use crate::sys::{proc, shm};
use crate::{Error, Result};
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

/// Builder for a new region: `Region::builder(kind).name(..).size(..).create()`.
#[derive(Debug, Clone)]
pub struct RegionBuilder {
    kind: Kind,
    name: Option<String>,
    size: usize,
    type_tag: u64,
    mode: u32,
    create_mode: CreateMode,
    open_timeout: Duration,
}

impl RegionBuilder {
    /// Names the region (`/dev/shm/ipc.<name>`); without a name it is anonymous.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets an optional name.
    pub fn maybe_name(mut self, name: Option<String>) -> Self {
        self.name = name;
        self
    }
    /// Payload size in bytes (the header comes on top).
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }
    /// Tag of the payload type, checked by openers (see [`type_tag`]).
    pub fn type_tag(mut self, tag: u64) -> Self {
        self.type_tag = tag;
        self
    }
    /// File mode of a named region (default `0o600`: owner only).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
    /// What to do if the name exists (default: fail).
    pub fn create_mode(mut self, m: CreateMode) -> Self {
        self.create_mode = m;
        self
    }
    /// How long to wait for an existing region still being initialised.
    pub fn open_timeout(mut self, t: Duration) -> Self {
        self.open_timeout = t;
        self
    }

    /// Creates the region with a zeroed payload.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::AlreadyExists`], and with
    /// [`CreateMode::OpenOrCreate`] everything [`Region::open`] returns.
    pub fn create(self) -> Result<Region> {
        self.create_with(|_| Ok(())).map(|(r, _)| r)
    }

    /// Creates the region and runs `init` on the zeroed payload before any
    /// other process can open it. Returns whether the region was created
    /// (`true`) or an existing one opened (`false`, `init` not run).
    ///
    /// # Errors
    /// As [`RegionBuilder::create`], plus whatever `init` returns.
    pub fn create_with(self, init: impl FnOnce(&Region) -> Result<()>) -> Result<(Region, bool)> {
        if self.size == 0 {
            return Err(Error::InvalidArgument("region size must not be zero"));
        }
        let total = self
            .size
            .checked_add(HEADER_LEN)
            .filter(|t| *t <= isize::MAX as usize)
            .ok_or(Error::InvalidArgument("region size too large"))?;
        let (file, shm) = match &self.name {
            Some(n) => {
                let shm = shm_name(n)?;
                match shm::shm_open(&shm, true, self.mode) {
                    Ok(f) => (f, Some(n.clone())),
                    Err(Errno::EEXIST) if self.create_mode == CreateMode::OpenOrCreate => {
                        let r = Region::open_with(
                            n,
                            self.kind,
                            self.type_tag,
                            Some(self.size),
                            self.open_timeout,
                        )?;
                        return Ok((r, false));
                    }
                    Err(Errno::EEXIST) => return Err(Error::AlreadyExists { name: n.clone() }),
                    Err(e) => return Err(e.into()),
                }
            }
            None => (shm::memfd(&format!("ipc-{:?}", self.kind))?, None),
        };
        let cleanup = |e: Error| {
            if let Some(n) = &shm {
                let _ = shm::shm_unlink(&shm_name(n).unwrap_or_default());
            }
            e
        };
        file.set_len(total as u64)
            .map_err(|e| cleanup(Errno::from_raw(e.raw_os_error().unwrap_or(0)).into()))?;
        let map = MmapOptions::new()
            .len(total)
            .map_raw(&file)
            .map_err(|e| cleanup(Errno::from_raw(e.raw_os_error().unwrap_or(0)).into()))?;
        let me = proc::TaskId::current_process().pack();
        // SAFETY: the mapping is `total >= HEADER_LEN` bytes, writable, and
        // not yet READY so no opener trusts it.
        unsafe { Header::write(map.as_mut_ptr(), self.kind, total as u64, self.type_tag, me) };
        let region = Region {
            map,
            file,
            name: shm,
            kind: self.kind,
            creator_pid: Some(proc::pid()),
            unlink_on_drop: true,
        };
        init(&region)?; // on error `region` drops and unlinks the name
                        // SAFETY: the header lies within the live mapping.
        unsafe { Header::publish(region.map.as_ptr()) };
        Ok((region, true))
    }
}

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

    /// Opens the named region of `kind`, validating its header.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidName`], [`Error::Incompatible`]
    /// (magic, version, kind or size), [`Error::Timeout`] if its creator
    /// never finished initialising it.
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
        let file = match shm::shm_open(&shm, false, 0) {
            Ok(f) => f,
            Err(Errno::ENOENT) => {
                return Err(Error::NotFound {
                    name: name.to_owned(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        Region::open_file(
            file,
            Some(name.to_owned()),
            kind,
            type_tag,
            payload_size,
            timeout,
        )
    }

    /// Where another process can open this region: `shm:<name>` for a
    /// named region, `/proc/<pid>/fd/<fd>` for an anonymous one (a
    /// duplicate this process keeps open until the receiver has opened it,
    /// or for [`KEEP_ALIVE`](crate::travel::KEEP_ALIVE)).
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
        Region::open_file(
            file,
            None,
            kind,
            type_tag,
            payload_size,
            DEFAULT_OPEN_TIMEOUT,
        )
    }

    fn open_file(
        file: File,
        name: Option<String>,
        kind: Kind,
        type_tag: u64,
        payload_size: Option<usize>,
        timeout: Duration,
    ) -> Result<Region> {
        let deadline = Instant::now() + timeout;
        // The creator sets the length right after creating the file: wait for it.
        let len = loop {
            let len = file
                .metadata()
                .map_err(|e| Error::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?
                .len();
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
        };
        let len = usize::try_from(len).map_err(|_| Error::InvalidArgument("region too large"))?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| Error::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        let base = map.as_ptr();
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
        if h.size != len as u64 {
            return Err(incompatible("size", len, h.size));
        }
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

    /// Removes every named region whose creator is dead and which no live
    /// process maps; returns the names removed. Regions of other programs
    /// are never touched.
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
        gc::gc()
    }

    /// The descriptor behind the mapping.
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

fn incompatible(
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

#[cfg(test)]
mod tests;
