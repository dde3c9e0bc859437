//! Linear weights quantized for the query bundle, on one of two lattices:
//!
//! - **per column** ([`WeightGrid::Columns`], the default): one symmetric grid per output
//!   column, `scale · c` for `c` in `-levels..=levels`, which are exactly the int8 codes
//!   and column scales the int8 plan computes with. The bundle stores them as they are
//!   (deflated: codes are bell-shaped, so their entropy, not their width, is what a visitor
//!   downloads — fewer levels, fewer bytes), and a browser packs them without rounding again.
//! - **in groups** ([`WeightGrid::Groups`]): 4 bits per weight in groups of 32 inputs, each
//!   with an f16 scale and minimum, exactly the storage ([`GroupCode`]) keeps; expanded at
//!   load and quantized again per column to 7 bits.
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
use crate::ops::int8_per_token::MAX_CODE;

/// Quantized weights by layer name (e.g. `layer.0.attention.q`).
pub type QuantizedWeights = std::collections::HashMap<String, GridWeights>;

/// The lattice a query bundle's linear weights are quantized onto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGrid {
    /// Per output column, `-levels..=levels` times the column's scale (at most 63: the 7-bit
    /// codes every int8 kernel build runs).
    Columns { levels: u8 },
    /// Group codes, expanded at load.
    Groups(GroupCode),
}

impl WeightGrid {
    /// The most levels a column grid may have: the int8 plan's 7-bit codes.
    pub const MAX_LEVELS: u8 = MAX_CODE.unsigned_abs();
}

/// As `dotfind prepare --query-weights` reads it: `columns:<levels>` (1 to 63) or a group
/// code such as `q4/32`.
impl std::str::FromStr for WeightGrid {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(levels) = s.strip_prefix("columns:") {
            return match levels.parse::<u8>() {
                Ok(l) if (1..=Self::MAX_LEVELS).contains(&l) => {
                    Ok(WeightGrid::Columns { levels: l })
                }
                _ => Err(format!(
                    "`{s}`: a column grid has 1 to {} levels a side",
                    Self::MAX_LEVELS
                )),
            };
        }
        match s.parse::<crate::model::storage::ValueEncoding>() {
            Ok(crate::model::storage::ValueEncoding::Groups(code)) => Ok(WeightGrid::Groups(code)),
            _ => Err(format!(
                "`{s}`: linear weights go on per-column grids (`columns:<levels>`, e.g. \
                 columns:21) or group codes (e.g. q4/32)"
            )),
        }
    }
}

impl std::fmt::Display for WeightGrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightGrid::Columns { levels } => write!(f, "columns:{levels}"),
            WeightGrid::Groups(code) => {
                write!(f, "{}", crate::model::storage::ValueEncoding::Groups(*code))
            }
        }
    }
}

/// A layer's weights on their grids: the values the graph computes with (row-major
/// `[k, n]`, in f32 as decoding yields them), and how the bundle stores them — the grids
/// chosen here, not ones derived again from the values, which would differ wherever a
/// group's codes do not reach both ends, or a column's scale was narrowed to clip it.
#[derive(Debug, Clone, PartialEq)]
pub struct GridWeights {
    pub values: Vec<f32>,
    pub stored: StoredWeights,
}

/// The stored form of a layer's weights.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredWeights {
    /// [`GroupCode`] bytes, column by column, as the graph writer orders a matrix.
    Groups(Vec<u8>),
    /// Row-major `[k, n]` int8 codes and one scale per column (`w = code · scale`).
    Columns { codes: Vec<i8>, scales: Vec<f32> },
}

/// GPTQ's damping, as a fraction of the Hessian's mean diagonal.
const DAMPING: f64 = 0.01;
/// Ranges tried per group, from its full range down to `1 − MAX_SHRINK` of it: clipping a
/// group's outliers often costs them less than coarser steps cost every other weight.
const SHRINK_STEPS: u32 = 20;
const MAX_SHRINK: f64 = 0.25;

