//! The server loop: scan the client slots, answer requests, sleep when
//! idle, reclaim the slots of dead clients.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::Result;
use ipc_core::codec;
use ipc_core::sys::futex;
use ipc_core::sys::proc::TaskId;
use rkyv::util::AlignedVec;

use crate::control::{
    self, frame_crc, mailbox_backoff, Control, CLOSED, CONT, FAILED, FREE, LEN_MASK, MORE, RUNNING,
    STOPPED,
};
use crate::store::Store;
use crate::wire::{Fault, Request, Response};

/// How often the server checks for dead clients and a dead owner (and so
/// the longest it sleeps).
const HOUSEKEEPING: Duration = Duration::from_millis(200);
/// Largest request the server reassembles from chunks.
const MAX_REQUEST: usize = 256 << 20;

/// The server keeps a descriptor per adopted object: lift its soft limit
/// to the hard one (as servers commonly do).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Server-local state of one slot.
#[derive(Default)]
struct Local {
    seen: u32,
    partial: Vec<u8>,
    pending: Vec<u8>,
    pending_off: usize,
}

pub(crate) struct Server {
    ctl: Control,
    store: Store,
    local: Vec<Local>,
    decode_buf: AlignedVec,
}

impl Server {
    pub fn new(ctl: Control, store: Store) -> Server {
        let local = (0..ctl.nslots()).map(|_| Local::default()).collect();
        Server {
            ctl,
            store,
            local,
            decode_buf: AlignedVec::new(),
        }
    }

    /// Takes the control region over and serves until asked to stop or
    /// until the owner process dies. If it cannot start, says why in the
    /// control region (state `FAILED`), so the starter reports the cause
    /// rather than a vanished server.
    pub fn run(mut self) -> Result<()> {
        raise_fd_limit();
        let started = self
            .ctl
            .region_mut()
            .adopt()
            .and_then(|()| control::current_process());
        let h = self.ctl.header();
        let me = match started {
            Ok(me) => me,
            Err(e) => {
                let code = match &e {
                    ipc_core::Error::Io(errno) => *errno as u32,
                    _ => u32::MAX,
                };
                // Relaxed: published by the Release store of FAILED.
                h.start_error.store(code, Ordering::Relaxed);
                h.state.store(FAILED, Ordering::Release);
                futex::wake_all(&h.state);
                return Err(e.into());
            }
        };
        // Relaxed: published by the Release store of `state` below.
        h.server.store(me.pack(), Ordering::Relaxed);
        // Release: the server identity before RUNNING.
        h.state.store(RUNNING, Ordering::Release);
        futex::wake_all(&h.state);
        let mut backoff = mailbox_backoff();
        let mut last_check = Instant::now();
        let mut rounds = 0u32;
        while !self.store.stop {
            let bell = self.ctl.header().bell();
            let served = self.scan();
            // Reading the clock costs more than a scan: look every 256 rounds.
            rounds = rounds.wrapping_add(1);
            if rounds % 256 == 0 && last_check.elapsed() >= HOUSEKEEPING {
                last_check = Instant::now();
                if !self.housekeeping() {
                    break;
                }
            }
            if served > 0 || self.store.stop {
                backoff.reset();
                continue;
            }
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            self.ctl.header().announce_sleep();
            if self.scan() == 0 {
                let deadline = Some(last_check + HOUSEKEEPING);
                self.ctl.header().sleep_on_doorbell(bell, deadline);
            }
            self.ctl.header().end_sleep();
            backoff.reset();
        }
        self.stop();
        Ok(())
    }

    /// Marks the server stopped and wakes every sleeping client, which then
    /// reports `ServerGone`.
    fn stop(&self) {
        let h = self.ctl.header();
        // Release: every answer we gave happens before STOPPED.
        h.state.store(STOPPED, Ordering::Release);
        futex::wake_all(&h.state);
        for i in 0..self.ctl.nslots() {
            futex::wake_all(&self.ctl.slot(i).resp_seq);
        }
    }

