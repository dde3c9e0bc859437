//! [`Bf16Linear`]: an f32 linear layer (`x·W + b`, constant `W` and `b`) as one op running
//! [`crate::kernels::bf16_amx`], and [`fuse`], the rewrite that puts it in a graph.
//! Passage vectors stay within cosine 0.99999 of tract's plan (tested).

use std::sync::Arc;

use tract_core::internal::*;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::einsum::EinSum;

use crate::kernels::bf16_amx::{self, matmul, PackedBf16};

/// Whether the kernel runs here (x86-64 Linux, a CPU with AMX-BF16).
pub fn available() -> bool {
    bf16_amx::available()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bf16Linear {
    pub weights: Arc<PackedBf16>,
}

impl Op for Bf16Linear {
    fn name(&self) -> StaticName {
        "Bf16Linear (dotfind)".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Bf16Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let w = &self.weights;
        let mut shape: TVec<usize> = x.shape().into();
        ensure!(
            shape.last() == Some(&w.k()),
            "bf16 linear: input {:?} for {} × {} weights",
            x.shape(),
            w.k(),
            w.n()
        );
        if let Some(last) = shape.last_mut() {
            *last = w.n();
        }
        let xs = x.try_as_plain_ram()?.as_slice::<f32>()?;
        // SAFETY: `matmul` writes every element or fails (and `out` is dropped).
        let mut out = unsafe { Tensor::uninitialized_dt(f32::datum_type(), &shape)? };
        let mut ram = out.try_as_plain_ram_mut()?;
        matmul(xs, w, ram.as_slice_mut::<f32>()?)?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Bf16Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        if let Some(last) = shape.last_mut() {
            *last = self.weights.n().into();
        }
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

/// Replaces every f32 `x·W` of a decluttered `model` with a constant `W` — an EinSum
/// `amk,kn->amn`, or `ambk,bkn->amn` (the heads' reshape folded into the output projection)
/// — and the `Add` of a constant bias after it, if any, by one [`Bf16Linear`]; returns how
/// many.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    let mut found = vec![];
    for node in model.nodes() {
        if let Some(linear) = linear(model, node.id)? {
            found.push(linear);
        }
    }
    let fused = found.len();
    for Linear {
        einsum,
        weights,
        replaced,
    } in found
    {
        let mut patch = TypedModelPatch::new("dotfind: f32 linear on AMX bf16 tiles");
        // Read now, not when found: an earlier patch may have rewired it (chained linears).
        let x = model.node(einsum).inputs[0];
        let fact = model.outlet_fact(x)?.clone();
        let x = patch.tap_model(model, x)?;
        let x = if fact.rank() == 4 {
            // [a, m, b, k] → [a, m, b·k]: the heads side by side, as the weights expect.
            let from = tvec![fact.shape[2].clone(), fact.shape[3].clone()];
            let name = format!("{}.join_heads", model.node(replaced).name);
            let join = AxisOp::Reshape(2, from, tvec![weights.k().into()]);
            patch.wire_node(name, join, &[x])?[0]
        } else {
            x
        };
        let name = format!("{}.bf16", model.node(replaced).name);
        let op = Bf16Linear {
            weights: Arc::new(weights),
        };
        let y = patch.wire_node(name, op, &[x])?;
        patch.shunt_outside(model, replaced.into(), y[0])?;
        patch.apply(model)?;
    }
    model.compact()?;
    Ok(fused)
}

/// A linear layer [`fuse`] replaces.
struct Linear {
    /// The EinSum `x·W`.
    einsum: usize,
    weights: PackedBf16,
    /// The node whose output the op's replaces: the bias `Add`, or the EinSum without one.
    replaced: usize,
}

/// When `node` is an f32 EinSum of an input by a constant matrix (see [`fuse`]), that
/// layer; anything else (other types, empty or non-plain constants) is left to tract.
fn linear(model: &TypedModel, node: usize) -> TractResult<Option<Linear>> {
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
    let Some(weights) = model.outlet_fact(einsum.inputs[1])?.konst.clone() else {
        return Ok(None);
    };
    let n = weights.shape().last().copied().unwrap_or(0);
    let plain = weights.try_as_plain_ram().ok();
    let Some(weights) = plain.as_ref().and_then(|w| w.as_slice::<f32>().ok()) else {
        return Ok(None);
    };
    if n == 0 || weights.is_empty() {
        return Ok(None);
    }
    let k = weights.len() / n;
    // The bias: the sole successor `Add(const, y)` or `Add(y, const)` whose constant holds
    // one value per output column (shape [1, …, 1, n]) and whose output has y's shape.
    let y_fact = model.outlet_fact(OutletId::new(node, 0))?;
    let mut bias = vec![0f32; n];
    let mut replaced = node;
    if let [output] = einsum.outputs.as_slice() {
        if let [next] = output.successors.as_slice() {
            let add = model.node(next.node);
            let is_add = add
                .op_as::<TypedBinOp>()
                .is_some_and(|op| op.0.name() == "Add");
            let other = add.inputs.iter().find(|i| i.node != node);
            if let (true, Some(&other)) = (is_add, other) {
                let same_shape = model.outlet_fact(OutletId::new(add.id, 0))?.shape == y_fact.shape;
                if let (true, Some(b)) = (same_shape, &model.outlet_fact(other)?.konst) {
                    let shape = b.shape();
                    let per_column = shape.last() == Some(&n)
                        && shape.len() <= y_fact.rank()
                        && shape[..shape.len() - 1].iter().all(|&d| d == 1);
                    let values = b.try_as_plain_ram().ok();
                    let values = values.as_ref().and_then(|v| v.as_slice::<f32>().ok());
                    if let (true, Some(values)) = (per_column, values) {
                        bias.copy_from_slice(values);
                        replaced = add.id;
                    }
                }
            }
        }
    }
    let weights = PackedBf16::pack(weights, &bias, k, n)?;
    Ok(Some(Linear {
        einsum: node,
        weights,
        replaced,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u32) -> f32 {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (*seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }

    /// `x·W + bias` as tract-onnx types it: x `[1, rows, k]`, an EinSum by a constant, an Add
    /// of a constant of `bias_shape`; returns the model.
    fn linear_graph(rows: usize, k: usize, n: usize, bias_shape: &[usize]) -> TypedModel {
        let mut seed = 9;
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, rows, k])).unwrap();
        let w: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
        let w = model
            .add_const("w", tensor1(&w).into_shape(&[k, n]).unwrap())
            .unwrap();
        let axes = "amk,kn->amn".parse().unwrap();
        let y = model
            .wire_node("matmul", EinSum::new(axes, f32::datum_type()), &[x, w])
            .unwrap();
        let volume = bias_shape.iter().product();
        let b: Vec<f32> = (0..volume).map(|_| lcg(&mut seed)).collect();
        let b = model
            .add_const("b", tensor1(&b).into_shape(bias_shape).unwrap())
            .unwrap();
        let add = tract_core::ops::math::add();
        let y = model.wire_node("add", add, &[b, y[0]]).unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    fn run(model: TypedModel, x: &Tensor) -> Vec<f32> {
        let plan = model.into_runnable().unwrap();
        let y = plan.run(tvec![x.clone().into_tvalue()]).unwrap().remove(0);
        y.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    /// A per-column bias is fused with its MatMul; a constant of another shape (one value
    /// per row, here with as many rows as columns) stays tract's Add, after the fused
    /// MatMul — and both graphs compute what tract does.
    #[test]
    fn only_per_column_biases_are_fused() {
        if !available() {
            eprintln!("no AMX bf16 tiles here: the bf16 rewrite is not tested");
            return;
        }
        let mut seed = 3;
        let (rows, k, n) = (24, 40, 24);
        let xs: Vec<f32> = (0..rows * k).map(|_| lcg(&mut seed)).collect();
        let x = tensor1(&xs).into_shape(&[1, rows, k]).unwrap();
        for (bias_shape, fused_add) in [(vec![1, 1, n], true), (vec![1, rows, 1], false)] {
            let reference = linear_graph(rows, k, n, &bias_shape);
            let mut model = reference.clone();
            assert_eq!(fuse(&mut model).unwrap(), 1, "{bias_shape:?}");
            let ops: Vec<String> = model
                .nodes()
                .iter()
                .map(|n| n.op.name().to_string())
                .collect();
            assert!(ops.contains(&"Bf16Linear (dotfind)".to_string()), "{ops:?}");
            assert_eq!(
                !ops.iter().any(|o| o == "Add"),
                fused_add,
                "{bias_shape:?}: {ops:?}"
            );
            let (expected, got) = (run(reference, &x), run(model, &x));
            for (e, g) in expected.iter().zip(&got) {
                assert!((e - g).abs() <= 1e-4, "{bias_shape:?}: {g} vs {e}");
            }
        }
    }
}
