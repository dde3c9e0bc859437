//! Graph rewrites that make tract run int8 (dynamically quantized) bundles faster, each one
//! bit-identical to tract-onnx's own evaluation (tested against it, natively and in Chromium).
//!
//! `quantize_dynamic` turns every MatMul into DynamicQuantizeLinear → MatMulInteger → Cast →
//! Mul(scale) → Add(bias). Measured with `perf` on int8 encoding, most of the time went around
//! the int8 GEMM rather than in it:
//! - [`DynamicQuantizeU8`]: the activation quantization in vectorizable loops (tract-onnx's is a
//!   branchy element-by-element fold with a scalar conversion per element);
//! - [`drop_zero_weight_offsets`]: tract wires the weight-zero-point terms of the dequantization
//!   over the whole output even when the weights are symmetric (zero point 0);
//! - [`DequantizeScaleBias`]: the Cast → Mul → Add tail in one pass.
//!
//! Graphs without int8 MatMuls pass through unchanged.

use std::sync::Arc;

use tract_core::internal::*;

use crate::int8_linear::{Int8Linear, PackedWeights, WeightScales};

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

/// ONNX `DynamicQuantizeLinear` (f32 → u8): drop-in for tract-onnx's `DynamicQuantizeLinearU8`
/// op (same inputs, outputs and facts), same range, same `x / scale` division, same
/// ties-to-even rounding.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct DynamicQuantizeU8;

/// The name of the op this replaces in a typed graph.
const REPLACES: &str = "DynamicQuantizeLinearU8";

/// Swaps every tract-onnx `DynamicQuantizeLinearU8` node of `model` for [`DynamicQuantizeU8`];
/// returns how many.
pub fn use_fast_dynamic_quantize(model: &mut TypedModel) -> usize {
    let mut replaced = 0;
    for node in model.nodes_mut() {
        if node.op.name() == REPLACES {
            node.op = Box::new(DynamicQuantizeU8);
            replaced += 1;
        }
    }
    replaced
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

/// `y = f32(acc) · scale + bias` along the last axis: the dequantization tail of an int8
/// MatMul (ONNX `Cast` → `Mul` → `Add`) in one pass over the output instead of three, with
/// no intermediate tensors. Same three IEEE operations in the same order, so the same bits.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct DequantizeScaleBias;

impl Op for DequantizeScaleBias {
    fn name(&self) -> StaticName {
        "DequantizeScaleBias (dotfind)".into()
    }

    op_as_typed_op!();
}

impl EvalOp for DequantizeScaleBias {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (acc, scale, bias) = (&inputs[0], &inputs[1], &inputs[2]);
        let accs = acc.try_as_plain_ram()?.as_slice::<i32>()?;
        let scale = scale.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        // SAFETY: `dequantize_rows` writes every element or fails (and `out` is dropped).
        let mut out = unsafe { Tensor::uninitialized_dt(f32::datum_type(), acc.shape())? };
        dequantize_rows(
            accs,
            scale,
            bias,
            out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        )?;
        Ok(tvec!(out.into_tvalue()))
    }
}

/// `ys[r, j] = accs[r, j] as f32 * scale[j] + bias[j]` for every row `r` (also the tail of
/// [`Int8Linear`]).
pub(crate) fn dequantize_rows(
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

impl TypedOp for DequantizeScaleBias {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
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
    let mut tails = Vec::new();
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(cast) = node.op_as::<Cast>() else {
            continue;
        };
        let acc = node.inputs[0];
        let acc_fact = model.outlet_fact(acc)?;
        if cast.to != f32::datum_type() || acc_fact.datum_type != i32::datum_type() {
            continue;
        }
        let Some(width) = acc_fact.shape.last().and_then(|d| d.to_usize().ok()) else {
            continue;
        };
        let Some((mul, scale)) = only_successor(id.into(), "Mul") else {
            continue;
        };
        let Some((add, bias)) = only_successor(mul.into(), "Add") else {
            continue;
        };
        // Per-column vectors ([.., 1, width]) broadcast along the rows only, so the result keeps
        // the accumulators' shape; the bias must be a constant.
        let per_column = |outlet: OutletId| -> TractResult<bool> {
            let fact = model.outlet_fact(outlet)?;
            let dims = fact.shape.as_concrete();
            Ok(fact.datum_type == f32::datum_type()
                && fact.rank() <= acc_fact.rank()
                && dims.is_some_and(|d| {
                    d.last() == Some(&width) && d.iter().product::<usize>() == width
                }))
        };
        let out = &model.node(add).outputs[0].fact;
        if per_column(scale)?
            && per_column(bias)?
            && model.outlet_fact(bias)?.konst.is_some()
            && out.shape == acc_fact.shape
            && !model.output_outlets()?.contains(&OutletId::new(id, 0))
            && !model.output_outlets()?.contains(&OutletId::new(mul, 0))
        {
            if own_int8_matmul {
                if let Some((weights, [x, zero_point])) = int8_matmul(model, acc)? {
                    if weights.n() == width {
                        let (scale, weight_scales) =
                            match activation_times_weight_scales(model, scale, width)? {
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
                        continue;
                    }
                }
            }
            tails.push(Tail::Dequantize {
                add,
                acc,
                scale,
                bias,
            });
        }
    }
    Ok(tails)
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

impl Op for DynamicQuantizeU8 {
    fn name(&self) -> StaticName {
        "DynamicQuantizeU8 (dotfind)".into()
    }

    op_as_typed_op!();
}

impl EvalOp for DynamicQuantizeU8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].cast_to::<f32>()?;
        let xs = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let (min, max) = range(xs);
        let (scale, zero_point) = scale_and_zero_point(min, max);
        // SAFETY: every element is written by `quantize` (`ys` has the input's length).
        let mut out = unsafe { Tensor::uninitialized_dt(u8::datum_type(), input.shape())? };
        quantize(
            xs,
            scale,
            zero_point,
            out.try_as_plain_ram_mut()?.as_slice_mut::<u8>()?,
        );
        Ok(tvec!(
            out.into_tvalue(),
            tensor0(scale).into(),
            tensor0(zero_point).into()
        ))
    }
}

impl TypedOp for DynamicQuantizeU8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut quantized = inputs[0].clone();
        quantized.datum_type = u8::datum_type();
        Ok(tvec!(quantized, f32::fact([0; 0]), u8::fact([0; 0])))
    }

    as_op!();
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
        let (min, max) = range(xs);
        let (scale, zp) = scale_and_zero_point(min, max);
        let mut ys = vec![0u8; xs.len()];
        quantize(xs, scale, zp, &mut ys);
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
}
