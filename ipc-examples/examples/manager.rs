//! The README's Manager snippet, kept compiling:
//! `cargo run --release -p ipc-examples --example manager`.

use ipc_core::process::Process;
use ipc_manager::{DictProxy, Manager};

fn main() -> ipc_manager::Result<()> {
    ipc_core::init();
    let name = format!("inventory-{}", std::process::id());
    let mgr = Manager::start_named(&name)?; // Python: Manager()
    let stock = mgr.named("stock").dict::<String, u64>()?;
    let lock = mgr.lock()?; // shared memory, no round trip

    let mut p = Process::new({
        let stock = stock.clone();
        move || stock.update_with(&"apples".into(), |n| n.unwrap_or(0) + 3)
    });
    p.start()?;
    p.join()?;

    // Any other program of the same user, started later:
    let other = Manager::connect(&name)?;
    let same = other.get::<DictProxy<String, u64>>("stock")?; // type-checked lookup
    assert_eq!(same.get(&"apples".into())?, Some(3));
    drop(lock.acquire());
    println!("apples in stock: {:?}", same.get(&"apples".into())?);
    Ok(())
}
