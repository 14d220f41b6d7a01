//! Command-line plumbing of the demo programs: `--flag value` options,
//! Ctrl-C, and waiting (bounded) for a peer program to appear.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipc_core::Error;

/// Options given as `--flag value` pairs, checked against a list of
/// known flags.
///
/// # Examples
///
/// ```
/// use ipc_examples::cli::Opts;
/// let args = ["--name", "demo", "--jobs", "5"].map(String::from);
/// let o = Opts::parse(args, &["--name", "--jobs", "--job-ms"])?;
/// assert_eq!(o.get("--name", "jobs-demo".to_string())?, "demo");
/// assert_eq!(o.get("--jobs", 20u32)?, 5);
/// assert_eq!(o.get("--job-ms", 500u64)?, 500); // the default
/// assert!(Opts::parse(["--nope".to_string()], &["--name"]).is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Opts {
    values: HashMap<String, String>,
}

impl Opts {
    /// Reads `--flag value` pairs; `known` lists the accepted flags.
    ///
    /// # Errors
    /// A message naming an unknown flag, a flag without a value, or
    /// `--help` (the message is then empty: print the usage).
    pub fn parse(args: impl IntoIterator<Item = String>, known: &[&str]) -> Result<Opts, String> {
        let mut values = HashMap::new();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                return Err(String::new());
            }
            if !known.contains(&flag.as_str()) {
                return Err(format!("unknown option {flag:?}"));
            }
            let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            values.insert(flag, v);
        }
        Ok(Opts { values })
    }

    /// [`parse`](Opts::parse) of this program's arguments; on an error,
    /// prints it and `usage` and exits (status 0 for `--help`, else 2).
    pub fn from_env_or_exit(known: &[&str], usage: &str) -> Opts {
        Opts::parse(std::env::args().skip(1), known).unwrap_or_else(|e| exit_usage(&e, usage))
    }

    /// The value of `flag`, or `default` if it was not given.
    ///
    /// # Errors
    /// A message if the value does not parse as a `T`.
    pub fn get<T: FromStr>(&self, flag: &str, default: T) -> Result<T, String> {
        match self.values.get(flag) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{flag}: cannot read {v:?} as a {}", short_type::<T>())),
        }
    }

    /// [`get`](Opts::get), printing the error and `usage` and exiting
    /// with status 2 if the value is bad.
    pub fn get_or_exit<T: FromStr>(&self, flag: &str, default: T, usage: &str) -> T {
        self.get(flag, default)
            .unwrap_or_else(|e| exit_usage(&e, usage))
    }
}

fn short_type<T>() -> &'static str {
    let n = std::any::type_name::<T>();
    n.rsplit("::").next().unwrap_or(n)
}

fn exit_usage(err: &str, usage: &str) -> ! {
    if err.is_empty() {
        println!("{usage}");
        std::process::exit(0);
    }
    eprintln!("{err}\n{usage}");
    std::process::exit(2);
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    // Relaxed: the flag publishes no data; the main loop only needs to
    // see it eventually (no partner ordering).
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Makes Ctrl-C (`SIGINT`) and `SIGTERM` set a flag that
/// [`interrupted`] reads, instead of killing the program, so that a
/// server can stop its peers and remove its regions on the way out.
/// Children forked afterwards inherit the handler.
///
/// # Errors
/// The `sigaction` error.
///
/// # Examples
///
/// ```
/// use ipc_examples::cli::{catch_interrupt, interrupted};
/// catch_interrupt()?;
/// assert!(!interrupted());
/// nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT)?; // as Ctrl-C
/// assert!(interrupted());
/// # Ok::<(), nix::Error>(())
/// ```
pub fn catch_interrupt() -> nix::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; no other handler of these signals is replaced
        // (the demos install none).
        unsafe { sigaction(sig, &act) }?;
    }
    Ok(())
}

/// Whether Ctrl-C or `SIGTERM` arrived since [`catch_interrupt`].
pub fn interrupted() -> bool {
    // Relaxed: see `on_interrupt`.
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Calls `open` until it succeeds, as long as its error is one that
/// `absent` says means "the peer is not there yet", for at most
/// `patience`; calls `on_wait` once, at the first such miss, so the
/// program can say that it is waiting.
///
/// # Errors
/// [`Error::Timeout`] once `patience` has passed; any error that
/// `absent` does not accept, at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ipc_core::{queue::Queue, Error};
/// use ipc_examples::cli::wait_for;
/// let mut said = false;
/// let r = wait_for(
///     Duration::from_millis(50),
///     |e| matches!(e, Error::NotFound { .. }),
///     || said = true,
///     || Queue::<u32>::open("doc-wait-for-nobody"),
/// );
/// assert!(matches!(r, Err(Error::Timeout)) && said);
/// ```
pub fn wait_for<T, E: From<Error>>(
    patience: Duration,
    absent: impl Fn(&E) -> bool,
    on_wait: impl FnOnce(),
    mut open: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + patience;
    let mut on_wait = Some(on_wait);
    loop {
        match open() {
            Ok(v) => return Ok(v),
            Err(e) if absent(&e) => {
                if let Some(f) = on_wait.take() {
                    f();
                }
                if Instant::now() >= deadline {
                    return Err(Error::Timeout.into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}
