//! [`PerTokenInt8Linear`]: an f32 linear layer run on int8, each token's activations
//! quantized with their own scale and zero point, and [`fuse`], the rewrite that puts it in
//! place of every f32 linear layer of a graph whose bundle asks for int8 compute.
//!
//! Why per token: ONNX dynamic quantization gives a whole `[tokens, features]` input one
//! scale, so the token with the largest activations (BERT's are uneven across tokens) sets
//! the step for all; that cost the all-int8 query model up to −0.013 nDCG@10. One scale per
//! row (ZeroQuant's per-token quantization) costs one more multiply per output, not a
//! slower kernel: the integer product is the same, with the zero point left out and
//! subtracted per row after it.

use std::sync::Arc;

use tract_core::internal::*;

use super::constant_linears;
use super::int8_linear::WeightScales;
use crate::kernels::int8_matmul::{matmul, PackedWeights};
use crate::kernels::quantize::{dequantize_per_row, quantize_columns, quantize_rows, RowCodes};

/// Bits of the int8 weights: 7, so that every column spans at most 128 codes, the one-plane
/// layout of the relaxed-SIMD kernel (`i32x4.relaxed_dot_i8x16_i7x16_add_s`), and every
/// build computes the same sums.
pub const WEIGHT_BITS: u32 = 7;

/// The largest weight code magnitude: codes lie in `-MAX_CODE..=MAX_CODE`.
pub const MAX_CODE: i8 = (1 << (WEIGHT_BITS - 1)) - 1;

/// `y = x·W + b` with `x` quantized per row to u8 and `W` per column to 7-bit codes.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct PerTokenInt8Linear {
    pub weights: Arc<PackedWeights>,
    /// Per output column: the weights' scale, then the bias.
    pub column_scales: Arc<WeightScales>,
    pub bias: Arc<WeightScales>,
}

impl PerTokenInt8Linear {
    /// The layer of row-major `[k, n]` f32 weights and `n` biases: weights quantized per
    /// column and packed for this build's kernel, once, at load.
    pub fn new(weights: &[f32], bias: &[f32], k: usize, n: usize) -> TractResult<Self> {
        ensure!(
            k > 0 && n > 0 && weights.len() == k * n && bias.len() == n,
            "int8 linear: {} weights and {} biases for a {k} × {n} matrix",
            weights.len(),
            bias.len()
        );
        let (codes, scales) = quantize_columns(weights, k, n, WEIGHT_BITS);
        Self::from_codes(&codes, scales, bias, k, n)
    }

    /// The layer of weights already quantized per column: row-major `[k, n]` i8 codes and
    /// `n` scales (`w = code · scale`), as a query bundle stores them: packed, no rounding.
    pub fn from_codes(
        codes: &[i8],
        scales: Vec<f32>,
        bias: &[f32],
        k: usize,
        n: usize,
    ) -> TractResult<Self> {
        ensure!(
            k > 0 && n > 0 && codes.len() == k * n && scales.len() == n && bias.len() == n,
            "int8 linear: {} codes, {} scales and {} biases for a {k} × {n} matrix",
            codes.len(),
            scales.len(),
            bias.len()
        );
        Ok(Self {
            weights: Arc::new(PackedWeights::pack(codes, k, n)?),
            column_scales: Arc::new(WeightScales(scales)),
            bias: Arc::new(WeightScales(bias.to_vec())),
        })
    }
}

impl Op for PerTokenInt8Linear {
    fn name(&self) -> StaticName {
        "PerTokenInt8Linear (dotfind)".into()
    }

    op_as_typed_op!();
}

impl EvalOp for PerTokenInt8Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let (k, n) = (self.weights.k(), self.weights.n());
        let mut shape: TVec<usize> = x.shape().into();
        ensure!(
            shape.last() == Some(&k),
            "int8 linear: input {:?} for {k} × {n} weights",
            x.shape()
        );
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        let xs = x.try_as_plain_ram()?.as_slice::<f32>()?;
        let rows = xs.len() / k;
        let mut codes = vec![0u8; xs.len()];
        let (mut scales, mut zero_points) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        quantize_rows(xs, k, &mut codes, &mut scales, &mut zero_points);
        let mut acc = vec![0i32; rows * n];
        matmul(&codes, 0, &self.weights, &mut acc)?;
        // SAFETY: `dequantize_per_row` writes every element or fails (and `out` is dropped).
        let mut out = unsafe { Tensor::uninitialized_dt(f32::datum_type(), &shape)? };
        let mut ram = out.try_as_plain_ram_mut()?;
        let row_codes = RowCodes {
            scales: &scales,
            zero_points: &zero_points,
        };
        dequantize_per_row(
            &acc,
            row_codes,
            self.weights.column_sums(),
            &self.column_scales.0,
            &self.bias.0,
            ram.as_slice_mut::<f32>()?,
        )?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for PerTokenInt8Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(super::constant_linears::output_fact(
            inputs[0],
            self.weights.n()
        )))
    }

    as_op!();
}