/// One group's grid, `min + scale · c` for `c` in `0..=top`, with scale and minimum the f16
/// values storage keeps.
#[derive(Clone, Copy)]
struct Grid {
    min: f16,
    scale: f16,
    top: f64,
}

impl Grid {
    /// The grid spanning `lo..=hi` as [`GroupCode`] derives one.
    fn spanning(top: f64, lo: f64, hi: f64) -> Self {
        let min = f16::from_f64(lo);
        let scale = f16::from_f64((hi - min.to_f64()) / top);
        Grid { min, scale, top }
    }

    /// The `bits`-bit grid with the least squared error over `u`: the full range, or a
    /// narrower one around its middle.
    fn over(bits: u32, u: &[f64]) -> Self {
        let top = f64::from((1u32 << bits) - 1);
        let (lo, hi) = u
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let mid = (lo + hi) / 2.0;
        let error = |g: Grid| -> f64 { u.iter().map(|&x| (x - g.value(g.code(x))).powi(2)).sum() };
        least_error(shrinks().map(|p| {
            let g = Grid::spanning(top, mid - p * (mid - lo), mid + p * (hi - mid));
            (error(g), g)
        }))
        .unwrap_or(Grid::spanning(top, lo, hi))
    }

    /// The code nearest to `u`.
    fn code(self, u: f64) -> u8 {
        let scale = self.scale.to_f64();
        if scale <= 0.0 {
            return 0;
        }
        ((u - self.min.to_f64()) / scale)
            .round()
            .clamp(0.0, self.top) as u8
    }

    /// A code's value, computed in f32 as decoding does.
    fn value(self, code: u8) -> f64 {
        f64::from(f32::from(code) * self.scale.to_f32() + self.min.to_f32())
    }
}

/// A layer's codes as quantization fills them in, input by input.
trait Lattice {
    /// Called before input `i`'s weights are quantized, with the working weights
    /// (row-major `[k, n]`, as earlier inputs' errors left them).
    fn start_input(&mut self, i: usize, work: &[f64]);
    /// Quantizes weight `(i, j)`; returns its value.
    fn quantize(&mut self, i: usize, j: usize, u: f64) -> f64;
    fn finish(self: Box<Self>) -> GridWeights;
}

/// The lattice of `grid` for the `[k, n]` weights `w`.
fn lattice(grid: WeightGrid, w: &[f32], k: usize, n: usize) -> Box<dyn Lattice> {
    match grid {
        WeightGrid::Columns { levels } => Box::new(ColumnCodes::new(levels, w, k, n)),
        WeightGrid::Groups(code) => Box::new(GroupCodes::new(code, k, n)),
    }
}

/// Group codes and their grids.
struct GroupCodes {
    code: GroupCode,
    k: usize,
    n: usize,
    /// Row-major `[k, n]`.
    codes: Vec<u8>,
    /// Per group of inputs and output column: `[k / group, n]`.
    grids: Vec<Grid>,
}

impl GroupCodes {
    fn new(code: GroupCode, k: usize, n: usize) -> Self {
        let top = f64::from((1u32 << code.bits) - 1);
        let empty = Grid::spanning(top, 0.0, 0.0);
        GroupCodes {
            code,
            k,
            n,
            codes: vec![0; k * n],
            grids: vec![empty; k / code.group * n],
        }
    }
}

impl Lattice for GroupCodes {
    /// Each group's grid from its weights as the earlier errors left them.
    fn start_input(&mut self, i: usize, work: &[f64]) {
        if i.is_multiple_of(self.code.group) {
            for j in 0..self.n {
                let u: Vec<f64> = (i..i + self.code.group)
                    .map(|r| work[r * self.n + j])
                    .collect();
                self.grids[i / self.code.group * self.n + j] = Grid::over(self.code.bits, &u);
            }
        }
    }

