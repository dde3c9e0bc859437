//! The compiled graph, `model.graph`: an encoder's graph typed and decluttered by tract once,
//! offline, and stored node by node as tract built it.
//!
//! Why: in the browser, parsing ONNX and tract's type analysis were the largest part of an
//! encoder's start-up, and they link tract-onnx's parser into the module. This form is the
//! decluttered graph itself: a JSON list of nodes, each one of the ops BERT-family encoders
//! use ([`ops`]) with its parameters, followed by the constants' raw bytes. The reader wires
//! the same ops in the same order, so plans and every output bit are those of the graph
//! that was written (tested for every bundle kind), and the browser build links neither
//! tract-nnef nor tract-onnx.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! b"DFGRAPH\0" | u32 format version | u32 header length | header (JSON) | constants' bytes
//! ```
//!
//! Large f32 constants may be stored in a compact [`ValueEncoding`] and expanded at load:
//! by default as f16 where every value is exact in f16 (same bits, half the download);
//! where the writer chooses, as group-wise low-bit codes (lossy: what a browser downloads of
//! a query model), taken column by column for matrices, so that each group runs along the
//! input axis of `x·W`. Large i8 constants (a query model's int8 weight codes) are stored
//! deflated where that is smaller.

mod constants;
mod ops;

use serde::{Deserialize, Serialize};
use tract_core::internal::*;
use tract_core::ops::konst::Const;
use tract_core::ops::source::TypedSource;

use crate::model::storage::ValueEncoding;
use constants::{constant_tensor, deflated, encode_constant, f16_exact, ConstantRecord};
pub use constants::{round_trip_constants, ChooseStorage, StorageChoice};
use ops::{dims_text, dt_text, is_plain, DimReader, OpRecord, RebuildInputs};

// Constants are written and read as the host lays them out: little-endian, as on every
// target dotfind builds for (x86-64, aarch64, wasm32).
#[cfg(target_endian = "big")]
compile_error!("model.graph stores constants little-endian");

const MAGIC: &[u8; 8] = b"DFGRAPH\0";
/// Bumped on any change to the layout or to how an op is recorded.
pub const FORMAT_VERSION: u32 = 4;

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

