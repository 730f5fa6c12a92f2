//! What this CPU can run, as values. The SIMD kernels are compiled for AVX2 or AVX-512, and
//! running one on a CPU without its instructions is undefined behaviour; so each kernel's entry
//! point takes one of these zero-sized tokens, which only its `detect` makes, and only after
//! `is_x86_feature_detected!` has said yes. A kernel cannot then be reached without the check:
//! the compiler enforces it, the code that picks a kernel needs no `unsafe`, and the kernels'
//! `unsafe` calls have one argument to rest on.
//!
//! That argument holds only while a token's field stays private to this module and nothing but
//! `detect` builds one: keep it so.

/// Proof that this CPU runs AVX2.
#[derive(Clone, Copy)]
pub(super) struct Avx2(());

impl Avx2 {
    /// A token, if this CPU runs AVX2.
    pub(super) fn detect() -> Option<Self> {
        is_x86_feature_detected!("avx2").then_some(Self(()))
    }
}

/// Proof that this CPU runs AVX2 and FMA.
#[derive(Clone, Copy)]
pub(super) struct Avx2Fma(());

impl Avx2Fma {
    /// A token, if this CPU runs AVX2 and FMA.
    pub(super) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Self(()))
    }
}

/// Proof that this CPU runs AVX-512F.
#[derive(Clone, Copy)]
pub(super) struct Avx512F(());

impl Avx512F {
    /// A token, if this CPU runs AVX-512F.
    pub(super) fn detect() -> Option<Self> {
        is_x86_feature_detected!("avx512f").then_some(Self(()))
    }
}

/// Proof that this CPU runs AVX-512F and AVX-512BW, and AVX2 and FMA. The fast scan's AVX-512
/// kernel needs BW for its byte shuffles and 16-bit adds on 512-bit registers, and it shares
/// the AVX2 kernel's bounds arithmetic (AVX2 and FMA); every AVX-512 CPU has both, but the
/// token checks rather than assumes.
#[derive(Clone, Copy)]
pub(super) struct Avx512Bw(());

impl Avx512Bw {
    /// A token, if this CPU runs AVX-512F, AVX-512BW, AVX2 and FMA.
    pub(super) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && Avx2Fma::detect().is_some())
        .then_some(Self(()))
    }
}
