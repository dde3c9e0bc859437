//! The op set of compiled graphs: for each op BERT-family encoders use, how it is written
//! (`record`: tract's op → a JSON record of its parameters) and read back (`rebuild`: the
//! record, checked against its inputs' facts → the same op). The set is closed on purpose:
//! `write` refuses any other op by name, so no graph fails on a visitor's page instead.
//!
//! Datum types and dimensions are written as tract prints them (`F32`, `sequence`) and
//! parsed back with tract's parsers, bounded first: a reader never hands tract's recursive
//! parsers an unbounded string.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tract_core::internal::*;
use tract_core::ops::array::{Gather, MultiBroadcastTo, Slice};
use tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_core::ops::cast::Cast;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_core::ops::nn::{Reduce, Reducer, RmsNorm, Softmax, SoftmaxKind};
use tract_core::ops::quant::DequantizeLinearF32;

use crate::ops::dynamic_quantize::DynamicQuantizeU8;

/// Bounds a reader puts on what it parses, far above any BERT graph's: tensor rank, the
/// length of a dimension's text (tract's parser recurses on it), an einsum expression.
pub(super) const MAX_RANK: usize = 8;
const MAX_DIM_TEXT: usize = 64;
const MAX_EINSUM_TEXT: usize = 64;

/// One op of the set: its record's fields, how the op becomes one, and how the record,
/// checked against its inputs, becomes the op again.
trait RecordedOp: Sized {
    /// The tract op this records.
    type Op: TypedOp;
    fn record(op: &Self::Op, scope: &SymbolScope) -> TractResult<Self>;
    fn rebuild(&self, inputs: &RebuildInputs) -> TractResult<Box<dyn TypedOp>>;
    /// How many inputs the op takes.
    fn inputs(&self) -> usize {
        1
    }
}

/// Declares the op set once: the record enum (one variant per op, tagged `op` in JSON),
/// recording any node of the set, and rebuilding any record.
macro_rules! op_set {
    ($($variant:ident($record:ty)),* $(,)?) => {
        /// A node's op and its parameters. `Source` and `Const` are wired by the reader
        /// itself (inputs and constants' bytes); every other op is one of the set.
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(tag = "op", deny_unknown_fields)]
        pub(super) enum OpRecord {
            Source { datum_type: String, shape: Vec<String> },
            Const { constant: usize },
            $($variant($record),)*
        }

        /// The record of `op` when it is one of the set, else an error naming it.
        pub(super) fn record_op(op: &dyn TypedOp, scope: &SymbolScope) -> TractResult<OpRecord> {
            $(
                if let Some(op) = op.downcast_ref::<<$record as RecordedOp>::Op>() {
                    return Ok(OpRecord::$variant(<$record>::record(op, scope)?));
                }
            )*
            bail!("op {}", op.name())
        }

        impl OpRecord {
            /// The op, checked against its inputs' facts (its input count, axes within
            /// rank): a record that breaks what tract's ops assume is an error here, not a
            /// panic inside tract.
            pub(super) fn rebuild(&self, inputs: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
                match self {
                    OpRecord::Source { .. } | OpRecord::Const { .. } => {
                        bail!("sources and constants are wired by the reader")
                    }
                    $(OpRecord::$variant(record) => {
                        inputs.expect(record.inputs())?;
                        record.rebuild(inputs)
                    })*
                }
            }
        }
    };
}

op_set! {
    Binary(BinaryRecord),
    ElementWise(ElementWiseRecord),
    Axis(AxisRecord),
    BroadcastTo(BroadcastRecord),
    Cast(CastRecord),
    EinSum(EinSumRecord),
    Gather(GatherRecord),
    Reduce(ReduceRecord),
    RmsNorm(RmsNormRecord),
    Slice(SliceRecord),
    Softmax(SoftmaxRecord),
    DequantizeLinearF32(DequantizeRecord),
    DynamicQuantizeU8(DynamicQuantizeRecord),
}

/// What `rebuild` checks a record against: its inputs' facts, and the reader's symbols.
pub(super) struct RebuildInputs<'a> {
    pub facts: &'a [&'a TypedFact],
    pub dims: &'a DimReader,
}

