//! What travels through Redis: tasks in the stream, replies in the
//! clients' lists, items of queues and dicts. Every payload starts with a
//! 4-byte tag naming its kind and layout version, then `rkyv` bytes that
//! are validated (`bytecheck`) when read: Redis is shared input.
//!
//! Public only so that tests can forge entries; not a stable API.

use ipc_core::codec::{self, Message};

use crate::{Error, Result};

/// Tag of a task (layout version 1).
pub const TASK: &[u8; 4] = b"iRT1";
/// Tag of a reply (layout version 1).
pub const REPLY: &[u8; 4] = b"iRR1";
/// Tag of a queue item or dict value (layout version 1).
pub const ITEM: &[u8; 4] = b"iRV1";

/// The field of a stream entry that holds the task.
pub const FIELD: &str = "t";

/// One task: run the trampoline at `tramp` on the target at `target`
/// (offsets from the anchor, as `Spawn` and the local pools use) with
/// `args`, in a worker of the executable `exe`; push the reply to `reply`.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub struct Task {
    /// The submitter's executable identity.
    pub exe: String,
    /// The submitter's id for the task.
    pub id: u64,
    /// The reply list (a key of the same pool).
    pub reply: String,
    /// Trampoline offset.
    pub tramp: i64,
    /// Target offset.
    pub target: i64,
    /// The encoded argument.
    pub args: Vec<u8>,
}

/// A worker's answer.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub struct Reply {
    /// The task's id.
    pub id: u64,
    /// The worker (`host:pid:nonce`).
    pub worker: String,
    /// What happened.
    pub outcome: Outcome,
}

/// What happened to a task.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The encoded value.
    Ok(Vec<u8>),
    /// The task returned `Err` (its text).
    Failed(String),
    /// The task panicked (its message).
    Panicked(String),
    /// The task could not start (bad argument, not our code, too large).
    Setup(String),
    /// It was delivered the maximum number of times, and each time its
    /// worker died; `pid` is the last one's.
    WorkerDied {
        /// The last worker's pid (0 if unknown).
        pid: u64,
    },
    /// The worker runs another executable.
    Refused {
        /// The task's identity.
        expected: String,
        /// The worker's.
        found: String,
    },
}

/// `tag` followed by the encoding of `v`.
pub fn pack<T: Message>(tag: &[u8; 4], v: &T) -> Result<Vec<u8>> {
    Ok(codec::encode_with(v, |b| {
        let mut out = Vec::with_capacity(4 + b.len());
        out.extend_from_slice(tag);
        out.extend_from_slice(b);
        out
    })?)
}

/// Checks the tag and decodes (validating) what follows.
pub fn unpack<T: Message>(tag: &[u8; 4], bytes: &[u8]) -> Result<T> {
    match bytes.get(..4) {
        Some(t) if t == tag => value(&bytes[4..]),
        Some(t) if t[..3] == tag[..3] => Err(Error::Corrupt(format!(
            "a message of layout version {:?}, this build reads {:?}",
            t[3] as char, tag[3] as char
        ))),
        _ => Err(Error::Corrupt(format!(
            "not an ipc-redis message of kind {:?}",
            String::from_utf8_lossy(&tag[..3])
        ))),
    }
}

/// Decodes (validating) plain `rkyv` bytes.
pub fn value<T: Message>(bytes: &[u8]) -> Result<T> {
    codec::from_slice(bytes).map_err(|e| Error::Corrupt(e.to_string()))
}

/// Encodes a value (no tag).
pub fn encode<T: Message>(v: &T) -> Result<Vec<u8>> {
    Ok(codec::encode_with(v, |b| b.to_vec())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_other_versions_are_refused_not_trusted() {
        let t = Task {
            exe: "x".into(),
            id: 7,
            reply: "r".into(),
            tramp: -5,
            target: 9,
            args: vec![1, 2, 3],
        };
        let b = pack(TASK, &t).unwrap();
        assert_eq!(unpack::<Task>(TASK, &b).unwrap(), t);
        // Another kind, another version, too short, garbage after the tag,
        // truncated.
        assert!(unpack::<Task>(REPLY, &b).is_err());
        let mut v2 = b.clone();
        v2[3] = b'2';
        let e = unpack::<Task>(TASK, &v2).unwrap_err().to_string();
        assert!(e.contains("version"), "{e}");
        assert!(unpack::<Task>(TASK, b"iR").is_err());
        let mut junk = TASK.to_vec();
        junk.extend_from_slice(&[0xff; 64]);
        assert!(unpack::<Task>(TASK, &junk).is_err());
        assert!(unpack::<Task>(TASK, &b[..b.len() - 3]).is_err());
    }
}
