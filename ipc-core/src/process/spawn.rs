//! The `Spawn` start method: re-execute the current program and run a
//! `fn` target found by its offset in the executable image.
//!
//! The parent passes, in the `IPC_SPAWN` environment variable: the offsets
//! of the target and of a monomorphised trampoline relative to an anchor
//! function (position independent: ASLR shifts the whole image), the
//! identity of the executable file (device, inode, size, mtime: the child
//! refuses to run a different build), and the numbers of two inherited
//! `memfd`s holding the `rkyv`-encoded argument and receiving the outcome.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::unistd::Pid;

use super::target::{self, Outcome, TargetOutput};
use crate::codec::{self, Message};
use crate::sys::{proc, shm};
use crate::{Error, Result};

const ENV: &str = "IPC_SPAWN";
static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// The Rust form of Python's `if __name__ == "__main__":`. Call it first
/// thing in `main`.
///
/// In a normal run it returns at once. In a child started with the `Spawn`
/// method it runs the requested target and exits with its status, so the
/// rest of `main` never runs there (code *before* the call runs in both,
/// exactly like module-level code in Python). Spawning without having
/// called it is refused with [`Error::InitNotCalled`] rather than
/// re-running `main` in every child.
///
/// # Examples
///
/// ```
/// // fn main() {
/// ipc_core::init(); // a spawned child runs its target here and exits
/// // ... the rest of the program runs only in the parent ...
/// // }
/// ```
pub fn init() {
    // Relaxed: read by this same thread's later spawns, or by threads it
    // starts afterwards (a happens-before edge).
    INIT_CALLED.store(true, Ordering::Relaxed);
    if let Some(spec) = std::env::var_os(super::forkserver::ENV) {
        std::env::remove_var(super::forkserver::ENV);
        super::forkserver::serve(&spec.to_string_lossy());
    }
    let Some(spec) = std::env::var_os(ENV) else {
        return;
    };
    // Grandchildren must not inherit the request.
    std::env::remove_var(ENV);
    let code = match run_child(&spec.to_string_lossy()) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("ipc: spawned child could not start: {msg}");
            1
        }
    };
    // SAFETY: leaves the child at once: the rest of `main` must not run.
    unsafe { libc::_exit(code) }
}

pub(crate) fn init_called() -> bool {
    // Relaxed: see `init`.
    INIT_CALLED.load(Ordering::Relaxed)
}

/// The address all offsets are relative to.
pub(crate) fn anchor() -> usize {
    init as fn() as usize
}

/// Runs the target at `target` on the argument bytes; calls `ack` once the
/// argument is decoded (the parent may then drop its copies of handles).
pub(crate) type Trampoline = fn(usize, &[u8], &mut dyn FnMut()) -> Outcome;

pub(crate) fn trampoline<A: Message, R: TargetOutput>(
    target: usize,
    args: &[u8],
    ack: &mut dyn FnMut(),
) -> Outcome {
    // SAFETY: `target` is the address of an `fn(A) -> R` of this very
    // executable: the parent took it from such a pointer, the offset was
    // applied to the same anchor in the same (identity-checked) image, and
    // `run_child` verified it lies in an executable segment of the image.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    let a = target::value::<A>(args);
    ack();
    match a {
        Ok(a) => target::run(move || f(a)),
        Err(e) => Outcome::Setup(format!("could not decode the argument: {e}")),
    }
}

/// A `fn` target with its argument, type-erased.
trait FnJob<R>: Send {
    fn run(self: Box<Self>) -> Outcome;
    fn encode(&self) -> Result<Vec<u8>>;
}

struct Call<A, R> {
    f: fn(A) -> R,
    arg: A,
}

impl<A: Message + Send, R: TargetOutput> FnJob<R> for Call<A, R> {
    fn run(self: Box<Self>) -> Outcome {
        let Call { f, arg } = *self;
        target::run(move || f(arg))
    }
    fn encode(&self) -> Result<Vec<u8>> {
        codec::encode_with(&self.arg, |b| b.to_vec())
    }
}

/// A `fn` target with its argument, runnable here (fork) or by re-exec.
pub(crate) struct SpawnJob<R> {
    target: usize,
    tramp: usize,
    job: Box<dyn FnJob<R>>,
}

