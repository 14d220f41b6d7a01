//! Finding a `fn` again in a re-executed or forked copy of this program:
//! offsets from an anchor (position independent: ASLR shifts the whole
//! image), the executable's identity, and the check that an address lies
//! in its code segments before anything jumps there. Used by `Spawn`, the
//! fork server and pool tasks.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};

use super::target::{self, Outcome, TargetOutput};
use crate::codec::Message;
use crate::Result;

static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Records that [`init`](super::init) ran (spawning needs it).
pub(super) fn mark_init_called() {
    // Relaxed: read by this same thread's later spawns, or by threads it
    // starts afterwards (a happens-before edge).
    INIT_CALLED.store(true, Ordering::Relaxed);
}

/// Whether [`init`](super::init) ran.
pub(crate) fn init_called() -> bool {
    // Relaxed: see `mark_init_called`.
    INIT_CALLED.load(Ordering::Relaxed)
}

/// One byte whose address every offset is relative to. A static, not a
/// function: a small `fn` may be inlined into another crate, and its
/// address taken there is that crate's local copy, so a parent (in
/// generic code of the caller's crate) and its child (in ipc-core) would
/// measure from different anchors. A static has exactly one address.
static ANCHOR: u8 = 0;

/// The address all offsets are relative to (see [`ANCHOR`]).
#[inline(never)]
pub(crate) fn anchor() -> usize {
    std::ptr::addr_of!(ANCHOR) as usize
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
pub(super) fn text_segments() -> Result<&'static [(usize, usize)]> {
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
