//! f32 linear layers (`x·W + b`) on Intel AMX bf16 tiles, natively.
//!
//! AMX's `tdpbf16ps` multiplies bf16 pairs into f32 sums, 16 × 16 × 32 at a time. A bf16
//! keeps 8 of f32's 24 mantissa bits, so each operand is split in two, `x = x_hi + x_lo`
//! (both bf16; 16 bits together), and the kernel sums `x_hi·w_hi + x_hi·w_lo + x_lo·w_hi` —
//! what is left out, `x_lo·w_lo`, and the splits' own rounding are ~2⁻¹⁶ of each product.
//! So each sum is good to ~16 bits (tested against f64: within 2⁻¹⁵ of its terms'
//! magnitudes), at a third of the tile throughput: still several times an f32 kernel. The
//! weights are split and packed once, at load; the bias starts the sums.

use tract_core::internal::*;

use super::amx;

/// Depth of one `tdpbf16ps` step (32 bf16 per 64-byte tile row).
const DEPTH: usize = 32;
/// Output columns of one tile (16 f32 per 64-byte row).
const COLUMNS: usize = 16;
/// bf16 values in one weight tile: 16 rows × 16 columns × a pair of depths.
const TILE_ELEMENTS: usize = DEPTH * COLUMNS;
/// Activation rows per tile.
const TILE_ROWS: usize = 16;

/// Whether the kernel runs here (x86-64 Linux, a CPU with AMX-BF16).
pub fn available() -> bool {
    amx::bf16_available()
}

/// `x` rounded to bf16 (to nearest, ties to even), as its 16 high bits.
fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return 0x7fc0;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// The f32 a bf16 stands for.
fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// `x = hi + lo` to 16 significant bits: `hi` is `x` in bf16, `lo` the rest in bf16.
fn split(x: f32) -> (u16, u16) {
    let hi = bf16_bits(x);
    if bf16_value(hi).is_infinite() {
        // ±∞, or a finite x that rounded to it: x − hi would be ∓∞ or NaN.
        return (hi, 0);
    }
    (hi, bf16_bits(x - bf16_value(hi)))
}

/// A `[k, n]` f32 weight matrix split into bf16 `hi` and `lo` planes, each packed in AMX's
/// layout for `tdpbf16ps`' second operand: per 16-column block, per 32-deep step, one tile
/// whose row `r` holds depths `2r, 2r + 1` of each of the 16 columns. Depth is zero-padded to
/// a multiple of 32, columns to a multiple of 32 (the kernel takes column blocks in pairs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PackedBf16 {
    k: usize,
    n: usize,
    k_padded: usize,
    hi: Vec<u16>,
    lo: Vec<u16>,
    /// The bias, f32 bits, padded to the packed columns.
    bias_bits: Vec<u32>,
}

impl PackedBf16 {
    /// Packs a row-major `[k, n]` matrix and its bias (`n` values).
    pub fn pack(weights: &[f32], bias: &[f32], k: usize, n: usize) -> TractResult<Self> {
        ensure!(
            k > 0 && n > 0 && weights.len() == k * n && bias.len() == n,
            "bf16 linear: {} weights and {} biases for a {k} × {n} matrix",
            weights.len(),
            bias.len()
        );
        let k_padded = k.div_ceil(DEPTH) * DEPTH;
        let n_padded = n.div_ceil(2 * COLUMNS) * 2 * COLUMNS;
        let mut hi = vec![0u16; k_padded * n_padded];
        let mut lo = vec![0u16; k_padded * n_padded];
        for (depth, row) in weights.chunks_exact(n).enumerate() {
            for (j, &w) in row.iter().enumerate() {
                let at = place(k_padded, depth, j);
                (hi[at], lo[at]) = split(w);
            }
        }
        let mut bias_bits: Vec<u32> = bias.iter().map(|b| b.to_bits()).collect();
        bias_bits.resize(n_padded, 0);
        Ok(Self {
            k,
            n,
            k_padded,
            hi,
            lo,
            bias_bits,
        })
    }
}

/// Where weight `(depth, j)` goes in a packed plane of depth `kp`.
fn place(kp: usize, depth: usize, j: usize) -> usize {
    (j / COLUMNS * (kp / DEPTH) + depth / DEPTH) * TILE_ELEMENTS
        + (depth % DEPTH) / 2 * (2 * COLUMNS)
        + (j % COLUMNS) * 2
        + depth % 2
}