    fn quantize(&mut self, i: usize, j: usize, u: f64) -> f64 {
        let grid = self.grids[i / self.code.group * self.n + j];
        let c = grid.code(u);
        self.codes[i * self.n + j] = c;
        grid.value(c)
    }

    fn finish(self: Box<Self>) -> GridWeights {
        let GroupCodes {
            code,
            k,
            n,
            codes,
            grids,
        } = *self;
        let groups = k / code.group;
        let mut values = vec![0f32; k * n];
        for (i, row) in codes.chunks_exact(n).enumerate() {
            for (j, &c) in row.iter().enumerate() {
                values[i * n + j] = grids[i / code.group * n + j].value(c) as f32;
            }
        }
        let mut stored = Vec::with_capacity(groups * n * code.group_bytes());
        for j in 0..n {
            for g in 0..groups {
                let grid = grids[g * n + j];
                stored.extend_from_slice(&grid.scale.to_le_bytes());
                stored.extend_from_slice(&grid.min.to_le_bytes());
                let column = (g * code.group..(g + 1) * code.group).map(|i| codes[i * n + j]);
                match code.bits {
                    4 => {
                        let column: Vec<u8> = column.collect();
                        stored.extend(column.chunks_exact(2).map(|p| p[0] | p[1] << 4));
                    }
                    _ => stored.extend(column),
                }
            }
        }
        GridWeights {
            values,
            stored: StoredWeights::Groups(stored),
        }
    }
}

/// Per-column codes: each column's scale fixed up front from its original weights (GPTQ's
/// errors then land on a grid that does not move), the one of the ranges tried that
/// rounds the column with the least squared error.
struct ColumnCodes {
    levels: i8,
    n: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

impl ColumnCodes {
    fn new(levels: u8, w: &[f32], k: usize, n: usize) -> Self {
        let levels = levels.clamp(1, WeightGrid::MAX_LEVELS) as i8;
        let scales = (0..n)
            .into_par_iter()
            .map(|j| {
                let u: Vec<f64> = (0..k).map(|i| f64::from(w[i * n + j])).collect();
                column_scale(levels, &u)
            })
            .collect();
        ColumnCodes {
            levels,
            n,
            codes: vec![0; k * n],
            scales,
        }
    }
}

/// The scale of the symmetric `levels` grid with the least squared error over `u`: its
/// largest magnitude over `levels`, or a narrower range (clipping a column's outliers
/// often costs them less than coarser steps cost every other weight); 1 for a zero column.
fn column_scale(levels: i8, u: &[f64]) -> f32 {
    let peak = u.iter().fold(0f64, |m, &x| m.max(x.abs()));
    if peak <= 0.0 {
        return 1.0;
    }
    let error = |scale: f32| -> f64 {
        u.iter()
            .map(|&x| (x - column_value(column_code(levels, scale, x), scale)).powi(2))
            .sum()
    };
    least_error(
        shrinks()
            .map(|p| (p * peak / f64::from(levels)) as f32)
            .filter(|&scale| scale > 0.0)
            .map(|scale| (error(scale), scale)),
    )
    .unwrap_or(1.0)
}

/// The fractions of a range tried: 1 down to `1 − MAX_SHRINK`, in `SHRINK_STEPS` steps.
fn shrinks() -> impl Iterator<Item = f64> {
    (0..=SHRINK_STEPS).map(|s| 1.0 - MAX_SHRINK * f64::from(s) / f64::from(SHRINK_STEPS))
}

/// The candidate of least error, the first of equals (the widest range tried).
fn least_error<T>(candidates: impl Iterator<Item = (f64, T)>) -> Option<T> {
    candidates
        .fold(None, |best: Option<(f64, T)>, (e, c)| match best {
            Some((b, _)) if b <= e => best,
            _ => Some((e, c)),
        })
        .map(|(_, c)| c)
}

fn column_code(levels: i8, scale: f32, u: f64) -> i8 {
    let l = f64::from(levels);
    (u / f64::from(scale)).round().clamp(-l, l) as i8
}

/// A code's value, computed in f32 as the graph's `Cast · Mul` does.
fn column_value(code: i8, scale: f32) -> f64 {
    f64::from(f32::from(code) * scale)
}

impl Lattice for ColumnCodes {
    fn start_input(&mut self, _: usize, _: &[f64]) {}

