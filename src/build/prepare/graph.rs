//! The graph of a BERT-family encoder, built from its weights with the ops of dotfind's
//! compiled set, in the form tract gives an exported and decluttered ONNX graph: so every
//! rewrite of `src/ops/` (fused attention, int8 and bf16 linear layers) applies to it, and
//! `model::graph::write` stores it as it stores an ONNX bundle's.
//!
//! Inputs `input_ids` and `attention_mask` (`[batch, sequence]`, i64), output the last hidden
//! state (`[batch, sequence, hidden]`). Quantized precisions follow ONNX dynamic quantization:
//! u8 activations with one scale per tensor, computed at run time, times i8 weights with one
//! symmetric scale per output column; embedding tables u8 with one scale per table.

use std::collections::HashMap;

use tract_core::internal::*;
use tract_core::ops::array::{Gather, Slice};
use tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_core::ops::cast::Cast;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::element_wise::ElementWiseOp;
use tract_core::ops::math;
use tract_core::ops::nn::{GeluExact, Reduce, Reducer, RmsNorm, Softmax, SoftmaxKind};
use tract_core::ops::quant::DequantizeLinearF32;

use super::checkpoint::{Encoder, Layer, Linear, Norm};
use super::gptq::{QuantizedWeights, StoredWeights};
use crate::model::encoder::{ATTENTION_MASK, INPUT_IDS};
use crate::model::plan::BATCH_SYMBOL;
use crate::model::token_table::TOKEN_ROWS;
use crate::ops::dynamic_quantize::DynamicQuantizeU8;
use crate::ops::int8_per_token::wire_column_codes;

/// The numeric form of a bundle's graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Every weight f32, as the checkpoint has it.
    F32,
    /// Linear layers on int8 (weights of `weight_bits` bits, 7 or 8), embeddings u8; with
    /// `ffn_f32`, the feed-forward layers stay f32 with f16-rounded weights.
    Int8 { weight_bits: u32, ffn_f32: bool },
    /// The f32 graph with the word embeddings taken as an input ([`TOKEN_ROWS`]): the query
    /// model, whose table is stored apart and whose weights are stored compactly and
    /// computed on int8 as its descriptor says (`crate::build::prepare`).
    Query,
}