impl PackedBf16 {
    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// `out[r, j] = Σ_d x[r, d] · w[d, j] + b[j]` for the rows of `x` (`[rows, k]`, row-major).
pub fn matmul(x: &[f32], w: &PackedBf16, out: &mut [f32]) -> TractResult<()> {
    ensure!(
        available(),
        "bf16 linear: this CPU or OS does not run AMX bf16 tiles"
    );
    ensure!(
        x.len().is_multiple_of(w.k) && out.len() == x.len() / w.k * w.n,
        "bf16 linear: {} inputs and {} outputs for {} × {} weights",
        x.len(),
        out.len(),
        w.k,
        w.n
    );
    let rows = x.len() / w.k;
    // Activations split into bf16 planes, rows padded to whole tiles, depth to whole steps.
    let kp = w.k_padded;
    let padded_rows = rows.div_ceil(TILE_ROWS) * TILE_ROWS;
    let mut x_hi = vec![0u16; padded_rows * kp];
    let mut x_lo = vec![0u16; padded_rows * kp];
    for ((row, hi), lo) in x
        .chunks_exact(w.k)
        .zip(x_hi.chunks_exact_mut(kp))
        .zip(x_lo.chunks_exact_mut(kp))
    {
        for ((&v, hi), lo) in row.iter().zip(hi.iter_mut()).zip(lo.iter_mut()) {
            (*hi, *lo) = split(v);
        }
    }
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    // SAFETY: AMX-BF16 is available (checked above); the planes have the shapes `tiles`
    // documents.
    unsafe {
        tiles(&x_hi, &x_lo, rows, w, out)
    };
    Ok(())
}

/// Tiles 0–1: the sums of 16 rows × 32 columns; 2–3: the activations' hi and lo planes
/// (16 rows × 32 depths); 4–7: the weights' hi and lo planes of the two 16-column blocks.
///
/// # Safety
/// AMX-BF16 must be available; `x_hi` and `x_lo` hold `rows` rounded up to 16, of
/// `w.k_padded` values each; `out` holds `rows` × `w.n`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
unsafe fn tiles(x_hi: &[u16], x_lo: &[u16], rows: usize, w: &PackedBf16, out: &mut [f32]) {
    use std::arch::asm;
    let (kp, n) = (w.k_padded, w.n);
    let steps = kp / DEPTH;
    let row_stride = kp * 2;
    let mut block = [0f32; TILE_ROWS * 2 * COLUMNS];
    amx::configure_tiles();
    // SAFETY (every asm block): loads read 16 rows of 64 bytes inside the planes or the bias
    // (offsets and strides from the shapes above); stores write 16 rows of 64 bytes inside
    // `out` (only where all 16 × 32 sums belong to it) or `block`.
    for pair in 0..w.bias_bits.len() / (2 * COLUMNS) {
        let first_column = pair * 2 * COLUMNS;
        let plane_at = 2 * pair * steps * TILE_ELEMENTS;
        let (w_hi0, w_lo0) = (w.hi.as_ptr().add(plane_at), w.lo.as_ptr().add(plane_at));
        let (w_hi1, w_lo1) = (
            w_hi0.add(steps * TILE_ELEMENTS),
            w_lo0.add(steps * TILE_ELEMENTS),
        );
        let bias = w.bias_bits.as_ptr().add(first_column);
        for first_row in (0..rows).step_by(TILE_ROWS) {
            asm!(
                "tileloadd tmm0, [{b0} + {zero}*1]",
                "tileloadd tmm1, [{b1} + {zero}*1]",
                b0 = in(reg) bias,
                b1 = in(reg) bias.add(COLUMNS),
                zero = in(reg) 0usize,
                options(nostack),
            );
            let (a_hi, a_lo) = (
                x_hi.as_ptr().add(first_row * kp),
                x_lo.as_ptr().add(first_row * kp),
            );
            for step in 0..steps {
                let (a, s) = (step * DEPTH, step * TILE_ELEMENTS);
                asm!(
                    "tileloadd tmm2, [{a_hi} + {stride}*1]",
                    "tileloadd tmm4, [{w_hi0} + {row}*1]",
                    "tileloadd tmm5, [{w_hi1} + {row}*1]",
                    "tdpbf16ps tmm0, tmm2, tmm4",
                    "tdpbf16ps tmm1, tmm2, tmm5",
                    "tileloadd tmm6, [{w_lo0} + {row}*1]",
                    "tileloadd tmm7, [{w_lo1} + {row}*1]",
                    "tdpbf16ps tmm0, tmm2, tmm6",
                    "tdpbf16ps tmm1, tmm2, tmm7",
                    "tileloadd tmm3, [{a_lo} + {stride}*1]",
                    "tdpbf16ps tmm0, tmm3, tmm4",
                    "tdpbf16ps tmm1, tmm3, tmm5",
                    a_hi = in(reg) a_hi.add(a),
                    a_lo = in(reg) a_lo.add(a),
                    stride = in(reg) row_stride,
                    w_hi0 = in(reg) w_hi0.add(s),
                    w_hi1 = in(reg) w_hi1.add(s),
                    w_lo0 = in(reg) w_lo0.add(s),
                    w_lo1 = in(reg) w_lo1.add(s),
                    row = in(reg) 64usize,
                    options(nostack),
                );
            }
            let block_rows = (rows - first_row).min(TILE_ROWS);
            if block_rows == TILE_ROWS && first_column + 2 * COLUMNS <= n {
                let at = out.as_mut_ptr().add(first_row * n + first_column);
                store_sums(at.cast(), n * 4);
            } else {
                store_sums(block.as_mut_ptr().cast(), 2 * COLUMNS * 4);
                amx::copy_block_rows(&block, block_rows, out, n, (first_row, first_column));
            }
        }
    }
    asm!("tilerelease", options(nostack));
}

/// Stores sum tiles 0–1 as the 16 × 32 block at `at`, rows `stride` bytes apart.
///
/// # Safety
/// AMX tiles configured, and 16 rows of 128 bytes, `stride` apart, writable at `at`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
unsafe fn store_sums(at: *mut u8, stride: usize) {
    std::arch::asm!(
        "tilestored [{c0} + {stride}*1], tmm0",
        "tilestored [{c1} + {stride}*1], tmm1",
        c0 = in(reg) at,
        c1 = in(reg) at.add(64),
        stride = in(reg) stride,
        options(nostack),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u32) -> f32 {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (*seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties to the even 1.
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_bits(-2.5), 0xc020);
        assert_eq!(bf16_bits(f32::NAN), 0x7fc0);
        let x = 0.123_456_79_f32;
        let (hi, lo) = split(x);
        let rest = (x - bf16_value(hi) - bf16_value(lo)).abs();
        assert!(rest <= x.abs() / 65536.0, "split leaves {rest}");
        assert_eq!(split(f32::INFINITY), (0x7f80, 0));
        assert_eq!(split(f32::MAX), (0x7f80, 0));
    }

    /// Within 2⁻¹⁵ of the f64 definition, relative to the terms' magnitudes, around tile
    /// edges (rows around 16, columns around 32, depths around 32).
    #[test]
    fn bf16_linear_matches_the_definition() {
        if !available() {
            eprintln!("no AMX bf16 tiles here: the bf16 linear kernel is not tested");
            return;
        }
        let mut seed = 5;
        for (rows, k, n) in [
            (1, 1, 1),
            (16, 32, 32),
            (17, 33, 31),
            (40, 384, 64),
            (5, 100, 70),
            (64, 1536, 384),
        ] {
            let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut seed) * 4.0).collect();
            let w: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed) * 0.1).collect();
            let b: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let packed = PackedBf16::pack(&w, &b, k, n).unwrap();
            let mut out = vec![0f32; rows * n];
            matmul(&x, &packed, &mut out).unwrap();
            for r in 0..rows {
                for j in 0..n {
                    let terms = (0..k).map(|d| f64::from(x[r * k + d]) * f64::from(w[d * n + j]));
                    let magnitude =
                        terms.clone().map(f64::abs).sum::<f64>() + f64::from(b[j]).abs();
                    let expected = terms.sum::<f64>() + f64::from(b[j]);
                    let error = (f64::from(out[r * n + j]) - expected).abs();
                    assert!(
                        error <= magnitude / 32768.0,
                        "{rows}×{k}×{n} at ({r}, {j}): {} vs {expected}",
                        out[r * n + j]
                    );
                }
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let err = PackedBf16::pack(&[1.0; 5], &[0.0; 2], 3, 2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bf16 linear: 5 weights and 2 biases for a 3 × 2 matrix"
        );
        if available() {
            let packed = PackedBf16::pack(&[1.0; 6], &[0.0; 2], 3, 2).unwrap();
            let err = matmul(&[1.0; 4], &packed, &mut [0.0; 2]).unwrap_err();
            assert_eq!(
                err.to_string(),
                "bf16 linear: 4 inputs and 2 outputs for 3 × 2 weights"
            );
        }
    }
}
