//! The compiled graph, `model.graph`: a bundle's ONNX graph parsed, typed and decluttered
//! once, offline (`dotfind compile`), and stored node by node as tract built it.
//!
//! Why: in the browser, tract's ONNX parse and type analysis took about 45 % of an int8
//! encoder's start-up, and tract's NNEF form (the previous compiled form) still cost a text
//! parse, a framework with every op's loader, and a declutter to undo what NNEF spells out.
//! This form is the decluttered graph itself: a JSON list of nodes, each one of the ops
//! BERT-family encoders use with its parameters, followed by the constants' raw bytes. The
//! loader wires the same ops in the same order, so plans and every output bit are those of
//! the ONNX route (tested for every bundle kind), and the browser build links neither
//! tract-nnef nor tract-onnx.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! b"DFGRAPH\0" | u32 format version | u32 header length | header (JSON) | constants' bytes
//! ```
//!
//! Large f32 constants whose values are all exact f16 values (the weights a bundle ships as
//! f16) are stored as f16 and widened at load: same f32 bits, half the download.
//!
//! The op set is closed on purpose: `dotfind compile` refuses a graph with any other op, by
//! name, and reads back what it wrote, so no graph fails on a visitor's page instead.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tract_core::internal::*;
use tract_core::ops::array::{Gather, MultiBroadcastTo, Slice};
use tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_core::ops::cast::Cast;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_core::ops::konst::Const;
use tract_core::ops::nn::{Reduce, Reducer, RmsNorm, Softmax, SoftmaxKind};
use tract_core::ops::quant::DequantizeLinearF32;
use tract_core::ops::source::TypedSource;

use crate::int8_graph::DynamicQuantizeU8;

// Constants are written and read as the host lays them out: little-endian, as on every
// target dotfind builds for (x86-64, aarch64, wasm32).
#[cfg(target_endian = "big")]
compile_error!("model.graph stores constants little-endian");

const MAGIC: &[u8; 8] = b"DFGRAPH\0";
/// Bumped on any change to the layout or to how an op is recorded.
pub const FORMAT_VERSION: u32 = 1;
/// f32 constants smaller than this stay f32 (biases, norms: nothing to gain).
const MIN_F16_STORED: usize = 4096;
/// Bounds a reader puts on what it parses, far above any BERT graph's: tensor rank, the
/// length of a dimension's text (tract's parser recurses on it), an einsum expression.
const MAX_RANK: usize = 8;
const MAX_DIM_TEXT: usize = 64;
const MAX_EINSUM_TEXT: usize = 64;

/// The JSON header: symbols, nodes in evaluation order, outputs, constants.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    symbols: Vec<String>,
    /// tract's facts about the symbols (e.g. `sequence>=0`), as it prints them.
    assertions: Vec<String>,
    nodes: Vec<NodeRecord>,
    /// The `Source` nodes, in the graph's input order.
    inputs: Vec<usize>,
    /// (node, output slot) of each graph output.
    outputs: Vec<(usize, usize)>,
    constants: Vec<ConstantRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRecord {
    name: String,
    op: OpRecord,
    /// (earlier node, output slot) per input.
    inputs: Vec<(usize, usize)>,
}

/// Where a constant's bytes are, after the header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstantRecord {
    datum_type: String,
    shape: Vec<usize>,
    /// Set when an f32 constant is stored as f16 (every value exact in f16).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    f16_stored: bool,
    offset: usize,
    bytes: usize,
}

/// One op and its parameters. Datum types and dimensions are written as tract prints
/// them (`F32`, `sequence`) and parsed back with tract's parsers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", deny_unknown_fields)]
enum OpRecord {
    Source {
        datum_type: String,
        shape: Vec<String>,
    },
    Const {
        constant: usize,
    },
    Binary {
        mini: String,
        output: Option<String>,
    },
    ElementWise {
        mini: String,
        output: Option<String>,
    },
    AddAxis {
        axis: usize,
    },
    RmAxis {
        axis: usize,
    },
    MoveAxis {
        from: usize,
        to: usize,
    },
    Reshape {
        at: usize,
        from: Vec<String>,
        to: Vec<String>,
    },
    /// BERT layout's all-zero `token_type_ids`, shaped like `input_ids`.
    BroadcastTo {
        shape: Vec<String>,
    },
    Cast {
        to: String,
    },
    EinSum {
        expr: String,
        acc: String,
        q_output: Option<String>,
    },
    Gather {
        axis: usize,
        output: Option<String>,
    },
    Reduce {
        axes: Vec<usize>,
        reducer: String,
    },
    /// f32 parameters are stored as their bits: exact, NaN included.
    RmsNorm {
        axis: usize,
        eps_bits: u32,
    },
    Slice {
        axis: usize,
        start: String,
        end: String,
    },
    Softmax {
        axes: Vec<usize>,
        log: bool,
    },
    DequantizeLinearF32 {
        scale_bits: u32,
        zero_point: i32,
    },
    DynamicQuantizeU8,
}

/// Binary ops a BERT graph uses, by tract's name for them.
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

/// Element-wise functions of BERT graphs' activations and normalizations.
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

/// Numeric types whose raw little-endian bytes are the tensor (no pointers, no quantization):
/// the only constants compiled graphs store.
fn is_plain(dt: DatumType) -> bool {
    dt.is_number() && !dt.is_quantized()
}

fn plain_datum_type(text: &str) -> TractResult<DatumType> {
    let dt = DatumType::from_str(text)?;
    ensure!(
        is_plain(dt),
        "datum type {text} is not stored in compiled graphs"
    );
    Ok(dt)
}

fn datum_type(text: &str) -> TractResult<DatumType> {
    let dt = DatumType::from_str(text)?;
    ensure!(!dt.is_quantized(), "quantized datum type {text}");
    Ok(dt)
}

fn opt_datum_type(text: &Option<String>) -> TractResult<Option<DatumType>> {
    text.as_deref().map(datum_type).transpose()
}

