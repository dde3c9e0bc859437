//! Fused self-attention for native encoding.
//!
//! With the int8 MatMuls on AMX, a passage's attention became the largest cost of indexing:
//! tract plans `softmax(Q·Kᵀ·scale + mask)·V` as two f32 matmuls that pack K, V and the
//! whole `[heads, sequence, sequence]` probability tensor first, a softmax pass and a max
//! pass over that tensor (~40 % of a 256-token passage, profiled). [`FusedAttention`] does it
//! head by head, four query rows at a time, in registers and an L1-sized row buffer: scores,
//! their softmax (one polynomial `exp`, normalised once per output row) and the weighted sum
//! of V.
//!
//! Not bit-identical to tract's plan (another summation order and `exp`): encoders use it
//! only where [`crate::encode::F32Plan::for_this_target`] says, and the tests bound
//! its difference.

use tract_core::internal::*;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::nn::{Softmax, SoftmaxKind};

/// Whether the AVX-512 kernel runs here (natively on x86-64 CPUs with AVX-512F): elsewhere
/// the op's portable loops would not beat tract's kernels, so encoders leave attention to
/// tract ([`crate::encode::F32Plan::for_this_target`]).
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

/// `softmax(Q·Kᵀ·scale + mask)·V` per head, for `q`, `k`, `v` of shape `[batch, sequence,
/// heads · head_dim]` (heads side by side, as the projections write them) and an additive
/// `mask` of shape `[batch or 1, 1, 1, sequence]`; the output is `[batch, sequence, heads,
/// head_dim]`, as the graph's second EinSum writes it (what reads it — a `Reshape` joining
/// the heads, or the output projection's EinSum with the reshape folded in — is kept).
#[derive(Clone, Debug)]
pub struct FusedAttention {
    pub heads: usize,
    pub head_dim: usize,
    pub scale: f32,
}

impl PartialEq for FusedAttention {
    fn eq(&self, other: &Self) -> bool {
        (self.heads, self.head_dim, self.scale.to_bits())
            == (other.heads, other.head_dim, other.scale.to_bits())
    }
}

impl Eq for FusedAttention {}

impl std::hash::Hash for FusedAttention {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.heads, self.head_dim, self.scale.to_bits()).hash(state);
    }
}

