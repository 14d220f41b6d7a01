//! For pools whose workers are elsewhere (`ipc-redis`), not a stable API:
//! a task's code as the same anchor-relative offsets the local pools and
//! `Spawn` use, and running such a task in a worker of the same binary.
//! The caller checks the executable's identity before [`run`]; `run`
//! checks that both addresses lie in this executable's code.

pub use super::task::Code;
use crate::process::target::Outcome;
use crate::{Error, Result};

impl Code {
    /// `(trampoline, target)` offsets from the anchor, as they travel.
    pub fn offsets(&self) -> (i64, i64) {
        (self.tramp, self.target)
    }

    /// The code at these offsets (checked only when [`run`]).
    pub fn from_offsets(tramp: i64, target: i64) -> Code {
        Code { tramp, target }
    }
}

/// Runs `code` on the encoded `args` here: the encoded value, or the
/// error a local pool reports (`TargetFailed`, `Panicked`, or `Exited`
/// when the task could not start: not our code, bad arguments).
pub fn run(code: Code, args: &[u8]) -> Result<Vec<u8>> {
    let name = "pool worker".to_owned();
    match super::task::run(&code.task(0, args.to_vec())) {
        Outcome::Ok(b) => Ok(b),
        Outcome::Err(message) => Err(Error::TargetFailed { name, message }),
        Outcome::Panic(message) => Err(Error::Panicked { name, message }),
        Outcome::Setup(m) => Err(Error::Exited {
            name,
            code: 1,
            detail: Some(m),
        }),
    }
}
