//! [`DequantizeScaleBias`]: the dequantization tail of an int8 MatMul (ONNX `Cast` →
//! `Mul` → `Add`) as one pass over the output, with no intermediate tensors.

use tract_core::internal::*;

use crate::kernels::quantize::dequantize_rows;

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

impl TypedOp for DequantizeScaleBias {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}
