//! The compressed fast scan: RaBitQ-style codes with a per-row error bound, scanned with 4-bit
//! table lookups, so that only a short list needs the exact f32 re-rank.
//!
//! Each template is rotated by a seeded random orthogonal transform (two rounds of random signs and
//! a fast Walsh–Hadamard transform) and kept as the signs of its rotated coordinates, one bit a
//! dimension, except for the last eight: their byte carries the row's alignment code instead, so a
//! row costs exactly `padded / 8` bytes (64 at d=512) and the scan reads one stream. For a probe q,
//! x = Σ sign(o'_i)·q'_i / √Dc over the Dc coded dimensions, scaled by the row's factor
//! 1/⟨ō,o'⟩, estimates ⟨o,q⟩ with an error bound that RaBitQ proves holds with high probability.
//!
//! The probe is quantised to 4 bits a dimension, symmetrically (q'_i ≈ −R + step·v_i), so that a
//! cleared bit can look up L − v_i for −q'_i and no per-row popcount is needed; four dimensions are
//! summed at a time through 16-entry tables, which is what SIMD byte shuffles do 32 rows at once.
//!
//! Layout, per block of 32 rows and per pair `p` of 4-dimension groups (2p, 2p+1), 32 bytes:
//! byte `j` (j < 16) holds group 2p of row `j` (low nibble) and of row `j + 16` (high nibble);
//! byte `16 + j` the same for group 2p+1. The last pair's 32 bytes are the rows' alignment codes.
//! A probe's tables follow the same order: per pair, group 2p's table then group 2p+1's, and the
//! last pair's tables are zero so that the alignment bytes add nothing.
//!
//! The codes, factors and the rotation's seed are derived from templates and are biometric data:
//! they live only in memory, are rebuilt at every open from a fresh random seed, and are zeroed
//! when dropped.
#![allow(unsafe_code)]

use std::ops::Range;

use zeroize::Zeroize;

use super::set_bits;

use crate::wiped::WipedVec;
use crate::xorshift::XorShift64;

/// Rows per code block.
pub(crate) const BLOCK: usize = 32;
/// Confidence of the per-row error bound, in standard deviations: the chance that a row's
/// estimate misses by more than its bound is below 2·exp(-ε0²/2) ≈ 7e-4 per row at 4, and it only
/// matters when that row is the true best one.
const EPSILON: f32 = 4.0;
/// The probe is quantised to this many levels, so that a table entry (four of them summed) is at
/// most 60 and four entries summed still fit a byte (240): the kernel adds four pairs' lookups in
/// bytes before it widens them, which is a fifth fewer instructions than widening every pair.
const LEVELS: u8 = 15;
/// The alignment code `c` says the row's factor f = 1/⟨ō,o'⟩ lies in [1 + c·STEP, 1 + (c+1)·STEP].
const FACTOR_STEP: f32 = 2.0 / 254.0;
/// Codes from this one up mean a factor above 3 (a row the rotation left nearly flat): no useful
/// bound, so the row is always re-ranked. Random rotations make this vanishingly rare.
const UNBOUNDED: u8 = 254;
/// Slack for float rounding in the bounds, so that kernels that round differently stay safe.
const ROUNDING_SLACK: f32 = 1e-5;

/// A seeded random rotation of R^dim, padded to the next power of two.
pub(crate) struct Rotation {
    padded: usize,
    signs: WipedVec<f32>,
}

impl Rotation {
    pub(crate) fn new(dim: usize, seed: u64) -> Self {
        // At least two pairs, so that one carries codes beside the alignment codes.
        let padded = dim.next_power_of_two().max(16);
        let mut generator = XorShift64::new(seed);
        let signs = (0..2 * padded)
            .map(|_| if generator.next_u64() & 1 == 0 { 1.0 } else { -1.0 })
            .collect();
        Self {
            padded,
            signs: WipedVec::new(signs),
        }
    }

    pub(crate) fn padded(&self) -> usize {
        self.padded
    }

    /// Writes the rotation of `x` into `out` (length `padded`): x ↦ H·S2·H·S1·x, H normalised.
    /// Every kernel computes the same operations in the same order, so all give the same bits.
    pub(crate) fn apply(&self, x: &[f32], out: &mut [f32]) {
        super::kernels::with_wide_vectors(|| self.apply_portable(x, out));
    }

    #[inline(always)]
    fn apply_portable(&self, x: &[f32], out: &mut [f32]) {
        out[..x.len()].copy_from_slice(x);
        out[x.len()..].fill(0.0);
        for round in 0..2 {
            let signs = &self.signs[round * self.padded..(round + 1) * self.padded];
            for (value, sign) in out.iter_mut().zip(signs) {
                *value *= sign;
            }
            walsh_hadamard(out);
        }
        // Both rounds' normalisation at once: 1/padded is a power of two, so this is exact.
        let scale = 1.0 / self.padded as f32;
        for value in out.iter_mut() {
            *value *= scale;
        }
    }
}

/// The fast Walsh–Hadamard transform (unnormalised) of `values`, a power of two long, in place:
/// stage h (1, 2, 4, …) replaces each pair (a, b) h apart, in blocks of 2h, with (a + b, a − b).
/// Every kernel makes exactly these additions and subtractions, so all give the same bits.
#[inline(always)]
fn walsh_hadamard(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if values.len() >= x86::HADAMARD_CHUNK && avx2() {
            // SAFETY: AVX2 was detected on this CPU.
            unsafe { x86::walsh_hadamard_avx2(values) };
            return;
        }
    }
    walsh_hadamard_portable(values);
}

