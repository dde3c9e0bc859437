//! ONNX `DynamicQuantizeLinear` (f32 → u8), evaluated in vectorizable loops.
//!
//! int8 bundles quantize every MatMul's activations at run time with this op. tract-onnx's
//! own evaluation finds the range with a branchy element-by-element fold, which leaves a
//! quarter of an int8 passage encoding in this op (measured with `perf`); the same formulas
//! over fixed-width lanes let the compiler use SIMD (natively and in wasm). The results are
//! bit-identical: same range, same `x / scale` division, same ties-to-even rounding.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// Drop-in for tract-onnx's `DynamicQuantizeLinearU8` op (same inputs, outputs and facts).
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

/// Lanes per step: wide enough for AVX-512 and a few wasm v128 registers.
const LANES: usize = 16;

/// ONNX's range: [min(x, 0), max(x, 0)] (NaNs ignored, as tract-onnx's comparison fold does).
fn range(xs: &[f32]) -> (f32, f32) {
    let mut lo = [0f32; LANES];
    let mut hi = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for i in 0..LANES {
            lo[i] = lo[i].min(chunk[i]);
            hi[i] = hi[i].max(chunk[i]);
        }
    }
    for (i, &x) in chunks.remainder().iter().enumerate() {
        lo[i] = lo[i].min(x);
        hi[i] = hi[i].max(x);
    }
    (
        lo.iter().fold(0f32, |a, &b| a.min(b)),
        hi.iter().fold(0f32, |a, &b| a.max(b)),
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

/// `y = saturate(round(x / scale) + zero_point)`.
fn quantize(xs: &[f32], scale: f32, zero_point: u8, ys: &mut [u8]) {
    let zp = i32::from(zero_point);
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = (((x / scale).round_ties_even() as i32) + zp).clamp(0, 255) as u8;
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
