//! Self-attention, `softmax(Q·Kᵀ·scale + mask)·V`, head by head in registers (AVX-512),
//! for native encoding of long passages.
//!
//! tract plans attention as two f32 matmuls that first pack K, V and the whole
//! `[heads, sequence, sequence]` probability tensor, plus softmax and max passes over that
//! tensor. This kernel takes four query rows at a time against an L1-sized buffer: scores,
//! their softmax (one polynomial `exp`, normalised once per output row) and the weighted
//! sum of V, with no intermediate tensor. Another summation order and `exp` than tract's:
//! within f32 rounding of it, not bit-identical.

/// Whether the AVX-512 kernel runs here (natively on x86-64 CPUs with AVX-512F): elsewhere
/// the op's portable loops would not beat tract's kernels, so encoders leave attention to
/// tract ([`crate::model::F32Plan::for_this_target`]).
pub fn kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The shape of one attention call: `q`, `k`, `v` are `[batch, sequence, heads · head_dim]`
/// (heads side by side, as the projections write them), the additive mask `[mask_batch,
/// sequence]` with `mask_batch` 1 or `batch`, the output `[batch, sequence, heads,
/// head_dim]`.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub batch: usize,
    pub sequence: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub mask_batch: usize,
}

/// `out[b, i, h] = Σ_j softmax_j(q[b, i, h]·k[b, j, h]·scale + mask[b, j]) · v[b, j, h]`
/// for every batch item and head; the caller checked the slices' lengths against `shape`.
pub fn attention(
    shape: AttentionShape,
    (q, k, v): (&[f32], &[f32], &[f32]),
    mask: &[f32],
    scale: f32,
    out: &mut [f32],
) {
    let AttentionShape {
        batch,
        sequence,
        heads,
        head_dim,
        mask_batch,
    } = shape;
    let width = heads * head_dim;
    let mut scratch = Scratch::default();
    let rows = sequence * width;
    for b in 0..batch {
        let at = b * rows..(b + 1) * rows;
        let mask = &mask[if mask_batch == 1 { 0 } else { b * sequence }..][..sequence];
        for head in 0..heads {
            let head = HeadShape {
                sequence,
                width,
                offset: head * head_dim,
                dim: head_dim,
            };
            let inputs = (&q[at.clone()], &k[at.clone()], &v[at.clone()]);
            attend(
                head,
                inputs,
                mask,
                scale,
                &mut scratch,
                &mut out[at.clone()],
            );
        }
    }
}

/// Where one head lies in a `[sequence, width]` row-major matrix: columns
/// `offset..offset + dim`.
#[derive(Clone, Copy)]
struct HeadShape {
    sequence: usize,
    width: usize,
    offset: usize,
    dim: usize,
}

/// Buffers reused across heads: Kᵀ of one head (`[dim, keys]`, keys padded to a multiple of
/// 16), its V (`[sequence, dim]`), the mask padded like the keys, and four rows of scores.
#[derive(Default)]
struct Scratch {
    keys_t: Vec<f32>,
    values: Vec<f32>,
    mask: Vec<f32>,
    scores: Vec<f32>,
}

/// Query rows handled together (their scores share every load of Kᵀ and V).
const ROWS: usize = 4;
/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;

/// One head of one batch item: `out[i, head] = Σ_j softmax_j(q_i·k_j·scale + mask_j) · v_j`.
fn attend(
    shape: HeadShape,
    (q, k, v): (&[f32], &[f32], &[f32]),
    mask: &[f32],
    scale: f32,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let HeadShape {
        sequence,
        width,
        offset,
        dim,
    } = shape;
    let keys = sequence.div_ceil(LANES) * LANES;
    scratch.keys_t.clear();
    scratch.keys_t.resize(dim * keys, 0.0);
    for (j, row) in k.chunks_exact(width).enumerate() {
        for (d, &x) in row[offset..offset + dim].iter().enumerate() {
            scratch.keys_t[d * keys + j] = x;
        }
    }
    scratch.values.clear();
    for row in v.chunks_exact(width) {
        scratch.values.extend_from_slice(&row[offset..offset + dim]);
    }
    // Padded keys score −∞: their softmax weight is 0.
    scratch.mask.clear();
    scratch.mask.extend_from_slice(mask);
    scratch.mask.resize(keys, f32::NEG_INFINITY);
    scratch.scores.resize(ROWS * keys, 0.0);
    let head = HeadShape {
        sequence: keys,
        ..shape
    };
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    let simd = kernel_available() && dim.is_multiple_of(LANES);
    for first in (0..sequence).step_by(ROWS) {
        let rows = (sequence - first).min(ROWS);
        let q_rows = &q[first * width..(first + rows) * width];
        let out_rows = &mut out[first * width..(first + rows) * width];
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: AVX-512F is available (checked) and the buffers have the shapes
            // `avx512::attend_rows` documents.
            unsafe { avx512::attend_rows(head, rows, q_rows, scratch, scale, out_rows) };
            continue;
        }
        portable_attend_rows(head, rows, q_rows, scratch, scale, out_rows);
    }
}