    fn claimed(&self) -> usize {
        // Acquire: pairs with the clients' Release in `fetch_max`.
        (self.ctl.header().claimed_hi.load(Ordering::Acquire) as usize).min(self.ctl.nslots())
    }

    /// Answers every pending request; returns how many.
    fn scan(&mut self) -> usize {
        let mut served = 0;
        for i in 0..self.claimed() {
            let s = self.ctl.slot(i);
            // Acquire: pairs with the client's claim (CAS) or close.
            let owner = s.owner.load(Ordering::Acquire);
            match owner {
                FREE => continue,
                CLOSED => {
                    self.reclaim(i, CLOSED);
                    continue;
                }
                _ => {}
            }
            let seq = s.request_seq();
            if seq != self.local[i].seen {
                self.serve(i, seq, owner);
                served += 1;
            }
        }
        served
    }

    /// Frees slot `i` if its owner word is still `owner`. Sequence numbers
    /// are never rewound: the next client continues from the current one,
    /// so a stale waiter can never mistake its successor's answer for its own.
    fn reclaim(&mut self, i: usize, owner: u64) {
        let s = self.ctl.slot(i);
        // Relaxed (all): published by the owner word's Release below, which
        // the next client's claiming CAS acquires.
        let seq = s.req_seq.load(Ordering::Relaxed);
        s.resp_seq.store(seq, Ordering::Relaxed);
        s.resp_len.store(0, Ordering::Relaxed);
        s.client_sleeping.store(0, Ordering::Relaxed);
        if s.owner
            .compare_exchange(owner, FREE, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            self.local[i] = Local {
                seen: seq,
                ..Local::default()
            };
        }
    }

    /// Reclaims the slots of dead clients; returns whether to keep serving
    /// (the owner, if any, is alive).
    fn housekeeping(&mut self) -> bool {
        for i in 0..self.claimed() {
            // Relaxed: a stale value only delays the reclaim to the next round.
            let owner = self.ctl.slot(i).owner.load(Ordering::Relaxed);
            if owner != FREE && owner != CLOSED && dead(owner) {
                crate::trace::event!(
                    INFO,
                    slot = i,
                    pid = TaskId::unpack(owner).id,
                    "reclaimed the slot of a dead client"
                );
                self.reclaim(i, owner);
            }
        }
        self.store.drop_dead_holders();
        self.store.free_orphans();
        // Relaxed: written once before the server started.
        let owner = self.ctl.header().owner.load(Ordering::Relaxed);
        owner == 0 || !dead(owner)
    }

    /// Handles the request `seq` of slot `i`.
    fn serve(&mut self, i: usize, seq: u32, client: u64) {
        let cap = self.ctl.buf_len();
        let s = self.ctl.slot(i);
        let (raw, crc) = s.request_frame();
        let n = (raw & LEN_MASK) as usize;
        if n > cap {
            self.local[i].partial.clear();
            let f = Fault::Corrupt(format!("request chunk of {n} bytes exceeds the buffer"));
            return self.answer(i, seq, Response::Fault(f));
        }
        if raw & CONT != 0 {
            if frame_crc(seq, raw, &[]) != crc {
                return self.answer(i, seq, damaged());
            }
            return self.next_chunk(i, seq);
        }
        let local = &mut self.local[i];
        local.pending.clear();
        let total = local.partial.len() + n;
        if total > MAX_REQUEST {
            local.partial.clear();
            let f = Fault::TooLarge(total as u64, MAX_REQUEST as u64);
            return self.answer(i, seq, Response::Fault(f));
        }
        // Copy the chunk out with a raw copy (never a `&[u8]` over memory a
        // hostile client may be writing): what we then decode is ours.
        let src = self.ctl.req_buf(i);
        if raw & MORE != 0 {
            let at = local.partial.len();
            local.partial.resize(at + n, 0);
            // SAFETY: `src` has n <= buf_len readable bytes inside the
            // mapping; the destination has room for n bytes at `at`.
            unsafe { std::ptr::copy_nonoverlapping(src, local.partial.as_mut_ptr().add(at), n) };
            if frame_crc(seq, raw, &local.partial[at..]) != crc {
                local.partial.clear();
                return self.answer(i, seq, damaged());
            }
            return self.write(i, seq, &[], 0);
        }
        if self.decode_buf.capacity() > 1 << 20 {
            // Give back the memory of an earlier large request.
            self.decode_buf = AlignedVec::new();
        }
        self.decode_buf.clear();
        self.decode_buf.extend_from_slice(&local.partial);
        local.partial = Vec::new();
        let at = self.decode_buf.len();
        self.decode_buf.resize(at + n, 0);
        // SAFETY: as above, into `decode_buf`.
        unsafe { std::ptr::copy_nonoverlapping(src, self.decode_buf.as_mut_ptr().add(at), n) };
        if frame_crc(seq, raw, &self.decode_buf[at..]) != crc {
            return self.answer(i, seq, damaged());
        }
        let resp = match codec::decode::<Request>(&self.decode_buf) {
            Ok(req) => self.store.handle(req, client),
            Err(e) => Response::Fault(Fault::Corrupt(format!("invalid request: {e}"))),
        };
        self.answer(i, seq, resp);
    }