impl Op for FusedAttention {
    fn name(&self) -> StaticName {
        "FusedAttention (dotfind)".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FusedAttention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (q, k, v, mask) = (&inputs[0], &inputs[1], &inputs[2], &inputs[3]);
        let width = self.heads * self.head_dim;
        let shape = q.shape();
        ensure!(
            shape.len() == 3 && shape[2] == width && k.shape() == shape && v.shape() == shape,
            "attention: q {:?}, k {:?}, v {:?} for {} heads of {}",
            q.shape(),
            k.shape(),
            v.shape(),
            self.heads,
            self.head_dim
        );
        let (batch, sequence) = (shape[0], shape[1]);
        let mask_batch = mask.shape().first().copied().unwrap_or(0);
        ensure!(
            mask.shape().len() == 4
                && (mask_batch == batch || mask_batch == 1)
                && mask.shape()[1..] == [1, 1, sequence],
            "attention: mask {:?} for batch {batch} and sequence {sequence}",
            mask.shape()
        );
        let q = q.try_as_plain_ram()?.as_slice::<f32>()?;
        let k = k.try_as_plain_ram()?.as_slice::<f32>()?;
        let v = v.try_as_plain_ram()?.as_slice::<f32>()?;
        let mask = mask.try_as_plain_ram()?.as_slice::<f32>()?;
        let shape = [batch, sequence, self.heads, self.head_dim];
        // SAFETY: `attend` writes every element (each head's columns of every row) or the
        // eval fails and `output` is dropped.
        let mut output = unsafe { Tensor::uninitialized_dt(f32::datum_type(), &shape)? };
        let mut ram = output.try_as_plain_ram_mut()?;
        let out = ram.as_slice_mut::<f32>()?;
        let mut scratch = Scratch::default();
        let rows = sequence * width;
        for b in 0..batch {
            let at = b * rows..(b + 1) * rows;
            let mask = &mask[if mask_batch == 1 { 0 } else { b * sequence }..][..sequence];
            for head in 0..self.heads {
                let head = HeadShape {
                    sequence,
                    width,
                    offset: head * self.head_dim,
                    dim: self.head_dim,
                };
                let inputs = (&q[at.clone()], &k[at.clone()], &v[at.clone()]);
                attend(
                    head,
                    inputs,
                    mask,
                    self.scale,
                    &mut scratch,
                    &mut out[at.clone()],
                );
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for FusedAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().take(2).cloned().collect();
        shape.extend([self.heads.into(), self.head_dim.into()]);
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
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

/// Replaces every self-attention block of a decluttered `model` that has the shape BERT and
/// DistilBERT exports give it — `EinSum(softmax(EinSum(Reshape(q), Reshape(k))·scale +
/// mask), Reshape(v))`, the heads split by `Reshape`s — by one [`FusedAttention`]; returns
/// how many. Anything else is left to tract.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    let blocks = model
        .nodes()
        .iter()
        .map(|node| attention_block(model, node.id))
        .collect::<TractResult<Vec<_>>>()?;
    let mut fused = 0;
    for block in blocks.into_iter().flatten() {
        let mut patch = TypedModelPatch::new("dotfind: fuse self-attention");
        // Read now, not when found: an earlier patch may have rewired them.
        let inputs = block
            .inputs
            .into_iter()
            .map(|(node, slot)| patch.tap_model(model, model.node(node).inputs[slot]))
            .collect::<TractResult<TVec<_>>>()?;
        let name = format!("{}.fused", model.node(block.softmax).name);
        let y = patch.wire_node(name, block.op, &inputs)?;
        patch.shunt_outside(model, block.output.into(), y[0])?;
        patch.apply(model)?;
        fused += 1;
    }
    model.compact()?;
    Ok(fused)
}

/// A fusable attention block, found from its softmax node.
struct Block {
    softmax: usize,
    /// Where q, k, v and the mask come in: (node, input slot) — the heads' `Reshape`s and the
    /// mask's `Add`.
    inputs: [(usize, usize); 4],
    /// The EinSum weighting V: whose output the fused op's replaces.
    output: usize,
    op: FusedAttention,
}

/// The only node reading `node`'s single output, if there is exactly one.
fn sole_successor(model: &TypedModel, node: usize) -> Option<usize> {
    match model.node(node).outputs.as_slice() {
        [output] if output.successors.len() == 1 => Some(output.successors[0].node),
        _ => None,
    }
}

/// `(input, heads, head_dim)` when `node` is `Reshape` splitting the last axis of a
/// `[batch, sequence, heads · head_dim]` f32 tensor into `[heads, head_dim]`.
fn split_heads(model: &TypedModel, node: usize) -> TractResult<Option<(OutletId, usize, usize)>> {
    let node = model.node(node);
    let Some(AxisOp::Reshape(2, from, to)) = node.op_as::<AxisOp>() else {
        return Ok(None);
    };
    let fact = model.outlet_fact(node.inputs[0])?;
    let (Some(width), [heads, dim]) = (from.first().and_then(|d| d.to_usize().ok()), &to[..])
    else {
        return Ok(None);
    };
    let (Ok(heads), Ok(dim)) = (heads.to_usize(), dim.to_usize()) else {
        return Ok(None);
    };
    let fits = from.len() == 1
        && heads > 0
        && dim > 0
        && fact.datum_type == f32::datum_type()
        && fact.rank() == 3
        && fact.shape[2] == width.into()
        && heads * dim == width;
    Ok(fits.then_some((node.inputs[0], heads, dim)))
}

/// The op of `node` if it is the binary op `name` (e.g. "Add"), with its two inputs.
fn binary(model: &TypedModel, node: usize, name: &str) -> Option<[OutletId; 2]> {
    let node = model.node(node);
    let op = node.op_as::<TypedBinOp>()?;
    (op.0.name() == name && node.inputs.len() == 2).then(|| [node.inputs[0], node.inputs[1]])
}

/// The EinSum `expression` (e.g. "ambk,anbk->abmn") of f32 operands, not quantized.
fn is_einsum(model: &TypedModel, node: usize, expression: &str) -> bool {
    model.node(node).op_as::<EinSum>().is_some_and(|op| {
        op.q_params.is_none()
            && op.operating_dt == f32::datum_type()
            && op.axes.to_string() == expression
    })
}

/// The attention block whose softmax is `softmax`, if it has the shape [`fuse`] knows and
/// none of its intermediate tensors is read elsewhere.
fn attention_block(model: &TypedModel, softmax: usize) -> TractResult<Option<Block>> {
    let node = model.node(softmax);
    let is_softmax = node.op_as::<Softmax>().is_some_and(|op| {
        op.axes.as_slice() == [3] && op.kind == SoftmaxKind::Softmax && op.quant_output_dt.is_none()
    });
    if !is_softmax {
        return Ok(None);
    }
    // softmax(Add(Mul(scores, scale), mask)), each operand order.
    let add = node.inputs[0].node;
    let Some(add_inputs) = binary(model, add, "Add") else {
        return Ok(None);
    };
    let mut found = None;
    for (scaled, mask, mask_slot) in [
        (add_inputs[0], add_inputs[1], 1),
        (add_inputs[1], add_inputs[0], 0),
    ] {
        let Some(mul_inputs) = binary(model, scaled.node, "Mul") else {
            continue;
        };
        for (scores, scale) in [
            (mul_inputs[0], mul_inputs[1]),
            (mul_inputs[1], mul_inputs[0]),
        ] {
            let scale_fact = model.outlet_fact(scale)?;
            let Some(scale) = scale_fact.konst.as_ref() else {
                continue;
            };
            if scale.datum_type() == f32::datum_type()
                && scale.len() == 1
                && is_einsum(model, scores.node, "ambk,anbk->abmn")
            {
                let scale = scale.cast_to_scalar::<f32>()?;
                found = Some((scaled.node, scores, scale, mask, mask_slot));
            }
        }
    }
    // (The mask, `(1 − m)·f32::MIN`, is a product with a scalar too: the EinSum tells.)
    let Some((mul, scores, scale, mask, mask_slot)) = found else {
        return Ok(None);
    };
    let scores_node = model.node(scores.node);
    let (q_split, k_split) = (scores_node.inputs[0].node, scores_node.inputs[1].node);
    let (Some((q, heads, dim)), Some((k, k_heads, k_dim))) =
        (split_heads(model, q_split)?, split_heads(model, k_split)?)
    else {
        return Ok(None);
    };
    // softmax → EinSum(probabilities, Reshape(v)).
    let Some(context) = sole_successor(model, softmax) else {
        return Ok(None);
    };
    let context_node = model.node(context);
    if !is_einsum(model, context, "abmk,akbn->ambn")
        || context_node.inputs[0] != OutletId::new(softmax, 0)
    {
        return Ok(None);
    }
    let v_split = context_node.inputs[1].node;
    let Some((v, v_heads, v_dim)) = split_heads(model, v_split)? else {
        return Ok(None);
    };
    // Every intermediate is read by the next step only and keeps the scores' shape (the
    // scale and mask broadcast into it, nothing more).
    let private = [scores.node, mul, add]
        .iter()
        .all(|&n| sole_successor(model, n).is_some());
    let scores_fact = model.outlet_fact(scores)?;
    let broadcast_only = scores_fact.rank() == 4
        && model.outlet_fact(OutletId::new(mul, 0))?.shape == scores_fact.shape
        && model.outlet_fact(OutletId::new(add, 0))?.shape == scores_fact.shape;
    let (q_fact, k_fact, v_fact) = (
        model.outlet_fact(q)?,
        model.outlet_fact(k)?,
        model.outlet_fact(v)?,
    );
    let mask_fact = model.outlet_fact(mask)?;
    let mask_fits = mask_fact.datum_type == f32::datum_type()
        && mask_fact.rank() == 4
        && (mask_fact.shape[0] == q_fact.shape[0] || mask_fact.shape[0] == 1.into())
        && mask_fact.shape[1] == 1.into()
        && mask_fact.shape[2] == 1.into()
        && mask_fact.shape[3] == q_fact.shape[1];
    let same = (heads, dim) == (k_heads, k_dim)
        && (heads, dim) == (v_heads, v_dim)
        && q_fact.shape == k_fact.shape
        && q_fact.shape == v_fact.shape;
    if !(private && broadcast_only && mask_fits && same) {
        return Ok(None);
    }
    Ok(Some(Block {
        softmax,
        inputs: [(q_split, 0), (k_split, 0), (v_split, 0), (add, mask_slot)],
        output: context,
        op: FusedAttention {
            heads,
            head_dim: dim,
            scale,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u32) -> f32 {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (*seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }

    /// The definition, in f64.
    fn reference(
        (batch, sequence, heads, dim): (usize, usize, usize, usize),
        (q, k, v): (&[f32], &[f32], &[f32]),
        mask: &[f32],
        scale: f32,
    ) -> Vec<f32> {
        let width = heads * dim;
        let mut out = vec![0f32; q.len()];
        let at = |b: usize, i: usize, h: usize, d: usize| (b * sequence + i) * width + h * dim + d;
        for b in 0..batch {
            let mask = &mask[if mask.len() == sequence {
                0
            } else {
                b * sequence
            }..];
            for h in 0..heads {
                for i in 0..sequence {
                    let scores: Vec<f64> = (0..sequence)
                        .map(|j| {
                            let dot: f64 = (0..dim)
                                .map(|d| {
                                    f64::from(q[at(b, i, h, d)]) * f64::from(k[at(b, j, h, d)])
                                })
                                .sum();
                            dot * f64::from(scale) + f64::from(mask[j])
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for d in 0..dim {
                        let y: f64 = (0..sequence)
                            .map(|j| e[j] * f64::from(v[at(b, j, h, d)]))
                            .sum();
                        out[at(b, i, h, d)] = (y / sum) as f32;
                    }
                }
            }
        }
        out
    }

    /// Around the 4-row groups, the 16- and 64-key blocks and the 64-wide value chunks;
    /// masked keys (f32::MIN, as BERT exports write them) and a per-item mask.
    #[test]
    fn fused_attention_matches_the_definition() {
        let mut seed = 11;
        for (batch, sequence, heads, dim, per_item_mask) in [
            (1, 1, 1, 16, false),
            (1, 5, 2, 32, false),
            (2, 17, 3, 32, true),
            (1, 64, 2, 64, false),
            (1, 130, 12, 32, false),
            (2, 70, 1, 80, true),
            (1, 9, 2, 24, false),
        ] {
            let len = batch * sequence * heads * dim;
            let mut random = |n: usize, amplitude: f32| -> Vec<f32> {
                (0..n).map(|_| lcg(&mut seed) * amplitude).collect()
            };
            let (q, k, v) = (random(len, 3.0), random(len, 3.0), random(len, 1.0));
            let mask_len = if per_item_mask {
                batch * sequence
            } else {
                sequence
            };
            let mask: Vec<f32> = (0..mask_len)
                .map(|j| if j % 7 == 3 { f32::MIN } else { 0.0 })
                .collect();
            let scale = 1.0 / (dim as f32).sqrt();
            let expected = reference((batch, sequence, heads, dim), (&q, &k, &v), &mask, scale);
            let op = FusedAttention {
                heads,
                head_dim: dim,
                scale,
            };
            let shape = [batch, sequence, heads * dim];
            let tensor = |x: &[f32], shape: &[usize]| tensor1(x).into_shape(shape).unwrap();
            let mask_shape = [if per_item_mask { batch } else { 1 }, 1, 1, sequence];
            let inputs = tvec![
                tensor(&q, &shape).into_tvalue(),
                tensor(&k, &shape).into_tvalue(),
                tensor(&v, &shape).into_tvalue(),
                tensor(&mask, &mask_shape).into_tvalue(),
            ];
            let out = op
                .eval(&EvalContext::out_of_plan(), inputs)
                .unwrap()
                .remove(0);
            let out = out
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec();
            let worst = out
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 2e-6,
                "{batch}×{sequence}×{heads}×{dim}: off by {worst}"
            );
        }
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let op = FusedAttention {
            heads: 2,
            head_dim: 16,
            scale: 0.25,
        };
        // The error of evaluating q, k, v and mask of these shapes.
        let error = |shapes: [&[usize]; 4]| {
            let inputs = shapes
                .iter()
                .map(|s| Tensor::zero::<f32>(s).unwrap().into_tvalue())
                .collect();
            let err = op.eval(&EvalContext::out_of_plan(), inputs).unwrap_err();
            err.to_string()
        };
        assert_eq!(
            error([&[1, 3, 32], &[1, 3, 32], &[1, 3, 32], &[1, 1, 1, 4]]),
            "attention: mask [1, 1, 1, 4] for batch 1 and sequence 3"
        );
        assert_eq!(
            error([&[1, 3, 32], &[1, 3, 30], &[1, 3, 32], &[1, 1, 1, 3]]),
            "attention: q [1, 3, 32], k [1, 3, 30], v [1, 3, 32] for 2 heads of 16"
        );
    }
}
