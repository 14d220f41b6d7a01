//! The client side of a slot: one connection per process and manager.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Error, Result};
use ipc_core::codec;
use ipc_core::sys::proc::{self, TaskId};
use rkyv::util::AlignedVec;

use crate::control::{
    frame_crc, mailbox_backoff, Control, CLOSED, CONT, FREE, LEN_MASK, MORE, RUNNING,
};
use crate::wire::{Request, Response};

/// How often a sleeping caller checks that the server is still there.
const SERVER_CHECK: Duration = Duration::from_millis(100);

/// A claimed slot of one manager, used by one process.
#[derive(Debug)]
pub(crate) struct Conn {
    ctl: Arc<Control>,
    slot: usize,
    me: u64,
    state: Mutex<Seq>,
    /// Set when an exchange was abandoned (timeout) or the slot was lost:
    /// the connection is out of step and must be replaced.
    broken: AtomicBool,
    /// Whether the slot was given back.
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct Seq {
    seq: u32,
    resp: AlignedVec,
    /// Deadline of the current call, if any.
    deadline: Option<Instant>,
}

impl Conn {
    /// Claims a free slot of `ctl` for this process.
    pub fn connect(ctl: Arc<Control>) -> Result<Conn> {
        if ctl.server_gone() || ctl.header().state.load(Ordering::Acquire) != RUNNING {
            return Err(Error::ServerGone);
        }
        // The server frees the slots of clients it finds dead: an identity
        // that could not be read would look dead at once.
        let me = crate::control::current_process()?.pack();
        for i in 0..ctl.nslots() {
            let s = ctl.slot(i);
            // Acquire: pairs with the server's Release when it freed the
            // slot, so its reset of the sequence numbers is visible.
            if s.owner
                .compare_exchange(FREE, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // Release: a server that sees the new bound sees our claim.
                ctl.header()
                    .claimed_hi
                    .fetch_max(i as u32 + 1, Ordering::Release);
                // Relaxed: only we write req_seq while we own the slot.
                let seq = s.req_seq.load(Ordering::Relaxed);
                return Ok(Conn {
                    ctl,
                    slot: i,
                    me,
                    state: Mutex::new(Seq {
                        seq,
                        resp: AlignedVec::new(),
                        deadline: None,
                    }),
                    broken: AtomicBool::new(false),
                    closed: AtomicBool::new(false),
                });
            }
        }
        Err(Error::TooManyClients { max: ctl.nslots() })
    }

    fn lock(&self) -> MutexGuard<'_, Seq> {
        // A panic mid-call leaves the sequence consistent (it only grows
        // after a complete exchange), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this connection must be replaced (see `broken`).
    pub fn is_broken(&self) -> bool {
        // Relaxed: a hint; a caller that misses it gets the same error again.
        self.broken.load(Ordering::Relaxed)
    }

    /// Sends `req` and returns the decoded response, waiting at most until
    /// `deadline` ([`ipc_core::Error::Timeout`]; the connection is then abandoned).
    pub fn call(&self, req: &Request, deadline: Option<Instant>) -> Result<Response> {
        let mut st = self.lock();
        if self.is_broken() {
            return Err(Error::corrupt("manager connection abandoned"));
        }
        st.deadline = deadline;
        let r = codec::encode_with(req, |bytes| self.exchange(&mut st, bytes))?;
        if let Err(e) = r {
            if matches!(
                e,
                Error::Core(ipc_core::Error::Timeout | ipc_core::Error::Corrupt(_))
                    | Error::OutOfStep { .. }
            ) {
                // Relaxed: read under the same mutex or as a hint.
                self.broken.store(true, Ordering::Relaxed);
            }
            return Err(e);
        }
        Ok(codec::decode::<Response>(&st.resp)?)
    }

    /// Sends arbitrary bytes as a request (tests of a hostile client).
    #[cfg(test)]
    pub fn call_raw(&self, bytes: &[u8], flags: u32) -> Result<Response> {
        let mut st = self.lock();
        if flags != 0 {
            self.round(&mut st, bytes, flags)?;
            st.resp.clear();
            self.read_frame(&mut st)?;
            return Ok(codec::decode::<Response>(&st.resp)?);
        }
        self.exchange(&mut st, bytes)?;
        Ok(codec::decode::<Response>(&st.resp)?)
    }

    /// Marks the slot closed behind this connection's back, as a hostile
    /// process could.
    #[cfg(test)]
    pub fn steal_for_test(&self) {
        self.ctl
            .slot(self.slot)
            .owner
            .store(CLOSED, Ordering::SeqCst);
        self.ctl.ring_doorbell();
        std::thread::sleep(Duration::from_millis(50));
    }

