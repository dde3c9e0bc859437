//! [`Int8Linear`]: a whole int8 linear layer (u8 activations × i8 weights → f32) as one
//! tract op running [`crate::kernels::int8_matmul`], with the weights packed once at load.

use std::sync::Arc;

use tract_core::internal::*;

use crate::kernels::int8_matmul::{matmul, PackedWeights};
use crate::kernels::quantize::dequantize_rows;

/// `y = f32(Σ (x − zero_point) · w) · scale + bias`: ONNX DynamicQuantizeLinear's output
/// through MatMulInteger → Cast → Mul(scale) → Add(bias), as one op. Inputs: `x` (u8,
/// `[.., k]`), its zero point (u8 scalar), `scale` and `bias` (f32, one per output column).
/// With `weight_scales`, the `scale` input is the activations' (a scalar) and each column's
/// is `scale · weight_scales[n]`: the `Mul` that `quantize_dynamic` wires for it, folded in.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Int8Linear {
    pub weights: Arc<PackedWeights>,
    pub weight_scales: Option<Arc<WeightScales>>,
}

/// Per-output-column weight scales, compared and hashed bit for bit (as tract compares
/// constants), so ops holding them stay `Eq` and `Hash`.
#[derive(Clone, Debug)]
pub struct WeightScales(pub Vec<f32>);

impl PartialEq for WeightScales {
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .map(|s| s.to_bits())
            .eq(other.0.iter().map(|s| s.to_bits()))
    }
}

impl Eq for WeightScales {}

impl std::hash::Hash for WeightScales {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.iter().for_each(|s| s.to_bits().hash(state));
    }
}

impl Op for Int8Linear {
    fn name(&self) -> StaticName {
        "Int8Linear (dotfind)".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, zero_point, scale, bias) = (&inputs[0], &inputs[1], &inputs[2], &inputs[3]);
        let xs = x.try_as_plain_ram()?.as_slice::<u8>()?;
        let zero_point = zero_point.cast_to_scalar::<i32>()?;
        let column_scales: Vec<f32>;
        let scale = match &self.weight_scales {
            Some(weight_scales) => {
                let activations = scale.cast_to_scalar::<f32>()?;
                column_scales = weight_scales.0.iter().map(|&w| activations * w).collect();
                &column_scales[..]
            }
            None => scale.try_as_plain_ram()?.as_slice::<f32>()?,
        };
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let n = self.weights.n();
        ensure!(
            scale.len() == n && bias.len() == n,
            "int8 linear: {} scales and {} biases for {n} outputs",
            scale.len(),
            bias.len()
        );
        let mut shape: TVec<usize> = x.shape().into();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        let mut acc = vec![0i32; shape.iter().product()];
        matmul(xs, zero_point, &self.weights, &mut acc)?;
        // SAFETY: `dequantize_rows` writes every element or fails (and `out` is dropped).
        let mut out = unsafe { Tensor::uninitialized_dt(f32::datum_type(), &shape)? };
        let mut ram = out.try_as_plain_ram_mut()?;
        dequantize_rows(&acc, scale, bias, ram.as_slice_mut::<f32>()?)?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Int8Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(super::constant_linears::output_fact(
            inputs[0],
            self.weights.n()
        )))
    }

    as_op!();
}
