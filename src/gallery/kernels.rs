//! Scan kernels: the inner products of one probe against a block of rows. Picked once at run time
//! by CPU feature (AVX-512F, AVX2 with FMA), with a portable kernel that every machine runs and
//! that the tests hold the others to.
//!
//! This module is safe code. The intrinsics are in `x86`, the only part of it allowed `unsafe`;
//! its kernels take a token from `cpu` that proves the CPU runs them, so nothing here can call
//! one on a CPU that lacks it.

use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
use super::cpu::{Avx2, Avx2Fma, Avx512F};

#[cfg(target_arch = "x86_64")]
mod x86;

/// A kernel: writes `out[i] = probe · rows[i*dim..(i+1)*dim]` for every row in `rows`. The SIMD
/// ones hold the token that proves this CPU runs them.
#[derive(Clone, Copy)]
pub(super) enum Kernel {
    /// Plain Rust that every machine runs: the reference.
    Portable,
    /// AVX2 with FMA: 8 floats a register.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma(Avx2Fma),
    /// AVX-512F: 16 floats a register.
    #[cfg(target_arch = "x86_64")]
    Avx512F(Avx512F),
}

impl Kernel {
    /// The kernel's name, as `stats` reports it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => "avx2+fma",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512F(_) => "avx512f",
        }
    }

    /// Scores every row of `rows` (whose length is a multiple of `probe.len()`) into `out`.
    pub(super) fn dots(&self, probe: &[f32], rows: &[f32], out: &mut [f32]) {
        debug_assert_eq!(rows.len(), probe.len() * out.len());
        match *self {
            Kernel::Portable => dots_portable(probe, rows, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(cpu) => x86::dots_avx2_fma(cpu, probe, rows, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512F(cpu) => x86::dots_avx512f(cpu, probe, rows, out),
        }
    }
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The fastest kernel this CPU runs.
pub(super) fn best() -> Kernel {
    static BEST: OnceLock<Kernel> = OnceLock::new();
    *BEST.get_or_init(|| *available().last().unwrap_or(&Kernel::Portable))
}

/// Every kernel this CPU runs, slowest (portable) first.
pub(super) fn available() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut kernels = vec![Kernel::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        kernels.extend(Avx2Fma::detect().map(Kernel::Avx2Fma));
        kernels.extend(Avx512F::detect().map(Kernel::Avx512F));
    }
    kernels
}

/// Asks the CPU to start loading `row` into cache: a hint, for rows about to be scored out of
/// order (the fast scan's re-rank), whose first touch would otherwise wait on memory.
#[inline]
pub(crate) fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch(values);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// [`prefetch`] for a whole row (2 KB at 512 dimensions): its lines are asked for into L2, which
/// can have more misses outstanding than L1, so the row arrives sooner. On Zen 4 under KVM a cold
/// 2 KB row, fetched after the miss that finds it, arrived in about 330 ns this way against 420 ns
/// into L1 (a C loop over 2 GB), and a cold verify at 1M took 30-80 ns less.
#[inline]
pub(crate) fn prefetch_row<T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch_to_l2(row);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// Runs `work` compiled for AVX2 when the CPU has it: plain loops over floats in `work` (and what
/// it inlines) then vectorise 8 wide instead of 4. The same operations in the same order either
/// way, so the results are the same bits.
///
/// Only code inlined into the AVX2 copy is compiled for AVX2, and LLVM keeps a large closure out
/// of line, compiled for the baseline, unless told otherwise: callers mark `work`
/// `#[inline(always)]`, and keep its hot loops as plain `for` loops over slices rather than
/// iterator adapters (`try_for_each`, say) whose calls may themselves stay out of line.
#[inline]
pub(crate) fn with_wide_vectors<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(cpu) = Avx2::detect() {
            return x86::with_avx2(cpu, work);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorshift::XorShift64;
    use proptest::prelude::*;

    /// The kernel of that name, if this CPU runs it.
    fn available_kernel(name: &str) -> Option<Kernel> {
        available().into_iter().find(|kernel| kernel.name() == name)
    }

    /// Random probes and rows of every length up to 200 (whole registers and tails): `kernel`
    /// gives the portable kernel's scores, to the float rounding of a different summation order.
    fn agrees_with_the_portable_kernel(kernel: Kernel) {
        proptest!(|(dim in 1usize..200, rows in 1usize..9, seed in any::<u64>())| {
            let mut generator = XorShift64::new(seed);
            let probe: Vec<f32> = (0..dim).map(|_| generator.next_signed_unit()).collect();
            let data: Vec<f32> = (0..dim * rows).map(|_| generator.next_signed_unit()).collect();
            let mut expected = vec![0f32; rows];
            Kernel::Portable.dots(&probe, &data, &mut expected);
            let mut got = vec![0f32; rows];
            kernel.dots(&probe, &data, &mut got);
            for (g, e) in got.iter().zip(&expected) {
                prop_assert!((g - e).abs() <= 1e-5 * dim as f32, "{}: {} vs {}", kernel.name(), g, e);
            }
        });
    }

    #[test]
    fn the_avx2_kernel_agrees_with_the_portable_one() {
        let Some(kernel) = available_kernel("avx2+fma") else {
            eprintln!("skipped: this CPU lacks AVX2 and FMA, so the avx2+fma kernel was not compared");
            return;
        };
        agrees_with_the_portable_kernel(kernel);
    }

    #[test]
    fn the_avx512_kernel_agrees_with_the_portable_one() {
        let Some(kernel) = available_kernel("avx512f") else {
            eprintln!("skipped: this CPU lacks AVX-512F, so the avx512f kernel was not compared");
            return;
        };
        agrees_with_the_portable_kernel(kernel);
    }

    #[test]
    fn the_best_kernel_is_one_of_the_available() {
        let best = best();
        assert!(available().iter().any(|k| k.name() == best.name()));
        assert_eq!(available()[0].name(), "portable");
        // A kernel added later needs its own comparison test beside the two above.
        assert!(available()
            .iter()
            .all(|k| ["portable", "avx2+fma", "avx512f"].contains(&k.name())));
    }
}
