//! The fast scan's intrinsics: the only part of `fastscan` allowed `unsafe`. Each entry point
//! takes the token from `cpu` that proves this CPU runs its instructions (AVX2 and FMA, or
//! AVX-512BW), and each `unsafe` below states why it is sound.
#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::{BlockBounds, Codes, Estimator, Query, BLOCK, FACTOR_STEP, UNBOUNDED};
#[cfg(test)]
use super::{CodePart, PartTables};
use crate::gallery::cpu::{Avx2Fma, Avx512Bw};

/// [`Query::scan`] in AVX2.
#[inline]
pub(super) fn scan(
    _cpu: Avx2Fma,
    query: &Query,
    codes: &Codes,
    blocks: Range<usize>,
    floor: f32,
    raise_floor: impl FnMut(usize, f32) -> f32,
    leads: &mut Vec<(f32, u32)>,
) {
    // SAFETY: an `Avx2Fma` exists only where AVX2 and FMA were detected on this CPU (`cpu`).
    unsafe { scan_avx2(query, codes, blocks, floor, raise_floor, leads) }
}

/// [`Query::scan`] in AVX-512BW.
#[inline]
pub(super) fn scan_512(
    _cpu: Avx512Bw,
    query: &Query,
    codes: &Codes,
    blocks: Range<usize>,
    floor: f32,
    raise_floor: impl FnMut(usize, f32) -> f32,
    leads: &mut Vec<(f32, u32)>,
) {
    // SAFETY: an `Avx512Bw` exists only where AVX-512F, AVX-512BW, AVX2 and FMA were detected
    // on this CPU (`cpu`).
    unsafe { scan_avx512(query, codes, blocks, floor, raise_floor, leads) }
}

/// [`Query::bounds_portable`] in AVX2.
pub(super) fn bounds(
    _cpu: Avx2Fma,
    query: &Query,
    codes: &Codes,
    block: usize,
    floor: f32,
    lower_floor: f32,
) -> BlockBounds {
    // SAFETY: an `Avx2Fma` exists only where AVX2 and FMA were detected on this CPU (`cpu`).
    unsafe { bounds_avx2(query, codes, block, floor, lower_floor) }
}

/// [`Query::head_bounds_portable`] in AVX2, as the scan works them out.
#[cfg(test)]
pub(super) fn head_bounds(
    _cpu: Avx2Fma,
    query: &Query,
    codes: &Codes,
    block: usize,
    floor: f32,
    lower_floor: f32,
) -> BlockBounds {
    // SAFETY: an `Avx2Fma` exists only where AVX2 and FMA were detected on this CPU (`cpu`).
    unsafe { head_bounds_avx2(query, codes, block, floor, lower_floor) }
}

/// [`super::walsh_hadamard`] in AVX2, for a power of two of at least [`HADAMARD_CHUNK`] values
/// (fewer would be left untransformed: a wrong answer, though never an unsound one).
#[inline]
pub(super) fn walsh_hadamard(_cpu: Avx2Fma, values: &mut [f32]) {
    debug_assert!(values.len() >= HADAMARD_CHUNK && values.len().is_power_of_two());
    // SAFETY: an `Avx2Fma` exists only where AVX2 and FMA were detected on this CPU (`cpu`).
    unsafe { walsh_hadamard_avx2(values) }
}

/// How far ahead of the block being read its codes are fetched, in bytes, while they fit the
/// last-level cache.
const PREFETCH_DISTANCE: usize = 4096;
/// How far ahead the scan fetches codes that stream from memory: at a million rows (56 MB of
/// heads) on the Zen 4 host this took the scan's median from 1.78–1.88 ms to 1.72–1.78 ms, where
/// at 100k (5.6 MB) it cost 4%, so it is kept for galleries past [`FAR_PREFETCH_FROM`].
const FAR_PREFETCH_DISTANCE: usize = 8192;
/// Bytes of heads past which the scan fetches [`FAR_PREFETCH_DISTANCE`] ahead: more than a
/// last-level cache holds on the CPUs measured.
const FAR_PREFETCH_FROM: usize = 32 << 20;

