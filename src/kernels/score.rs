//! Scoring kernels: the hot loop of every dense search, shared by native and wasm.
//!
//! int8 rows are scored against the query in integers: the query is quantized once per
//! search to 14-bit integers ([`QuantizedQuery`]), so each row costs one widening and one
//! `i16×i16→i32` multiply-add per lane (`pmaddwd` natively, `i32x4.dot_i16x8_s` in wasm,
//! or the relaxed-SIMD int8 dot) instead of an int-to-float conversion per element. 14 bits
//! keep the query's relative error below 2⁻¹³, far inside the int8 rows' own quantization
//! error, and the accumulation is exact, so native and browser scores agree bit for bit.

/// Largest query magnitude after scaling: 14 bits, so that `q + 2¹³` splits into two 7-bit
/// halves for the relaxed-SIMD kernel; every build uses it, so all score identically.
const QUERY_MAX: i16 = (1 << 13) - 1;

/// A query vector scaled to i16 for the int8 kernel.
#[derive(Debug, Clone)]
pub struct QuantizedQuery {
    values: Vec<i16>,
    /// Divide an integer dot product by this to get the f32 dot product.
    scale: f32,
}

impl QuantizedQuery {
    /// Scales `query` so its largest component maps to ±8191 (`QUERY_MAX`), unless that
    /// could overflow an i32 sum against ±127 rows (very long vectors); then the scale
    /// shrinks to fit.
    pub fn new(query: &[f32]) -> Self {
        let max = query.iter().fold(0f32, |m, x| m.max(x.abs()));
        let l1: f64 = query.iter().map(|x| f64::from(x.abs())).sum();
        if max == 0.0 || !max.is_finite() || !l1.is_finite() {
            return QuantizedQuery {
                values: vec![0; query.len()],
                scale: 1.0,
            };
        }
        let full_range = f64::from(QUERY_MAX) / f64::from(max);
        // Each lane's partial sum and the total are bounded by 127 · Σ|q|·scale.
        let no_overflow = f64::from(i32::MAX) / (127.0 * l1 * 1.0001);
        let scale = full_range.min(no_overflow);
        let values = query
            .iter()
            .map(|&x| (f64::from(x) * scale).round() as i16)
            .collect();
        QuantizedQuery {
            values,
            scale: scale as f32,
        }
    }

    /// Scores every `dims`-byte row of `rows` (int8 bit patterns, row `i` scaled by
    /// `scales[i]`, `sums` the matching slice of [`RowSums`]), appending to `out`.
    pub fn score_rows(&self, rows: &[u8], scales: &[f32], sums: &[i32], out: &mut Vec<f32>) {
        let _ = sums; // only the relaxed-SIMD kernel needs them
        let d = self.values.len();
        if d == 0 {
            out.extend(scales.iter().map(|_| 0.0));
            return;
        }
        let inv = 1.0 / self.scale;
        out.reserve(scales.len());
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        if d.is_multiple_of(16) && sums.len() == scales.len() {
            relaxed::score_rows(&self.values, rows, scales, sums, inv, out);
            return;
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if d.is_multiple_of(16) {
            let mut blocks = rows.chunks_exact(4 * d);
            let mut scale_blocks = scales.chunks_exact(4);
            for (block, s) in (&mut blocks).zip(&mut scale_blocks) {
                let dots = dot4_i8_i16(block, &self.values);
                out.extend((0..4).map(|i| dots[i] as f32 * (s[i] * inv)));
            }
            for (row, &scale) in blocks
                .remainder()
                .chunks_exact(d)
                .zip(scale_blocks.remainder())
            {
                out.push(dot_i8_i16(row, &self.values) as f32 * (scale * inv));
            }
            return;
        }
        for (row, &scale) in rows.chunks_exact(d).zip(scales) {
            out.push(dot_i8_i16(row, &self.values) as f32 * (scale * inv));
        }
    }
}

/// Σ row·q over int8 `row` (stored as u8 bit patterns) and i16 `q`. Exact when
/// 127·Σ|q| fits in an i32, which [`QuantizedQuery::new`] guarantees.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub fn dot_i8_i16(row: &[u8], q: &[i16]) -> i32 {
    // Written so LLVM vectorizes it into sign-extends and pmaddwd (SSE2/AVX2/NEON).
    row.iter()
        .zip(q)
        .map(|(&x, &y)| i32::from(x as i8) * i32::from(y))
        .fold(0i32, |acc, p| acc.wrapping_add(p))
}

