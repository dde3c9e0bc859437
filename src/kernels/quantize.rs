//! Activation quantization and dequantization loops of int8 linear layers: ONNX
//! `DynamicQuantizeLinear` (f32 → u8 with one scale and zero point per tensor) and the
//! `f32(acc) · scale + bias` tail, each written so that it vectorizes (natively by LLVM, in
//! wasm by hand), with the same IEEE operations in the same order as the ONNX definition
//! (and tract-onnx's evaluation of it): the same bits.

use tract_core::internal::{ensure, TractResult};

/// Quantizes `xs` into `ys` as ONNX `DynamicQuantizeLinear` does: the range
/// `[min(x, 0), max(x, 0)]` mapped onto `[0, 255]`; returns the scale and zero point.
pub fn quantize_dynamic(xs: &[f32], ys: &mut [u8]) -> (f32, u8) {
    let (min, max) = range(xs);
    let (scale, zero_point) = scale_and_zero_point(min, max);
    quantize(xs, scale, zero_point, ys);
    (scale, zero_point)
}

/// `ys[r, j] = accs[r, j] as f32 * scale[j] + bias[j]` for every row `r` (also the tail of
/// [`Int8Linear`]).
pub fn dequantize_rows(
    accs: &[i32],
    scale: &[f32],
    bias: &[f32],
    ys: &mut [f32],
) -> TractResult<()> {
    let width = scale.len();
    ensure!(
        bias.len() == width
            && width > 0
            && accs.len().is_multiple_of(width)
            && ys.len() == accs.len(),
        "dequantization: {} accumulators, {} scales, {} biases",
        accs.len(),
        width,
        bias.len()
    );
    for (y_row, acc_row) in ys.chunks_exact_mut(width).zip(accs.chunks_exact(width)) {
        for (((y, &a), &s), &b) in y_row.iter_mut().zip(acc_row).zip(scale).zip(bias) {
            *y = a as f32 * s + b;
        }
    }
    Ok(())
}

/// `ys[r, j] = (accs[r, j] − zero_points[r]·column_sums[j]) · (row_scales[r]·column_scales[j])
/// + bias[j]`: the tail of a linear layer whose activations were quantized row by row (each
/// token its own scale and zero point) and multiplied with the zero point left out
/// (`accs = Σ x·w` of the codes), so that one matmul call serves every row.
pub fn dequantize_per_row(
    accs: &[i32],
    rows: RowCodes<'_>,
    column_sums: &[i32],
    column_scales: &[f32],
    bias: &[f32],
    ys: &mut [f32],
) -> TractResult<()> {
    let width = column_scales.len();
    ensure!(
        width > 0
            && bias.len() == width
            && column_sums.len() == width
            && accs.len() == rows.scales.len() * width
            && rows.zero_points.len() == rows.scales.len()
            && ys.len() == accs.len(),
        "per-row dequantization: {} accumulators, {} rows, {} columns",
        accs.len(),
        rows.scales.len(),
        width
    );
    let mut scales = vec![0f32; width];
    for (r, (y_row, acc_row)) in ys
        .chunks_exact_mut(width)
        .zip(accs.chunks_exact(width))
        .enumerate()
    {
        let zero_point = i32::from(rows.zero_points[r]);
        for (s, &c) in scales.iter_mut().zip(column_scales) {
            *s = rows.scales[r] * c;
        }
        for ((((y, &a), &sum), &s), &b) in y_row
            .iter_mut()
            .zip(acc_row)
            .zip(column_sums)
            .zip(&scales)
            .zip(bias)
        {
            *y = (a - zero_point * sum) as f32 * s + b;
        }
    }
    Ok(())
}

/// Each row's scale and zero point, from [`quantize_rows`].
#[derive(Clone, Copy, Debug)]
pub struct RowCodes<'a> {
    pub scales: &'a [f32],
    pub zero_points: &'a [u8],
}

/// Quantizes each `width`-long row of `xs` into `ys` as [`quantize_dynamic`] does a whole
/// tensor, with its own scale and zero point (pushed to `scales`, `zero_points`): a token
/// with large activations no longer coarsens every other token's codes.
pub fn quantize_rows(
    xs: &[f32],
    width: usize,
    ys: &mut [u8],
    scales: &mut Vec<f32>,
    zero_points: &mut Vec<u8>,
) {
    for (x, y) in xs.chunks_exact(width).zip(ys.chunks_exact_mut(width)) {
        let (scale, zero_point) = quantize_dynamic(x, y);
        scales.push(scale);
        zero_points.push(zero_point);
    }
}