/// How far ahead the scan over `codes` fetches.
fn scan_prefetch_distance(codes: &Codes) -> usize {
    if codes.head.blocks.len() > FAR_PREFETCH_FROM {
        FAR_PREFETCH_DISTANCE
    } else {
        PREFETCH_DISTANCE
    }
}

/// Table sums of the 32 rows of `block`. Per pair, two byte shuffles (one per nibble half)
/// look up 32 rows' groups in both of the pair's tables; four pairs' lookups (each at most 60)
/// are added in bytes without overflow, then the 16-bit accumulators take the whole lanes and
/// their high bytes: the low bytes' sums are recovered at the end (FAISS's trick, which saves
/// a mask per step).
#[inline]
#[target_feature(enable = "avx2")]
fn block_sums_avx2(codes: &[u8], tables: &[u8]) -> [__m128i; 4] {
    let [low_whole, low_odd, high_whole, high_odd] = accumulate_avx2(codes, tables, PREFETCH_DISTANCE);
    rows_in_order(low_whole, low_odd, high_whole, high_odd)
}

/// The largest table sum of a block's 32 rows, in AVX2.
#[inline]
#[target_feature(enable = "avx2")]
fn peak_avx2(codes: &[u8], tables: &[u8], ahead: usize) -> u16 {
    let [low_whole, low_odd, high_whole, high_odd] = accumulate_avx2(codes, tables, ahead);
    peak_of(low_whole, low_odd, high_whole, high_odd)
}

/// The 16-bit accumulators of [`block_sums_avx2`]: the low nibbles' whole lanes and high bytes,
/// then the high nibbles'.
#[inline]
#[target_feature(enable = "avx2")]
fn accumulate_avx2(bytes: &[u8], tables: &[u8], ahead: usize) -> [__m256i; 4] {
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
    let table_quads = tables.chunks_exact(128);
    let (code_rest, table_rest) = (code_quads.remainder(), table_quads.remainder());
    for (codes_quad, tables_quad) in code_quads.zip(table_quads) {
        // The scan reads one stream; asking for the lines a few blocks ahead keeps it in
        // flight. A prefetch never faults, whatever the address; `wrapping_add` keeps the
        // pointer arithmetic defined past the end.
        let fetched = codes_quad.as_ptr().wrapping_add(ahead);
        _mm_prefetch(fetched.cast(), _MM_HINT_T0);
        _mm_prefetch(fetched.wrapping_add(64).cast(), _MM_HINT_T0);
        let (low0, high0) = lookup(codes_quad, tables_quad, 0);
        let (low1, high1) = lookup(codes_quad, tables_quad, 32);
        let (low2, high2) = lookup(codes_quad, tables_quad, 64);
        let (low3, high3) = lookup(codes_quad, tables_quad, 96);
        let low = _mm256_add_epi8(_mm256_add_epi8(low0, low1), _mm256_add_epi8(low2, low3));
        let high = _mm256_add_epi8(_mm256_add_epi8(high0, high1), _mm256_add_epi8(high2, high3));
        accumulate(low, high);
    }
    // A part has an even number of pairs: at most two are left.
    for (codes_pair, tables_pair) in code_rest.chunks_exact(32).zip(table_rest.chunks_exact(32)) {
        let (low, high) = lookup(codes_pair, tables_pair, 0);
        accumulate(low, high);
    }
    [low_whole, low_odd, high_whole, high_odd]
}

