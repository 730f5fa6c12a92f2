//! The compressed fast scan: RaBitQ-style codes with a per-row error bound, scanned with 4-bit
//! table lookups, so that only a short list needs the exact f32 re-rank.
//!
//! Each template is rotated by a seeded random orthogonal transform (two rounds of random signs and
//! a fast Walsh–Hadamard transform) and kept as the signs of its rotated coordinates, one bit a
//! dimension. For a probe q, x = Σ sign(o'_i)·q'_i / √Dc over Dc coded dimensions, scaled by the
//! row's factor 1/⟨ō,o'⟩, estimates ⟨o,q⟩ with an error bound that RaBitQ proves holds with high
//! probability. It holds for any set of coded dimensions (ō is then a unit vector zero on the
//! others); fewer give a larger factor and a wider bound.
//!
//! So each row's code comes in two parts, kept in two arrays ([`CodePart`]): a head of the first
//! seven eighths of the dimensions, which the scan reads for every row and judges by its own
//! bounds, and a tail of the rest, which only the re-rank reads, for the blocks it opens, to give
//! their rows the whole code's tighter bounds. Each part gives its last eight dimensions' byte to
//! an alignment code (the head's own factor; in the tail, the whole code's), so a row costs
//! exactly `padded / 8` bytes (64 at d=512), and the scan reads a stream of seven eighths of
//! them: at a million rows, memory bandwidth is what limits it.
//!
//! The probe is quantised to 4 bits a dimension, symmetrically (q'_i ≈ −R + step·v_i), so that a
//! cleared bit can look up L − v_i for −q'_i and no per-row popcount is needed; four dimensions are
//! summed at a time through 16-entry tables, which is what SIMD byte shuffles do 32 rows at once.
//! Plain Rust has no byte shuffle, so the portable kernel uses that each table is linear in the
//! bits of its nibble and adds one masked weight a bit instead ([`block_sums_portable`]).
//!
//! Within a part, per block of 32 rows and per pair `p` of 4-dimension groups (2p, 2p+1), 32
//! bytes hold the 32 rows' two nibbles (see [`CodePart`]). A probe's tables follow the same order:
//! per pair, group 2p's table then group 2p+1's, and the last pair's tables are zero so that the
//! alignment bytes add nothing.
//!
//! The scan judges most blocks without any float arithmetic. The floor it holds (the best lower
//! bound seen, or the threshold) only rises; for each floor, [`Query::sum_limits`] works out the
//! least table sum with which a row could reach it, and the least with which a row could raise it,
//! at the gallery's least or greatest factor (a bound is monotone in the factor). A block whose
//! largest sum is below the first is passed over; one at or above the second has its rows' bounds
//! worked out, so the floor rises as if every row's were; any other is a lead, kept with a number
//! at least its rows' upper bounds ([`Query::peak_uppers`]), whose rows the re-rank works out
//! (from head and tail) only if that number still reaches the answer's score. All of this is on
//! the heads' bounds; the whole code's bounds are [`Query::bounds`].
//!
//! The codes, factors and the rotation's seed are derived from templates and are biometric data:
//! they live only in memory, are rebuilt at every open from a fresh random seed, and are zeroed
//! when dropped.
//!
//! This module is safe code. The AVX2 and AVX-512 kernels are in `x86`, the only part of it
//! allowed `unsafe`, and take a token from `cpu` that proves this CPU runs them. Which one the
//! scan uses is picked once ([`code_kernel`]): the fastest this CPU runs, or the one the
//! environment variable `FACEVAULT_KERNEL` names, for tests and benchmarks.

use std::ops::Range;
use std::sync::OnceLock;

use zeroize::Zeroize;

use super::pages::Span;
use super::set_bits;

use crate::wiped::WipedVec;
use crate::xorshift::XorShift64;

#[cfg(target_arch = "x86_64")]
use super::cpu::{Avx2Fma, Avx512Bw};

#[cfg(target_arch = "x86_64")]
mod x86;

/// Rows per code block.
pub(crate) const BLOCK: usize = 32;
/// Confidence of the per-row error bound, in standard deviations: the chance that a row's
/// estimate misses by more than its bound is below 2·exp(-ε0²/2) ≈ 7e-4 per row at 4. A miss
/// changes an identify's answer only when it hides an answer's row (its true score above its
/// upper bound) or lifts a row's lower bound above an answer row's upper bound (the gallery's
/// module doc says when).
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
        // At least four pairs, so that the head and the tail each carry codes beside their
        // alignment codes.
        let padded = dim.next_power_of_two().max(32);
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
        super::kernels::with_wide_vectors(
            #[inline(always)]
            || self.apply_portable(x, out),
        );
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
        if values.len() >= x86::HADAMARD_CHUNK {
            if let Some(cpu) = Avx2Fma::detect() {
                x86::walsh_hadamard(cpu, values);
                return;
            }
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

/// The share of a row's pairs in its head, in eighths: the head is what the scan reads for every
/// row, the tail only what the re-rank reads for the blocks it opens. A shorter head reads less
/// but bounds each row less tightly, so that the re-rank opens more leads: at d=512 on clustered
/// galleries, a head of six eighths opened a few times as many as one of seven, and at the 99th
/// percentile ten times as many, which cost more than the bytes saved.
const HEAD_EIGHTHS: usize = 7;

/// One part of every row's code, in blocks of 32 rows: the sign bits of `pairs − 1` pairs of
/// 4-dimension groups of the rotated coordinates from `first_dim` on, then a pair of alignment
/// codes.
///
/// Layout, per block and per pair `p` of groups (2p, 2p+1), 32 bytes: byte `j` (j < 16) holds
/// group 2p of row `j` (low nibble) and of row `j + 16` (high nibble); byte `16 + j` the same
/// for group 2p+1. The last pair's 32 bytes are the rows' alignment codes.
struct CodePart {
    first_dim: usize,
    pairs: usize,
    blocks: WipedVec<u8>,
}

impl CodePart {
    fn new(first_dim: usize, pairs: usize) -> Self {
        Self {
            first_dim,
            pairs,
            blocks: WipedVec::default(),
        }
    }

    /// Dimensions that carry sign bits.
    fn coded_dims(&self) -> usize {
        (self.pairs - 1) * 8
    }

    /// The coordinates of a rotated row that this part codes.
    fn coded<'r>(&self, rotated: &'r [f32]) -> &'r [f32] {
        &rotated[self.first_dim..][..self.coded_dims()]
    }

    /// Bytes per block.
    fn block_bytes(&self) -> usize {
        BLOCK * self.pairs
    }

    fn reserve(&mut self, rows: usize) {
        let needed = rows.div_ceil(BLOCK) * self.block_bytes();
        grow(&mut self.blocks, needed);
    }

    fn add_block(&mut self) {
        let len = self.blocks.len() + self.block_bytes();
        self.blocks.resize(len, 0);
    }

    fn drop_last_block(&mut self) {
        let len = self.blocks.len() - self.block_bytes();
        self.blocks[len..].zeroize();
        self.blocks.truncate(len);
    }

    /// Writes `row`'s sign bits and returns Σ|o'_i| over the coded coordinates, summed in eight
    /// lanes in a fixed order, so that it vectorises and every build agrees.
    fn set_signs(&mut self, row: usize, rotated: &[f32]) -> f32 {
        let mut lanes = [0f32; 8];
        let coded = self.coded(rotated);
        for (pair, eight) in coded.chunks_exact(8).enumerate() {
            for (half, values) in eight.chunks_exact(4).enumerate() {
                let nibble = values.iter().enumerate().fold(0u8, |nibble, (bit, value)| {
                    nibble | (u8::from(*value >= 0.0) << bit)
                });
                self.set_nibble(row, 2 * pair + half, nibble);
            }
            for (lane, value) in lanes.iter_mut().zip(eight) {
                *lane += value.abs();
            }
        }
        lanes.iter().sum()
    }

    /// Moves `from`'s code into `to` and zeroes `from`'s.
    fn move_row(&mut self, from: usize, to: usize) {
        for group in 0..2 * (self.pairs - 1) {
            let nibble = self.nibble(from, group);
            self.set_nibble(to, group, nibble);
            self.set_nibble(from, group, 0);
        }
        let (from, to) = (self.alignment_at(from), self.alignment_at(to));
        self.blocks[to] = self.blocks[from];
        self.blocks[from] = 0;
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

    /// The alignment codes of `block`'s 32 rows: its last pair.
    fn alignment_codes(&self, block: usize) -> &[u8; BLOCK] {
        let (pairs, _) = self.block(block).as_chunks::<BLOCK>();
        &pairs[self.pairs - 1]
    }

    fn block(&self, block: usize) -> &[u8] {
        let bytes = self.block_bytes();
        &self.blocks[block * bytes..(block + 1) * bytes]
    }
}

/// The least factor 1 + c·STEP of alignment code `code`, in f64.
fn factor_of(code: u8) -> f64 {
    1.0 + f64::from(code) * f64::from(FACTOR_STEP)
}

/// The alignment code of a row whose coded coordinates' absolute values sum to `abs_sum`.
fn alignment_code(abs_sum: f32, coded_dims: usize) -> u8 {
    // ⟨ō,o'⟩ for ō = sign(o')/√Dc over the coded dimensions.
    let alignment = abs_sum / (coded_dims as f32).sqrt();
    let factor = 1.0 / alignment.max(f32::MIN_POSITIVE);
    let code = ((factor - 1.0) / FACTOR_STEP).floor();
    if (0.0..f32::from(UNBOUNDED)).contains(&code) {
        // In range: the float-to-int conversion is exact for these small whole numbers.
        code as u8
    } else if code < 0.0 {
        0
    } else {
        UNBOUNDED
    }
}

