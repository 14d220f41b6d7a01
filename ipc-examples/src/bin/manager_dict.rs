//! Seed 3.1.2 (Manager dict): one process fills a `Manager().dict()` with
//! `i -> i` for 0..10, another prints it.

use ipc_core::process::Process;
use ipc_manager::{DictProxy, Manager};

fn share_put(d: DictProxy<u32, u32>) -> ipc_manager::Result<()> {
    for i in 0..10 {
        d.insert(&i, &i)?;
    }
    Ok(())
}

fn share_get(d: DictProxy<u32, u32>) -> ipc_manager::Result<()> {
    let items = d.items()?;
    let body: Vec<String> = items.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("{{{}}}", body.join(", "));
    Ok(())
}

fn main() -> ipc_manager::Result<()> {
    ipc_core::init();
    let share_dict = Manager::start()?.dict::<u32, u32>()?;
    let mut p1 = Process::builder().target_fn(share_put, share_dict.clone());
    p1.start()?;
    // The seed starts both at once and so may print a partial dict; wait
    // for the writer so the output is always the whole dict.
    p1.join()?;
    // Pass a clone: `share_dict` keeps the server running while p2 reads
    // (the server lives as long as the starting process holds a handle).
    let mut p2 = Process::builder().target_fn(share_get, share_dict.clone());
    p2.start()?;
    p2.join()?;
    drop(share_dict);
    Ok(())
}