    fn quantize(&mut self, i: usize, j: usize, u: f64) -> f64 {
        let c = column_code(self.levels, self.scales[j], u);
        self.codes[i * self.n + j] = c;
        column_value(c, self.scales[j])
    }

    fn finish(self: Box<Self>) -> GridWeights {
        let ColumnCodes {
            n, codes, scales, ..
        } = *self;
        let values = codes
            .iter()
            .enumerate()
            .map(|(at, &c)| column_value(c, scales[at % n]) as f32)
            .collect();
        GridWeights {
            values,
            stored: StoredWeights::Columns { codes, scales },
        }
    }
}

/// Rounds `w` (`[k, n]` row-major; for group codes `k` a multiple of the group) to the
/// nearest values of `grid`.
pub fn round_to_nearest(grid: WeightGrid, w: &[f32], k: usize, n: usize) -> GridWeights {
    let work: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
    let mut codes = lattice(grid, w, k, n);
    for i in 0..k {
        codes.start_input(i, &work);
        for j in 0..n {
            codes.quantize(i, j, work[i * n + j]);
        }
    }
    codes.finish()
}

/// GPTQ onto `grid`, with `factor` from [`InverseFactor::for_grid`] the layer's input
/// Hessian, inputs taken in the factor's order.
pub fn gptq(
    grid: WeightGrid,
    w: &[f32],
    k: usize,
    n: usize,
    factor: &InverseFactor,
) -> GridWeights {
    let InverseFactor { upper: u, order } = factor;
    debug_assert_eq!((u.len(), order.len()), (k * k, k));
    // Working copy; rows are inputs, in the order they are quantized.
    let mut work: Vec<f64> = order
        .iter()
        .flat_map(|&r| w[r * n..(r + 1) * n].iter().map(|&x| f64::from(x)))
        .collect();
    let mut codes = lattice(grid, w, k, n);
    let mut error = vec![0f64; n];
    for (p, &i) in order.iter().enumerate() {
        // Group grids take inputs in order (`i == p`); column grids ignore this.
        codes.start_input(i, &work);
        let d = u[p * k + p];
        let (row, rest) = work[p * n..].split_at_mut(n);
        for j in 0..n {
            let v = codes.quantize(i, j, row[j]);
            error[j] = (row[j] - v) / d;
        }
        // Spread this input's error over the inputs still to quantize.
        rest.par_chunks_exact_mut(n)
            .enumerate()
            .for_each(|(r, later)| {
                let f = u[p * k + p + 1 + r];
                for (x, e) in later.iter_mut().zip(&error) {
                    *x -= f * e;
                }
            });
    }
    codes.finish()
}

/// The upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = Uᵀ·U`), `H` damped and its inputs in the
/// order GPTQ takes them, as GPTQ uses it: made once per Hessian (the attention's q, k and v
/// share one).
pub struct InverseFactor {
    upper: Vec<f64>,
    /// Inputs in the order they are quantized.
    order: Vec<usize>,
}

impl InverseFactor {
    /// The factor of `hessian` (`[k, k]` sum of `x·xᵀ` over calibration tokens, row-major)
    /// for quantizing onto `grid`, or `None` if it is not positive definite even damped.
    /// Column grids take inputs loudest first; group grids in order, since a group's grid
    /// is made from its inputs' weights as the errors before them left them.
    pub fn for_grid(hessian: &[f64], k: usize, grid: WeightGrid) -> Option<Self> {
        Self::of(hessian, k, matches!(grid, WeightGrid::Columns { .. }))
    }

