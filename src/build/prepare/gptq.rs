//! Linear weights quantized for the query bundle: 4 or 8 bits per weight in groups of inputs
//! of one output column, each group with its own f16 scale and minimum — exactly the storage
//! ([`GroupCode`]) the bundle keeps them in, so storing them loses nothing more. (The int8
//! compute re-quantizes them per column at load: storing int8 codes directly, on lattices a
//! 4-bit code can hold, measured worse — a coarser grid than the f16 scales allow.)
//!
//! Codes are chosen by GPTQ (Frantar et al. 2022) where calibration activations give the
//! layer's input Hessian `H = Σ x·xᵀ`: inputs are quantized one by one and each one's
//! rounding error is pushed onto the inputs not yet quantized, in proportion to how they
//! co-vary, so the layer's outputs on text like the calibration text move as little as
//! possible. Plain rounding to nearest where no Hessian is given.
//!
//! [`GroupCode`]: crate::kernels::groups::GroupCode

use half::f16;
use rayon::prelude::*;

use crate::kernels::groups::GroupCode;

/// Quantized weights by layer name (e.g. `layer.0.attention.q`), row-major `[k, n]`.
pub type QuantizedWeights = std::collections::HashMap<String, Vec<f32>>;

/// GPTQ's damping, as a fraction of the Hessian's mean diagonal.
const DAMPING: f64 = 0.01;

/// One group's grid, `min + scale · c` for `c` in `0..=top`, scale and minimum f16 values as
/// storage keeps them.
#[derive(Clone, Copy)]
struct Grid {
    min: f64,
    scale: f64,
    top: f64,
}

impl Grid {
    /// The grid of `bits`-bit codes over values `u`: their range onto the codes, as
    /// [`GroupCode`] derives it.
    ///
    /// [`GroupCode`]: crate::kernels::groups::GroupCode
    fn over(bits: u32, u: impl Iterator<Item = f64>) -> Self {
        let top = f64::from((1u32 << bits) - 1);
        let (lo, hi) = u.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let min = f16::from_f64(lo).to_f64();
        let scale = f16::from_f64((hi - min) / top).to_f64();
        Grid { min, scale, top }
    }

    /// The grid value nearest to `u`, computed in f32 as decoding does.
    fn snap(self, u: f64) -> f64 {
        if self.scale <= 0.0 {
            return self.min;
        }
        let c = ((u - self.min) / self.scale).round().clamp(0.0, self.top);
        f64::from(c as f32 * self.scale as f32 + self.min as f32)
    }
}

/// Rounds `w` (`[k, n]` row-major, `k` a multiple of `code.group`) to the nearest values of
/// `code`'s grids.
pub fn round_to_nearest(code: GroupCode, w: &[f32], k: usize, n: usize) -> Vec<f32> {
    let mut q = vec![0f32; k * n];
    for g in (0..k).step_by(code.group) {
        for j in 0..n {
            let grid = Grid::over(
                code.bits,
                (g..g + code.group).map(|i| f64::from(w[i * n + j])),
            );
            for i in g..g + code.group {
                q[i * n + j] = grid.snap(f64::from(w[i * n + j])) as f32;
            }
        }
    }
    q
}

/// GPTQ onto `code`'s group grids, with `factor` from [`InverseFactor::of`] the layer's
/// input Hessian.
pub fn gptq(code: GroupCode, w: &[f32], k: usize, n: usize, factor: &InverseFactor) -> Vec<f32> {
    let u = &factor.0;
    debug_assert_eq!(u.len(), k * k);
    // Working copy; rows are inputs.
    let mut work: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
    let mut q = vec![0f32; k * n];
    let mut grids = vec![
        Grid {
            min: 0.0,
            scale: 0.0,
            top: 0.0
        };
        n
    ];
    let mut error = vec![0f64; n];
    for i in 0..k {
        if i % code.group == 0 {
            // Each group's grid from its weights as the earlier errors left them.
            for (j, grid) in grids.iter_mut().enumerate() {
                *grid = Grid::over(code.bits, (i..i + code.group).map(|r| work[r * n + j]));
            }
        }
        let d = u[i * k + i];
        let (row, rest) = work[i * n..].split_at_mut(n);
        for j in 0..n {
            let v = grids[j].snap(row[j]);
            q[i * n + j] = v as f32;
            error[j] = (row[j] - v) / d;
        }
        // Spread this input's error over the inputs still to quantize.
        rest.par_chunks_exact_mut(n)
            .enumerate()
            .for_each(|(r, later)| {
                let f = u[i * k + i + 1 + r];
                for (x, e) in later.iter_mut().zip(&error) {
                    *x -= f * e;
                }
            });
    }
    q
}

/// The upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = Uᵀ·U`), `H` damped, as GPTQ uses it: made
/// once per Hessian (the attention's q, k and v share one).
pub struct InverseFactor(Vec<f64>);

impl InverseFactor {
    /// The factor of `hessian` (`[k, k]` sum of `x·xᵀ` over calibration tokens, row-major),
    /// or `None` if it is not positive definite even damped.
    pub fn of(hessian: &[f64], k: usize) -> Option<Self> {
        inverse_cholesky_upper(hessian, k).map(InverseFactor)
    }
}

