//! The f32 linear layers of a decluttered graph — `x·W (+ b)` with constant `W` (or `W` as
//! int8 codes times column scales) and `b` — found and replaced in one place, for every op
//! that runs them its own way (int8 with per-token activations, AMX bf16 tiles).

use std::borrow::Cow;
use std::sync::Arc;

use tract_core::internal::*;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::cast::Cast;
use tract_core::ops::einsum::EinSum;

/// One f32 linear layer: an EinSum `amk,kn->amn` (or `ambk,bkn->amn`, the heads' reshape
/// folded into the attention output projection) of an input by a constant `[k, n]` matrix
/// ([`LinearWeights`]), and the per-column bias `Add` after it, if any.
pub struct ConstantLinear {
    /// The EinSum `x·W`.
    pub einsum: usize,
    /// The graph's own constants for `W`, shared rather than copied: a model's linear
    /// weights are most of its memory, and a browser tab keeps the peak of its load (wasm
    /// memory never shrinks).
    weights: LinearWeights,
    /// One per output column (zeros without a bias `Add`).
    pub bias: Vec<f32>,
    pub k: usize,
    pub n: usize,
    /// The node whose output the replacement's replaces: the bias `Add`, or the EinSum.
    pub replaced: usize,
}

/// How a graph holds a linear layer's `W`.
enum LinearWeights {
    /// A constant row-major `[k, n]` f32 matrix.
    F32(Arc<Tensor>),
    /// `Cast<f32>(codes) · scales`: i8 codes `[k, n]` and one scale per column, as `dotfind
    /// prepare` writes a query bundle's weights: the codes int8 compute runs, so its load
    /// neither expands them to f32 nor quantizes them again.
    Columns {
        codes: Arc<Tensor>,
        scales: Arc<Tensor>,
    },
}

impl ConstantLinear {
    /// The weights, row-major `[k, n]` f32 (expanded from codes where stored so).
    pub fn weights(&self) -> TractResult<Cow<'_, [f32]>> {
        match &self.weights {
            LinearWeights::F32(w) => Ok(Cow::Borrowed(w.try_as_plain_ram()?.as_slice::<f32>()?)),
            LinearWeights::Columns { .. } => {
                let (codes, scales) = self.column_codes()?.context("column codes")?;
                let n = scales.len();
                let values = codes
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| f32::from(c) * scales[i % n])
                    .collect();
                Ok(Cow::Owned(values))
            }
        }
    }

    /// The i8 codes (row-major `[k, n]`) and per-column scales, where `W` is stored so.
    pub fn column_codes(&self) -> TractResult<Option<(&[i8], &[f32])>> {
        match &self.weights {
            LinearWeights::F32(_) => Ok(None),
            LinearWeights::Columns { codes, scales } => Ok(Some((
                codes.try_as_plain_ram()?.as_slice::<i8>()?,
                scales.try_as_plain_ram()?.as_slice::<f32>()?,
            ))),
        }
    }
}

/// What a linear layer with `n` output columns makes of `input` (`[…, k]`): `[…, n]` f32.
pub fn output_fact(input: &TypedFact, n: usize) -> TypedFact {
    let mut shape: TVec<TDim> = input.shape.iter().cloned().collect();
    if let Some(last) = shape.last_mut() {
        *last = n.into();
    }
    f32::fact(shape)
}

/// Every [`ConstantLinear`] of `model`, in node order.
pub fn find(model: &TypedModel) -> TractResult<Vec<ConstantLinear>> {
    let mut found = vec![];
    for node in model.nodes() {
        if let Some(linear) = linear(model, node.id)? {
            found.push(linear);
        }
    }
    Ok(found)
}

/// Replaces each of `found` by the single-input op `make` builds for it (named after the
/// replaced node plus `suffix`), reshaping a 4-d input `[a, m, b, k']` to `[a, m, b·k']`
/// first; returns how many.
pub fn replace(
    model: &mut TypedModel,
    found: Vec<ConstantLinear>,
    suffix: &str,
    mut make: impl FnMut(ConstantLinear) -> TractResult<Box<dyn TypedOp>>,
) -> TractResult<usize> {
    let count = found.len();
    for linear in found {
        let mut patch = TypedModelPatch::new(format!("dotfind: linear layer as {suffix}"));
        // Read now, not when found: an earlier patch may have rewired it (chained linears).
        let x = model.node(linear.einsum).inputs[0];
        let fact = model.outlet_fact(x)?.clone();
        let x = patch.tap_model(model, x)?;
        let name = model.node(linear.replaced).name.clone();
        let x = if fact.rank() == 4 {
            // [a, m, b, k'] → [a, m, b·k']: the heads side by side, as the weights expect.
            let from = tvec![fact.shape[2].clone(), fact.shape[3].clone()];
            let join = AxisOp::Reshape(2, from, tvec![linear.k.into()]);
            patch.wire_node(format!("{name}.join_heads"), join, &[x])?[0]
        } else {
            x
        };
        let replaced = linear.replaced;
        let y = patch.wire_node(format!("{name}.{suffix}"), make(linear)?, &[x])?;
        patch.shunt_outside(model, replaced.into(), y[0])?;
        patch.apply(model)?;
    }
    model.compact()?;
    Ok(count)
}

