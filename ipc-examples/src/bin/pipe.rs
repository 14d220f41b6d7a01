//! Seed 3.2 (Pipe): one process sends 0..20, another receives until the
//! pipe is drained.

use std::time::Duration;

use ipc_core::pipe::{Connection, Pipe};
use ipc_core::process::Process;

fn send((pipe, n): (Connection, u32)) {
    for i in 0..n {
        pipe.send(&i).expect("send");
    }
}

fn rev(pipe: Connection) {
    while let Ok(v) = pipe.recv::<u32>() {
        println!("{v}");
        // As the seed: stop once nothing more is waiting (give the sender
        // a moment, since it runs concurrently).
        if !pipe.poll(Duration::from_millis(200)).unwrap_or(false) {
            break;
        }
    }
}

fn main() -> ipc_core::Result<()> {
    ipc_core::init();
    let (pipe_rec, pipe_send) = Pipe::new(false)?;
    let mut p1 = Process::builder().target_fn(send, (pipe_send, 20));
    let mut p2 = Process::builder().target_fn(rev, pipe_rec);
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;
    Ok(())
}
