//! The block descriptor: the 24 bytes that travel through the ring for a
//! message out of line (entry, generation, length and where in the block
//! the message starts, producer, magic).

use super::DESC_LEN;

/// What travels through the ring for a block: which entry, which
/// generation of it, how many bytes from which offset in the block, and
/// the producer's tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Desc {
    pub entry: u32,
    pub gen: u32,
    pub len: u64,
    /// Where the message starts in the block (below a page; see
    /// `blocks::offset_for`).
    pub at: u32,
    pub producer: u32,
}

/// The length word: the length in its low 48 bits, the offset above.
const LEN_BITS: u32 = 48;

impl Desc {
    pub fn encode(&self) -> [u8; DESC_LEN] {
        let mut b = [0u8; DESC_LEN];
        b[0..4].copy_from_slice(&self.entry.to_le_bytes());
        b[4..8].copy_from_slice(&self.gen.to_le_bytes());
        let word = self.len & ((1 << LEN_BITS) - 1) | u64::from(self.at) << LEN_BITS;
        b[8..16].copy_from_slice(&word.to_le_bytes());
        b[16..20].copy_from_slice(&self.producer.to_le_bytes());
        b[20..24].copy_from_slice(b"BLK1");
        b
    }

    /// Parses a descriptor read from a ring slot (hostile bytes).
    pub fn decode(b: &[u8]) -> Option<Desc> {
        if b.len() != DESC_LEN || &b[20..24] != b"BLK1" {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&b[8..16]);
        let word = u64::from_le_bytes(len);
        Some(Desc {
            entry: u32_at(0),
            gen: u32_at(4),
            len: word & ((1 << LEN_BITS) - 1),
            at: (word >> LEN_BITS) as u32,
            producer: u32_at(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_carries_its_offset_in_the_block_beside_its_length() {
        let d = Desc {
            entry: 3,
            gen: 7,
            len: (1 << 40) + 5,
            at: 4080,
            producer: 9,
        };
        assert_eq!(Desc::decode(&d.encode()), Some(d));
        assert_eq!(Desc::decode(&d.encode()[..23]), None);
    }
}
