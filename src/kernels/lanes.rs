//! f32 SIMD vocabulary shared by dotfind's native kernels: [`Lanes`], one trait over
//! AVX-512 and AVX2 + FMA registers, so a kernel is written once and compiled for each.

use std::arch::x86_64::*;

/// The f32 vector operations a kernel is written in, for one instruction set. Every method
/// is `#[inline(always)]`: a generic kernel, instantiated in an entry point compiled for
/// that instruction set (`#[target_feature]`), becomes straight-line code of it — one
/// kernel, several instruction sets (`super::attention`).
pub(crate) trait Lanes {
    type V: Copy;
    /// f32 lanes of `V`.
    const N: usize;
    /// Registers a row's block of keys or values spans, so that four rows' accumulators
    /// and a block's loads fit the register file (32 registers in AVX-512, 16 in AVX2).
    const BLOCK: usize;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `a·b + c`.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `c − a·b`.
    unsafe fn fnmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// The larger of each pair; `b` where either is NaN (so `max(floor, x)` keeps a NaN).
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn reduce_max(v: Self::V) -> f32;
    unsafe fn reduce_add(v: Self::V) -> f32;
    /// Rounded to the nearest integer (ties to even).
    unsafe fn round(v: Self::V) -> Self::V;
    /// `e · 2ⁿ` for integral `n` in `[−151, 0]`, underflowing to 0 as IEEE does.
    unsafe fn scale_by_pow2(e: Self::V, n: Self::V) -> Self::V;

    /// `eˣ` for `x ≤ 0` (Cephes' `expf` polynomial, within 2 ulp; `−∞` and anything
    /// below −104 give 0 or the least subnormals): `x = n·ln 2 + r`, `eˣ = 2ⁿ·eʳ`.
    #[inline(always)]
    unsafe fn exp(x: Self::V) -> Self::V {
        let x = Self::max(Self::splat(-104.0), x);
        let n = Self::round(Self::mul(x, Self::splat(std::f32::consts::LOG2_E)));
        let r = Self::fnmadd(n, Self::splat(0.693_359_4), x);
        let r = Self::fnmadd(n, Self::splat(-2.121_944_4e-4), r);
        let mut p = Self::splat(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = Self::fmadd(p, r, Self::splat(c));
        }
        let e = Self::fmadd(p, Self::mul(r, r), Self::add(r, Self::splat(1.0)));
        Self::scale_by_pow2(e, n)
    }
}

pub(crate) struct Avx512;

impl Lanes for Avx512 {
    type V = __m512;
    const N: usize = 16;
    const BLOCK: usize = 4;
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn fnmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fnmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        _mm512_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn reduce_max(v: __m512) -> f32 {
        _mm512_reduce_max_ps(v)
    }
    #[inline(always)]
    unsafe fn reduce_add(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
    #[inline(always)]
    unsafe fn round(v: __m512) -> __m512 {
        _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v)
    }
    #[inline(always)]
    unsafe fn scale_by_pow2(e: __m512, n: __m512) -> __m512 {
        _mm512_scalef_ps(e, n)
    }
}

pub(crate) struct Avx2;

impl Lanes for Avx2 {
    type V = __m256;
    const N: usize = 8;
    const BLOCK: usize = 2;
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn fnmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fnmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn reduce_max(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
    }
    #[inline(always)]
    unsafe fn reduce_add(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
    #[inline(always)]
    unsafe fn round(v: __m256) -> __m256 {
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v)
    }
    /// AVX2 has no `scalef`: `2ⁿ` is built in the exponent bits, in two halves
    /// (`2^⌊n/2⌋ · 2^⌈n/2⌉`, each a normal float for `n ≥ −252`) so that the products
    /// underflow as IEEE multiplication does.
    #[inline(always)]
    unsafe fn scale_by_pow2(e: __m256, n: __m256) -> __m256 {
        let n = _mm256_cvtps_epi32(n);
        let half = _mm256_srai_epi32::<1>(n);
        let pow2 = |k: __m256i| {
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                k,
                _mm256_set1_epi32(127),
            )))
        };
        _mm256_mul_ps(
            _mm256_mul_ps(e, pow2(half)),
            pow2(_mm256_sub_epi32(n, half)),
        )
    }
}
