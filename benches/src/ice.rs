//! iceoryx2 0.10, the zero-copy peer a Rust user would pick (feature
//! `iceoryx2`, off by default): publish-subscribe of `[u8]` slices for the
//! bulk table and a polling round trip for the latency table.
//!
//! Every process builds its own node after the fork (nothing iceoryx2 is
//! inherited). The consumer creates the service; the producer opens it.
//! Backpressure, not loss: safe overflow is off and the publisher retries
//! until delivered (`BackpressureStrategy::RetryUntilDelivered`).
//!
//! All of it runs in an iceoryx2 domain of its own (a file prefix unique to
//! the run, [`init`]), so that [`cleanup`] can remove what iceoryx2 keeps
//! in `/dev/shm` by design (its global node counter) without touching any
//! other iceoryx2 user's files.

use std::sync::OnceLock;
use std::time::Duration;

use iceoryx2::config::Config;
use iceoryx2::prelude::{
    BackpressureStrategy, FileName, NodeBuilder, SemanticString, ServiceName, SignalHandlingMode,
};
use iceoryx2::service::ipc::Service;
use ipc_core::queue::Queue;

use crate::bulk::{slots, OneWay};
use crate::Peer;

/// The run's file prefix and configuration, set in the parent before any
/// fork (children inherit them).
static DOMAIN: OnceLock<(String, Config)> = OnceLock::new();

fn domain() -> &'static (String, Config) {
    DOMAIN.get_or_init(|| {
        let prefix = format!("iox2_ipcbench{}_", std::process::id());
        let mut cfg = Config::default();
        cfg.global.prefix = FileName::new(prefix.as_bytes()).expect("iceoryx2 prefix");
        (prefix, cfg)
    })
}

/// Sets up this run's iceoryx2 domain and makes iceoryx2 quiet (its
/// default logger prints every warning). Call before the first case.
pub fn init() {
    iceoryx2::prelude::set_log_level(iceoryx2::prelude::LogLevel::Error);
    domain();
}