impl RebuildInputs<'_> {
    fn expect(&self, count: usize) -> TractResult<()> {
        ensure!(
            self.facts.len() == count,
            "{} inputs, the op takes {count}",
            self.facts.len()
        );
        Ok(())
    }

    fn rank(&self) -> usize {
        self.facts.first().map_or(0, |f| f.rank())
    }

    fn within(&self, axis: usize, bound: usize) -> TractResult<()> {
        ensure!(axis < bound, "axis {axis} of a rank-{} input", self.rank());
        Ok(())
    }

    fn increasing(&self, axes: &[usize]) -> TractResult<()> {
        ensure!(!axes.is_empty(), "no axes");
        ensure!(
            axes.windows(2).all(|w| w[0] < w[1]),
            "axes {axes:?} not increasing"
        );
        axes.iter().try_for_each(|&a| self.within(a, self.rank()))
    }
}

/// Binary ops a BERT graph uses, by tract's name for them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BinaryRecord {
    mini: String,
    output: Option<String>,
}

fn binary_op(name: &str) -> Option<Box<dyn BinMiniOp>> {
    use tract_core::ops::math;
    Some(match name {
        "Add" => Box::new(math::Add),
        "Sub" => Box::new(math::Sub),
        "Mul" => Box::new(math::Mul),
        "Div" => Box::new(math::Div),
        "Pow" => Box::new(math::Pow),
        "Min" => Box::new(math::Min),
        "Max" => Box::new(math::Max),
        _ => return None,
    })
}

impl RecordedOp for BinaryRecord {
    type Op = TypedBinOp;
    fn record(op: &TypedBinOp, _: &SymbolScope) -> TractResult<Self> {
        let mini = op.0.name().to_string();
        ensure!(binary_op(&mini).is_some(), "binary op {mini}");
        Ok(Self {
            mini,
            output: op.1.map(dt_text).transpose()?,
        })
    }
    fn rebuild(&self, _: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        let mini =
            binary_op(&self.mini).with_context(|| format!("unknown binary op {}", self.mini))?;
        Ok(Box::new(TypedBinOp(mini, opt_datum_type(&self.output)?)))
    }
    fn inputs(&self) -> usize {
        2
    }
}

/// Element-wise functions of BERT graphs' activations and normalizations.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ElementWiseRecord {
    mini: String,
    output: Option<String>,
}

fn element_wise_op(name: &str) -> Option<Box<dyn ElementWiseMiniOp>> {
    use tract_core::ops::{math, nn};
    Some(match name {
        "GeluExact" => Box::new(nn::GeluExact {}),
        "Erf" => Box::new(math::Erf {}),
        "Tanh" => Box::new(math::Tanh {}),
        "Exp" => Box::new(math::Exp {}),
        "Sqrt" => Box::new(math::Sqrt {}),
        "Rsqrt" => Box::new(math::Rsqrt {}),
        "Recip" => Box::new(math::Recip {}),
        "Square" => Box::new(math::Square {}),
        "Abs" => Box::new(math::Abs {}),
        "Neg" => Box::new(math::Neg {}),
        "Sigmoid" => Box::new(nn::Sigmoid {}),
        _ => return None,
    })
}

impl RecordedOp for ElementWiseRecord {
    type Op = ElementWiseOp;
    fn record(op: &ElementWiseOp, _: &SymbolScope) -> TractResult<Self> {
        let mini = op.0.name();
        ensure!(element_wise_op(&mini).is_some(), "element-wise op {mini}");
        Ok(Self {
            mini,
            output: op.1.map(dt_text).transpose()?,
        })
    }
    fn rebuild(&self, _: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        let mini = element_wise_op(&self.mini)
            .with_context(|| format!("unknown element-wise op {}", self.mini))?;
        Ok(Box::new(ElementWiseOp(mini, opt_datum_type(&self.output)?)))
    }
}

/// tract's axis ops: add, remove and move an axis, reshape some.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "axis_op", deny_unknown_fields)]
pub(super) enum AxisRecord {
    Add {
        axis: usize,
    },
    Rm {
        axis: usize,
    },
    Move {
        from: usize,
        to: usize,
    },
    Reshape {
        at: usize,
        from: Vec<String>,
        to: Vec<String>,
    },
}