    /// One exchange: the request in chunks, the response reassembled.
    fn exchange(&self, st: &mut Seq, req: &[u8]) -> Result<()> {
        let cap = self.ctl.buf_len();
        let mut chunks = req.chunks(cap).peekable();
        if req.is_empty() {
            self.round(st, &[], 0)?;
        }
        st.resp.clear();
        while let Some(c) = chunks.next() {
            let flags = if chunks.peek().is_some() { MORE } else { 0 };
            self.round(st, c, flags)?;
            if flags == MORE {
                // The server takes a chunk with an empty answer; anything
                // else (a fault) is its answer to the whole request.
                let ack = self.read_frame(st)?;
                if ack != 0 {
                    return match ack & MORE {
                        0 => Ok(()),
                        _ => Err(Error::corrupt("manager did not acknowledge a chunk")),
                    };
                }
            }
        }
        loop {
            if self.read_frame(st)? & MORE == 0 {
                return Ok(());
            }
            self.round(st, &[], CONT)?;
        }
    }

    /// Appends the response frame just answered to `st.resp` and returns
    /// its length word, after checking its CRC over our copy of the bytes:
    /// a frame damaged in the mailbox is `Corrupt`, never a wrong value.
    fn read_frame(&self, st: &mut Seq) -> Result<u32> {
        let s = self.ctl.slot(self.slot);
        let (raw, crc) = s.response_frame();
        let n = (raw & LEN_MASK) as usize;
        if n > self.ctl.buf_len() {
            return Err(Error::corrupt(format!(
                "manager response chunk of {n} bytes exceeds the buffer"
            )));
        }
        let at = st.resp.len();
        st.resp.resize(at + n, 0);
        // SAFETY: the response buffer has `n <= buf_len` bytes inside the
        // mapping; the destination has room for them at `at`. A raw copy,
        // never a `&[u8]` over memory another process may be writing.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ctl.resp_buf(self.slot),
                st.resp.as_mut_ptr().add(at),
                n,
            )
        };
        if frame_crc(st.seq, raw, &st.resp[at..]) != crc {
            return Err(Error::corrupt(
                "a manager response was damaged in the mailbox (CRC mismatch)",
            ));
        }
        Ok(raw)
    }

    /// Writes one chunk and waits for its answer.
    fn round(&self, st: &mut Seq, chunk: &[u8], flags: u32) -> Result<()> {
        let ctl = &*self.ctl;
        let s = ctl.slot(self.slot);
        // Relaxed: a stale owner is caught by the server's check instead.
        if s.owner.load(Ordering::Relaxed) != self.me {
            return Err(Error::corrupt("this process's manager slot was taken over"));
        }
        if ctl.stopped() {
            return Err(Error::ServerGone);
        }
        // SAFETY: chunk.len() <= buf_len; the request buffer is ours until
        // we publish req_seq.
        unsafe {
            std::ptr::copy_nonoverlapping(chunk.as_ptr(), ctl.req_buf(self.slot), chunk.len())
        };
        let seq = st.seq.wrapping_add(1);
        let len = chunk.len() as u32 | flags;
        s.publish_request(seq, len, frame_crc(seq, len, chunk));
        st.seq = seq;
        ctl.ring_doorbell();
        self.wait(seq, st.deadline)
    }

    /// Waits until the server answered `seq`: spins, then sleeps with
    /// periodic checks that the server is alive.
    fn wait(&self, seq: u32, deadline: Option<Instant>) -> Result<()> {
        let s = self.ctl.slot(self.slot);
        let mut backoff = mailbox_backoff();
        while !backoff.is_completed() {
            if s.answered(seq) {
                return Ok(());
            }
            backoff.snooze();
        }
        loop {
            if s.sleep_for_answer(seq, deadline, SERVER_CHECK) {
                return Ok(());
            }
            // Woken or timed out: either way, is the server still there,
            // and is the slot still ours (a server that judged us dead, or
            // a hostile process, may have reclaimed it)?
            if self.ctl.server_gone() {
                return Err(Error::ServerGone);
            }
            // Relaxed: any value other than ours means the slot is lost.
            if s.owner.load(Ordering::Relaxed) != self.me {
                return Err(Error::corrupt("this process's manager slot was taken over"));
            }
            // While we wait, the server has answered `seq - 1` or is about
            // to answer `seq`, and our request is `seq`: anything else was
            // written by another process, and no answer for us may come.
            // Relaxed: plain checks of words only we and the server write.
            let (resp, req) = (
                s.resp_seq.load(Ordering::Relaxed),
                s.req_seq.load(Ordering::Relaxed),
            );
            if req != seq {
                return Err(Error::OutOfStep {
                    expected: seq,
                    found: req,
                });
            }
            if resp != seq && resp != seq.wrapping_sub(1) {
                return Err(Error::OutOfStep {
                    expected: seq,
                    found: resp,
                });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ipc_core::Error::Timeout.into());
            }
        }
    }
}

impl Conn {
    /// Gives the slot back (once). Only the process that claimed it does: a
    /// forked child's copy of a connection is never used (see `Manager`).
    pub fn close(&self) {
        // Relaxed: `swap` makes the close happen once; ordering of the
        // slot hand-back is carried by the owner word's Release below.
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        if proc::pid() == TaskId::unpack(self.me).id {
            let s = self.ctl.slot(self.slot);
            // Release: our last use of the buffers happens before the
            // server's reset.
            if s.owner
                .compare_exchange(self.me, CLOSED, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                self.ctl.ring_doorbell();
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}