/// The largest of the rows' sums from the 16-bit accumulators of [`accumulate_avx2`] (or
/// [`accumulate_avx512`]'s): the sums as [`rows_in_order`] recovers them, without putting them
/// in order, then the largest of the 32 by one `minpos` over their complements.
#[inline]
#[target_feature(enable = "avx2")]
fn peak_of(low_whole: __m256i, low_odd: __m256i, high_whole: __m256i, high_odd: __m256i) -> u16 {
    let even = |whole: __m256i, odd: __m256i| _mm256_sub_epi16(whole, _mm256_slli_epi16(odd, 8));
    let halves_added =
        |both: __m256i| _mm_add_epi16(_mm256_castsi256_si128(both), _mm256_extracti128_si256(both, 1));
    let low = _mm_max_epu16(halves_added(even(low_whole, low_odd)), halves_added(low_odd));
    let high = _mm_max_epu16(halves_added(even(high_whole, high_odd)), halves_added(high_odd));
    let complements = _mm_xor_si128(_mm_max_epu16(low, high), _mm_set1_epi32(-1));
    // The least complement is in the low 16 bits, its lane above them.
    !(_mm_cvtsi128_si32(_mm_minpos_epu16(complements)) as u16)
}

/// The rows' sums from the 16-bit accumulators of [`block_sums_avx2`] (and of
/// [`block_sums_avx512`], once it has folded its halves): rows 0-7, 8-15, 16-23, 24-31.
#[inline]
#[target_feature(enable = "avx2")]
fn rows_in_order(
    low_whole: __m256i,
    low_odd: __m256i,
    high_whole: __m256i,
    high_odd: __m256i,
) -> [__m128i; 4] {
    // Each 16-bit lane i < 8 holds rows 2i and 2i+1 of the even groups, lane 8 + i the same
    // rows of the odd groups: recover the even rows, add the two halves, interleave. The
    // subtraction and additions wrap, so the sums come out exact whatever order they were
    // added in, as long as each row's total fits 16 bits (at most 120 a pair).
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

/// [`block_sums_avx2`] on 512-bit registers: each holds two pairs, pair p's two tables in its
/// low half and pair p+1's in its high half (`_mm512_shuffle_epi8` looks up within each 16-byte
/// lane, as the 256-bit shuffle does). Four registers' lookups (four pairs a byte, each at most
/// 60) are added in bytes, as in AVX2, then widened into 16-bit accumulators the same way; at
/// the end the halves, which hold the even and odd pairs' sums, are added to give the AVX2
/// kernel's accumulators, and it finishes the same way. Same sums, same bits.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw")]
fn block_sums_avx512(codes: &[u8], tables: &[u8]) -> [__m128i; 4] {
    let [low_whole, low_odd, high_whole, high_odd] = accumulate_avx512(codes, tables, PREFETCH_DISTANCE);
    rows_in_order(low_whole, low_odd, high_whole, high_odd)
}

/// The largest table sum of a block's 32 rows, in AVX-512BW.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw")]
fn peak_avx512(codes: &[u8], tables: &[u8], ahead: usize) -> u16 {
    let [low_whole, low_odd, high_whole, high_odd] = accumulate_avx512(codes, tables, ahead);
    peak_of(low_whole, low_odd, high_whole, high_odd)
}

/// [`accumulate_avx2`] on 512-bit registers, folded into the AVX2 kernel's accumulators.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw")]
fn accumulate_avx512(bytes: &[u8], tables: &[u8], ahead: usize) -> [__m256i; 4] {
    let nibble = _mm512_set1_epi8(0x0f);
    let mut low_whole = _mm512_setzero_si512();
    let mut low_odd = _mm512_setzero_si512();
    let mut high_whole = _mm512_setzero_si512();
    let mut high_odd = _mm512_setzero_si512();
    // Two pairs' byte lookups for the rows' low-nibble groups (rows 0-15) and high ones (16-31).
    let lookup = |codes: &[u8], tables: &[u8], at: usize| -> (__m512i, __m512i) {
        // SAFETY: callers pass chunks of at least `at + 64` bytes (`at` is 0, 64, 128 or 192
        // in chunks of 256, 0 in chunks of 64), so each unaligned 512-bit load reads within
        // them.
        let (code, table) = unsafe {
            (
                _mm512_loadu_si512(codes.as_ptr().add(at).cast()),
                _mm512_loadu_si512(tables.as_ptr().add(at).cast()),
            )
        };
        (
            _mm512_shuffle_epi8(table, _mm512_and_si512(code, nibble)),
            _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(code, 4), nibble)),
        )
    };
    let mut accumulate = |low: __m512i, high: __m512i| {
        low_whole = _mm512_add_epi16(low_whole, low);
        low_odd = _mm512_add_epi16(low_odd, _mm512_srli_epi16(low, 8));
        high_whole = _mm512_add_epi16(high_whole, high);
        high_odd = _mm512_add_epi16(high_odd, _mm512_srli_epi16(high, 8));
    };
    let code_octets = bytes.chunks_exact(256);
    let table_octets = tables.chunks_exact(256);
    let (code_rest, table_rest) = (code_octets.remainder(), table_octets.remainder());
    for (codes_octet, tables_octet) in code_octets.zip(table_octets) {
        // As in AVX2: keep the one stream in flight, four lines a step here. A prefetch never
        // faults, whatever the address; `wrapping_add` keeps the pointer arithmetic defined
        // past the end.
        let fetched = codes_octet.as_ptr().wrapping_add(ahead);
        _mm_prefetch(fetched.cast(), _MM_HINT_T0);
        _mm_prefetch(fetched.wrapping_add(64).cast(), _MM_HINT_T0);
        _mm_prefetch(fetched.wrapping_add(128).cast(), _MM_HINT_T0);
        _mm_prefetch(fetched.wrapping_add(192).cast(), _MM_HINT_T0);
        let (low0, high0) = lookup(codes_octet, tables_octet, 0);
        let (low1, high1) = lookup(codes_octet, tables_octet, 64);
        let (low2, high2) = lookup(codes_octet, tables_octet, 128);
        let (low3, high3) = lookup(codes_octet, tables_octet, 192);
        let low = _mm512_add_epi8(_mm512_add_epi8(low0, low1), _mm512_add_epi8(low2, low3));
        let high = _mm512_add_epi8(_mm512_add_epi8(high0, high1), _mm512_add_epi8(high2, high3));
        accumulate(low, high);
    }
    // A part has an even number of pairs: at most six are left, two a register.
    for (codes_two, tables_two) in code_rest.chunks_exact(64).zip(table_rest.chunks_exact(64)) {
        let (low, high) = lookup(codes_two, tables_two, 0);
        accumulate(low, high);
    }
    // Add pair p's half to pair p+1's: the AVX2 kernel's accumulators.
    let fold = |both: __m512i| -> __m256i {
        _mm256_add_epi16(_mm512_castsi512_si256(both), _mm512_extracti64x4_epi64::<1>(both))
    };
    [fold(low_whole), fold(low_odd), fold(high_whole), fold(high_odd)]
}