/// Wires the weights of layer `name` (`shape`: `[k, n]`, or `[heads, dim, n]`), row-major
/// i8 `codes` of `shape` and one scale per column (`w = code · scale`, codes within ±63),
/// into `model` as [`fuse`] packs them as they are: `Cast<f32>(codes) · scales` — the
/// form [`super::constant_linears`] recognizes, written here beside the op that runs it.
/// Nodes: `{name}.weight`, `.weight_scales`, `.weight_f32`, `.weight_scaled`.
pub fn wire_column_codes(
    model: &mut TypedModel,
    name: &str,
    codes: &[i8],
    scales: &[f32],
    shape: &[usize],
) -> TractResult<OutletId> {
    let n = *shape.last().context("a weight matrix without axes")?;
    ensure!(
        n > 0 && scales.len() == n && codes.len() == shape.iter().product::<usize>(),
        "{name}: {} codes and {} scales for a {shape:?} matrix",
        codes.len(),
        scales.len()
    );
    ensure!(
        codes
            .iter()
            .all(|c| c.unsigned_abs() <= MAX_CODE.unsigned_abs()),
        "{name}: codes beyond ±{MAX_CODE}, the int8 plan's {WEIGHT_BITS}-bit weights"
    );
    let codes = model.add_const(format!("{name}.weight"), tensor1(codes).into_shape(shape)?)?;
    let mut per_column = vec![1; shape.len()];
    per_column[shape.len() - 1] = n;
    let scales = model.add_const(
        format!("{name}.weight_scales"),
        tensor1(scales).into_shape(&per_column)?,
    )?;
    let cast = tract_core::ops::cast::Cast {
        to: f32::datum_type(),
    };
    let wide = model.wire_node(format!("{name}.weight_f32"), cast, &[codes])?[0];
    let mul = tract_core::ops::binary::TypedBinOp(Box::new(tract_core::ops::math::Mul), None);
    Ok(model.wire_node(format!("{name}.weight_scaled"), mul, &[wide, scales])?[0])
}

