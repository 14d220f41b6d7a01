//! `Pipe`: two connected endpoints over SPSC rings in shared memory.
//!
//! Whether the peer is still there is decided by the kernel, exactly as for
//! Python's OS pipes: each endpoint owns the write side of a small OS
//! "liveness" pipe whose read side the other endpoint holds. Descriptors are
//! duplicated by `fork` and closed by process death or by dropping the
//! endpoint, so once every copy of the peer is gone the liveness pipe hangs
//! up and `recv` returns [`Error::PeerClosed`] (after draining what was
//! sent). As with Python, drop the endpoint you do not use in each process.
//! An end sent to another process stays open in its sender (a kept
//! duplicate, see [`crate::travel`]) until the receiver has opened it, or
//! for [`KEEP_ALIVE`](crate::travel::KEEP_ALIVE) if it never does.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::codec::{self, Copied, Message};
use crate::region::{Kind, Region};
use crate::ring::spsc::{Spsc, MAX_MESSAGE_LIMIT};
use crate::ring::wait::{Stop, WaitPoint};
use crate::sync::polled_lock::PolledLock;
use crate::sync::raw_lock::Acquired;
use crate::{Error, Result};

#[cfg(feature = "tokio")]
mod aio;
mod archived;
mod frames;

use frames::{ToSlice, ToVec};

/// Default ring size per direction: 4 MiB, so that bulk messages stream
/// in large pieces. Its pages are allocated as they are first touched, and
/// small-message traffic stays in the first 256 KiB of it (a frame that
/// would start past that while the ring is empty goes back to the start),
/// so a pipe that carries only small messages holds about 256 KiB per
/// direction, as before.
pub const DEFAULT_CAPACITY: usize = 4 << 20;

/// Default cap on one message: 1 GiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 30;

/// How often a blocked call checks whether the peer is gone.
const PEER_CHECK: Duration = Duration::from_millis(50);

/// A send that does not wait checks whether the peer is gone once every
/// this many sends: the check is a `poll` (~250 ns here), which at every
/// 64th send cost a round trip of small messages ~8 ns.
const SENDS_PER_PEER_CHECK: u32 = 256;

/// Python's `multiprocessing.Pipe`: `Pipe::new(duplex)` returns two
/// connected [`Connection`]s.
///
/// # Examples
///
/// ```
/// use ipc_core::pipe::Pipe;
/// let (a, b) = Pipe::new(true)?;
/// a.send(&"ping".to_string())?;
/// assert_eq!(b.recv::<String>()?, "ping");
/// b.send_bytes(b"pong")?;
/// assert_eq!(a.recv_bytes()?, b"pong");
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Pipe {
    _private: (),
}

/// Configures a [`Pipe`]: direction and ring capacity. Made by
/// [`Pipe::builder`].
///
/// # Examples
///
/// ```
/// use ipc_core::pipe::{Pipe, PipeBuilder};
/// let b: PipeBuilder = Pipe::builder().duplex(false).capacity(64 * 1024);
/// let (r, w) = b.build()?;
/// w.send(&5u16)?;
/// assert_eq!(r.recv::<u16>()?, 5);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PipeBuilder {
    duplex: bool,
    capacity: usize,
    max_message_size: usize,
}

#[derive(Debug)]
struct Rings {
    rings: Vec<Spsc>,
    // Keeps the mapping alive; after `rings`, which point into it.
    _region: Region,
}

/// One end of a [`Pipe`] (Python's `multiprocessing.connection.Connection`).
///
/// `send`/`recv` carry `rkyv` messages; `send_bytes`/`recv_bytes` carry raw
/// bytes. Messages of any size up to the pipe's cap
/// ([`PipeBuilder::max_message_size`], 1 GiB by default) travel: one that
/// does not fit one frame of the ring streams through it in pieces. Past
/// the cap, [`Error::MessageTooLarge`].
#[derive(Debug)]
pub struct Connection {
    rings: Arc<Rings>,
    tx: Option<usize>,
    rx: Option<usize>,
    /// Write side of our liveness pipe; the peer watches its read side.
    _alive: OwnedFd,
    /// Read side of the peer's liveness pipe: hangs up when the peer is gone.
    peer: OwnedFd,
    sends: AtomicU32,
    /// Our last view of the send ring's consumer index (see `Spsc::try_push`).
    tail_cache: AtomicU64,
}

