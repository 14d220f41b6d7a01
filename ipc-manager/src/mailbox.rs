//! The mailbox's shared words and its two-sided sleep/wake protocol: the
//! only code that orders them. `client.rs` and `server.rs` call these
//! methods; under `--cfg loom` this module alone is built, over loom's
//! atomics and ipc-core's sleeping futex emulation (`sys/futex_loom.rs`),
//! and the model below checks it.
//!
//! # The protocol
//!
//! Client (one call = one or more rounds; `seq` grows by one per round):
//! 1. copy the request bytes into the slot's request buffer;
//! 2. [`SlotHeader::publish_request`]: `req_crc`, `req_len` Relaxed, then
//!    `req_seq = seq` **Release** (publishes the bytes);
//! 3. [`ControlHeader::ring_doorbell`]: `doorbell += 1` Relaxed (the futex
//!    word only has to change), **SeqCst fence**, load `server_sleeping`
//!    Relaxed; if set, `futex_wake(doorbell, 1)`;
//! 4. wait: spin/yield on [`SlotHeader::answered`] (`resp_seq == seq`,
//!    **Acquire**), then [`SlotHeader::sleep_for_answer`] in a loop: load
//!    `cur = resp_seq` Acquire, `client_sleeping = 1` Relaxed, **SeqCst
//!    fence**, re-check `answered`, else `futex_wait(resp_seq, cur)`
//!    (100 ms slices, between which `client.rs` checks the server is
//!    alive), `client_sleeping = 0`, re-check `answered`;
//! 5. read `resp_len`, `resp_crc` Relaxed ([`SlotHeader::response_frame`],
//!    ordered by step 4's Acquire) and copy the response bytes out.
//!
//! Server (one loop):
//! 1. `bell = doorbell` **Acquire** ([`ControlHeader::bell`]);
//! 2. scan: per slot, `req_seq` **Acquire** ([`SlotHeader::request_seq`]);
//!    a new one is served: `req_len`, `req_crc` Relaxed
//!    ([`SlotHeader::request_frame`]), copy the bytes out, answer into the
//!    response buffer, then [`SlotHeader::publish_response`]: `resp_crc`,
//!    `resp_len` Relaxed, `resp_seq = seq` **Release**, **SeqCst fence**,
//!    load `client_sleeping` Relaxed; if set, `futex_wake(resp_seq, 1)`;
//! 3. if nothing was served: spin/yield, then
//!    [`ControlHeader::announce_sleep`] (`server_sleeping = 1` Relaxed,
//!    **SeqCst fence**), scan again, and if still idle
//!    [`ControlHeader::sleep_on_doorbell`] (`futex_wait(doorbell, bell)`,
//!    200 ms at most), then [`ControlHeader::end_sleep`]
//!    (`server_sleeping = 0`).
//!
//! Each side is a Dekker pair: the sleeper writes its flag, fences, then
//! reads the word it sleeps on (its re-check, and the futex's own compare);
//! the waker writes that word, fences, then reads the flag. The two fences
//! are ordered one way or the other, so either the sleeper sees the new
//! word and does not sleep, or the waker sees the flag and wakes it.
//!
//! The timed waits are a safety net against a dead peer, not part of the
//! wake-up protocol: the model waits without timeouts, so a wake-up lost is
//! a deadlock there rather than a 100-200 ms stall here.

use ipc_core::sys::futex;
#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The control header, at the start of the payload.
#[repr(C, align(128))]
pub(crate) struct ControlHeader {
    /// Packed identity of the server process.
    pub server: AtomicU64,
    /// Packed identity of the process the server serves (0: none, it stops
    /// only when asked).
    pub owner: AtomicU64,
    /// `STARTING`, `RUNNING` or `STOPPED`; a futex word while starting.
    pub state: AtomicU32,
    /// Number of slots (read through `Control`, which validates it).
    pub nslots: AtomicU32,
    /// Bytes per buffer (read through `Control`, which validates it).
    pub buf_len: AtomicU32,
    /// Slots `[0, claimed_hi)` may be in use: the server scans only those.
    pub claimed_hi: AtomicU32,
    /// Bumped by every request; the server sleeps on it.
    pub doorbell: AtomicU32,
    /// Whether the server is (about to be) asleep on `doorbell`.
    pub server_sleeping: AtomicU32,
    /// Why the server could not start (an errno; `u32::MAX`: not a system
    /// error), written before `state` becomes `FAILED`.
    pub start_error: AtomicU32,
}

/// A slot's header.
#[repr(C, align(128))]
pub(crate) struct SlotHeader {
    /// `FREE`, `CLOSED` or the packed identity of the client.
    pub owner: AtomicU64,
    /// Sequence number of the latest request.
    pub req_seq: AtomicU32,
    /// Its length and flags.
    pub req_len: AtomicU32,
    /// Sequence number of the latest response; the client sleeps on it.
    pub resp_seq: AtomicU32,
    /// Its length and flags.
    pub resp_len: AtomicU32,
    /// Whether the client is (about to be) asleep on `resp_seq`.
    pub client_sleeping: AtomicU32,
    /// `frame_crc` of the latest request chunk.
    pub req_crc: AtomicU32,
    /// `frame_crc` of the latest response chunk.
    pub resp_crc: AtomicU32,
}

