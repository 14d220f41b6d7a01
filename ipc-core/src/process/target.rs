//! What a child process sends back: its target's value, error or panic.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::codec::{self, Message};
use crate::{Error, Result};

/// What a process target may return: `()`, a [`Message`] value, or a
/// `Result` whose `Err` makes the child exit with code 1 (its message goes
/// to the parent's [`join`](super::Process::join)).
///
/// # Examples
///
/// ```
/// use ipc_core::process::TargetOutput;
/// fn check<T: TargetOutput>() {}
/// check::<()>();
/// check::<u64>();
/// check::<Result<String, std::io::Error>>();
/// ```
pub trait TargetOutput: 'static {
    /// The value the parent receives on success.
    type Value: Message;
    /// Splits into the value or an error message.
    fn into_outcome(self) -> std::result::Result<Self::Value, String>;
}

impl<T: Message + 'static, E: std::fmt::Display + 'static> TargetOutput
    for std::result::Result<T, E>
{
    type Value = T;
    fn into_outcome(self) -> std::result::Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

macro_rules! plain_output {
    ($($t:ty),*) => {$(
        impl TargetOutput for $t {
            type Value = $t;
            fn into_outcome(self) -> std::result::Result<$t, String> {
                Ok(self)
            }
        }
    )*};
}
plain_output!(
    (),
    bool,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    char,
    String
);

macro_rules! tuple_output {
    ($($t:ident),+) => {
        impl<$($t: 'static),+> TargetOutput for ($($t,)+)
        where
            ($($t,)+): Message,
        {
            type Value = ($($t,)+);
            fn into_outcome(self) -> std::result::Result<Self::Value, String> {
                Ok(self)
            }
        }
    };
}
tuple_output!(A);
tuple_output!(A, B);
tuple_output!(A, B, C);
tuple_output!(A, B, C, D);
tuple_output!(A, B, C, D, E);

impl<T: Message + 'static> TargetOutput for Vec<T> {
    type Value = Vec<T>;
    fn into_outcome(self) -> std::result::Result<Vec<T>, String> {
        Ok(self)
    }
}

#[cfg(feature = "serde")]
impl<T> TargetOutput for codec::Serde<T>
where
    T: ::serde::Serialize + ::serde::de::DeserializeOwned + 'static,
{
    type Value = codec::Serde<T>;
    fn into_outcome(self) -> std::result::Result<Self, String> {
        Ok(self)
    }
}

impl<T: Message + 'static> TargetOutput for Option<T> {
    type Value = Option<T>;
    fn into_outcome(self) -> std::result::Result<Option<T>, String> {
        Ok(self)
    }
}

/// The record a child writes into its result file.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// The target returned a value (rkyv bytes of `Value`).
    Ok(Vec<u8>),
    /// The target returned `Err`.
    Err(String),
    /// The target panicked.
    Panic(String),
    /// The child could not run the target at all.
    Setup(String),
}

impl Outcome {
    /// Exit code of a child with this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Ok(_) => 0,
            _ => 1,
        }
    }
}

/// Runs `f` catching panics, and returns its outcome.
pub(crate) fn run<R: TargetOutput>(f: impl FnOnce() -> R) -> Outcome {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => match r.into_outcome() {
            Ok(v) => match codec::to_vec(&v) {
                Ok(bytes) => Outcome::Ok(bytes),
                Err(e) => Outcome::Setup(format!("could not encode the result: {e}")),
            },
            Err(msg) => Outcome::Err(msg),
        },
        Err(payload) => Outcome::Panic(panic_message(payload.as_ref())),
    }
}

/// The message of a caught panic (`&str` or `String` payload), for
/// reporting it as an error.
///
/// # Examples
///
/// ```
/// let p = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
/// assert_eq!(ipc_core::process::panic_message(p.as_ref()), "boom");
/// ```
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Writes the outcome into the (inherited) result file.
pub(crate) fn write(file: &mut File, o: &Outcome) -> Result<()> {
    let bytes = codec::to_vec(o)?;
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&bytes))
        .and_then(|_| file.set_len(bytes.len() as u64))
        .map_err(io)
}

/// Reads the outcome a child wrote, if any.
pub(crate) fn read(file: &mut File) -> Result<Option<Outcome>> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(io)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    codec::from_slice::<Outcome>(&bytes).map(Some)
}

/// Decodes a successful outcome's value.
pub(crate) fn value<T: Message>(bytes: &[u8]) -> Result<T> {
    codec::from_slice(bytes)
}

pub(crate) fn io(e: std::io::Error) -> Error {
    Error::Io(nix::errno::Errno::from_raw(
        e.raw_os_error().unwrap_or(libc::EIO),
    ))
}
