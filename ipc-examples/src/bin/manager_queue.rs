//! Seed 3.1.1 (Manager Queue): a `Manager().Queue(2)` shared with `Pool`
//! workers: one task puts 0..=20, two tasks print what they get, then
//! "over". Then the same with a plain ipc `Queue`, which Python cannot
//! pass to a pool task at all (it needs the Manager for that).

use std::time::Duration;

use ipc_core::pool::Pool;
use ipc_core::queue::Queue;
use ipc_core::sync::Event;
use ipc_manager::Manager;

fn demo1((q, done): (Queue<u32>, Event)) -> ipc_core::Result<()> {
    for i in 0..=20 {
        q.put(&i)?;
    }
    done.set();
    Ok(())
}

fn demo2((q, done): (Queue<u32>, Event)) -> ipc_core::Result<()> {
    // Drain until the producer is done and the queue is empty (the seed
    // stops at the first empty look, which can strand the producer).
    loop {
        match q.get_timeout(Duration::from_millis(200)) {
            Ok(v) => println!("{v}"),
            Err(ipc_core::Error::Timeout) => {}
            Err(e) => return Err(e),
        }
        std::thread::sleep(Duration::from_millis(10));
        if done.is_set() && q.is_empty() {
            break;
        }
    }
    println!("over");
    Ok(())
}

/// Hands the queue to three pool tasks. `q` and `done` stay alive here
/// until the tasks end: an anonymous queue is found through this process's
/// descriptors when a worker decodes its argument.
fn run(pool: &Pool, q: &Queue<u32>, done: &Event) -> ipc_core::Result<()> {
    let a = pool.apply_async(demo1, (q.clone(), done.clone()))?;
    let b = pool.apply_async(demo2, (q.clone(), done.clone()))?;
    let c = pool.apply_async(demo2, (q.clone(), done.clone()))?;
    for r in [a, b, c] {
        r.get(None)?;
    }
    Ok(())
}

fn main() -> ipc_manager::Result<()> {
    ipc_core::init();
    let pool = Pool::new(10)?;
    let mgr = Manager::start()?;
    println!("-- Manager().Queue(2)");
    run(&pool, &mgr.queue::<u32>(2)?, &mgr.event()?)?;
    println!("-- plain ipc Queue(2)");
    run(&pool, &Queue::new(2)?, &Event::new()?)?;
    pool.close();
    Ok(pool.join()?)
}