/// A row-major `[k, n]` f32 matrix as i8 codes with one symmetric scale per column,
/// `w ≈ code · scale[j]`, codes in `[−(2^(bits−1) − 1), 2^(bits−1) − 1]`: 8 bits, or 7 so that
/// every column fits the relaxed-SIMD kernel's one-plane layout.
pub fn quantize_columns(w: &[f32], k: usize, n: usize, bits: u32) -> (Vec<i8>, Vec<f32>) {
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let limit = ((1i32 << (bits.clamp(2, 8) - 1)) - 1) as f32;
    let w = &w[..k.saturating_mul(n).min(w.len())];
    // A few rows a call, each call a function of its own: a browser's engine runs a wasm
    // function's first calls in its baseline code and only later ones in optimized code, so
    // one call over a whole matrix ran the model's load several times slower.
    let rows_per_call = (1 << 14) / n + 1;
    let mut peak = vec![0f32; n];
    for rows in w.chunks(rows_per_call * n) {
        column_peaks(rows, &mut peak);
    }
    let scales: Vec<f32> = peak
        .iter()
        .map(|&p| if p > 0.0 { p / limit } else { 1.0 })
        .collect();
    let inverse: Vec<f32> = scales.iter().map(|&s| 1.0 / s).collect();
    let mut codes = vec![0i8; w.len()];
    for (rows, out) in w
        .chunks(rows_per_call * n)
        .zip(codes.chunks_mut(rows_per_call * n))
    {
        round_by_column(rows, &inverse, limit, out);
    }
    (codes, scales)
}

/// Raises `peak[j]` to the largest |value| of column `j` of the rows in `rows`.
#[inline(never)]
fn column_peaks(rows: &[f32], peak: &mut [f32]) {
    for row in rows.chunks_exact(peak.len()) {
        for (p, &x) in peak.iter_mut().zip(row) {
            // A compare and select (f32::max's NaN rule costs more, and weights hold no NaN).
            let a = x.abs();
            *p = if a > *p { a } else { *p };
        }
    }
}

/// `out` = each value of `rows` times its column's `inverse` scale, clamped to ±`limit`
/// and rounded to the nearest code (ties to even).
#[inline(never)]
fn round_by_column(rows: &[f32], inverse: &[f32], limit: f32, out: &mut [i8]) {
    // Multiplying by each column's reciprocal scale and rounding by the 1.5·2²³ trick (ties
    // to even, exact for |x| < 2²²) vectorizes on every target, where a division and
    // `round_ties_even` per weight (a libm call without SSE4.1) made this most of the query
    // bundle's start-up.
    const ROUND: f32 = 12_582_912.0;
    for (row, out) in rows
        .chunks_exact(inverse.len())
        .zip(out.chunks_exact_mut(inverse.len()))
    {
        for ((c, &x), &r) in out.iter_mut().zip(row).zip(inverse) {
            let y = (x * r).clamp(-limit, limit);
            *c = ((y + ROUND) - ROUND) as i8;
        }
    }
}

/// Lanes per step: wide enough for AVX-512 and a few wasm v128 registers.
const LANES: usize = 16;

/// ONNX's range: [min(x, 0), max(x, 0)] (NaNs ignored, as tract-onnx's comparison fold does).
fn range(xs: &[f32]) -> (f32, f32) {
    // `if x < lo` (not f32::min): the reference's own comparison, NaN skipped, and exactly
    // one SIMD instruction per lane group (x86 minps/maxps, wasm f32x4.pmin/pmax).
    let lower = |lo: f32, x: f32| if x < lo { x } else { lo };
    let higher = |hi: f32, x: f32| if x > hi { x } else { hi };
    let mut lo = [0f32; LANES];
    let mut hi = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for i in 0..LANES {
            lo[i] = lower(lo[i], chunk[i]);
            hi[i] = higher(hi[i], chunk[i]);
        }
    }
    for (i, &x) in chunks.remainder().iter().enumerate() {
        lo[i] = lower(lo[i], x);
        hi[i] = higher(hi[i], x);
    }
    (
        lo.iter().fold(0f32, |a, &b| lower(a, b)),
        hi.iter().fold(0f32, |a, &b| higher(a, b)),
    )
}