impl Pipe {
    /// A connected pair: duplex (both ends send and receive) or one-way
    /// (`(receiver, sender)`, as Python's `Pipe(duplex=False)`).
    ///
    /// # Errors
    /// [`Error::Io`] if shared memory or descriptors cannot be created.
    #[allow(clippy::new_ret_no_self)] // Python's name for the pair constructor
    pub fn new(duplex: bool) -> Result<(Connection, Connection)> {
        Pipe::builder().duplex(duplex).build()
    }

    /// A builder to set the direction, ring capacity and message cap.
    ///
    /// # Examples
    ///
    /// ```
    /// let (r, w) = ipc_core::pipe::Pipe::builder().duplex(false).capacity(2 << 20).build()?;
    /// w.send_bytes(&vec![7u8; 900_000])?;
    /// assert_eq!(r.recv_bytes()?.len(), 900_000);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn builder() -> PipeBuilder {
        PipeBuilder {
            duplex: true,
            capacity: DEFAULT_CAPACITY,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl PipeBuilder {
    /// Both ends can send (default `true`).
    pub fn duplex(mut self, duplex: bool) -> Self {
        self.duplex = duplex;
        self
    }

    /// Bytes buffered per direction, rounded up to a power of two (minimum
    /// 4 KiB, default [`DEFAULT_CAPACITY`], 4 MiB). Messages up to 64 KiB
    /// (or a quarter of the ring, if smaller) travel in one frame; larger
    /// ones stream through in pieces of that size.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// The largest message either end sends or accepts, in bytes (default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`], 1 GiB); past it, sends fail with
    /// [`Error::MessageTooLarge`]. A receiver allocates at most this much
    /// for one message, whatever the shared memory claims.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_core::{pipe::Pipe, Error};
    /// let (a, b) = Pipe::builder().capacity(4096).max_message_size(10_000).build()?;
    /// // Larger than the 4 KiB ring: it streams through while `b` reads,
    /// // so the send runs beside the receive (as with an OS pipe).
    /// let sender = std::thread::spawn(move || {
    ///     a.send_bytes(&[1u8; 10_000])?;
    ///     let e = a.send_bytes(&[1u8; 10_001]);
    ///     assert!(matches!(e, Err(Error::MessageTooLarge { .. })));
    ///     Ok::<(), Error>(())
    /// });
    /// assert_eq!(b.recv_bytes()?, [1u8; 10_000]);
    /// sender.join().unwrap()?;
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Creates the connected pair.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an absurd capacity or a zero message
    /// cap, [`Error::Io`].
    pub fn build(self) -> Result<(Connection, Connection)> {
        if self.max_message_size == 0 {
            return Err(Error::InvalidArgument("pipe message cap must be positive"));
        }
        let max_message = (self.max_message_size as u64).min(MAX_MESSAGE_LIMIT);
        let cap = self
            .capacity
            .max(4096)
            .checked_next_power_of_two()
            .ok_or(Error::InvalidArgument("pipe capacity too large"))?;
        let n = if self.duplex { 2 } else { 1 };
        let per =
            Spsc::bytes_needed(cap).ok_or(Error::InvalidArgument("pipe capacity too large"))?;
        let per = (per + 127) & !127;
        let mut rings = Vec::with_capacity(n);
        let (region, _) = Region::builder(Kind::Pipe).size(per * n).create_with(|r| {
            for i in 0..n {
                // SAFETY: ring i occupies [i*per, (i+1)*per) of the zeroed,
                // 128-aligned payload, private until published, and the
                // region outlives the rings (both kept in `Rings`).
                rings.push(unsafe { Spsc::init(r.payload().add(i * per), cap, max_message) }?);
            }
            Ok(())
        })?;
        let rings = Arc::new(Rings {
            rings,
            _region: region,
        });
        let (a_peer, a_alive) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (b_peer, b_alive) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        // a's liveness is (a_peer read side, a_alive write side): a keeps
        // a_alive, b watches a_peer; and vice versa.
        let (a_tx, a_rx, b_tx, b_rx) = if self.duplex {
            (Some(0), Some(1), Some(1), Some(0))
        } else {
            (None, Some(0), Some(0), None)
        };
        let a = Connection {
            rings: rings.clone(),
            tx: a_tx,
            rx: a_rx,
            _alive: a_alive,
            peer: b_peer,
            sends: Default::default(),
            tail_cache: Default::default(),
        };
        let b = Connection {
            rings,
            tx: b_tx,
            rx: b_rx,
            _alive: b_alive,
            peer: a_peer,
            sends: Default::default(),
            tail_cache: Default::default(),
        };
        Ok((a, b))
    }
}

/// Holds one of a ring's end locks for one push or pop attempt (never
/// across a wait, so timeouts and peer checks of other users of the same
/// end are not delayed).
struct EndGuard<'a>(&'a PolledLock);

impl<'a> EndGuard<'a> {
    fn lock(l: &'a PolledLock, deadline: Option<Instant>) -> Result<EndGuard<'a>> {
        // A user of this end that died mid-call left the ring itself
        // consistent (indices are published last), so OwnerDied needs no
        // repair; Busy means the deadline passed.
        match l.lock(deadline) {
            Acquired::Clean | Acquired::OwnerDied => Ok(EndGuard(l)),
            Acquired::Busy => Err(Error::Timeout),
            Acquired::Corrupt(i) => Err(Error::Corrupt(i.describe())),
        }
    }
}

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

impl Connection {
    fn tx(&self) -> Result<&Spsc> {
        // A match, not `ok_or`: an eager `Error` costs its drop on every call.
        match self.tx {
            Some(i) => Ok(&self.rings.rings[i]),
            None => Err(Error::InvalidArgument(
                "this end of a one-way pipe cannot send",
            )),
        }
    }

