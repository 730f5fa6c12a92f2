//! The compressed fast scan: RaBitQ-style codes with a per-row error bound, scanned with 4-bit
//! table lookups, so that only a short list needs the exact f32 re-rank.
//!
//! Each template is rotated by a seeded random orthogonal transform (two rounds of random signs and
//! a fast Walsh–Hadamard transform), and stored as the signs of its rotated coordinates: one bit a
//! dimension, 64 bytes at d=512. For a probe q, Σ sign(o'_i)·q'_i / √D scaled by the row's factor
//! 1/⟨ō,o'⟩ estimates ⟨o,q⟩ with an error bound that RaBitQ proves holds with high probability;
//! the probe is quantised to 5 bits a dimension and summed four dimensions at a time through
//! 16-entry tables, which is what SIMD byte shuffles do 32 or 64 rows at a time. Rows are laid out
//! in blocks of 32 for that: byte `v` of a block's pair `p` holds row `v`'s codes for groups 2p
//! (low nibble) and 2p+1 (high nibble).
//!
//! The codes, factors and the rotation's seed are derived from templates and are biometric data:
//! they live only in memory, are rebuilt at every open from a fresh random seed, and are zeroed
//! when dropped.
#![allow(unsafe_code)]

use zeroize::{Zeroize, Zeroizing};

/// Rows per code block.
pub(crate) const BLOCK: usize = 32;
/// Confidence of the per-row error bound, in standard deviations: the chance that a row's
/// estimate misses by more than its bound is below 2·exp(-ε0²/2) ≈ 7e-4 per row at 4, and it only
/// matters when that row is the true best one.
const EPSILON: f32 = 4.0;
/// The probe is quantised to this many levels, so that four of them summed fit a byte and two such
/// sums fit a byte too (4 · 31 · 2 = 248).
const LEVELS: f32 = 31.0;

/// A seeded random rotation of R^dim, padded to the next power of two.
pub(crate) struct Rotation {
    padded: usize,
    signs: Zeroizing<Vec<f32>>,
}

impl Rotation {
    pub(crate) fn new(dim: usize, seed: u64) -> Self {
        let padded = dim.next_power_of_two().max(8);
        let mut state = seed | 1;
        let signs = (0..2 * padded)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state & 1 == 0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        Self {
            padded,
            signs: Zeroizing::new(signs),
        }
    }

    pub(crate) fn padded(&self) -> usize {
        self.padded
    }

    /// Writes the rotation of `x` into `out` (length `padded`): x ↦ H·S2·H·S1·x, H normalised.
    pub(crate) fn apply(&self, x: &[f32], out: &mut [f32]) {
        out[..x.len()].copy_from_slice(x);
        out[x.len()..].fill(0.0);
        let scale = 1.0 / (self.padded as f32).sqrt();
        for round in 0..2 {
            let signs = &self.signs[round * self.padded..(round + 1) * self.padded];
            for (value, sign) in out.iter_mut().zip(signs) {
                *value *= sign;
            }
            walsh_hadamard(out);
            for value in out.iter_mut() {
                *value *= scale;
            }
        }
    }
}

fn walsh_hadamard(values: &mut [f32]) {
    let mut half = 1;
    while half < values.len() {
        for pair in values.chunks_exact_mut(2 * half) {
            let (left, right) = pair.split_at_mut(half);
            for (a, b) in left.iter_mut().zip(right.iter_mut()) {
                let (x, y) = (*a, *b);
                *a = x + y;
                *b = x - y;
            }
        }
        half *= 2;
    }
}

/// The codes of every gallery row, in blocks, with each row's factor and error bound.
pub(crate) struct Codes {
    padded: usize,
    /// Pairs of 4-dimension groups per row: padded / 8.
    pairs: usize,
    rows: usize,
    blocks: Zeroizing<Vec<u8>>,
    /// 1/⟨ō,o'⟩: scales the raw estimate.
    factor: Zeroizing<Vec<f32>>,
    /// The estimate's error bound for a unit probe.
    error: Zeroizing<Vec<f32>>,
    /// Number of set sign bits.
    ones: Zeroizing<Vec<f32>>,
    /// √ones · factor, for the quantisation part of the bound.
    root_ones_factor: Zeroizing<Vec<f32>>,
}