/// The lowest and highest alignment code of some rows.
#[derive(Clone, Copy, Default)]
struct FactorCodes {
    lowest: u8,
    highest: u8,
}

impl zeroize::DefaultIsZeroes for FactorCodes {}

/// A block's factor codes before any bounded row: every code is below the first and above the
/// second.
const NO_FACTOR_CODES: FactorCodes = FactorCodes {
    lowest: u8::MAX,
    highest: 0,
};

/// The codes of every gallery row, in blocks, each row's split in two parts read apart: the
/// head, which the scan reads for every row and whose own bounds judge the blocks, and the
/// tail, read only for the blocks the re-rank opens, which with the head gives each row the
/// whole code's tighter bounds.
pub(crate) struct Codes {
    /// The rotation's dimension, a power of two.
    padded: usize,
    /// The original dimension, for the error bound.
    dim: usize,
    rows: usize,
    /// The first pairs of each row; its alignment codes are the head's own.
    head: CodePart,
    /// The rest of the pairs; its alignment codes are those of the whole code, head and tail.
    tail: CodePart,
    /// The lowest and highest head alignment code of any bounded row pushed since the codes
    /// were built (removals leave them, which only widens them): the factors a scan must allow
    /// for when it judges a block by its largest table sum alone.
    factor_codes: Option<(u8, u8)>,
    /// Rows whose head code is [`UNBOUNDED`], which every scan must hand on whatever their sums.
    unbounded_rows: usize,
    /// Per block, the lowest and highest head alignment code of its bounded rows: the factors
    /// a lead's number must allow for, much narrower than the gallery's.
    block_factor_codes: WipedVec<FactorCodes>,
}

impl Codes {
    pub(crate) fn new(padded: usize, dim: usize) -> Self {
        // `padded` is a power of two of at least 32, so there are at least four pairs, and each
        // part has an even number of them, at least two, as the kernels take two at a time.
        let pairs = padded / 8;
        let head_pairs = (pairs * HEAD_EIGHTHS / 8) & !1;
        let head = CodePart::new(0, head_pairs);
        let tail = CodePart::new(head.coded_dims(), pairs - head_pairs);
        Self {
            padded,
            dim,
            rows: 0,
            head,
            tail,
            factor_codes: None,
            unbounded_rows: 0,
            block_factor_codes: WipedVec::default(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows
    }

    pub(crate) fn blocks(&self) -> usize {
        self.rows.div_ceil(BLOCK)
    }

    /// Rows of `block` in the gallery: 32 but in the last block.
    fn live_rows(&self, block: usize) -> usize {
        self.rows.saturating_sub(block * BLOCK).min(BLOCK)
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.head.blocks.capacity() + self.tail.blocks.capacity()
    }

    /// Each part's code blocks: the heads', then the tails'.
    #[cfg(test)]
    pub(crate) fn part_blocks(&self) -> [&[u8]; 2] {
        [&self.head.blocks, &self.tail.blocks]
    }

    /// The code blocks as they sit in memory: the heads', then the tails'.
    #[cfg(test)]
    pub(crate) fn raw_bytes(&self) -> Vec<u8> {
        self.part_blocks().concat()
    }

    /// Where the codes of the next `rows` rows will be written (see [`Gallery::memory_to_load`]).
    ///
    /// [`Gallery::memory_to_load`]: super::Gallery::memory_to_load
    pub(crate) fn spare_spans(&self, rows: usize) -> [Span; 2] {
        let blocks = (self.rows + rows).div_ceil(BLOCK) - self.rows.div_ceil(BLOCK);
        [&self.head, &self.tail].map(|part| Span::of_spare(&part.blocks, blocks * part.block_bytes()))
    }

    /// Makes room for `additional` rows without leaving unzeroed copies behind.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let rows = self.rows + additional;
        self.head.reserve(rows);
        self.tail.reserve(rows);
        grow(&mut self.block_factor_codes, rows.div_ceil(BLOCK));
    }

    /// Appends the code of a rotated unit row.
    pub(crate) fn push(&mut self, rotated: &[f32]) {
        super::kernels::with_wide_vectors(
            #[inline(always)]
            || self.push_portable(rotated),
        );
    }

    #[inline(always)]
    fn push_portable(&mut self, rotated: &[f32]) {
        self.reserve(1);
        let row = self.rows;
        if row.is_multiple_of(BLOCK) {
            self.head.add_block();
            self.tail.add_block();
            self.block_factor_codes.push(NO_FACTOR_CODES);
        }
        self.rows += 1;
        let head_sum = self.head.set_signs(row, rotated);
        let tail_sum = self.tail.set_signs(row, rotated);
        let head_code = alignment_code(head_sum, self.head.coded_dims());
        let whole_code = alignment_code(
            head_sum + tail_sum,
            self.head.coded_dims() + self.tail.coded_dims(),
        );
        if head_code >= UNBOUNDED {
            self.unbounded_rows += 1;
        } else {
            self.factor_codes = Some(match self.factor_codes {
                Some((lowest, highest)) => (lowest.min(head_code), highest.max(head_code)),
                None => (head_code, head_code),
            });
            let block = &mut self.block_factor_codes[row / BLOCK];
            block.lowest = block.lowest.min(head_code);
            block.highest = block.highest.max(head_code);
        }
        let at = self.head.alignment_at(row);
        self.head.blocks[at] = head_code;
        let at = self.tail.alignment_at(row);
        self.tail.blocks[at] = whole_code;
    }

    /// Moves the last row into `index` and drops the last, zeroing its bytes.
    pub(crate) fn swap_remove(&mut self, index: usize) {
        let last = self.rows - 1;
        if self.head.blocks[self.head.alignment_at(index)] >= UNBOUNDED {
            self.unbounded_rows -= 1;
        }
        self.head.move_row(last, index);
        self.tail.move_row(last, index);
        self.rows -= 1;
        if self.rows.is_multiple_of(BLOCK) {
            self.head.drop_last_block();
            self.tail.drop_last_block();
            self.block_factor_codes.truncate(self.blocks());
        }
        for block in [index / BLOCK, last / BLOCK] {
            if block < self.blocks() {
                self.block_factor_codes[block] = self.factor_codes_of(block);
            }
        }
    }

    /// The lowest and highest head alignment code of `block`'s bounded rows.
    fn factor_codes_of(&self, block: usize) -> FactorCodes {
        let codes = &self.head.alignment_codes(block)[..self.live_rows(block)];
        codes
            .iter()
            .filter(|code| **code < UNBOUNDED)
            .fold(NO_FACTOR_CODES, |range, code| FactorCodes {
                lowest: range.lowest.min(*code),
                highest: range.highest.max(*code),
            })
    }

    /// Whether any row of `block` has no head bound: such a block is always looked at row by
    /// row.
    fn has_unbounded(&self, block: usize) -> bool {
        self.unbounded_rows > 0
            && self
                .head
                .alignment_codes(block)
                .iter()
                .any(|code| *code >= UNBOUNDED)
    }

    /// Asks for `block`'s head and tail ahead of [`Query::bounds`] on it, which a re-rank does
    /// on blocks scattered through the gallery.
    pub(crate) fn prefetch_block(&self, block: usize) {
        if block < self.blocks() {
            super::kernels::prefetch(self.head.block(block));
            super::kernels::prefetch(self.tail.block(block));
        }
    }
}

/// Makes room for `needed` values in all, moving them into a fresh buffer (on huge pages) and
/// zeroing the old one: a `Vec` that grows by itself frees its old buffer unzeroed.
pub(super) fn grow<T: zeroize::DefaultIsZeroes>(buffer: &mut WipedVec<T>, needed: usize) {
    if needed <= buffer.capacity() {
        return;
    }
    let mut grown = WipedVec::with_capacity(needed.max(buffer.capacity() * 2));
    super::pages::advise_huge(grown.spare_capacity_mut());
    grown.extend_from_slice(buffer);
    *buffer = grown;
}

/// A probe's lookup tables for one part of the codes.
struct PartTables {
    /// 32 bytes a pair: group 2p's 16-entry table, then group 2p+1's; zero for the last pair.
    /// Entry `n` is Σ over the group's four dimensions of v_i where bit i of n is set, L − v_i
    /// where it is clear.
    tables: WipedVec<u8>,
    /// The same tables as the portable kernel reads them, [`PORTABLE_VECTORS`] of 32 bytes a
    /// pair (see [`portable_weights`]): every entry is its table's entry 0 plus one weight per
    /// set bit, so the kernel adds masked weights instead of looking entries up.
    weights: WipedVec<u8>,
}

impl PartTables {
    fn new(part: &CodePart, levels: &[u8]) -> Self {
        // The pairs past the coded ones (the alignment codes) keep zero tables.
        let mut tables = WipedVec::new(vec![0u8; part.pairs * 32]);
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
        Self {
            weights: portable_weights(&tables),
            tables,
        }
    }
}

/// What turns a row's table sum S over some coded dimensions, and its alignment code, into an
/// estimate of its score and a bound on the estimate's error.
#[derive(Clone, Copy)]
struct Estimator {
    /// x̂ = alpha·S + beta.
    alpha: f32,
    beta: f32,
    /// A row with alignment code c and x̂ gets estimate (1 + c·STEP + STEP/2)·x̂ and bound
    /// `bound_base + bound_per_factor·(1 + c·STEP)`.
    bound_base: f32,
    bound_per_factor: f32,
}

impl Estimator {
    /// For a probe quantised with `step` over [−range, range], and codes of `coded_dims` of
    /// the rotation's `padded` dimensions, of vectors of `dim`.
    fn new(step: f32, range: f32, coded_dims: usize, padded: usize, dim: usize) -> Self {
        let root_coded = (coded_dims as f32).sqrt();
        // Σ sign_i·q̂_i = step·S − range·Dc, divided by √Dc.
        let alpha = step / root_coded;
        let beta = -range * root_coded;
        // Rounding errors are independent and uniform on ±step/2: their signed sum over Dc terms,
        // divided by √Dc, has standard deviation step/√12.
        let quantisation = EPSILON * step / 12f32.sqrt();
        // RaBitQ: |error| ≤ √(f² − 1)·ε0/√(d − 1), with √(f² − 1) ≤ g0 + g0'·(f − f0) for the
        // tangent at the typical factor f0. A random rotation puts f near √(π/2)·√(padded / Dc);
        // √(f² − 1) is concave, so its tangent there is above it everywhere, and tight where
        // the rows are.
        let spread = EPSILON / ((dim.max(2) - 1) as f32).sqrt();
        let tangent = (std::f32::consts::FRAC_PI_2 * padded as f32 / coded_dims as f32).sqrt();
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
            alpha,
            beta,
            bound_base,
            bound_per_factor,
        }
    }