    /// The sending ring, if a message of `size` bytes is within the cap.
    fn tx_for(&self, size: usize) -> Result<&Spsc> {
        let tx = self.tx()?;
        if size as u64 > tx.max_message() {
            return Err(Error::MessageTooLarge {
                size,
                max: tx.max_message() as usize,
            });
        }
        Ok(tx)
    }

    fn rx(&self) -> Result<&Spsc> {
        match self.rx {
            Some(i) => Ok(&self.rings.rings[i]),
            None => Err(Error::InvalidArgument(
                "this end of a one-way pipe cannot receive",
            )),
        }
    }

    /// Whether every copy of the other end is closed (dropped, or its
    /// processes dead).
    pub fn peer_closed(&self) -> bool {
        let mut fds = [PollFd::new(self.peer.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
    }

    fn check_peer(&self) -> Result<()> {
        if self.peer_closed() {
            Err(Error::PeerClosed)
        } else {
            Ok(())
        }
    }

    /// Largest message this end can send, in bytes (the pipe's cap).
    pub fn max_message_size(&self) -> usize {
        self.tx().map_or(0, |t| t.max_message() as usize)
    }

    /// Sends an `rkyv`-encoded message, waiting for room if the ring is full.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], [`Error::PeerClosed`] if the other end is
    /// gone (checked while waiting, and every 256 sends).
    pub fn send<T: Message>(&self, msg: &T) -> Result<()> {
        codec::encode_with(msg, |b| self.send_bytes(b))?
    }

    /// Sends raw bytes as one message.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.send_bytes_deadline(bytes, None)
    }

    /// Sends raw bytes, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as [`send`](Self::send).
    pub fn send_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.send_bytes_deadline(bytes, Some(Instant::now() + timeout))
    }

