//! Self-attention, `softmax(Q·Kᵀ·scale + mask)·V`, head by head in registers (AVX-512, or
//! AVX2 with FMA), for native encoding of long passages.
//!
//! tract plans attention as two f32 matmuls that first pack K, V and the whole
//! `[heads, sequence, sequence]` probability tensor, plus softmax and max passes over that
//! tensor. This kernel takes four query rows at a time against an L1-sized buffer: scores,
//! their softmax (one polynomial `exp`, normalised once per output row) and the weighted
//! sum of V, with no intermediate tensor. Another summation order and `exp` than tract's:
//! within f32 rounding of it, not bit-identical.

/// Whether a SIMD kernel runs here (natively on x86-64 CPUs with AVX-512F, or AVX2 and
/// FMA): elsewhere the op's portable loops would not beat tract's kernels, so encoders leave
/// attention to tract ([`crate::model::F32Plan::for_this_target`]).
pub fn kernel_available() -> bool {
    simd_kernel().is_some()
}

/// The instruction set the kernel runs in here, the widest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
}

fn simd_kernel() -> Option<Isa> {
    [Isa::Avx512, Isa::Avx2]
        .into_iter()
        .find(|&isa| isa.available())
}

impl Isa {
    fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Isa::Avx512 => has!("avx512f"),
                Isa::Avx2 => has!("avx2") && has!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
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
    qkv: (&[f32], &[f32], &[f32]),
    mask: &[f32],
    scale: f32,
    out: &mut [f32],
) {
    attention_in(simd_kernel(), shape, qkv, mask, scale, out)
}

/// [`attention`] in `isa` (available here), or in plain loops.
fn attention_in(
    isa: Option<Isa>,
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
                isa,
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
/// Keys are padded, and head widths must be a multiple of, 16: one AVX-512 register of f32,
/// two of AVX2.
const LANES: usize = 16;

/// One head of one batch item: `out[i, head] = Σ_j softmax_j(q_i·k_j·scale + mask_j) · v_j`.
fn attend(
    isa: Option<Isa>,
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
    let isa = isa.filter(|_| dim.is_multiple_of(LANES));
    for first in (0..sequence).step_by(ROWS) {
        let rows = (sequence - first).min(ROWS);
        let q_rows = &q[first * width..(first + rows) * width];
        let out_rows = &mut out[first * width..(first + rows) * width];
        attend_rows(isa, head, rows, q_rows, scratch, scale, out_rows);
    }
}

/// `rows` query rows of one head in `isa` (checked available), else in plain loops.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn attend_rows(
    isa: Option<Isa>,
    head: HeadShape,
    rows: usize,
    q: &[f32],
    scratch: &mut Scratch,
    scale: f32,
    out: &mut [f32],
) {
    // SAFETY (both): the CPU has the instruction set (`simd_kernel`), and the buffers have
    // the shapes `simd::attend_rows` documents (`attend` padded them; `dim` is a multiple of
    // 16).
    #[cfg(target_arch = "x86_64")]
    match isa {
        Some(Isa::Avx512) => return unsafe { simd::avx512(head, rows, q, scratch, scale, out) },
        Some(Isa::Avx2) => return unsafe { simd::avx2(head, rows, q, scratch, scale, out) },
        None => {}
    }
    portable_attend_rows(head, rows, q, scratch, scale, out);
}

/// The SIMD kernels in plain loops (and the definition they follow): `rows` query rows;
/// `head.sequence` is the padded key count.
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
mod simd {
    use super::{HeadShape, Scratch, ROWS};
    use crate::kernels::lanes::{Avx2, Avx512, Lanes};

