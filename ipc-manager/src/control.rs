//! The manager's control region: one mailbox per client.
//!
//! ```text
//! ControlHeader (128 B)  server, owner, state, nslots, buf_len, claimed_hi,
//!                        doorbell (futex), server_sleeping, start_error
//! slot 0: SlotHeader (128 B) | request buffer | response buffer
//! slot 1: ...
//! ```
//! A slot's `owner` word is 0 when free, else the packed identity (pid and
//! start time) of the client process using it, written by one CAS, so a
//! slot is never claimed without a record of who claimed it.
//!
//! A call is a lockstep exchange: the client writes the request into its
//! buffer, publishes `req_seq` (Release) and rings the doorbell; the server
//! copies the request out, answers into the response buffer and publishes
//! `resp_seq` (Release) to the client's Acquire. Messages larger than a
//! buffer go in chunks (`MORE`); the client fetches further response
//! chunks with `CONT` requests.
//!
//! Every frame (one chunk, in either direction) carries a CRC32C of its
//! length word, its sequence number and its bytes (see [`frame_crc`]),
//! written before the sequence number is published. The reader checks it
//! over its own copy of the bytes, so a frame damaged by another process
//! writing into the mailbox is reported as `Corrupt`, never decoded into a
//! wrong value. This defends against accidental and partial corruption,
//! not against a process that deliberately writes a frame with a valid
//! CRC: any process of the same user can map the region.
//!
//! Sleeping follows the Dekker pattern of `ipc_core`'s rings: the sleeper
//! sets its `*_sleeping` flag, issues a SeqCst fence and re-checks before
//! the futex wait; the waker publishes, fences and reads the flag. That
//! protocol, and the header words it uses, live in [`crate::mailbox`]
//! (which a loom model checks).

use std::sync::atomic::Ordering;

use std::time::Duration;

use crate::mailbox::{ControlHeader, SlotHeader};
use ipc_core::region::{Kind, Region};
use ipc_core::sys::proc::TaskId;
use ipc_core::{Backoff, Error, Result};
use nix::errno::Errno;

/// Layout identity, checked as the region's type tag.
pub(crate) const LAYOUT_TAG: u64 = 0x4950_434d_4752_0002; // "IPCMGR" v2
/// Default number of client slots.
pub(crate) const DEFAULT_SLOTS: usize = 64;
/// Most slots a control region may declare (validation bound).
const MAX_SLOTS: usize = 4096;
/// Default bytes per direction per slot.
pub(crate) const DEFAULT_BUF: usize = 64 * 1024;
/// Largest buffer a control region may declare (validation bound).
const MAX_BUF: usize = 16 << 20;

/// A mailbox waiter (a client awaiting its answer, the idle server) spins
/// this fraction of the rings' spin budget
/// ([`tuning::spin_iterations`](ipc_core::tuning::spin_iterations)):
/// about as long as a round trip takes when the server has a core of its
/// own.
const MAILBOX_SPIN_DIVISOR: u32 = 16;
/// Then it yields this many times before sleeping: when clients outnumber
/// the cores, the other side needs the CPU a spinning waiter would burn.
const MAILBOX_YIELDS: u32 = 64;

/// The wait policy of both sides of a mailbox (see `MAILBOX_SPIN_DIVISOR`).
pub(crate) fn mailbox_backoff() -> Backoff {
    Backoff::new(
        ipc_core::tuning::spin_iterations() / MAILBOX_SPIN_DIVISOR,
        MAILBOX_YIELDS,
    )
}

/// Length flag: more chunks of this message follow.
pub(crate) const MORE: u32 = 1 << 31;
/// Request flag: send the next chunk of the pending response.
pub(crate) const CONT: u32 = 1 << 30;
/// Mask of the length bits.
pub(crate) const LEN_MASK: u32 = CONT - 1;