impl ControlHeader {
    /// Client: rings the server's doorbell after publishing a request or a
    /// close, waking the server if it sleeps.
    pub fn ring_doorbell(&self) {
        // Relaxed: the futex word only needs to change; the request itself
        // is published by `req_seq`'s Release.
        self.doorbell.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence (Dekker with `announce_sleep`).
        if self.server_sleeping.load(Ordering::Relaxed) != 0 {
            futex::wake(&self.doorbell, 1);
        }
    }

    /// Server: the doorbell's value before a scan, to sleep on.
    pub fn bell(&self) -> u32 {
        // Acquire: pairs with nothing stronger than the clients' Relaxed
        // bumps; the requests are published by `req_seq` (`request_seq`).
        self.doorbell.load(Ordering::Acquire)
    }

    /// Server: says it is about to sleep. The caller must then scan again
    /// before [`sleep_on_doorbell`](Self::sleep_on_doorbell).
    pub fn announce_sleep(&self) {
        // Relaxed: ordered by the fence (Dekker with `ring_doorbell`).
        self.server_sleeping.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Server: sleeps until the doorbell differs from `bell` (or a wake, or
    /// `deadline`).
    pub fn sleep_on_doorbell(&self, bell: u32, deadline: Option<Instant>) {
        futex::wait(&self.doorbell, bell, deadline);
    }

    /// Server: awake again.
    pub fn end_sleep(&self) {
        // Relaxed: only makes clients skip the wake; a stale 1 costs one
        // needless wake.
        self.server_sleeping.store(0, Ordering::Relaxed);
    }
}

impl SlotHeader {
    /// Client: publishes request frame `seq` (its bytes already written).
    pub fn publish_request(&self, seq: u32, len: u32, crc: u32) {
        // Relaxed (both): published by req_seq's Release below.
        self.req_crc.store(crc, Ordering::Relaxed);
        self.req_len.store(len, Ordering::Relaxed);
        // Release: the request bytes and length before the sequence number;
        // pairs with the server's Acquire in `request_seq`.
        self.req_seq.store(seq, Ordering::Release);
    }

    /// Server: the latest request's sequence number; a new one makes its
    /// frame and bytes visible.
    pub fn request_seq(&self) -> u32 {
        // Acquire: pairs with the client's Release in `publish_request`.
        self.req_seq.load(Ordering::Acquire)
    }

    /// Server: the length word and CRC of the request `request_seq` saw.
    pub fn request_frame(&self) -> (u32, u32) {
        // Relaxed (both): ordered after the Acquire in `request_seq`.
        (
            self.req_len.load(Ordering::Relaxed),
            self.req_crc.load(Ordering::Relaxed),
        )
    }

    /// Server: publishes response frame `seq` (its bytes already written)
    /// and wakes the client if it sleeps.
    pub fn publish_response(&self, seq: u32, len: u32, crc: u32) {
        // Relaxed (both): published by resp_seq's Release.
        self.resp_crc.store(crc, Ordering::Relaxed);
        self.resp_len.store(len, Ordering::Relaxed);
        // Release: the response before its sequence number; pairs with the
        // client's Acquire in `answered`.
        self.resp_seq.store(seq, Ordering::Release);
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence (Dekker with `sleep_for_answer`).
        if self.client_sleeping.load(Ordering::Relaxed) != 0 {
            futex::wake(&self.resp_seq, 1);
        }
    }

    /// Client: whether request `seq` is answered; then its frame and bytes
    /// are visible.
    pub fn answered(&self, seq: u32) -> bool {
        // Acquire: pairs with the server's Release in `publish_response`.
        self.resp_seq.load(Ordering::Acquire) == seq
    }

    /// Client: the length word and CRC of the response `answered` saw.
    pub fn response_frame(&self) -> (u32, u32) {
        // Relaxed (both): ordered after the Acquire in `answered`.
        (
            self.resp_len.load(Ordering::Relaxed),
            self.resp_crc.load(Ordering::Relaxed),
        )
    }

    /// Client: sleeps once (at most `slice`, or until `deadline`) unless
    /// request `seq` is answered; returns whether it is.
    pub fn sleep_for_answer(&self, seq: u32, deadline: Option<Instant>, slice: Duration) -> bool {
        // Acquire: as in `answered`.
        let cur = self.resp_seq.load(Ordering::Acquire);
        // Relaxed: ordered by the fence (Dekker with `publish_response`).
        self.client_sleeping.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.answered(seq) {
            // Relaxed: as `end_sleep`'s store.
            self.client_sleeping.store(0, Ordering::Relaxed);
            return true;
        }
        futex::wait_slice(&self.resp_seq, cur, deadline, slice);
        // Relaxed: a stale 1 costs the server one needless wake.
        self.client_sleeping.store(0, Ordering::Relaxed);
        self.answered(seq)
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    //! A client making two calls against a server that serves them, both
    //! through the methods above (the real code's halves), with real
    //! sleeps: a lost wake-up leaves a thread blocked forever, which loom
    //! reports as a deadlock. The buffers are `UnsafeCell`s, so a read not
    //! ordered after its write is a data race loom reports, and the bytes
    //! and frame words each side reads are checked to be those written for
    //! that request.
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    struct Mailbox {
        h: ControlHeader,
        s: SlotHeader,
        req: UnsafeCell<u32>,
        resp: UnsafeCell<u32>,
    }

    // SAFETY: the buffers are accessed per the mailbox protocol, which is
    // what loom checks (it reports any unordered access as a race).
    unsafe impl Sync for Mailbox {}

    fn new() -> Mailbox {
        let z = || AtomicU32::new(0);
        Mailbox {
            h: ControlHeader {
                server: AtomicU64::new(0),
                owner: AtomicU64::new(0),
                state: z(),
                nslots: z(),
                buf_len: z(),
                claimed_hi: z(),
                doorbell: z(),
                server_sleeping: z(),
                start_error: z(),
            },
            s: SlotHeader {
                owner: AtomicU64::new(0),
                req_seq: z(),
                req_len: z(),
                resp_seq: z(),
                resp_len: z(),
                client_sleeping: z(),
                req_crc: z(),
                resp_crc: z(),
            },
            req: UnsafeCell::new(0),
            resp: UnsafeCell::new(0),
        }
    }

    /// Number of calls the client makes.
    const CALLS: u32 = 2;
    const SLICE: Duration = Duration::from_millis(100);

    fn request(seq: u32) -> u32 {
        100 + seq
    }
    fn answer(req: u32) -> u32 {
        req * 2
    }
    /// Stand-ins for the frame CRCs: distinct per frame.
    fn req_crc(seq: u32) -> u32 {
        0x1000 + seq
    }
    fn resp_crc(seq: u32) -> u32 {
        0x2000 + seq
    }

    /// `client.rs`'s `round` + `wait` + `read_frame`, without the spin
    /// phase (it only re-checks `answered`) or the liveness checks.
    fn client(m: &Mailbox) {
        for seq in 1..=CALLS {
            // SAFETY: the request buffer is the client's until req_seq is
            // published (loom checks it).
            m.req.with_mut(|p| unsafe { *p = request(seq) });
            m.s.publish_request(seq, 4, req_crc(seq));
            m.h.ring_doorbell();
            if !m.s.answered(seq) {
                while !m.s.sleep_for_answer(seq, None, SLICE) {}
            }
            assert_eq!(m.s.response_frame(), (4, resp_crc(seq)));
            // SAFETY: published by resp_seq (loom checks it).
            let got = m.resp.with(|p| unsafe { *p });
            assert_eq!(got, answer(request(seq)), "response of request {seq}");
        }
    }

    /// `server.rs`'s `scan` + `serve` + `write` for the one slot.
    fn scan(m: &Mailbox, seen: &mut u32) -> usize {
        let seq = m.s.request_seq();
        if seq == *seen {
            return 0;
        }
        assert_eq!(seq, *seen + 1, "requests come one at a time");
        assert_eq!(m.s.request_frame(), (4, req_crc(seq)));
        // SAFETY: published by req_seq (loom checks it).
        let req = m.req.with(|p| unsafe { *p });
        assert_eq!(req, request(seq), "request {seq}");
        // SAFETY: the response buffer is the server's until resp_seq is
        // published, and the client read the previous answer before it
        // published this request (loom checks it).
        m.resp.with_mut(|p| unsafe { *p = answer(req) });
        m.s.publish_response(seq, 4, resp_crc(seq));
        *seen = seq;
        1
    }

    /// `server.rs`'s `run` loop, without the spin phase or housekeeping;
    /// it stops once it has served every call.
    fn server(m: &Mailbox) {
        let mut seen = 0;
        while seen < CALLS {
            let bell = m.h.bell();
            if scan(m, &mut seen) > 0 {
                continue;
            }
            m.h.announce_sleep();
            if scan(m, &mut seen) == 0 {
                m.h.sleep_on_doorbell(bell, None);
            }
            m.h.end_sleep();
        }
    }

    /// Runs a model with at most 3 preemptions per execution, unless
    /// `LOOM_MAX_PREEMPTIONS` says otherwise.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(3);
        }
        b.check(f);
    }

    #[test]
    fn loom_mailbox_two_calls_no_lost_wakeup() {
        model(|| {
            let m = Arc::new(new());
            let srv = {
                let m = m.clone();
                loom::thread::spawn(move || server(&m))
            };
            client(&m);
            srv.join().unwrap();
        });
    }
}
