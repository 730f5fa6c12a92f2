//! Marsaglia's xorshift64 generator (shifts 13, 7, 17): a reproducible stream of bits from a
//! seed, for the fast scan's random rotation and for test data. It is not a source of secrets:
//! whoever knows the seed knows every output, so secret values come from `ring`'s generator.

/// The generator's state. A zero state would stay zero forever, so [`XorShift64::new`] sets the
/// lowest bit of the seed.
pub(crate) struct XorShift64(u64);

impl XorShift64 {
    /// A generator seeded with `seed | 1`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64 bits of the stream.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut state = self.0;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        self.0 = state;
        state
    }

    /// A value in [-1, 1), uniform over multiples of 2⁻²³: the top 24 bits of the next output,
    /// scaled by a power of two and shifted, so every step is exact in f32.
    #[cfg(test)]
    pub(crate) fn next_signed_unit(&mut self) -> f32 {
        let top = (self.next_u64() >> 40) as f32;
        top / (1u32 << 23) as f32 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first step from state 1 by hand: 1 → 0x2001 (<< 13) → 0x2041 (>> 7) → 0x4082_2041
    /// (<< 17). Seed 0 becomes 1. The fast scan's rotations are drawn from this stream.
    #[test]
    fn the_stream_from_one_is_the_worked_one() {
        let mut generator = XorShift64::new(0);
        assert_eq!(generator.next_u64(), 0x4082_2041);
        assert_eq!(generator.next_u64(), 0x1000_4106_0c01_1441);
        assert_eq!(generator.next_u64(), 0x9b1e_842f_6e86_2629);
    }

    #[test]
    fn signed_units_stay_in_range_and_reach_both_ends() {
        let mut generator = XorShift64::new(7);
        let values: Vec<f32> = (0..10_000).map(|_| generator.next_signed_unit()).collect();
        assert!(values.iter().all(|v| (-1.0..1.0).contains(v)));
        assert!(values.iter().any(|v| *v < -0.99) && values.iter().any(|v| *v > 0.99));
    }
}
