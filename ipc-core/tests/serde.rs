//! A type that derives only `serde` (String, Vec, enum and HashMap fields)
//! travels as `Serde<T>` through a `Queue`, a `Pipe`, a `Process` argument
//! and result (fork, spawn and fork server), a pool task and its result,
//! and inside it a `Queue` handle. This binary has its own `main` so it can
//! call `ipc_core::init()` (spawn re-executes it).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use ipc_core::codec::Serde;
use ipc_core::pipe::Pipe;
use ipc_core::pool::{Pool, ProcessPoolExecutor};
use ipc_core::process::{Process, StartMethod};
use ipc_core::queue::Queue;
use libtest_mimic::{Arguments, Failed, Trial};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Cell {
    Empty,
    Int(i64),
    Text(String),
    Pair { x: f32, y: f32 },
}

/// Derives serde only: no rkyv anywhere.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Record {
    name: String,
    cells: Vec<Cell>,
    index: HashMap<String, Vec<u32>>,
    score: Option<f64>,
}

fn record(n: usize) -> Record {
    Record {
        name: format!("record-{n}"),
        cells: (0..n)
            .map(|i| match i % 4 {
                0 => Cell::Empty,
                1 => Cell::Int(-(i as i64)),
                2 => Cell::Text("é".repeat(i)),
                _ => Cell::Pair {
                    x: i as f32,
                    y: 0.5,
                },
            })
            .collect(),
        index: (0..n as u32)
            .map(|i| (format!("k{i}"), vec![i; i as usize % 5]))
            .collect(),
        score: (n % 2 == 0).then_some(n as f64 / 3.0),
    }
}

/// A serde struct holding a handle: the queue goes through serde too.
#[derive(Serialize, Deserialize)]
struct Work {
    out: Queue<Serde<Record>>,
    sizes: Vec<usize>,
}

fn check(ok: bool, what: &str) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

fn grow(Serde(mut r): Serde<Record>) -> Serde<Record> {
    r.cells
        .push(Cell::Text(format!("seen by {}", std::process::id())));
    r.score = Some(42.0);
    Serde(r)
}

fn fill(Serde(w): Serde<Work>) -> usize {
    for &n in &w.sizes {
        w.out.put(&Serde(record(n))).expect("put");
    }
    w.sizes.len()
}

fn serde_record_through_queue_from_forked_child() -> Result<(), Failed> {
    let q = Queue::<Serde<Record>>::new(8)?;
    let child = common::fork_child({
        let q = q.clone();
        move || {
            for n in [0, 1, 7, 300] {
                q.put(&Serde(record(n))).expect("put");
            }
            0
        }
    });
    for n in [0, 1, 7, 300] {
        let Serde(r) = q.get_timeout(Duration::from_secs(30))?;
        check(r == record(n), "queue record")?;
    }
    common::join_ok(child);
    Ok(())
}

fn serde_record_through_pipe_both_ways() -> Result<(), Failed> {
    let (a, b) = Pipe::new(true)?;
    let child = common::fork_with(&b, |b| {
        let Serde(r): Serde<Record> = b.recv().expect("recv");
        b.send(&grow(Serde(r))).expect("send");
        0
    });
    drop(b);
    a.send(&Serde(record(40)))?;
    let Serde(back): Serde<Record> = a.recv_timeout(Duration::from_secs(30))?;
    let mut want = record(40);
    want.cells
        .push(back.cells.last().cloned().unwrap_or(Cell::Empty));
    want.score = Some(42.0);
    check(back == want, "pipe record")?;
    check(
        matches!(back.cells.last(), Some(Cell::Text(t)) if t.starts_with("seen by")),
        "child's mark",
    )?;
    common::join_ok(child);
    Ok(())
}

fn serde_argument_and_result_of_a_process(method: StartMethod) -> Result<(), Failed> {
    let mut p = Process::builder()
        .start_method(method)
        .target_fn(grow, Serde(record(25)));
    p.start()?;
    let Serde(r) = p.join_timeout(Duration::from_secs(60))?;
    check(
        r.name == "record-25" && r.score == Some(42.0),
        "process result",
    )?;
    check(r.cells.len() == 26, "process added a cell")?;
    Ok(())
}

fn serde_struct_holding_a_queue_handle(method: StartMethod) -> Result<(), Failed> {
    let out = Queue::<Serde<Record>>::new(8)?;
    let sizes = vec![3, 0, 90];
    let work = Work {
        out: out.clone(),
        sizes: sizes.clone(),
    };
    let mut p = Process::builder()
        .start_method(method)
        .target_fn(fill, Serde(work));
    p.start()?;
    check(p.join_timeout(Duration::from_secs(60))? == 3, "filled")?;
    for n in sizes {
        let Serde(r) = out.get_timeout(Duration::from_secs(30))?;
        check(r == record(n), "record via handle")?;
    }
    Ok(())
}

fn serde_pool_task_and_result() -> Result<(), Failed> {
    let pool = Pool::new(2)?;
    let Serde(one) = pool.apply(grow, Serde(record(9)))?;
    check(one.score == Some(42.0) && one.cells.len() == 10, "apply")?;
    let rs = pool.map(grow, (0..20).map(|n| Serde(record(n))), Some(3))?;
    check(rs.len() == 20, "map len")?;
    for (n, Serde(r)) in rs.into_iter().enumerate() {
        check(
            r.name == format!("record-{n}") && r.cells.len() == n + 1,
            "map",
        )?;
    }
    pool.close();
    pool.join()?;
    let ex = ProcessPoolExecutor::new(2)?;
    let f = ex.submit(grow, Serde(record(4)))?;
    check(
        f.result(Some(Duration::from_secs(60)))?.cells.len() == 5,
        "executor",
    )?;
    ex.shutdown(true, false);
    Ok(())
}

fn main() {
    ipc_core::init();
    let args = Arguments::from_args();
    let mut tests = vec![
        Trial::test(
            "serde_record_through_queue_from_forked_child",
            serde_record_through_queue_from_forked_child,
        ),
        Trial::test(
            "serde_record_through_pipe_both_ways",
            serde_record_through_pipe_both_ways,
        ),
        Trial::test("serde_pool_task_and_result", serde_pool_task_and_result),
    ];
    for (tag, m) in [
        ("fork", StartMethod::Fork),
        ("spawn", StartMethod::Spawn),
        ("forkserver", StartMethod::ForkServer),
    ] {
        tests.push(Trial::test(
            format!("{tag}::serde_argument_and_result_of_a_process"),
            move || serde_argument_and_result_of_a_process(m),
        ));
        tests.push(Trial::test(
            format!("{tag}::serde_struct_holding_a_queue_handle"),
            move || serde_struct_holding_a_queue_handle(m),
        ));
    }
    libtest_mimic::run(&args, tests).exit();
}