/// Scale and zero point for the range, by the ONNX definition (and tract-onnx's formulas;
/// max-then-min rather than clamp, which would keep the NaN an all-zero input produces).
#[allow(clippy::manual_clamp)]
fn scale_and_zero_point(min: f32, max: f32) -> (f32, u8) {
    let scale = (max - min) / f32::from(u8::MAX);
    let zero_point = (-min / scale)
        .round_ties_even()
        .max(f32::from(u8::MIN))
        .min(f32::from(u8::MAX));
    (scale, zero_point as u8)
}

/// `y = saturate(round(x / scale) + zero_point)`: 16 values per step in wasm SIMD (LLVM
/// leaves the loop below scalar there: it does not narrow i32 lanes to u8), the rest as below.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn quantize(xs: &[f32], scale: f32, zero_point: u8, ys: &mut [u8]) {
    use core::arch::wasm32::*;
    let n = xs.len().min(ys.len());
    let body = n / 16 * 16;
    let (s, zp) = (f32x4_splat(scale), f32x4_splat(f32::from(zero_point)));
    let (zero, top) = (f32x4_splat(0.0), f32x4_splat(255.0));
    // Same steps as `quantize_lanes`: divide, round ties-to-even, NaN → 0, add the zero
    // point, clamp to [0, 255] (pmax/pmin: `x < 0 ? 0 : x`, `255 < x ? 255 : x`), convert.
    let lanes = |x: v128| {
        let rounded = f32x4_nearest(f32x4_div(x, s));
        let rounded = v128_bitselect(rounded, zero, f32x4_eq(rounded, rounded));
        i32x4_trunc_sat_f32x4(f32x4_pmin(f32x4_pmax(f32x4_add(rounded, zp), zero), top))
    };
    for i in (0..body).step_by(16) {
        // SAFETY: `i + 16 ≤ body ≤ n`, so the four loads and the store stay inside `xs` and
        // `ys`; v128 loads and stores have no alignment requirement.
        unsafe {
            let x = xs.as_ptr().add(i);
            let quads = [0, 4, 8, 12].map(|k| lanes(v128_load(x.add(k) as *const v128)));
            let low = i16x8_narrow_i32x4(quads[0], quads[1]);
            let high = i16x8_narrow_i32x4(quads[2], quads[3]);
            v128_store(
                ys.as_mut_ptr().add(i) as *mut v128,
                u8x16_narrow_i16x8(low, high),
            );
        }
    }
    quantize_lanes(&xs[body..n], scale, zero_point, &mut ys[body..n]);
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn quantize(xs: &[f32], scale: f32, zero_point: u8, ys: &mut [u8]) {
    quantize_lanes(xs, scale, zero_point, ys);
}