    /// With `loudest_first`, inputs are quantized by decreasing `H` diagonal (GPTQ's "act
    /// order"): the inputs whose errors cost most are rounded while most others are left to
    /// absorb them.
    fn of(hessian: &[f64], k: usize, loudest_first: bool) -> Option<Self> {
        let mut order: Vec<usize> = (0..k).collect();
        if loudest_first {
            order.sort_by(|&a, &b| hessian[b * k + b].total_cmp(&hessian[a * k + a]));
        }
        let permuted: Vec<f64> = order
            .iter()
            .flat_map(|&a| order.iter().map(move |&b| hessian[a * k + b]))
            .collect();
        let upper = inverse_cholesky_upper(&permuted, k)?;
        Some(InverseFactor { upper, order })
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

    /// The stored bytes decode to exactly the values, column by column; returns how many
    /// values encoding them again would change (groups whose codes miss an end).
    fn check_stored(q: &GridWeights, k: usize, n: usize) -> usize {
        let columns: Vec<f32> = (0..n)
            .flat_map(|j| (0..k).map(move |i| q.values[i * n + j]))
            .collect();
        let mut back = vec![0f32; k * n];
        let StoredWeights::Groups(stored) = &q.stored else {
            panic!("group codes stored as columns")
        };
        Q4.decode_into(stored, &mut back).unwrap();
        assert!(columns
            .iter()
            .zip(&back)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        Q4.decode_into(&Q4.encode(&columns), &mut back).unwrap();
        columns
            .iter()
            .zip(&back)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count()
    }

    /// Weights `[k, n]`, calibration-like inputs `[tokens, k]` (a few shared factors plus
    /// noise, one loud channel) and their Hessian's factor.
    fn calibrated(k: usize, n: usize, tokens: usize) -> (Vec<f32>, Vec<f32>, InverseFactor) {
        let mut seed = 5;
        let w: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed) * 0.1).collect();
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
        let factor = InverseFactor::of(&h, k, false).unwrap();
        (w, x, factor)
    }

    /// Squared error of the outputs `x·q` against `x·w`.
    fn output_error(w: &[f32], x: &[f32], q: &[f32], k: usize, n: usize) -> f64 {
        let mut total = 0f64;
        for row in x.chunks_exact(k) {
            for j in 0..n {
                let exact: f64 = (0..k).map(|i| f64::from(row[i] * w[i * n + j])).sum();
                let got: f64 = (0..k).map(|i| f64::from(row[i] * q[i * n + j])).sum();
                total += (exact - got).powi(2);
            }
        }
        total
    }

    /// Outputs on calibration-like inputs: GPTQ's error is well below rounding's, which is
    /// within a grid step of every weight; both are stored exactly as chosen.
    #[test]
    fn gptq_moves_outputs_less_than_rounding() {
        let (k, n) = (64, 24);
        let (w, x, factor) = calibrated(k, n, 400);
        let grid = WeightGrid::Groups(Q4);
        let (rtn, opt) = (
            round_to_nearest(grid, &w, k, n),
            gptq(grid, &w, k, n, &factor),
        );
        check_stored(&rtn, k, n);
        check_stored(&opt, k, n);
        let (e_rtn, e_opt) = (
            output_error(&w, &x, &rtn.values, k, n),
            output_error(&w, &x, &opt.values, k, n),
        );
        assert!(e_opt < 0.6 * e_rtn, "GPTQ {e_opt} vs rounding {e_rtn}");
        // Values span at most 0.2 per group, so grid steps are at most 0.2 / 15; a clipped
        // outlier is off by at most a quarter of the range plus half a step.
        for (i, (&q, &x)) in rtn.values.iter().zip(&w).enumerate() {
            assert!((q - x).abs() <= 0.2 * (0.125 + 1.0 / 30.0) * 1.02, "{i}");
        }
    }