/// The AVX-512 sums, in row order, for the tests.
#[cfg(test)]
pub(super) fn block_sums_512(
    _cpu: Avx512Bw,
    part: &CodePart,
    tables: &PartTables,
    block: usize,
) -> [u16; BLOCK] {
    // SAFETY: an `Avx512Bw` exists only where AVX-512F, AVX-512BW, AVX2 and FMA were detected
    // on this CPU (`cpu`).
    let sums = unsafe { block_sums_avx512(part.block(block), &tables.tables) };
    sums_in_row_order(sums)
}

/// [`Query::bounds_portable`] in AVX-512BW.
pub(super) fn bounds_512(
    _cpu: Avx512Bw,
    query: &Query,
    codes: &Codes,
    block: usize,
    floor: f32,
    lower_floor: f32,
) -> BlockBounds {
    // SAFETY: an `Avx512Bw` exists only where AVX-512F, AVX-512BW, AVX2 and FMA were detected
    // on this CPU (`cpu`).
    unsafe { bounds_avx512(query, codes, block, floor, lower_floor) }
}

/// [`Query::head_bounds_portable`] in AVX-512BW, as the scan works them out.
#[cfg(test)]
pub(super) fn head_bounds_512(
    _cpu: Avx512Bw,
    query: &Query,
    codes: &Codes,
    block: usize,
    floor: f32,
    lower_floor: f32,
) -> BlockBounds {
    // SAFETY: an `Avx512Bw` exists only where AVX-512F, AVX-512BW, AVX2 and FMA were detected
    // on this CPU (`cpu`).
    unsafe { head_bounds_avx512(query, codes, block, floor, lower_floor) }
}

