//! The f32 kernels' intrinsics: the only part of `kernels` allowed `unsafe`. Each entry point
//! takes the token from `cpu` that proves this CPU runs its instructions, and each `unsafe` below
//! states why it is sound.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::gallery::cpu::{Avx2, Avx2Fma, Avx512F};

/// [`Kernel::dots`](super::Kernel::dots) in AVX2 with FMA.
#[inline]
pub(super) fn dots_avx2_fma(_cpu: Avx2Fma, probe: &[f32], rows: &[f32], out: &mut [f32]) {
    // SAFETY: an `Avx2Fma` exists only where AVX2 and FMA were detected on this CPU (`cpu`).
    unsafe { dots_avx2(probe, rows, out) }
}

/// [`Kernel::dots`](super::Kernel::dots) in AVX-512F.
#[inline]
pub(super) fn dots_avx512f(_cpu: Avx512F, probe: &[f32], rows: &[f32], out: &mut [f32]) {
    // SAFETY: an `Avx512F` exists only where AVX-512F was detected on this CPU (`cpu`).
    unsafe { dots_avx512(probe, rows, out) }
}

/// [`super::prefetch`]: one prefetch a cache line of `values`, into every level.
#[inline]
pub(super) fn prefetch<T>(values: &[T]) {
    prefetch_with::<_MM_HINT_T0, T>(values);
}

/// [`super::prefetch_row`]: one prefetch a cache line of `values`, into L2 and not L1.
#[inline]
pub(super) fn prefetch_to_l2<T>(values: &[T]) {
    prefetch_with::<_MM_HINT_T1, T>(values);
}

#[inline]
fn prefetch_with<const HINT: i32, T>(values: &[T]) {
    let start = values.as_ptr().cast::<i8>();
    for offset in (0..std::mem::size_of_val(values)).step_by(64) {
        // SAFETY: the intrinsic needs SSE, which every x86_64 CPU has (it is part of the
        // architecture's baseline). `start + offset` lies inside `values`, a live slice; a
        // prefetch never faults and changes nothing but the cache.
        unsafe { _mm_prefetch::<HINT>(start.add(offset)) };
    }
}

/// [`super::with_wide_vectors`] on a CPU with AVX2.
#[inline]
pub(super) fn with_avx2<R>(_cpu: Avx2, work: impl FnOnce() -> R) -> R {
    // SAFETY: an `Avx2` exists only where AVX2 was detected on this CPU (`cpu`).
    unsafe { compiled_for_avx2(work) }
}

/// `work`, and what it inlines, compiled with AVX2 enabled.
#[target_feature(enable = "avx2")]
fn compiled_for_avx2<R>(work: impl FnOnce() -> R) -> R {
    work()
}

#[target_feature(enable = "avx2,fma")]
fn dots_avx2(probe: &[f32], rows: &[f32], out: &mut [f32]) {
    let dim = probe.len();
    for (row, score) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        let mut acc = [_mm256_setzero_ps(); 4];
        let blocks_p = probe.chunks_exact(32);
        let blocks_r = row.chunks_exact(32);
        let tail: f32 = blocks_p
            .remainder()
            .iter()
            .zip(blocks_r.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (p, r) in blocks_p.zip(blocks_r) {
            for (lane, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `p` and `r` are chunks of exactly 32 f32, so the 8 floats at
                // offset 8*lane (lane < 4) are in bounds; loadu has no alignment requirement.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(p.as_ptr().add(8 * lane)),
                        _mm256_loadu_ps(r.as_ptr().add(8 * lane)),
                    )
                };
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let halves = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        let single = _mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1));
        *score = _mm_cvtss_f32(single) + tail;
    }
}

#[target_feature(enable = "avx512f")]
fn dots_avx512(probe: &[f32], rows: &[f32], out: &mut [f32]) {
    let dim = probe.len();
    for (row, score) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        let mut acc = [_mm512_setzero_ps(); 4];
        let blocks_p = probe.chunks_exact(64);
        let blocks_r = row.chunks_exact(64);
        let tail: f32 = blocks_p
            .remainder()
            .iter()
            .zip(blocks_r.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (p, r) in blocks_p.zip(blocks_r) {
            for (lane, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `p` and `r` are chunks of exactly 64 f32, so the 16 floats at
                // offset 16*lane (lane < 4) are in bounds; loadu has no alignment requirement.
                let (x, y) = unsafe {
                    (
                        _mm512_loadu_ps(p.as_ptr().add(16 * lane)),
                        _mm512_loadu_ps(r.as_ptr().add(16 * lane)),
                    )
                };
                *acc = _mm512_fmadd_ps(x, y, *acc);
            }
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        *score = _mm512_reduce_add_ps(sum) + tail;
    }
}