    /// [`attend_rows`] in AVX-512.
    ///
    /// # Safety
    /// AVX-512F must be available; otherwise as [`attend_rows`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(
        head: HeadShape,
        rows: usize,
        q: &[f32],
        scratch: &mut Scratch,
        scale: f32,
        out: &mut [f32],
    ) {
        attend_rows::<Avx512>(head, rows, q, scratch, scale, out)
    }

    /// [`attend_rows`] in AVX2 with FMA.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; otherwise as [`attend_rows`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(
        head: HeadShape,
        rows: usize,
        q: &[f32],
        scratch: &mut Scratch,
        scale: f32,
        out: &mut [f32],
    ) {
        attend_rows::<Avx2>(head, rows, q, scratch, scale, out)
    }

    /// `rows` (≤ [`ROWS`]) query rows of one head: scores against every (padded) key, their
    /// softmax, and the weighted sum of V into `out`.
    ///
    /// # Safety
    /// `S`'s instruction set must be available; `head.sequence` (the padded key count) a
    /// multiple of 16, `head.dim` too; `scratch` filled by [`super::attend`]; `q` and `out`
    /// hold `rows` rows of `head.width`.
    #[inline(always)]
    unsafe fn attend_rows<S: Lanes>(
        head: HeadShape,
        rows: usize,
        q: &[f32],
        scratch: &mut Scratch,
        scale: f32,
        out: &mut [f32],
    ) {
        match rows {
            1 => rows_of::<S, 1>(head, q, scratch, scale, out),
            2 => rows_of::<S, 2>(head, q, scratch, scale, out),
            3 => rows_of::<S, 3>(head, q, scratch, scale, out),
            _ => rows_of::<S, ROWS>(head, q, scratch, scale, out),
        }
    }

    #[inline(always)]
    unsafe fn rows_of<S: Lanes, const R: usize>(
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
        let mut q_rows = [q.as_ptr(); R];
        for (r, row) in q_rows.iter_mut().enumerate() {
            *row = q[r * width + offset..].as_ptr();
        }
        let keys_t = scratch.keys_t.as_ptr();
        let mask = scratch.mask.as_ptr();
        let scores = scratch.scores.as_mut_ptr();
        let mut max = [S::splat(f32::NEG_INFINITY); R];
        let mut j = 0;
        // `BLOCK` is a constant of each instruction set: one branch is compiled.
        while j + S::BLOCK * S::N <= keys {
            if S::BLOCK == 4 {
                scores_block::<S, R, 4>(
                    q_rows, keys_t, keys, dim, j, mask, scale, scores, &mut max,
                );
            } else {
                scores_block::<S, R, 2>(
                    q_rows, keys_t, keys, dim, j, mask, scale, scores, &mut max,
                );
            }
            j += S::BLOCK * S::N;
        }
        while j < keys {
            scores_block::<S, R, 1>(q_rows, keys_t, keys, dim, j, mask, scale, scores, &mut max);
            j += S::N;
        }
        let mut inverse_sums = [0f32; R];
        for (r, inverse) in inverse_sums.iter_mut().enumerate() {
            let row_max = S::splat(S::reduce_max(max[r]));
            let mut sum = S::splat(0.0);
            let row = scores.add(r * keys);
            for j in (0..keys).step_by(S::N) {
                let e = S::exp(S::sub(S::load(row.add(j)), row_max));
                S::store(row.add(j), e);
                sum = S::add(sum, e);
            }
            *inverse = 1.0 / S::reduce_add(sum);
        }
        let real_keys = scratch.values.len() / dim;
        let values = scratch.values.as_ptr();
        let shape = (keys, real_keys, dim);
        let mut d = 0;
        while d + S::BLOCK * S::N <= dim {
            if S::BLOCK == 4 {
                weighted_sum::<S, R, 4>(scores, values, shape, d, inverse_sums, out, head);
            } else {
                weighted_sum::<S, R, 2>(scores, values, shape, d, inverse_sums, out, head);
            }
            d += S::BLOCK * S::N;
        }
        while d < dim {
            weighted_sum::<S, R, 1>(scores, values, shape, d, inverse_sums, out, head);
            d += S::N;
        }
    }

    /// Scores of `R` rows against keys `j..j + N·C`: `q·k·scale + mask`, stored in the
    /// scores buffer, with each row's running maximum.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn scores_block<S: Lanes, const R: usize, const C: usize>(
        q_rows: [*const f32; R],
        keys_t: *const f32,
        keys: usize,
        dim: usize,
        j: usize,
        mask: *const f32,
        scale: f32,
        scores: *mut f32,
        max: &mut [S::V; R],
    ) {
        let mut acc = [[S::splat(0.0); C]; R];
        let mut k = [S::splat(0.0); C];
        for d in 0..dim {
            for c in 0..C {
                k[c] = S::load(keys_t.add(d * keys + j + c * S::N));
            }
            for r in 0..R {
                let q = S::splat(*q_rows[r].add(d));
                for c in 0..C {
                    acc[r][c] = S::fmadd(q, k[c], acc[r][c]);
                }
            }
        }
        let scale = S::splat(scale);
        for r in 0..R {
            for c in 0..C {
                let m = S::load(mask.add(j + c * S::N));
                let s = S::fmadd(acc[r][c], scale, m);
                S::store(scores.add(r * keys + j + c * S::N), s);
                max[r] = S::max(max[r], s);
            }
        }
    }

    /// `out[r, d..d + N·C] = Σ_j p[r, j] · v[j, d..] / Σ_j p[r, j]` over the real keys;
    /// `shape`: (padded keys, real keys, dim).
    #[inline(always)]
    unsafe fn weighted_sum<S: Lanes, const R: usize, const C: usize>(
        probabilities: *const f32,
        values: *const f32,
        (keys, real_keys, dim): (usize, usize, usize),
        d: usize,
        inverse_sums: [f32; R],
        out: &mut [f32],
        head: HeadShape,
    ) {
        let mut acc = [[S::splat(0.0); C]; R];
        let mut v = [S::splat(0.0); C];
        for j in 0..real_keys {
            for c in 0..C {
                v[c] = S::load(values.add(j * dim + d + c * S::N));
            }
            for r in 0..R {
                let p = S::splat(*probabilities.add(r * keys + j));
                for c in 0..C {
                    acc[r][c] = S::fmadd(p, v[c], acc[r][c]);
                }
            }
        }
        for r in 0..R {
            let inverse = S::splat(inverse_sums[r]);
            let row = out[r * head.width + head.offset + d..][..C * S::N].as_mut_ptr();
            for c in 0..C {
                S::store(row.add(c * S::N), S::mul(acc[r][c], inverse));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each SIMD kernel this CPU runs, against the plain loops: keys around the 16- and
    /// 64-key blocks, widths around the 4-register value chunks, masked keys.
    #[test]
    fn simd_kernels_match_the_plain_loops() {
        let mut seed = 7u32;
        let mut random = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1 << 24) as f32 * 6.0 - 3.0
                })
                .collect()
        };
        for (sequence, heads, head_dim) in [(1, 1, 16), (17, 2, 32), (70, 3, 48), (130, 1, 80)] {
            let shape = AttentionShape {
                batch: 1,
                sequence,
                heads,
                head_dim,
                mask_batch: 1,
            };
            let len = sequence * heads * head_dim;
            let (q, k, v) = (random(len), random(len), random(len));
            let mask: Vec<f32> = (0..sequence)
                .map(|j| if j % 5 == 2 { f32::MIN } else { 0.0 })
                .collect();
            let scale = 1.0 / (head_dim as f32).sqrt();
            let mut plain = vec![0.0; len];
            attention_in(None, shape, (&q, &k, &v), &mask, scale, &mut plain);
            for isa in [Isa::Avx512, Isa::Avx2] {
                if !isa.available() {
                    eprintln!("no {isa:?} here: its kernel is not tested");
                    continue;
                }
                let mut fast = vec![0.0; len];
                attention_in(Some(isa), shape, (&q, &k, &v), &mask, scale, &mut fast);
                let worst = fast
                    .iter()
                    .zip(&plain)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "{isa:?} {sequence}×{heads}×{head_dim}: off by {worst}"
                );
            }
        }
    }
}