impl Codes {
    pub(crate) fn new(padded: usize) -> Self {
        Self {
            padded,
            pairs: padded / 8,
            rows: 0,
            blocks: Zeroizing::new(Vec::new()),
            factor: Zeroizing::new(Vec::new()),
            error: Zeroizing::new(Vec::new()),
            ones: Zeroizing::new(Vec::new()),
            root_ones_factor: Zeroizing::new(Vec::new()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.blocks.capacity() + self.factor.capacity() * 16
    }

    /// Makes room for `additional` rows without leaving unzeroed copies behind.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let rows = self.rows + additional;
        let bytes = rows.div_ceil(BLOCK) * BLOCK * self.pairs;
        grow(&mut self.blocks, bytes);
        grow(&mut self.factor, rows);
        grow(&mut self.error, rows);
        grow(&mut self.ones, rows);
        grow(&mut self.root_ones_factor, rows);
    }

    /// Appends the code of a rotated unit row.
    pub(crate) fn push(&mut self, rotated: &[f32]) {
        self.reserve(1);
        let row = self.rows;
        if row.is_multiple_of(BLOCK) {
            let len = self.blocks.len();
            self.blocks.resize(len + BLOCK * self.pairs, 0);
        }
        self.rows += 1;
        let mut code = Zeroizing::new(vec![0u8; self.pairs]);
        for (byte, values) in code.iter_mut().zip(rotated.chunks_exact(8)) {
            *byte = values
                .iter()
                .enumerate()
                .fold(0u8, |byte, (bit, value)| byte | (u8::from(*value >= 0.0) << bit));
        }
        let ones: u32 = code.iter().map(|byte| byte.count_ones()).sum();
        let abs_sum: f32 = rotated.iter().map(|value| value.abs()).sum();
        self.set_code(row, &code);
        // ⟨ō,o'⟩ for ō = sign(o')/√D; the RaBitQ bound is √(1/⟨ō,o'⟩² − 1)·ε0/√(D−1).
        let alignment = (abs_sum / (self.padded as f32).sqrt()).max(1e-6);
        let factor = 1.0 / alignment;
        self.factor.push(factor);
        let spread = (1.0 / (alignment * alignment) - 1.0).max(0.0).sqrt();
        self.error
            .push(spread * EPSILON / ((self.padded - 1) as f32).sqrt());
        self.ones.push(ones as f32);
        self.root_ones_factor.push((ones as f32).sqrt() * factor);
    }

    /// Moves the last row into `index` and drops the last, zeroing its bytes.
    pub(crate) fn swap_remove(&mut self, index: usize) {
        let last = self.rows - 1;
        if index != last {
            let code = self.code(last);
            self.set_code(index, &code);
            self.factor[index] = self.factor[last];
            self.error[index] = self.error[last];
            self.ones[index] = self.ones[last];
            self.root_ones_factor[index] = self.root_ones_factor[last];
        }
        self.set_code(last, &vec![0u8; self.pairs]);
        self.factor.pop();
        self.error.pop();
        self.ones.pop();
        self.root_ones_factor.pop();
        self.rows -= 1;
        if self.rows.is_multiple_of(BLOCK) {
            let len = self.blocks.len() - BLOCK * self.pairs;
            self.blocks[len..].zeroize();
            self.blocks.truncate(len);
        }
    }

    /// A row's code as one byte per pair: low nibble group 2p, high nibble group 2p+1.
    fn code(&self, row: usize) -> Zeroizing<Vec<u8>> {
        let base = (row / BLOCK) * BLOCK * self.pairs;
        Zeroizing::new(
            (0..self.pairs)
                .map(|pair| self.blocks[base + pair * BLOCK + row % BLOCK])
                .collect(),
        )
    }

    fn set_code(&mut self, row: usize, code: &[u8]) {
        let base = (row / BLOCK) * BLOCK * self.pairs;
        for (pair, byte) in code.iter().enumerate() {
            self.blocks[base + pair * BLOCK + row % BLOCK] = *byte;
        }
    }
}

fn grow<T: Copy + Default + Zeroize>(buffer: &mut Zeroizing<Vec<T>>, needed: usize) {
    if needed <= buffer.capacity() {
        return;
    }
    let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(buffer.capacity() * 2)));
    grown.extend_from_slice(buffer);
    *buffer = grown;
}

