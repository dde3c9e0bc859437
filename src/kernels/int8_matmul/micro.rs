//! The micro-kernels: one block of output sums from a few activation rows and one packed
//! column block, in wasm SIMD, relaxed SIMD, or portable integer code (the definition the
//! SIMD ones follow, and what native builds without AMX compile).

use super::*;

/// `sums[r][g][c] = Σ_d rows[r·kp + d] · w_{g,c}[d]`, from the lo/hi planes.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
pub(super) fn split_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; GROUPS]; SPLIT_ROWS] {
    use core::arch::wasm32::*;
    let group_bytes = Layout::group_bytes(kp);
    assert!(rows.len() == SPLIT_ROWS * kp && blocks.len() == GROUPS * group_bytes);
    let mut lo = [[i32x4_splat(0); GROUPS]; SPLIT_ROWS];
    let mut hi = [[i32x4_splat(0); GROUPS]; SPLIT_ROWS];
    for block in 0..kp / QUAD {
        // SAFETY: reads 4 bytes of each row at `block·4 < kp` and 32 bytes of each group at
        // `block·32 < group_bytes` (bounds asserted above); no alignment requirement.
        unsafe {
            let a = [0, 1]
                .map(|r| v128_load32_splat(rows.as_ptr().add(r * kp + block * QUAD) as *const u32));
            for g in 0..GROUPS {
                let plane = blocks
                    .as_ptr()
                    .add(g * group_bytes + block * 2 * QUAD * QUAD);
                let (w_lo, w_hi) = (
                    v128_load(plane as *const v128),
                    v128_load(plane.add(16) as *const v128),
                );
                for r in 0..SPLIT_ROWS {
                    lo[r][g] = i32x4_relaxed_dot_i8x16_i7x16_add(a[r], w_lo, lo[r][g]);
                    hi[r][g] = i32x4_relaxed_dot_i8x16_i7x16_add(a[r], w_hi, hi[r][g]);
                }
            }
        }
    }
    let mut sums = [[[0i32; QUAD]; GROUPS]; SPLIT_ROWS];
    for r in 0..SPLIT_ROWS {
        for g in 0..GROUPS {
            let v = i32x4_sub(lo[r][g], i32x4_shl(hi[r][g], 7));
            sums[r][g] = [
                i32x4_extract_lane::<0>(v),
                i32x4_extract_lane::<1>(v),
                i32x4_extract_lane::<2>(v),
                i32x4_extract_lane::<3>(v),
            ];
        }
    }
    sums
}

/// `sums[r][g][c] = Σ_d rows[r·kp + d] · w_{g,c}[d]`, from the single offset plane.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
pub(super) fn offset_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; OFFSET_GROUPS]; SPLIT_ROWS] {
    use core::arch::wasm32::*;
    let plane_bytes = Layout::plane_bytes(kp);
    assert!(rows.len() == SPLIT_ROWS * kp && blocks.len() == OFFSET_GROUPS * plane_bytes);
    let mut acc = [[i32x4_splat(0); OFFSET_GROUPS]; SPLIT_ROWS];
    for block in 0..kp / QUAD {
        // SAFETY: reads 4 bytes of each row at `block·4 < kp` and 16 bytes of each group at
        // `block·16 < plane_bytes` (bounds asserted above); no alignment requirement.
        unsafe {
            let a = [0, 1]
                .map(|r| v128_load32_splat(rows.as_ptr().add(r * kp + block * QUAD) as *const u32));
            let planes: [v128; OFFSET_GROUPS] = core::array::from_fn(|g| {
                v128_load(blocks.as_ptr().add(g * plane_bytes + block * QUAD * QUAD) as *const v128)
            });
            for (acc_r, &a_r) in acc.iter_mut().zip(&a) {
                for (acc_rg, &w) in acc_r.iter_mut().zip(&planes) {
                    *acc_rg = i32x4_relaxed_dot_i8x16_i7x16_add(a_r, w, *acc_rg);
                }
            }
        }
    }
    acc.map(|row| {
        row.map(|v| {
            [
                i32x4_extract_lane::<0>(v),
                i32x4_extract_lane::<1>(v),
                i32x4_extract_lane::<2>(v),
                i32x4_extract_lane::<3>(v),
            ]
        })
    })
}

/// The relaxed-SIMD offset micro-kernel's twin elsewhere (same plane, same sums): AVX2
/// where the CPU has it, portable integer code otherwise.
#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
pub(super) fn offset_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; OFFSET_GROUPS]; SPLIT_ROWS] {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: this CPU has AVX2 (checked above).
        return unsafe { avx2::offset_micro_kernel(rows, blocks, kp) };
    }
    portable_quad_kernel(rows, blocks, kp, |[sum]| sum)
}