/// [`avx512::attend_rows`] in plain loops (and the definition it follows): `rows` query
/// rows; `head.sequence` is the padded key count.
fn portable_attend_rows(
    head: HeadShape,
    rows: usize,
    q: &[f32],
    scratch: &mut Scratch,
    scale: f32,
    out: &mut [f32],
) {
    let HeadShape {
        sequence: keys,
        width,
        offset,
        dim,
    } = head;
    let real_keys = scratch.values.len() / dim;
    for r in 0..rows {
        let q = &q[r * width + offset..][..dim];
        let scores = &mut scratch.scores[r * keys..][..keys];
        for (j, s) in scores.iter_mut().enumerate() {
            let dot: f32 = (0..dim).map(|d| q[d] * scratch.keys_t[d * keys + j]).sum();
            *s = dot * scale + scratch.mask[j];
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let out = &mut out[r * width + offset..][..dim];
        out.fill(0.0);
        for (j, &p) in scores[..real_keys].iter().enumerate() {
            for (o, &x) in out.iter_mut().zip(&scratch.values[j * dim..][..dim]) {
                *o += p * x;
            }
        }
        out.iter_mut().for_each(|o| *o /= sum);
    }
}

// Register tiles read clearest indexed by row and column.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{HeadShape, Scratch, LANES, ROWS};
    use std::arch::x86_64::*;

    /// `rows` (≤ [`ROWS`]) query rows of one head: scores against every (padded) key, their
    /// softmax, and the weighted sum of V into `out`.
    ///
    /// # Safety
    /// AVX-512F must be available; `head.sequence` (the padded key count) a multiple of 16,
    /// `head.dim` too; `scratch` filled by [`super::attend`]; `q` and `out` hold `rows` rows
    /// of `head.width`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend_rows(
        head: HeadShape,
        rows: usize,
        q: &[f32],
        scratch: &mut Scratch,
        scale: f32,
        out: &mut [f32],
    ) {
        match rows {
            1 => rows_of::<1>(head, q, scratch, scale, out),
            2 => rows_of::<2>(head, q, scratch, scale, out),
            3 => rows_of::<3>(head, q, scratch, scale, out),
            _ => rows_of::<ROWS>(head, q, scratch, scale, out),
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn rows_of<const R: usize>(
        head: HeadShape,
        q: &[f32],
        scratch: &mut Scratch,
        scale: f32,
        out: &mut [f32],
    ) {
        let HeadShape {
            sequence: keys,
            width,
            offset,
            dim,
        } = head;
        let q_rows: [*const f32; R] = std::array::from_fn(|r| q[r * width + offset..].as_ptr());
        let keys_t = scratch.keys_t.as_ptr();
        let mask = scratch.mask.as_ptr();
        let scores = scratch.scores.as_mut_ptr();
        let mut max = [_mm512_set1_ps(f32::NEG_INFINITY); R];
        let mut j = 0;
        while j + 4 * LANES <= keys {
            scores_block::<R, 4>(q_rows, keys_t, keys, dim, j, mask, scale, scores, &mut max);
            j += 4 * LANES;
        }
        while j < keys {
            scores_block::<R, 1>(q_rows, keys_t, keys, dim, j, mask, scale, scores, &mut max);
            j += LANES;
        }
        let mut inverse_sums = [0f32; R];
        for (r, inverse) in inverse_sums.iter_mut().enumerate() {
            let row_max = _mm512_set1_ps(_mm512_reduce_max_ps(max[r]));
            let mut sum = _mm512_setzero_ps();
            let row = scores.add(r * keys);
            for j in (0..keys).step_by(LANES) {
                let e = exp(_mm512_sub_ps(_mm512_loadu_ps(row.add(j)), row_max));
                _mm512_storeu_ps(row.add(j), e);
                sum = _mm512_add_ps(sum, e);
            }
            *inverse = 1.0 / _mm512_reduce_add_ps(sum);
        }
        let real_keys = scratch.values.len() / dim;
        let values = scratch.values.as_ptr();
        let mut d = 0;
        while d + 4 * LANES <= dim {
            weighted_sum::<R, 4>(
                scores,
                keys,
                values,
                real_keys,
                dim,
                d,
                inverse_sums,
                out,
                head,
            );
            d += 4 * LANES;
        }
        while d < dim {
            weighted_sum::<R, 1>(
                scores,
                keys,
                values,
                real_keys,
                dim,
                d,
                inverse_sums,
                out,
                head,
            );
            d += LANES;
        }
    }

    /// Scores of `R` rows against keys `j..j + 16·C`: `q·k·scale + mask`, stored in the
    /// scores buffer, with each row's running maximum.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn scores_block<const R: usize, const C: usize>(
        q_rows: [*const f32; R],
        keys_t: *const f32,
        keys: usize,
        dim: usize,
        j: usize,
        mask: *const f32,
        scale: f32,
        scores: *mut f32,
        max: &mut [__m512; R],
    ) {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        for d in 0..dim {
            let k: [__m512; C] =
                std::array::from_fn(|c| _mm512_loadu_ps(keys_t.add(d * keys + j + c * LANES)));
            for r in 0..R {
                let q = _mm512_set1_ps(*q_rows[r].add(d));
                for c in 0..C {
                    acc[r][c] = _mm512_fmadd_ps(q, k[c], acc[r][c]);
                }
            }
        }
        let scale = _mm512_set1_ps(scale);
        for r in 0..R {
            for c in 0..C {
                let m = _mm512_loadu_ps(mask.add(j + c * LANES));
                let s = _mm512_fmadd_ps(acc[r][c], scale, m);
                _mm512_storeu_ps(scores.add(r * keys + j + c * LANES), s);
                max[r] = _mm512_max_ps(max[r], s);
            }
        }
    }

    /// `out[r, d..d + 16·C] = Σ_j p[r, j] · v[j, d..] / Σ_j p[r, j]` over the real keys.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn weighted_sum<const R: usize, const C: usize>(
        probabilities: *const f32,
        keys: usize,
        values: *const f32,
        real_keys: usize,
        dim: usize,
        d: usize,
        inverse_sums: [f32; R],
        out: &mut [f32],
        head: HeadShape,
    ) {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        for j in 0..real_keys {
            let v: [__m512; C] =
                std::array::from_fn(|c| _mm512_loadu_ps(values.add(j * dim + d + c * LANES)));
            for r in 0..R {
                let p = _mm512_set1_ps(*probabilities.add(r * keys + j));
                for c in 0..C {
                    acc[r][c] = _mm512_fmadd_ps(p, v[c], acc[r][c]);
                }
            }
        }
        for r in 0..R {
            let inverse = _mm512_set1_ps(inverse_sums[r]);
            let row = out[r * head.width + head.offset + d..][..C * LANES].as_mut_ptr();
            for c in 0..C {
                _mm512_storeu_ps(row.add(c * LANES), _mm512_mul_ps(acc[r][c], inverse));
            }
        }
    }

    /// `eˣ` for `x ≤ 0` (Cephes' `expf` polynomial, within 2 ulp; `−∞` and anything below
    /// −104 give 0): `x = n·ln 2 + r`, `eˣ = 2ⁿ·eʳ`.
    #[target_feature(enable = "avx512f")]
    fn exp(x: __m512) -> __m512 {
        // max(−104, x): the operand order keeps a NaN (AVX-512 returns the second on NaN).
        let x = _mm512_max_ps(_mm512_set1_ps(-104.0), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let e = _mm512_fmadd_ps(
            p,
            _mm512_mul_ps(r, r),
            _mm512_add_ps(r, _mm512_set1_ps(1.0)),
        );
        _mm512_scalef_ps(e, n)
    }
}