/// wasm SIMD: 16 bytes per step, widened to two i16x8 and multiply-added into two
/// independent accumulators (so consecutive steps do not wait on each other).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub fn dot_i8_i16(row: &[u8], q: &[i16]) -> i32 {
    use core::arch::wasm32::*;
    let n = row.len().min(q.len());
    let steps = n / 16;
    let (mut acc0, mut acc1) = (i32x4_splat(0), i32x4_splat(0));
    let (r, qp) = (row.as_ptr(), q.as_ptr());
    for s in 0..steps {
        // SAFETY: s * 16 + 16 <= n, so 16 bytes of `row` and 16 i16 of `q` from the step's
        // start are in bounds; v128_load permits unaligned reads.
        let (v, q0, q1) = unsafe {
            (
                v128_load(r.add(s * 16) as *const v128),
                v128_load(qp.add(s * 16) as *const v128),
                v128_load(qp.add(s * 16 + 8) as *const v128),
            )
        };
        acc0 = i32x4_add(acc0, i32x4_dot_i16x8(i16x8_extend_low_i8x16(v), q0));
        acc1 = i32x4_add(acc1, i32x4_dot_i16x8(i16x8_extend_high_i8x16(v), q1));
    }
    let acc = i32x4_add(acc0, acc1);
    let mut sum = i32x4_extract_lane::<0>(acc)
        .wrapping_add(i32x4_extract_lane::<1>(acc))
        .wrapping_add(i32x4_extract_lane::<2>(acc))
        .wrapping_add(i32x4_extract_lane::<3>(acc));
    for i in steps * 16..n {
        sum = sum.wrapping_add(i32::from(row[i] as i8) * i32::from(q[i]));
    }
    sum
}

/// Four consecutive rows at once (`block` = 4 rows of `q.len()` bytes, a multiple of 16):
/// each query load serves four rows and four accumulator chains run side by side.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot4_i8_i16(block: &[u8], q: &[i16]) -> [i32; 4] {
    use core::arch::wasm32::*;
    let d = q.len();
    assert!(block.len() >= 4 * d && d.is_multiple_of(16));
    let mut acc = [i32x4_splat(0); 4];
    let (r, qp) = (block.as_ptr(), q.as_ptr());
    for s in (0..d).step_by(16) {
        // SAFETY: s + 16 <= d, so the 16 i16 of `q` from s and 16 bytes of each of the four
        // rows (offsets j·d + s, j < 4) are in bounds (asserted above); loads are unaligned-safe.
        unsafe {
            let q0 = v128_load(qp.add(s) as *const v128);
            let q1 = v128_load(qp.add(s + 8) as *const v128);
            for (j, a) in acc.iter_mut().enumerate() {
                let v = v128_load(r.add(j * d + s) as *const v128);
                let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(v), q0);
                let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(v), q1);
                *a = i32x4_add(*a, i32x4_add(lo, hi));
            }
        }
    }
    acc.map(|a| {
        i32x4_extract_lane::<0>(a)
            .wrapping_add(i32x4_extract_lane::<1>(a))
            .wrapping_add(i32x4_extract_lane::<2>(a))
            .wrapping_add(i32x4_extract_lane::<3>(a))
    })
}

/// Per-row data the kernel needs besides the bytes: Σ row for the relaxed-SIMD kernel
/// (computed once when a shard loads), nothing for the others.
#[derive(Debug, Clone, Default)]
#[cfg_attr(
    not(all(target_arch = "wasm32", target_feature = "relaxed-simd")),
    allow(dead_code)
)]
pub struct RowSums(Vec<i32>);