fn walsh_hadamard_portable(values: &mut [f32]) {
    let mut h = 1;
    while h < values.len() {
        hadamard_stage(values, h);
        h *= 2;
    }
}

/// One stage of the transform: pairs `h` apart in blocks of `2h`.
#[inline(always)]
fn hadamard_stage(values: &mut [f32], h: usize) {
    for block in values.chunks_exact_mut(2 * h) {
        let (low, high) = block.split_at_mut(h);
        for (a, b) in low.iter_mut().zip(high.iter_mut()) {
            let (x, y) = (*a, *b);
            *a = x + y;
            *b = x - y;
        }
    }
}

/// The codes of every gallery row, in blocks.
pub(crate) struct Codes {
    /// The rotation's dimension, a power of two.
    padded: usize,
    /// The original dimension, for the error bound.
    dim: usize,
    /// Pairs of 4-dimension groups per row, the last one holding alignment codes: padded / 8.
    pairs: usize,
    rows: usize,
    blocks: WipedVec<u8>,
}

impl Codes {
    pub(crate) fn new(padded: usize, dim: usize) -> Self {
        Self {
            padded,
            dim,
            // `padded` is a power of two of at least 16, so there are at least two pairs, and an
            // even number of them, as the kernels take two at a time.
            pairs: padded / 8,
            rows: 0,
            blocks: WipedVec::default(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows
    }

    pub(crate) fn blocks(&self) -> usize {
        self.rows.div_ceil(BLOCK)
    }

    /// Bytes per block.
    fn block_bytes(&self) -> usize {
        BLOCK * self.pairs
    }

    /// Dimensions that carry sign bits.
    fn coded_dims(&self) -> usize {
        (self.pairs - 1) * 8
    }

    /// Where a random rotation puts a row's factor f = 1/⟨ō,o'⟩: √(π/2)·√(padded / Dc). The
    /// bound on √(f² − 1), which is concave, uses its tangent there: above it everywhere, and
    /// tight where the rows are.
    fn typical_factor(&self) -> f32 {
        (std::f32::consts::FRAC_PI_2 * self.padded as f32 / self.coded_dims() as f32).sqrt()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.blocks.capacity()
    }

    /// The code blocks as they sit in memory.
    #[cfg(test)]
    pub(crate) fn raw_bytes(&self) -> &[u8] {
        &self.blocks
    }

    /// Makes room for `additional` rows without leaving unzeroed copies behind.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let rows = self.rows + additional;
        let needed = rows.div_ceil(BLOCK) * self.block_bytes();
        grow(&mut self.blocks, needed);
    }

    /// Appends the code of a rotated unit row.
    pub(crate) fn push(&mut self, rotated: &[f32]) {
        super::kernels::with_wide_vectors(|| self.push_portable(rotated));
    }

    #[inline(always)]
    fn push_portable(&mut self, rotated: &[f32]) {
        self.reserve(1);
        let row = self.rows;
        if row.is_multiple_of(BLOCK) {
            let len = self.blocks.len() + self.block_bytes();
            self.blocks.resize(len, 0);
        }
        self.rows += 1;
        let coded = &rotated[..self.coded_dims()];
        for (group, values) in coded.chunks_exact(4).enumerate() {
            let nibble = values.iter().enumerate().fold(0u8, |nibble, (bit, value)| {
                nibble | (u8::from(*value >= 0.0) << bit)
            });
            self.set_nibble(row, group, nibble);
        }
        // Eight lanes, summed in a fixed order, so that it vectorises and every kernel agrees.
        let mut lanes = [0f32; 8];
        for eight in coded.chunks_exact(8) {
            for (lane, value) in lanes.iter_mut().zip(eight) {
                *lane += value.abs();
            }
        }
        let abs_sum: f32 = lanes.iter().sum();
        // ⟨ō,o'⟩ for ō = sign(o')/√Dc over the coded dimensions.
        let alignment = abs_sum / (self.coded_dims() as f32).sqrt();
        let factor = 1.0 / alignment.max(f32::MIN_POSITIVE);
        let code = ((factor - 1.0) / FACTOR_STEP).floor();
        let code = if (0.0..f32::from(UNBOUNDED)).contains(&code) {
            // In range: the float-to-int conversion is exact for these small whole numbers.
            code as u8
        } else if code < 0.0 {
            0
        } else {
            UNBOUNDED
        };
        let at = self.alignment_at(row);
        self.blocks[at] = code;
    }

    /// Moves the last row into `index` and drops the last, zeroing its bytes.
    pub(crate) fn swap_remove(&mut self, index: usize) {
        let last = self.rows - 1;
        let groups = 2 * (self.pairs - 1);
        for group in 0..groups {
            let nibble = self.nibble(last, group);
            self.set_nibble(index, group, nibble);
            self.set_nibble(last, group, 0);
        }
        let (from, to) = (self.alignment_at(last), self.alignment_at(index));
        self.blocks[to] = self.blocks[from];
        self.blocks[from] = 0;
        self.rows -= 1;
        if self.rows.is_multiple_of(BLOCK) {
            let len = self.blocks.len() - self.block_bytes();
            self.blocks[len..].zeroize();
            self.blocks.truncate(len);
        }
    }

    /// Where a row's nibble of `group` lives, and whether it is the high nibble.
    fn nibble_at(&self, row: usize, group: usize) -> (usize, bool) {
        let base = (row / BLOCK) * self.block_bytes();
        let in_block = row % BLOCK;
        let byte = base + (group / 2) * BLOCK + (group % 2) * 16 + in_block % 16;
        (byte, in_block >= 16)
    }

    fn nibble(&self, row: usize, group: usize) -> u8 {
        let (byte, high) = self.nibble_at(row, group);
        if high {
            self.blocks[byte] >> 4
        } else {
            self.blocks[byte] & 15
        }
    }

    fn set_nibble(&mut self, row: usize, group: usize, nibble: u8) {
        let (byte, high) = self.nibble_at(row, group);
        let slot = &mut self.blocks[byte];
        *slot = if high {
            (*slot & 0x0f) | (nibble << 4)
        } else {
            (*slot & 0xf0) | nibble
        };
    }

    fn alignment_at(&self, row: usize) -> usize {
        (row / BLOCK) * self.block_bytes() + (self.pairs - 1) * BLOCK + row % BLOCK
    }

    fn block(&self, block: usize) -> &[u8] {
        let bytes = self.block_bytes();
        &self.blocks[block * bytes..(block + 1) * bytes]
    }
}

/// Makes room for `needed` values in all, moving them into a fresh buffer (on huge pages) and
/// zeroing the old one: a `Vec` that grows by itself frees its old buffer unzeroed.
pub(super) fn grow<T: zeroize::DefaultIsZeroes>(buffer: &mut WipedVec<T>, needed: usize) {
    if needed <= buffer.capacity() {
        return;
    }
    let mut grown = WipedVec::with_capacity(needed.max(buffer.capacity() * 2));
    super::huge_pages::advise(grown.spare_capacity_mut());
    grown.extend_from_slice(buffer);
    *buffer = grown;
}

/// A probe prepared for the scan: its lookup tables and what turns table sums into bounds.
pub(crate) struct Query {
    /// 32 bytes a pair: group 2p's 16-entry table, then group 2p+1's; zero for the last pair.
    /// Entry `n` is Σ over the group's four dimensions of v_i where bit i of n is set, L − v_i
    /// where it is clear.
    tables: WipedVec<u8>,
    /// x̂ = alpha·S + beta for a table sum S.
    alpha: f32,
    beta: f32,
    /// A row with alignment code c and x̂ gets estimate (1 + c·STEP + STEP/2)·x̂ and bound
    /// `bound_base + bound_per_factor·(1 + c·STEP)`.
    bound_base: f32,
    bound_per_factor: f32,
}

/// The scan's verdict on one block of 32 rows: bounds for each, and which rows pass the two
/// floors the caller gave (bit `i` for row `i` of the block).
pub(crate) struct BlockBounds {
    pub uppers: [f32; BLOCK],
    pub lowers: [f32; BLOCK],
    /// Rows whose upper bound reaches `floor`.
    pub candidates: u32,
    /// Rows whose lower bound exceeds `lower_floor`.
    pub raises: u32,
    /// The highest upper bound in the block.
    pub max_upper: f32,
}

impl Query {
    pub(crate) fn new(codes: &Codes, rotated: &[f32]) -> Self {
        let coded_dims = codes.coded_dims();
        let coded = &rotated[..coded_dims];
        let range = coded
            .iter()
            .fold(0f32, |max, value| max.max(value.abs()))
            .max(f32::MIN_POSITIVE);
        let step = 2.0 * range / f32::from(LEVELS);
        let levels = WipedVec::new(
            coded
                .iter()
                .map(|value| {
                    // In [0, LEVELS] after the clamp, so the conversion is exact.
                    ((value + range) / step).round().clamp(0.0, f32::from(LEVELS)) as u8
                })
                .collect(),
        );
        // The pairs past the coded ones (the alignment codes, and any padding) keep zero tables.
        let mut tables = WipedVec::new(vec![0u8; codes.pairs * 32]);
        for (group, level) in levels.chunks_exact(4).enumerate() {
            let start = (group / 2) * 32 + (group % 2) * 16;
            let table = &mut tables[start..start + 16];
            // Entry 0 has every bit clear; each entry is the one without its lowest set bit, with
            // that dimension's L − v swapped for v.
            table[0] = level.iter().map(|v| LEVELS - v).sum();
            for nibble in 1..16usize {
                let lowest = nibble.trailing_zeros() as usize;
                table[nibble] = table[nibble & (nibble - 1)] + 2 * level[lowest] - LEVELS;
            }
        }
        let root_coded = (coded_dims as f32).sqrt();
        // Σ sign_i·q̂_i = step·S − range·Dc, divided by √Dc.
        let alpha = step / root_coded;
        let beta = -range * root_coded;
        // Rounding errors are independent and uniform on ±step/2: their signed sum over Dc terms,
        // divided by √Dc, has standard deviation step/√12.
        let quantisation = EPSILON * step / 12f32.sqrt();
        // RaBitQ: |error| ≤ √(f² − 1)·ε0/√(d − 1), with √(f² − 1) ≤ g0 + g0'·(f − f0) for the
        // tangent at the typical factor f0.
        let spread = EPSILON / ((codes.dim.max(2) - 1) as f32).sqrt();
        let tangent = codes.typical_factor();
        let g0 = (tangent * tangent - 1.0).sqrt();
        let slope = tangent / g0;
        // With f_lo = 1 + c·STEP and f ≤ f_hi = f_lo + STEP, the bound is
        //   spread·(g0 + slope·(f_hi − f0)) + f_hi·quantisation + (STEP/2)·|x|   (|x| ≤ 1)
        let bound_per_factor = spread * slope + quantisation;
        let bound_base = spread * (g0 - slope * tangent)
            + bound_per_factor * FACTOR_STEP
            + FACTOR_STEP / 2.0
            + ROUNDING_SLACK;
        Self {
            tables,
            alpha,
            beta,
            bound_base,
            bound_per_factor,
        }
    }

