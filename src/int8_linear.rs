//! An int8 linear layer (u8 activations × i8 weights → f32) with dotfind's own kernel.
//!
//! In the browser, int8 query encoding spent ~60 % of its time in tract's wasm int8 matmul
//! kernel (profiled in Chromium), whose relaxed-SIMD dot product needs 7-bit operands and so
//! splits every weight vector in two. Widening both sides to i16 and using the exact
//! `i32x4.dot_i16x8_s` instead does 8 multiply-adds per instruction with no split, in every
//! SIMD build (plain and relaxed). The weights are packed once, at load, two output columns
//! per 16-deep block, so a query streams each weight from memory once.
//!
//! Integer accumulation is exact, so the result equals ONNX `MatMulInteger` (and tract's
//! evaluation of it) bit for bit.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// Depth of one packed block: 16 i8 weights, widened to two i16x8 vectors.
const DEPTH: usize = 16;
/// Output columns per packed block.
const COLS: usize = 2;
/// Activation rows per micro-kernel call.
const ROWS: usize = 4;

/// A `[k, n]` i8 weight matrix packed for [`matmul`]: for each pair of columns, the `k`
/// (zero-padded to a multiple of 16) weights of each column in 16-deep blocks, interleaved
/// per block; plus every column's sum, for the activations' zero point.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct PackedWeights {
    k: usize,
    n: usize,
    k_padded: usize,
    blocks: Vec<i8>,
    column_sums: Vec<i32>,
}

impl PackedWeights {
    /// Packs a row-major `[k, n]` matrix.
    pub fn pack(weights: &[i8], k: usize, n: usize) -> TractResult<Self> {
        ensure!(
            k > 0 && n > 0 && weights.len() == k * n,
            "int8 weights: {} values for a {k} × {n} matrix",
            weights.len()
        );
        let k_padded = k.div_ceil(DEPTH) * DEPTH;
        let pairs = n.div_ceil(COLS);
        let mut blocks = vec![0i8; pairs * COLS * k_padded];
        for pair in 0..pairs {
            let base = pair * COLS * k_padded;
            for col in 0..COLS {
                let j = pair * COLS + col;
                if j >= n {
                    continue;
                }
                for depth in 0..k {
                    let (block, lane) = (depth / DEPTH, depth % DEPTH);
                    blocks[base + block * COLS * DEPTH + col * DEPTH + lane] =
                        weights[depth * n + j];
                }
            }
        }
        let column_sums = (0..n)
            .map(|j| (0..k).map(|depth| i32::from(weights[depth * n + j])).sum())
            .collect();
        Ok(Self {
            k,
            n,
            k_padded,
            blocks,
            column_sums,
        })
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// `out[r, j] = Σ_k (x[r, k] − zero_point) · w[k, j]` for `rows` rows of `x` (`[rows, k]`,
/// row-major), exactly, in i32.
pub fn matmul(x: &[u8], zero_point: i32, w: &PackedWeights, out: &mut [i32]) -> TractResult<()> {
    let (k, n, kp) = (w.k, w.n, w.k_padded);
    ensure!(
        x.len().is_multiple_of(k) && out.len() == x.len() / k * n,
        "int8 matmul: {} activations and {} outputs for {k} × {n} weights",
        x.len(),
        out.len()
    );
    let rows = x.len() / k;
    // Activations widened to i16, ROWS-padded and depth-padded with zeros (which add nothing).
    let rows_padded = rows.div_ceil(ROWS) * ROWS;
    let mut wide = vec![0i16; rows_padded * kp];
    for (dst, src) in wide.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = i16::from(s);
        }
    }
    // Column pairs outermost: each pair's weights (≤ 2 × 1536 × 1 byte) stay in L1 while
    // every row block reads them.
    for (pair, pair_blocks) in w.blocks.chunks_exact(COLS * kp).enumerate() {
        for (block, rows_wide) in wide.chunks_exact(ROWS * kp).enumerate() {
            let sums = micro_kernel(rows_wide, pair_blocks, kp);
            for (r, row_sums) in sums.iter().enumerate() {
                let row = block * ROWS + r;
                if row >= rows {
                    break;
                }
                for (c, &sum) in row_sums.iter().enumerate() {
                    let j = pair * COLS + c;
                    if j < n {
                        out[row * n + j] = sum - zero_point * w.column_sums[j];
                    }
                }
            }
        }
    }
    Ok(())
}