    /// The same on per-column grids, whose stored codes are the int8 plan's: within
    /// `±levels`, one scale per column, values exactly `code · scale` in f32.
    #[test]
    fn column_gptq_moves_outputs_less_than_rounding_on_the_codes_it_stores() {
        let (k, n, levels) = (64, 24, 15);
        let (w, x, factor) = calibrated(k, n, 400);
        let grid = WeightGrid::Columns { levels };
        let (rtn, opt) = (
            round_to_nearest(grid, &w, k, n),
            gptq(grid, &w, k, n, &factor),
        );
        for q in [&rtn, &opt] {
            let StoredWeights::Columns { codes, scales } = &q.stored else {
                panic!("column codes stored as groups")
            };
            assert_eq!((codes.len(), scales.len()), (k * n, n));
            assert!(codes.iter().all(|&c| c.unsigned_abs() <= levels));
            for (at, (&c, &v)) in codes.iter().zip(&q.values).enumerate() {
                assert_eq!((f32::from(c) * scales[at % n]).to_bits(), v.to_bits());
            }
        }
        let (e_rtn, e_opt) = (
            output_error(&w, &x, &rtn.values, k, n),
            output_error(&w, &x, &opt.values, k, n),
        );
        assert!(e_opt < 0.6 * e_rtn, "GPTQ {e_opt} vs rounding {e_rtn}");
        // |w| ≤ 0.1, so steps are at most 0.1 / 15; a clipped outlier is off by at most a
        // quarter of its column's peak plus half a step.
        for (i, (&q, &x)) in rtn.values.iter().zip(&w).enumerate() {
            assert!((q - x).abs() <= 0.1 * (0.25 + 0.5 / 15.0) * 1.02, "{i}");
        }
    }

    /// `--query-weights` reads what it prints, and names what it refuses.
    #[test]
    fn weight_grids_read_as_written() {
        for text in ["columns:21", "columns:63", "columns:1", "q4/32"] {
            let grid: WeightGrid = text.parse().unwrap();
            assert_eq!(grid.to_string(), text);
        }
        assert_eq!(
            "columns:64".parse::<WeightGrid>().unwrap_err(),
            "`columns:64`: a column grid has 1 to 63 levels a side"
        );
        assert_eq!(
            "f16".parse::<WeightGrid>().unwrap_err(),
            "`f16`: linear weights go on per-column grids (`columns:<levels>`, e.g. \
             columns:21) or group codes (e.g. q4/32)"
        );
    }

    /// A column's scale reaches its peak when nothing is worth clipping, narrows for one
    /// outlier, and a zero column keeps a unit scale and zero codes.
    #[test]
    fn column_scales_clip_outliers_when_that_costs_less() {
        let even: Vec<f64> = (-7..=7).map(|i| f64::from(i) * 0.01).collect();
        assert_eq!(column_scale(7, &even), 0.01);
        let mut outlier: Vec<f64> = (0..64).map(|i| f64::from(i % 5 - 2) * 0.01).collect();
        outlier[9] = 0.2;
        assert!(column_scale(7, &outlier) < (0.2 / 7.0) as f32);
        let q = round_to_nearest(WeightGrid::Columns { levels: 7 }, &[0.0; 6], 3, 2);
        assert_eq!(
            q.stored,
            StoredWeights::Columns {
                codes: vec![0; 6],
                scales: vec![1.0, 1.0]
            }
        );
    }

    /// The range search never does worse than the full range, and does better on a group
    /// with one outlier.
    #[test]
    fn grids_clip_outliers_when_that_costs_less() {
        let error = |g: Grid, u: &[f64]| -> f64 {
            u.iter().map(|&x| (x - g.value(g.code(x))).powi(2)).sum()
        };
        let full = |u: &[f64]| {
            let (lo, hi) = u
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            Grid::spanning(15.0, lo, hi)
        };
        let mut u: Vec<f64> = (0..32).map(|i| f64::from(i % 8) * 0.01).collect();
        assert!(error(Grid::over(4, &u), &u) <= error(full(&u), &u));
        u[3] = 0.2;
        assert!(error(Grid::over(4, &u), &u) < error(full(&u), &u));
    }
}