    fn send_bytes_deadline(&self, bytes: &[u8], deadline: Option<Instant>) -> Result<()> {
        let tx = self.tx_for(bytes.len())?;
        // Relaxed (both): a per-handle counter that only paces the peer
        // check; a plain load and store (no locked RMW on the hot path),
        // since an increment lost to a concurrent sender only shifts it.
        let n = self.sends.load(Ordering::Relaxed);
        self.sends.store(n.wrapping_add(1), Ordering::Relaxed);
        if n % SENDS_PER_PEER_CHECK == 0 {
            self.check_peer()?;
        }
        if bytes.len() > frames::piece_len(tx.capacity()) {
            return self.send_pieces(tx, bytes, deadline);
        }
        let h = tx.header();
        let r = h.space_ready.0.wait_until(
            || {
                let _g = match EndGuard::lock(&h.push_lock.0, deadline) {
                    Ok(g) => g,
                    Err(e) => return Some(Err(e)),
                };
                match tx.try_push(bytes, &self.tail_cache) {
                    Ok(true) => Some(Ok(())),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                }
            },
            deadline,
            Some(PEER_CHECK),
            || self.check_peer(),
        );
        self.sent_or(r)?;
        h.data_ready.0.notify(1);
        Ok(())
    }

    /// Receives and decodes a message, waiting as long as needed.
    ///
    /// # Errors
    /// [`Error::PeerClosed`] once the peer is gone and everything it sent
    /// was received; [`Error::Corrupt`] for invalid bytes.
    pub fn recv<T: Message>(&self) -> Result<T> {
        let mut c = Copied::new();
        self.recv_into(None, &mut c)?;
        c.decode()
    }

    /// As [`recv`](Self::recv), waiting at most `timeout` for a message to
    /// begin (one that has begun is received whole).
    ///
    /// # Errors
    /// [`Error::Timeout`], and as [`recv`](Self::recv).
    pub fn recv_timeout<T: Message>(&self, timeout: Duration) -> Result<T> {
        let mut c = Copied::new();
        self.recv_into(Some(Instant::now() + timeout), &mut c)?;
        c.decode()
    }

    /// Receives one message as raw bytes.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_into(None, &mut ToVec(Vec::new()))
    }

    /// Receives one message into `buf`, returning its length. If it does
    /// not fit, nothing is consumed and [`Error::MessageTooLarge`] reports
    /// the size needed (Python's `BufferTooShort`).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], and as [`recv`](Self::recv).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_into(None, &mut ToSlice(buf))
    }

    /// Whether a message is ready, waiting at most `timeout` (zero: just
    /// check). Returns `true` as well when the peer is gone, so the next
    /// `recv` reports it (as Python's `poll`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on the sending end of a one-way pipe.
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        let rx = self.rx()?;
        let r = rx.header().data_ready.0.wait_until(
            || rx.has_data().then_some(()),
            Some(Instant::now() + timeout),
            Some(PEER_CHECK),
            || self.check_peer(),
        );
        Ok(!matches!(r, Err(Stop::Timeout)) || self.peer_closed())
    }

    /// Closes this end (dropping it does the same).
    pub fn close(self) {}

    /// For `process::wait`: where a receiver sleeps and the ring it reads
    /// (`None` on the sending end of a one-way pipe), and the descriptor
    /// that hangs up once the peer is gone.
    pub(crate) fn wait_parts(&self) -> (Option<(&WaitPoint, &Spsc)>, BorrowedFd<'_>) {
        let rx = self.rx().ok().map(|r| (&r.header().data_ready.0, r));
        (rx, self.peer.as_fd())
    }
}

/// Bytes one ring of `cap` data bytes occupies in the region (128-aligned).
fn ring_stride(cap: usize) -> Option<usize> {
    Some(Spsc::bytes_needed(cap)?.checked_add(127)? & !127)
}

/// Where another process opens `fd` (a duplicate kept until it has; see
/// `travel`).
fn fd_locator(fd: &OwnedFd) -> String {
    crate::travel::keepalive::locator(fd.as_fd())
}

