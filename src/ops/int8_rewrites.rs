//! Graph rewrites that make tract run int8 (dynamically quantized) bundles faster, each one
//! bit-identical to tract-onnx's own evaluation (tested against it, natively and in Chromium).
//!
//! `quantize_dynamic` turns every MatMul into DynamicQuantizeLinear → MatMulInteger → Cast →
//! Mul(scale) → Add(bias). Around the int8 GEMM tract spends
//! more time than in it (profiled; BENCHMARKS.md), which these rewrites remove:
//! - [`super::dynamic_quantize::DynamicQuantizeU8`]: the activation quantization in vectorizable loops (tract-onnx's is a
//!   branchy element-by-element fold with a scalar conversion per element);
//! - [`drop_zero_weight_offsets`]: tract wires the weight-zero-point terms of the dequantization
//!   over the whole output even when the weights are symmetric (zero point 0);
//! - [`super::dequantize::DequantizeScaleBias`]: the Cast → Mul → Add tail in one pass.
//!
//! Graphs without int8 MatMuls pass through unchanged.

use std::sync::Arc;

use tract_core::internal::*;

use super::dequantize::DequantizeScaleBias;
use super::dynamic_quantize::use_fast_dynamic_quantize;
use super::int8_linear::{Int8Linear, WeightScales};
use crate::kernels::int8_matmul::PackedWeights;

/// Optimizes a decluttered graph for running (tract's codegen), with every rewrite of this
/// module. `own_int8_matmul`: run int8 MatMuls with [`Int8Linear`] (dotfind's kernel, faster
/// than tract's in wasm) instead of tract's kernels (natively, tract's AMX/VNNI ones win).
pub fn optimize(mut decluttered: TypedModel, own_int8_matmul: bool) -> TractResult<TypedModel> {
    // tract's shape proofs, cached for the whole rewrite (its optimizer caches them per run).
    let symbols = decluttered.symbols.clone();
    let _proofs = symbols.proof_cache_session();
    fuse_dequantize_tails(&mut decluttered, own_int8_matmul)?;
    decluttered.optimize()?;
    use_fast_dynamic_quantize(&mut decluttered);
    drop_zero_weight_offsets(&mut decluttered)?;
    Ok(decluttered)
}

/// Removes the weight-zero-point terms of every int8 MatMul of an optimized `model`; returns
/// how many `Add`/`Sub` nodes it bypassed.
///
/// tract dequantizes `MatMulInteger` as `A·B − a0·ΣB − b0·ΣA + a0·b0·k` whatever the zero
/// points are. Our weights are symmetric (b0 = 0), so `b0·ΣA` and `a0·b0·k` are zero, yet
/// tract evaluates them over the whole `[batch, sequence, out]` i32 tensor, together with the
/// cast and row sums of the activations that feed them — more time than the int8 GEMM itself
/// for a long passage. Integer `x − 0` and `x + 0` are exact, so bypassing them changes no bit.
pub fn drop_zero_weight_offsets(model: &mut TypedModel) -> TractResult<usize> {
    let mut bypassed = 0;
    // One patch at a time: the two terms are chained (`(x − b0·ΣA) + a0·b0·k`).
    while let Some((node, keep)) = next_zero_term(model)? {
        let mut patch = TypedModelPatch::new("dotfind: drop a zero weight-offset term");
        let kept = patch.tap_model(model, keep)?;
        patch.shunt_outside(model, node.into(), kept)?;
        patch.apply(model)?;
        bypassed += 1;
    }
    model.compact()?;
    Ok(bypassed)
}

/// An integer `x − z` or `x + z` (or `z + x`) whose `z` is a product with an all-zero
/// constant and whose `x` already has the result's type and shape: (that node, `x`).
fn next_zero_term(model: &TypedModel) -> TractResult<Option<(usize, OutletId)>> {
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = node.op_as::<tract_core::ops::binary::TypedBinOp>() else {
            continue;
        };
        let subtracts = match op.0.name() {
            "Sub" => true,
            "Add" => false,
            _ => continue,
        };
        let out = &node.outputs[0].fact;
        if !out.datum_type.is_integer() || node.inputs.len() != 2 {
            continue;
        }
        for (slot, &term) in node.inputs.iter().enumerate() {
            if (subtracts && slot == 0) || !is_zero_product(model, term)? {
                continue;
            }
            let keep = node.inputs[1 - slot];
            let kept = model.outlet_fact(keep)?;
            if kept.datum_type == out.datum_type && kept.shape == out.shape {
                return Ok(Some((id, keep)));
            }
        }
    }
    Ok(None)
}