/// `sums[r][c] = Σ_d rows[r·kp + d] · w_c[d]` for ROWS rows and COLS packed columns.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn micro_kernel(rows: &[i16], pair_blocks: &[i8], kp: usize) -> [[i32; COLS]; ROWS] {
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
fn micro_kernel(rows: &[i16], pair_blocks: &[i8], kp: usize) -> [[i32; COLS]; ROWS] {
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

/// `y = f32(Σ (x − zero_point) · w) · scale + bias`: ONNX DynamicQuantizeLinear's output
/// through MatMulInteger → Cast → Mul(scale) → Add(bias), as one op. Inputs: `x` (u8,
/// `[.., k]`), its zero point (u8 scalar), `scale` and `bias` (f32, one per output column).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Int8Linear {
    pub weights: Arc<PackedWeights>,
}

impl Op for Int8Linear {
    fn name(&self) -> StaticName {
        "Int8Linear (dotfind)".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, zero_point, scale, bias) = (&inputs[0], &inputs[1], &inputs[2], &inputs[3]);
        let xs = x.try_as_plain_ram()?.as_slice::<u8>()?;
        let zero_point = zero_point.cast_to_scalar::<i32>()?;
        let scale = scale.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let n = self.weights.n;
        ensure!(
            scale.len() == n && bias.len() == n,
            "int8 linear: {} scales and {} biases for {n} outputs",
            scale.len(),
            bias.len()
        );
        let mut shape: TVec<usize> = x.shape().into();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        let mut acc = vec![0i32; shape.iter().product()];
        matmul(xs, zero_point, &self.weights, &mut acc)?;
        // SAFETY: every element is written below (`acc` has the output's length).
        let mut out = unsafe { Tensor::uninitialized_dt(f32::datum_type(), &shape)? };
        let mut ram = out.try_as_plain_ram_mut()?;
        let ys = ram.as_slice_mut::<f32>()?;
        for (y_row, acc_row) in ys.chunks_exact_mut(n).zip(acc.chunks_exact(n)) {
            for (((y, &a), &s), &b) in y_row.iter_mut().zip(acc_row).zip(scale).zip(bias) {
                *y = a as f32 * s + b;
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Int8Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        if let Some(last) = shape.last_mut() {
            *last = self.weights.n.into();
        }
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u32) -> u32 {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *seed >> 8
    }

    #[test]
    fn matmul_equals_the_integer_definition() {
        let mut seed = 3;
        // Depths around the 16-deep block, odd widths (a padded column), row counts around
        // the 4-row block, and the extreme values of both types.
        for (rows, k, n) in [
            (1, 1, 1),
            (3, 15, 5),
            (4, 16, 2),
            (5, 17, 3),
            (11, 384, 7),
            (9, 40, 1),
        ] {
            let mut x: Vec<u8> = (0..rows * k).map(|_| lcg(&mut seed) as u8).collect();
            let mut w: Vec<i8> = (0..k * n).map(|_| lcg(&mut seed) as i8).collect();
            x[0] = 255;
            w[0] = -128;
            let zero_point = (lcg(&mut seed) % 256) as i32;
            let packed = PackedWeights::pack(&w, k, n).unwrap();
            let mut out = vec![0; rows * n];
            matmul(&x, zero_point, &packed, &mut out).unwrap();
            for r in 0..rows {
                for j in 0..n {
                    let expected: i32 = (0..k)
                        .map(|d| (i32::from(x[r * k + d]) - zero_point) * i32::from(w[d * n + j]))
                        .sum();
                    assert_eq!(out[r * n + j], expected, "{rows}×{k}×{n} at ({r}, {j})");
                }
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let packed = PackedWeights::pack(&[1, 2, 3, 4, 5, 6], 3, 2).unwrap();
        let err = matmul(&[1, 2, 3, 4], 0, &packed, &mut [0; 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "int8 matmul: 4 activations and 2 outputs for 3 × 2 weights"
        );
        let err = PackedWeights::pack(&[1, 2, 3], 2, 2).unwrap_err();
        assert_eq!(err.to_string(), "int8 weights: 3 values for a 2 × 2 matrix");
    }
}