/// A probe prepared for the scan: its lookup tables and what turns table sums back into scores.
pub(crate) struct Query {
    /// `tables[16*g + n]`: the sum of the quantised probe over the set bits of nibble `n` of group `g`.
    tables: Zeroizing<Vec<u8>>,
    /// The same tables laid out for the AVX-512 kernel: per two pairs, 64 bytes of low-nibble
    /// tables (groups 4i, 4i, 4i+2, 4i+2 in its four lanes) and 64 of high (4i+1, 4i+1, 4i+3, 4i+3).
    wide_tables: Zeroizing<Vec<u8>>,
    low: f32,
    step: f32,
    sum: f32,
    scale: f32,
    /// Bound on the quantisation error per √(ones), already scaled like an estimate.
    quantisation: f32,
}

impl Query {
    pub(crate) fn new(rotated: &[f32]) -> Self {
        let low = rotated.iter().copied().fold(f32::INFINITY, f32::min);
        let high = rotated.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let step = ((high - low) / LEVELS).max(f32::MIN_POSITIVE);
        let levels: Zeroizing<Vec<u8>> = Zeroizing::new(
            rotated
                .iter()
                .map(|v| ((v - low) / step).round().clamp(0.0, LEVELS) as u8)
                .collect(),
        );
        let groups = rotated.len() / 4;
        let mut tables = Zeroizing::new(vec![0u8; groups * 16]);
        for (table, level) in tables.chunks_exact_mut(16).zip(levels.chunks_exact(4)) {
            // Each entry is the entry without its lowest set bit, plus that bit's level.
            for nibble in 1..16usize {
                let lowest = nibble.trailing_zeros() as usize;
                table[nibble] = table[nibble & (nibble - 1)] + level[lowest];
            }
        }
        let mut wide_tables = Zeroizing::new(Vec::with_capacity(groups * 32));
        for quad in tables.chunks_exact(64) {
            for lanes in [[0, 0, 2, 2], [1, 1, 3, 3]] {
                for group in lanes {
                    wide_tables.extend_from_slice(&quad[group * 16..(group + 1) * 16]);
                }
            }
        }
        let padded = rotated.len() as f32;
        let scale = 2.0 / padded.sqrt();
        Self {
            tables,
            wide_tables,
            low,
            step,
            sum: rotated.iter().sum(),
            scale,
            // Rounding errors are independent and uniform on ±step/2: their sum over `ones` terms
            // has standard deviation step·√(ones/12).
            quantisation: EPSILON * step / 12f32.sqrt() * scale,
        }
    }

    /// Upper bounds for the rows of `block` into `uppers`, and lower bounds into `lowers`; rows
    /// past the end of the gallery get -∞ for both. Full blocks go through fixed-length arrays,
    /// which the compiler turns into vector code.
    pub(crate) fn bounds(
        &self,
        codes: &Codes,
        block: usize,
        sums: &[u16; BLOCK],
        uppers: &mut [f32; BLOCK],
        lowers: &mut [f32; BLOCK],
    ) {
        let start = block * BLOCK;
        let end = (start + BLOCK).min(codes.rows);
        let full =
            |values: &[f32]| -> Option<[f32; BLOCK]> { values.get(start..start + BLOCK)?.try_into().ok() };
        if let (Some(ones), Some(factor), Some(error), Some(root)) = (
            full(&codes.ones),
            full(&codes.factor),
            full(&codes.error),
            full(&codes.root_ones_factor),
        ) {
            for i in 0..BLOCK {
                let (estimate, bound) = self.estimate(ones[i], factor[i], error[i], root[i], sums[i]);
                uppers[i] = estimate + bound;
                lowers[i] = estimate - bound;
            }
            return;
        }
        uppers.fill(f32::NEG_INFINITY);
        lowers.fill(f32::NEG_INFINITY);
        for (i, row) in (start..end).enumerate() {
            let (estimate, bound) = self.estimate(
                codes.ones[row],
                codes.factor[row],
                codes.error[row],
                codes.root_ones_factor[row],
                sums[i],
            );
            uppers[i] = estimate + bound;
            lowers[i] = estimate - bound;
        }
    }