impl RowSums {
    pub fn new(rows: &[u8], dims: usize) -> Self {
        if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) && dims > 0 {
            RowSums(
                rows.chunks_exact(dims)
                    .map(|r| r.iter().map(|&b| i32::from(b as i8)).sum())
                    .collect(),
            )
        } else {
            RowSums(Vec::new())
        }
    }

    /// The sums of rows `rows` (empty where this build keeps none).
    pub fn rows(&self, rows: std::ops::Range<usize>) -> &[i32] {
        self.0.get(rows).unwrap_or(&[])
    }
}

/// Relaxed SIMD: `i32x4.relaxed_dot_i8x16_i7x16_add_s` multiplies 16 int8 pairs and adds
/// them into four i32 lanes in one instruction (VNNI `vpdpbusd` on recent x86). It is exact
/// only while one operand stays in 0..=127, so the 14-bit query is offset and split:
/// `q + 2¹³ = 128·high + low` with both halves in 0..=127, and
/// `row·q = 128·row·high + row·low − 2¹³·Σrow`. The arithmetic wraps in i32: intermediate
/// overflow cancels because the final value fits (see [`QuantizedQuery::new`]).
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
mod relaxed {
    use core::arch::wasm32::*;

    /// Shifts the 14-bit query (±8191) into 0..16384.
    const QUERY_OFFSET: i32 = 1 << 13;

    pub fn score_rows(
        query: &[i16],
        rows: &[u8],
        scales: &[f32],
        sums: &[i32],
        inv: f32,
        out: &mut Vec<f32>,
    ) {
        let d = query.len();
        let (high, low): (Vec<u8>, Vec<u8>) = query
            .iter()
            .map(|&v| {
                let u = (i32::from(v) + QUERY_OFFSET) as u16;
                ((u >> 7) as u8, (u & 127) as u8)
            })
            .unzip();
        let finish = |h: i32, l: i32, sum: i32, scale: f32| {
            let dot = h
                .wrapping_mul(128)
                .wrapping_add(l)
                .wrapping_sub(sum.wrapping_mul(QUERY_OFFSET));
            dot as f32 * (scale * inv)
        };
        let mut blocks = rows.chunks_exact(4 * d);
        let mut at = 0;
        for block in &mut blocks {
            let (h, l) = dot4(block, &high, &low);
            for j in 0..4 {
                out.push(finish(h[j], l[j], sums[at + j], scales[at + j]));
            }
            at += 4;
        }
        for row in blocks.remainder().chunks_exact(d) {
            let (h, l) = dot4_tail(row, &high, &low);
            out.push(finish(h, l, sums[at], scales[at]));
            at += 1;
        }
    }

    fn hsum(v: v128) -> i32 {
        i32x4_extract_lane::<0>(v)
            .wrapping_add(i32x4_extract_lane::<1>(v))
            .wrapping_add(i32x4_extract_lane::<2>(v))
            .wrapping_add(i32x4_extract_lane::<3>(v))
    }

    /// row·high and row·low for four consecutive rows (each query load serves all four).
    fn dot4(block: &[u8], high: &[u8], low: &[u8]) -> ([i32; 4], [i32; 4]) {
        let d = high.len();
        assert!(block.len() >= 4 * d && low.len() == d && d.is_multiple_of(16));
        let (mut acc_h, mut acc_l) = ([i32x4_splat(0); 4], [i32x4_splat(0); 4]);
        for s in (0..d).step_by(16) {
            // SAFETY: s + 16 <= d; `high` and `low` are d long and `block` holds four rows
            // of d bytes (asserted above), so every 16-byte load is in bounds.
            unsafe {
                let h = v128_load(high.as_ptr().add(s) as *const v128);
                let l = v128_load(low.as_ptr().add(s) as *const v128);
                for j in 0..4 {
                    let v = v128_load(block.as_ptr().add(j * d + s) as *const v128);
                    acc_h[j] = i32x4_relaxed_dot_i8x16_i7x16_add(v, h, acc_h[j]);
                    acc_l[j] = i32x4_relaxed_dot_i8x16_i7x16_add(v, l, acc_l[j]);
                }
            }
        }
        (acc_h.map(hsum), acc_l.map(hsum))
    }

