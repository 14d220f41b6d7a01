//! What travels between a pool and its workers, and how a worker runs it.

use crate::codec::{self, Message};
use crate::process::spawn::{anchor, in_text, trampoline, Trampoline};
use crate::process::target::{self, Outcome};
use crate::process::TargetOutput;
use crate::{Error, Result};

/// Task id that tells a worker to exit.
pub(crate) const STOP: u64 = u64::MAX;

/// One unit of work: run the trampoline at `tramp` on `target` and `args`.
/// Addresses travel as offsets from an anchor function, so they hold in a
/// forked, fork-server or re-executed worker alike.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
pub(crate) struct Task {
    pub id: u64,
    pub tramp: i64,
    pub target: i64,
    pub args: Vec<u8>,
}

/// A worker's answer to a task.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
pub(crate) struct Reply {
    pub id: u64,
    pub outcome: Outcome,
}

/// A task's code: a trampoline and a target, checked to be in our image.
#[derive(Debug, Clone, Copy, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Code {
    pub tramp: i64,
    pub target: i64,
}

impl Code {
    fn new(tramp: usize, target: usize) -> Result<Code> {
        for (what, a) in [("task function", target), ("trampoline", tramp)] {
            if !in_text(a)? {
                return Err(Error::TargetNotFound(format!(
                    "the {what} at {a:#x} is not in the executable's code"
                )));
            }
        }
        Ok(Code {
            tramp: tramp.wrapping_sub(anchor()) as i64,
            target: target.wrapping_sub(anchor()) as i64,
        })
    }

    /// `f` applied to one argument.
    pub fn single<A: Message, R: TargetOutput>(f: fn(A) -> R) -> Result<Code> {
        Code::new(trampoline::<A, R> as Trampoline as usize, f as usize)
    }

    /// `f` applied to each argument of a chunk (`Vec<A>` → `Vec<R::Value>`).
    pub fn chunk<A: Message, R: TargetOutput>(f: fn(A) -> R) -> Result<Code> {
        Code::new(chunk_trampoline::<A, R> as Trampoline as usize, f as usize)
    }

    pub fn task(self, id: u64, args: Vec<u8>) -> Task {
        Task {
            id,
            tramp: self.tramp,
            target: self.target,
            args,
        }
    }
}

/// Encodes one argument.
pub(crate) fn encode<T: Message>(v: &T) -> Result<Vec<u8>> {
    codec::encode_with(v, |b| b.to_vec())
}

fn chunk_trampoline<A: Message, R: TargetOutput>(
    target: usize,
    args: &[u8],
    ack: &mut dyn FnMut(),
) -> Outcome {
    ack();
    // SAFETY: as in `process::spawn::trampoline`: `target` is an `fn(A) -> R`
    // of this executable, located through the anchor and checked to lie in
    // its code by `run_trampoline`.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    let items = match target::value::<Vec<A>>(args) {
        Ok(v) => v,
        Err(e) => return Outcome::Setup(format!("could not decode the chunk: {e}")),
    };
    let mut out = Vec::with_capacity(items.len());
    for a in items {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(a))) {
            Ok(r) => match r.into_outcome() {
                Ok(v) => out.push(v),
                Err(m) => return Outcome::Err(m),
            },
            Err(p) => return Outcome::Panic(target::panic_message(p.as_ref())),
        }
    }
    match encode(&out) {
        Ok(b) => Outcome::Ok(b),
        Err(e) => Outcome::Setup(format!("could not encode the results: {e}")),
    }
}

/// Runs one task in a worker.
pub(crate) fn run(t: &Task) -> Outcome {
    let tramp = anchor().wrapping_add(t.tramp as isize as usize);
    let target = anchor().wrapping_add(t.target as isize as usize);
    crate::process::spawn::run_trampoline(tramp, target, &t.args, &mut || {})
}