/// Removes this run's iceoryx2 files from `/dev/shm` (call after every
/// iceoryx2 case was dropped).
pub fn cleanup() {
    let prefix = &domain().0;
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for e in dir.flatten() {
        if e.file_name().to_string_lossy().starts_with(prefix.as_str()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A node of this process in the run's domain; iceoryx2 leaves signals
/// alone.
fn node() -> iceoryx2::node::Node<Service> {
    NodeBuilder::new()
        .config(&domain().1)
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Service>()
        .expect("iceoryx2 node")
}

/// A service name unique to this process and case.
fn name(what: &str) -> ServiceName {
    // Unique per call: a benchmark may build the same case more than once.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // Relaxed: a counter that only has to differ between calls.
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ServiceName::new(&format!("ipc-bench/{}/{n}/{what}", std::process::id())).expect("service name")
}

/// Publish-subscribe of `size`-byte `[u8]` slices. Copy in
/// (`loan_slice_uninit` + `write_from_slice`); the subscriber either copies
/// the sample out into a fresh `Vec` (`zero_copy == false`) or reads its
/// first and last byte in place and drops it (`zero_copy == true`).
pub fn pubsub(size: usize, zero_copy: bool) -> OneWay {
    init();
    let svc = name(&format!(
        "pubsub-{size}-{}",
        if zero_copy { "zc" } else { "copy" }
    ));
    let msg = vec![0xabu8; size];
    OneWay::new(
        move || {
            let node = node();
            let service = node
                .service_builder(&svc)
                .publish_subscribe::<[u8]>()
                .enable_safe_overflow(false)
                .history_size(0)
                .subscriber_max_buffer_size(slots(size))
                .max_publishers(1)
                .max_subscribers(1)
                .create()
                .expect("iceoryx2 service");
            let sub = service
                .subscriber_builder()
                .buffer_size(slots(size))
                .create()
                .expect("iceoryx2 subscriber");
            move || {
                let _keep = (&node, &service);
                loop {
                    match sub.receive().expect("receive") {
                        Some(s) if zero_copy => {
                            let p = s.payload();
                            assert_eq!(p.len(), size);
                            std::hint::black_box((p[0], p[p.len() - 1]));
                            break;
                        }
                        Some(s) => {
                            let v = s.payload().to_vec();
                            assert_eq!(std::hint::black_box(&v).len(), size);
                            break;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
            }
        },
        move || {
            let node = node();
            let service = node
                .service_builder(&svc)
                .publish_subscribe::<[u8]>()
                .open()
                .expect("iceoryx2 open");
            let publisher = service
                .publisher_builder()
                .initial_max_slice_len(size)
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .expect("iceoryx2 publisher");
            Box::new(move || {
                let _keep = (&node, &service);
                // A send before the subscriber's connection is seen reaches
                // nobody: send again until it is delivered.
                loop {
                    let s = publisher.loan_slice_uninit(size).expect("loan");
                    if s.write_from_slice(&msg).send().expect("send") > 0 {
                        break;
                    }
                }
            })
        },
    )
}

/// A polling round trip of a `u64`: request on one service, reply on
/// another, both sides spinning on `receive`.
pub struct RoundTrip {
    op: Box<dyn FnMut(u64)>,
    stop: Box<dyn FnMut()>,
    peer: Option<Peer>,
}

const STOP: u64 = u64::MAX;

impl RoundTrip {
    /// Forks the echoing peer and connects both services.
    pub fn new() -> RoundTrip {
        init();
        let (ping, pong) = (name("ping"), name("pong"));
        let ready = Queue::<u64>::new(4).expect("ready queue");
        let go = Queue::<u64>::new(4).expect("go queue");
        let peer = Peer::spawn(|| {
            let node = node();
            let rq = node
                .service_builder(&ping)
                .publish_subscribe::<u64>()
                .create()
                .expect("ping service");
            let sub = rq.subscriber_builder().create().expect("ping subscriber");
            if ready.put(&1).is_err() || go.get().is_err() {
                return;
            }
            let rs = node
                .service_builder(&pong)
                .publish_subscribe::<u64>()
                .open()
                .expect("pong open");
            let publisher = rs.publisher_builder().create().expect("pong publisher");
            if ready.put(&2).is_err() {
                return;
            }
            loop {
                let Some(s) = sub.receive().expect("receive") else {
                    std::hint::spin_loop();
                    continue;
                };
                let v = *s.payload();
                drop(s);
                if v == STOP {
                    break;
                }
                while publisher.send_copy(v).expect("send") == 0 {}
            }
        });
        assert_eq!(ready.get().expect("peer ready"), 1);
        let node = node();
        let rq = node
            .service_builder(&ping)
            .publish_subscribe::<u64>()
            .open()
            .expect("ping open");
        let publisher = rq.publisher_builder().create().expect("ping publisher");
        let rs = node
            .service_builder(&pong)
            .publish_subscribe::<u64>()
            .create()
            .expect("pong service");
        let sub = rs.subscriber_builder().create().expect("pong subscriber");
        go.put(&1).expect("go");
        assert_eq!(ready.get().expect("peer connected"), 2);
        let publisher = std::rc::Rc::new(publisher);
        let p2 = publisher.clone();
        let mut seq = 0u64;
        RoundTrip {
            op: Box::new(move |n| {
                let _keep = (&node, &rq, &rs);
                for _ in 0..n {
                    seq += 1;
                    while publisher.send_copy(seq).expect("send") == 0 {}
                    loop {
                        match sub.receive().expect("receive") {
                            Some(s) if *s.payload() == seq => break,
                            Some(_) => {}
                            None => std::hint::spin_loop(),
                        }
                    }
                }
            }),
            stop: Box::new(move || {
                let _ = p2.send_copy(STOP);
            }),
            peer: Some(peer),
        }
    }

    /// `n` round trips.
    pub fn round_trips(&mut self, n: u64) {
        (self.op)(n)
    }
}

impl Default for RoundTrip {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RoundTrip {
    fn drop(&mut self) {
        (self.stop)();
        if let Some(p) = self.peer.take() {
            p.join_timeout(Duration::from_secs(5));
        }
    }
}
