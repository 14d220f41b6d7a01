//! The comparison runner: one run, one machine, every number next to its
//! baseline.
//!
//! `cargo run --release -p benches --bin compare` measures ipc's Pipe,
//! Queue, Lock, Value, Manager dict, Pool and executor round trips; the OS
//! pipe and socketpair baselines; the raw shared-memory spin ping-pong (the
//! hardware floor); the peers a Rust user would otherwise pick (`raw_sync`'s
//! mutex, `shared_memory`'s region); and, when `python3` is present,
//! Python's `multiprocessing` equivalents (`benches/compare.py`). It also
//! measures bulk one-way throughput (64 B to 16 MiB: OS pipe, ipc Queue,
//! ipc Pipe, the loan API, memcpy) and, with
//! `--features iceoryx2`, iceoryx2 0.10's publish-subscribe (copy-out and
//! zero-copy read) and polling round trip:
//! `cargo run --release -p benches --features iceoryx2 --bin compare`.
//! It writes `target/compare/report.md` (medians, p99, ratios and the bulk
//! table in GB/s) and `target/compare/chart.svg`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use benches::bulk::{self, Bulk};
use benches::Peer;
use ipc_core::pipe::Pipe;
use ipc_core::pool::{Pool, ProcessPoolExecutor};
use ipc_core::queue::Queue;
use ipc_core::region::{Kind, Region};
use ipc_core::sync::Lock;
use ipc_core::value::Value;
use ipc_manager::Manager;

/// One measured row.
struct Row {
    group: &'static str,
    name: String,
    median: f64,
    p99: f64,
    /// For a spinning round trip: the median over rounds of its median ÷
    /// the floor's in the same round (see [`spinning`]).
    per_round_floor: Option<f64>,
}

const SAMPLES: usize = 100;
const STOP: u64 = u64::MAX;

/// Times `op(batch)` SAMPLES times, with the batch sized to ~1 ms.
fn measure(group: &'static str, name: &str, op: impl FnMut(u64)) -> Row {
    let (median, p99) = sample(SAMPLES, 1, op);
    let row = Row {
        group,
        name: name.to_owned(),
        median,
        p99,
        per_round_floor: None,
    };
    eprintln!(
        "{:<40} {:>12}  p99 {:>12}",
        row.name,
        fmt(row.median),
        fmt(row.p99)
    );
    row
}

/// Median and p99 of `samples` timings of `op(batch)`, in ns per
/// operation, with the batch grown from `min_batch` until it takes at
/// least 0.5 ms.
fn sample(samples: usize, min_batch: u64, op: impl FnMut(u64)) -> (f64, f64) {
    let mut per = timings(samples, min_batch, op);
    per.sort_by(f64::total_cmp);
    (
        per[per.len() / 2],
        per[(per.len() * 99 / 100).min(per.len() - 1)],
    )
}

/// The median of `v` (not empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The index of the `k`-th case measured in `round`, of `n`: every round
/// starts one case further on, so no case is always measured first or
/// right after the same neighbour.
fn rotated(k: usize, round: usize, n: usize) -> usize {
    (k + round) % n
}

