//! CRC32C (Castagnoli, reflected polynomial `0x82F63B78`), the checksum of
//! iSCSI and ext4: the SSE4.2 `crc32` instruction when the CPU has it
//! (detected once at run time), else a table, one byte at a time.
//!
//! [`update`] takes and returns the raw register: start from `!0` and
//! invert the final value (as `frame_crc` does).

/// The table for the byte-at-a-time fallback, built at compile time.
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Feeds `bytes` into the CRC register `crc`.
pub(crate) fn update(crc: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU supports SSE4.2 (checked just above).
        return unsafe { update_sse42(crc, bytes) };
    }
    update_table(crc, bytes)
}

fn update_table(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// # Safety
/// The CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn update_sse42(crc: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut c = u64::from(crc);
    let mut words = bytes.chunks_exact(8);
    // The intrinsics are unsafe functions before Rust 1.87 (the MSRV is
    // 1.85), safe ones in a function with the feature enabled after.
    #[allow(unused_unsafe)]
    for w in &mut words {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        // SAFETY: SSE4.2 is enabled for this function (see # Safety).
        c = unsafe { _mm_crc32_u64(c, v) };
    }
    let mut c = c as u32;
    #[allow(unused_unsafe)]
    for &b in words.remainder() {
        // SAFETY: as above.
        c = unsafe { _mm_crc32_u8(c, b) };
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc(b: &[u8]) -> u32 {
        !update(!0, b)
    }

    #[test]
    fn matches_the_standard_check_value() {
        // The check value of CRC-32C (RFC 3720, and every CRC catalogue).
        assert_eq!(crc(b"123456789"), 0xE306_9283);
        assert_eq!(crc(b""), 0);
        assert_eq!(!update_table(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn hardware_and_table_agree_at_every_length_and_split() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(update(!0, &data[..n]), update_table(!0, &data[..n]), "{n}");
            let (a, b) = data[..n].split_at(n / 3);
            assert_eq!(update(update(!0, a), b), update_table(!0, &data[..n]));
        }
    }
}