    /// The estimate and bound of one row, from its table sum and alignment code.
    #[inline(always)]
    fn estimate(&self, sum: u16, code: u8) -> (f32, f32) {
        let x = self.alpha * f32::from(sum) + self.beta;
        let factor = 1.0 + f32::from(code) * FACTOR_STEP;
        let estimate = (factor + FACTOR_STEP / 2.0) * x;
        let bound = self.bound_base + self.bound_per_factor * factor;
        (estimate, bound)
    }

    /// Bounds for every row of `block`, and the rows that pass `floor` (upper bound) and
    /// `lower_floor` (lower bound). Rows past the end of the gallery get -∞ and never pass.
    #[cfg(test)]
    pub(crate) fn bounds(&self, codes: &Codes, block: usize, floor: f32, lower_floor: f32) -> BlockBounds {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2() {
                // SAFETY: AVX2 and FMA were detected on this CPU.
                return unsafe { x86::bounds_avx2(self, codes, block, floor, lower_floor) };
            }
        }
        self.bounds_portable(codes, block, floor, lower_floor)
    }

    /// The reference: the same arithmetic one row at a time.
    pub(crate) fn bounds_portable(
        &self,
        codes: &Codes,
        block: usize,
        floor: f32,
        lower_floor: f32,
    ) -> BlockBounds {
        let mut sums = [0u16; BLOCK];
        block_sums_portable(codes, self, block, &mut sums);
        let alignment = &codes.block(block)[(codes.pairs - 1) * BLOCK..];
        let live = codes.rows.saturating_sub(block * BLOCK).min(BLOCK);
        let mut out = BlockBounds {
            uppers: [f32::NEG_INFINITY; BLOCK],
            lowers: [f32::NEG_INFINITY; BLOCK],
            candidates: 0,
            raises: 0,
            max_upper: f32::NEG_INFINITY,
        };
        for row in 0..live {
            let code = alignment[row];
            let (upper, lower) = if code >= UNBOUNDED {
                (f32::INFINITY, f32::NEG_INFINITY)
            } else {
                let (estimate, bound) = self.estimate(sums[row], code);
                (estimate + bound, estimate - bound)
            };
            out.uppers[row] = upper;
            out.lowers[row] = lower;
            out.candidates |= u32::from(upper >= floor) << row;
            out.raises |= u32::from(lower > lower_floor) << row;
            out.max_upper = out.max_upper.max(upper);
        }
        out
    }