/// The relaxed-SIMD split micro-kernel's twin elsewhere (same planes, same sums): AVX2
/// where the CPU has it, portable integer code otherwise.
#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
pub(super) fn split_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; GROUPS]; SPLIT_ROWS] {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: this CPU has AVX2 (checked above).
        return unsafe { avx2::split_micro_kernel(rows, blocks, kp) };
    }
    portable_quad_kernel(rows, blocks, kp, |[lo, hi]| lo - 128 * hi)
}

/// The quad layouts' sums in plain integer code: per row and 4-column group, each 4-deep
/// block's `P` planes dotted with the row, combined by `combine` (`lo − 128·hi`, or the one
/// plane).
#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
fn portable_quad_kernel<const G: usize, const P: usize>(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
    combine: impl Fn([i32; P]) -> i32,
) -> [[[i32; QUAD]; G]; SPLIT_ROWS] {
    let block_bytes = P * QUAD * QUAD;
    let group_bytes = (kp / QUAD) * block_bytes;
    let mut sums = [[[0i32; QUAD]; G]; SPLIT_ROWS];
    for (r, sums_r) in sums.iter_mut().enumerate() {
        for (g, sums_g) in sums_r.iter_mut().enumerate() {
            for block in 0..kp / QUAD {
                let a = &rows[r * kp + block * QUAD..][..QUAD];
                let planes = &blocks[g * group_bytes + block * block_bytes..][..block_bytes];
                for (c, sum) in sums_g.iter_mut().enumerate() {
                    *sum += combine(std::array::from_fn(|p| {
                        a.iter()
                            .zip(&planes[p * QUAD * QUAD + c * QUAD..][..QUAD])
                            .map(|(&x, &y)| i32::from(x) * i32::from(y))
                            .sum()
                    }));
                }
            }
        }
    }
    sums
}

/// `sums[r][c] = Σ_d rows[r·kp + d] · w_c[d]` for ROWS rows and COLS packed columns.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) fn micro_kernel(rows: &[i16], pair_blocks: &[i8], kp: usize) -> [[i32; COLS]; ROWS] {
    use core::arch::wasm32::*;
    assert!(rows.len() == ROWS * kp && pair_blocks.len() == COLS * kp && kp.is_multiple_of(DEPTH));
    let mut acc = [[i32x4_splat(0); COLS]; ROWS];
    for block in 0..kp / DEPTH {
        // SAFETY: every load reads 16 bytes inside `pair_blocks` or `rows` (bounds asserted
        // above: `block · DEPTH + 16 ≤ kp`); v128_load has no alignment requirement.
        unsafe {
            let w_ptr = pair_blocks.as_ptr().add(block * COLS * DEPTH);
            let w0 = v128_load(w_ptr as *const v128);
            let w1 = v128_load(w_ptr.add(DEPTH) as *const v128);
            let w = [
                (i16x8_extend_low_i8x16(w0), i16x8_extend_high_i8x16(w0)),
                (i16x8_extend_low_i8x16(w1), i16x8_extend_high_i8x16(w1)),
            ];
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a_ptr = rows.as_ptr().add(r * kp + block * DEPTH);
                let lo = v128_load(a_ptr as *const v128);
                let hi = v128_load(a_ptr.add(8) as *const v128);
                for (acc_rc, (w_lo, w_hi)) in acc_r.iter_mut().zip(w) {
                    let both = i32x4_add(i32x4_dot_i16x8(lo, w_lo), i32x4_dot_i16x8(hi, w_hi));
                    *acc_rc = i32x4_add(*acc_rc, both);
                }
            }
        }
    }
    acc.map(|row| {
        row.map(|v| {
            i32x4_extract_lane::<0>(v)
                + i32x4_extract_lane::<1>(v)
                + i32x4_extract_lane::<2>(v)
                + i32x4_extract_lane::<3>(v)
        })
    })
}

/// Portable twin of the wasm SIMD micro-kernel (same blocks, same sums).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub(super) fn micro_kernel(rows: &[i16], pair_blocks: &[i8], kp: usize) -> [[i32; COLS]; ROWS] {
    let mut sums = [[0i32; COLS]; ROWS];
    for (block, w) in pair_blocks.chunks_exact(COLS * DEPTH).enumerate() {
        for (r, sums_r) in sums.iter_mut().enumerate() {
            let a = &rows[r * kp + block * DEPTH..][..DEPTH];
            for (c, sum) in sums_r.iter_mut().enumerate() {
                let w_c = &w[c * DEPTH..][..DEPTH];
                *sum += a
                    .iter()
                    .zip(w_c)
                    .map(|(&x, &y)| i32::from(x) * i32::from(y))
                    .sum::<i32>();
            }
        }
    }
    sums
}