impl RecordedOp for AxisRecord {
    type Op = AxisOp;
    fn record(op: &AxisOp, scope: &SymbolScope) -> TractResult<Self> {
        Ok(match op {
            AxisOp::Add(axis) => AxisRecord::Add { axis: *axis },
            AxisOp::Rm(axis) => AxisRecord::Rm { axis: *axis },
            AxisOp::Move(from, to) => AxisRecord::Move {
                from: *from,
                to: *to,
            },
            AxisOp::Reshape(at, from, to) => AxisRecord::Reshape {
                at: *at,
                from: dims_text(scope, from)?,
                to: dims_text(scope, to)?,
            },
        })
    }
    fn rebuild(&self, inputs: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        let rank = inputs.rank();
        Ok(Box::new(match self {
            AxisRecord::Add { axis } => {
                inputs.within(*axis, rank + 1)?;
                AxisOp::Add(*axis)
            }
            AxisRecord::Rm { axis } => {
                inputs.within(*axis, rank)?;
                AxisOp::Rm(*axis)
            }
            AxisRecord::Move { from, to } => {
                inputs.within(*from, rank)?;
                inputs.within(*to, rank)?;
                AxisOp::Move(*from, *to)
            }
            AxisRecord::Reshape { at, from, to } => {
                let end = at.checked_add(from.len()).context("reshape overflows")?;
                inputs.within(end, rank + 1)?;
                AxisOp::Reshape(*at, inputs.dims.dims(from)?, inputs.dims.dims(to)?)
            }
        }))
    }
}

/// BERT layout's all-zero `token_type_ids`, shaped like `input_ids`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BroadcastRecord {
    shape: Vec<String>,
}