/// The largest AVX2 and AVX-512 sums of `block`, for the tests.
#[cfg(test)]
pub(super) fn peaks(cpu: Avx2Fma, part: &CodePart, tables: &PartTables, block: usize) -> (u16, Option<u16>) {
    let _ = cpu;
    let (codes, tables) = (part.block(block), &tables.tables[..]);
    // SAFETY: an `Avx2Fma` exists only where AVX2 and FMA were detected on this CPU (`cpu`);
    // an `Avx512Bw` only where AVX-512F and AVX-512BW were too.
    unsafe {
        (
            peak_avx2(codes, tables, PREFETCH_DISTANCE),
            Avx512Bw::detect().map(|_| peak_avx512(codes, tables, PREFETCH_DISTANCE)),
        )
    }
}

/// The AVX2 sums, in row order, for the tests.
#[cfg(test)]
pub(super) fn block_sums(_cpu: Avx2Fma, part: &CodePart, tables: &PartTables, block: usize) -> [u16; BLOCK] {
    // SAFETY: an `Avx2Fma` exists only where AVX2 and FMA were detected on this CPU (`cpu`).
    let sums = unsafe { block_sums_avx2(part.block(block), &tables.tables) };
    sums_in_row_order(sums)
}

/// The four vectors of eight sums as 32 `u16`, for the tests.
#[cfg(test)]
fn sums_in_row_order(sums: [__m128i; 4]) -> [u16; BLOCK] {
    let mut out = [0u16; BLOCK];
    for (eight, vector) in out.chunks_exact_mut(8).zip(sums) {
        // SAFETY: `eight` is 8 u16, 16 bytes, the size of an unaligned 128-bit store, which
        // needs only SSE2, part of every x86_64 CPU's baseline.
        unsafe { _mm_storeu_si128(eight.as_mut_ptr().cast(), vector) };
    }
    out
}