    /// alpha, beta, `bound_base` and `bound_per_factor` in f64, for the limits and lines
    /// worked out once a floor or a probe.
    fn terms_f64(&self) -> [f64; 4] {
        [self.alpha, self.beta, self.bound_base, self.bound_per_factor].map(f64::from)
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
}

/// A probe prepared for the scan: its lookup tables and what turns table sums into bounds.
pub(crate) struct Query {
    head: PartTables,
    tail: PartTables,
    /// The head's own estimate and bound, from its sums alone: what the scan judges by.
    head_estimator: Estimator,
    /// The whole code's, from the sums of head and tail added: what the re-rank judges by.
    whole_estimator: Estimator,
    /// The numbers of the scan's leads, worked out once a probe.
    peak_uppers: PeakUppers,
}

/// The bounds of one block's 32 rows, and which rows pass the two floors the caller gave (bit
/// `i` for row `i` of the block).
pub(crate) struct BlockBounds {
    pub uppers: [f32; BLOCK],
    pub lowers: [f32; BLOCK],
    /// Rows whose upper bound reaches `floor`.
    pub candidates: u32,
    /// Rows whose lower bound exceeds `lower_floor`.
    pub above_lower_floor: u32,
    /// The highest upper bound in the block.
    pub max_upper: f32,
}

impl Query {
    pub(crate) fn new(codes: &Codes, rotated: &[f32]) -> Self {
        let (head, tail) = (codes.head.coded(rotated), codes.tail.coded(rotated));
        let range = head
            .iter()
            .chain(tail)
            .fold(0f32, |max, value| max.max(value.abs()))
            .max(f32::MIN_POSITIVE);
        let step = 2.0 * range / f32::from(LEVELS);
        let levels = |coded: &[f32]| {
            let levels = coded.iter().map(|value| {
                // In [0, LEVELS] after the clamp, so the conversion is exact.
                ((value + range) / step).round().clamp(0.0, f32::from(LEVELS)) as u8
            });
            WipedVec::new(levels.collect())
        };
        let head_dims = codes.head.coded_dims();
        let whole_dims = head_dims + codes.tail.coded_dims();
        let head_estimator = Estimator::new(step, range, head_dims, codes.padded, codes.dim);
        Self {
            head: PartTables::new(&codes.head, &levels(head)),
            tail: PartTables::new(&codes.tail, &levels(tail)),
            peak_uppers: Self::peak_uppers(&head_estimator, codes),
            head_estimator,
            whole_estimator: Estimator::new(step, range, whole_dims, codes.padded, codes.dim),
        }
    }

    /// The factors 1 + c·STEP of the lowest and highest head alignment codes in the gallery: a
    /// row's bounds are linear in its factor, so what holds at both holds between them.
    fn factor_range(codes: &Codes) -> Option<[f64; 2]> {
        codes
            .factor_codes
            .map(|(lowest, highest)| [factor_of(lowest), factor_of(highest)])
    }

    /// The least head table sums a row needs, whatever its factor, for its head upper bound to
    /// reach `floor` and for its head lower bound to exceed it, each less one sum for the
    /// rounding of the kernels' float arithmetic (a sum is worth about 1e-3 there, the rounding
    /// about 1e-7). A block whose largest sum is below the first holds no candidate; one below
    /// the second raises no floor. Worked out once a floor, so that most blocks need no float.
    fn sum_limits(&self, codes: &Codes, floor: f32) -> SumLimits {
        let Some(factors) = Self::factor_range(codes) else {
            return SumLimits {
                candidate: u16::MAX,
                raises_floor: u16::MAX,
            };
        };
        let [alpha, beta, base, per_factor] = self.head_estimator.terms_f64();
        let (floor, half_step) = (f64::from(floor), f64::from(FACTOR_STEP) / 2.0);
        // Each bound is (f + STEP/2)·(alpha·S + beta) ± (base + per_factor·f): the S at which
        // it meets the floor is monotone in f, so the least over the range is at one end.
        let least_sum = |sign: f64| {
            factors
                .iter()
                .map(|f| ((floor - sign * (base + per_factor * f)) / (f + half_step) - beta) / alpha)
                .fold(f64::INFINITY, f64::min)
        };
        let limit = |sum: f64| {
            let below = (sum - 1.0).floor();
            if below >= f64::from(u16::MAX) {
                u16::MAX
            } else if below > 0.0 {
                // In (0, u16::MAX) and whole, so the conversion is exact.
                below as u16
            } else {
                // Also a NaN: every block is then looked at row by row.
                0
            }
        };
        SumLimits {
            candidate: limit(least_sum(1.0)),
            raises_floor: limit(least_sum(-1.0)),
        }
    }

    /// What bounds the head upper bound of every row of a block from its largest head table
    /// sum and its rows' factor codes: for each code in the gallery's range, the bound at one
    /// sum more (for rounding, which the sum's worth far exceeds), as a line in the sum,
    /// rounded up.
    fn peak_uppers(head_estimator: &Estimator, codes: &Codes) -> PeakUppers {
        let Some((lowest, highest)) = codes.factor_codes else {
            return PeakUppers {
                lowest: 0,
                lines: WipedVec::default(),
            };
        };
        let [alpha, beta, base, per_factor] = head_estimator.terms_f64();
        let half_step = f64::from(FACTOR_STEP) / 2.0;
        let up = |value: f64| {
            let rounded = value as f32;
            if f64::from(rounded) < value {
                rounded.next_up()
            } else {
                rounded
            }
        };
        let mut lines = WipedVec::with_capacity(2 * usize::from(highest - lowest + 1));
        for code in lowest..=highest {
            let f = factor_of(code);
            let slope = (f + half_step) * alpha;
            let intercept = slope + (f + half_step) * beta + base + per_factor * f;
            lines.push(up(slope));
            lines.push(up(intercept + f64::from(ROUNDING_SLACK)));
        }
        PeakUppers { lowest, lines }
    }

    /// Bounds for every row of `block` from its whole code, head and tail, and the rows that
    /// pass `floor` (upper bound) and `lower_floor` (lower bound), from the kernel the scan
    /// uses. Rows past the end of the gallery get -∞ and never pass.
    pub(crate) fn bounds(&self, codes: &Codes, block: usize, floor: f32, lower_floor: f32) -> BlockBounds {
        match code_kernel() {
            #[cfg(target_arch = "x86_64")]
            CodeKernel::Avx512(cpu) => x86::bounds_512(cpu, self, codes, block, floor, lower_floor),
            #[cfg(target_arch = "x86_64")]
            CodeKernel::Avx2(cpu) => x86::bounds(cpu, self, codes, block, floor, lower_floor),
            CodeKernel::Portable => self.bounds_portable(codes, block, floor, lower_floor),
        }
    }

    /// [`Query::bounds`] in the reference kernel.
    pub(crate) fn bounds_portable(
        &self,
        codes: &Codes,
        block: usize,
        floor: f32,
        lower_floor: f32,
    ) -> BlockBounds {
        let mut head = [0u16; BLOCK];
        let mut tail = [0u16; BLOCK];
        block_sums_portable(&codes.head, &self.head, block, &mut head);
        block_sums_portable(&codes.tail, &self.tail, block, &mut tail);
        // At most 120 a pair: the vault's largest dimension, 4,096, has 512 pairs, so the sum of
        // both parts fits 16 bits.
        let sums = std::array::from_fn(|row| head[row].wrapping_add(tail[row]));
        let alignment = codes.tail.alignment_codes(block);
        let live = codes.live_rows(block);
        bounds_from_sums_portable(&sums, &self.whole_estimator, alignment, live, floor, lower_floor)
    }

    /// The bounds the scan judges by: those of each row's head alone, in the reference kernel.
    pub(crate) fn head_bounds_portable(
        &self,
        codes: &Codes,
        block: usize,
        floor: f32,
        lower_floor: f32,
    ) -> BlockBounds {
        let mut sums = [0u16; BLOCK];
        block_sums_portable(&codes.head, &self.head, block, &mut sums);
        let alignment = codes.head.alignment_codes(block);
        let live = codes.live_rows(block);
        bounds_from_sums_portable(&sums, &self.head_estimator, alignment, live, floor, lower_floor)
    }

