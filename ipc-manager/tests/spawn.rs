//! Manager proxies and objects passed to children started with the
//! `Spawn` and `ForkServer` methods (re-executed programs that reach the
//! manager by name), and a server run by `serve()` in another process.
//! Own `main` (libtest-mimic) so that `ipc_core::init()` runs first.

use std::time::{Duration, Instant};

use ipc_core::process::{Process, StartMethod};
use ipc_core::queue::Queue;
use ipc_core::sync::Lock;
use ipc_core::Error as CoreError;
use ipc_manager::Error;
use ipc_manager::{DictProxy, ListProxy, Manager, Namespace};
use libtest_mimic::{Arguments, Failed, Trial};

type Args = (
    DictProxy<String, u64>,
    ListProxy<u64>,
    Namespace,
    Queue<u64>,
    Lock,
);

fn child((d, l, ns, q, lock): Args) -> ipc_manager::Result<u64> {
    let _g = lock
        .acquire()
        .map_err(|_| Error::Core(CoreError::OwnerDied))?;
    let n = d.update_with(&"spawned".into(), |v| v.unwrap_or(0) + 1)?;
    l.push(&std::process::id().into())?;
    ns.set("last", &n)?;
    q.put(&n)?;
    Ok(n)
}

fn proxies_reach_re_executed_children() -> Result<(), Failed> {
    let mgr = Manager::start()?;
    let args: Args = (
        mgr.dict()?,
        mgr.list()?,
        mgr.namespace()?,
        mgr.queue(8)?,
        mgr.lock()?,
    );
    let mut total = 0;
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        let mut p = Process::builder()
            .start_method(m)
            .target_fn(child, args.clone());
        p.start()?;
        total += 1;
        assert_eq!(p.join()?, total);
    }
    assert_eq!(args.0.get(&"spawned".into())?, Some(2));
    assert_eq!(args.1.len()?, 2);
    assert_eq!(args.2.get::<u64>("last")?, Some(2));
    assert_eq!(args.3.get()?, 1);
    assert_eq!(args.3.get()?, 2);
    Ok(())
}

fn serve(name: String) -> ipc_manager::Result<()> {
    Manager::builder().name(name).serve()
}

fn a_served_manager_outlives_its_clients_until_shutdown() -> Result<(), Failed> {
    let name = format!("served-{}", std::process::id());
    let mut server = Process::builder()
        .start_method(StartMethod::Spawn)
        .target_fn(serve, name.clone());
    server.start()?;
    let t0 = Instant::now();
    let mgr = loop {
        match Manager::connect(&name) {
            Ok(m) => break m,
            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e.into()),
        }
    };
    mgr.named("d").dict::<u32, u32>()?.insert(&1, &1)?;
    drop(mgr); // a client leaving does not stop a served manager
    let again = Manager::connect(&name)?;
    assert_eq!(again.get::<DictProxy<u32, u32>>("d")?.get(&1)?, Some(1));
    again.shutdown()?;
    server.join()?;
    assert!(matches!(
        Manager::connect(&name),
        Err(Error::Core(CoreError::NotFound { .. }))
    ));
    Ok(())
}

fn main() {
    ipc_core::init();
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test(
            "proxies_reach_re_executed_children",
            proxies_reach_re_executed_children,
        ),
        Trial::test(
            "a_served_manager_outlives_its_clients_until_shutdown",
            a_served_manager_outlives_its_clients_until_shutdown,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