/// The sums of a block's head and tail added: its rows' whole-code sums. Each part's sums
/// fit 16 bits and so does their total (see [`Query::bounds_portable`]).
#[inline]
#[target_feature(enable = "avx2")]
fn whole_sums(head: [__m128i; 4], tail: [__m128i; 4]) -> [__m128i; 4] {
    std::array::from_fn(|eight| _mm_add_epi16(head[eight], tail[eight]))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn bounds_avx2(query: &Query, codes: &Codes, block: usize, floor: f32, lower_floor: f32) -> BlockBounds {
    let sums = whole_sums(
        block_sums_avx2(codes.head.block(block), &query.head.tables),
        block_sums_avx2(codes.tail.block(block), &query.tail.tables),
    );
    let alignment = codes.tail.alignment_codes(block);
    let live = codes.live_rows(block);
    bounds_from_sums(sums, &query.whole_estimator, alignment, live, floor, lower_floor)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn head_bounds_avx2(query: &Query, codes: &Codes, block: usize, floor: f32, lower_floor: f32) -> BlockBounds {
    let sums = block_sums_avx2(codes.head.block(block), &query.head.tables);
    let alignment = codes.head.alignment_codes(block);
    let live = codes.live_rows(block);
    bounds_from_sums(sums, &query.head_estimator, alignment, live, floor, lower_floor)
}

/// [`bounds_avx2`] with the AVX-512 sums: the bounds arithmetic is the same, in AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw")]
fn bounds_avx512(query: &Query, codes: &Codes, block: usize, floor: f32, lower_floor: f32) -> BlockBounds {
    let sums = whole_sums(
        block_sums_avx512(codes.head.block(block), &query.head.tables),
        block_sums_avx512(codes.tail.block(block), &query.tail.tables),
    );
    let alignment = codes.tail.alignment_codes(block);
    let live = codes.live_rows(block);
    bounds_from_sums(sums, &query.whole_estimator, alignment, live, floor, lower_floor)
}

/// [`head_bounds_avx2`] with the AVX-512 sums.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw")]
fn head_bounds_avx512(
    query: &Query,
    codes: &Codes,
    block: usize,
    floor: f32,
    lower_floor: f32,
) -> BlockBounds {
    let sums = block_sums_avx512(codes.head.block(block), &query.head.tables);
    let alignment = codes.head.alignment_codes(block);
    let live = codes.live_rows(block);
    bounds_from_sums(sums, &query.head_estimator, alignment, live, floor, lower_floor)
}

/// The bounds of a block's rows from their table sums (rows 0-7, 8-15, 16-23, 24-31) and
/// alignment codes, of which the first `live` are in the gallery.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn bounds_from_sums(
    sums: [__m128i; 4],
    estimator: &Estimator,
    alignment: &[u8; BLOCK],
    live: usize,
    floor: f32,
    lower_floor: f32,
) -> BlockBounds {
    let mut out = BlockBounds {
        uppers: [0.0; BLOCK],
        lowers: [0.0; BLOCK],
        candidates: 0,
        above_lower_floor: 0,
        max_upper: f32::NEG_INFINITY,
    };
    let mut max_upper = _mm256_set1_ps(f32::NEG_INFINITY);
    let alpha = _mm256_set1_ps(estimator.alpha);
    let beta = _mm256_set1_ps(estimator.beta);
    let step = _mm256_set1_ps(FACTOR_STEP);
    let half_step = _mm256_set1_ps(FACTOR_STEP / 2.0);
    let one = _mm256_set1_ps(1.0);
    let bound_base = _mm256_set1_ps(estimator.bound_base);
    let bound_per_factor = _mm256_set1_ps(estimator.bound_per_factor);
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
        let above_lower_floor =
            _mm256_movemask_ps(_mm256_cmp_ps(lower, lower_floor, _CMP_GT_OQ)) as u32 & live_rows;
        max_upper = _mm256_max_ps(max_upper, upper);
        out.candidates |= passes << (8 * eight);
        out.above_lower_floor |= above_lower_floor << (8 * eight);
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
fn walsh_hadamard_avx2(values: &mut [f32]) {
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
fn scan_avx2(
    query: &Query,
    codes: &Codes,
    blocks: Range<usize>,
    floor: f32,
    raise_floor: impl FnMut(usize, f32) -> f32,
    leads: &mut Vec<(f32, u32)>,
) {
    let ahead = scan_prefetch_distance(codes);
    let peak = |block| peak_avx2(codes.head.block(block), &query.head.tables, ahead);
    let bounds = |block, floor| head_bounds_avx2(query, codes, block, floor, floor);
    super::scan_with(query, codes, blocks, floor, raise_floor, leads, peak, bounds);
}

#[target_feature(enable = "avx2,fma,avx512f,avx512bw")]
fn scan_avx512(
    query: &Query,
    codes: &Codes,
    blocks: Range<usize>,
    floor: f32,
    raise_floor: impl FnMut(usize, f32) -> f32,
    leads: &mut Vec<(f32, u32)>,
) {
    let ahead = scan_prefetch_distance(codes);
    let peak = |block| peak_avx512(codes.head.block(block), &query.head.tables, ahead);
    let bounds = |block, floor| head_bounds_avx512(query, codes, block, floor, floor);
    super::scan_with(query, codes, blocks, floor, raise_floor, leads, peak, bounds);
}