/// Opens a pipe descriptor of another process by its `/proc` path.
fn open_fd(path: &str, write: bool) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(at) = crate::travel::keepalive::ProcFd::parse(path) else {
        return Err(Error::Corrupt(format!(
            "not a descriptor locator: {path:?}"
        )));
    };
    let f = at
        .open(
            std::fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC),
        )
        .map_err(|e| match e.raw_os_error() {
            // No reader left on the peer's liveness pipe, or the sender is gone.
            Some(libc::ENXIO) | Some(libc::ENOENT) => Error::PeerClosed,
            other => Error::Io(nix::errno::Errno::from_raw(other.unwrap_or(libc::EIO))),
        })?;
    Ok(OwnedFd::from(f))
}

impl crate::travel::Travel for Connection {
    fn token(&self) -> crate::travel::Token {
        let idx = |i: Option<usize>| i.map_or_else(|| "-".to_owned(), |i| i.to_string());
        crate::travel::Token {
            locator: self.rings._region.locator(),
            kind: Kind::Pipe as u32,
            offset: 0,
            extra: vec![
                idx(self.tx),
                idx(self.rx),
                fd_locator(&self._alive),
                fd_locator(&self.peer),
            ],
        }
    }

    fn from_token(t: crate::travel::Token) -> Result<Self> {
        let bad = |what: &str| Error::Corrupt(format!("pipe token: {what}"));
        if t.kind != Kind::Pipe as u32 || t.extra.len() != 4 {
            return Err(bad("not a pipe end"));
        }
        let region = Region::open_locator(&t.locator, Kind::Pipe, 0, None)?;
        // SAFETY: the region is published and at least one ring long is
        // checked by `attach`, which validates the capacity against `len`.
        let first = unsafe { Spsc::attach(region.payload(), region.payload_len()) }?;
        let per = ring_stride(first.capacity() as usize).ok_or_else(|| bad("ring size"))?;
        let n = region.payload_len() / per;
        if !(1..=2).contains(&n) {
            return Err(bad("ring count"));
        }
        let mut rings = vec![first];
        for i in 1..n {
            // SAFETY: ring i lies at i*per within the payload (n*per <= len).
            rings.push(unsafe { Spsc::attach(region.payload().add(i * per), per) }?);
        }
        let idx = |s: &str| -> Result<Option<usize>> {
            match s {
                "-" => Ok(None),
                s => s
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < n)
                    .map(Some)
                    .ok_or_else(|| bad("ring index")),
            }
        };
        let (tx, rx) = (idx(&t.extra[0])?, idx(&t.extra[1])?);
        Ok(Connection {
            rings: Arc::new(Rings {
                rings,
                _region: region,
            }),
            tx,
            rx,
            _alive: open_fd(&t.extra[2], true)?,
            peer: open_fd(&t.extra[3], false)?,
            sends: Default::default(),
            tail_cache: Default::default(),
        })
    }
}
crate::travel::travel_via_token!([] Connection);

#[cfg(test)]
mod end_lock_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn allocated(c: &Connection) -> u64 {
        c.rings._region.file().metadata().unwrap().blocks() * 512
    }

    #[test]
    fn a_default_pipe_carrying_small_messages_touches_only_its_soft_window() {
        let (a, b) = Pipe::new(true).unwrap();
        let msg = vec![5u8; 1000];
        // 40 MB each way, one message in flight at a time: ten laps of a
        // 4 MiB ring if frames went round it.
        for _ in 0..40_000 {
            a.send_bytes(&msg).unwrap();
            assert_eq!(b.recv_bytes().unwrap().len(), 1000);
            b.send_bytes(&msg).unwrap();
            assert_eq!(a.recv_bytes().unwrap().len(), 1000);
        }
        let window = 2 * crate::ring::spsc::SOFT_WINDOW;
        assert!(allocated(&a) <= window + (64 << 10), "{}", allocated(&a));
        // A burst that outruns the receiver still uses the whole ring.
        let (r, w) = Pipe::builder().duplex(false).build().unwrap();
        for _ in 0..3000 {
            w.send_bytes(&msg).unwrap();
        }
        assert!(allocated(&r) > 2 << 20, "{}", allocated(&r));
        for _ in 0..3000 {
            assert_eq!(r.recv_bytes().unwrap(), msg);
        }
    }
}
