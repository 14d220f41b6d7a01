//! Seed 2.1 (Pool): `map_async` over 10 items with `cpu_count()` workers,
//! `wait`, `get`; then the same with `imap` and `imap_unordered`.

use std::time::Duration;

use ipc_core::pool::Pool;
use ipc_core::process::cpu_count;

fn demo(a: u32) -> u32 {
    println!("[INFO] get www.example.com");
    std::thread::sleep(Duration::from_millis(100));
    println!("[INFO] complete www.example.com");
    a
}

fn main() -> ipc_core::Result<()> {
    ipc_core::init();
    let pool = Pool::new(cpu_count())?;
    let params: Vec<u32> = (0..10).collect();
    let tasks = pool.map_async(demo, params.clone(), None)?;
    println!("{}", tasks.wait(None));
    println!("{:?}", tasks.get(None)?);
    let ordered: Vec<u32> = pool
        .imap(demo, params.clone(), 1)
        .collect::<Result<_, _>>()?;
    println!("imap: {ordered:?}");
    let unordered: Vec<u32> = pool
        .imap_unordered(demo, params, 1)
        .collect::<Result<_, _>>()?;
    println!("imap_unordered: {unordered:?}");
    pool.close();
    pool.join()?;
    Ok(())
}
