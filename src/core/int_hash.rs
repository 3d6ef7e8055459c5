//! A hasher for maps keyed by numbers hsmux hands out itself (object and session handles,
//! soft-token object ids): a fixed 64-bit mix instead of SipHash, which costs more than the
//! rest of such a lookup and is re-run over every entry each time a table grows.
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

    /// MurmurHash3's 64-bit finaliser over the state and `n`: every bit of the result
    /// depends on every bit of the input. Both hashbrown (its per-bucket tag, the top seven
    /// bits) and dashmap (its shard, the seven bits below those) read high bits, so a
    /// multiply alone, whose high bits barely change between consecutive numbers, put
    /// sessions 1 and 2 in one shard: two threads then fought over its lock on every call.
    fn write_u64(&mut self, n: u64) {
        let mut x = self.0 ^ n;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 33;
        self.0 = x;
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

    /// dashmap's shard is `(hash << 7) >> (64 - log2(shards))`: consecutive handles must
    /// spread over the shards as well as over hashbrown's tags.
    #[test]
    fn consecutive_numbers_spread_over_dashmap_shards() {
        let shard = |n: u64| ((IntHash::default().hash_one(n) << 7) >> (64 - 3)) as usize;
        let mut per = [0usize; 8];
        for n in 1u64..=64 {
            per[shard(n)] += 1;
        }
        assert!(per.iter().all(|c| (3..=14).contains(c)), "{per:?}");
        let adjacent_apart = (1u64..=32).filter(|n| shard(*n) != shard(n + 1)).count();
        assert!(adjacent_apart >= 24, "{adjacent_apart} of 32");
    }

    #[test]
    fn a_tuple_key_hashes_both_parts() {
        let h = IntHash::default();
        assert_ne!(h.hash_one((0usize, 7u64)), h.hash_one((1usize, 7u64)));
        assert_ne!(h.hash_one((0usize, 7u64)), h.hash_one((0usize, 8u64)));
    }
}