/// Server states.
pub(crate) const STARTING: u32 = 0;
pub(crate) const RUNNING: u32 = 1;
pub(crate) const STOPPED: u32 = 2;
/// The server could not start; `start_error` says why.
pub(crate) const FAILED: u32 = 3;

/// Slot owner word: free.
pub(crate) const FREE: u64 = 0;
/// Slot owner word: the client said goodbye; the server frees it.
pub(crate) const CLOSED: u64 = u64::MAX;

const HDR: usize = std::mem::size_of::<ControlHeader>();
const SLOT_HDR: usize = std::mem::size_of::<SlotHeader>();
const _: () = assert!(HDR == 128 && SLOT_HDR == 128);

fn stride(buf_len: usize) -> Option<usize> {
    buf_len.checked_mul(2)?.checked_add(SLOT_HDR)
}

fn payload_size(nslots: usize, buf_len: usize) -> Option<usize> {
    nslots.checked_mul(stride(buf_len)?)?.checked_add(HDR)
}

/// A mapped control region.
#[derive(Debug)]
pub(crate) struct Control {
    region: Region,
    nslots: usize,
    buf_len: usize,
}

impl Control {
    /// Creates the control region `name` (state `STARTING`).
    pub fn create(name: &str, nslots: usize, buf_len: usize) -> Result<Control> {
        if nslots == 0 || nslots > MAX_SLOTS || !(4096..=MAX_BUF).contains(&buf_len) {
            return Err(Error::InvalidArgument(
                "manager slots must be 1..=4096 and buffers 4 KiB..=16 MiB",
            ));
        }
        let buf_len = buf_len.next_multiple_of(128);
        let size = payload_size(nslots, buf_len).ok_or(Error::InvalidArgument("too large"))?;
        let region = Region::builder(Kind::Manager)
            .name(name)
            .size(size)
            .type_tag(LAYOUT_TAG)
            .create_with(|r| {
                // SAFETY: the payload is at least HDR bytes, 128-aligned, and
                // private to us until published.
                let h = unsafe { &*r.payload().cast::<ControlHeader>() };
                // Relaxed: published by the region's Release.
                h.nslots.store(nslots as u32, Ordering::Relaxed);
                h.buf_len.store(buf_len as u32, Ordering::Relaxed);
                Ok(())
            })?
            .0;
        Ok(Control {
            region,
            nslots,
            buf_len,
        })
    }

    /// Opens and validates the control region `name`, waiting at most
    /// `timeout` for a region still being initialised.
    pub fn open(name: &str, timeout: Duration) -> Result<Control> {
        let region = Region::open_with(name, Kind::Manager, LAYOUT_TAG, None, timeout)?;
        let len = region.payload_len();
        if len < HDR {
            return Err(Error::Corrupt("manager control region too small".into()));
        }
        // SAFETY: at least HDR mapped bytes, 128-aligned payload, alive with
        // `region`; every field is an atomic (any bit pattern is valid).
        let h = unsafe { &*region.payload().cast::<ControlHeader>() };
        // Relaxed: written before the region's publication, which `open`
        // acquired.
        let nslots = h.nslots.load(Ordering::Relaxed) as usize;
        let buf_len = h.buf_len.load(Ordering::Relaxed) as usize;
        let valid = (1..=MAX_SLOTS).contains(&nslots)
            && (4096..=MAX_BUF).contains(&buf_len)
            && buf_len % 128 == 0
            && payload_size(nslots, buf_len) == Some(len);
        if !valid {
            return Err(Error::Corrupt(format!(
                "manager control region declares {nslots} slots of {buf_len} bytes in {len} bytes"
            )));
        }
        Ok(Control {
            region,
            nslots,
            buf_len,
        })
    }

    /// The region (to adopt it, or keep its name).
    pub fn region_mut(&mut self) -> &mut Region {
        &mut self.region
    }