    /// The scan over the heads of `blocks`, in order: every block that may hold a row whose
    /// head upper bound reaches the running `floor` goes into `leads`, with a number at least
    /// every such bound of its rows, and every row whose head lower bound exceeds the floor is
    /// handed to `raise_floor`, which returns the new floor. The floor only rises, so every row
    /// that can reach the final floor is in a lead; [`Query::bounds`] later names the rows of
    /// the few leads that matter, from their whole codes, which is cheaper than keeping every
    /// row that passed a floor still low.
    pub(crate) fn scan(
        &self,
        codes: &Codes,
        blocks: Range<usize>,
        floor: f32,
        raise_floor: impl FnMut(usize, f32) -> f32,
        leads: &mut Vec<(f32, u32)>,
    ) {
        match code_kernel() {
            #[cfg(target_arch = "x86_64")]
            CodeKernel::Avx512(cpu) => x86::scan_512(cpu, self, codes, blocks, floor, raise_floor, leads),
            #[cfg(target_arch = "x86_64")]
            CodeKernel::Avx2(cpu) => x86::scan(cpu, self, codes, blocks, floor, raise_floor, leads),
            CodeKernel::Portable => {
                let peak = |block| block_peak_portable(&codes.head, &self.head, block);
                let bounds = |block, floor| self.head_bounds_portable(codes, block, floor, floor);
                scan_with(self, codes, blocks, floor, raise_floor, leads, peak, bounds)
            }
        }
    }
}

/// The reference bounds of a block's rows from their table sums and alignment codes: the same
/// arithmetic as the SIMD kernels', a row a lane. Every one of the 32 rows is computed (rows
/// past the end of the gallery, then masked, cost less than a branch per row), so the loops
/// have a constant length and vectorise.
fn bounds_from_sums_portable(
    sums: &[u16; BLOCK],
    estimator: &Estimator,
    alignment: &[u8; BLOCK],
    live: usize,
    floor: f32,
    lower_floor: f32,
) -> BlockBounds {
    let mut out = BlockBounds {
        uppers: [f32::NEG_INFINITY; BLOCK],
        lowers: [f32::NEG_INFINITY; BLOCK],
        candidates: 0,
        above_lower_floor: 0,
        max_upper: f32::NEG_INFINITY,
    };
    for row in 0..BLOCK {
        let code = alignment[row];
        let (estimate, bound) = estimator.estimate(sums[row], code);
        let (upper, lower) = if code >= UNBOUNDED {
            (f32::INFINITY, f32::NEG_INFINITY)
        } else {
            (estimate + bound, estimate - bound)
        };
        // Rows past the end keep -∞.
        let in_gallery = row < live;
        out.uppers[row] = if in_gallery { upper } else { f32::NEG_INFINITY };
        out.lowers[row] = if in_gallery { lower } else { f32::NEG_INFINITY };
    }
    let live_rows = u32::MAX.checked_shr((BLOCK - live) as u32).unwrap_or(0);
    for row in 0..BLOCK {
        out.candidates |= u32::from(out.uppers[row] >= floor) << row;
        out.above_lower_floor |= u32::from(out.lowers[row] > lower_floor) << row;
        out.max_upper = out.max_upper.max(out.uppers[row]);
    }
    out.candidates &= live_rows;
    out.above_lower_floor &= live_rows;
    out
}

/// A number at least the head upper bound of every row of a block, from its largest head table
/// sum and the lowest and highest of its rows' factor codes (see [`Query::peak_uppers`]).
struct PeakUppers {
    /// The code of the first line.
    lowest: u8,
    /// Slope and intercept in the sum, for each code from `lowest` to the gallery's highest.
    lines: WipedVec<f32>,
}

impl PeakUppers {
    /// A row's upper bound is increasing in its sum and linear in its factor, so what holds at
    /// both ends of the block's range of factors holds between them.
    #[inline(always)]
    fn at(&self, peak: u16, factor_codes: FactorCodes) -> f32 {
        let line = |code: u8| {
            let at = 2 * usize::from(code.wrapping_sub(self.lowest));
            match self.lines.get(at..at + 2) {
                Some(&[slope, intercept]) => slope * f32::from(peak) + intercept,
                // Outside the gallery's range: a code no bounded row has.
                _ => f32::INFINITY,
            }
        };
        line(factor_codes.lowest).max(line(factor_codes.highest))
    }
}

/// The least table sums at which a row may pass a floor (see [`Query::sum_limits`]).
struct SumLimits {
    /// Below it, a row's upper bound is below the floor.
    candidate: u16,
    /// Below it, a row's lower bound does not exceed the floor.
    raises_floor: u16,
}

/// A table-lookup kernel for the scan. The SIMD ones hold the token that proves this CPU runs
/// them.
#[derive(Clone, Copy)]
pub(crate) enum CodeKernel {
    /// Plain Rust that every machine runs: the reference.
    Portable,
    /// AVX2 with FMA: one pair of groups a 256-bit register.
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2Fma),
    /// AVX-512BW: two pairs a 512-bit register.
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512Bw),
}

impl CodeKernel {
    /// The kernel's name, as `stats` reports it and `FACEVAULT_KERNEL` spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CodeKernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            CodeKernel::Avx2(_) => "avx2",
            #[cfg(target_arch = "x86_64")]
            CodeKernel::Avx512(_) => "avx512",
        }
    }
}

/// The environment variable that overrides the scan's kernel, for tests and benchmarks.
pub(crate) const KERNEL_VARIABLE: &str = "FACEVAULT_KERNEL";

/// The fastest table-lookup kernel this CPU runs.
fn fastest_kernel() -> CodeKernel {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(cpu) = Avx512Bw::detect() {
            return CodeKernel::Avx512(cpu);
        }
        if let Some(cpu) = Avx2Fma::detect() {
            return CodeKernel::Avx2(cpu);
        }
    }
    CodeKernel::Portable
}

/// The kernel that `requested` (the value of [`KERNEL_VARIABLE`], if set) names: the fastest
/// this CPU runs when it is unset; an error saying why when it names no kernel, or one this CPU
/// cannot run.
fn choose_kernel(requested: Option<&str>) -> Result<CodeKernel, String> {
    let Some(requested) = requested else {
        return Ok(fastest_kernel());
    };
    let lacks = |features: &str| format!("{requested} was asked for, but this CPU lacks {features}");
    match requested {
        "portable" => Ok(CodeKernel::Portable),
        #[cfg(target_arch = "x86_64")]
        "avx2" => Avx2Fma::detect()
            .map(CodeKernel::Avx2)
            .ok_or_else(|| lacks("AVX2 and FMA")),
        #[cfg(target_arch = "x86_64")]
        "avx512" => Avx512Bw::detect()
            .map(CodeKernel::Avx512)
            .ok_or_else(|| lacks("AVX-512BW")),
        #[cfg(not(target_arch = "x86_64"))]
        "avx2" => Err(lacks("AVX2 and FMA")),
        #[cfg(not(target_arch = "x86_64"))]
        "avx512" => Err(lacks("AVX-512BW")),
        _ => Err(format!(
            "{requested:?} names no kernel: expected portable, avx2 or avx512"
        )),
    }
}

/// The kernel choice, made once at first use from [`KERNEL_VARIABLE`] and this CPU.
pub(crate) fn kernel_choice() -> Result<CodeKernel, &'static str> {
    static CHOICE: OnceLock<Result<CodeKernel, String>> = OnceLock::new();
    CHOICE
        .get_or_init(|| match std::env::var(KERNEL_VARIABLE) {
            Err(std::env::VarError::NotPresent) => choose_kernel(None),
            Ok(requested) => choose_kernel(Some(&requested)),
            Err(std::env::VarError::NotUnicode(raw)) => Err(format!(
                "{raw:?} names no kernel: expected portable, avx2 or avx512"
            )),
        })
        .as_ref()
        .copied()
        .map_err(String::as_str)
}

/// The table-lookup kernel the scan uses. A refused [`KERNEL_VARIABLE`] stops `Vault::open`
/// and `create` before any scan; a gallery built without them falls back to the fastest kernel.
pub(crate) fn code_kernel() -> CodeKernel {
    kernel_choice().unwrap_or_else(|_| fastest_kernel())
}

/// The scan's loop, over any kernel; inlined into each so that the kernel's code inlines too.
/// `peak` gives the largest head table sum of a block's rows, `bounds` each row's head bounds.
///
/// Most blocks are judged by their largest sum alone: below [`SumLimits::candidate`], none of
/// their rows can reach the floor, and below [`SumLimits::raises_floor`] none can raise it.
/// Only the few that may raise the floor have their rows' bounds worked out here, so that the
/// floor rises exactly as if every row's were.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scan_with(
    query: &Query,
    codes: &Codes,
    blocks: Range<usize>,
    mut floor: f32,
    mut raise_floor: impl FnMut(usize, f32) -> f32,
    leads: &mut Vec<(f32, u32)>,
    mut peak: impl FnMut(usize) -> u16,
    mut bounds: impl FnMut(usize, f32) -> BlockBounds,
) {
    let mut limits = query.sum_limits(codes, floor);
    let peak_uppers = &query.peak_uppers;
    for block in blocks {
        let peak = peak(block);
        let unbounded = codes.has_unbounded(block);
        if peak < limits.candidate && !unbounded {
            continue;
        }
        let upper = if peak >= limits.raises_floor || unbounded {
            let found = bounds(block, floor);
            let first_row = block * BLOCK;
            let before = floor;
            for offset in set_bits(found.above_lower_floor) {
                let lower = found.lowers[offset];
                if lower > floor {
                    floor = raise_floor(first_row + offset, lower);
                }
            }
            if floor != before {
                limits = query.sum_limits(codes, floor);
            }
            if found.candidates == 0 {
                continue;
            }
            found.max_upper
        } else {
            let upper = peak_uppers.at(peak, codes.block_factor_codes[block]);
            if upper < floor {
                continue;
            }
            upper
        };
        // Block numbers fit u32: the gallery holds fewer than `Gallery::MAX_ROWS` rows.
        leads.push((upper, block as u32));
    }
}