fn dt_text(dt: DatumType) -> TractResult<String> {
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

fn dims_text(scope: &SymbolScope, dims: &[TDim]) -> TractResult<Vec<String>> {
    ensure!(dims.len() <= MAX_RANK, "rank {}", dims.len());
    dims.iter().map(|d| dim_text(scope, d)).collect()
}

/// A dimension's text, bounded before tract's recursive parser sees it.
fn dim(scope: &SymbolScope, text: &str) -> TractResult<TDim> {
    let longest_number = text
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    ensure!(
        text.len() <= MAX_DIM_TEXT && longest_number <= 12,
        "dimension {text:?} is not one dotfind writes"
    );
    scope.parse_tdim(text)
}

/// Dimension texts read back: parsed in the graph's symbols, with the symbols the caller
/// fixed replaced by their values.
struct DimReader {
    scope: SymbolScope,
    fixed: std::collections::HashMap<Symbol, TDim>,
}

impl DimReader {
    fn dim(&self, text: &str) -> TractResult<TDim> {
        let parsed = dim(&self.scope, text)?;
        if self.fixed.is_empty() {
            return Ok(parsed);
        }
        Ok(parsed.substitute_all(&self.fixed)?.simplify())
    }

    fn dims(&self, texts: &[String]) -> TractResult<TVec<TDim>> {
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

/// Whether an f32 constant is worth storing as f16 and loses nothing by it.
fn f16_exact(t: &Tensor) -> bool {
    t.datum_type() == f32::datum_type()
        && t.len() >= MIN_F16_STORED
        && t.try_as_plain_ram()
            .and_then(|r| r.as_slice::<f32>())
            .is_ok_and(|v| {
                v.iter()
                    .all(|&x| f16::from_f32(x).to_f32().to_bits() == x.to_bits())
            })
}

/// Records `node`'s op, storing any constant in `constants`/`data`.
fn record(
    scope: &SymbolScope,
    node: &TypedNode,
    constants: &mut Vec<ConstantRecord>,
    data: &mut Vec<u8>,
) -> TractResult<OpRecord> {
    if let Some(source) = node.op_as::<TypedSource>() {
        return Ok(OpRecord::Source {
            datum_type: dt_text(source.fact.datum_type)?,
            shape: dims_text(scope, &source.fact.shape.to_tvec())?,
        });
    }
    if let Some(konst) = node.op_as::<Const>() {
        ensure!(
            konst.exotic_fact().is_none(),
            "constant with an exotic fact"
        );
        let tensor = konst.val();
        let dt = tensor.datum_type();
        ensure!(
            is_plain(dt) && tensor.rank() <= MAX_RANK,
            "constant of {dt:?}, rank {}",
            tensor.rank()
        );
        let narrowed = if f16_exact(tensor) {
            Some(tensor.cast_to::<f16>()?)
        } else {
            None
        };
        let bytes = narrowed.as_deref().unwrap_or(tensor).as_bytes();
        constants.push(ConstantRecord {
            datum_type: dt_text(dt)?,
            shape: tensor.shape().to_vec(),
            f16_stored: narrowed.is_some(),
            offset: data.len(),
            bytes: bytes.len(),
        });
        data.extend_from_slice(bytes);
        return Ok(OpRecord::Const {
            constant: constants.len() - 1,
        });
    }
    if let Some(bin) = node.op_as::<TypedBinOp>() {
        let mini = bin.0.name().to_string();
        ensure!(binary_op(&mini).is_some(), "binary op {mini}");
        return Ok(OpRecord::Binary {
            mini,
            output: bin.1.map(dt_text).transpose()?,
        });
    }
    if let Some(ew) = node.op_as::<ElementWiseOp>() {
        let mini = ew.0.name();
        ensure!(element_wise_op(&mini).is_some(), "element-wise op {mini}");
        return Ok(OpRecord::ElementWise {
            mini,
            output: ew.1.map(dt_text).transpose()?,
        });
    }
    if let Some(axis_op) = node.op_as::<AxisOp>() {
        return Ok(match axis_op {
            AxisOp::Add(axis) => OpRecord::AddAxis { axis: *axis },
            AxisOp::Rm(axis) => OpRecord::RmAxis { axis: *axis },
            AxisOp::Move(from, to) => OpRecord::MoveAxis {
                from: *from,
                to: *to,
            },
            AxisOp::Reshape(at, from, to) => OpRecord::Reshape {
                at: *at,
                from: dims_text(scope, from)?,
                to: dims_text(scope, to)?,
            },
        });
    }
    if let Some(broadcast) = node.op_as::<MultiBroadcastTo>() {
        return Ok(OpRecord::BroadcastTo {
            shape: dims_text(scope, &broadcast.shape.to_tvec())?,
        });
    }
    if let Some(cast) = node.op_as::<Cast>() {
        return Ok(OpRecord::Cast {
            to: dt_text(cast.to)?,
        });
    }
    if let Some(einsum) = node.op_as::<EinSum>() {
        return Ok(OpRecord::EinSum {
            expr: {
                let expr = einsum.axes.to_string();
                einsum_expr(&expr)?;
                expr
            },
            acc: dt_text(einsum.operating_dt)?,
            q_output: einsum.q_params.map(dt_text).transpose()?,
        });
    }
    if let Some(gather) = node.op_as::<Gather>() {
        return Ok(OpRecord::Gather {
            axis: gather.axis,
            output: gather.output_type.map(dt_text).transpose()?,
        });
    }
    if let Some(reduce) = node.op_as::<Reduce>() {
        let name = format!("{:?}", reduce.reducer);
        ensure!(reducer(&name).is_some(), "reducer {name}");
        return Ok(OpRecord::Reduce {
            axes: reduce.axes.to_vec(),
            reducer: name,
        });
    }
    if let Some(norm) = node.op_as::<RmsNorm>() {
        ensure!(
            norm.eps.datum_type() == f32::datum_type() && norm.eps.len() == 1,
            "RmsNorm epsilon {:?}: not one f32",
            norm.eps
        );
        return Ok(OpRecord::RmsNorm {
            axis: norm.axis,
            eps_bits: norm.eps.cast_to_scalar::<f32>()?.to_bits(),
        });
    }
    if let Some(slice) = node.op_as::<Slice>() {
        return Ok(OpRecord::Slice {
            axis: slice.axis,
            start: dim_text(scope, &slice.start)?,
            end: dim_text(scope, &slice.end)?,
        });
    }
    if let Some(softmax) = node.op_as::<Softmax>() {
        ensure!(
            softmax.quant_output_dt.is_none(),
            "quantized softmax output"
        );
        return Ok(OpRecord::Softmax {
            axes: softmax.axes.to_vec(),
            log: softmax.kind == SoftmaxKind::LogSoftmax,
        });
    }
    if let Some(dq) = node.op_as::<DequantizeLinearF32>() {
        return Ok(OpRecord::DequantizeLinearF32 {
            scale_bits: dq.scale.to_bits(),
            zero_point: dq.zero_point,
        });
    }
    if node.op_is::<DynamicQuantizeU8>() {
        return Ok(OpRecord::DynamicQuantizeU8);
    }
    bail!("op {}", node.op.name())
}

/// The op `record` describes, checked against its inputs' facts and rebuilt. The checks are
/// those tract's ops assume (input counts, axes within rank): a record that breaks them is
/// an error here instead of a panic inside tract.
fn rebuild(
    scope: &DimReader,
    record: &OpRecord,
    inputs: &[&TypedFact],
) -> TractResult<Box<dyn TypedOp>> {
    let count = match record {
        OpRecord::Source { .. } | OpRecord::Const { .. } => 0,
        OpRecord::Binary { .. } | OpRecord::Gather { .. } => 2,
        OpRecord::EinSum { q_output, .. } => {
            if q_output.is_some() {
                9
            } else {
                2
            }
        }
        _ => 1,
    };
    ensure!(
        inputs.len() == count,
        "{} inputs, the op takes {count}",
        inputs.len()
    );
    let rank = inputs.first().map_or(0, |f| f.rank());
    let within = |axis: usize, bound: usize| -> TractResult<()> {
        ensure!(axis < bound, "axis {axis} of a rank-{rank} input");
        Ok(())
    };
    let increasing = |axes: &[usize]| -> TractResult<()> {
        ensure!(!axes.is_empty(), "no axes");
        ensure!(
            axes.windows(2).all(|w| w[0] < w[1]),
            "axes {axes:?} not increasing"
        );
        axes.iter().try_for_each(|&a| within(a, rank))
    };
    Ok(match record {
        OpRecord::Source { .. } | OpRecord::Const { .. } => {
            bail!("sources and constants are wired by the loader")
        }
        OpRecord::Binary { mini, output } => Box::new(TypedBinOp(
            binary_op(mini).with_context(|| format!("unknown binary op {mini}"))?,
            opt_datum_type(output)?,
        )),
        OpRecord::ElementWise { mini, output } => Box::new(ElementWiseOp(
            element_wise_op(mini).with_context(|| format!("unknown element-wise op {mini}"))?,
            opt_datum_type(output)?,
        )),
        OpRecord::AddAxis { axis } => {
            within(*axis, rank + 1)?;
            Box::new(AxisOp::Add(*axis))
        }
        OpRecord::RmAxis { axis } => {
            within(*axis, rank)?;
            Box::new(AxisOp::Rm(*axis))
        }
        OpRecord::MoveAxis { from, to } => {
            within(*from, rank)?;
            within(*to, rank)?;
            Box::new(AxisOp::Move(*from, *to))
        }
        OpRecord::Reshape { at, from, to } => {
            let end = at.checked_add(from.len()).context("reshape overflows")?;
            within(end, rank + 1)?;
            Box::new(AxisOp::Reshape(*at, scope.dims(from)?, scope.dims(to)?))
        }
        OpRecord::BroadcastTo { shape } => Box::new(MultiBroadcastTo {
            shape: scope.dims(shape)?.into_iter().collect(),
        }),
        OpRecord::Cast { to } => Box::new(Cast {
            to: datum_type(to)?,
        }),
        OpRecord::EinSum {
            expr,
            acc,
            q_output,
        } => {
            let axes = einsum_expr(expr)?;
            let acc = datum_type(acc)?;
            Box::new(match opt_datum_type(q_output)? {
                Some(output) => EinSum::newq(axes, acc, output),
                None => EinSum::new(axes, acc),
            })
        }
        OpRecord::Gather { axis, output } => {
            within(*axis, rank)?;
            Box::new(Gather {
                axis: *axis,
                output_type: opt_datum_type(output)?,
            })
        }
        OpRecord::Reduce {
            axes,
            reducer: name,
        } => {
            increasing(axes)?;
            Box::new(Reduce::new(
                axes.iter().copied().collect(),
                reducer(name).with_context(|| format!("unknown reducer {name}"))?,
            ))
        }
        OpRecord::RmsNorm { axis, eps_bits } => {
            within(*axis, rank)?;
            Box::new(RmsNorm {
                axis: *axis,
                eps: tensor0(f32::from_bits(*eps_bits)).into_arc_tensor(),
            })
        }
        OpRecord::Slice { axis, start, end } => {
            within(*axis, rank)?;
            Box::new(Slice {
                axis: *axis,
                start: scope.dim(start)?,
                end: scope.dim(end)?,
            })
        }
        OpRecord::Softmax { axes, log } => {
            increasing(axes)?;
            Box::new(Softmax {
                axes: axes.iter().copied().collect(),
                quant_output_dt: None,
                kind: if *log {
                    SoftmaxKind::LogSoftmax
                } else {
                    SoftmaxKind::Softmax
                },
            })
        }
        OpRecord::DequantizeLinearF32 {
            scale_bits,
            zero_point,
        } => Box::new(DequantizeLinearF32 {
            scale: f32::from_bits(*scale_bits),
            zero_point: *zero_point,
        }),
        OpRecord::DynamicQuantizeU8 => Box::new(DynamicQuantizeU8),
    })
}

/// Whether `bytes` start like a compiled graph.
pub fn is_compiled(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// A decluttered graph in dotfind's compiled form; the same graph gives the same bytes.
/// Fails, naming the node and op, on an op outside the set BERT-family encoders use.
pub fn write(decluttered: &TypedModel) -> TractResult<Vec<u8>> {
    let scope = &decluttered.symbols;
    let order = decluttered.eval_order()?;
    let mut position = vec![usize::MAX; decluttered.nodes().len()];
    let mut constants = Vec::new();
    let mut data = Vec::new();
    let mut nodes = Vec::with_capacity(order.len());
    for (at, &id) in order.iter().enumerate() {
        let node = decluttered.node(id);
        position[id] = at;
        let op = record(scope, node, &mut constants, &mut data).with_context(|| {
            format!(
                "node {:?}: dotfind compiles the ops of BERT-family encoders only, not this",
                node.name
            )
        })?;
        let inputs = node
            .inputs
            .iter()
            .map(|i| (position[i.node], i.slot))
            .collect();
        nodes.push(NodeRecord {
            name: node.name.clone(),
            op,
            inputs,
        });
    }
    let inputs = decluttered
        .inputs
        .iter()
        .map(|i| {
            let at = position[i.node];
            ensure!(
                at != usize::MAX,
                "input {:?} feeds no output",
                decluttered.node(i.node).name
            );
            Ok(at)
        })
        .collect::<TractResult<_>>()?;
    let outputs = decluttered
        .outputs
        .iter()
        .map(|o| (position[o.node], o.slot))
        .collect();
    // In interning order, which fixes how tract orders the terms of dimensions.
    let symbols = scope.all_symbols().iter().map(|s| s.to_string()).collect();
    ensure!(
        scope.all_scenarios().into_iter().next().is_none(),
        "graphs with symbol scenarios are not compiled"
    );
    let assertions = scope
        .all_assertions()
        .iter()
        .map(|a| a.to_string())
        .collect();
    let header = serde_json::to_vec(&Header {
        symbols,
        assertions,
        nodes,
        inputs,
        outputs,
        constants,
    })?;
    let mut out = Vec::with_capacity(16 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&u32::try_from(header.len())?.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Reads a compiled graph back: the decluttered graph `write` was given. Malformed input is
/// an error, never a panic or an allocation out of proportion to the file.
pub fn read(bytes: &[u8]) -> TractResult<TypedModel> {
    read_fixing(bytes, &[])
}

/// As [`read`], with some of the graph's symbols fixed to values (e.g. `batch` = 1), so
/// that tract plans it for those sizes only: fewer symbols make its optimizer much faster
/// (`batch` = 1 halves it). Symbols the graph does not have are ignored.
pub fn read_fixing(bytes: &[u8], fixed: &[(&str, i64)]) -> TractResult<TypedModel> {
    ensure!(
        is_compiled(bytes),
        "not a dotfind compiled graph (`dotfind compile` writes this file)"
    );
    let word = |at: usize| -> TractResult<u32> {
        let b = bytes.get(at..at + 4).context("truncated header")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let version = word(8)?;
    ensure!(
        version == FORMAT_VERSION,
        "compiled graph format {version}, this dotfind reads {FORMAT_VERSION}: run `dotfind compile` again"
    );
    let header_end = usize::try_from(word(12)?)
        .ok()
        .and_then(|len| len.checked_add(16))
        .filter(|&end| end <= bytes.len())
        .context("truncated header")?;
    let header: Header =
        serde_json::from_slice(&bytes[16..header_end]).context("compiled graph header")?;
    let data = &bytes[header_end..];

    // Constants lie end to end, in order, each used by one node: the bytes bound the work.
    let mut next = 0usize;
    for (i, c) in header.constants.iter().enumerate() {
        ensure!(
            c.offset == next,
            "constant {i} is not where the previous one ends"
        );
        next = c
            .offset
            .checked_add(c.bytes)
            .context("constant sizes overflow")?;
    }
    ensure!(
        next == data.len(),
        "constants take {next} bytes, the file has {}",
        data.len()
    );
    let mut constant_used = vec![false; header.constants.len()];

    let mut model = TypedModel::default();
    let mut names = std::collections::HashSet::new();
    for symbol in &header.symbols {
        ensure!(names.insert(symbol.as_str()), "symbol {symbol} twice");
        model.symbols.sym(symbol);
    }
    for assertion in &header.assertions {
        ensure!(assertion.len() <= 4 * MAX_DIM_TEXT, "assertion too long");
        model.symbols.add_assertion(assertion)?;
    }
    let scope = DimReader {
        scope: model.symbols.clone(),
        fixed: fixed
            .iter()
            .filter(|(name, _)| header.symbols.iter().any(|s| s == name))
            .map(|&(name, value)| (model.symbols.sym(name), TDim::Val(value)))
            .collect(),
    };
    names.clear();
    let mut outlets: Vec<TVec<OutletId>> = Vec::with_capacity(header.nodes.len());
    let mut sources = Vec::new();
    for (at, node) in header.nodes.iter().enumerate() {
        let wired = (|| -> TractResult<TVec<OutletId>> {
            ensure!(
                names.insert(node.name.as_str()),
                "a second node of this name"
            );
            let inputs = node
                .inputs
                .iter()
                .map(|&(n, slot)| {
                    recorded_outlet(&outlets, n, slot)
                        .with_context(|| format!("input ({n}, {slot}) is not an earlier output"))
                })
                .collect::<TractResult<TVec<OutletId>>>()?;
            // Nodes are added as recorded: `wire_node` would merge equal constants and
            // evaluate ops on small constant inputs while reading.
            let (op, facts): (Box<dyn TypedOp>, TVec<TypedFact>) = match &node.op {
                OpRecord::Source {
                    datum_type: dt,
                    shape,
                } => {
                    ensure!(inputs.is_empty(), "a source with inputs");
                    let fact = datum_type(dt)?.fact(&*scope.dims(shape)?);
                    sources.push(at);
                    return Ok(tvec!(model.add_source(&node.name, fact)?));
                }
                OpRecord::Const { constant } => {
                    ensure!(inputs.is_empty(), "a constant with inputs");
                    let used = constant_used
                        .get_mut(*constant)
                        .with_context(|| format!("no constant {constant}"))?;
                    ensure!(!*used, "constant {constant} used twice");
                    *used = true;
                    let tensor = constant_tensor(&header.constants[*constant], data)?;
                    let op = Const::new(tensor.into_arc_tensor())?;
                    let facts = op.output_facts(&[])?;
                    (Box::new(op), facts)
                }
                other => {
                    let facts = inputs
                        .iter()
                        .map(|o| model.outlet_fact(*o).cloned())
                        .collect::<TractResult<TVec<TypedFact>>>()?;
                    let facts: TVec<&TypedFact> = facts.iter().collect();
                    let op = rebuild(&scope, other, &facts)?;
                    let outputs = op.output_facts(&facts)?;
                    (op, outputs)
                }
            };
            let slots = facts.len();
            let id = model.add_node(&node.name, op, facts)?;
            for (slot, &input) in inputs.iter().enumerate() {
                model.add_edge(input, InletId::new(id, slot))?;
            }
            Ok((0..slots).map(|slot| OutletId::new(id, slot)).collect())
        })()
        .with_context(|| format!("node {at} ({:?})", node.name))?;
        outlets.push(wired);
    }
    ensure!(constant_used.iter().all(|&u| u), "a constant no node uses");
    let mut inputs = header.inputs.clone();
    inputs.sort_unstable();
    ensure!(
        inputs == sources,
        "graph inputs {:?} are not the source nodes {sources:?}",
        header.inputs
    );
    let inputs = header
        .inputs
        .iter()
        .map(|&n| outlets[n][0])
        .collect::<TVec<OutletId>>();
    model.set_input_outlets(&inputs)?;
    let outputs = header
        .outputs
        .iter()
        .map(|&(n, slot)| {
            recorded_outlet(&outlets, n, slot)
                .with_context(|| format!("output ({n}, {slot}) is not a node output"))
        })
        .collect::<TractResult<TVec<OutletId>>>()?;
    model.select_output_outlets(&outputs)?;
    Ok(model)
}

/// Output `slot` of the `n`th node read so far, if there is one.
fn recorded_outlet(outlets: &[TVec<OutletId>], n: usize, slot: usize) -> Option<OutletId> {
    outlets.get(n)?.get(slot).copied()
}

/// The constant `record` describes, from the bytes after the header.
fn constant_tensor(record: &ConstantRecord, data: &[u8]) -> TractResult<Tensor> {
    let dt = plain_datum_type(&record.datum_type)?;
    let stored_dt = if record.f16_stored {
        ensure!(dt == f32::datum_type(), "f16-stored {dt:?} constant");
        f16::datum_type()
    } else {
        dt
    };
    ensure!(
        record.shape.len() <= MAX_RANK,
        "rank {}",
        record.shape.len()
    );
    // Every dimension counted at least once, so no extent is absurd even in an empty tensor.
    let extent = record
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d.max(1)))
        .filter(|&n| n <= isize::MAX as usize);
    ensure!(
        extent.is_some(),
        "constant shape {:?} overflows",
        record.shape
    );
    let bytes = &data[record.offset..record.offset + record.bytes];
    let len = record
        .shape
        .iter()
        .product::<usize>()
        .checked_mul(stored_dt.size_of())
        .context("constant's shape overflows")?;
    ensure!(
        len == bytes.len(),
        "constant of shape {:?} has {} bytes",
        record.shape,
        bytes.len()
    );
    if !record.f16_stored {
        // SAFETY: `dt` is a plain number type (any bytes are a valid value), and `from_raw_dt`
        // checks that `bytes` is exactly the tensor's size. No zero fill first: a model's
        // constants are most of its bytes.
        return unsafe { Tensor::from_raw_dt(dt, &record.shape, bytes) };
    }
    // SAFETY: f32 (checked above) has no invalid bit pattern, and every element is written
    // below: `len` (the element count × 2) equals `bytes.len()`, two bytes per element.
    let mut tensor = unsafe { Tensor::uninitialized_dt(dt, &record.shape)? };
    let mut wide = tensor.try_as_plain_ram_mut()?;
    // In chunks, one call each: V8 optimizes a wasm function for its next calls, never
    // in the middle of one, so a single call over millions of values would run entirely
    // in its baseline tier.
    const CHUNK: usize = 1 << 14;
    for (xs, halves) in wide
        .as_slice_mut::<f32>()?
        .chunks_mut(CHUNK)
        .zip(bytes.chunks(2 * CHUNK))
    {
        widen_f16_chunk(xs, halves);
    }
    Ok(tensor)
}

/// `halves` (little-endian f16 bits) widened into `xs`.
#[inline(never)]
fn widen_f16_chunk(xs: &mut [f32], halves: &[u8]) {
    for (x, half) in xs.iter_mut().zip(halves.chunks_exact(2)) {
        *x = widen_f16(u16::from_le_bytes([half[0], half[1]]));
    }
}

/// f16 bits → the same value as f32, bit for bit what `half` gives (NaNs made quiet, as it
/// makes them), but branch-free so that the loop over a weight matrix vectorizes: in wasm,
/// `half` converts one value at a time in software, which was most of the time a partly-f16
/// bundle took to load (47 of ~60 ms reading the demo's model, profiled in Chromium; with
/// this and the chunked calls, its start-up median went 464 → 414 ms over 6 runs each).
fn widen_f16(bits: u16) -> f32 {
    const INF_OR_NAN: u32 = 0x7c00 << 13;
    let h = u32::from(bits);
    let sign = (h & 0x8000) << 16;
    let magnitude = (h & 0x7fff) << 13;
    // As f32 bits, `magnitude` is the value scaled by 2^-112 (normals and subnormals alike);
    // multiplying by 2^112 (f32 bits 0x7780_0000) rescales it exactly.
    let finite = (f32::from_bits(magnitude) * f32::from_bits(0x7780_0000)).to_bits();
    let quiet = if magnitude > INF_OR_NAN {
        0x0040_0000
    } else {
        0
    };
    let special = 0x7f80_0000 | magnitude | quiet;
    f32::from_bits(
        sign | if magnitude >= INF_OR_NAN {
            special
        } else {
            finite
        },
    )
}

/// Compiles the bundle in `dir`: writes `model.graph` from its (verified) `model.onnx`
/// and records it in `dotfind-model.json`, after which every loader uses it. Idempotent:
/// the same bundle and dotfind version give the same bytes. Returns the new file's entry.
#[cfg(not(target_arch = "wasm32"))]
pub fn compile_bundle(dir: &std::path::Path) -> crate::Result<crate::bundle::FileEntry> {
    use crate::bundle::{
        read_bundle_file, BundleManifest, Digest, FileEntry, ModelBundle, COMPILED_MODEL_FILE,
        MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE,
    };
    use crate::error::Error;

    let previous = BundleManifest::from_json(&read_bundle_file(dir, MANIFEST_FILE)?)?;
    let mut manifest = previous.clone();
    let onnx = read_bundle_file(dir, MODEL_FILE)?;
    let tokenizer = read_bundle_file(dir, TOKENIZER_FILE)?;
    // Checked against what the descriptor recorded, then recorded with both digests (a
    // descriptor written before dotfind recorded xxh3-128 gains it here).
    for (file, bytes) in [(MODEL_FILE, &onnx), (TOKENIZER_FILE, &tokenizer)] {
        previous.files[file].verify(file, bytes)?;
        manifest.files.insert(file.into(), FileEntry::of(bytes));
    }
    let mut graph = crate::encode::decluttered_graph(MODEL_FILE, &onnx)?;
    // tract-onnx's activation quantizer is not in the compiled op set; dotfind's drop-in is.
    crate::int8_graph::use_fast_dynamic_quantize(&mut graph);
    let invalid = |e: TractError| Error::InvalidModel {
        file: MODEL_FILE.into(),
        reason: format!("cannot compile: {e:#}"),
    };
    let compiled = write(&graph).map_err(invalid)?;
    read(&compiled)
        .and_then(|back| check_same_graph(&graph, &back))
        .map_err(invalid)?;
    let entry = FileEntry::of(&compiled);
    manifest
        .files
        .insert(COMPILED_MODEL_FILE.into(), entry.clone());
    // The previous compiled form (tract's NNEF), which this dotfind no longer reads.
    let legacy = manifest.files.remove(LEGACY_COMPILED_FILE).is_some();
    let descriptor_bytes = |m: &BundleManifest| -> crate::Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(m)
            .map_err(|e| Error::io(dir.join(MANIFEST_FILE), std::io::Error::other(e)))?;
        bytes.push(b'\n');
        Ok(bytes)
    };
    let descriptor = descriptor_bytes(&manifest)?;
    // What browsers will load must load, as the bundle it will be: an encoder is built from
    // it here (inputs, output, hidden size checked), so a bad graph fails now, not on a
    // visitor's page, and nothing is written.
    // The graph's digest is the one just computed from these bytes; the tokenizer was checked.
    let digests = [
        Digest::Sha256(entry.sha256.clone()),
        Digest::Sha256(manifest.files[TOKENIZER_FILE].sha256.clone()),
    ];
    let bundle = ModelBundle::from_bytes_with_digests(&descriptor, compiled, tokenizer, &digests)?;
    crate::encode::Encoder::new(&bundle)?;
    // And as the browser plans it (dotfind's int8 kernels instead of tract's, one text per run).
    crate::encode::Encoder::with_plan(
        &bundle,
        crate::encode::Int8Plan::OwnKernel,
        crate::encode::PlanBatch::One,
    )?;
    let compiled = bundle.model;
    // Each file by rename, in an order where a crash at any point leaves a bundle that loads:
    // a descriptor vouching for no compiled graph (when the old one vouched for one, whose
    // bytes are about to change), the graph, then the descriptor that vouches for it.
    let write_file = |file: &str, bytes: &[u8]| -> crate::Result<()> {
        let path = dir.join(file);
        let tmp = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    };
    if previous.files.contains_key(COMPILED_MODEL_FILE) {
        let mut uncompiled = previous.clone();
        uncompiled.files.remove(COMPILED_MODEL_FILE);
        write_file(MANIFEST_FILE, &descriptor_bytes(&uncompiled)?)?;
    }
    write_file(COMPILED_MODEL_FILE, &compiled)?;
    write_file(MANIFEST_FILE, &descriptor)?;
    if legacy {
        let path = dir.join(LEGACY_COMPILED_FILE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&path, e)),
            _ => {}
        }
    }
    Ok(entry)
}

/// What `dotfind compile` wrote before this format: tract's NNEF form, removed on recompile.
#[cfg(not(target_arch = "wasm32"))]
const LEGACY_COMPILED_FILE: &str = "model.nnef.tar";

/// Checks that `back` (read from what `write` made of `graph`) is `graph`: same ops with
/// the same parameters (tract's op equality: constants compared whole), wired the same, with
/// the same facts, node for node; same inputs, outputs and symbol assertions.
#[cfg(not(target_arch = "wasm32"))]
fn check_same_graph(graph: &TypedModel, back: &TypedModel) -> TractResult<()> {
    let order = graph.eval_order()?;
    ensure!(
        order.len() == back.nodes().len(),
        "{} nodes written, {} read",
        order.len(),
        back.nodes().len()
    );
    let mut position = vec![usize::MAX; graph.nodes().len()];
    for (at, &id) in order.iter().enumerate() {
        position[id] = at;
        let (a, b) = (graph.node(id), back.node(at));
        let inputs: Vec<(usize, usize)> = a
            .inputs
            .iter()
            .map(|i| (position[i.node], i.slot))
            .collect();
        let back_inputs: Vec<(usize, usize)> = b.inputs.iter().map(|i| (i.node, i.slot)).collect();
        let facts = |n: &TypedNode| {
            n.outputs
                .iter()
                .map(|o| format!("{:?}", o.fact))
                .collect::<Vec<_>>()
        };
        ensure!(
            a.op == b.op && inputs == back_inputs && facts(a) == facts(b),
            "node {:?} reads back as {:?} (inputs {inputs:?} vs {back_inputs:?}, facts {:?} vs {:?})",
            a,
            b,
            facts(a),
            facts(b)
        );
    }
    let moved = |outlets: &[OutletId]| -> Vec<(usize, usize)> {
        outlets.iter().map(|o| (position[o.node], o.slot)).collect()
    };
    let same = |outlets: &[OutletId]| -> Vec<(usize, usize)> {
        outlets.iter().map(|o| (o.node, o.slot)).collect()
    };
    ensure!(
        moved(&graph.inputs) == same(&back.inputs) && moved(&graph.outputs) == same(&back.outputs),
        "graph inputs or outputs read back differently"
    );
    let assertions = |m: &TypedModel| -> Vec<String> {
        m.symbols
            .all_assertions()
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    ensure!(
        assertions(graph) == assertions(back),
        "symbol assertions read back differently"
    );
    Ok(())
}

// Writing compiled graphs is native-only, and so are these round trips.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tract_core::ops::nn::GeluExact;

    /// x (f32) → GELU → dotfind's quantizer → its u8 output and an int8 table's
    /// dequantization with a scale whose decimal form needs all its digits.
    fn tiny_graph() -> TypedModel {
        let mut model = TypedModel::default();
        let batch = model.symbols.sym("batch");
        let x = model
            .add_source("x", f32::fact([batch.to_dim(), 3.to_dim()]))
            .unwrap();
        let gelu = model
            .wire_node("gelu", ElementWiseOp(Box::new(GeluExact {}), None), &[x])
            .unwrap();
        let q = model
            .wire_node("quantize", DynamicQuantizeU8, &gelu)
            .unwrap();
        let scale = 0.1f32 + f32::EPSILON * 3.0;
        let op = DequantizeLinearF32 {
            scale,
            zero_point: 131,
        };
        let y = model.wire_node("dequantize", op, &[q[0]]).unwrap();
        model.select_output_outlets(&[y[0], q[1]]).unwrap();
        model
    }

    fn run(model: TypedModel, x: Tensor) -> TVec<TValue> {
        model.into_runnable().unwrap().run(tvec![x.into()]).unwrap()
    }

    #[test]
    fn dotfind_ops_survive_the_round_trip_bit_for_bit() {
        let bytes = write(&tiny_graph()).unwrap();
        assert!(is_compiled(&bytes));
        assert_eq!(write(&tiny_graph()).unwrap(), bytes, "deterministic bytes");
        let loaded = read(&bytes).unwrap();
        check_same_graph(&tiny_graph(), &loaded).unwrap();
        let x = tensor2(&[[-3.0f32, -0.5, 0.0], [0.25, 1.5, 7.0]]);
        assert_eq!(run(loaded, x.clone()), run(tiny_graph(), x));
    }

    /// x (f32, [1, 64]) · w ([64, 64] f32 constant) + b, with `w` f16-exact or not.
    fn linear_graph(f16_exact: bool) -> TypedModel {
        use tract_core::ops::math::Add;
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 64])).unwrap();
        let values: Vec<f32> = (0..64 * 64)
            .map(|i| {
                let v = ((i * 37) % 101) as f32 / 7.0 - 7.0;
                if f16_exact {
                    f16::from_f32(v).to_f32()
                } else {
                    v
                }
            })
            .collect();
        let w = model
            .add_const("w", tensor1(&values).into_shape(&[64, 64]).unwrap())
            .unwrap();
        let b = model.add_const("b", tensor2(&[[0.5f32; 64]])).unwrap();
        let op = EinSum::new("mk,kn->mn".parse().unwrap(), f32::datum_type());
        let y = model.wire_node("matmul", op, &[x, w]).unwrap();
        let y = model
            .wire_node("bias", TypedBinOp(Box::new(Add), None), &[y[0], b])
            .unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    #[test]
    fn f16_exact_weights_are_stored_as_f16_and_load_as_the_same_f32() {
        let exact = write(&linear_graph(true)).unwrap();
        let inexact = write(&linear_graph(false)).unwrap();
        // 4096 weights at 2 bytes instead of 4 (less a few header bytes that say so); the
        // 64-value bias stays f32.
        let saved = inexact.len() - exact.len();
        assert!((8192 - 32..8192).contains(&saved), "{saved}");
        for (f16_exact, bytes) in [(true, &exact), (false, &inexact)] {
            let loaded = read(bytes).unwrap();
            check_same_graph(&linear_graph(f16_exact), &loaded).unwrap();
            let x = tensor2(&[[0.25f32; 64]]);
            assert_eq!(run(loaded, x.clone()), run(linear_graph(f16_exact), x));
        }
    }

    /// BERT layout's `token_type_ids`: zeros shaped like the symbolic input, then gathered.
    #[test]
    fn symbolic_broadcasts_survive_the_round_trip() {
        let graph = || {
            let mut model = TypedModel::default();
            let [batch, sequence] = ["batch", "sequence"].map(|s| model.symbols.sym(s).to_dim());
            let ids = model
                .add_source("ids", i64::fact([batch.clone(), sequence.clone()]))
                .unwrap();
            let zero = model.add_const("zero", tensor2(&[[0i64]])).unwrap();
            let shape: ShapeFact = [batch, sequence].into_iter().collect();
            let zeros = model
                .wire_node("zeros", MultiBroadcastTo { shape }, &[zero])
                .unwrap();
            let table = model
                .add_const("table", tensor2(&[[1.5f32, -2.0], [3.0, 4.0]]))
                .unwrap();
            let op = Gather {
                axis: 0,
                output_type: None,
            };
            let rows = model.wire_node("rows", op, &[table, zeros[0]]).unwrap();
            // The input is an output too, so the plan takes it (and binds the symbols).
            model.select_output_outlets(&[rows[0], ids]).unwrap();
            model
        };
        let bytes = write(&graph()).unwrap();
        let loaded = read(&bytes).unwrap();
        check_same_graph(&graph(), &loaded).unwrap();
        let ids = tensor2(&[[7i64, 8, 9], [1, 2, 3]]);
        assert_eq!(run(loaded, ids.clone()), run(graph(), ids));

        // `batch` fixed (and a symbol the graph lacks ignored): every shape that had it has 1.
        let fixed = read_fixing(&bytes, &[("batch", 1), ("absent", 3)]).unwrap();
        let shapes: Vec<String> = fixed
            .nodes()
            .iter()
            .map(|n| format!("{:?}", n.outputs[0].fact.shape))
            .collect();
        assert_eq!(
            shapes,
            ["1,1", "1,sequence", "2,2", "1,sequence,2", "1,sequence"]
        );
        let one = tensor2(&[[7i64, 8, 9]]);
        assert_eq!(run(fixed, one.clone()), run(graph(), one));
    }

    #[test]
    fn ops_outside_the_bert_set_are_refused_by_name() {
        use tract_core::ops::math::Sin;
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2])).unwrap();
        let y = model
            .wire_node("wave", ElementWiseOp(Box::new(Sin {}), None), &[x])
            .unwrap();
        model.select_output_outlets(&y).unwrap();
        assert_eq!(
            format!("{:#}", write(&model).unwrap_err()),
            "node \"wave\": dotfind compiles the ops of BERT-family encoders only, not this: \
             element-wise op Sin"
        );
    }

    fn error(bytes: &[u8]) -> String {
        format!("{:#}", read(bytes).unwrap_err())
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let good = write(&linear_graph(false)).unwrap();
        assert_eq!(
            error(b"\x08\x07onnx protobuf"),
            "not a dotfind compiled graph (`dotfind compile` writes this file)"
        );
        assert_eq!(error(&good[..10]), "truncated header");
        assert_eq!(error(&good[..100]), "truncated header");
        let mut version = good.clone();
        version[8] = 9;
        assert_eq!(
            error(&version),
            "compiled graph format 9, this dotfind reads 1: run `dotfind compile` again"
        );
        // The last constant (the bias) cut short.
        assert_eq!(
            error(&good[..good.len() - 4]),
            "constants take 16640 bytes, the file has 16636"
        );
        // A node wired to a later one.
        let header_len = u32::from_le_bytes([good[12], good[13], good[14], good[15]]) as usize;
        let header = std::str::from_utf8(&good[16..16 + header_len]).unwrap();
        let rewired = header.replacen("\"inputs\":[[0,0],[1,0]]", "\"inputs\":[[0,0],[7,0]]", 1);
        assert_ne!(rewired, header);
        let mut bytes = good[..16].to_vec();
        bytes.extend_from_slice(rewired.as_bytes());
        bytes.extend_from_slice(&good[16 + header_len..]);
        assert_eq!(
            error(&bytes),
            "node 2 (\"matmul\"): input (7, 0) is not an earlier output"
        );
    }

    /// `file` with its JSON header edited.
    fn edit_header(file: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
        let len = u32::from_le_bytes([file[12], file[13], file[14], file[15]]) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&file[16..16 + len]).unwrap();
        edit(&mut header);
        let header = serde_json::to_vec(&header).unwrap();
        let mut out = file[..12].to_vec();
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&file[16 + len..]);
        out
    }

    /// Headers no writer makes, each an error naming the problem, none a panic. Nodes of
    /// `linear_graph`: 0 x, 1 w, 2 matmul, 3 b, 4 bias.
    #[test]
    fn malformed_headers_are_errors_not_panics() {
        use serde_json::json;
        let good = write(&linear_graph(false)).unwrap();
        let with_node = |at: usize, node: serde_json::Value| {
            edit_header(&good, move |h| h["nodes"][at] = node.clone())
        };
        let x = json!([[0, 0]]);
        let cases = [
            (
                with_node(4, json!({"name": "bias", "op": {"op": "Binary", "mini": "Add", "output": null}, "inputs": []})),
                "node 4 (\"bias\"): 0 inputs, the op takes 2",
            ),
            (
                with_node(2, json!({"name": "m", "op": {"op": "Reduce", "axes": [99], "reducer": "Sum"}, "inputs": x})),
                "node 2 (\"m\"): axis 99 of a rank-2 input",
            ),
            (
                with_node(2, json!({"name": "m", "op": {"op": "Softmax", "axes": [1, 0], "log": false}, "inputs": x})),
                "node 2 (\"m\"): axes [1, 0] not increasing",
            ),
            (
                with_node(2, json!({"name": "m", "op": {"op": "Reshape", "at": u64::MAX, "from": ["64"], "to": ["8", "8"]}, "inputs": x})),
                "node 2 (\"m\"): reshape overflows",
            ),
            (
                with_node(2, json!({"name": "m", "op": {"op": "Slice", "axis": 5, "start": "0", "end": "1"}, "inputs": x})),
                "node 2 (\"m\"): axis 5 of a rank-2 input",
            ),
            (
                with_node(2, json!({"name": "m", "op": {"op": "EinSum", "expr": "a...b,bc->ac", "acc": "F32", "q_output": null}, "inputs": [[0, 0], [1, 0]]})),
                "node 2 (\"m\"): einsum expression \"a...b,bc->ac\" is not one dotfind writes",
            ),
            (
                with_node(2, json!({"name": "m", "op": {"op": "BroadcastTo", "shape": ["((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1"]}, "inputs": x})),
                "node 2 (\"m\"): dimension \"((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1\" is not one dotfind writes",
            ),
            (
                with_node(3, json!({"name": "b", "op": {"op": "Const", "constant": 0}, "inputs": []})),
                "node 3 (\"b\"): constant 0 used twice",
            ),
            (
                with_node(1, json!({"name": "x", "op": {"op": "Const", "constant": 0}, "inputs": []})),
                "node 1 (\"x\"): a second node of this name",
            ),
            (
                edit_header(&good, |h| h["constants"][1]["offset"] = json!(0)),
                "constant 1 is not where the previous one ends",
            ),
            (
                edit_header(&good, |h| h["constants"][0]["shape"] = json!([0, u64::MAX, u64::MAX])),
                "node 1 (\"w\"): constant shape [0, 18446744073709551615, 18446744073709551615] overflows",
            ),
            (
                edit_header(&good, |h| h["inputs"] = json!([1])),
                "graph inputs [1] are not the source nodes [0]",
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(error(&bytes), expected);
        }
    }

    #[test]
    fn f16_widening_is_halfs_for_every_bit_pattern() {
        for bits in 0..=u16::MAX {
            assert_eq!(
                widen_f16(bits).to_bits(),
                f16::from_bits(bits).to_f32().to_bits(),
                "{bits:#06x}"
            );
        }
    }
}