    /// The descriptor behind the mapping.
    pub fn region_file_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.region.file().as_raw_fd()
    }

    /// The shared header.
    pub fn header(&self) -> &ControlHeader {
        // SAFETY: validated in `create`/`open`: HDR bytes at the 128-aligned
        // payload start, mapped while `self` lives; all fields atomic.
        unsafe { &*self.region.payload().cast::<ControlHeader>() }
    }

    /// Number of slots.
    pub fn nslots(&self) -> usize {
        self.nslots
    }

    /// Bytes per buffer.
    pub fn buf_len(&self) -> usize {
        self.buf_len
    }

    fn slot_base(&self, i: usize) -> *mut u8 {
        assert!(i < self.nslots, "slot index out of range");
        // SAFETY: i < nslots, so the slot lies within the validated payload.
        unsafe {
            self.region
                .payload()
                .add(HDR + i * stride(self.buf_len).expect("validated"))
        }
    }

    /// Slot `i`'s header.
    pub fn slot(&self, i: usize) -> &SlotHeader {
        // SAFETY: `slot_base` is in bounds and 128-aligned (HDR, SLOT_HDR
        // and buf_len are multiples of 128); all fields atomic.
        unsafe { &*self.slot_base(i).cast::<SlotHeader>() }
    }

    /// Slot `i`'s request buffer (`buf_len` bytes).
    pub fn req_buf(&self, i: usize) -> *mut u8 {
        // SAFETY: within the slot, per the layout.
        unsafe { self.slot_base(i).add(SLOT_HDR) }
    }

    /// Slot `i`'s response buffer (`buf_len` bytes).
    pub fn resp_buf(&self, i: usize) -> *mut u8 {
        // SAFETY: within the slot, per the layout.
        unsafe { self.slot_base(i).add(SLOT_HDR + self.buf_len) }
    }

    /// Whether the server said it stopped (one load; no liveness check).
    pub fn stopped(&self) -> bool {
        // Acquire: pairs with the server's Release of STOPPED.
        self.header().state.load(Ordering::Acquire) == STOPPED
    }

    /// Whether the server is gone: stopped, failed to start, or its
    /// process dead (reads `/proc`: for slow paths only). A server whose
    /// liveness cannot be read (this process is out of descriptors) is
    /// not declared gone.
    pub fn server_gone(&self) -> bool {
        matches!(self.server_state(), Ok(STOPPED | FAILED))
    }

    /// The server's state, with `RUNNING` checked against its process:
    /// `STOPPED` if that process is dead. [`Error::Io`] if that cannot be
    /// told because this process has no descriptor left to read `/proc`.
    pub fn server_state(&self) -> Result<u32> {
        let h = self.header();
        // Acquire: pairs with the server's Release of RUNNING (its identity
        // is written before), STOPPED (after which it answers nothing) or
        // FAILED (`start_error` is written before).
        match h.state.load(Ordering::Acquire) {
            // Relaxed: published by the Acquire above.
            RUNNING => match process_gone(TaskId::unpack(h.server.load(Ordering::Relaxed)))? {
                true => Ok(STOPPED),
                false => Ok(RUNNING),
            },
            s => Ok(s),
        }
    }

    /// Why the server could not start (state `FAILED`).
    pub fn start_error(&self) -> crate::Error {
        // Relaxed: written before the Release of FAILED, which the caller
        // acquired through `server_state`.
        match self.header().start_error.load(Ordering::Relaxed) {
            0 | u32::MAX => crate::Error::ServerGone,
            e => Error::Io(Errno::from_raw(e as i32)).into(),
        }
    }

    /// Checks that the process the region names as its server maps this
    /// region, as every manager server does. A live process that does not
    /// (a forged region, or a stale one naming an unrelated process) is
    /// refused with [`Error::Incompatible`] instead of being waited on.
    /// When `/proc` cannot tell (no descriptor left, a process that cannot
    /// be inspected), the handshake's deadline decides instead.
    pub fn verify_server(&self) -> Result<()> {
        // Relaxed: published by the Release of RUNNING, acquired by the
        // caller's `server_state`.
        let who = TaskId::unpack(self.header().server.load(Ordering::Relaxed)).id;
        let refuse = |why: String| Error::Incompatible {
            what: "manager server",
            expected: "the process serving this control region".into(),
            found: format!("process {who}, which {why}"),
        };
        // The uid first: a manager server runs as the user that made its
        // region (and `/proc/<pid>/maps` of another user is unreadable).
        let status = std::fs::read_to_string(format!("/proc/{who}/status"));
        let euid = status.ok().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_ascii_whitespace().nth(2)?.parse::<u32>().ok()
        });
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if euid.is_some_and(|u| u != me) {
            return Err(refuse(format!("runs as user {}", euid.unwrap_or(0))));
        }
        let st = nix::sys::stat::fstat(self.region.file()).map_err(Error::Io)?;
        let Ok(maps) = std::fs::File::open(format!("/proc/{who}/maps")) else {
            return Ok(());
        };
        use std::io::BufRead;
        for line in std::io::BufReader::new(maps).lines() {
            let Ok(line) = line else { return Ok(()) };
            // "start-end perms offset major:minor inode path"
            let mut f = line.split_ascii_whitespace().skip(3);
            let (Some(dev), Some(ino)) = (f.next(), f.next()) else {
                continue;
            };
            let dev = dev.split_once(':').and_then(|(maj, min)| {
                Some((
                    u64::from_str_radix(maj, 16).ok()?,
                    u64::from_str_radix(min, 16).ok()?,
                ))
            });
            let ours = (
                u64::from(libc::major(st.st_dev)),
                u64::from(libc::minor(st.st_dev)),
            );
            if ino.parse::<u64>().ok() == Some(st.st_ino) && dev == Some(ours) {
                return Ok(());
            }
        }
        Err(refuse(
            "does not map the region: it is not a manager".into(),
        ))
    }

    /// Rings the server's doorbell after publishing a request or a close.
    pub fn ring_doorbell(&self) {
        self.header().ring_doorbell();
    }
}