impl RecordedOp for BroadcastRecord {
    type Op = MultiBroadcastTo;
    fn record(op: &MultiBroadcastTo, scope: &SymbolScope) -> TractResult<Self> {
        Ok(Self {
            shape: dims_text(scope, &op.shape.to_tvec())?,
        })
    }
    fn rebuild(&self, inputs: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        let shape = inputs.dims.dims(&self.shape)?.into_iter().collect();
        Ok(Box::new(MultiBroadcastTo { shape }))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CastRecord {
    to: String,
}

impl RecordedOp for CastRecord {
    type Op = Cast;
    fn record(op: &Cast, _: &SymbolScope) -> TractResult<Self> {
        Ok(Self {
            to: dt_text(op.to)?,
        })
    }
    fn rebuild(&self, _: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        Ok(Box::new(Cast {
            to: datum_type(&self.to)?,
        }))
    }
}

/// Matrix products: `q_output` set for an integer product with its quantization inputs
/// (nine inputs, as tract-onnx wires `MatMulInteger`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EinSumRecord {
    expr: String,
    acc: String,
    q_output: Option<String>,
}

impl RecordedOp for EinSumRecord {
    type Op = EinSum;
    fn record(op: &EinSum, _: &SymbolScope) -> TractResult<Self> {
        let expr = op.axes.to_string();
        einsum_expr(&expr)?;
        Ok(Self {
            expr,
            acc: dt_text(op.operating_dt)?,
            q_output: op.q_params.map(dt_text).transpose()?,
        })
    }
    fn rebuild(&self, _: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        let axes = einsum_expr(&self.expr)?;
        let acc = datum_type(&self.acc)?;
        Ok(Box::new(match opt_datum_type(&self.q_output)? {
            Some(output) => EinSum::newq(axes, acc, output),
            None => EinSum::new(axes, acc),
        }))
    }
    fn inputs(&self) -> usize {
        if self.q_output.is_some() {
            9
        } else {
            2
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GatherRecord {
    axis: usize,
    output: Option<String>,
}

impl RecordedOp for GatherRecord {
    type Op = Gather;
    fn record(op: &Gather, _: &SymbolScope) -> TractResult<Self> {
        Ok(Self {
            axis: op.axis,
            output: op.output_type.map(dt_text).transpose()?,
        })
    }
    fn rebuild(&self, inputs: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        inputs.within(self.axis, inputs.rank())?;
        Ok(Box::new(Gather {
            axis: self.axis,
            output_type: opt_datum_type(&self.output)?,
        }))
    }
    fn inputs(&self) -> usize {
        2
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReduceRecord {
    axes: Vec<usize>,
    reducer: String,
}

fn reducer(name: &str) -> Option<Reducer> {
    Some(match name {
        "Sum" => Reducer::Sum,
        "Max" => Reducer::Max,
        "Min" => Reducer::Min,
        "Prod" => Reducer::Prod,
        "MeanOfSquares" => Reducer::MeanOfSquares,
        _ => return None,
    })
}

impl RecordedOp for ReduceRecord {
    type Op = Reduce;
    fn record(op: &Reduce, _: &SymbolScope) -> TractResult<Self> {
        let name = format!("{:?}", op.reducer);
        ensure!(reducer(&name).is_some(), "reducer {name}");
        Ok(Self {
            axes: op.axes.to_vec(),
            reducer: name,
        })
    }
    fn rebuild(&self, inputs: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        inputs.increasing(&self.axes)?;
        let reducer =
            reducer(&self.reducer).with_context(|| format!("unknown reducer {}", self.reducer))?;
        Ok(Box::new(Reduce::new(
            self.axes.iter().copied().collect(),
            reducer,
        )))
    }
}

/// f32 parameters are stored as their bits: exact, NaN included.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RmsNormRecord {
    axis: usize,
    eps_bits: u32,
}

impl RecordedOp for RmsNormRecord {
    type Op = RmsNorm;
    fn record(op: &RmsNorm, _: &SymbolScope) -> TractResult<Self> {
        ensure!(
            op.eps.datum_type() == f32::datum_type() && op.eps.len() == 1,
            "RmsNorm epsilon {:?}: not one f32",
            op.eps
        );
        Ok(Self {
            axis: op.axis,
            eps_bits: op.eps.cast_to_scalar::<f32>()?.to_bits(),
        })
    }
    fn rebuild(&self, inputs: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        inputs.within(self.axis, inputs.rank())?;
        Ok(Box::new(RmsNorm {
            axis: self.axis,
            eps: tensor0(f32::from_bits(self.eps_bits)).into_arc_tensor(),
        }))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SliceRecord {
    axis: usize,
    start: String,
    end: String,
}

impl RecordedOp for SliceRecord {
    type Op = Slice;
    fn record(op: &Slice, scope: &SymbolScope) -> TractResult<Self> {
        Ok(Self {
            axis: op.axis,
            start: dim_text(scope, &op.start)?,
            end: dim_text(scope, &op.end)?,
        })
    }
    fn rebuild(&self, inputs: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        inputs.within(self.axis, inputs.rank())?;
        Ok(Box::new(Slice {
            axis: self.axis,
            start: inputs.dims.dim(&self.start)?,
            end: inputs.dims.dim(&self.end)?,
        }))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SoftmaxRecord {
    axes: Vec<usize>,
    log: bool,
}

impl RecordedOp for SoftmaxRecord {
    type Op = Softmax;
    fn record(op: &Softmax, _: &SymbolScope) -> TractResult<Self> {
        ensure!(op.quant_output_dt.is_none(), "quantized softmax output");
        Ok(Self {
            axes: op.axes.to_vec(),
            log: op.kind == SoftmaxKind::LogSoftmax,
        })
    }
    fn rebuild(&self, inputs: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        inputs.increasing(&self.axes)?;
        Ok(Box::new(Softmax {
            axes: self.axes.iter().copied().collect(),
            quant_output_dt: None,
            kind: if self.log {
                SoftmaxKind::LogSoftmax
            } else {
                SoftmaxKind::Softmax
            },
        }))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DequantizeRecord {
    scale_bits: u32,
    zero_point: i32,
}

impl RecordedOp for DequantizeRecord {
    type Op = DequantizeLinearF32;
    fn record(op: &DequantizeLinearF32, _: &SymbolScope) -> TractResult<Self> {
        Ok(Self {
            scale_bits: op.scale.to_bits(),
            zero_point: op.zero_point,
        })
    }
    fn rebuild(&self, _: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        Ok(Box::new(DequantizeLinearF32 {
            scale: f32::from_bits(self.scale_bits),
            zero_point: self.zero_point,
        }))
    }
}

/// dotfind's activation quantizer (tract-onnx's own is swapped for it before writing).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DynamicQuantizeRecord {}

impl RecordedOp for DynamicQuantizeRecord {
    type Op = DynamicQuantizeU8;
    fn record(_: &DynamicQuantizeU8, _: &SymbolScope) -> TractResult<Self> {
        Ok(Self {})
    }
    fn rebuild(&self, _: &RebuildInputs) -> TractResult<Box<dyn TypedOp>> {
        Ok(Box::new(DynamicQuantizeU8))
    }
}

/// Numeric types whose raw little-endian bytes are the tensor (no pointers, no quantization):
/// the only constants compiled graphs store.
pub(super) fn is_plain(dt: DatumType) -> bool {
    dt.is_number() && !dt.is_quantized()
}

pub(super) fn plain_datum_type(text: &str) -> TractResult<DatumType> {
    let dt = DatumType::from_str(text)?;
    ensure!(
        is_plain(dt),
        "datum type {text} is not stored in compiled graphs"
    );
    Ok(dt)
}

pub(super) fn datum_type(text: &str) -> TractResult<DatumType> {
    let dt = DatumType::from_str(text)?;
    ensure!(!dt.is_quantized(), "quantized datum type {text}");
    Ok(dt)
}

fn opt_datum_type(text: &Option<String>) -> TractResult<Option<DatumType>> {
    text.as_deref().map(datum_type).transpose()
}

pub(super) fn dt_text(dt: DatumType) -> TractResult<String> {
    ensure!(!dt.is_quantized(), "quantized datum type {dt:?}");
    Ok(format!("{dt:?}"))
}

/// A dimension as tract prints it, checked to parse back to itself (and to be short).
fn dim_text(scope: &SymbolScope, dim: &TDim) -> TractResult<String> {
    let text = dim.to_string();
    ensure!(
        text.len() <= MAX_DIM_TEXT && scope.parse_tdim(&text).ok().as_ref() == Some(dim),
        "dimension {text} does not read back as itself"
    );
    Ok(text)
}

pub(super) fn dims_text(scope: &SymbolScope, dims: &[TDim]) -> TractResult<Vec<String>> {
    ensure!(dims.len() <= MAX_RANK, "rank {}", dims.len());
    dims.iter().map(|d| dim_text(scope, d)).collect()
}

/// Dimension texts read back: parsed in the graph's symbols, with the symbols the caller
/// fixed replaced by their values.
pub(super) struct DimReader {
    pub scope: SymbolScope,
    pub fixed: std::collections::HashMap<Symbol, TDim>,
}

impl DimReader {
    pub fn dim(&self, text: &str) -> TractResult<TDim> {
        // Bounded before tract's recursive parser sees it.
        let longest_number = text
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        ensure!(
            text.len() <= MAX_DIM_TEXT && longest_number <= 12,
            "dimension {text:?} is not one dotfind writes"
        );
        let parsed = self.scope.parse_tdim(text)?;
        if self.fixed.is_empty() {
            return Ok(parsed);
        }
        Ok(parsed.substitute_all(&self.fixed)?.simplify())
    }

    pub fn dims(&self, texts: &[String]) -> TractResult<TVec<TDim>> {
        ensure!(texts.len() <= MAX_RANK, "rank {}", texts.len());
        texts.iter().map(|t| self.dim(t)).collect()
    }
}

/// An einsum expression as dotfind's graphs have them (`amk,kn->amn`): bounded, ASCII
/// letters only, an explicit output (tract's parser asserts on `...`).
fn einsum_expr(text: &str) -> TractResult<AxesMapping> {
    let valid = text.len() <= MAX_EINSUM_TEXT
        && text
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || matches!(b, b',' | b'-' | b'>'))
        && text
            .split_once("->")
            .is_some_and(|(_, out)| !out.is_empty() && !out.contains(['-', '>', ',']));
    ensure!(
        valid,
        "einsum expression {text:?} is not one dotfind writes"
    );
    text.parse()
}