/// Replaces every f32 linear layer of a decluttered `model` ([`super::constant_linears`])
/// by a [`PerTokenInt8Linear`]; returns how many.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    let found = constant_linears::find(model)?;
    constant_linears::replace(model, found, "int8", |linear| {
        let op = match linear.column_codes()? {
            Some((codes, scales)) => PerTokenInt8Linear::from_codes(
                codes,
                scales.to_vec(),
                &linear.bias,
                linear.k,
                linear.n,
            )?,
            None => PerTokenInt8Linear::new(&linear.weights()?, &linear.bias, linear.k, linear.n)?,
        };
        Ok(Box::new(op))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u32) -> f32 {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (*seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }

    /// Against f32 `x·W + b` computed directly: each output within 1 % of its row's range,
    /// with a token 100× louder than the others, which leaves them as precise as without it.
    #[test]
    fn each_token_keeps_its_own_precision() {
        let (rows, k, n) = (5, 48, 20);
        let mut seed = 11;
        let w: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed) * 0.1).collect();
        let b: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
        let mut x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut seed)).collect();
        x[..k].iter_mut().for_each(|v| *v *= 100.0); // one loud token
        let op = PerTokenInt8Linear::new(&w, &b, k, n).unwrap();
        let input = tensor1(&x).into_shape(&[1, rows, k]).unwrap();
        let y = op
            .eval(&EvalContext::out_of_plan(), tvec![input.into_tvalue()])
            .unwrap();
        let y = y[0].try_as_plain_ram().unwrap();
        let y = y.as_slice::<f32>().unwrap();
        for r in 0..rows {
            let row = &x[r * k..][..k];
            let range =
                row.iter().fold(0f32, |m, &v| m.max(v)) - row.iter().fold(0f32, |m, &v| m.min(v));
            for j in 0..n {
                let exact: f32 = (0..k).map(|i| row[i] * w[i * n + j]).sum::<f32>() + b[j];
                let got = y[r * n + j];
                // One scale for the whole tensor would make the quiet rows' step 100× larger
                // (≈ 0.1 of error here, five times this bound).
                assert!(
                    (got - exact).abs() <= 0.01 * range,
                    "row {r} col {j}: {got} vs {exact}"
                );
            }
        }
    }

    /// `x·W + b` over `[1, rows, k]` with `W` made by `weight`, fused for int8 and run.
    fn fused_output(
        x: &[f32],
        rows: usize,
        k: usize,
        b: &[f32],
        weight: impl Fn(&mut TypedModel) -> OutletId,
    ) -> Vec<f32> {
        let mut model = TypedModel::default();
        let input = model.add_source("x", f32::fact([1, rows, k])).unwrap();
        let w = weight(&mut model);
        let bias = model
            .add_const("b", tensor1(b).into_shape(&[1, 1, b.len()]).unwrap())
            .unwrap();
        let product =
            tract_core::ops::einsum::EinSum::new("amk,kn->amn".parse().unwrap(), f32::datum_type());
        let y = model.wire_node("matmul", product, &[input, w]).unwrap()[0];
        let add = tract_core::ops::binary::TypedBinOp(Box::new(tract_core::ops::math::Add), None);
        let y = model.wire_node("bias_add", add, &[y, bias]).unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        assert_eq!(fuse(&mut model).unwrap(), 1);
        let out = model
            .into_runnable()
            .unwrap()
            .run(tvec![tensor1(x)
                .into_shape(&[1, rows, k])
                .unwrap()
                .into_tvalue()])
            .unwrap();
        out[0]
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    /// A query bundle's weights as the codes int8 compute runs (`Cast<f32>(codes) · scales`,
    /// what `dotfind prepare` writes) fuse into the very layer their f32 values fuse into.
    #[test]
    fn column_codes_fuse_as_their_f32_values() {
        let (rows, k, n) = (3, 64, 24);
        let mut seed = 5;
        let w: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed) * 0.2).collect();
        let b: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut seed)).collect();
        let from_f32 = fused_output(&x, rows, k, &b, |m| {
            m.add_const("w", tensor1(&w).into_shape(&[k, n]).unwrap())
                .unwrap()
        });
        let (codes, scales) = quantize_columns(&w, k, n, WEIGHT_BITS);
        let from_codes = fused_output(&x, rows, k, &b, |m| {
            wire_column_codes(m, "w", &codes, &scales, &[k, n]).unwrap()
        });
        assert_eq!(from_codes.len(), rows * n);
        assert!(from_codes
            .iter()
            .zip(&from_f32)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    /// Codes on a grid of fewer levels run as they are, not quantized again to 7 bits:
    /// `±15` codes at scale `s` compute exactly what the same codes times 4 at `s / 4` do
    /// (quantized again from their values, the `±15` ones would land on other codes).
    /// Codes beyond the 7-bit range are refused by name.
    #[test]
    fn column_codes_of_few_levels_run_as_stored() {
        let (rows, k, n) = (3, 64, 24);
        let mut seed = 7;
        let codes: Vec<i8> = (0..k * n).map(|_| (lcg(&mut seed) * 15.4) as i8).collect();
        let scales: Vec<f32> = (0..n).map(|j| 0.01 * (j + 1) as f32).collect();
        let b: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut seed)).collect();
        let wide: Vec<i8> = codes.iter().map(|c| c * 4).collect();
        let quarter: Vec<f32> = scales.iter().map(|s| s / 4.0).collect();
        let few = fused_output(&x, rows, k, &b, |m| {
            wire_column_codes(m, "w", &codes, &scales, &[k, n]).unwrap()
        });
        let four_times = fused_output(&x, rows, k, &b, |m| {
            wire_column_codes(m, "w", &wide, &quarter, &[k, n]).unwrap()
        });
        assert!(few
            .iter()
            .zip(&four_times)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        let mut model = TypedModel::default();
        let err = wire_column_codes(&mut model, "w", &[64, 0], &[1.0, 1.0], &[1, 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "w: codes beyond ±63, the int8 plan's 7-bit weights"
        );
    }
}