/// `samples` timings of `op(batch)`, in ns per operation (see [`sample`]).
fn timings(samples: usize, min_batch: u64, mut op: impl FnMut(u64)) -> Vec<f64> {
    let mut batch = min_batch.max(1);
    // Warm-up, not timed: the first call pays the peer's start (a batch
    // sized on it stayed at one operation, timing the clock as much as
    // the operation: a Queue round trip read 2.5 µs instead of 0.7).
    op(batch);
    loop {
        let t = Instant::now();
        op(batch);
        if t.elapsed() >= Duration::from_micros(500) || batch >= 1 << 20 {
            break;
        }
        batch *= 2;
    }
    (0..samples)
        .map(|_| {
            let t = Instant::now();
            op(batch);
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect()
}

/// One cell of the bulk table: a case at a size, median ns per message.
struct BulkRow {
    size: usize,
    case: &'static str,
    median: f64,
}

impl BulkRow {
    /// Bytes per nanosecond = GB/s.
    fn gbps(&self) -> f64 {
        self.size as f64 / self.median
    }
}

/// The bulk table's columns, in order.
const BULK: [&str; 7] = [
    "OS pipe",
    "ipc Queue",
    "ipc Pipe",
    "ipc loan",
    "iceoryx2 copy",
    "iceoryx2 zero-copy",
    "memcpy",
];

/// Rounds of the bulk table: each builds every case of a size afresh, in
/// a rotated order, and takes [`BULK_SAMPLES`] of it; a cell is the median
/// of all its rounds' samples. Spread over the run this way, a slow spell
/// of the VM (its round trips and copies swing by 2-4× as the host moves
/// the vCPUs) or a case's unlucky placement in memory weighs on every case
/// alike instead of on the one measured during it (one run, a case after
/// another: the Queue's 64 KiB read 21 GB/s and iceoryx2's 38; a run
/// later, 48 and 46).
const BULK_ROUNDS: usize = 3;

/// Samples per bulk cell and round (each at least 0.5 ms).
const BULK_SAMPLES: usize = 10;

/// A bulk case: its column and how to build it for a size.
type BulkCase = (&'static str, fn(usize) -> Box<dyn Bulk>);

/// Timings (ns per message) of one freshly built case.
fn bulk_timings(size: usize, case: &'static str, mut b: Box<dyn Bulk>) -> Vec<f64> {
    // Warm-up: cycle through every slot twice, so that no sample pays the
    // first touch of a buffer page.
    b.run(2 * bulk::slots(size) as u64);
    // At least twice the buffering in a batch: a throughput, not the
    // latency of one message through an empty pipeline (a batch of one
    // 16 MiB message would time its copy in and its copy out end to end).
    let t = timings(BULK_SAMPLES, 2 * bulk::slots(size) as u64, |n| b.run(n));
    eprintln!(
        "bulk {:<8} {:<20} {:>8.2} GB/s",
        bulk::label(size),
        case,
        size as f64 / median(t.clone())
    );
    t
}

/// Every bulk case at every size, all in this run (see [`BULK_ROUNDS`]).
fn bulks() -> Vec<BulkRow> {
    let mut cases: Vec<BulkCase> = vec![
        ("OS pipe", |s| Box::new(bulk::os_pipe(s))),
        ("ipc Queue", |s| Box::new(bulk::ipc_queue(s))),
        ("ipc Pipe", |s| Box::new(bulk::ipc_pipe(s))),
        ("ipc loan", |s| Box::new(bulk::ipc_loan(s))),
    ];
    #[cfg(feature = "iceoryx2")]
    {
        cases.push(("iceoryx2 copy", |s| {
            Box::new(benches::ice::pubsub(s, false))
        }));
        cases.push(("iceoryx2 zero-copy", |s| {
            Box::new(benches::ice::pubsub(s, true))
        }));
    }
    cases.push(("memcpy", |s| Box::new(bulk::Memcpy::new(s))));
    let mut rows = Vec::new();
    for size in bulk::SIZES {
        let mut all: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        for round in 0..BULK_ROUNDS {
            for k in 0..cases.len() {
                let i = rotated(k, round, cases.len());
                let (case, build) = cases[i];
                all[i].extend(bulk_timings(size, case, build(size)));
            }
        }
        for ((case, _), t) in cases.iter().zip(all) {
            rows.push(BulkRow {
                size,
                case,
                median: median(t),
            });
        }
    }
    rows
}

/// The spinning round trips (floor, Queue, Pipe, iceoryx2), interleaved:
/// [`PAIRS`] rounds, each measuring one fresh pair (its own shared memory
/// and peer process) of every case, in an order rotated by the round.
/// A case's row is its pair with the median median. On this VM one pair's
/// round trip can be twice another's for the same code (the same binary
/// gave a Queue 370 ns and 800 ns in one process), and the floor itself
/// swings 2-4× over minutes as the host moves the vCPUs, so each case is
/// also compared with the floor of its own round (`per_round_floor`):
/// measured minutes apart, a case and the floor can be in different modes.
fn spinning() -> Vec<Row> {
    #[cfg_attr(not(feature = "iceoryx2"), allow(unused_mut))]
    let mut cases: Vec<fn() -> Row> = vec![raw_spin, ipc_queue, ipc_pipe];
    #[cfg(feature = "iceoryx2")]
    cases.push(iceoryx2_rtt);
    let mut rounds: Vec<Vec<Row>> = (0..cases.len()).map(|_| Vec::new()).collect();
    for round in 0..PAIRS {
        for k in 0..cases.len() {
            let i = rotated(k, round, cases.len());
            rounds[i].push(cases[i]());
        }
    }
    let floors: Vec<f64> = rounds[0].iter().map(|r| r.median).collect();
    rounds
        .into_iter()
        .map(|mut rs| {
            let ratio = median(rs.iter().zip(&floors).map(|(r, f)| r.median / f).collect());
            rs.sort_by(|a, b| a.median.total_cmp(&b.median));
            let mut row = rs.swap_remove(PAIRS / 2);
            row.per_round_floor = Some(ratio);
            row
        })
        .collect()
}

/// Rounds of the spinning round trips (see [`spinning`]).
const PAIRS: usize = 5;

/// iceoryx2's polling round trip (request on one service, reply on another).
#[cfg(feature = "iceoryx2")]
fn iceoryx2_rtt() -> Row {
    let mut rt = benches::ice::RoundTrip::new();
    measure("round trip", "iceoryx2 pub/sub, polling (peer)", |n| {
        rt.round_trips(n)
    })
}

fn fmt(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn raw_spin() -> Row {
    let mut pair = benches::SpinPair::new();
    measure("round trip", "raw shared-memory spin (floor)", |n| {
        pair.round_trips(n)
    })
}

fn ipc_pipe() -> Row {
    let (a, b) = Pipe::new(true).unwrap();
    let _peer = Peer::spawn(|| {
        while let Ok(v) = b.recv::<u64>() {
            if v == STOP || b.send(&v).is_err() {
                break;
            }
        }
    });
    let r = measure("round trip", "ipc Pipe", |n| {
        for i in 0..n {
            a.send(&i).unwrap();
            let _: u64 = a.recv().unwrap();
        }
    });
    let _ = a.send(&STOP);
    r
}

fn ipc_queue() -> Row {
    let (ping, pong) = (
        Queue::<u64>::new(64).unwrap(),
        Queue::<u64>::new(64).unwrap(),
    );
    let _peer = Peer::spawn(|| {
        while let Ok(v) = ping.get() {
            if v == STOP || pong.put(&v).is_err() {
                break;
            }
        }
    });
    let r = measure("round trip", "ipc Queue", |n| {
        for i in 0..n {
            ping.put(&i).unwrap();
            pong.get().unwrap();
        }
    });
    let _ = ping.put(&STOP);
    r
}

fn os_pipe() -> Row {
    let pipe = || {
        let (r, w) = nix::unistd::pipe().unwrap();
        (std::fs::File::from(r), std::fs::File::from(w))
    };
    let ((mut cr, mut tx), (mut rx, mut cw)) = (pipe(), pipe());
    let _peer = Peer::spawn(move || {
        let mut b = [0u8; 8];
        while cr.read_exact(&mut b).is_ok() && cw.write_all(&b).is_ok() {}
    });
    let mut b = [0u8; 8];
    measure("round trip", "OS pipe (baseline)", |n| {
        for i in 0..n {
            tx.write_all(&i.to_le_bytes()).unwrap();
            rx.read_exact(&mut b).unwrap();
        }
    })
}

fn socketpair() -> Row {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let _peer = Peer::spawn(move || {
        let mut buf = [0u8; 8];
        while b.read_exact(&mut buf).is_ok() && b.write_all(&buf).is_ok() {}
    });
    let mut buf = [0u8; 8];
    measure("round trip", "Unix socketpair", |n| {
        for i in 0..n {
            a.write_all(&i.to_le_bytes()).unwrap();
            a.read_exact(&mut buf).unwrap();
        }
    })
}

fn locks() -> Vec<Row> {
    let lock = Lock::new().unwrap();
    let ours = measure("lock acquire + release", "ipc Lock", |n| {
        for _ in 0..n {
            drop(std::hint::black_box(&lock).acquire().unwrap());
        }
    });
    // raw_sync's process-shared pthread mutex, in a shared_memory region.
    let shmem = shared_memory::ShmemConf::new().size(4096).create().unwrap();
    // SAFETY: the region is 4096 bytes, page-aligned and mapped while
    // `shmem` lives; the mutex is created there once and used here only.
    let (mutex, _) = unsafe {
        <raw_sync::locks::Mutex as raw_sync::locks::LockInit>::new(
            shmem.as_ptr(),
            shmem.as_ptr().add(64),
        )
        .unwrap()
    };
    let peer = measure("lock acquire + release", "raw_sync Mutex (peer)", |n| {
        for _ in 0..n {
            drop(mutex.lock().unwrap());
        }
    });
    vec![ours, peer]
}

fn values() -> Row {
    let v = Value::new(0u64).unwrap();
    measure("value get", "ipc Value", |n| {
        for _ in 0..n {
            std::hint::black_box(v.get().unwrap());
        }
    })
}

fn manager() -> Vec<Row> {
    let mgr = Manager::start().unwrap();
    let d = mgr.dict::<u64, u64>().unwrap();
    d.insert(&1, &1).unwrap();
    let lock = mgr.lock().unwrap();
    let v = mgr.value(0u64).unwrap();
    vec![
        measure("manager", "ipc Manager dict get", |n| {
            for _ in 0..n {
                d.get(&1).unwrap();
            }
        }),
        measure("manager", "ipc Manager Lock acquire + release", |n| {
            for _ in 0..n {
                drop(lock.acquire().unwrap());
            }
        }),
        measure("manager", "ipc Manager Value get", |n| {
            for _ in 0..n {
                v.get().unwrap();
            }
        }),
    ]
}

fn square(x: u64) -> u64 {
    x * x
}

fn pools() -> Vec<Row> {
    let pool = Pool::new(2).unwrap();
    let items: Vec<u64> = (0..10_000).collect();
    let mut map = measure("pool", "ipc Pool.map per item", |n| {
        for _ in 0..n {
            pool.map(square, items.clone(), None).unwrap();
        }
    });
    map.median /= items.len() as f64;
    map.p99 /= items.len() as f64;
    let ex = ProcessPoolExecutor::new(2).unwrap();
    let submit = measure("pool", "ipc executor submit + result", |n| {
        for _ in 0..n {
            ex.submit(square, 1).unwrap().result(None).unwrap();
        }
    });
    vec![map, submit]
}

fn regions() -> Vec<Row> {
    let mut k = 0u64;
    let ours = measure("region create + open + drop", "ipc Region", |n| {
        for _ in 0..n {
            k += 1;
            let name = format!("cmp-{}-{k}", std::process::id());
            let a = Region::builder(Kind::Raw)
                .name(&name)
                .size(4096)
                .create()
                .unwrap();
            let b = Region::open(&name, Kind::Raw).unwrap();
            drop((b, a));
        }
    });
    let peer = measure(
        "region create + open + drop",
        "shared_memory Shmem (peer)",
        |n| {
            for _ in 0..n {
                k += 1;
                let id = format!("cmp-sm-{}-{k}", std::process::id());
                let a = shared_memory::ShmemConf::new()
                    .size(4096)
                    .os_id(&id)
                    .create()
                    .unwrap();
                let b = shared_memory::ShmemConf::new().os_id(&id).open().unwrap();
                drop((b, a));
            }
        },
    );
    vec![ours, peer]
}

/// Python's numbers, if python3 is there.
fn python() -> Vec<Row> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compare.py");
    let Ok(out) = std::process::Command::new("python3").arg(&script).output() else {
        eprintln!("python3 not found: no Python column");
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = Vec::new();
    for line in text.lines() {
        let field = |k: &str| -> Option<String> {
            let i = line.find(&format!("\"{k}\": "))? + k.len() + 4;
            let rest = &line[i..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            Some(rest[..end].trim_matches('"').to_owned())
        };
        let (Some(name), Some(m), Some(p)) = (field("name"), field("median_ns"), field("p99_ns"))
        else {
            continue;
        };
        let group = match name.as_str() {
            "python/pipe_rtt" | "python/queue_rtt" => "round trip",
            "python/lock_acquire_release" => "lock acquire + release",
            "python/value_get" => "value get",
            "python/shared_memory_create_drop" => "region create + open + drop",
            n if n.contains("manager") => "manager",
            _ => "pool",
        };
        rows.push(Row {
            group,
            name: format!("Python {}", &name["python/".len()..]),
            median: m.parse().unwrap_or(f64::NAN),
            p99: p.parse().unwrap_or(f64::NAN),
            per_round_floor: None,
        });
        eprintln!(
            "{:<40} {:>12}",
            rows.last().unwrap().name,
            fmt(rows.last().unwrap().median)
        );
    }
    rows
}

fn main() {
    ipc_core::init();
    #[cfg(feature = "iceoryx2")]
    benches::ice::init();
    let mut rows = spinning();
    rows.extend([os_pipe(), socketpair()]);
    rows.extend(locks());
    rows.push(values());
    rows.extend(manager());
    rows.extend(pools());
    rows.extend(regions());
    let bulk = bulks();
    #[cfg(feature = "iceoryx2")]
    benches::ice::cleanup();
    rows.extend(python());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/compare");
    std::fs::create_dir_all(&dir).unwrap();
    let md = report(&rows, &bulk);
    std::fs::write(dir.join("report.md"), &md).unwrap();
    chart(&rows, &bulk, &dir.join("chart.svg"));
    println!("{md}");
    println!("written: target/compare/report.md, target/compare/chart.svg");
}

/// What a row is compared with: the OS baseline or peer crate, and its
/// Python twin.
fn versus(name: &str) -> (Option<&'static str>, Option<&'static str>) {
    match name {
        "raw shared-memory spin (floor)" | "Unix socketpair" => (Some("OS pipe (baseline)"), None),
        "ipc Pipe" => (Some("OS pipe (baseline)"), Some("Python pipe_rtt")),
        "iceoryx2 pub/sub, polling (peer)" => (Some("OS pipe (baseline)"), None),
        "ipc Queue" => (Some("OS pipe (baseline)"), Some("Python queue_rtt")),
        "ipc Lock" => (
            Some("raw_sync Mutex (peer)"),
            Some("Python lock_acquire_release"),
        ),
        "ipc Value" => (None, Some("Python value_get")),
        "ipc Manager dict get" => (Some("OS pipe (baseline)"), Some("Python manager_dict_get")),
        "ipc Manager Lock acquire + release" => (None, Some("Python manager_lock_acquire_release")),
        "ipc Manager Value get" => (None, Some("Python manager_value_get")),
        "ipc Pool.map per item" => (None, Some("Python pool_map_per_item")),
        "ipc executor submit + result" => (None, Some("Python executor_submit_result")),
        "ipc Region" => (
            Some("shared_memory Shmem (peer)"),
            Some("Python shared_memory_create_drop"),
        ),
        _ => (None, None),
    }
}

fn ratio(rows: &[Row], r: &Row, other: Option<&str>) -> String {
    let Some(b) = other.and_then(|o| rows.iter().find(|x| x.name == o)) else {
        return String::new();
    };
    let x = b.median / r.median;
    if x >= 1.0 {
        format!("{x:.1}× faster than {}", b.name)
    } else {
        format!("{:.1}× slower than {}", 1.0 / x, b.name)
    }
}

/// The command that produced this report.
fn command() -> String {
    let mut features = Vec::new();
    if cfg!(feature = "iceoryx2") {
        features.push("iceoryx2");
    }
    let features = if features.is_empty() {
        String::new()
    } else {
        format!(" --features {}", features.join(","))
    };
    format!("cargo run --release -p benches{features} --bin compare")
}

fn bulk_cell(bulk: &[BulkRow], size: usize, case: &str) -> Option<f64> {
    bulk.iter()
        .find(|b| b.size == size && b.case == case)
        .map(BulkRow::gbps)
}

/// The bulk table (GB/s), ratios of ipc to iceoryx2, and the round trips
/// against iceoryx2 and the floor.
fn bulk_report(rows: &[Row], bulk: &[BulkRow]) -> String {
    let mut s = format!(
        "\n## Bulk one-way throughput (GB/s, higher is better)\n\n\
         One producer and one forked consumer (pinned to CPUs 0 and 1), one way, \
         median of {BULK_ROUNDS} rounds × {BULK_SAMPLES} batches (each round builds every case afresh, in a rotated order) of at least 0.5 ms and at least twice \
         the messages buffered (so that the pipeline runs full), each ending with the \
         consumer's acknowledgement. Copy modes hand the consumer a fresh `Vec` \
         (the OS pipe reads into a reused buffer); zero-copy modes read the first \
         and last byte in place. memcpy is `copy_from_slice` in one process (the \
         ceiling). iceoryx2: `[u8]` slices, no safe overflow, \
         `RetryUntilDelivered`; \"–\" is a case not built into this run.\n\n"
    );
    s += &format!("| message | {} |\n|---|", BULK.join(" | "));
    s += &"---:|".repeat(BULK.len());
    s += "\n";
    for size in bulk::SIZES {
        s += &format!("| {} |", bulk::label(size));
        for case in BULK {
            match bulk_cell(bulk, size, case) {
                Some(g) => s += &format!(" {g:.2} |"),
                None => s += " – |",
            }
        }
        s += "\n";
    }
    let pairs = [
        ("ipc Queue", "iceoryx2 copy"),
        ("ipc Pipe", "iceoryx2 copy"),
        ("ipc loan", "iceoryx2 zero-copy"),
        ("ipc Queue", "OS pipe"),
        ("ipc Pipe", "OS pipe"),
    ];
    s += "\nRatios in this run (ipc ÷ peer, ≥ 1.00 means ipc is at least as fast):\n\n";
    s += &format!(
        "| message | {} |\n|---|",
        pairs.map(|(a, b)| format!("{a} ÷ {b}")).join(" | ")
    );
    s += &"---:|".repeat(pairs.len());
    s += "\n";
    for size in bulk::SIZES {
        s += &format!("| {} |", bulk::label(size));
        for (a, b) in pairs {
            match (bulk_cell(bulk, size, a), bulk_cell(bulk, size, b)) {
                (Some(x), Some(y)) => s += &format!(" {:.2} |", x / y),
                _ => s += " – |",
            }
        }
        s += "\n";
    }
    let find = |n: &str| rows.iter().find(|r| r.name == n).map(|r| r.median);
    let ice = find("iceoryx2 pub/sub, polling (peer)");
    let floor = find("raw shared-memory spin (floor)");
    s += "\n## Round trips against iceoryx2 and the floor\n\n\
          | what | median | ÷ iceoryx2 polling | ÷ raw spin floor | ÷ floor of the same round (median) |\n|---|---:|---:|---:|---:|\n";
    for n in [
        "ipc Queue",
        "ipc Pipe",
        "iceoryx2 pub/sub, polling (peer)",
        "raw shared-memory spin (floor)",
    ] {
        let Some(r) = rows.iter().find(|r| r.name == n) else {
            continue;
        };
        let m = r.median;
        let x = |o: Option<f64>| o.map_or("–".to_owned(), |o| format!("{:.2}×", m / o));
        let same = r
            .per_round_floor
            .map_or("–".to_owned(), |x| format!("{x:.2}×"));
        s += &format!(
            "| {n} | {} | {} | {} | {same} |\n",
            fmt(m),
            x(ice),
            x(floor)
        );
    }
    s
}

fn report(rows: &[Row], bulk: &[BulkRow]) -> String {
    let mut s = String::new();
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d %H:%M %Z")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    s += &format!(
        "Measured {date} on {} CPUs ({cpu}) with `{}`; {SAMPLES} samples each, \
         batches of ~1 ms; each spinning round trip is the median of {PAIRS} fresh pairs, one per round, the rounds interleaving every spinning case. \
         One run: the numbers are noisy, compare ratios within it.\n\n",
        ipc_core::process::cpu_count(),
        command()
    );
    s += "| group | what | median | p99 | vs baseline or peer | vs Python |\n|---|---|---:|---:|---|---|\n";
    for r in rows {
        let (base, py) = versus(&r.name);
        s += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.group,
            r.name,
            fmt(r.median),
            fmt(r.p99),
            ratio(rows, r, base),
            ratio(rows, r, py)
        );
    }
    s += &bulk_report(rows, bulk);
    s
}

/// Horizontal bars of the medians, log scale; below them, bulk throughput
/// per message size, one line per case.
fn chart(rows: &[Row], bulk: &[BulkRow], path: &Path) {
    use plotters::prelude::*;
    let h = 40 + 22 * rows.len() as u32;
    const BULK_H: u32 = 420;
    let all = SVGBackend::new(path, (900, h + BULK_H)).into_drawing_area();
    all.fill(&WHITE).unwrap();
    let (root, lower) = all.split_vertically(h);
    bulk_chart(bulk, &lower);
    let max = rows.iter().map(|r| r.median).fold(1.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "median time per operation (log scale, lower is better)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(300)
        .build_cartesian_2d((1f64..max).log_scale(), 0..rows.len())
        .unwrap();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&|i| rows.get(*i).map(|r| r.name.clone()).unwrap_or_default())
        .x_label_formatter(&|v| fmt(*v))
        .draw()
        .unwrap();
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let color = if r.name.starts_with("ipc") {
                BLUE.mix(0.8)
            } else if r.name.starts_with("Python") {
                RED.mix(0.6)
            } else {
                BLACK.mix(0.4)
            };
            Rectangle::new([(1.0, i), (r.median.max(1.0), i + 1)], color.filled())
        }))
        .unwrap();
    all.present().unwrap();
}

/// GB/s against message size (both log), one line per bulk case.
fn bulk_chart<DB: plotters::prelude::DrawingBackend>(
    bulk: &[BulkRow],
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
) {
    use plotters::prelude::*;
    let top = bulk.iter().map(BulkRow::gbps).fold(1.0, f64::max) * 2.0;
    let low = bulk.iter().map(BulkRow::gbps).fold(top, f64::min) / 2.0;
    let sizes = bulk::SIZES;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "bulk one-way throughput, GB/s (log scale, higher is better)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0usize..sizes.len() - 1, (low.max(1e-3)..top).log_scale())
        .unwrap();
    chart
        .configure_mesh()
        .x_labels(sizes.len())
        .x_label_formatter(&|i| sizes.get(*i).map(|s| bulk::label(*s)).unwrap_or_default())
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .unwrap();
    for (k, case) in BULK.iter().enumerate() {
        let pts: Vec<(usize, f64)> = sizes
            .iter()
            .enumerate()
            .filter_map(|(i, s)| bulk_cell(bulk, *s, case).map(|g| (i, g)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .unwrap()
            .label(*case)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .unwrap();
}
