//! The README's quick start, kept compiling: a Queue, a Pipe, a Value and
//! a Lock shared with a forked child.

use ipc_core::{pipe::Pipe, queue::Queue, sync::Lock, value::Value};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
struct Job {
    id: u32,
    text: String,
}

fn main() -> ipc_core::Result<()> {
    let jobs = Queue::<Job>::new(16)?; // Python: Queue(16)
    let (parent, child) = Pipe::new(true)?; // Python: Pipe()
    let counter = Value::new(0u64)?; // Python: Value('Q', 0)
    let lock = Lock::new()?; // Python: Lock()

    // fork (the Process API is next); the child gets copies of the handles
    // SAFETY: the child only uses the handles above and leaves with `_exit`.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            drop(parent); // close the unused end, as in Python
            jobs.put(&Job {
                id: 1,
                text: "hello".into(),
            })?;
            let reply: String = child.recv()?;
            counter.update(|c| *c += 1)?; // race-free `counter.value += 1`
            {
                let _g = lock.acquire()?;
                println!("child got {reply}");
            }
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child: pid } => {
            drop(child);
            let job = jobs.get()?;
            println!("parent got job #{} {:?}", job.id, job.text);
            parent.send(&format!("done #{}", job.id))?;
            nix::sys::wait::waitpid(pid, None).expect("waitpid");
            assert_eq!(counter.get()?, 1);
        }
    }
    Ok(())
}
