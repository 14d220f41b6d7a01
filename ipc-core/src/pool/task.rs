//! What travels between a pool and its workers, and how a worker runs it.

use crate::codec::{self, Message};
use crate::process::image::{anchor, in_text, trampoline, Trampoline};
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

/// A worker's answer to a task: its outcome whole, or, when the outcome
/// does not fit in one message of the reply queue, one part of its
/// encoding (the parts of one task are sent in order, but several threads
/// pop replies, so they are placed by offset).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
pub(crate) struct Reply {
    pub id: u64,
    pub body: Body,
}

/// What a [`Reply`] carries.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
pub(crate) enum Body {
    Whole(Outcome),
    /// Bytes `offset..offset + bytes.len()` of the rkyv encoding of the
    /// outcome, which is `total` bytes long.
    Part {
        total: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
}

/// Room a [`Body::Part`] needs around its bytes in a reply message.
pub(crate) const PART_OVERHEAD: usize = 256;

/// Sends `outcome` as parts of at most `max - PART_OVERHEAD` bytes each.
pub(crate) fn send_parts(
    replies: &crate::queue::Queue<Reply>,
    id: u64,
    outcome: &Outcome,
) -> Result<()> {
    let step = replies.max_message_size().saturating_sub(PART_OVERHEAD);
    if step == 0 {
        return Err(Error::InvalidArgument(
            "the reply queue is too small for a result in parts",
        ));
    }
    let bytes = encode(outcome)?;
    let total = bytes.len() as u64;
    for (i, c) in bytes.chunks(step).enumerate() {
        replies.put(&Reply {
            id,
            body: Body::Part {
                total,
                offset: (i * step) as u64,
                bytes: c.to_vec(),
            },
        })?;
    }
    Ok(())
}

/// Reassembles the parts of one outcome. Parts come from shared memory:
/// each is checked (same total, in bounds, no offset twice) and the whole
/// must tile `0..total` exactly, else the result is `Err`.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    total: u64,
    got: u64,
    chunks: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl Parts {
    /// Adds one part; returns the decoded outcome once all are in.
    pub fn add(
        &mut self,
        total: u64,
        offset: u64,
        bytes: Vec<u8>,
    ) -> std::result::Result<Option<Outcome>, String> {
        if self.chunks.is_empty() {
            self.total = total;
        }
        let end = offset.checked_add(bytes.len() as u64);
        if total != self.total
            || bytes.is_empty()
            || end.is_none_or(|e| e > total)
            || self.chunks.contains_key(&offset)
        {
            return Err(format!(
                "a result part ({} bytes at {offset} of {total}) does not fit the others",
                bytes.len()
            ));
        }
        self.got += bytes.len() as u64;
        self.chunks.insert(offset, bytes);
        if self.got < self.total {
            return Ok(None);
        }
        let mut whole = Vec::new();
        whole
            .try_reserve_exact(self.got as usize)
            .map_err(|_| format!("no memory for a result of {} bytes", self.got))?;
        for (off, c) in std::mem::take(&mut self.chunks) {
            if off != whole.len() as u64 {
                return Err("the parts of a result overlap".into());
            }
            whole.extend_from_slice(&c);
        }
        target::value::<Outcome>(&whole)
            .map(Some)
            .map_err(|e| format!("a result in parts does not decode: {e}"))
    }
}

/// A task's code: a trampoline and a target, checked to be in our image
/// (`pub` only for [`remote`](super::remote)).
#[derive(Debug, Clone, Copy, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Code {
    pub(crate) tramp: i64,
    pub(crate) target: i64,
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

    pub(crate) fn task(self, id: u64, args: Vec<u8>) -> Task {
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
    codec::to_vec(v)
}

fn chunk_trampoline<A: Message, R: TargetOutput>(
    target: usize,
    args: &[u8],
    ack: &mut dyn FnMut(),
) -> Outcome {
    ack();
    // SAFETY: as in `process::image::trampoline`: `target` is an `fn(A) -> R`
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
    crate::process::image::run_trampoline(tramp, target, &t.args, &mut || {})
}

/// Why a task has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Panicked(String),
    Failed(String),
    Setup(String),
    WorkerDied(u64),
    Broken(String),
    /// A reply read from shared memory was invalid.
    Corrupt(String),
    Cancelled,
}

impl Failure {
    pub fn to_error(&self) -> Error {
        let name = "pool worker".to_owned();
        match self {
            Failure::Panicked(m) => Error::Panicked {
                name,
                message: m.clone(),
            },
            Failure::Failed(m) => Error::TargetFailed {
                name,
                message: m.clone(),
            },
            Failure::Setup(m) => Error::Exited {
                name,
                code: 1,
                detail: Some(m.clone()),
            },
            Failure::WorkerDied(pid) => Error::WorkerDied { pid: *pid },
            Failure::Broken(m) => Error::BrokenPool(m.clone()),
            Failure::Corrupt(m) => Error::Corrupt(m.clone()),
            Failure::Cancelled => Error::Cancelled,
        }
    }
}

/// Why a task that could not be handed to the workers failed.
pub(crate) fn unsent(e: &Error) -> Failure {
    Failure::Broken(format!("the task could not be handed to the workers: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(o: &Outcome) -> Vec<u8> {
        encode(o).unwrap()
    }

    #[test]
    fn parts_in_any_order_rebuild_the_outcome() {
        let o = Outcome::Err("x".repeat(10_000));
        let b = encoded(&o);
        let total = b.len() as u64;
        let mut p = Parts::default();
        assert_eq!(p.add(total, 4096, b[4096..].to_vec()), Ok(None));
        assert_eq!(p.add(total, 0, b[..4096].to_vec()), Ok(Some(o)));
    }

    #[test]
    fn forged_parts_are_refused_not_trusted() {
        let b = encoded(&Outcome::Ok(vec![7; 5000]));
        let total = b.len() as u64;
        // A part past the end, a total that changes, an offset sent twice,
        // parts that overlap, an empty part, an offset that overflows.
        let mut p = Parts::default();
        assert!(p.add(total, total - 1, vec![0, 0]).is_err());
        let mut p = Parts::default();
        p.add(total, 0, b[..100].to_vec()).unwrap();
        assert!(p.add(total + 1, 100, b[100..].to_vec()).is_err());
        let mut p = Parts::default();
        p.add(total, 0, b[..100].to_vec()).unwrap();
        assert!(p.add(total, 0, b[..100].to_vec()).is_err());
        let mut p = Parts::default();
        p.add(total, 0, b[..200].to_vec()).unwrap();
        assert!(p
            .add(total, 100, b[100..total as usize - 100].to_vec())
            .is_err());
        let mut p = Parts::default();
        assert!(p.add(total, 0, Vec::new()).is_err());
        let mut p = Parts::default();
        assert!(p.add(u64::MAX, u64::MAX - 1, vec![1, 2]).is_err());
        // Parts that tile the range but hold garbage do not decode.
        let mut p = Parts::default();
        assert!(p.add(8, 0, vec![0xff; 8]).is_err());
    }
}