impl<R: TargetOutput> SpawnJob<R> {
    pub fn new<A: Message + Send + 'static>(f: fn(A) -> R, arg: A) -> SpawnJob<R> {
        SpawnJob {
            target: f as usize,
            tramp: trampoline::<A, R> as Trampoline as usize,
            job: Box::new(Call { f, arg }),
        }
    }

    /// Runs the target in this process (the `Fork` method).
    pub fn run_here(self) -> Outcome {
        self.job.run()
    }

    /// Checks the target can be found by a re-executed program and writes
    /// the encoded argument into a fresh `memfd`.
    fn prepare(&self) -> Result<File> {
        if !init_called() {
            return Err(Error::InitNotCalled);
        }
        let text = text_segments()?;
        for (what, addr) in [("target", self.target), ("trampoline", self.tramp)] {
            if !text.iter().any(|(lo, hi)| (*lo..*hi).contains(&addr)) {
                return Err(Error::TargetNotFound(format!(
                    "the {what} at {addr:#x} is not in the executable's code (a function of a shared library?)"
                )));
            }
        }
        let mut args = shm::memfd("ipc-args")?;
        let bytes = self.job.encode()?;
        args.write_all(&bytes)
            .and_then(|_| args.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(target::io)?;
        Ok(args)
    }

    /// Has the fork server fork a child running the target.
    pub fn via_server(
        &self,
        name: &str,
        daemon: bool,
        result: &File,
    ) -> Result<(Pid, std::os::fd::OwnedFd)> {
        let args = self.prepare()?;
        super::forkserver::launch(self.tramp, self.target, daemon, name, &args, result)
    }

    /// Re-executes the current program to run the target; returns the pid.
    pub fn spawn(&self, name: &str, daemon: bool, result: &File) -> Result<Pid> {
        let args = self.prepare()?;
        // The child acknowledges on this pipe once it has decoded the
        // argument: handles in it are located through our descriptors
        // (/proc/<pid>/fd/N), which must stay open until then.
        let (ack_r, ack_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let spec = format!(
            "1;{};{};{};{};{};{};{};{};{}",
            self.tramp.wrapping_sub(anchor()) as isize,
            self.target.wrapping_sub(anchor()) as isize,
            args.as_raw_fd(),
            result.as_raw_fd(),
            ack_w.as_raw_fd(),
            u8::from(daemon),
            super::ParentId::of_current().encode(),
            exe_identity()?,
            name,
        );
        let exe = std::env::current_exe().map_err(target::io)?;
        let (afd, rfd, kfd, parent) = (
            args.as_raw_fd(),
            result.as_raw_fd(),
            ack_w.as_raw_fd(),
            proc::pid(),
        );
        let mut cmd = std::process::Command::new(exe);
        cmd.args(std::env::args_os().skip(1)).env(ENV, spec);
        keep_across_exec(&mut cmd, [afd, rfd, kfd], daemon.then_some(parent));
        let child = cmd.spawn().map_err(target::io)?;
        drop(ack_w);
        // One byte: decoded. End of file: the child died first. Either way
        // our handles may go; `join` reports what happened to the child.
        let mut ack = File::from(ack_r);
        let mut b = [0u8; 1];
        while let Err(e) = ack.read(&mut b) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
        Ok(Pid::from_raw(child.id() as i32))
    }
}

/// Makes `cmd`'s child keep `fds` open across `exec` (they are CLOEXEC
/// here) and, with `die_with`, die with that parent process.
pub(crate) fn keep_across_exec<const N: usize>(
    cmd: &mut std::process::Command,
    fds: [std::os::fd::RawFd; N],
    die_with: Option<u32>,
) {
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (fcntl, prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(parent) = die_with {
                super::handle::set_parent_death_signal(parent);
            }
            Ok(())
        })
    };
}

