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

use tract_nnef::prelude::*;
use tract_nnef::tract_core::internal::*;

/// How the weights are packed, which picks the kernel.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Layout {
    /// Two columns per 16-deep block, widened to i16 at run time for `i32x4.dot_i16x8_s`
    /// (plain SIMD: 8 multiply-adds per instruction, no split).
    WidePairs,
    /// Four columns per 4-deep block, each weight split into two 7-bit planes (`w & 0x7f` and
    /// `w < 0`, so `w = lo − 128·hi`) for `i32x4.relaxed_dot_i8x16_i7x16_add_s`, whose second
    /// operand must be 7-bit to be exact everywhere; the activations, offset to i8, are the
    /// first. The split is done once at load, not per block as tract's kernel does.
    SplitQuads,
}

impl Layout {
    /// `k` zero-padded to the block depth.
    fn padded_depth(self, k: usize) -> usize {
        match self {
            Layout::WidePairs => k.div_ceil(DEPTH) * DEPTH,
            Layout::SplitQuads => k.div_ceil(QUAD) * QUAD,
        }
    }

    /// Packed bytes for `n` columns of depth `kp` (columns padded to whole blocks).
    fn packed_len(self, kp: usize, n: usize) -> usize {
        match self {
            Layout::WidePairs => n.div_ceil(COLS) * COLS * kp,
            Layout::SplitQuads => {
                n.div_ceil(QUAD).div_ceil(GROUPS) * GROUPS * Self::group_bytes(kp)
            }
        }
    }

    /// SplitQuads: bytes of one 4-column group (lo and hi planes of every 4-deep block).
    fn group_bytes(kp: usize) -> usize {
        (kp / QUAD) * 2 * QUAD * QUAD
    }

    /// Where weight `(depth, j)` goes. WidePairs: per column pair, per 16-deep block, 16
    /// weights of each column. SplitQuads: per 4-column group, per 4-deep block, the lo plane
    /// (4 weights of each column), then the hi plane 16 bytes further.
    fn place(self, kp: usize, depth: usize, j: usize) -> usize {
        match self {
            Layout::WidePairs => {
                (j / COLS) * COLS * kp
                    + (depth / DEPTH) * COLS * DEPTH
                    + (j % COLS) * DEPTH
                    + depth % DEPTH
            }
            Layout::SplitQuads => {
                (j / QUAD) * Self::group_bytes(kp)
                    + (depth / QUAD) * 2 * QUAD * QUAD
                    + (j % QUAD) * QUAD
                    + depth % QUAD
            }
        }
    }

    /// The layout this build's SIMD runs fastest.
    pub fn for_this_target() -> Self {
        if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) {
            Layout::SplitQuads
        } else {
            Layout::WidePairs
        }
    }
}

/// WidePairs: depth of one block (16 i8 weights, widened to two i16x8 vectors).
const DEPTH: usize = 16;
/// WidePairs: output columns per block.
const COLS: usize = 2;
/// WidePairs: activation rows per micro-kernel call.
const ROWS: usize = 4;
/// SplitQuads: depth of one block and columns per group (one i32x4 of sums).
const QUAD: usize = 4;
/// SplitQuads: column groups per micro-kernel call.
const GROUPS: usize = 2;
/// SplitQuads: activation rows per micro-kernel call.
const SPLIT_ROWS: usize = 2;

/// A `[k, n]` i8 weight matrix packed for [`matmul`] in one [`Layout`], plus every column's
/// sum, for the activations' zero point.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct PackedWeights {
    k: usize,
    n: usize,
    layout: Layout,
    /// `k` zero-padded to the layout's block depth.
    k_padded: usize,
    /// WidePairs: per column pair, per 16-deep block, 16 weights of each column.
    /// SplitQuads: per column group of 4, per 4-deep block, the 16-byte lo plane (4 weights
    /// of each column) then the hi plane; groups padded to an even count.
    blocks: Vec<i8>,
    column_sums: Vec<i32>,
}

