//! `RegionBuilder`: creating a region (named or anonymous), and `create_with`'s publication.

use super::*;

/// Builder for a new region: `Region::builder(kind).name(..).size(..).create()`.
#[derive(Debug, Clone)]
pub struct RegionBuilder {
    pub(super) kind: Kind,
    pub(super) name: Option<String>,
    pub(super) size: usize,
    pub(super) type_tag: u64,
    pub(super) mode: u32,
    pub(super) create_mode: CreateMode,
    pub(super) open_timeout: Duration,
}

impl RegionBuilder {
    /// Names the region (`/dev/shm/ipc.<name>`); without a name it is anonymous.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets an optional name.
    #[doc(hidden)] // internal: for the workspace crates only
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
    /// File mode of a named region (default `0o600`: owner only). Only
    /// owner bits are accepted: [`Region::open`] refuses a region that
    /// group or others may read or write, so `create` refuses such a mode
    /// with [`Error::InvalidArgument`].
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
    /// Every page of a named region is allocated here, so that a full
    /// `/dev/shm` is an error now rather than a `SIGBUS` when a page is
    /// first touched. An anonymous region (a memfd, which `/dev/shm`'s size
    /// does not bound) is allocated here too up to [`ANON_RESERVE_MAX`]
    /// bytes, and sealed against shrinking and growing.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::AlreadyExists`],
    /// [`Error::NoSpace`] if the pages cannot be reserved,
    /// [`Error::InvalidArgument`] for a zero size or a mode open to group
    /// or others, and with [`CreateMode::OpenOrCreate`] everything
    /// [`Region::open`] returns.
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
        if self.mode & 0o077 != 0 {
            return Err(Error::InvalidArgument(
                "a region's mode must not open it to group or others (every opener refuses such a region)",
            ));
        }
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
            None => (shm::memfd_sealable(&format!("ipc-{:?}", self.kind))?, None),
        };
        let cleanup = |e: Error| {
            if let Some(n) = &shm {
                let _ = shm::shm_unlink(&shm_name(n).unwrap_or_default());
            }
            e
        };
        if shm.is_some() {
            // Held as long as this descriptor is open (see `gc`): the file
            // is new and has no header yet, so nothing else locks it.
            shm::try_flock(&file, false).map_err(|e| cleanup(e.into()))?;
        }
        // A named region's pages are all allocated now: a full /dev/shm is
        // an error here, never a SIGBUS at a later first touch. A memfd is
        // not bounded by /dev/shm (a page that cannot be had is the OOM
        // killer's business, as for any memory, never a SIGBUS): small
        // ones are reserved all the same, large sparse rings are not.
        let allocate = shm.is_some() || total <= ANON_RESERVE_MAX;
        shm::reserve(&file, total as u64, allocate).map_err(|e| {
            cleanup(match e {
                Errno::ENOSPC | Errno::ENOMEM => Error::NoSpace {
                    name: shm.clone(),
                    size: total,
                },
                e => e.into(),
            })
        })?;
        if shm.is_none() {
            // Nobody who reaches the memfd through /proc can resize it
            // (a growing kind's file may grow, never shrink).
            if self.kind.grows() {
                shm::seal_shrink(&file)?;
            } else {
                shm::seal_size(&file)?;
            }
        }
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
