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

use nix::unistd::Pid;

use super::child::keep_across_exec;
use super::image::{
    anchor, exe_identity, init_called, run_trampoline, text_segments, trampoline, Trampoline,
};
use super::target::{self, Outcome, TargetOutput};
use crate::codec::{self, Message};
use crate::sys::{proc, shm};
use crate::{Error, Result};

pub(super) const ENV: &str = "IPC_SPAWN";

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
        codec::to_vec(&self.arg)
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

/// The child side: parse the request, check it, run the target, report.
pub(super) fn run_child(spec: &str) -> std::result::Result<i32, String> {
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
