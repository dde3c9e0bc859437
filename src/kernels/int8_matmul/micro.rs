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

/// Portable twin of the relaxed-SIMD offset micro-kernel (same plane, same sums).
#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
pub(super) fn offset_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; OFFSET_GROUPS]; SPLIT_ROWS] {
    portable_quad_kernel(rows, blocks, kp, |[sum]| sum)
}

/// Portable twin of the relaxed-SIMD micro-kernel (same planes, same sums).
#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
pub(super) fn split_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; GROUPS]; SPLIT_ROWS] {
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