impl Precision {
    /// The bundle descriptor's `quantization` field.
    pub fn describe(self) -> String {
        match self {
            Precision::F32 => "none".into(),
            Precision::Query => {
                "query model (see linear_compute and the graph's stored constants)".into()
            }
            Precision::Int8 {
                weight_bits,
                ffn_f32,
            } => format!(
                "int8 dynamic activations, {weight_bits}-bit per-column weights{}",
                if ffn_f32 {
                    ", feed-forward layers f32 (f16-stored weights)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// Builds the graph of `encoder` in `precision` (`F32` or `Int8`: [`build_query`] makes the
/// query model's), for texts of up to `max_tokens` tokens (the position table is cut there).
pub fn build(
    encoder: &Encoder,
    precision: Precision,
    max_tokens: usize,
) -> TractResult<TypedModel> {
    ensure!(
        precision != Precision::Query,
        "the query graph needs its quantized weights"
    );
    Ok(Builder::new(encoder, precision, max_tokens)
        .assemble(encoder)?
        .model)
}

/// The query model's graph: f32, with the linear layers' weights from `weights` (by layer
/// name, e.g. `layer.0.attention.q`: per-column int8 codes as the quantizer stored them, or
/// the values of its group grids, [`Builder::f32_weight`]) and the token rows an input.
pub fn build_query(
    encoder: &Encoder,
    max_tokens: usize,
    weights: &QuantizedWeights,
) -> TractResult<TypedModel> {
    let mut b = Builder::new(encoder, Precision::Query, max_tokens);
    b.quantized_weights = Some(weights);
    Ok(b.assemble(encoder)?.model)
}

/// The f32 graph, with the weights of the layers in `quantized` replaced by theirs, and
/// after the last hidden state the input of each linear layer in `wanted` as an output
/// (`[batch, sequence, k]`, or the heads' `[batch, sequence, heads, dim]` for the attention
/// output): for calibration. Returns it and, per layer name, its output number.
pub fn build_calibration(
    encoder: &Encoder,
    max_tokens: usize,
    quantized: &QuantizedWeights,
    wanted: &[String],
) -> TractResult<(TypedModel, Vec<(String, usize)>)> {
    let mut b = Builder::new(encoder, Precision::F32, max_tokens);
    b.quantized_weights = Some(quantized);
    let mut b = b.assemble(encoder)?;
    let mut outputs = b.model.output_outlets()?.to_vec();
    let mut numbers = Vec::new();
    for (name, input) in std::mem::take(&mut b.linear_inputs) {
        if !wanted.contains(&name) {
            continue;
        }
        let at = match outputs.iter().position(|&o| o == input) {
            Some(at) => at,
            None => {
                outputs.push(input);
                outputs.len() - 1
            }
        };
        numbers.push((name, at));
    }
    b.model.select_output_outlets(&outputs)?;
    Ok((b.model, numbers))
}

struct Builder<'a> {
    model: TypedModel,
    precision: Precision,
    /// Each activation's dynamic quantization, made once for all the layers that read it.
    quantized: HashMap<OutletId, TVec<OutletId>>,
    /// Small constants used by many nodes (the quantized products' unit scales, zeros).
    shared: HashMap<String, OutletId>,
    /// The [`TOKEN_ROWS`] input, for [`Precision::Query`].
    token_rows: Option<OutletId>,
    /// Rows of the position table kept.
    positions: usize,
    /// Each linear layer's name and input, in order.
    linear_inputs: Vec<(String, OutletId)>,
    /// The query model's quantized linear weights, by layer name.
    quantized_weights: Option<&'a QuantizedWeights>,
}

impl<'a> Builder<'a> {
    fn new(encoder: &Encoder, precision: Precision, max_tokens: usize) -> Self {
        Builder {
            model: TypedModel::default(),
            precision,
            quantized: HashMap::new(),
            shared: HashMap::new(),
            token_rows: None,
            positions: max_tokens.min(encoder.positions()),
            linear_inputs: Vec::new(),
            quantized_weights: None,
        }
    }

    /// The whole encoder: inputs, embeddings, layers, output.
    fn assemble(mut self, encoder: &Encoder) -> TractResult<Self> {
        let batch = self.model.symbols.sym(BATCH_SYMBOL).to_dim();
        let sequence = self.model.symbols.sym("sequence").to_dim();
        let ids = self
            .model
            .add_source(INPUT_IDS, i64::fact([batch.clone(), sequence.clone()]))?;
        let mask = self
            .model
            .add_source(ATTENTION_MASK, i64::fact([batch, sequence]))?;
        let mut x = self.embeddings(encoder, ids)?;
        let additive_mask = self.additive_mask(mask)?;
        for (i, layer) in encoder.layers.iter().enumerate() {
            x = self.layer(&format!("layer.{i}"), encoder, layer, x, additive_mask)?;
        }
        match self.token_rows {
            Some(rows) => self.model.set_input_outlets(&[ids, mask, rows])?,
            None => self.model.set_input_outlets(&[ids, mask])?,
        };
        self.model.select_output_outlets(&[x])?;
        Ok(self)
    }

    /// Whether the graph computes in f32 (what `ops` rewrites by plan, if at all).
    fn f32_graph(&self) -> bool {
        matches!(self.precision, Precision::F32 | Precision::Query)
    }

    fn konst(&mut self, name: &str, tensor: Tensor) -> TractResult<OutletId> {
        self.model.add_const(name, tensor)
    }

    /// A constant made once and shared by every node that uses it.
    fn shared(
        &mut self,
        name: &str,
        tensor: impl FnOnce() -> TractResult<Tensor>,
    ) -> TractResult<OutletId> {
        if let Some(&outlet) = self.shared.get(name) {
            return Ok(outlet);
        }
        let outlet = self.model.add_const(name, tensor()?)?;
        self.shared.insert(name.into(), outlet);
        Ok(outlet)
    }

    fn wire(
        &mut self,
        name: &str,
        op: impl Into<Box<dyn TypedOp>>,
        inputs: &[OutletId],
    ) -> TractResult<OutletId> {
        Ok(self.model.wire_node(name, op, inputs)?[0])
    }

    fn binary(
        &mut self,
        name: &str,
        op: impl BinMiniOp + 'static,
        a: OutletId,
        b: OutletId,
    ) -> TractResult<OutletId> {
        self.wire(name, TypedBinOp(Box::new(op), None), &[a, b])
    }

    /// Word plus position embeddings (the position table holds BERT's token type too), then
    /// the embedding layer norm: `[batch, sequence, hidden]`.
    fn embeddings(&mut self, encoder: &Encoder, ids: OutletId) -> TractResult<OutletId> {
        let h = encoder.hidden;
        let words = if self.precision == Precision::Query {
            let sequence = self.model.symbols.sym("tokens").to_dim();
            let rows = self
                .model
                .add_source(TOKEN_ROWS, f32::fact([sequence, h.to_dim()]))?;
            self.token_rows = Some(rows);
            (rows, None)
        } else {
            self.table(
                "embeddings.word",
                &encoder.word_embeddings,
                [encoder.vocab(), h],
            )?
        };
        let words = self.lookup("embeddings.word", words, ids)?;
        let positions = self.positions;
        let position_ids = tract_ndarray::Array2::from_shape_fn((1, positions), |(_, j)| j as i64);
        let position_ids = self.konst("embeddings.position_ids", position_ids.into_tensor())?;
        let sequence = self.model.symbols.sym("sequence").to_dim();
        let slice = Slice {
            axis: 1,
            start: TDim::Val(0),
            end: sequence,
        };
        let position_ids = self.wire("embeddings.position_ids.slice", slice, &[position_ids])?;
        let table = self.table(
            "embeddings.position",
            &encoder.position_embeddings[..positions * h],
            [positions, h],
        )?;
        let positions = self.lookup("embeddings.position", table, position_ids)?;
        let sum = self.binary("embeddings.add", math::Add, words, positions)?;
        self.layer_norm(
            "embeddings.norm",
            sum,
            &encoder.embedding_norm,
            encoder.layer_norm_eps,
        )
    }

    /// An embedding table: f32, or u8 with one scale and zero point (int8 precisions).
    fn table(
        &mut self,
        name: &str,
        values: &[f32],
        shape: [usize; 2],
    ) -> TractResult<(OutletId, Option<(f32, i32)>)> {
        if self.f32_graph() {
            let t = tensor1(values).into_shape(&shape)?;
            return Ok((self.konst(&format!("{name}.table"), t)?, None));
        }
        let (codes, scale, zero_point) = super::quantize::asymmetric_u8(values);
        let t = tensor1(&codes).into_shape(&shape)?;
        Ok((
            self.konst(&format!("{name}.table"), t)?,
            Some((scale, zero_point)),
        ))
    }

    /// The rows of `table` at `ids`, dequantized if the table is.
    fn lookup(
        &mut self,
        name: &str,
        (table, quantized): (OutletId, Option<(f32, i32)>),
        ids: OutletId,
    ) -> TractResult<OutletId> {
        let gather = Gather {
            axis: 0,
            output_type: None,
        };
        let rows = self.wire(&format!("{name}.gather"), gather, &[table, ids])?;
        match quantized {
            None => Ok(rows),
            Some((scale, zero_point)) => {
                let op = DequantizeLinearF32 { scale, zero_point };
                self.wire(&format!("{name}.dequantize"), op, &[rows])
            }
        }
    }

    /// `(x − mean) / sqrt(var + eps) · γ + β` over the last axis, as tract declutters ONNX's
    /// LayerNormalization: centre, then RmsNorm.
    fn layer_norm(
        &mut self,
        name: &str,
        x: OutletId,
        norm: &Norm,
        eps: f32,
    ) -> TractResult<OutletId> {
        let width = norm.gamma.len();
        let sum = self.wire(
            &format!("{name}.sum"),
            Reduce::new(tvec![2], Reducer::Sum),
            &[x],
        )?;
        let inverse = self.konst(
            &format!("{name}.inverse_width"),
            tensor3(&[[[1.0 / width as f32]]]),
        )?;
        let mean = self.binary(&format!("{name}.mean"), math::Mul, sum, inverse)?;
        let centred = self.binary(&format!("{name}.centre"), math::Sub, x, mean)?;
        let rms = RmsNorm {
            axis: 2,
            eps: tensor0(eps).into_arc_tensor(),
        };
        let normed = self.wire(&format!("{name}.rms"), rms, &[centred])?;
        let gamma = self.konst(&format!("{name}.gamma"), row(&norm.gamma)?)?;
        let scaled = self.binary(&format!("{name}.scale"), math::Mul, normed, gamma)?;
        let beta = self.konst(&format!("{name}.beta"), row(&norm.beta)?)?;
        self.binary(&format!("{name}.shift"), math::Add, scaled, beta)
    }

    /// `(1 − mask) · f32::MIN` as `[batch, 1, 1, sequence]`: 0 where a token is, far below any
    /// score where padding is. Shared by every layer.
    fn additive_mask(&mut self, mask: OutletId) -> TractResult<OutletId> {
        let m = self.wire("mask.axis1", AxisOp::Add(1), &[mask])?;
        let m = self.wire("mask.axis2", AxisOp::Add(2), &[m])?;
        let m = self.wire(
            "mask.cast",
            Cast {
                to: f32::datum_type(),
            },
            &[m],
        )?;
        let one = self.konst("mask.one", tensor4(&[[[[1f32]]]]))?;
        let inverted = self.binary("mask.invert", math::Sub, one, m)?;
        let min = self.konst("mask.min", tensor4(&[[[[f32::MIN]]]]))?;
        self.binary("mask.additive", math::Mul, inverted, min)
    }

    fn layer(
        &mut self,
        name: &str,
        encoder: &Encoder,
        layer: &Layer,
        x: OutletId,
        mask: OutletId,
    ) -> TractResult<OutletId> {
        let eps = encoder.layer_norm_eps;
        let attended = self.attention(&format!("{name}.attention"), encoder, layer, x, mask)?;
        let residual = self.binary(
            &format!("{name}.attention.residual"),
            math::Add,
            attended,
            x,
        )?;
        let h = self.layer_norm(
            &format!("{name}.attention.norm"),
            residual,
            &layer.attention_norm,
            eps,
        )?;
        let ffn_f32 = matches!(self.precision, Precision::Int8 { ffn_f32: true, .. });
        let inner = self.linear(&format!("{name}.ffn.in"), h, &layer.ffn_in, ffn_f32)?;
        let gelu = ElementWiseOp(Box::new(GeluExact {}), None);
        let inner = self.wire(&format!("{name}.ffn.gelu"), gelu, &[inner])?;
        let out = self.linear(&format!("{name}.ffn.out"), inner, &layer.ffn_out, ffn_f32)?;
        let residual = self.binary(&format!("{name}.ffn.residual"), math::Add, out, h)?;
        self.layer_norm(
            &format!("{name}.output.norm"),
            residual,
            &layer.output_norm,
            eps,
        )
    }

    /// Self-attention in the shape fused attention matches: heads split by `Reshape`,
    /// `softmax(EinSum(q, k) · scale + mask)`, `EinSum(probabilities, v)`, then the output
    /// projection.
    fn attention(
        &mut self,
        name: &str,
        encoder: &Encoder,
        layer: &Layer,
        x: OutletId,
        mask: OutletId,
    ) -> TractResult<OutletId> {
        let (hidden, heads) = (encoder.hidden, encoder.heads);
        let dim = hidden / heads;
        let split = || {
            AxisOp::Reshape(
                2,
                tvec![hidden.to_dim()],
                tvec![heads.to_dim(), dim.to_dim()],
            )
        };
        let q = self.linear(&format!("{name}.q"), x, &layer.q, false)?;
        let q = self.wire(&format!("{name}.q.heads"), split(), &[q])?;
        let k = self.linear(&format!("{name}.k"), x, &layer.k, false)?;
        let k = self.wire(&format!("{name}.k.heads"), split(), &[k])?;
        let scores = EinSum::new("ambk,anbk->abmn".parse()?, f32::datum_type());
        let scores = self.wire(&format!("{name}.scores"), scores, &[q, k])?;
        let scale = self.konst(
            &format!("{name}.scale"),
            tensor4(&[[[[1.0 / (dim as f32).sqrt()]]]]),
        )?;
        let scores = self.binary(&format!("{name}.scaled"), math::Mul, scores, scale)?;
        let scores = self.binary(&format!("{name}.masked"), math::Add, scores, mask)?;
        let softmax = Softmax {
            axes: tvec![3],
            quant_output_dt: None,
            kind: SoftmaxKind::Softmax,
        };
        let probabilities = self.wire(&format!("{name}.softmax"), softmax, &[scores])?;
        let v = self.linear(&format!("{name}.v"), x, &layer.v, false)?;
        let v = self.wire(&format!("{name}.v.heads"), split(), &[v])?;
        let context = EinSum::new("abmk,akbn->ambn".parse()?, f32::datum_type());
        let context = self.wire(&format!("{name}.context"), context, &[probabilities, v])?;
        if self.f32_graph() {
            // The heads' reshape folded into the projection, as tract declutters it.
            let out = format!("{name}.out");
            self.linear_inputs.push((out.clone(), context));
            let w = self.f32_weight(&out, &layer.out.w, &[heads, dim, hidden])?;
            let product = EinSum::new("ambk,bkn->amn".parse()?, f32::datum_type());
            let y = self.wire(&format!("{name}.out.matmul"), product, &[context, w])?;
            let bias = self.konst(&format!("{name}.out.bias"), row(&layer.out.b)?)?;
            return self.binary(&format!("{name}.out.bias_add"), math::Add, bias, y);
        }
        let join = AxisOp::Reshape(
            2,
            tvec![heads.to_dim(), dim.to_dim()],
            tvec![hidden.to_dim()],
        );
        let joined = self.wire(&format!("{name}.join_heads"), join, &[context])?;
        self.linear(&format!("{name}.out"), joined, &layer.out, false)
    }

    /// `x·W + b` over the last axis: f32 (`keep_f32`, or an f32 precision; weights rounded to
    /// f16 when kept f32 in a quantized bundle, which stores them as f16), else int8.
    fn linear(
        &mut self,
        name: &str,
        x: OutletId,
        linear: &Linear,
        keep_f32: bool,
    ) -> TractResult<OutletId> {
        let weight_bits = match self.precision {
            Precision::F32 | Precision::Query => None,
            Precision::Int8 { weight_bits, .. } => (!keep_f32).then_some(weight_bits),
        };
        let bias = self.konst(&format!("{name}.bias"), row(&linear.b)?)?;
        let Some(bits) = weight_bits else {
            self.linear_inputs.push((name.to_string(), x));
            let w = if self.f32_graph() {
                self.f32_weight(name, &linear.w, &[linear.k, linear.n])?
            } else {
                let rounded: Vec<f32> = linear
                    .w
                    .iter()
                    .map(|&w| half::f16::from_f32(w).to_f32())
                    .collect();
                let t = tensor1(&rounded).into_shape(&[linear.k, linear.n])?;
                self.konst(&format!("{name}.weight"), t)?
            };
            let product = EinSum::new("amk,kn->amn".parse()?, f32::datum_type());
            let y = self.wire(&format!("{name}.matmul"), product, &[x, w])?;
            return self.binary(&format!("{name}.bias_add"), math::Add, bias, y);
        };
        let y = self.int8_product(name, x, linear, bits)?;
        self.binary(&format!("{name}.bias_add"), math::Add, bias, y)
    }

    /// The f32 weights of layer `name` (`shape`: `[k, n]`, or the attention output's `[heads,
    /// dim, n]`): the checkpoint's, or the values its quantizer chose (every layer's in the
    /// query graph; those quantized so far in a calibration graph). The query graph writes
    /// per-column codes as the quantizer stored them, which the int8 plan computes with
    /// ([`wire_column_codes`]), so that a browser packs them as they come; a calibration
    /// graph computes in f32 with their values.
    fn f32_weight(&mut self, name: &str, w: &[f32], shape: &[usize]) -> TractResult<OutletId> {
        let quantized = self.quantized_weights.and_then(|q| q.get(name));
        if self.precision == Precision::Query {
            if let Some(StoredWeights::Columns { codes, scales }) = quantized.map(|q| &q.stored) {
                return wire_column_codes(&mut self.model, name, codes, scales, shape);
            }
        }
        let w = match quantized {
            Some(q) => &q.values,
            None if self.precision == Precision::Query => bail!("no quantized weights for {name}"),
            None => w,
        };
        self.konst(&format!("{name}.weight"), tensor1(w).into_shape(shape)?)
    }

    /// `f32(Σ (xq − zp)·w) · x_scale · w_scales`: the activations quantized at run time (once
    /// per tensor), the weights per column, wired as tract-onnx wires ONNX `MatMulInteger`
    /// and its dequantization (what `ops::int8_rewrites` fuses).
    fn int8_product(
        &mut self,
        name: &str,
        x: OutletId,
        linear: &Linear,
        bits: u32,
    ) -> TractResult<OutletId> {
        let quantized = match self.quantized.get(&x) {
            Some(q) => q.clone(),
            None => {
                let q = self.model.wire_node(
                    format!("{name}.quantize_input"),
                    DynamicQuantizeU8,
                    &[x],
                )?;
                self.quantized.insert(x, q.clone());
                q
            }
        };
        let (codes, scales) =
            crate::kernels::quantize::quantize_columns(&linear.w, linear.k, linear.n, bits);
        let w = self.konst(
            &format!("{name}.weight"),
            tensor1(&codes).into_shape(&[linear.k, linear.n])?,
        )?;
        let zero_i32 = self.shared("quant.zero_i32", || Ok(tensor0(0i32)))?;
        let one = self.shared("quant.one_f32", || Ok(tensor0(1f32)))?;
        let n = linear.n;
        let w_zero = self.shared(&format!("quant.zero_i8_{n}"), || Tensor::zero::<i8>(&[n]))?;
        let product = EinSum::newq(
            "amk,kn,,,,n,,,->amn".parse()?,
            i32::datum_type(),
            i32::datum_type(),
        );
        let inputs = [
            quantized[0],
            w,
            zero_i32,
            quantized[2],
            one,
            w_zero,
            one,
            zero_i32,
            one,
        ];
        let acc = self.wire(&format!("{name}.matmul"), product, &inputs)?;
        let acc = self.wire(
            &format!("{name}.cast"),
            Cast {
                to: f32::datum_type(),
            },
            &[acc],
        )?;
        let x_scale = self.wire(
            &format!("{name}.input_scale"),
            AxisOp::Add(0),
            &[quantized[1]],
        )?;
        let w_scales = self.konst(&format!("{name}.weight_scales"), tensor1(&scales))?;
        let scales = self.binary(&format!("{name}.scales"), math::Mul, w_scales, x_scale)?;
        let scales = self.wire(&format!("{name}.scales.axis0"), AxisOp::Add(0), &[scales])?;
        let scales = self.wire(&format!("{name}.scales.axis1"), AxisOp::Add(0), &[scales])?;
        self.binary(&format!("{name}.dequantize"), math::Mul, acc, scales)
    }
}

/// `values` as a `[1, 1, n]` tensor: a per-column vector that broadcasts over batch and
/// sequence.
fn row(values: &[f32]) -> TractResult<Tensor> {
    tensor1(values).into_shape(&[1, 1, values.len()])
}