/// 32-byte vectors a pair of the portable kernel's weights: entry 0, then the weights of bits
/// 0 to 3, each with group 2p's value in bytes 0-15 and group 2p+1's in bytes 16-31, as the
/// codes are laid out.
const PORTABLE_VECTORS: usize = 5;

/// The tables as the portable kernel reads them. A table's entries are linear in the bits of
/// the nibble (entry n is the sum over the group's four dimensions of v_i or L − v_i, as bit i
/// is set or clear): entry n = entry 0 + Σ over n's set bits i of (entry 2^i − entry 0), a sum
/// that is exact in wrapping bytes because every entry fits one.
fn portable_weights(tables: &[u8]) -> WipedVec<u8> {
    let (pair_tables, _) = tables.as_chunks::<32>();
    let mut weights = WipedVec::new(vec![0u8; pair_tables.len() * PORTABLE_VECTORS * 32]);
    let (pair_weights, _) = weights.as_chunks_mut::<{ PORTABLE_VECTORS * 32 }>();
    for (tables, out) in pair_tables.iter().zip(pair_weights) {
        // Each group's values fill its 16 lanes of each vector: a few stores a pair, as every
        // lookup, whatever the kernel, pays for this.
        let (group_tables, _) = tables.as_chunks::<16>();
        for (half, table) in group_tables.iter().enumerate() {
            let entry0 = table[0];
            out[16 * half..][..16].fill(entry0);
            for bit in 0..4 {
                out[32 * (bit + 1) + 16 * half..][..16].fill(table[1 << bit].wrapping_sub(entry0));
            }
        }
    }
    weights
}

/// Pairs whose sums the portable kernel adds in bytes before it widens them: each pair adds at
/// most 60 to a byte (one table entry), so four add at most 240.
const PORTABLE_ROUND: usize = 4;

/// The portable kernel, which every machine runs and the SIMD kernels are held to: the table
/// lookups done as arithmetic that compilers vectorise for any target. Each of the 32 byte lanes
/// of a pair (group 2p's rows in lanes 0-15, group 2p+1's in 16-31, low nibbles for rows 0-15,
/// high for 16-31) adds entry 0 and the weight of every set bit of its nibble; four pairs are
/// added in wrapping bytes, whose result is exact (at most 240), then widened into 16-bit sums.
/// Fixed-length arrays and constant trip counts leave no bounds check in the loop; the sums are
/// the lookups' to the bit.
fn block_sums_portable(part: &CodePart, tables: &PartTables, block: usize, out: &mut [u16; BLOCK]) {
    let (code_pairs, _) = part.block(block).as_chunks::<32>();
    let (weight_pairs, _) = tables.weights.as_chunks::<{ PORTABLE_VECTORS * 32 }>();
    let mut low = [0u16; 32];
    let mut high = [0u16; 32];
    for (code_round, weight_round) in code_pairs
        .chunks(PORTABLE_ROUND)
        .zip(weight_pairs.chunks(PORTABLE_ROUND))
    {
        let mut low_bytes = [0u8; 32];
        let mut high_bytes = [0u8; 32];
        for (code, weights) in code_round.iter().zip(weight_round) {
            pair_sums(code, weights, &mut low_bytes, &mut high_bytes);
        }
        for lane in 0..32 {
            low[lane] += u16::from(low_bytes[lane]);
            high[lane] += u16::from(high_bytes[lane]);
        }
    }
    // Row j's two groups sit in lanes j and 16 + j; rows 16-31 are the high nibbles.
    for j in 0..16 {
        out[j] = low[j] + low[16 + j];
        out[16 + j] = high[j] + high[16 + j];
    }
}

/// The largest table sum of `block`'s 32 rows, from the portable kernel's sums.
fn block_peak_portable(part: &CodePart, tables: &PartTables, block: usize) -> u16 {
    let mut sums = [0u16; BLOCK];
    block_sums_portable(part, tables, block, &mut sums);
    sums.into_iter().fold(0, u16::max)
}

/// One pair's table entries, added into the low- and high-nibble byte lanes.
#[inline(always)]
fn pair_sums(
    code: &[u8; 32],
    weights: &[u8; PORTABLE_VECTORS * 32],
    low: &mut [u8; 32],
    high: &mut [u8; 32],
) {
    for lane in 0..32 {
        let byte = code[lane];
        let mut low_entry = weights[lane];
        let mut high_entry = weights[lane];
        for bit in 0..4 {
            let weight = weights[32 * (bit + 1) + lane];
            low_entry = low_entry.wrapping_add(if byte & (1 << bit) != 0 { weight } else { 0 });
            high_entry = high_entry.wrapping_add(if byte & (16 << bit) != 0 { weight } else { 0 });
        }
        low[lane] = low[lane].wrapping_add(low_entry);
        high[lane] = high[lane].wrapping_add(high_entry);
    }
}