/// `y = saturate(round(x / scale) + zero_point)`, in f32 lanes: `round(x / scale)` lies in
/// [-255, 255] (x is inside the range the scale spans), so adding the zero point and clamping
/// in f32 is exact, and unlike a saturating f32 → i32 conversion it vectorizes (natively).
fn quantize_lanes(xs: &[f32], scale: f32, zero_point: u8, ys: &mut [u8]) {
    let zp = f32::from(zero_point);
    for (y, &x) in ys.iter_mut().zip(xs) {
        let rounded = (x / scale).round_ties_even();
        // A NaN quantizes to the zero point, as the reference's integer conversion (NaN → 0) does.
        let rounded = if rounded.is_nan() { 0.0 } else { rounded };
        let clamped = (rounded + zp).clamp(0.0, 255.0);
        // SAFETY: `clamped` is a whole number in [0, 255] (`rounded` is not NaN, so neither is
        // the clamp's result), so the conversion is exact.
        *y = unsafe { clamped.to_int_unchecked::<i32>() } as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tract-onnx 0.23.9's evaluation, element by element: the reference (its max-then-min,
    /// not clamp: an all-zero input makes the zero point NaN, which max/min turn into 0).
    #[allow(clippy::manual_clamp)]
    fn reference(xs: &[f32]) -> (Vec<u8>, f32, u8) {
        let (min, max) = xs.iter().fold((0f32, 0f32), |(lo, hi), &v| {
            if v < lo {
                (v, hi)
            } else if v > hi {
                (lo, v)
            } else {
                (lo, hi)
            }
        });
        let scale = (max - min) / 255.0;
        let zp = (-min / scale).round_ties_even().max(0.0).min(255.0) as u8;
        let ys = xs
            .iter()
            .map(|&x| (((x / scale).round_ties_even() as i32) + i32::from(zp)).clamp(0, 255) as u8)
            .collect();
        (ys, scale, zp)
    }

    fn fast(xs: &[f32]) -> (Vec<u8>, f32, u8) {
        let mut ys = vec![0u8; xs.len()];
        let (scale, zp) = quantize_dynamic(xs, &mut ys);
        (ys, scale, zp)
    }

    #[test]
    fn dequantize_scale_bias_is_cast_then_mul_then_add() {
        let width = 5;
        let accs: Vec<i32> = vec![0, 1, -1, 16_777_217, i32::MIN, 123_456, -98_765, 7, 0, 3];
        let scale = [0.001f32, 1e-7, 3.5, 0.1, 2.0];
        let bias = [-0.25f32, 0.0, 1e-3, -7.0, 0.5];
        let mut ys = vec![f32::NAN; accs.len()];
        dequantize_rows(&accs, &scale, &bias, &mut ys).expect("matching lengths");
        let expected: Vec<u32> = accs
            .iter()
            .enumerate()
            .map(|(i, &a)| (a as f32 * scale[i % width] + bias[i % width]).to_bits())
            .collect();
        let got: Vec<u32> = ys.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, expected);

        let err = dequantize_rows(&accs, &scale, &bias[..4], &mut ys).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dequantization: 10 accumulators, 5 scales, 4 biases"
        );
        let err = dequantize_rows(&accs[..9], &scale, &bias, &mut ys[..9]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dequantization: 9 accumulators, 5 scales, 5 biases"
        );
    }

    #[test]
    fn equals_the_onnx_reference_bit_for_bit() {
        // The ONNX operator examples, then activations of many lengths and ranges,
        // all-positive, all-negative, all-zero, ties at .5 and a NaN.
        let mut cases: Vec<Vec<f32>> = vec![
            vec![0., 2., -3., -2.5, 1.34, 0.5],
            vec![-1., -2.1, -1.3, -2.5, -3.34, -4.],
            vec![1., 2.1, 1.3, 2.5, 3.34, 4., 1.5, 2.6, 3.9, 4., 3., 2.345],
            vec![0.0; 37],
            vec![],
            vec![0.5, 1.5, 2.5, -0.5, 255.0 / 2.0],
            vec![1.0, f32::NAN, -2.0],
        ];
        let mut seed = 7u32;
        for len in [1, 15, 16, 17, 31, 384, 1000, 4099] {
            for spread in [1e-3f32, 1.0, 40.0] {
                cases.push(
                    (0..len)
                        .map(|_| {
                            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                            ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.3) * spread
                        })
                        .collect(),
                );
            }
        }
        for xs in &cases {
            let (a, b) = (reference(xs), fast(xs));
            assert_eq!(a.0, b.0, "values for {} inputs", xs.len());
            assert_eq!(
                a.1.to_bits(),
                b.1.to_bits(),
                "scale for {} inputs",
                xs.len()
            );
            assert_eq!(a.2, b.2, "zero point for {} inputs", xs.len());
        }
        // The ONNX operator documentation's expected outputs.
        assert_eq!(fast(&cases[0]).0, vec![153, 255, 0, 26, 221, 179]);
        assert_eq!(fast(&cases[1]).2, 255);
        assert_eq!(fast(&cases[2]).2, 0);
    }

    #[test]
    fn columns_use_their_own_scale_and_the_bit_budget() {
        // Two columns: one spanning ±2, one ±0.5.
        let w = [2.0f32, 0.5, -1.0, -0.25, 0.5, 0.0];
        for (bits, limit) in [(8, 127), (7, 63)] {
            let (codes, scales) = quantize_columns(&w, 3, 2, bits);
            assert_eq!(scales, vec![2.0 / limit as f32, 0.5 / limit as f32]);
            assert_eq!(codes[0] as i32, limit);
            assert_eq!(codes[1] as i32, limit);
            assert!(codes.iter().all(|&c| (c as i32).abs() <= limit));
            for (i, (&x, &c)) in w.iter().zip(&codes).enumerate() {
                let s = scales[i % 2];
                assert!((c as f32 * s - x).abs() <= s / 2.0 + 1e-7);
            }
        }
        // An all-zero column keeps a unit scale and zero codes.
        let (codes, scales) = quantize_columns(&[0.0, 1.0], 1, 2, 8);
        assert_eq!((codes, scales), (vec![0, 127], vec![1.0, 1.0 / 127.0]));
    }
}