/// Whether process `who` is gone. A process must not be declared dead
/// because *we* cannot read `/proc` (no descriptor left): then the pid
/// alone is asked (`kill(pid, 0)`, no descriptor needed), and if it still
/// exists the shortage is reported as [`Error::Io`].
pub(crate) fn process_gone(who: TaskId) -> Result<bool> {
    if who.is_alive() {
        return Ok(false);
    }
    match std::fs::File::open(format!("/proc/{}/stat", who.id)) {
        Err(e) if is_shortage(&e) => {
            let pid = nix::unistd::Pid::from_raw(who.id as i32);
            match nix::sys::signal::kill(pid, None) {
                Err(Errno::ESRCH) => Ok(true),
                _ => Err(io_error(&e)),
            }
        }
        _ => Ok(true),
    }
}

/// The identity of the calling process, or why it cannot be read (its
/// start time comes from `/proc`, which needs a descriptor).
pub(crate) fn current_process() -> Result<TaskId> {
    let me = TaskId::current_process();
    if me.start != 0 {
        return Ok(me);
    }
    Err(match std::fs::File::open("/proc/self/stat") {
        Err(e) => io_error(&e),
        Ok(_) => Error::Corrupt("cannot read this process's start time".into()),
    })
}

/// Whether `e` says the process or the system ran out of descriptors or
/// memory (a condition of the caller, not of what it looked at).
fn is_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

fn io_error(e: &std::io::Error) -> Error {
    Error::Io(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// The CRC32C (Castagnoli) that guards every mailbox frame: over the
/// frame's length word (with its flags), its sequence number and its bytes.
pub(crate) fn frame_crc(seq: u32, len_word: u32, bytes: &[u8]) -> u32 {
    let head = (u64::from(seq) << 32 | u64::from(len_word)).to_le_bytes();
    !crate::crc32c::update(crate::crc32c::update(!0, &head), bytes)
}