/// Natively on x86-64 with AVX2, the quad layouts' micro-kernels: `vpmaddubsw` then
/// `vpmaddwd` by ones, the pair x86 lowers relaxed SIMD's i8 × i7 dot product to. Exact here:
/// the unsigned operand is a weight plane in `[0, 127]` and the signed one an activation in
/// `[-128, 127]`, so no pair of products (|Σ| ≤ 2·127·128 < 2¹⁵) saturates its i16.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use core::arch::x86_64::*;

    use super::{Layout, GROUPS, OFFSET_GROUPS, QUAD, SPLIT_ROWS};

    /// Whether this CPU runs these kernels (checked once; a cached flag afterwards).
    pub(in super::super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// `acc + Σ₄ w·a` in each i32 lane, `w` the unsigned (7-bit) operand.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn dot(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(w, a);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// Every row's activations dotted with every group's weights, into `acc[row][group]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn accumulate<const G: usize>(
        acc: &mut [[__m256i; G]; SPLIT_ROWS],
        a: &[__m256i; SPLIT_ROWS],
        w: &[__m256i; G],
    ) {
        for (acc_r, &a_r) in acc.iter_mut().zip(a) {
            for (acc_rg, &w_g) in acc_r.iter_mut().zip(w) {
                *acc_rg = dot(*acc_rg, w_g, a_r);
            }
        }
    }

    /// The 4 i32 lanes of `v`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes(v: __m128i) -> [i32; QUAD] {
        let mut out = [0i32; QUAD];
        // SAFETY: 16 bytes written into a 4 × i32 array.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), v) };
        out
    }

    /// [`super::offset_micro_kernel`] in AVX2: one 256-bit load holds two 4-deep blocks of a
    /// column group, so a row's 8 activations are spread 4 + 4 to match, and the two halves
    /// of each sum are added at the end.
    ///
    /// # Safety
    /// The CPU must have AVX2 ([`available`]).
    #[target_feature(enable = "avx2")]
    pub(in super::super) unsafe fn offset_micro_kernel(
        rows: &[i8],
        blocks: &[i8],
        kp: usize,
    ) -> [[[i32; QUAD]; OFFSET_GROUPS]; SPLIT_ROWS] {
        let plane_bytes = Layout::plane_bytes(kp);
        assert!(rows.len() == SPLIT_ROWS * kp && blocks.len() == OFFSET_GROUPS * plane_bytes);
        let depth_blocks = kp / QUAD;
        let spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
        let mut acc = [[_mm256_setzero_si256(); OFFSET_GROUPS]; SPLIT_ROWS];
        let mut a = [_mm256_setzero_si256(); SPLIT_ROWS];
        let mut w = [_mm256_setzero_si256(); OFFSET_GROUPS];
        for pair in 0..depth_blocks / 2 {
            let block = 2 * pair;
            // SAFETY: 8 bytes of each row at `block·4 + 8 ≤ kp` and 32 bytes of each group
            // at `block·16 + 32 ≤ plane_bytes` (bounds asserted above); unaligned loads.
            unsafe {
                for (r, a_r) in a.iter_mut().enumerate() {
                    let at = rows.as_ptr().add(r * kp + block * QUAD);
                    let eight = _mm256_castsi128_si256(_mm_loadl_epi64(at.cast()));
                    *a_r = _mm256_permutevar8x32_epi32(eight, spread);
                }
                for (g, w_g) in w.iter_mut().enumerate() {
                    let at = blocks.as_ptr().add(g * plane_bytes + block * QUAD * QUAD);
                    *w_g = _mm256_loadu_si256(at.cast());
                }
            }
            accumulate(&mut acc, &a, &w);
        }
        if depth_blocks % 2 == 1 {
            // The last 4-deep block alone: its weights in the low half, zeros above.
            let block = depth_blocks - 1;
            // SAFETY: 4 bytes of each row at `block·4 + 4 = kp`, 16 bytes of each group at
            // `block·16 + 16 = plane_bytes`.
            unsafe {
                for (r, a_r) in a.iter_mut().enumerate() {
                    let at = rows.as_ptr().add(r * kp + block * QUAD);
                    *a_r = _mm256_set1_epi32(at.cast::<i32>().read_unaligned());
                }
                for (g, w_g) in w.iter_mut().enumerate() {
                    let at = blocks.as_ptr().add(g * plane_bytes + block * QUAD * QUAD);
                    *w_g = _mm256_set_m128i(_mm_setzero_si128(), _mm_loadu_si128(at.cast()));
                }
            }
            accumulate(&mut acc, &a, &w);
        }
        let mut sums = [[[0i32; QUAD]; OFFSET_GROUPS]; SPLIT_ROWS];
        for (sums_r, acc_r) in sums.iter_mut().zip(&acc) {
            for (sums_rg, &v) in sums_r.iter_mut().zip(acc_r) {
                let halves = _mm256_castsi256_si128(v);
                *sums_rg = lanes(_mm_add_epi32(halves, _mm256_extracti128_si256::<1>(v)));
            }
        }
        sums
    }

    /// [`super::split_micro_kernel`] in AVX2: one 256-bit load holds a block's lo and hi
    /// planes, dotted with the same 4 activations; `lo − 128·hi` at the end.
    ///
    /// # Safety
    /// The CPU must have AVX2 ([`available`]).
    #[target_feature(enable = "avx2")]
    pub(in super::super) unsafe fn split_micro_kernel(
        rows: &[i8],
        blocks: &[i8],
        kp: usize,
    ) -> [[[i32; QUAD]; GROUPS]; SPLIT_ROWS] {
        let group_bytes = Layout::group_bytes(kp);
        assert!(rows.len() == SPLIT_ROWS * kp && blocks.len() == GROUPS * group_bytes);
        let mut acc = [[_mm256_setzero_si256(); GROUPS]; SPLIT_ROWS];
        let mut a = [_mm256_setzero_si256(); SPLIT_ROWS];
        let mut w = [_mm256_setzero_si256(); GROUPS];
        for block in 0..kp / QUAD {
            // SAFETY: 4 bytes of each row at `block·4 < kp` and 32 bytes of each group at
            // `block·32 < group_bytes` (bounds asserted above); unaligned loads.
            unsafe {
                for (r, a_r) in a.iter_mut().enumerate() {
                    let at = rows.as_ptr().add(r * kp + block * QUAD);
                    *a_r = _mm256_set1_epi32(at.cast::<i32>().read_unaligned());
                }
                for (g, w_g) in w.iter_mut().enumerate() {
                    let at = blocks
                        .as_ptr()
                        .add(g * group_bytes + block * 2 * QUAD * QUAD);
                    *w_g = _mm256_loadu_si256(at.cast());
                }
            }
            accumulate(&mut acc, &a, &w);
        }
        let mut sums = [[[0i32; QUAD]; GROUPS]; SPLIT_ROWS];
        for (sums_r, acc_r) in sums.iter_mut().zip(&acc) {
            for (sums_rg, &v) in sums_r.iter_mut().zip(acc_r) {
                let (lo, hi) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                *sums_rg = lanes(_mm_sub_epi32(lo, _mm_slli_epi32::<7>(hi)));
            }
        }
        sums
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The AVX2 kernels against the portable ones on the same planes: odd and even block
    /// counts (the offset kernel takes blocks in pairs), and the extremes that would saturate
    /// an i16 pair if the operands were the other way round.
    #[test]
    fn avx2_kernels_equal_the_portable_ones() {
        if !avx2::available() {
            eprintln!("no AVX2 here: its kernels are not tested");
            return;
        }
        let mut seed = 11u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as u8
        };
        for kp in [4, 8, 12, 64, 384, 388] {
            let mut rows: Vec<i8> = (0..SPLIT_ROWS * kp).map(|_| next() as i8).collect();
            let planes = OFFSET_GROUPS * Layout::plane_bytes(kp);
            let mut offset: Vec<i8> = (0..planes).map(|_| (next() & 0x7f) as i8).collect();
            let split_bytes = GROUPS * Layout::group_bytes(kp);
            let split: Vec<i8> = (0..split_bytes)
                .map(|i| {
                    let hi_plane = (i / (QUAD * QUAD)) % 2 == 1;
                    if hi_plane {
                        (next() & 1) as i8
                    } else {
                        (next() & 0x7f) as i8
                    }
                })
                .collect();
            rows[..8.min(kp)].fill(-128);
            offset[..16].fill(127);
            // SAFETY: AVX2 checked above.
            let (fast_offset, fast_split) = unsafe {
                (
                    avx2::offset_micro_kernel(&rows, &offset, kp),
                    avx2::split_micro_kernel(&rows, &split, kp),
                )
            };
            let portable_offset: [[[i32; QUAD]; OFFSET_GROUPS]; SPLIT_ROWS] =
                portable_quad_kernel(&rows, &offset, kp, |[sum]| sum);
            let portable_split: [[[i32; QUAD]; GROUPS]; SPLIT_ROWS] =
                portable_quad_kernel(&rows, &split, kp, |[lo, hi]| lo - 128 * hi);
            assert_eq!(fast_offset, portable_offset, "offset, kp {kp}");
            assert_eq!(fast_split, portable_split, "split, kp {kp}");
        }
    }
}