/// When `node` is an f32 EinSum of an input by constant weights (see [`ConstantLinear`]),
/// that layer; anything else (other types, empty or non-plain constants) is left alone.
fn linear(model: &TypedModel, node: usize) -> TractResult<Option<ConstantLinear>> {
    let einsum = model.node(node);
    let Some(op) = einsum.op_as::<EinSum>() else {
        return Ok(None);
    };
    let expression = op.axes.to_string();
    if op.q_params.is_some()
        || op.operating_dt != f32::datum_type()
        || !matches!(expression.as_str(), "amk,kn->amn" | "ambk,bkn->amn")
        || einsum.inputs.len() != 2
    {
        return Ok(None);
    }
    let Some((weights, n, len)) = weights(model, einsum.inputs[1])? else {
        return Ok(None);
    };
    if n == 0 || len == 0 || len % n != 0 {
        return Ok(None);
    }
    let k = len / n;
    let (bias, replaced) = match bias(model, node, n)? {
        Some((bias, add)) => (bias, add),
        None => (vec![0f32; n], node),
    };
    Ok(Some(ConstantLinear {
        einsum: node,
        weights,
        bias,
        k,
        n,
        replaced,
    }))
}

/// The weights at `outlet` with their column count and length: a constant f32 matrix, or
/// `Mul(Cast<f32>(i8 codes), scales)` with one scale per column (`[1, …, 1, n]`).
fn weights(
    model: &TypedModel,
    outlet: OutletId,
) -> TractResult<Option<(LinearWeights, usize, usize)>> {
    let plain_len = |t: &Tensor| t.try_as_plain_ram().is_ok().then(|| t.len());
    let fact = model.outlet_fact(outlet)?;
    if let Some(konst) = &fact.konst {
        let n = konst.shape().last().copied().unwrap_or(0);
        return Ok(match konst.datum_type() == f32::datum_type() {
            true => plain_len(konst).map(|len| (LinearWeights::F32(Arc::clone(konst)), n, len)),
            false => None,
        });
    }
    let mul = model.node(outlet.node);
    let is_mul = mul
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.name() == "Mul");
    let [cast, scales] = mul.inputs.as_slice() else {
        return Ok(None);
    };
    let cast_node = model.node(cast.node);
    let to_f32 = cast_node
        .op_as::<Cast>()
        .is_some_and(|c| c.to == f32::datum_type());
    let Some(scales) = model.outlet_fact(*scales)?.konst.clone() else {
        return Ok(None);
    };
    if !is_mul || !to_f32 || cast_node.inputs.len() != 1 {
        return Ok(None);
    }
    let Some(codes) = model.outlet_fact(cast_node.inputs[0])?.konst.clone() else {
        return Ok(None);
    };
    let n = codes.shape().last().copied().unwrap_or(0);
    let per_column = scales.shape().last() == Some(&n)
        && scales.rank() == codes.rank()
        && scales.shape().iter().rev().skip(1).all(|&d| d == 1);
    if codes.datum_type() != i8::datum_type()
        || scales.datum_type() != f32::datum_type()
        || !per_column
    {
        return Ok(None);
    }
    Ok(plain_len(&codes).map(|len| (LinearWeights::Columns { codes, scales }, n, len)))
}

/// The bias of the EinSum `node`: its sole successor `Add(const, y)` or `Add(y, const)`
/// whose constant holds one value per output column (shape `[1, …, 1, n]`) and whose output
/// has y's shape; with that `Add`.
fn bias(model: &TypedModel, node: usize, n: usize) -> TractResult<Option<(Vec<f32>, usize)>> {
    let y_fact = model.outlet_fact(OutletId::new(node, 0))?;
    let [output] = model.node(node).outputs.as_slice() else {
        return Ok(None);
    };
    let [next] = output.successors.as_slice() else {
        return Ok(None);
    };
    let add = model.node(next.node);
    let is_add = add
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.name() == "Add");
    let Some(&other) = add.inputs.iter().find(|i| i.node != node) else {
        return Ok(None);
    };
    if !is_add || model.outlet_fact(OutletId::new(add.id, 0))?.shape != y_fact.shape {
        return Ok(None);
    }
    let Some(b) = &model.outlet_fact(other)?.konst else {
        return Ok(None);
    };
    let shape = b.shape();
    let per_column = shape.last() == Some(&n)
        && shape.len() <= y_fact.rank()
        && shape[..shape.len() - 1].iter().all(|&d| d == 1);
    let values = b.try_as_plain_ram().ok();
    match (
        per_column,
        values.as_ref().and_then(|v| v.as_slice::<f32>().ok()),
    ) {
        (true, Some(values)) => Ok(Some((values.to_vec(), add.id))),
        _ => Ok(None),
    }
}