    #[inline(always)]
    fn estimate(&self, ones: f32, factor: f32, error: f32, root: f32, sum: u16) -> (f32, f32) {
        let selected = self.low * ones + self.step * f32::from(sum);
        let estimate = (2.0 * selected - self.sum) * (self.scale / 2.0) * factor;
        (estimate, error + self.quantisation * root)
    }
}

/// Table sums for every row of `block`, through the fastest kernel this CPU runs.
pub(crate) fn block_sums(codes: &Codes, query: &Query, block: usize, out: &mut [u16; BLOCK]) {
    #[cfg(target_arch = "x86_64")]
    {
        if codes.pairs.is_multiple_of(2)
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: AVX-512F and AVX-512BW were detected on this CPU just above.
            unsafe { x86::block_sums_avx512(codes, query, block, out) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU just above.
            unsafe { x86::block_sums_avx2(codes, query, block, out) };
            return;
        }
    }
    block_sums_portable(codes, query, block, out);
}

/// The reference kernel: one lookup per nibble.
pub(crate) fn block_sums_portable(codes: &Codes, query: &Query, block: usize, out: &mut [u16; BLOCK]) {
    let base = block * BLOCK * codes.pairs;
    out.fill(0);
    for pair in 0..codes.pairs {
        let bytes = &codes.blocks[base + pair * BLOCK..base + (pair + 1) * BLOCK];
        let low = &query.tables[(2 * pair) * 16..(2 * pair + 1) * 16];
        let high = &query.tables[(2 * pair + 1) * 16..(2 * pair + 2) * 16];
        for (sum, byte) in out.iter_mut().zip(bytes) {
            *sum += u16::from(low[usize::from(byte & 15)]) + u16::from(high[usize::from(byte >> 4)]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Codes, Query, BLOCK};

    /// Writes the sums of rows 0, 2, 4, … (`even`) and 1, 3, 5, … (`odd`) into `out` in row order.
    #[target_feature(enable = "avx2")]
    fn interleave(even: __m256i, odd: __m256i, out: &mut [u16; BLOCK]) {
        let mut even_lanes = [0u16; 16];
        let mut odd_lanes = [0u16; 16];
        // SAFETY: both arrays are 32 bytes, the size of an unaligned 256-bit store.
        unsafe {
            _mm256_storeu_si256(even_lanes.as_mut_ptr().cast(), even);
            _mm256_storeu_si256(odd_lanes.as_mut_ptr().cast(), odd);
        }
        for lane in 0..16 {
            out[2 * lane] = even_lanes[lane];
            out[2 * lane + 1] = odd_lanes[lane];
        }
    }

    /// 32 rows at once: `vpshufb` looks up both nibbles of 32 code bytes in the pair's two tables;
    /// the two byte sums (each at most 124) add without overflow, then widen into 16-bit lanes.
    #[target_feature(enable = "avx2")]
    pub(super) fn block_sums_avx2(codes: &Codes, query: &Query, block: usize, out: &mut [u16; BLOCK]) {
        let base = block * BLOCK * codes.pairs;
        let blocks = &codes.blocks[base..base + BLOCK * codes.pairs];
        let tables = &query.tables[..codes.pairs * 32];
        let nibble = _mm256_set1_epi8(0x0f);
        let low_byte = _mm256_set1_epi16(0x00ff);
        let mut even = _mm256_setzero_si256();
        let mut odd = _mm256_setzero_si256();
        for (bytes, table) in blocks.chunks_exact(BLOCK).zip(tables.chunks_exact(32)) {
            // SAFETY: `bytes` and `table` are exactly 32 bytes long (chunks_exact), which is what
            // each unaligned 256-bit load reads.
            let (codes_vec, both) = unsafe {
                (
                    _mm256_loadu_si256(bytes.as_ptr().cast()),
                    _mm256_loadu_si256(table.as_ptr().cast()),
                )
            };
            // Lane 0 of `both` is the low table, lane 1 the high table; broadcast each to both lanes.
            let low_table = _mm256_permute2x128_si256(both, both, 0x00);
            let high_table = _mm256_permute2x128_si256(both, both, 0x11);
            let lows = _mm256_and_si256(codes_vec, nibble);
            let highs = _mm256_and_si256(_mm256_srli_epi16(codes_vec, 4), nibble);
            let sums = _mm256_add_epi8(
                _mm256_shuffle_epi8(low_table, lows),
                _mm256_shuffle_epi8(high_table, highs),
            );
            even = _mm256_add_epi16(even, _mm256_and_si256(sums, low_byte));
            odd = _mm256_add_epi16(odd, _mm256_srli_epi16(sums, 8));
        }
        interleave(even, odd, out);
    }
    /// Two pairs of 32 rows at once in 512-bit registers: lanes 0–1 hold pair 2i, lanes 2–3 pair
    /// 2i+1; the halves are added together at the end.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn block_sums_avx512(codes: &Codes, query: &Query, block: usize, out: &mut [u16; BLOCK]) {
        let base = block * BLOCK * codes.pairs;
        let blocks = &codes.blocks[base..base + BLOCK * codes.pairs];
        let nibble = _mm512_set1_epi8(0x0f);
        let low_byte = _mm512_set1_epi16(0x00ff);
        let mut even = _mm512_setzero_si512();
        let mut odd = _mm512_setzero_si512();
        for (bytes, tables) in blocks.chunks_exact(64).zip(query.wide_tables.chunks_exact(128)) {
            // SAFETY: `bytes` is exactly 64 bytes and `tables` exactly 128 (chunks_exact), so each
            // unaligned 512-bit load reads within them.
            let (codes_vec, low_table, high_table) = unsafe {
                (
                    _mm512_loadu_si512(bytes.as_ptr().cast()),
                    _mm512_loadu_si512(tables.as_ptr().cast()),
                    _mm512_loadu_si512(tables.as_ptr().add(64).cast()),
                )
            };
            let lows = _mm512_and_si512(codes_vec, nibble);
            let highs = _mm512_and_si512(_mm512_srli_epi16(codes_vec, 4), nibble);
            let sums = _mm512_add_epi8(
                _mm512_shuffle_epi8(low_table, lows),
                _mm512_shuffle_epi8(high_table, highs),
            );
            even = _mm512_add_epi16(even, _mm512_and_si512(sums, low_byte));
            odd = _mm512_add_epi16(odd, _mm512_srli_epi16(sums, 8));
        }
        let even = _mm256_add_epi16(_mm512_castsi512_si256(even), _mm512_extracti64x4_epi64(even, 1));
        let odd = _mm256_add_epi16(_mm512_castsi512_si256(odd), _mm512_extracti64x4_epi64(odd, 1));
        interleave(even, odd, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_unit(state: &mut u64, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                ((*state % 20001) as f32 / 10000.0) - 1.0
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    #[test]
    fn the_rotation_preserves_inner_products() {
        let rotation = Rotation::new(100, 42);
        let mut state = 9;
        let (a, b) = (random_unit(&mut state, 100), random_unit(&mut state, 100));
        let (mut ra, mut rb) = (vec![0.0; rotation.padded()], vec![0.0; rotation.padded()]);
        rotation.apply(&a, &mut ra);
        rotation.apply(&b, &mut rb);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!((dot(&a, &b) - dot(&ra, &rb)).abs() < 1e-5);
        assert!((dot(&ra, &ra) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn simd_table_sums_equal_the_portable_ones_bit_for_bit() {
        let dim = 256;
        let rotation = Rotation::new(dim, 7);
        let mut codes = Codes::new(rotation.padded());
        let mut state = 3;
        let mut rotated = vec![0.0; rotation.padded()];
        for _ in 0..(3 * BLOCK + 5) {
            rotation.apply(&random_unit(&mut state, dim), &mut rotated);
            codes.push(&rotated);
        }
        rotation.apply(&random_unit(&mut state, dim), &mut rotated);
        let query = Query::new(&rotated);
        for block in 0..codes.len().div_ceil(BLOCK) {
            let (mut portable, mut best) = ([0u16; BLOCK], [0u16; BLOCK]);
            block_sums_portable(&codes, &query, block, &mut portable);
            block_sums(&codes, &query, block, &mut best);
            assert_eq!(portable, best, "block {block}");
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx2") {
                    let mut avx2 = [0u16; BLOCK];
                    // SAFETY: AVX2 was detected just above.
                    unsafe { x86::block_sums_avx2(&codes, &query, block, &mut avx2) };
                    assert_eq!(portable, avx2, "avx2, block {block}");
                }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
                    let mut avx512 = [0u16; BLOCK];
                    // SAFETY: AVX-512F and BW were detected just above.
                    unsafe { x86::block_sums_avx512(&codes, &query, block, &mut avx512) };
                    assert_eq!(portable, avx512, "avx512, block {block}");
                }
            }
        }
    }

    #[test]
    fn estimates_fall_within_their_bounds() {
        let dim = 512;
        let rotation = Rotation::new(dim, 11);
        let mut codes = Codes::new(rotation.padded());
        let mut state = 5;
        let mut rows = Vec::new();
        let mut rotated = vec![0.0; rotation.padded()];
        for _ in 0..2000 {
            let row = random_unit(&mut state, dim);
            rotation.apply(&row, &mut rotated);
            codes.push(&rotated);
            rows.push(row);
        }
        let probe = random_unit(&mut state, dim);
        rotation.apply(&probe, &mut rotated);
        let query = Query::new(&rotated);
        let mut outside = 0;
        let mut sums = [0u16; BLOCK];
        let (mut uppers, mut lowers) = ([0f32; BLOCK], [0f32; BLOCK]);
        for (row, values) in rows.iter().enumerate() {
            if row.is_multiple_of(BLOCK) {
                block_sums(&codes, &query, row / BLOCK, &mut sums);
                query.bounds(&codes, row / BLOCK, &sums, &mut uppers, &mut lowers);
            }
            let estimate = (uppers[row % BLOCK] + lowers[row % BLOCK]) / 2.0;
            let bound = (uppers[row % BLOCK] - lowers[row % BLOCK]) / 2.0;
            let exact: f32 = values.iter().zip(&probe).map(|(a, b)| a * b).sum();
            outside += usize::from((estimate - exact).abs() > bound);
            assert!(bound < 0.3, "bound {bound} too loose to be useful");
        }
        assert!(outside <= 2, "{outside} of 2000 estimates outside their bound");
    }

    #[test]
    fn swap_remove_keeps_the_other_codes() {
        let rotation = Rotation::new(64, 1);
        let mut codes = Codes::new(rotation.padded());
        let mut state = 8;
        let mut rotated = vec![0.0; rotation.padded()];
        let mut kept = Vec::new();
        for _ in 0..(BLOCK + 3) {
            rotation.apply(&random_unit(&mut state, 64), &mut rotated);
            codes.push(&rotated);
            kept.push(rotated.clone());
        }
        let expected_last = codes.code(BLOCK + 2);
        codes.swap_remove(4);
        assert_eq!(*codes.code(4), *expected_last);
        assert_eq!(codes.len(), BLOCK + 2);
        for _ in 0..3 {
            codes.swap_remove(0);
        }
        assert_eq!(codes.len(), BLOCK - 1);
        assert_eq!(codes.blocks.len(), BLOCK * codes.pairs);
    }
}
