//! Seed 2.2 (ProcessPoolExecutor): five tasks sleeping 1 to 4 units (a
//! unit is 200 ms here, a second in the seed), `wait(FIRST_COMPLETED)`,
//! then `as_completed`; then `map` and `cancel`.

use std::time::Duration;

use ipc_core::pool::{as_completed, wait, ProcessPoolExecutor, ReturnWhen};

fn func(t: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(t * 200));
    println!("This time is {t}");
    t
}

fn main() -> ipc_core::Result<()> {
    ipc_core::init();
    let cor = ProcessPoolExecutor::new(3)?;
    let times = [2u64, 1, 4, 4, 3];
    let tasks: Vec<_> = times
        .iter()
        .map(|&t| cor.submit(func, t))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&dyn ipc_core::pool::AnyFuture> = tasks.iter().map(|t| t as _).collect();
    wait(&refs, None, ReturnWhen::FirstCompleted);
    println!("__Main__");
    for i in as_completed(&refs, None) {
        println!("{}", tasks[i?].result(None)?);
    }
    let mapped: Vec<u64> = cor.map(func, [1u64, 2, 1], 1)?.collect::<Result<_, _>>()?;
    println!("map: {mapped:?}");
    // Only a task not yet handed to a worker can be cancelled.
    let busy: Vec<_> = (0..5)
        .map(|_| cor.submit(func, 3))
        .collect::<Result<_, _>>()?;
    let last = cor.submit(func, 1)?;
    println!("cancel running: {}", busy[0].cancel());
    println!("cancel queued: {}", last.cancel());
    cor.shutdown(true, false);
    Ok(())
}
