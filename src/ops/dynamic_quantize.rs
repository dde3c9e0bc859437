//! [`DynamicQuantizeU8`]: ONNX `DynamicQuantizeLinear` (f32 → u8) as a tract op running
//! [`crate::kernels::quantize`], a drop-in for tract-onnx's own (same inputs, outputs and
//! facts, same bits; its loop is branchy and converts element by element).

use tract_core::internal::*;

use crate::kernels::quantize::quantize_dynamic;

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
        // SAFETY: `quantize_dynamic` writes every element (`ys` has the input's length).
        let mut out = unsafe { Tensor::uninitialized_dt(u8::datum_type(), input.shape())? };
        let (scale, zero_point) =
            quantize_dynamic(xs, out.try_as_plain_ram_mut()?.as_slice_mut::<u8>()?);
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
