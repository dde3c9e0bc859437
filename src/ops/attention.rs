//! [`FusedAttention`]: BERT's self-attention block as one op running
//! [`crate::kernels::attention`], and [`fuse`], the rewrite that puts it in a graph.
//!
//! Not bit-identical to tract's plan (another summation order and `exp`): encoders use it
//! only where [`crate::model::F32Plan::for_this_target`] says, and the tests bound its
//! difference.

use tract_core::internal::*;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::nn::{Softmax, SoftmaxKind};

use crate::kernels::attention::{attention, AttentionShape};

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
        let shape = AttentionShape {
            batch,
            sequence,
            heads: self.heads,
            head_dim: self.head_dim,
            mask_batch,
        };
        // SAFETY: `attention` writes every element (each head's columns of every row).
        let mut output = unsafe {
            Tensor::uninitialized_dt(
                f32::datum_type(),
                &[batch, sequence, self.heads, self.head_dim],
            )?
        };
        let mut ram = output.try_as_plain_ram_mut()?;
        attention(
            shape,
            (q, k, v),
            mask,
            self.scale,
            ram.as_slice_mut::<f32>()?,
        );
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

/// Where `softmax`'s input comes from when it is `Add(Mul(scores, scale), mask)` (each
/// operand order) with `scores` the EinSum of split heads and `scale` one f32 constant:
/// `(mul node, scores, scale, mask, mask's slot in the Add)`.
#[allow(clippy::type_complexity)]
fn scaled_masked_scores(
    model: &TypedModel,
    add: usize,
) -> TractResult<Option<(usize, OutletId, f32, OutletId, usize)>> {
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
    Ok(found)
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
    let add = node.inputs[0].node;
    let Some((mul, scores, scale, mask, mask_slot)) = scaled_masked_scores(model, add)? else {
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