    /// The scan over `blocks`, in order: every row whose upper bound reaches the running
    /// `floor` goes into `candidates` with that bound, and every row whose lower bound exceeds
    /// it is handed to `raise`, which returns the new floor. The floor only rises, so every row
    /// that can reach the final floor is among the candidates, and no block is read twice.
    pub(crate) fn scan(
        &self,
        codes: &Codes,
        blocks: Range<usize>,
        floor: f32,
        raise: impl FnMut(usize, f32) -> f32,
        candidates: &mut Vec<(f32, u32)>,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2() {
                // SAFETY: AVX2 and FMA were detected on this CPU.
                unsafe { x86::scan_avx2(self, codes, blocks, floor, raise, candidates) };
                return;
            }
        }
        scan_with(blocks, floor, raise, candidates, |block, floor| {
            self.bounds_portable(codes, block, floor, floor)
        });
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// The name of the table-lookup kernel this CPU runs.
pub(crate) fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2() {
            return "avx2";
        }
    }
    "portable"
}

/// The scan's loop, over any kernel; inlined into each so that the kernel's code inlines too.
#[inline(always)]
fn scan_with(
    blocks: Range<usize>,
    mut floor: f32,
    mut raise: impl FnMut(usize, f32) -> f32,
    candidates: &mut Vec<(f32, u32)>,
    mut bounds: impl FnMut(usize, f32) -> BlockBounds,
) {
    for block in blocks {
        let found = bounds(block, floor);
        let first_row = block * BLOCK;
        for offset in set_bits(found.candidates) {
            // Row numbers fit u32: the gallery holds fewer than `Gallery::MAX_ROWS`.
            candidates.push((found.uppers[offset], (first_row + offset) as u32));
        }
        for offset in set_bits(found.raises) {
            let lower = found.lowers[offset];
            if lower > floor {
                floor = raise(first_row + offset, lower);
            }
        }
    }
}