/// (dev, inode, size, mtime) of the running executable.
pub(crate) fn exe_identity() -> Result<String> {
    let m = std::fs::metadata("/proc/self/exe").map_err(target::io)?;
    Ok(format!(
        "{}:{}:{}:{}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// Address ranges of the executable's code segments (read once: the main
/// executable's mappings do not move; a fork-server child inherits them).
fn text_segments() -> Result<&'static [(usize, usize)]> {
    static TEXT: std::sync::OnceLock<Vec<(usize, usize)>> = std::sync::OnceLock::new();
    if let Some(t) = TEXT.get() {
        return Ok(t);
    }
    let exe = std::fs::read_link("/proc/self/exe").map_err(target::io)?;
    let exe = exe.to_string_lossy();
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(target::io)?;
    let t: Vec<(usize, usize)> = maps
        .lines()
        .filter_map(|l| {
            let mut it = l.split_ascii_whitespace();
            let range = it.next()?;
            let perms = it.next()?;
            let path = it.nth(3)?;
            if !perms.contains('x') || path != exe {
                return None;
            }
            let (lo, hi) = range.split_once('-')?;
            Some((
                usize::from_str_radix(lo, 16).ok()?,
                usize::from_str_radix(hi, 16).ok()?,
            ))
        })
        .collect();
    Ok(TEXT.get_or_init(|| t))
}

/// Whether `addr` lies in this executable's code (a `fn` that a
/// re-executed or forked copy of this program can find again).
pub(crate) fn in_text(addr: usize) -> Result<bool> {
    Ok(text_segments()?
        .iter()
        .any(|(lo, hi)| (*lo..*hi).contains(&addr)))
}

/// Reads the code segments now (the fork server does, so its children
/// need not).
pub(crate) fn warm_up() {
    let _ = text_segments();
}

/// Checks that both addresses are in this executable's code, then runs
/// the trampoline (in a spawned or fork-server child).
pub(crate) fn run_trampoline(
    tramp: usize,
    target: usize,
    args: &[u8],
    ack: &mut dyn FnMut(),
) -> Outcome {
    let text = match text_segments() {
        Ok(t) => t,
        Err(e) => return Outcome::Setup(e.to_string()),
    };
    if ![tramp, target]
        .iter()
        .all(|a| text.iter().any(|(lo, hi)| (*lo..*hi).contains(a)))
    {
        return Outcome::Setup("the target is not in this executable's code".to_owned());
    }
    // SAFETY: `tramp` is the address of a `Trampoline` of this image: the
    // parent took it from such a function pointer, the offset was applied
    // to the same anchor in the same (identity-checked) executable, and it
    // lies in the executable's code (checked above).
    let t = unsafe { std::mem::transmute::<usize, Trampoline>(tramp) };
    t(target, args, ack)
}

/// The child side: parse the request, check it, run the target, report.
fn run_child(spec: &str) -> std::result::Result<i32, String> {
    let f: Vec<&str> = spec.splitn(10, ';').collect();
    if f.len() != 10 || f[0] != "1" {
        return Err(format!("malformed {ENV} request"));
    }
    let num = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("malformed {ENV} field {s:?}"))
    };
    let (tramp_off, target_off) = (num(f[1])?, num(f[2])?);
    let (afd, rfd, kfd) = (num(f[3])? as i32, num(f[4])? as i32, num(f[5])? as i32);
    let daemon = f[6] == "1";
    let name = f[9].to_owned();
    // SAFETY: the parent passed these descriptors to us (CLOEXEC cleared
    // before exec) and nothing else in this fresh process owns them.
    let (mut args, mut result, ack) = unsafe {
        (
            File::from_raw_fd(afd),
            File::from_raw_fd(rfd),
            File::from_raw_fd(kfd),
        )
    };
    let mut ack = Some(ack);
    let mut send_ack = || {
        if let Some(mut a) = ack.take() {
            let _ = a.write_all(&[1]);
        }
    };
    let parent = super::ParentId::decode(f[7]).ok_or_else(|| format!("malformed {ENV} parent"))?;
    super::set_current(name, daemon, parent);
    let outcome = (|| {
        if exe_identity().map_err(|e| e.to_string())? != f[8] {
            return Err(
                "the executable changed since the parent started (a different build)".to_owned(),
            );
        }
        let tramp = anchor().wrapping_add(tramp_off as isize as usize);
        let target = anchor().wrapping_add(target_off as isize as usize);
        let mut bytes = Vec::new();
        args.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        Ok(run_trampoline(tramp, target, &bytes, &mut send_ack))
    })()
    .unwrap_or_else(Outcome::Setup);
    send_ack();
    target::write(&mut result, &outcome).map_err(|e| e.to_string())?;
    Ok(outcome.exit_code())
}
