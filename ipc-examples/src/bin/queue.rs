//! Seed 3.1 (Queue): one producer puts 0..=20 into a `Queue(cpu_count())`,
//! two consumers print what they get until the queue looks empty.

use std::time::Duration;

use ipc_core::process::{cpu_count, Process};
use ipc_core::queue::Queue;

fn demo1(q: Queue<u32>) {
    for i in 0..=20 {
        q.put(&i).expect("put");
    }
}

fn demo2(q: Queue<u32>) {
    while let Ok(v) = q.get_timeout(Duration::from_secs(5)) {
        println!("{v}");
        std::thread::sleep(Duration::from_millis(20));
        if q.is_empty() {
            break;
        }
    }
    println!("over");
}

fn main() -> ipc_core::Result<()> {
    ipc_core::init();
    let q = Queue::<u32>::new(cpu_count())?;
    let mut p1 = Process::builder().target_fn(demo1, q.clone());
    let mut p2 = Process::builder().target_fn(demo2, q.clone());
    let mut p3 = Process::builder().target_fn(demo2, q.clone());
    p1.start()?;
    p2.start()?;
    p3.start()?;
    p1.join()?;
    p2.join()?;
    p3.join()?;
    Ok(())
}
