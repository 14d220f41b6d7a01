//! The README's "Pools" snippet, kept compiling.

use ipc_core::pool::{as_completed, Pool, ProcessPoolExecutor};

fn square(x: u64) -> u64 {
    x * x
}

fn main() -> ipc_core::Result<()> {
    ipc_core::init();
    let pool = Pool::new(ipc_core::process::cpu_count())?;
    assert_eq!(
        pool.map(square, 0..10, None)?,
        (0..10).map(|x| x * x).collect::<Vec<_>>()
    );
    for r in pool.imap_unordered(square, 0..4, 1) {
        println!("{}", r?);
    }
    let ex = ProcessPoolExecutor::new(2)?;
    let fs = [ex.submit(square, 3)?, ex.submit(square, 4)?];
    for i in as_completed(&[&fs[0], &fs[1]], None) {
        println!("future {} done: {}", i?, fs[0].done() || fs[1].done());
    }
    Ok(())
}