/// Whether `outlet` is an integer `Mul` with an all-zero constant operand.
fn is_zero_product(model: &TypedModel, outlet: OutletId) -> TractResult<bool> {
    let node = model.node(outlet.node);
    let Some(op) = node.op_as::<tract_core::ops::binary::TypedBinOp>() else {
        return Ok(false);
    };
    if op.0.name() != "Mul" || !model.outlet_fact(outlet)?.datum_type.is_integer() {
        return Ok(false);
    }
    for &input in &node.inputs {
        if let Some(k) = &model.outlet_fact(input)?.konst {
            if k.is_all_zero()? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Replaces every `Add(Mul(Cast<i32 → f32>(acc), scale), bias)` of a decluttered `model`
/// whose scale and bias are per-output-column vectors by one [`DequantizeScaleBias`] — or,
/// with `own_int8_matmul` and when `acc` is an ONNX `MatMulInteger` of u8 activations by
/// constant i8 weights, the whole chain by one [`Int8Linear`]; returns how many tails.
/// Run before `optimize` (tract then plans the MatMuls left to it).
pub fn fuse_dequantize_tails(model: &mut TypedModel, own_int8_matmul: bool) -> TractResult<usize> {
    // Found in one pass: tails do not overlap, and a patch leaves the nodes of the others
    // (and their ids) as they were.
    let tails = dequantize_tails(model, own_int8_matmul)?;
    let fused = tails.len();
    for tail in tails {
        let mut patch = TypedModelPatch::new("dotfind: fuse an int8 MatMul's dequantization");
        let mut tap = |outlet| patch.tap_model(model, outlet);
        let (add, op, inputs): (usize, Box<dyn TypedOp>, TVec<OutletId>) = match tail {
            Tail::Dequantize {
                add,
                acc,
                scale,
                bias,
            } => (
                add,
                Box::new(DequantizeScaleBias),
                tvec![tap(acc)?, tap(scale)?, tap(bias)?],
            ),
            Tail::Linear {
                add,
                x,
                zero_point,
                weights,
                scale,
                weight_scales,
                bias,
            } => (
                add,
                Box::new(Int8Linear {
                    weights: Arc::new(weights),
                    weight_scales: weight_scales.map(Arc::new),
                }),
                tvec![tap(x)?, tap(zero_point)?, tap(scale)?, tap(bias)?],
            ),
        };
        let name = format!("{}.dequantize", model.node(add).name);
        let y = patch.wire_node(name, op, &inputs)?;
        patch.shunt_outside(model, add.into(), y[0])?;
        patch.apply(model)?;
    }
    model.compact()?;
    Ok(fused)
}

/// A fusable dequantization tail, ending at the `Add` node `add`.
enum Tail {
    /// `Add(Mul(Cast(acc), scale), bias)`.
    Dequantize {
        add: usize,
        acc: OutletId,
        scale: OutletId,
        bias: OutletId,
    },
    /// The same, with `acc` a `MatMulInteger(x, weights)` whose zero point is `zero_point`;
    /// with `weight_scales` when `scale` was `Mul(activation scale, weight_scales)`, and is
    /// now that activation scale (see [`activation_times_weight_scales`]).
    Linear {
        add: usize,
        x: OutletId,
        zero_point: OutletId,
        weights: PackedWeights,
        scale: OutletId,
        weight_scales: Option<WeightScales>,
        bias: OutletId,
    },
}

/// When `acc` is an ONNX `MatMulInteger` as tract-onnx wires it — an i32 EinSum `..k,kn->..n`
/// of u8 activations by constant i8 weights, zero weight zero points, unit scales and no
/// bias — and nothing else reads it: its packed weights and `[x, x_zero_point]`.
fn int8_matmul(
    model: &TypedModel,
    acc: OutletId,
) -> TractResult<Option<(PackedWeights, [OutletId; 2])>> {
    use tract_core::ops::einsum::EinSum;
    let node = model.node(acc.node);
    let Some(op) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if op.q_params != Some(i32::datum_type())
        || node.inputs.len() != 9
        || node.outputs[acc.slot].successors.len() != 1
    {
        return Ok(None);
    }
    let facts = model.node_input_facts(node.id)?;
    let Some(weights) = &facts[1].konst else {
        return Ok(None);
    };
    if facts[0].datum_type != u8::datum_type()
        || weights.datum_type() != i8::datum_type()
        || weights.rank() != 2
        || facts[3].shape.volume() != 1.into()
    {
        return Ok(None);
    }
    // Inputs 2..9: bias, x zero point, x scale, w zero point, w scale, y zero point, y scale.
    let all = |ix: usize, value: f32| -> bool {
        facts[ix].konst.as_ref().is_some_and(|t| {
            t.cast_to::<f32>().is_ok_and(|t| {
                t.try_as_plain_ram()
                    .and_then(|r| r.as_slice::<f32>().map(|s| s.iter().all(|&v| v == value)))
                    .unwrap_or(false)
            })
        })
    };
    if !(all(2, 0.0) && all(4, 1.0) && all(5, 0.0) && all(6, 1.0) && all(7, 0.0) && all(8, 1.0)) {
        return Ok(None);
    }
    // `..k,kn->..n`: x's last axis against the weights' first; x's other axes pass through.
    let (inputs, outputs) = op.axes.to_strs();
    let (x_axes, w_axes, y_axes) = (&inputs[0], &inputs[1], &outputs[0]);
    let (Some(k_axis), Some(n_axis)) = (x_axes.chars().last(), w_axes.chars().last()) else {
        return Ok(None);
    };
    let expected_y: String = x_axes
        .chars()
        .take(x_axes.len() - 1)
        .chain([n_axis])
        .collect();
    if w_axes.chars().count() != 2
        || !w_axes.starts_with(k_axis)
        || *y_axes != expected_y
        || x_axes.contains(n_axis)
    {
        return Ok(None);
    }
    let (k, n) = (weights.shape()[0], weights.shape()[1]);
    let values = weights.try_as_plain_ram()?;
    let packed = PackedWeights::pack(values.as_slice::<i8>()?, k, n)?;
    Ok(Some((packed, [node.inputs[0], node.inputs[3]])))
}

/// When `scale` (read by nothing else) is `Mul(s, w)` of a scalar `s` and a constant vector
/// `w` of `width` weight scales — how `quantize_dynamic` scales a MatMul's output; tract
/// wires each through unit axes it adds to match ranks — returns `s` (before its added axes)
/// and `w`. Folded into [`Int8Linear`], the `Mul` and its axis ops leave the graph, which
/// spares tract's optimizer several rewrites per MatMul at every start-up.
fn activation_times_weight_scales(
    model: &TypedModel,
    scale: OutletId,
    width: usize,
) -> TractResult<Option<(OutletId, WeightScales)>> {
    use tract_core::ops::binary::TypedBinOp;
    // Back through unit axes added to `outlet`, as long as nothing else reads them.
    let before_added_axes = |mut outlet: OutletId| loop {
        let node = model.node(outlet.node);
        let added = matches!(node.op_as::<AxisOp>(), Some(AxisOp::Add(_)));
        if !added || node.outputs[outlet.slot].successors.len() != 1 {
            return outlet;
        }
        outlet = node.inputs[0];
    };
    let scale = before_added_axes(scale);
    let node = model.node(scale.node);
    let is_mul = node
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.name() == "Mul");
    if !is_mul || node.inputs.len() != 2 || node.outputs[scale.slot].successors.len() != 1 {
        return Ok(None);
    }
    let facts = model.node_input_facts(node.id)?;
    for (s, w) in [(0, 1), (1, 0)] {
        let scalar = facts[s].datum_type == f32::datum_type()
            && facts[s].shape.volume() == 1.into()
            && facts[s].konst.is_none();
        let Some(weights) = &facts[w].konst else {
            continue;
        };
        if scalar
            && weights.datum_type() == f32::datum_type()
            && weights.len() == width
            && weights.shape().last() == Some(&width)
        {
            let values = weights.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
            let activations = before_added_axes(node.inputs[s]);
            return Ok(Some((activations, WeightScales(values))));
        }
    }
    Ok(None)
}

/// Every fusable tail, in evaluation order.
fn dequantize_tails(model: &TypedModel, own_int8_matmul: bool) -> TractResult<Vec<Tail>> {
    let mut tails = Vec::new();
    for id in model.eval_order()? {
        let Some(Tail::Dequantize {
            add,
            acc,
            scale,
            bias,
        }) = dequantize_tail(model, id)?
        else {
            continue;
        };
        let width = model.outlet_fact(bias)?.shape.volume().to_usize()?;
        let linear = if own_int8_matmul {
            int8_matmul(model, acc)?.filter(|(weights, _)| weights.n() == width)
        } else {
            None
        };
        let Some((weights, [x, zero_point])) = linear else {
            tails.push(Tail::Dequantize {
                add,
                acc,
                scale,
                bias,
            });
            continue;
        };
        let (scale, weight_scales) = match activation_times_weight_scales(model, scale, width)? {
            Some((activations, weights)) => (activations, Some(weights)),
            None => (scale, None),
        };
        tails.push(Tail::Linear {
            add,
            x,
            zero_point,
            weights,
            scale,
            weight_scales,
            bias,
        });
    }
    Ok(tails)
}

/// The tail `Add(Mul(Cast<i32 → f32>(acc), scale), bias)` starting at node `cast`, when its
/// scale and bias are per-output-column vectors (`[.., 1, width]`, broadcast along the rows
/// only, so the result keeps the accumulators' shape), the bias is constant, and nothing
/// else reads the intermediates.
fn dequantize_tail(model: &TypedModel, cast: usize) -> TractResult<Option<Tail>> {
    use tract_core::ops::{binary::TypedBinOp, cast::Cast};
    // The single consumer of `outlet`, when it is the binary op `name`: (node, its other input).
    let only_successor = |outlet: OutletId, name: &str| -> Option<(usize, OutletId)> {
        let succs = &model.node(outlet.node).outputs[outlet.slot].successors;
        let [succ] = succs.as_slice() else {
            return None;
        };
        let node = model.node(succ.node);
        let op = node.op_as::<TypedBinOp>()?;
        (op.0.name() == name && node.inputs.len() == 2)
            .then(|| (node.id, node.inputs[1 - succ.slot]))
    };
    let node = model.node(cast);
    let Some(op) = node.op_as::<Cast>() else {
        return Ok(None);
    };
    let acc = node.inputs[0];
    let acc_fact = model.outlet_fact(acc)?;
    if op.to != f32::datum_type() || acc_fact.datum_type != i32::datum_type() {
        return Ok(None);
    }
    let Some(width) = acc_fact.shape.last().and_then(|d| d.to_usize().ok()) else {
        return Ok(None);
    };
    let Some((mul, scale)) = only_successor(cast.into(), "Mul") else {
        return Ok(None);
    };
    let Some((add, bias)) = only_successor(mul.into(), "Add") else {
        return Ok(None);
    };
    let per_column = |outlet: OutletId| -> TractResult<bool> {
        let fact = model.outlet_fact(outlet)?;
        let dims = fact.shape.as_concrete();
        Ok(fact.datum_type == f32::datum_type()
            && fact.rank() <= acc_fact.rank()
            && dims
                .is_some_and(|d| d.last() == Some(&width) && d.iter().product::<usize>() == width))
    };
    let outputs = model.output_outlets()?;
    let fusable = per_column(scale)?
        && per_column(bias)?
        && model.outlet_fact(bias)?.konst.is_some()
        && model.node(add).outputs[0].fact.shape == acc_fact.shape
        && !outputs.contains(&OutletId::new(cast, 0))
        && !outputs.contains(&OutletId::new(mul, 0));
    Ok(fusable.then_some(Tail::Dequantize {
        add,
        acc,
        scale,
        bias,
    }))
}