impl PackedWeights {
    /// Packs a row-major `[k, n]` matrix for this build's kernel.
    pub fn pack(weights: &[i8], k: usize, n: usize) -> TractResult<Self> {
        Self::pack_as(weights, k, n, Layout::for_this_target())
    }

    /// Packs a row-major `[k, n]` matrix in `layout`.
    pub fn pack_as(weights: &[i8], k: usize, n: usize, layout: Layout) -> TractResult<Self> {
        ensure!(
            k > 0 && n > 0 && weights.len() == k * n,
            "int8 weights: {} values for a {k} × {n} matrix",
            weights.len()
        );
        // One sequential pass over the source, each weight scattered to its packed place
        // (zero padding is the initial value), column sums alongside: packing runs at start-up,
        // in the browser still baseline-compiled, so it must not stride through the matrix,
        // and places advance by fixed steps (no division per weight; `place` is the definition).
        let k_padded = layout.padded_depth(k);
        let len = layout.packed_len(k_padded, n);
        let (per_block, block_step, column_step) = match layout {
            Layout::WidePairs => (COLS, COLS * k_padded, DEPTH),
            Layout::SplitQuads => (QUAD, Layout::group_bytes(k_padded), QUAD),
        };
        let mut blocks = vec![0i8; len];
        let mut column_sums = vec![0i32; n];
        for (depth, row) in weights.chunks_exact(n).enumerate() {
            let row_start = layout.place(k_padded, depth, 0);
            let columns = row.chunks(per_block).zip(column_sums.chunks_mut(per_block));
            for (block, (weights, sums)) in columns.enumerate() {
                let block_start = row_start + block * block_step;
                for (c, (&weight, sum)) in weights.iter().zip(sums).enumerate() {
                    *sum += i32::from(weight);
                    let at = block_start + c * column_step;
                    debug_assert_eq!(at, layout.place(k_padded, depth, block * per_block + c));
                    match layout {
                        Layout::WidePairs => blocks[at] = weight,
                        // lo = w & 0x7f, hi = (w < 0): both in [0, 127], w = lo − 128·hi.
                        Layout::SplitQuads => {
                            blocks[at] = weight & 0x7f;
                            blocks[at + QUAD * QUAD] = i8::from(weight < 0);
                        }
                    }
                }
            }
        }
        Ok(Self {
            k,
            n,
            layout,
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
    let (k, n) = (w.k, w.n);
    ensure!(
        x.len().is_multiple_of(k) && out.len() == x.len() / k * n,
        "int8 matmul: {} activations and {} outputs for {k} × {n} weights",
        x.len(),
        out.len()
    );
    match w.layout {
        Layout::WidePairs => matmul_wide_pairs(x, zero_point, w, out),
        Layout::SplitQuads => matmul_split_quads(x, zero_point, w, out),
    }
    Ok(())
}

fn matmul_wide_pairs(x: &[u8], zero_point: i32, w: &PackedWeights, out: &mut [i32]) {
    // Activations widened to i16 (u8 as is); Σ x·w − zp·Σ w.
    let block_bytes = COLS * w.k_padded;
    matmul_blocks::<_, ROWS, COLS>(x, -zero_point, w, out, block_bytes, i16::from, micro_kernel);
}

fn matmul_split_quads(x: &[u8], zero_point: i32, w: &PackedWeights, out: &mut [i32]) {
    // Activations offset to i8 (x − 128); Σ (x − zp)·w = Σ (x − 128)·w + (128 − zp)·Σ w.
    let block_bytes = GROUPS * Layout::group_bytes(w.k_padded);
    let kernel = |rows: &[i8], blocks: &[i8], kp: usize| {
        split_micro_kernel(rows, blocks, kp).map(|groups| {
            let mut flat = [0i32; GROUPS * QUAD];
            for (g, lanes) in groups.iter().enumerate() {
                flat[g * QUAD..][..QUAD].copy_from_slice(lanes);
            }
            flat
        })
    };
    let offset = |v: u8| (v ^ 0x80) as i8;
    matmul_blocks::<_, SPLIT_ROWS, { GROUPS * QUAD }>(
        x,
        128 - zero_point,
        w,
        out,
        block_bytes,
        offset,
        kernel,
    );
}

/// The loop both layouts share: activations converted by `convert` into `R`-row blocks
/// (zero-padded rows and depth, which add nothing), weight blocks of `C` columns outermost (a
/// block's weights stay in L1 while every row block reads them), and
/// `out[r, j] = kernel sum + correction · Σ w[·, j]`.
fn matmul_blocks<A: Copy + Default, const R: usize, const C: usize>(
    x: &[u8],
    correction: i32,
    w: &PackedWeights,
    out: &mut [i32],
    block_bytes: usize,
    convert: impl Fn(u8) -> A,
    kernel: impl Fn(&[A], &[i8], usize) -> [[i32; C]; R],
) {
    let (k, n, kp) = (w.k, w.n, w.k_padded);
    let rows = x.len() / k;
    let mut converted = vec![A::default(); rows.div_ceil(R) * R * kp];
    for (dst, src) in converted.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = convert(s);
        }
    }
    for (column_block, blocks) in w.blocks.chunks_exact(block_bytes).enumerate() {
        for (row_block, rows_converted) in converted.chunks_exact(R * kp).enumerate() {
            let sums = kernel(rows_converted, blocks, kp);
            for (r, row_sums) in sums.iter().enumerate() {
                let row = row_block * R + r;
                if row >= rows {
                    break;
                }
                for (c, &sum) in row_sums.iter().enumerate() {
                    let j = column_block * C + c;
                    if j < n {
                        out[row * n + j] = sum + correction * w.column_sums[j];
                    }
                }
            }
        }
    }
}

/// `sums[r][g][c] = Σ_d rows[r·kp + d] · w_{g,c}[d]`, from the lo/hi planes.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
fn split_micro_kernel(
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

/// Portable twin of the relaxed-SIMD micro-kernel (same planes, same sums).
#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
fn split_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; GROUPS]; SPLIT_ROWS] {
    let group_bytes = Layout::group_bytes(kp);
    let mut sums = [[[0i32; QUAD]; GROUPS]; SPLIT_ROWS];
    for (r, sums_r) in sums.iter_mut().enumerate() {
        for (g, sums_g) in sums_r.iter_mut().enumerate() {
            for block in 0..kp / QUAD {
                let a = &rows[r * kp + block * QUAD..][..QUAD];
                let plane = &blocks[g * group_bytes + block * 2 * QUAD * QUAD..][..2 * QUAD * QUAD];
                for (c, sum) in sums_g.iter_mut().enumerate() {
                    let dot = |p: &[i8]| -> i32 {
                        a.iter()
                            .zip(&p[c * QUAD..][..QUAD])
                            .map(|(&x, &y)| i32::from(x) * i32::from(y))
                            .sum()
                    };
                    *sum += dot(&plane[..QUAD * QUAD]) - 128 * dot(&plane[QUAD * QUAD..]);
                }
            }
        }
    }
    sums
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
        // SAFETY: `dequantize_rows` writes every element or fails (and `out` is dropped).
        let mut out = unsafe { Tensor::uninitialized_dt(f32::datum_type(), &shape)? };
        let mut ram = out.try_as_plain_ram_mut()?;
        crate::int8_graph::dequantize_rows(&acc, scale, bias, ram.as_slice_mut::<f32>()?)?;
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
            for layout in [Layout::WidePairs, Layout::SplitQuads] {
                let packed = PackedWeights::pack_as(&w, k, n, layout).unwrap();
                let mut out = vec![0; rows * n];
                matmul(&x, zero_point, &packed, &mut out).unwrap();
                for r in 0..rows {
                    for j in 0..n {
                        let expected: i32 = (0..k)
                            .map(|d| {
                                (i32::from(x[r * k + d]) - zero_point) * i32::from(w[d * n + j])
                            })
                            .sum();
                        let got = out[r * n + j];
                        assert_eq!(got, expected, "{layout:?} {rows}×{k}×{n} at ({r}, {j})");
                    }
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