/// [`InverseFactor`]'s matrix. Inputs that never fired (zero diagonal) get a unit diagonal:
/// their weights then round to nearest.
fn inverse_cholesky_upper(hessian: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut h = hessian.to_vec();
    let mean = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
    for i in 0..k {
        if h[i * k + i] == 0.0 {
            h[i * k + i] = 1.0;
        }
        h[i * k + i] += DAMPING * mean.max(f64::MIN_POSITIVE);
    }
    let l = cholesky_lower(&h, k)?;
    // H⁻¹ = L⁻ᵀ·L⁻¹, column by column from L·y = e_c, Lᵀ·x = y.
    let columns: Vec<Vec<f64>> = (0..k)
        .into_par_iter()
        .map(|c| {
            let mut y = vec![0f64; k];
            for i in c..k {
                let s: f64 = (c..i).map(|t| l[i * k + t] * y[t]).sum();
                y[i] = (f64::from(u8::from(i == c)) - s) / l[i * k + i];
            }
            let mut x = vec![0f64; k];
            for i in (0..k).rev() {
                let s: f64 = (i + 1..k).map(|t| l[t * k + i] * x[t]).sum();
                x[i] = (y[i] - s) / l[i * k + i];
            }
            x
        })
        .collect();
    let mut inverse = vec![0f64; k * k];
    for (c, column) in columns.iter().enumerate() {
        for (r, &v) in column.iter().enumerate() {
            inverse[r * k + c] = v;
        }
    }
    // Upper factor of H⁻¹: the transpose of its lower Cholesky factor.
    let lower = cholesky_lower(&inverse, k)?;
    let mut upper = vec![0f64; k * k];
    for r in 0..k {
        for c in 0..=r {
            upper[c * k + r] = lower[r * k + c];
        }
    }
    Some(upper)
}

/// `L` with `A = L·Lᵀ` (row-major, lower triangle), or `None` if `A` is not positive definite.
fn cholesky_lower(a: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s: f64 = (0..j).map(|t| l[i * k + t] * l[j * k + t]).sum();
            if i == j {
                let d = a[i * k + i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * k + i] = d.sqrt();
            } else {
                l[i * k + j] = (a[i * k + j] - s) / l[j * k + j];
            }
        }
    }
    Some(l)
}

/// Adds `Σ x·xᵀ` of `rows` (`[tokens, k]`, row-major) to `hessian` (`[k, k]`).
pub fn accumulate_hessian(hessian: &mut [f64], rows: &[f32], k: usize) {
    hessian
        .par_chunks_exact_mut(k)
        .enumerate()
        .for_each(|(a, h_row)| {
            for x in rows.chunks_exact(k) {
                let xa = f64::from(x[a]);
                if xa != 0.0 {
                    for (h, &xb) in h_row.iter_mut().zip(x) {
                        *h += xa * f64::from(xb);
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q4: GroupCode = GroupCode { bits: 4, group: 32 };

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// How many values `q4/32` storage changes (groups run down the columns).
    fn changed_by_storage(q: &[f32], k: usize, n: usize) -> usize {
        let code = Q4;
        let columns: Vec<f32> = (0..n)
            .flat_map(|j| (0..k).map(move |i| q[i * n + j]))
            .collect();
        let mut back = vec![0f32; k * n];
        code.decode_into(&code.encode(&columns), &mut back).unwrap();
        columns
            .iter()
            .zip(&back)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count()
    }

    /// Outputs on calibration-like inputs: GPTQ's error is well below rounding's, which is
    /// within half a grid step of every weight; storage keeps rounding's values exactly.
    #[test]
    fn gptq_moves_outputs_less_than_rounding() {
        let (k, n, tokens) = (64, 24, 400);
        let mut seed = 5;
        let w: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed) * 0.1).collect();
        // Correlated inputs: a few shared factors plus noise, one loud channel.
        let factors: Vec<f32> = (0..tokens * 4).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..tokens * k)
            .map(|t| {
                let (tok, i) = (t / k, t % k);
                let f = factors[tok * 4 + i % 4];
                (f + 0.3 * lcg(&mut seed)) * if i == 5 { 8.0 } else { 1.0 }
            })
            .collect();
        let mut h = vec![0f64; k * k];
        accumulate_hessian(&mut h, &x, k);
        let factor = InverseFactor::of(&h, k).unwrap();
        let (rtn, opt) = (round_to_nearest(Q4, &w, k, n), gptq(Q4, &w, k, n, &factor));
        assert_eq!(changed_by_storage(&rtn, k, n), 0);
        let output_error = |q: &[f32]| -> f64 {
            let mut total = 0f64;
            for row in x.chunks_exact(k) {
                for j in 0..n {
                    let exact: f64 = (0..k).map(|i| f64::from(row[i] * w[i * n + j])).sum();
                    let got: f64 = (0..k).map(|i| f64::from(row[i] * q[i * n + j])).sum();
                    total += (exact - got).powi(2);
                }
            }
            total
        };
        let (e_rtn, e_opt) = (output_error(&rtn), output_error(&opt));
        assert!(e_opt < 0.6 * e_rtn, "GPTQ {e_opt} vs rounding {e_rtn}");
        // Values span at most 0.2 per group: steps of 0.2 / 15, half of it away at most.
        for (i, (&q, &x)) in rtn.iter().zip(&w).enumerate() {
            assert!((q - x).abs() <= 0.2 / 30.0 * 1.02, "{i}");
        }
    }
}