/// The kernel the portable one replaced, one table lookup a nibble: the tests' reference for
/// what a lookup gives.
#[cfg(test)]
fn block_sums_by_lookup(part: &CodePart, tables: &PartTables, block: usize) -> [u16; BLOCK] {
    let mut out = [0u16; BLOCK];
    let bytes = part.block(block);
    for (pair, table) in tables.tables.chunks_exact(32).enumerate() {
        let pair_bytes = &bytes[pair * BLOCK..(pair + 1) * BLOCK];
        for (lane, lane_table) in table.chunks_exact(16).enumerate() {
            for j in 0..16 {
                let byte = pair_bytes[lane * 16 + j];
                out[j] += u16::from(lane_table[usize::from(byte & 15)]);
                out[j + 16] += u16::from(lane_table[usize::from(byte >> 4)]);
            }
        }
    }
    out
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

    /// Each part of the codes with the probe's tables for it, by name.
    fn parts<'a>(codes: &'a Codes, query: &'a Query) -> [(&'static str, &'a CodePart, &'a PartTables); 2] {
        [
            ("head", &codes.head, &query.head),
            ("tail", &codes.tail, &query.tail),
        ]
    }

    fn portable_sums(part: &CodePart, tables: &PartTables, block: usize) -> [u16; BLOCK] {
        let mut sums = [0u16; BLOCK];
        block_sums_portable(part, tables, block, &mut sums);
        sums
    }

    /// Two kernels' bounds of one block agree to the rounding of FMA, and the same rows pass
    /// each floor.
    fn assert_same_bounds(portable: &BlockBounds, simd: &BlockBounds, what: &str) {
        for row in 0..BLOCK {
            for (a, b) in [
                (portable.uppers[row], simd.uppers[row]),
                (portable.lowers[row], simd.lowers[row]),
            ] {
                assert!(a == b || (a - b).abs() < 1e-5, "{what} row {row}: {a} vs {b}");
            }
        }
        assert_eq!(portable.candidates, simd.candidates, "{what}");
        assert_eq!(portable.above_lower_floor, simd.above_lower_floor, "{what}");
    }

    #[test]
    fn the_transform_is_hadamards() {
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
        }
    }

    /// The AVX2 transform, and the dispatch that picks it by length, give the portable bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_transform_gives_the_portable_bits() {
        let Some(cpu) = Avx2Fma::detect() else {
            eprintln!("skipped: this CPU lacks AVX2 and FMA, so the AVX2 transform was not compared");
            return;
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut generator = XorShift64::new(5);
        for n in [16, 32, 64, 128, 256, 512, 1024, 4096, 32768] {
            let values = random_unit(&mut generator, n);
            let mut portable = values.clone();
            walsh_hadamard_portable(&mut portable);
            let mut dispatched = values.clone();
            walsh_hadamard(&mut dispatched);
            assert_eq!(bits(&dispatched), bits(&portable), "dispatched, n={n}");
            if n >= x86::HADAMARD_CHUNK {
                let mut avx2 = values.clone();
                x86::walsh_hadamard(cpu, &mut avx2);
                assert_eq!(bits(&avx2), bits(&portable), "avx2, n={n}");
            }
        }
    }

    /// The rotation's signs for a few seeds, as the generator written out in `Rotation::new`
    /// drew them before it moved into `XorShift64`: a rotation must not change with the code
    /// that draws it. Seeds 0 and 1 give the same signs (`seed | 1`). A dimension of 16 was
    /// then padded to 16, so its first 32 draws were all the signs; it is padded to 32 now.
    #[test]
    fn rotation_signs_are_those_drawn_before() {
        for (dim, seed, draws, negative_signs) in [
            (16usize, 0u64, 32usize, 0x0ca7_a9ffu128),
            (16, 1, 32, 0x0ca7_a9ff),
            (16, 42, 32, 0xcbb1_5f9d),
            (64, 0xdead_beef, 128, 0x5c68_cd06_79a8_4439_50f9_f4ec_ed3c_cb04),
            (64, u64::MAX, 128, 0xfd6e_0bda_3392_55ad_89bf_77ec_1662_644a),
        ] {
            let rotation = Rotation::new(dim, seed);
            assert_eq!(rotation.signs.len(), 2 * rotation.padded());
            let drawn = rotation
                .signs
                .iter()
                .take(draws)
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

    /// A SIMD kernel's sums of each part equal the portable ones exactly, and its bounds, the
    /// head's and the whole code's, agree to the rounding of FMA with the same rows passing
    /// each floor.
    #[cfg(target_arch = "x86_64")]
    fn assert_kernel_equals_the_portable_one(
        name: &str,
        dims_and_rows: &[(usize, usize)],
        sums: impl Fn(&CodePart, &PartTables, usize) -> [u16; BLOCK],
        head_bounds: impl Fn(&Query, &Codes, usize, f32, f32) -> BlockBounds,
        bounds: impl Fn(&Query, &Codes, usize, f32, f32) -> BlockBounds,
    ) {
        for &(dim, rows) in dims_and_rows {
            let (rotation, codes, _) = gallery(dim, rows, dim as u64);
            let mut generator = XorShift64::new(77);
            let mut rotated = vec![0.0; rotation.padded()];
            rotation.apply(&random_unit(&mut generator, dim), &mut rotated);
            let query = Query::new(&codes, &rotated);
            for block in 0..codes.blocks() {
                let what = format!("{name} dim {dim} block {block}");
                for (part_name, part, tables) in parts(&codes, &query) {
                    let portable = portable_sums(part, tables, block);
                    assert_eq!(portable, sums(part, tables, block), "{what} {part_name}");
                }
                assert_same_bounds(
                    &query.head_bounds_portable(&codes, block, 0.05, -0.02),
                    &head_bounds(&query, &codes, block, 0.05, -0.02),
                    &format!("{what} head"),
                );
                assert_same_bounds(
                    &query.bounds_portable(&codes, block, 0.05, -0.02),
                    &bounds(&query, &codes, block, 0.05, -0.02),
                    &format!("{what} whole"),
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_scan_kernel_equals_the_portable_one() {
        let Some(cpu) = Avx2Fma::detect() else {
            eprintln!("skipped: this CPU lacks AVX2 and FMA, so the AVX2 scan kernel was not compared");
            return;
        };
        assert_kernel_equals_the_portable_one(
            "avx2",
            &[(256, 3 * BLOCK + 5), (512, 2 * BLOCK), (20, 40), (512, 7)],
            |part, tables, block| x86::block_sums(cpu, part, tables, block),
            |query, codes, block, floor, lower| x86::head_bounds(cpu, query, codes, block, floor, lower),
            |query, codes, block, floor, lower| x86::bounds(cpu, query, codes, block, floor, lower),
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_scan_kernel_equals_the_portable_one() {
        let Some(cpu) = Avx512Bw::detect() else {
            eprintln!("skipped: this CPU lacks AVX-512BW");
            return;
        };
        // Parts of 2 pairs (d = 16 and 20), 6 and 2 (64), 14 and 2 (128), 28 and 4 (256), 56
        // and 8 (512): the 512-bit loop's remainders of 2, 4 and 6 pairs, and whole steps of 8.
        assert_kernel_equals_the_portable_one(
            "avx512",
            &[
                (256, 3 * BLOCK + 5),
                (512, 2 * BLOCK),
                (20, 40),
                (16, 33),
                (64, 70),
                (128, 45),
                (512, 7),
            ],
            |part, tables, block| x86::block_sums_512(cpu, part, tables, block),
            |query, codes, block, floor, lower| x86::head_bounds_512(cpu, query, codes, block, floor, lower),
            |query, codes, block, floor, lower| x86::bounds_512(cpu, query, codes, block, floor, lower),
        );
    }

    /// The table sums of the largest rows the kernels take: every lookup at its most (60),
    /// so that the byte adds and the 16-bit accumulators are pushed as far as they go, in each
    /// part and in their total.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_simd_sums_hold_at_the_largest_lookups() {
        let dim = 4096;
        let (rotation, codes, _) = gallery(dim, BLOCK, 3);
        let mut rotated = vec![0.0; rotation.padded()];
        rotation.apply(&random_unit(&mut XorShift64::new(8), dim), &mut rotated);
        let mut query = Query::new(&codes, &rotated);
        for tables in [&mut query.head, &mut query.tail] {
            let coded_bytes = tables.tables.len() - 32;
            tables.tables[..coded_bytes].fill(60);
            tables.weights = portable_weights(&tables.tables);
        }
        let mut total = 0;
        for (name, part, tables) in parts(&codes, &query) {
            let sums = portable_sums(part, tables, 0);
            assert_eq!(sums, block_sums_by_lookup(part, tables, 0), "{name} lookups");
            assert!(sums.iter().all(|sum| usize::from(*sum) == 120 * (part.pairs - 1)));
            if let Some(cpu) = Avx2Fma::detect() {
                assert_eq!(sums, x86::block_sums(cpu, part, tables, 0), "{name} avx2");
            }
            if let Some(cpu) = Avx512Bw::detect() {
                assert_eq!(sums, x86::block_sums_512(cpu, part, tables, 0), "{name} avx512");
            }
            total += usize::from(sums[0]);
        }
        // What the whole code's bounds add in 16 bits, at the vault's largest dimension.
        assert!(total <= usize::from(u16::MAX), "{total}");
        let portable = query.bounds_portable(&codes, 0, 0.0, 0.0);
        if let Some(cpu) = Avx2Fma::detect() {
            assert_same_bounds(&portable, &x86::bounds(cpu, &query, &codes, 0, 0.0, 0.0), "avx2");
        }
        if let Some(cpu) = Avx512Bw::detect() {
            assert_same_bounds(
                &portable,
                &x86::bounds_512(cpu, &query, &codes, 0, 0.0, 0.0),
                "avx512",
            );
        }
    }

    /// The portable kernel's premise: every table entry is entry 0 plus the weights of the
    /// nibble's set bits, in wrapping bytes.
    #[test]
    fn the_tables_are_linear_in_the_bits() {
        let mut generator = XorShift64::new(12);
        for dim in [16, 20, 100, 512, 4096] {
            let (rotation, codes, _) = gallery(dim, 1, dim as u64);
            let mut rotated = vec![0.0; rotation.padded()];
            rotation.apply(&random_unit(&mut generator, dim), &mut rotated);
            let query = Query::new(&codes, &rotated);
            for (pair, table, weights) in [&query.head, &query.tail].into_iter().flat_map(|tables| {
                let weights = &tables.weights;
                tables
                    .tables
                    .chunks_exact(32)
                    .enumerate()
                    .map(move |(pair, table)| (pair, table, weights))
            }) {
                let pair_weights = &weights[pair * PORTABLE_VECTORS * 32..][..PORTABLE_VECTORS * 32];
                for lane in 0..32 {
                    let entries = &table[(lane / 16) * 16..][..16];
                    for (nibble, entry) in entries.iter().enumerate() {
                        let sum = (0..4)
                            .filter(|bit| nibble & (1 << bit) != 0)
                            .fold(pair_weights[lane], |sum, bit| {
                                sum.wrapping_add(pair_weights[32 * (bit + 1) + lane])
                            });
                        assert_eq!(sum, *entry, "dim {dim} pair {pair} lane {lane} nibble {nibble}");
                    }
                }
            }
        }
    }

    /// The portable kernel on random galleries of many sizes (part pair counts from 2 to 384,
    /// and always a partial last block) and random probes: the sums of one table lookup a
    /// nibble, to the bit, and, where this CPU runs them, the SIMD kernels' sums and the rows
    /// that pass each floor, by the heads' bounds and the whole codes'.
    #[test]
    fn the_portable_kernel_gives_the_lookups_sums_on_random_data() {
        let mut generator = XorShift64::new(2024);
        for (case, dim) in [16, 20, 64, 100, 128, 256, 512, 700, 1024, 2048, 4096]
            .into_iter()
            .enumerate()
        {
            // 1 to 4 blocks, the last one partial.
            let whole = (generator.next_u64() % 4) as usize;
            let rows = whole * BLOCK + 1 + (generator.next_u64() % (BLOCK as u64 - 1)) as usize;
            let (rotation, codes, _) = gallery(dim, rows, 1000 + case as u64);
            let mut rotated = vec![0.0; rotation.padded()];
            for _ in 0..3 {
                rotation.apply(&random_unit(&mut generator, dim), &mut rotated);
                let query = Query::new(&codes, &rotated);
                for block in 0..codes.blocks() {
                    let what = format!("dim {dim} rows {rows} block {block}");
                    for (name, part, tables) in parts(&codes, &query) {
                        let sums = portable_sums(part, tables, block);
                        assert_eq!(sums, block_sums_by_lookup(part, tables, block), "{name} {what}");
                        #[cfg(target_arch = "x86_64")]
                        {
                            if let Some(cpu) = Avx2Fma::detect() {
                                let avx2 = x86::block_sums(cpu, part, tables, block);
                                assert_eq!(sums, avx2, "avx2 {name} {what}");
                            }
                            if let Some(cpu) = Avx512Bw::detect() {
                                let avx512 = x86::block_sums_512(cpu, part, tables, block);
                                assert_eq!(sums, avx512, "avx512 {name} {what}");
                            }
                        }
                    }
                    let head = query.head_bounds_portable(&codes, block, 0.05, -0.02);
                    let whole = query.bounds_portable(&codes, block, 0.05, -0.02);
                    #[cfg(target_arch = "x86_64")]
                    {
                        let mut compared = false;
                        if let Some(cpu) = Avx2Fma::detect() {
                            let simd = x86::head_bounds(cpu, &query, &codes, block, 0.05, -0.02);
                            assert_same_bounds(&head, &simd, &format!("avx2 head {what}"));
                            let simd = x86::bounds(cpu, &query, &codes, block, 0.05, -0.02);
                            assert_same_bounds(&whole, &simd, &format!("avx2 whole {what}"));
                            compared = true;
                        }
                        if let Some(cpu) = Avx512Bw::detect() {
                            let simd = x86::head_bounds_512(cpu, &query, &codes, block, 0.05, -0.02);
                            assert_same_bounds(&head, &simd, &format!("avx512 head {what}"));
                            let simd = x86::bounds_512(cpu, &query, &codes, block, 0.05, -0.02);
                            assert_same_bounds(&whole, &simd, &format!("avx512 whole {what}"));
                        }
                        if !compared && case == 0 && block == 0 {
                            eprintln!("skipped: this CPU lacks AVX2, so only the lookups were compared");
                        }
                    }
                    let live = rows.saturating_sub(block * BLOCK).min(BLOCK);
                    for bounds in [&head, &whole] {
                        let past_the_end = bounds.candidates.checked_shr(live as u32).unwrap_or(0);
                        assert_eq!(past_the_end, 0, "{what}");
                        assert!(bounds.uppers[live..].iter().all(|u| *u == f32::NEG_INFINITY));
                    }
                }
            }
        }
    }

    /// `FACEVAULT_KERNEL`'s values: each kernel by name when this CPU runs it, a clear refusal
    /// when it does not, and the fastest when the variable is unset.
    #[test]
    fn the_kernel_override_names_a_kernel_or_says_why_not() {
        assert_eq!(
            choose_kernel(None).map(CodeKernel::name),
            Ok(fastest_kernel().name())
        );
        assert_eq!(
            choose_kernel(Some("portable")).map(CodeKernel::name),
            Ok("portable")
        );
        let unknown = choose_kernel(Some("sse9")).map(CodeKernel::name).unwrap_err();
        assert!(unknown.contains("expected portable, avx2 or avx512"), "{unknown}");
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = choose_kernel(Some("avx512")).map(CodeKernel::name);
            match Avx512Bw::detect() {
                Some(_) => assert_eq!(avx512, Ok("avx512")),
                None => assert_eq!(
                    avx512,
                    Err("avx512 was asked for, but this CPU lacks AVX-512BW".into())
                ),
            }
            let avx2 = choose_kernel(Some("avx2")).map(CodeKernel::name);
            match Avx2Fma::detect() {
                Some(_) => assert_eq!(avx2, Ok("avx2")),
                None => assert_eq!(
                    avx2,
                    Err("avx2 was asked for, but this CPU lacks AVX2 and FMA".into())
                ),
            }
        }
    }

    /// Both bounds of a row hold its true score but for the rare miss the bound allows, and
    /// the whole code's, which the re-rank uses, are the narrower.
    #[test]
    fn estimates_fall_within_their_bounds() {
        let dim = 512;
        let (rotation, codes, rows) = gallery(dim, 4000, 11);
        let mut generator = XorShift64::new(5);
        let mut rotated = vec![0.0; rotation.padded()];
        // Per kind of bound: scores outside, the widest half-width, and the half-widths' sum.
        let mut head = (0, 0f32, 0f64);
        let mut whole = (0, 0f32, 0f64);
        for _ in 0..5 {
            let probe = random_unit(&mut generator, dim);
            rotation.apply(&probe, &mut rotated);
            let query = Query::new(&codes, &rotated);
            for block in 0..codes.blocks() {
                for (bounds, tally) in [
                    (query.head_bounds_portable(&codes, block, 0.0, 0.0), &mut head),
                    (query.bounds(&codes, block, 0.0, 0.0), &mut whole),
                ] {
                    for offset in 0..BLOCK.min(rows.len() - block * BLOCK) {
                        let values = &rows[block * BLOCK + offset];
                        let exact: f32 = values.iter().zip(&probe).map(|(a, b)| a * b).sum();
                        let (upper, lower) = (bounds.uppers[offset], bounds.lowers[offset]);
                        tally.0 += usize::from(exact > upper || exact < lower);
                        tally.1 = tally.1.max((upper - lower) / 2.0);
                        tally.2 += f64::from((upper - lower) / 2.0);
                    }
                }
            }
        }
        for (name, (outside, widest, _)) in [("head", head), ("whole", whole)] {
            assert!(
                outside <= 5,
                "{name}: {outside} of 20000 scores outside their bounds"
            );
            assert!(widest < 0.3, "{name}: bound {widest} too loose to be useful");
        }
        assert!(whole.1 < 0.25, "whole: bound {} too loose", whole.1);
        assert!(
            whole.2 < 0.9 * head.2,
            "whole {} against head {}",
            whole.2,
            head.2
        );
    }

    /// Every kernel's scan, each run with its own choice of floor-raising rows, as a list of
    /// the kernels this CPU runs and their names.
    type Scan =
        fn(&Query, &Codes, Range<usize>, f32, &mut dyn FnMut(usize, f32) -> f32, &mut Vec<(f32, u32)>);
    /// A kernel's head bounds of one block's rows, at one floor for both bounds.
    type Bounds = fn(&Query, &Codes, usize, f32) -> BlockBounds;

    fn scans() -> Vec<(&'static str, Scan, Bounds)> {
        let mut scans: Vec<(&'static str, Scan, Bounds)> = vec![(
            "portable",
            |query, codes, blocks, floor, raise, leads| {
                let peak = |block| block_peak_portable(&codes.head, &query.head, block);
                let bounds = |block, floor| query.head_bounds_portable(codes, block, floor, floor);
                scan_with(query, codes, blocks, floor, raise, leads, peak, bounds);
            },
            |query, codes, block, floor| query.head_bounds_portable(codes, block, floor, floor),
        )];
        #[cfg(target_arch = "x86_64")]
        {
            if Avx2Fma::detect().is_some() {
                scans.push((
                    "avx2",
                    |query, codes, blocks, floor, raise, leads| {
                        if let Some(cpu) = Avx2Fma::detect() {
                            x86::scan(cpu, query, codes, blocks, floor, raise, leads);
                        }
                    },
                    |query, codes, block, floor| match Avx2Fma::detect() {
                        Some(cpu) => x86::head_bounds(cpu, query, codes, block, floor, floor),
                        None => unreachable!("listed only where AVX2 was detected"),
                    },
                ));
            }
            if Avx512Bw::detect().is_some() {
                scans.push((
                    "avx512",
                    |query, codes, blocks, floor, raise, leads| {
                        if let Some(cpu) = Avx512Bw::detect() {
                            x86::scan_512(cpu, query, codes, blocks, floor, raise, leads);
                        }
                    },
                    |query, codes, block, floor| match Avx512Bw::detect() {
                        Some(cpu) => x86::head_bounds_512(cpu, query, codes, block, floor, floor),
                        None => unreachable!("listed only where AVX-512BW was detected"),
                    },
                ));
            } else {
                eprintln!("skipped: this CPU lacks AVX-512BW, so its scan was not compared");
            }
        }
        scans
    }

    /// The scan's shortcuts lose nothing: on random galleries and probes, from floors low and
    /// high, each kernel's scan raises the floor to the best lower bound of all rows (as a
    /// scan that works out every row's bounds does), and its leads hold exactly the rows whose
    /// upper bound reaches that final floor, each lead at least their bounds.
    #[test]
    fn the_scans_leads_hold_every_row_that_reaches_the_final_floor() {
        let mut generator = XorShift64::new(31);
        for (dim, rows) in [(512, 20 * BLOCK + 3), (128, 9 * BLOCK), (20, 70)] {
            let (rotation, codes, kept) = gallery(dim, rows, 40 + dim as u64);
            let mut rotated = vec![0.0; rotation.padded()];
            for probe_number in 0..6 {
                // Half the probes near a gallery row, so that some rows have high scores.
                let mut probe = random_unit(&mut generator, dim);
                if probe_number % 2 == 0 {
                    let near = &kept[(generator.next_u64() % rows as u64) as usize];
                    probe.iter_mut().zip(near).for_each(|(p, n)| *p = 0.3 * *p + n);
                    let norm = probe.iter().map(|x| x * x).sum::<f32>().sqrt();
                    probe.iter_mut().for_each(|x| *x /= norm);
                }
                rotation.apply(&probe, &mut rotated);
                let query = Query::new(&codes, &rotated);
                // Each kernel rounds its bounds its own way (FMA or not): each is held to its own.
                for (name, scan, kernel_bounds) in scans() {
                    let every_row: Vec<BlockBounds> = (0..codes.blocks())
                        .map(|block| kernel_bounds(&query, &codes, block, 0.0))
                        .collect();
                    let best_lower = every_row
                        .iter()
                        .flat_map(|bounds| bounds.lowers)
                        .fold(f32::NEG_INFINITY, f32::max);
                    for start_floor in [-1.0, 0.0, 0.2, 0.5, 2.0] {
                        let final_floor = best_lower.max(start_floor);
                        let expected: Vec<usize> = every_row
                            .iter()
                            .enumerate()
                            .flat_map(|(block, bounds)| {
                                (0..BLOCK)
                                    .filter(|row| bounds.uppers[*row] >= final_floor)
                                    .map(move |row| block * BLOCK + row)
                            })
                            .collect();
                        let what = format!("{name} dim {dim} probe {probe_number} floor {start_floor}");
                        let mut leads = Vec::new();
                        let mut floor = start_floor;
                        let mut raise = |_row: usize, lower: f32| {
                            floor = floor.max(lower);
                            floor
                        };
                        scan(
                            &query,
                            &codes,
                            0..codes.blocks(),
                            start_floor,
                            &mut raise,
                            &mut leads,
                        );
                        assert_eq!(floor, final_floor, "{what}");
                        let mut found = Vec::new();
                        for (lead_upper, block) in leads.iter().filter(|(upper, _)| *upper >= floor) {
                            let block = *block as usize;
                            let bounds = kernel_bounds(&query, &codes, block, floor);
                            for row in set_bits(bounds.candidates) {
                                assert!(bounds.uppers[row] <= *lead_upper, "{what}: lead below its row");
                                found.push(block * BLOCK + row);
                            }
                        }
                        assert_eq!(found, expected, "{what}");
                    }
                }
            }
        }
    }

    /// The limits a floor puts on the table sums, and the upper bound a block's largest sum
    /// gives, hold for every row, at floors set to the rows' own bounds (where rounding would
    /// show).
    #[test]
    fn sum_limits_and_peak_uppers_hold_for_every_row() {
        let mut generator = XorShift64::new(8);
        for dim in [512, 64] {
            let (rotation, codes, _) = gallery(dim, 10 * BLOCK, 60 + dim as u64);
            let mut rotated = vec![0.0; rotation.padded()];
            for _ in 0..4 {
                rotation.apply(&random_unit(&mut generator, dim), &mut rotated);
                let query = Query::new(&codes, &rotated);
                let peak_uppers = &query.peak_uppers;
                for block in 0..codes.blocks() {
                    let sums = portable_sums(&codes.head, &query.head, block);
                    let bounds = query.head_bounds_portable(&codes, block, 0.0, 0.0);
                    let peak = sums.into_iter().fold(0, u16::max);
                    for (row, sum) in sums.into_iter().enumerate() {
                        let (upper, lower) = (bounds.uppers[row], bounds.lowers[row]);
                        let factor_codes = codes.block_factor_codes[block];
                        assert!(peak_uppers.at(peak, factor_codes) >= upper, "dim {dim} row {row}");
                        for floor in [upper, lower.next_down()] {
                            let limits = query.sum_limits(&codes, floor);
                            if upper >= floor {
                                assert!(sum >= limits.candidate, "dim {dim} row {row} floor {floor}");
                            }
                            if lower > floor {
                                assert!(sum >= limits.raises_floor, "dim {dim} row {row} floor {floor}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// A row with no head bound is handed on by every scan whatever the floor, and a scan that
    /// removes it stops looking at its block row by row; a row with no whole-code bound always
    /// passes the re-rank's floor.
    #[test]
    fn a_row_without_a_bound_is_always_a_lead() {
        let (rotation, mut codes, _) = gallery(128, 3 * BLOCK, 5);
        let at = codes.head.alignment_at(BLOCK + 7);
        codes.head.blocks[at] = UNBOUNDED;
        codes.unbounded_rows += 1;
        let at = codes.tail.alignment_at(2 * BLOCK + 3);
        codes.tail.blocks[at] = UNBOUNDED;
        let mut rotated = vec![0.0; rotation.padded()];
        rotation.apply(&random_unit(&mut XorShift64::new(3), 128), &mut rotated);
        let query = Query::new(&codes, &rotated);
        for (name, scan, kernel_bounds) in scans() {
            let mut leads = Vec::new();
            scan(
                &query,
                &codes,
                0..codes.blocks(),
                5.0,
                &mut |_, floor| floor,
                &mut leads,
            );
            assert_eq!(leads, vec![(f32::INFINITY, 1)], "{name}");
            let bounds = kernel_bounds(&query, &codes, 1, 5.0);
            assert_eq!(bounds.candidates, 1 << 7, "{name}");
        }
        assert_eq!(query.bounds(&codes, 2, 5.0, 5.0).candidates, 1 << 3);
        assert_eq!(query.bounds_portable(&codes, 2, 5.0, 5.0).candidates, 1 << 3);
        codes.swap_remove(BLOCK + 7);
        assert_eq!(codes.unbounded_rows, 0);
        assert!(!codes.has_unbounded(1));
    }

    /// Every kernel's largest sum of a block is the largest of the portable sums.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_simd_peaks_are_the_largest_portable_sums() {
        let Some(cpu) = Avx2Fma::detect() else {
            eprintln!("skipped: this CPU lacks AVX2 and FMA, so no SIMD peak was compared");
            return;
        };
        let mut generator = XorShift64::new(99);
        for dim in [16, 64, 512, 4096] {
            let (rotation, codes, _) = gallery(dim, 3 * BLOCK + 9, dim as u64);
            let mut rotated = vec![0.0; rotation.padded()];
            rotation.apply(&random_unit(&mut generator, dim), &mut rotated);
            let query = Query::new(&codes, &rotated);
            for block in 0..codes.blocks() {
                for (name, part, tables) in parts(&codes, &query) {
                    let portable = block_peak_portable(part, tables, block);
                    let (avx2, avx512) = x86::peaks(cpu, part, tables, block);
                    let what = format!("{name} dim {dim} block {block}");
                    assert_eq!(avx2, portable, "avx2 {what}");
                    match avx512 {
                        Some(avx512) => assert_eq!(avx512, portable, "avx512 {what}"),
                        None if block == 0 && dim == 16 && name == "head" => {
                            eprintln!("skipped: this CPU lacks AVX-512BW")
                        }
                        None => {}
                    }
                }
            }
        }
    }

    #[test]
    fn rows_past_the_end_never_pass() {
        let (rotation, codes, _) = gallery(64, BLOCK + 3, 4);
        let mut rotated = vec![0.0; rotation.padded()];
        let mut generator = XorShift64::new(6);
        rotation.apply(&random_unit(&mut generator, 64), &mut rotated);
        let query = Query::new(&codes, &rotated);
        for bounds in [
            query.bounds(&codes, 1, f32::NEG_INFINITY, f32::NEG_INFINITY),
            query.head_bounds_portable(&codes, 1, f32::NEG_INFINITY, f32::NEG_INFINITY),
        ] {
            assert_eq!(bounds.candidates, 0b111);
            assert_eq!(bounds.above_lower_floor, 0b111);
        }
    }

    #[test]
    fn swap_remove_keeps_the_other_codes() {
        let (rotation, mut codes, _) = gallery(64, BLOCK + 3, 1);
        let row_code = |codes: &Codes, row: usize| -> Vec<u8> {
            let mut code = Vec::new();
            for part in [&codes.head, &codes.tail] {
                code.extend((0..2 * (part.pairs - 1)).map(|group| part.nibble(row, group)));
                code.push(part.blocks[part.alignment_at(row)]);
            }
            code
        };
        // Each block's factor range is exactly its live rows' least and greatest head code: a
        // range left narrower after an erasure would give leads numbers below their rows' bounds.
        let assert_tight_ranges = |codes: &Codes| {
            for block in 0..codes.blocks() {
                let live = (block * BLOCK..codes.len().min((block + 1) * BLOCK))
                    .map(|row| codes.head.blocks[codes.head.alignment_at(row)]);
                let (lowest, highest) = (live.clone().min(), live.max());
                let range = codes.block_factor_codes[block];
                assert_eq!(
                    (Some(range.lowest), Some(range.highest)),
                    (lowest, highest),
                    "block {block}"
                );
            }
        };
        assert_tight_ranges(&codes);
        let expected_last = row_code(&codes, BLOCK + 2);
        let kept_second = row_code(&codes, 1);
        codes.swap_remove(4);
        assert_eq!(row_code(&codes, 4), expected_last);
        assert_eq!(row_code(&codes, 1), kept_second);
        assert_eq!(codes.len(), BLOCK + 2);
        assert_tight_ranges(&codes);
        for _ in 0..3 {
            codes.swap_remove(0);
            assert_tight_ranges(&codes);
        }
        assert_eq!(codes.len(), BLOCK - 1);
        for part in [&codes.head, &codes.tail] {
            assert_eq!(part.blocks.len(), BLOCK * part.pairs);
        }
        assert_eq!(codes.block_factor_codes.len(), 1);
        assert_eq!(rotation.padded(), 64);
    }

    /// The head has seven eighths of the pairs, rounded down to an even number, and the tail
    /// the rest, whose coded dimensions follow the head's.
    #[test]
    fn the_codes_split_into_a_head_and_a_tail() {
        for (dim, head_pairs, tail_pairs) in [
            (1, 2, 2),
            (20, 2, 2),
            (64, 6, 2),
            (128, 14, 2),
            (256, 28, 4),
            (512, 56, 8),
        ] {
            let codes = Codes::new(Rotation::new(dim, 1).padded(), dim);
            assert_eq!(
                (codes.head.pairs, codes.tail.pairs),
                (head_pairs, tail_pairs),
                "dim {dim}"
            );
            assert_eq!(codes.head.first_dim, 0);
            assert_eq!(codes.tail.first_dim, codes.head.coded_dims());
            assert_eq!(codes.head.pairs + codes.tail.pairs, codes.padded / 8);
        }
    }
}
