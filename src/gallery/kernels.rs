//! Scan kernels: the inner products of one probe against a block of rows. Picked once at run time
//! by CPU feature (AVX-512F, AVX2 with FMA), with a portable kernel that every machine runs and
//! that the tests hold the others to.
//!
//! Scan kernels (this module and `fastscan`) are the only code allowed `unsafe`, for intrinsics:
//! each use below states why it is sound.
#![allow(unsafe_code)]

use std::sync::OnceLock;

/// A kernel: writes `out[i] = probe · rows[i*dim..(i+1)*dim]` for every row in `rows`.
#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    pub name: &'static str,
    dots: fn(&[f32], &[f32], &mut [f32]),
}

impl Kernel {
    /// Scores every row of `rows` (whose length is a multiple of `probe.len()`) into `out`.
    pub(crate) fn dots(&self, probe: &[f32], rows: &[f32], out: &mut [f32]) {
        debug_assert_eq!(rows.len(), probe.len() * out.len());
        (self.dots)(probe, rows, out);
    }
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

const PORTABLE: Kernel = Kernel {
    name: "portable",
    dots: dots_portable,
};

/// The fastest kernel this CPU runs.
pub(crate) fn best() -> Kernel {
    static BEST: OnceLock<Kernel> = OnceLock::new();
    *BEST.get_or_init(|| *available().last().unwrap_or(&PORTABLE))
}

/// Every kernel this CPU runs, slowest (portable) first.
pub(crate) fn available() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut kernels = vec![PORTABLE];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            kernels.push(Kernel {
                name: "avx2+fma",
                dots: x86::dots_avx2_checked,
            });
        }
        if is_x86_feature_detected!("avx512f") {
            kernels.push(Kernel {
                name: "avx512f",
                dots: x86::dots_avx512_checked,
            });
        }
    }
    kernels
}

/// Asks the CPU to start loading `row` into cache: a hint, for rows about to be scored out of
/// order (the fast scan's re-rank), whose first touch would otherwise wait on memory.
#[inline]
pub(crate) fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = values.as_ptr().cast::<i8>();
        for offset in (0..std::mem::size_of_val(values)).step_by(64) {
            // SAFETY: `start + offset` lies inside `values`, a live slice; a prefetch never
            // faults and changes nothing but the cache.
            unsafe { std::arch::x86_64::_mm_prefetch(start.add(offset), std::arch::x86_64::_MM_HINT_T0) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// Runs `work` compiled for AVX2 when the CPU has it: plain loops over floats in `work` (and what
/// it inlines) then vectorise 8 wide instead of 4. The same operations in the same order either
/// way, so the results are the same bits.
#[inline]
pub(crate) fn with_wide_vectors<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn wide<R>(work: impl FnOnce() -> R) -> R {
            work()
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU just above.
            return unsafe { wide(work) };
        }
    }
    work()
}

/// The reference: eight independent accumulators, which compilers vectorise for any target.
fn dots_portable(probe: &[f32], rows: &[f32], out: &mut [f32]) {
    let dim = probe.len();
    for (row, score) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        *score = dot_portable(probe, row);
    }
}

pub(crate) fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for ((lane, x), y) in lanes.iter_mut().zip(ca).zip(cb) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    pub(super) fn dots_avx2_checked(probe: &[f32], rows: &[f32], out: &mut [f32]) {
        // SAFETY: this function is only reachable through a Kernel that `available()` built after
        // `is_x86_feature_detected!` confirmed AVX2 and FMA on this CPU.
        unsafe { dots_avx2(probe, rows, out) }
    }

    pub(super) fn dots_avx512_checked(probe: &[f32], rows: &[f32], out: &mut [f32]) {
        // SAFETY: only reachable through a Kernel built after AVX-512F was detected on this CPU.
        unsafe { dots_avx512(probe, rows, out) }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorshift::XorShift64;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_kernel_agrees_with_the_portable_one(
            dim in 1usize..200,
            rows in 1usize..9,
            seed in any::<u64>(),
        ) {
            let mut generator = XorShift64::new(seed);
            let probe: Vec<f32> = (0..dim).map(|_| generator.next_signed_unit()).collect();
            let data: Vec<f32> = (0..dim * rows).map(|_| generator.next_signed_unit()).collect();
            let mut expected = vec![0f32; rows];
            PORTABLE.dots(&probe, &data, &mut expected);
            for kernel in available() {
                let mut got = vec![0f32; rows];
                kernel.dots(&probe, &data, &mut got);
                for (g, e) in got.iter().zip(&expected) {
                    // Different summation orders: agree to float rounding of a sum of `dim` terms.
                    prop_assert!((g - e).abs() <= 1e-5 * dim as f32, "{}: {} vs {}", kernel.name, g, e);
                }
            }
        }
    }

    #[test]
    fn the_best_kernel_is_one_of_the_available() {
        let best = best();
        assert!(available().iter().any(|k| k.name == best.name));
        assert_eq!(available()[0].name, "portable");
    }
}
