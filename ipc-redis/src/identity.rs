//! The executable's identity across hosts: its GNU build id (a hash the
//! linker writes into the binary), else a hash of the whole file.
//!
//! `Spawn` checks (device, inode, size, mtime), which is right on one
//! host (the same file, unchanged) but differs for the same binary
//! copied to another host; a task must run on any host that has the same
//! build, and on no other.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

use crate::{Error, Result};

/// This executable's identity: `build-id:<hex>` from its ELF build-id
/// note, or `fnv:<size>:<hash>` of its bytes when it has none. Tasks carry
/// it; a worker whose identity differs refuses them
/// ([`Error::WrongExecutable`]).
///
/// # Errors
/// [`Error::Core`] with `Io` if `/proc/self/exe` cannot be read.
///
/// # Examples
///
/// ```
/// let id = ipc_redis::executable_identity()?;
/// assert!(id.starts_with("build-id:") || id.starts_with("fnv:"));
/// # Ok::<(), ipc_redis::Error>(())
/// ```
pub fn executable_identity() -> Result<&'static str> {
    static ID: OnceLock<String> = OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(id);
    }
    let id = compute().map_err(io)?;
    Ok(ID.get_or_init(|| id))
}

fn io(e: std::io::Error) -> Error {
    crate::io_error(&e)
}

fn compute() -> std::io::Result<String> {
    let mut f = File::open("/proc/self/exe")?;
    if let Some(id) = build_id(&mut f)? {
        return Ok(format!("build-id:{}", hex(&id)));
    }
    // FNV-1a over the file.
    f.seek(SeekFrom::Start(0))?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        for b in &buf[..n] {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    Ok(format!("fnv:{size}:{h:016x}"))
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn read_at(f: &mut File, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    f.seek(SeekFrom::Start(off))?;
    f.read_exact(&mut b)?;
    Ok(b)
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// The `NT_GNU_BUILD_ID` note of a 64-bit little-endian ELF file, if any.
/// Every offset and size is checked before use.
fn build_id(f: &mut File) -> std::io::Result<Option<Vec<u8>>> {
    let h = read_at(f, 0, 64)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return Ok(None);
    }
    let (phoff, phentsize, phnum) = (u64_at(&h, 0x20), u16_at(&h, 0x36), u16_at(&h, 0x38));
    if phentsize < 56 || phnum == 0 {
        return Ok(None);
    }
    let ph = read_at(f, phoff, usize::from(phentsize) * usize::from(phnum))?;
    for i in 0..usize::from(phnum) {
        let p = &ph[i * usize::from(phentsize)..];
        let (ptype, off, size, align) = (u32_at(p, 0), u64_at(p, 8), u64_at(p, 32), u64_at(p, 48));
        const PT_NOTE: u32 = 4;
        if ptype != PT_NOTE || size > 1 << 20 {
            continue;
        }
        let notes = read_at(f, off, size as usize)?;
        let align = if align == 8 { 8 } else { 4 };
        if let Some(id) = find_gnu_build_id(&notes, align) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

fn find_gnu_build_id(notes: &[u8], align: usize) -> Option<Vec<u8>> {
    let pad = |n: usize| n.checked_add(align - 1).map(|x| x & !(align - 1));
    let mut i = 0usize;
    while i.checked_add(12)? <= notes.len() {
        let namesz = u32_at(notes, i) as usize;
        let descsz = u32_at(notes, i + 4) as usize;
        let ntype = u32_at(notes, i + 8);
        let name_at = i + 12;
        let desc_at = name_at.checked_add(pad(namesz)?)?;
        let end = desc_at.checked_add(pad(descsz)?)?;
        if desc_at.checked_add(descsz)? > notes.len() {
            return None;
        }
        const NT_GNU_BUILD_ID: u32 = 3;
        if ntype == NT_GNU_BUILD_ID && &notes[name_at..name_at + namesz] == b"GNU\0" && descsz > 0 {
            return Some(notes[desc_at..desc_at + descsz].to_vec());
        }
        i = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_id_note_is_found_and_bad_notes_are_not_trusted() {
        let mut n = Vec::new();
        // A note of another type first, then the build id.
        for (ty, name, desc) in [
            (1u32, &b"GNU\0"[..], &[9u8; 16][..]),
            (3, b"GNU\0", &[0xab; 20]),
        ] {
            n.extend_from_slice(&(name.len() as u32).to_le_bytes());
            n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            n.extend_from_slice(&ty.to_le_bytes());
            n.extend_from_slice(name);
            n.extend_from_slice(desc);
        }
        assert_eq!(find_gnu_build_id(&n, 4), Some(vec![0xab; 20]));
        // Truncated, or sizes pointing past the end: nothing, no panic.
        assert_eq!(find_gnu_build_id(&n[..n.len() - 1], 4), None);
        let mut huge = n.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(find_gnu_build_id(&huge, 4), None);
        assert_eq!(find_gnu_build_id(&[0; 5], 4), None);
    }

    #[test]
    fn identity_is_stable_within_a_run() {
        let a = executable_identity().unwrap();
        assert_eq!(a, executable_identity().unwrap());
    }
}