    /// Encodes `resp` and writes it (its first chunk, if large).
    fn answer(&mut self, i: usize, seq: u32, resp: Response) {
        let cap = self.ctl.buf_len();
        let r = codec::encode_with(&resp, |b| {
            if b.len() <= cap {
                self.write(i, seq, b, 0);
            } else {
                let l = &mut self.local[i];
                l.pending.clear();
                l.pending.extend_from_slice(b);
                l.pending_off = 0;
                self.next_chunk(i, seq);
            }
        });
        if let Err(e) = r {
            let f = Response::Fault(Fault::Corrupt(format!("encoding the response failed: {e}")));
            let _ = codec::encode_with(&f, |b| self.write(i, seq, b, 0));
        }
    }

    /// Writes the next chunk of slot `i`'s pending response.
    fn next_chunk(&mut self, i: usize, seq: u32) {
        let cap = self.ctl.buf_len();
        let l = &mut self.local[i];
        if l.pending_off >= l.pending.len() {
            return self.answer(
                i,
                seq,
                Response::Fault(Fault::Corrupt("no response chunk pending".into())),
            );
        }
        let end = (l.pending_off + cap).min(l.pending.len());
        let more = if end < l.pending.len() { MORE } else { 0 };
        let chunk = std::mem::take(&mut l.pending);
        self.write(i, seq, &chunk[self.local[i].pending_off..end], more);
        let l = &mut self.local[i];
        l.pending = chunk;
        l.pending_off = end;
        if more == 0 {
            l.pending = Vec::new();
            l.pending_off = 0;
        }
    }

    /// Publishes `bytes` as the answer to request `seq` of slot `i`.
    fn write(&mut self, i: usize, seq: u32, bytes: &[u8], flags: u32) {
        debug_assert!(bytes.len() <= self.ctl.buf_len());
        let s = self.ctl.slot(i);
        // SAFETY: bytes.len() <= buf_len; the response buffer is ours until
        // we publish resp_seq.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ctl.resp_buf(i), bytes.len()) };
        let len = bytes.len() as u32 | flags;
        s.publish_response(seq, len, frame_crc(seq, len, bytes));
        self.local[i].seen = seq;
    }
}

/// The answer to a request chunk whose CRC does not match its bytes.
fn damaged() -> Response {
    Response::Fault(Fault::Corrupt(
        "the request was damaged in the mailbox (CRC mismatch)".into(),
    ))
}

/// Whether the process `who` (packed) is known dead: one whose liveness
/// cannot be read (no descriptor left here) is not, so a shortage never
/// frees a live client's slot or stops a served owner's server.
fn dead(who: u64) -> bool {
    matches!(control::process_gone(TaskId::unpack(who)), Ok(true))
}
