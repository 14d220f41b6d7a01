//! The README's "Processes and start methods" snippet, kept compiling.

use ipc_core::process::{Process, StartMethod};
use ipc_core::queue::Queue;

fn work((q, n): (Queue<u64>, u64)) -> u64 {
    q.put(&(n * n)).unwrap();
    n
}

fn main() -> ipc_core::Result<()> {
    ipc_core::init(); // Python's `if __name__ == "__main__":`
    let q = Queue::<u64>::new(8)?;
    let mut p = Process::builder()
        .name("worker")
        .start_method(StartMethod::ForkServer)
        .target_fn(work, (q.clone(), 7)); // handles travel as arguments
    p.start()?;
    assert_eq!(p.join()?, 7);
    assert_eq!(q.get()?, 49);
    println!("worker returned 7 and put 49 on the queue");
    Ok(())
}