    fn dot4_tail(row: &[u8], high: &[u8], low: &[u8]) -> (i32, i32) {
        let d = high.len();
        assert!(row.len() == d && low.len() == d && d.is_multiple_of(16));
        let (mut acc_h, mut acc_l) = (i32x4_splat(0), i32x4_splat(0));
        for s in (0..d).step_by(16) {
            // SAFETY: s + 16 <= d and all three slices are d long (asserted above).
            unsafe {
                let v = v128_load(row.as_ptr().add(s) as *const v128);
                let h = v128_load(high.as_ptr().add(s) as *const v128);
                let l = v128_load(low.as_ptr().add(s) as *const v128);
                acc_h = i32x4_relaxed_dot_i8x16_i7x16_add(v, h, acc_h);
                acc_l = i32x4_relaxed_dot_i8x16_i7x16_add(v, l, acc_l);
            }
        }
        (hsum(acc_h), hsum(acc_l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // In wasm builds these run under wasm-bindgen's test runner (`./build.sh test`), where
    // the SIMD scoring kernels are the code under test.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn integer_dot_is_exact_at_the_extremes() {
        let row: Vec<u8> = (0..389).map(|i| (i * 37 % 256) as u8).collect();
        let q: Vec<i16> = (0..389).map(|i| (i * 9973 % 65536) as u16 as i16).collect();
        let expected: i64 = row
            .iter()
            .zip(&q)
            .map(|(&a, &b)| i64::from(a as i8) * i64::from(b))
            .sum();
        assert_eq!(i64::from(dot_i8_i16(&row, &q)), expected);
        // The largest magnitudes the scale allows never overflow.
        let query = vec![1.0f32; 384];
        let qq = QuantizedQuery::new(&query);
        let worst = vec![0x81u8; 384]; // -127
        let mut out = Vec::new();
        qq.score_rows(
            &worst,
            &[1.0],
            RowSums::new(&worst, 384).rows(0..1),
            &mut out,
        );
        assert!((out[0] + 127.0 * 384.0).abs() < 0.05, "{}", out[0]);
    }

    #[test]
    fn scores_match_float_dot_products() {
        let d = 384;
        let query: Vec<f32> = (0..d).map(|i| ((i as f32) * 0.37).sin() * 0.2).collect();
        let rows: Vec<u8> = (0..3 * d).map(|i| ((i * 53 + 7) % 255) as u8).collect();
        let scales = [0.01f32, 0.002, 1.5];
        let mut out = Vec::new();
        QuantizedQuery::new(&query).score_rows(
            &rows,
            &scales,
            RowSums::new(&rows, d).rows(0..scales.len()),
            &mut out,
        );
        for (i, (&got, s)) in out.iter().zip(scales).enumerate() {
            let exact: f32 = rows[i * d..(i + 1) * d]
                .iter()
                .zip(&query)
                .map(|(&b, &q)| f32::from(b as i8) * s * q)
                .sum();
            assert!(
                (got - exact).abs() <= 1e-4 * exact.abs().max(1.0),
                "row {i}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn zero_or_non_finite_queries_score_zero_instead_of_nan() {
        let mut out = Vec::new();
        let sums = RowSums::new(&[1, 2, 3, 4], 4);
        let sums = sums.rows(0..1);
        QuantizedQuery::new(&[0.0; 4]).score_rows(&[1, 2, 3, 4], &[1.0], sums, &mut out);
        QuantizedQuery::new(&[f32::NAN; 4]).score_rows(&[1, 2, 3, 4], &[1.0], sums, &mut out);
        assert_eq!(out, vec![0.0, 0.0]);
    }
}