/// Whether `bytes` start like a compiled graph.
pub fn is_compiled(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Records `node`: a source, a constant (its bytes appended to `data`), or an op of the set.
fn record_node(
    scope: &SymbolScope,
    node: &TypedNode,
    choose: &ChooseStorage<'_>,
    constants: &mut Vec<ConstantRecord>,
    data: &mut Vec<u8>,
) -> TractResult<OpRecord> {
    if let Some(source) = node.op_as::<TypedSource>() {
        return Ok(OpRecord::Source {
            datum_type: dt_text(source.fact.datum_type)?,
            shape: dims_text(scope, &source.fact.shape.to_tvec())?,
        });
    }
    let Some(konst) = node.op_as::<Const>() else {
        return ops::record_op(node.op.as_ref(), scope);
    };
    ensure!(
        konst.exotic_fact().is_none(),
        "constant with an exotic fact"
    );
    let tensor = konst.val();
    let dt = tensor.datum_type();
    ensure!(
        is_plain(dt) && tensor.rank() <= ops::MAX_RANK,
        "constant of {dt:?}, rank {}",
        tensor.rank()
    );
    let choice = choose(node, tensor).or(f16_exact(tensor).then(|| ValueEncoding::F16.into()));
    let encoded = match &choice {
        Some(choice) => encode_constant(tensor, choice)?,
        None => None,
    };
    let stored = encoded.as_deref().unwrap_or(tensor.as_bytes());
    let deflated = match encoded {
        Some(_) => None,
        None => deflated(dt, stored)?,
    };
    let bytes = deflated.as_deref().unwrap_or(stored);
    constants.push(ConstantRecord {
        datum_type: dt_text(dt)?,
        shape: tensor.shape().to_vec(),
        stored_as: encoded
            .is_some()
            .then(|| choice.map(|c| c.encoding))
            .flatten(),
        offset: data.len(),
        bytes: bytes.len(),
        deflated: deflated.is_some(),
    });
    data.extend_from_slice(bytes);
    Ok(OpRecord::Const {
        constant: constants.len() - 1,
    })
}

/// A decluttered graph in dotfind's compiled form; the same graph gives the same bytes.
/// Fails, naming the node and op, on an op outside the set BERT-family encoders use.
pub fn write(decluttered: &TypedModel) -> TractResult<Vec<u8>> {
    write_with(decluttered, &|_, _| None)
}

/// As [`write`], with the constants stored as `choose` says (lossy encodings read back as
/// [`round_trip_constants`] gives them).
pub fn write_with(decluttered: &TypedModel, choose: &ChooseStorage<'_>) -> TractResult<Vec<u8>> {
    let scope = &decluttered.symbols;
    let order = decluttered.eval_order()?;
    let mut position = vec![usize::MAX; decluttered.nodes().len()];
    let mut constants = Vec::new();
    let mut data = Vec::new();
    let mut nodes = Vec::with_capacity(order.len());
    for (at, &id) in order.iter().enumerate() {
        let node = decluttered.node(id);
        position[id] = at;
        let op =
            record_node(scope, node, choose, &mut constants, &mut data).with_context(|| {
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
    ensure!(
        scope.all_scenarios().into_iter().next().is_none(),
        "graphs with symbol scenarios are not compiled"
    );
    let header = Header {
        // In interning order, which fixes how tract orders the terms of dimensions.
        symbols: scope.all_symbols().iter().map(|s| s.to_string()).collect(),
        assertions: scope
            .all_assertions()
            .iter()
            .map(|a| a.to_string())
            .collect(),
        nodes,
        inputs,
        outputs,
        constants,
    };
    let header = serde_json::to_vec(&header)?;
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
/// that tract plans it for those sizes only: fewer symbols make its optimizer much faster.
/// Symbols the graph does not have are ignored.
pub fn read_fixing(bytes: &[u8], fixed: &[(&str, i64)]) -> TractResult<TypedModel> {
    let (header, data) = split_file(bytes)?;
    let mut model = TypedModel::default();
    let dims = declare_symbols(&mut model, &header, fixed)?;
    let mut reader = NodeReader {
        header: &header,
        data,
        dims: &dims,
        constant_used: vec![false; header.constants.len()],
        names: std::collections::HashSet::new(),
        outlets: Vec::with_capacity(header.nodes.len()),
        sources: Vec::new(),
    };
    for (at, node) in header.nodes.iter().enumerate() {
        let wired = reader
            .wire(&mut model, at, node)
            .with_context(|| format!("node {at} ({:?})", node.name))?;
        reader.outlets.push(wired);
    }
    reader.finish(&mut model)?;
    Ok(model)
}

/// The header and the constants' bytes of a compiled graph file, with the constants checked
/// to lie end to end, in order, exactly filling the rest of the file: the bytes bound the
/// work a reader does.
fn split_file(bytes: &[u8]) -> TractResult<(Header, &[u8])> {
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
    Ok((header, data))
}

/// Declares the header's symbols and assertions in `model`; returns the reader of dimension
/// texts, with the `fixed` symbols (those the graph has) replaced by their values.
fn declare_symbols(
    model: &mut TypedModel,
    header: &Header,
    fixed: &[(&str, i64)],
) -> TractResult<DimReader> {
    let mut names = std::collections::HashSet::new();
    for symbol in &header.symbols {
        ensure!(names.insert(symbol.as_str()), "symbol {symbol} twice");
        model.symbols.sym(symbol);
    }
    for assertion in &header.assertions {
        ensure!(assertion.len() <= 4 * 64, "assertion too long");
        model.symbols.add_assertion(assertion)?;
    }
    Ok(DimReader {
        scope: model.symbols.clone(),
        fixed: fixed
            .iter()
            .filter(|(name, _)| header.symbols.iter().any(|s| s == name))
            .map(|&(name, value)| (model.symbols.sym(name), TDim::Val(value)))
            .collect(),
    })
}

/// The state of reading nodes one by one: what was wired so far, and the checks that span
/// nodes (names unique, each constant used once, sources are the inputs).
struct NodeReader<'a> {
    header: &'a Header,
    data: &'a [u8],
    dims: &'a DimReader,
    constant_used: Vec<bool>,
    names: std::collections::HashSet<&'a str>,
    /// The outlets of each node read so far.
    outlets: Vec<TVec<OutletId>>,
    sources: Vec<usize>,
}

impl<'a> NodeReader<'a> {
    /// Adds node `at` to `model` as recorded (not with `wire_node`, which would merge equal
    /// constants and evaluate ops on small constant inputs while reading).
    fn wire(
        &mut self,
        model: &mut TypedModel,
        at: usize,
        node: &'a NodeRecord,
    ) -> TractResult<TVec<OutletId>> {
        ensure!(
            self.names.insert(node.name.as_str()),
            "a second node of this name"
        );
        let inputs = node
            .inputs
            .iter()
            .map(|&(n, slot)| {
                self.outlet(n, slot)
                    .with_context(|| format!("input ({n}, {slot}) is not an earlier output"))
            })
            .collect::<TractResult<TVec<OutletId>>>()?;
        let (op, facts): (Box<dyn TypedOp>, TVec<TypedFact>) = match &node.op {
            OpRecord::Source { datum_type, shape } => {
                ensure!(inputs.is_empty(), "a source with inputs");
                let fact = ops::datum_type(datum_type)?.fact(&*self.dims.dims(shape)?);
                self.sources.push(at);
                return Ok(tvec!(model.add_source(&node.name, fact)?));
            }
            OpRecord::Const { constant } => {
                ensure!(inputs.is_empty(), "a constant with inputs");
                let op = Const::new(self.constant(*constant)?.into_arc_tensor())?;
                let facts = op.output_facts(&[])?;
                (Box::new(op), facts)
            }
            other => {
                let facts = inputs
                    .iter()
                    .map(|o| model.outlet_fact(*o).cloned())
                    .collect::<TractResult<TVec<TypedFact>>>()?;
                let facts: TVec<&TypedFact> = facts.iter().collect();
                let rebuild = RebuildInputs {
                    facts: &facts,
                    dims: self.dims,
                };
                let op = other.rebuild(&rebuild)?;
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
    }

    /// Output `slot` of the `n`th node read so far, if there is one.
    fn outlet(&self, n: usize, slot: usize) -> Option<OutletId> {
        self.outlets.get(n)?.get(slot).copied()
    }

    /// Constant `i`'s tensor, which no other node used.
    fn constant(&mut self, i: usize) -> TractResult<Tensor> {
        let used = self
            .constant_used
            .get_mut(i)
            .with_context(|| format!("no constant {i}"))?;
        ensure!(!*used, "constant {i} used twice");
        *used = true;
        constant_tensor(&self.header.constants[i], self.data)
    }

    /// Checks what spans the whole graph and sets its inputs and outputs.
    fn finish(self, model: &mut TypedModel) -> TractResult<()> {
        ensure!(
            self.constant_used.iter().all(|&u| u),
            "a constant no node uses"
        );
        let header = self.header;
        let mut inputs = header.inputs.clone();
        inputs.sort_unstable();
        ensure!(
            inputs == self.sources,
            "graph inputs {:?} are not the source nodes {:?}",
            header.inputs,
            self.sources
        );
        let inputs = header
            .inputs
            .iter()
            .map(|&n| self.outlets[n][0])
            .collect::<TVec<OutletId>>();
        model.set_input_outlets(&inputs)?;
        let outputs = header
            .outputs
            .iter()
            .map(|&(n, slot)| {
                self.outlet(n, slot)
                    .with_context(|| format!("output ({n}, {slot}) is not a node output"))
            })
            .collect::<TractResult<TVec<OutletId>>>()?;
        model.select_output_outlets(&outputs)?;
        Ok(())
    }
}

/// Checks that `back` (read from what `write` made of `graph`) is `graph`: same ops with
/// the same parameters (tract's op equality: constants compared whole), wired the same, with
/// the same facts, node for node; same inputs, outputs and symbol assertions.
#[cfg(not(target_arch = "wasm32"))]
pub fn check_same_graph(graph: &TypedModel, back: &TypedModel) -> TractResult<()> {
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
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