/// The reference kernel: one lookup per nibble.
pub(crate) fn block_sums_portable(codes: &Codes, query: &Query, block: usize, out: &mut [u16; BLOCK]) {
    out.fill(0);
    let bytes = codes.block(block);
    for (pair, table) in query.tables.chunks_exact(32).enumerate() {
        let pair_bytes = &bytes[pair * BLOCK..(pair + 1) * BLOCK];
        for (lane, lane_table) in table.chunks_exact(16).enumerate() {
            for j in 0..16 {
                let byte = pair_bytes[lane * 16 + j];
                out[j] += u16::from(lane_table[usize::from(byte & 15)]);
                out[j + 16] += u16::from(lane_table[usize::from(byte >> 4)]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockBounds, Codes, Query, BLOCK, FACTOR_STEP, UNBOUNDED};

    /// How far ahead of the block being scanned its codes are fetched, in bytes.
    const PREFETCH_DISTANCE: usize = 4096;

    /// Table sums of the 32 rows of `block`. Per pair, two byte shuffles (one per nibble half)
    /// look up 32 rows' groups in both of the pair's tables; four pairs' lookups (each at most 60)
    /// are added in bytes without overflow, then the 16-bit accumulators take the whole lanes and
    /// their high bytes: the low bytes' sums are recovered at the end (FAISS's trick, which saves
    /// a mask per step).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn block_sums_avx2(codes: &Codes, query: &Query, block: usize) -> [__m128i; 4] {
        let bytes = codes.block(block);
        let nibble = _mm256_set1_epi8(0x0f);
        let mut low_whole = _mm256_setzero_si256();
        let mut low_odd = _mm256_setzero_si256();
        let mut high_whole = _mm256_setzero_si256();
        let mut high_odd = _mm256_setzero_si256();
        // One pair's byte lookups for the rows' low-nibble groups (rows 0-15) and high ones (16-31).
        let lookup = |codes: &[u8], tables: &[u8], at: usize| -> (__m256i, __m256i) {
            // SAFETY: callers pass chunks of at least `at + 32` bytes (`at` is 0, 32, 64 or 96 in
            // chunks of 128, 0 or 32 in chunks of 64), so each unaligned 256-bit load reads
            // within them.
            let (code, table) = unsafe {
                (
                    _mm256_loadu_si256(codes.as_ptr().add(at).cast()),
                    _mm256_loadu_si256(tables.as_ptr().add(at).cast()),
                )
            };
            (
                _mm256_shuffle_epi8(table, _mm256_and_si256(code, nibble)),
                _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(code, 4), nibble)),
            )
        };
        let mut accumulate = |low: __m256i, high: __m256i| {
            low_whole = _mm256_add_epi16(low_whole, low);
            low_odd = _mm256_add_epi16(low_odd, _mm256_srli_epi16(low, 8));
            high_whole = _mm256_add_epi16(high_whole, high);
            high_odd = _mm256_add_epi16(high_odd, _mm256_srli_epi16(high, 8));
        };
        let code_quads = bytes.chunks_exact(128);
        let table_quads = query.tables.chunks_exact(128);
        let (code_rest, table_rest) = (code_quads.remainder(), table_quads.remainder());
        for (codes_quad, tables_quad) in code_quads.zip(table_quads) {
            // The scan reads one stream; asking for the lines a few blocks ahead keeps it in
            // flight. A prefetch never faults, whatever the address; `wrapping_add` keeps the
            // pointer arithmetic defined past the end.
            let ahead = codes_quad.as_ptr().wrapping_add(PREFETCH_DISTANCE);
            _mm_prefetch(ahead.cast(), _MM_HINT_T0);
            _mm_prefetch(ahead.wrapping_add(64).cast(), _MM_HINT_T0);
            let (low0, high0) = lookup(codes_quad, tables_quad, 0);
            let (low1, high1) = lookup(codes_quad, tables_quad, 32);
            let (low2, high2) = lookup(codes_quad, tables_quad, 64);
            let (low3, high3) = lookup(codes_quad, tables_quad, 96);
            let low = _mm256_add_epi8(_mm256_add_epi8(low0, low1), _mm256_add_epi8(low2, low3));
            let high = _mm256_add_epi8(_mm256_add_epi8(high0, high1), _mm256_add_epi8(high2, high3));
            accumulate(low, high);
        }
        // Rows have an even number of pairs: at most two are left.
        for (codes_pair, tables_pair) in code_rest.chunks_exact(32).zip(table_rest.chunks_exact(32)) {
            let (low, high) = lookup(codes_pair, tables_pair, 0);
            accumulate(low, high);
        }
        // Each 16-bit lane i < 8 holds rows 2i and 2i+1 of the even groups, lane 8 + i the same
        // rows of the odd groups: recover the even rows, add the two halves, interleave.
        let finish = |whole: __m256i, odd: __m256i| -> (__m128i, __m128i) {
            let even = _mm256_sub_epi16(whole, _mm256_slli_epi16(odd, 8));
            let even = _mm_add_epi16(_mm256_castsi256_si128(even), _mm256_extracti128_si256(even, 1));
            let odd = _mm_add_epi16(_mm256_castsi256_si128(odd), _mm256_extracti128_si256(odd, 1));
            (_mm_unpacklo_epi16(even, odd), _mm_unpackhi_epi16(even, odd))
        };
        let (rows0, rows8) = finish(low_whole, low_odd);
        let (rows16, rows24) = finish(high_whole, high_odd);
        [rows0, rows8, rows16, rows24]
    }

    /// The AVX2 sums, in row order, for the tests.
    #[cfg(test)]
    pub(super) fn block_sums_avx2_array(codes: &Codes, query: &Query, block: usize) -> [u16; BLOCK] {
        let mut out = [0u16; BLOCK];
        // SAFETY: the caller detected AVX2 (the tests do, before calling).
        let sums = unsafe { block_sums_avx2(codes, query, block) };
        for (eight, vector) in out.chunks_exact_mut(8).zip(sums) {
            // SAFETY: `eight` is 8 u16, 16 bytes, the size of an unaligned 128-bit store.
            unsafe { _mm_storeu_si128(eight.as_mut_ptr().cast(), vector) };
        }
        out
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn bounds_avx2(
        query: &Query,
        codes: &Codes,
        block: usize,
        floor: f32,
        lower_floor: f32,
    ) -> BlockBounds {
        let sums = block_sums_avx2(codes, query, block);
        let alignment = &codes.block(block)[(codes.pairs - 1) * BLOCK..][..BLOCK];
        let live = codes.rows.saturating_sub(block * BLOCK).min(BLOCK);
        let mut out = BlockBounds {
            uppers: [0.0; BLOCK],
            lowers: [0.0; BLOCK],
            candidates: 0,
            raises: 0,
            max_upper: f32::NEG_INFINITY,
        };
        let mut max_upper = _mm256_set1_ps(f32::NEG_INFINITY);
        let alpha = _mm256_set1_ps(query.alpha);
        let beta = _mm256_set1_ps(query.beta);
        let step = _mm256_set1_ps(FACTOR_STEP);
        let half_step = _mm256_set1_ps(FACTOR_STEP / 2.0);
        let one = _mm256_set1_ps(1.0);
        let bound_base = _mm256_set1_ps(query.bound_base);
        let bound_per_factor = _mm256_set1_ps(query.bound_per_factor);
        let unbounded = _mm256_set1_epi32(i32::from(UNBOUNDED) - 1);
        let floor = _mm256_set1_ps(floor);
        let lower_floor = _mm256_set1_ps(lower_floor);
        let infinity = _mm256_set1_ps(f32::INFINITY);
        let lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (eight, sum) in sums.into_iter().enumerate() {
            // SAFETY: `alignment` is exactly 32 bytes, so the 8 bytes at 8·eight (eight < 4) are in
            // bounds; loadl reads 8 bytes and has no alignment requirement.
            let code_bytes = unsafe { _mm_loadl_epi64(alignment.as_ptr().add(8 * eight).cast()) };
            let code = _mm256_cvtepu8_epi32(code_bytes);
            let x = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(sum)), alpha, beta);
            let factor = _mm256_fmadd_ps(_mm256_cvtepi32_ps(code), step, one);
            let estimate = _mm256_mul_ps(_mm256_add_ps(factor, half_step), x);
            let bound = _mm256_fmadd_ps(bound_per_factor, factor, bound_base);
            let mut upper = _mm256_add_ps(estimate, bound);
            let mut lower = _mm256_sub_ps(estimate, bound);
            let no_bound = _mm256_castsi256_ps(_mm256_cmpgt_epi32(code, unbounded));
            upper = _mm256_blendv_ps(upper, infinity, no_bound);
            lower = _mm256_blendv_ps(lower, _mm256_sub_ps(_mm256_setzero_ps(), infinity), no_bound);
            // Rows past the end never pass.
            let in_gallery = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(i32::try_from(live).unwrap_or(0) - 8 * eight as i32),
                lane_index,
            );
            let in_gallery = _mm256_castsi256_ps(in_gallery);
            let minus_infinity = _mm256_sub_ps(_mm256_setzero_ps(), infinity);
            upper = _mm256_blendv_ps(minus_infinity, upper, in_gallery);
            lower = _mm256_blendv_ps(minus_infinity, lower, in_gallery);
            let live_rows = _mm256_movemask_ps(in_gallery) as u32;
            let passes = _mm256_movemask_ps(_mm256_cmp_ps(upper, floor, _CMP_GE_OQ)) as u32 & live_rows;
            let raises = _mm256_movemask_ps(_mm256_cmp_ps(lower, lower_floor, _CMP_GT_OQ)) as u32 & live_rows;
            max_upper = _mm256_max_ps(max_upper, upper);
            out.candidates |= passes << (8 * eight);
            out.raises |= raises << (8 * eight);
            // SAFETY: `uppers` and `lowers` are 32 f32, so the 8 at 8·eight (eight < 4) are in
            // bounds; storeu has no alignment requirement.
            unsafe {
                _mm256_storeu_ps(out.uppers.as_mut_ptr().add(8 * eight), upper);
                _mm256_storeu_ps(out.lowers.as_mut_ptr().add(8 * eight), lower);
            }
        }
        let halves = _mm_max_ps(
            _mm256_castps256_ps128(max_upper),
            _mm256_extractf128_ps(max_upper, 1),
        );
        let pairs = _mm_max_ps(halves, _mm_movehl_ps(halves, halves));
        out.max_upper = _mm_cvtss_f32(_mm_max_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
        out
    }

    /// Floats the transform's first six stages work on at once, in eight registers.
    pub(super) const HADAMARD_CHUNK: usize = 64;

    /// [`super::walsh_hadamard`] for at least [`HADAMARD_CHUNK`] values, three stages per read
    /// of memory. The stages h = 1 … 32 run one chunk of 64 values at a time in eight registers
    /// (h = 1, 2, 4 within a register by a shuffle and a blend, then h = 8, 16, 32 between
    /// registers); the later stages go three at a time over eight registers `h` apart, and one or
    /// two left over go straight over memory. The same pairs and operations as the portable
    /// loop, so the same bits: where a shuffled copy `p` of a register `r` holds each lane's
    /// partner, the low lane of a pair takes r + p = a + b (addition commutes exactly) and the
    /// high lane p − r = a − b.
    #[target_feature(enable = "avx2")]
    pub(super) fn walsh_hadamard_avx2(values: &mut [f32]) {
        for chunk in values.chunks_exact_mut(HADAMARD_CHUNK) {
            // SAFETY: `chunk` is exactly 64 f32 (chunks_exact), so the eight unaligned 256-bit
            // loads and stores at 0, 8, …, 56 stay within it.
            unsafe {
                let base = chunk.as_mut_ptr();
                let mut r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(base.add(8 * i)));
                for v in r.iter_mut() {
                    let p = _mm256_permute_ps(*v, 0b10_11_00_01);
                    *v = _mm256_blend_ps(_mm256_add_ps(*v, p), _mm256_sub_ps(p, *v), 0b1010_1010);
                    let p = _mm256_permute_ps(*v, 0b01_00_11_10);
                    *v = _mm256_blend_ps(_mm256_add_ps(*v, p), _mm256_sub_ps(p, *v), 0b1100_1100);
                    let p = _mm256_permute2f128_ps(*v, *v, 0x01);
                    *v = _mm256_blend_ps(_mm256_add_ps(*v, p), _mm256_sub_ps(p, *v), 0b1111_0000);
                }
                three_stages(&mut r);
                for (i, v) in r.iter().enumerate() {
                    _mm256_storeu_ps(base.add(8 * i), *v);
                }
            }
        }
        let mut h = HADAMARD_CHUNK;
        while 8 * h <= values.len() {
            for block in values.chunks_exact_mut(8 * h) {
                for offset in (0..h).step_by(8) {
                    // SAFETY: `block` is 8h long and offset + 8 ≤ h (h is a multiple of 8), so
                    // the loads and stores at m·h + offset, m < 8, stay within it.
                    unsafe {
                        let base = block.as_mut_ptr().add(offset);
                        let mut r: [__m256; 8] = std::array::from_fn(|m| _mm256_loadu_ps(base.add(m * h)));
                        three_stages(&mut r);
                        for (m, v) in r.iter().enumerate() {
                            _mm256_storeu_ps(base.add(m * h), *v);
                        }
                    }
                }
            }
            h *= 8;
        }
        while h < values.len() {
            for block in values.chunks_exact_mut(2 * h) {
                let (low, high) = block.split_at_mut(h);
                for (a, b) in low.chunks_exact_mut(8).zip(high.chunks_exact_mut(8)) {
                    // SAFETY: `a` and `b` are exactly 8 f32 (h is a multiple of 64), so each
                    // unaligned 256-bit load and store stays within them.
                    unsafe {
                        let (x, y) = (_mm256_loadu_ps(a.as_ptr()), _mm256_loadu_ps(b.as_ptr()));
                        _mm256_storeu_ps(a.as_mut_ptr(), _mm256_add_ps(x, y));
                        _mm256_storeu_ps(b.as_mut_ptr(), _mm256_sub_ps(x, y));
                    }
                }
            }
            h *= 2;
        }
    }

    /// Three stages between eight registers: partners 1, then 2, then 4 registers apart.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn three_stages(r: &mut [__m256; 8]) {
        const PAIRS: [(usize, usize); 12] = [
            (0, 1),
            (2, 3),
            (4, 5),
            (6, 7),
            (0, 2),
            (1, 3),
            (4, 6),
            (5, 7),
            (0, 4),
            (1, 5),
            (2, 6),
            (3, 7),
        ];
        for (low, high) in PAIRS {
            let (a, b) = (r[low], r[high]);
            r[low] = _mm256_add_ps(a, b);
            r[high] = _mm256_sub_ps(a, b);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn scan_avx2(
        query: &Query,
        codes: &Codes,
        blocks: std::ops::Range<usize>,
        floor: f32,
        raise: impl FnMut(usize, f32) -> f32,
        candidates: &mut Vec<(f32, u32)>,
    ) {
        super::scan_with(blocks, floor, raise, candidates, |block, floor| {
            bounds_avx2(query, codes, block, floor, floor)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_unit(generator: &mut XorShift64, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| generator.next_signed_unit()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    fn gallery(dim: usize, rows: usize, seed: u64) -> (Rotation, Codes, Vec<Vec<f32>>) {
        let rotation = Rotation::new(dim, seed);
        let mut codes = Codes::new(rotation.padded(), dim);
        let mut generator = XorShift64::new(seed.wrapping_mul(31));
        let mut rotated = vec![0.0; rotation.padded()];
        let mut kept = Vec::new();
        for _ in 0..rows {
            let row = random_unit(&mut generator, dim);
            rotation.apply(&row, &mut rotated);
            codes.push(&rotated);
            kept.push(row);
        }
        (rotation, codes, kept)
    }

    #[test]
    fn the_transform_is_hadamards_and_every_kernel_gives_the_same_bits() {
        let mut generator = XorShift64::new(5);
        for n in [16, 32, 64, 128, 256, 512, 1024, 4096] {
            let values = random_unit(&mut generator, n);
            let mut portable = values.clone();
            walsh_hadamard_portable(&mut portable);
            // The definition: H[i][j] = (-1)^popcount(i & j).
            for (i, got) in portable.iter().enumerate().step_by(7) {
                let want: f64 = values
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        if (i & j).count_ones() % 2 == 0 {
                            f64::from(*v)
                        } else {
                            -f64::from(*v)
                        }
                    })
                    .sum();
                assert!(
                    (f64::from(*got) - want).abs() < 1e-4,
                    "n={n} i={i}: {got} vs {want}"
                );
            }
            let mut dispatched = values.clone();
            walsh_hadamard(&mut dispatched);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&dispatched), bits(&portable), "n={n}");
        }
    }

    /// The rotation's signs for a few seeds, as the generator written out in `Rotation::new`
    /// drew them before it moved into `XorShift64`: a rotation must not change with the code
    /// that draws it. Seeds 0 and 1 give the same signs (`seed | 1`).
    #[test]
    fn rotation_signs_are_those_drawn_before() {
        for (dim, seed, negative_signs) in [
            (16usize, 0u64, 0x0ca7_a9ffu128),
            (16, 1, 0x0ca7_a9ff),
            (16, 42, 0xcbb1_5f9d),
            (64, 0xdead_beef, 0x5c68_cd06_79a8_4439_50f9_f4ec_ed3c_cb04),
            (64, u64::MAX, 0xfd6e_0bda_3392_55ad_89bf_77ec_1662_644a),
        ] {
            let rotation = Rotation::new(dim, seed);
            assert_eq!(rotation.signs.len(), 2 * rotation.padded());
            let drawn = rotation
                .signs
                .iter()
                .enumerate()
                .fold(0u128, |mask, (i, sign)| mask | (u128::from(*sign < 0.0) << i));
            assert_eq!(drawn, negative_signs, "dim {dim} seed {seed:#x}");
        }
    }

    #[test]
    fn the_rotation_preserves_inner_products() {
        let rotation = Rotation::new(100, 42);
        let mut generator = XorShift64::new(9);
        let (a, b) = (random_unit(&mut generator, 100), random_unit(&mut generator, 100));
        let (mut ra, mut rb) = (vec![0.0; rotation.padded()], vec![0.0; rotation.padded()]);
        rotation.apply(&a, &mut ra);
        rotation.apply(&b, &mut rb);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!((dot(&a, &b) - dot(&ra, &rb)).abs() < 1e-5);
        assert!((dot(&ra, &ra) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn simd_kernels_equal_the_portable_ones() {
        for (dim, rows) in [(256, 3 * BLOCK + 5), (512, 2 * BLOCK), (20, 40), (512, 7)] {
            let (rotation, codes, _) = gallery(dim, rows, dim as u64);
            let mut generator = XorShift64::new(77);
            let mut rotated = vec![0.0; rotation.padded()];
            rotation.apply(&random_unit(&mut generator, dim), &mut rotated);
            let query = Query::new(&codes, &rotated);
            for block in 0..codes.blocks() {
                let portable = query.bounds_portable(&codes, block, 0.05, -0.02);
                let best = query.bounds(&codes, block, 0.05, -0.02);
                #[cfg(target_arch = "x86_64")]
                if avx2() {
                    let mut sums = [0u16; BLOCK];
                    block_sums_portable(&codes, &query, block, &mut sums);
                    assert_eq!(
                        sums,
                        x86::block_sums_avx2_array(&codes, &query, block),
                        "block {block}"
                    );
                }
                for row in 0..BLOCK {
                    for (a, b) in [
                        (portable.uppers[row], best.uppers[row]),
                        (portable.lowers[row], best.lowers[row]),
                    ] {
                        assert!(a == b || (a - b).abs() < 1e-5, "dim {dim} row {row}: {a} vs {b}");
                    }
                }
                assert_eq!(portable.candidates, best.candidates, "dim {dim} block {block}");
                assert_eq!(portable.raises, best.raises, "dim {dim} block {block}");
            }
        }
    }

    #[test]
    fn estimates_fall_within_their_bounds() {
        let dim = 512;
        let (rotation, codes, rows) = gallery(dim, 4000, 11);
        let mut generator = XorShift64::new(5);
        let mut rotated = vec![0.0; rotation.padded()];
        let mut outside = 0;
        let mut widest = 0f32;
        for _ in 0..5 {
            let probe = random_unit(&mut generator, dim);
            rotation.apply(&probe, &mut rotated);
            let query = Query::new(&codes, &rotated);
            for block in 0..codes.blocks() {
                let bounds = query.bounds(&codes, block, 0.0, 0.0);
                for offset in 0..BLOCK.min(rows.len() - block * BLOCK) {
                    let values = &rows[block * BLOCK + offset];
                    let exact: f32 = values.iter().zip(&probe).map(|(a, b)| a * b).sum();
                    let (upper, lower) = (bounds.uppers[offset], bounds.lowers[offset]);
                    outside += usize::from(exact > upper || exact < lower);
                    widest = widest.max((upper - lower) / 2.0);
                }
            }
        }
        assert!(outside <= 5, "{outside} of 20000 scores outside their bounds");
        assert!(widest < 0.25, "bound {widest} too loose to be useful");
    }

    #[test]
    fn rows_past_the_end_never_pass() {
        let (rotation, codes, _) = gallery(64, BLOCK + 3, 4);
        let mut rotated = vec![0.0; rotation.padded()];
        let mut generator = XorShift64::new(6);
        rotation.apply(&random_unit(&mut generator, 64), &mut rotated);
        let query = Query::new(&codes, &rotated);
        let bounds = query.bounds(&codes, 1, f32::NEG_INFINITY, f32::NEG_INFINITY);
        assert_eq!(bounds.candidates, 0b111);
        assert_eq!(bounds.raises, 0b111);
    }

    #[test]
    fn swap_remove_keeps_the_other_codes() {
        let (rotation, mut codes, _) = gallery(64, BLOCK + 3, 1);
        let groups = 2 * (codes.pairs - 1);
        let row_code = |codes: &Codes, row: usize| -> Vec<u8> {
            let mut code: Vec<u8> = (0..groups).map(|group| codes.nibble(row, group)).collect();
            code.push(codes.blocks[codes.alignment_at(row)]);
            code
        };
        let expected_last = row_code(&codes, BLOCK + 2);
        let kept_second = row_code(&codes, 1);
        codes.swap_remove(4);
        assert_eq!(row_code(&codes, 4), expected_last);
        assert_eq!(row_code(&codes, 1), kept_second);
        assert_eq!(codes.len(), BLOCK + 2);
        for _ in 0..3 {
            codes.swap_remove(0);
        }
        assert_eq!(codes.len(), BLOCK - 1);
        assert_eq!(codes.blocks.len(), BLOCK * codes.pairs);
        assert_eq!(rotation.padded(), 64);
    }
}
