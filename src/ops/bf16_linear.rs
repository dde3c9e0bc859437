//! [`Bf16Linear`]: an f32 linear layer (`x·W + b`, constant `W` and `b`) as one op running
//! [`crate::kernels::bf16_amx`], and [`fuse`], the rewrite that puts it in a graph.
//! Passage vectors stay within cosine 0.99999 of tract's plan (tested).

use std::sync::Arc;

use tract_core::internal::*;

use super::constant_linears;
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
        Ok(tvec!(super::constant_linears::output_fact(
            inputs[0],
            self.weights.n()
        )))
    }

    as_op!();
}

/// Replaces every f32 linear layer of a decluttered `model` ([`super::constant_linears`]:
/// `x·W` with a constant `W`, and its bias) by one [`Bf16Linear`]; returns how many.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    let found = constant_linears::find(model)?;
    constant_linears::replace(model, found, "bf16", |linear| {
        let weights = PackedBf16::pack(&linear.weights()?, &linear.bias, linear.k, linear.n)?;
        Ok(Box::new(Bf16Linear {
            weights: Arc::new(weights),
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::einsum::EinSum;

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
