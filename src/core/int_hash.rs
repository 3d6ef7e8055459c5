//! A hasher for maps keyed by numbers hsmux hands out itself (object and session handles,
//! soft-token object ids): a multiply and a rotate instead of SipHash, which costs more than
//! the rest of such a lookup and is re-run over every entry each time a table grows.
//!
//! SipHash's keyed hashing defends a map whose keys an attacker chooses. These keys are
//! counters hsmux assigns; a consumer can only look up a number it passes, which cannot
//! pile entries into one bucket.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    /// Mixed so that the top bits (hashbrown's per-bucket tag) differ between consecutive
    /// numbers, not only the low ones.
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64)
    }
}

/// The `BuildHasher` of maps keyed by hsmux's own numbers.
pub type IntHash = BuildHasherDefault<IntHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn consecutive_numbers_differ_in_their_top_seven_bits() {
        let tags: HashSet<u64> = (1u64..=128)
            .map(|n| IntHash::default().hash_one(n) >> 57)
            .collect();
        // 128 counters spread over the 128 possible tags: most distinct, not one tag.
        assert!(tags.len() > 64, "{} distinct tags", tags.len());
    }

    #[test]
    fn a_tuple_key_hashes_both_parts() {
        let h = IntHash::default();
        assert_ne!(h.hash_one((0usize, 7u64)), h.hash_one((1usize, 7u64)));
        assert_ne!(h.hash_one((0usize, 7u64)), h.hash_one((0usize, 8u64)));
    }
}
