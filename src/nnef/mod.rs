//! The compiled graph, `model.nnef.tar`: a bundle's ONNX graph parsed, typed and decluttered
//! once, offline (`dotfind compile`), and stored in tract's own NNEF form.
//!
//! Why: in the browser, tract's ONNX parse and its type analysis took about 45 % of an int8
//! encoder's start-up (profiled in Chromium, where this one-time code runs baseline-compiled).
//! Loading NNEF skips both. The loaded graph is what the ONNX route gives, so the plans —
//! and every output bit — are the same (tested for every bundle kind).
//!
//! tract serializes nearly every op of a decluttered graph itself; [`registry`] adds the
//! few a dynamically quantized BERT leaves without a serializer, and the op that keeps
//! f16-stored weights f16 in the file ([`narrow_f16_constants`]).
//!
//! Writing uses tract's whole op set; reading (here and in the browser) knows only the ops
//! BERT-family encoders use, and reads the tar itself: tract's stock reader builds its full
//! framework, every op's loader included, which costs start-up time (~10 % of a native int8
//! start). `dotfind compile` reads back what it wrote, so a graph outside that set fails
//! there, with the op's name. (A smaller wasm would follow too, were it not for tract-nnef
//! 0.23.9 linking its full framework anyway: its `patch` model transform, registered at
//! start-up through `inventory`, builds it. Measured with that registration removed: 13.3 →
//! 10.4 MB raw, 2.15 → 1.70 MB brotli.)

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::nn::GeluExact;
use tract_nnef::tract_core::ops::quant::DequantizeLinearF32;
use tract_nnef::tract_core::optim::Optimizer;

use crate::int8_graph::DynamicQuantizeU8;

mod bert_ops;

/// The ops tract leaves unserializable in dotfind's graphs, as the NNEF extension `dotfind`:
/// dotfind's activation quantizer, the int8 embedding tables' dequantization, exact GELU,
/// and [`WidenF16`], which keeps f16-stored weights f16 on disk.
pub fn registry() -> Registry {
    let mut registry = Registry::new("dotfind").with_doc("dotfind's ops for BERT graphs");
    registry.register_dumper(dump_dynamic_quantize);
    registry.register_primitive(
        "dotfind_dynamic_quantize_u8",
        &[TypeName::Scalar.tensor().named("input")],
        &[
            ("output", TypeName::Integer.tensor()),
            ("scale", TypeName::Scalar.tensor()),
            ("zero_point", TypeName::Integer.tensor()),
        ],
        load_dynamic_quantize,
    );
    registry.register_dumper(dump_dequantize);
    registry.register_primitive(
        "dotfind_dequantize_linear_f32",
        &[
            TypeName::Integer.tensor().named("input"),
            TypeName::Scalar.named("scale"),
            TypeName::Integer.named("zero_point"),
        ],
        &[("output", TypeName::Scalar.tensor())],
        load_dequantize,
    );
    registry.register_unit_element_wise("dotfind_gelu_exact", &GeluExact {});
    registry.register_dumper(dump_widen_f16);
    registry.register_primitive(
        "dotfind_widen_f16",
        &[TypeName::Scalar.tensor().named("input")],
        &[("output", TypeName::Scalar.tensor())],
        load_widen_f16,
    );
    registry
}

/// f16 → f32, for weights a bundle stores as f16 (see [`narrow_f16_constants`]). Unlike
/// tract's `Cast`, it is not evaluated by constant propagation, which tract's NNEF writer runs
/// first and would turn the constant back into f32 on disk; its declutter rule folds it into
/// an f32 constant when the graph is loaded.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct WidenF16;

impl Op for WidenF16 {
    fn name(&self) -> StaticName {
        "WidenF16 (dotfind)".into()
    }

    op_as_typed_op!();
}

impl EvalOp for WidenF16 {
    not_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        Ok(tvec!(inputs[0]
            .cast_to::<f32>()?
            .into_owned()
            .into_tvalue()))
    }
}

impl TypedOp for WidenF16 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].datum_type == f16::datum_type(),
            "dotfind_widen_f16 of {:?}",
            inputs[0].datum_type
        );
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    fn declutter(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        let Some(half) = &model.outlet_fact(node.inputs[0])?.konst else {
            return Ok(None);
        };
        let mut patch = TypedModelPatch::new("dotfind: widen an f16 constant");
        let wide = patch.add_const(&node.name, half.cast_to::<f32>()?.into_owned())?;
        patch.shunt_outside(model, node.id.into(), wide)?;
        Ok(Some(patch))
    }

    as_op!();
}

fn dump_widen_f16(
    ast: &mut IntoAst,
    node: &TypedNode,
    _op: &WidenF16,
) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    Ok(Some(invocation("dotfind_widen_f16", &[input], &[])))
}

fn load_widen_f16(builder: &mut ModelBuilder, call: &ResolvedInvocation) -> TractResult<Value> {
    let input = call.named_arg_as(builder, "input")?;
    builder.wire(WidenF16, &[input])
}

fn dump_dynamic_quantize(
    ast: &mut IntoAst,
    node: &TypedNode,
    _op: &DynamicQuantizeU8,
) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    Ok(Some(invocation(
        "dotfind_dynamic_quantize_u8",
        &[input],
        &[],
    )))
}

fn load_dynamic_quantize(
    builder: &mut ModelBuilder,
    call: &ResolvedInvocation,
) -> TractResult<Value> {
    let input = call.named_arg_as(builder, "input")?;
    builder.wire(DynamicQuantizeU8, &[input])
}

fn dump_dequantize(
    ast: &mut IntoAst,
    node: &TypedNode,
    op: &DequantizeLinearF32,
) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    // `{:?}` of an f32 is its shortest round-tripping decimal: the same scale comes back.
    Ok(Some(invocation(
        "dotfind_dequantize_linear_f32",
        &[input],
        &[
            ("scale", numeric(op.scale)),
            ("zero_point", numeric(op.zero_point)),
        ],
    )))
}

fn load_dequantize(builder: &mut ModelBuilder, call: &ResolvedInvocation) -> TractResult<Value> {
    let input = call.named_arg_as(builder, "input")?;
    let scale: f32 = call.named_arg_as(builder, "scale")?;
    let zero_point: i64 = call.named_arg_as(builder, "zero_point")?;
    let zero_point = i32::try_from(zero_point)?;
    builder.wire(DequantizeLinearF32 { scale, zero_point }, &[input])
}

/// tract's NNEF framework with dotfind's extension: every op tract can write, for
/// `dotfind compile`.
fn writer() -> tract_nnef::framework::Nnef {
    tract_nnef::nnef().with_registry(registry())
}

/// The NNEF framework that reads compiled graphs: the ops BERT-family encoders use and no
/// others. tract's stock registries reference every op tract has (convolutions, pooling,
/// FFT, recurrent cells, ...) and so link all of them into the browser's wasm; a reader
/// built from the loaders alone links only what it can load. `dotfind compile` loads what
/// it wrote with this reader, so a graph outside this set fails there, not in a browser.
fn reader() -> tract_nnef::framework::Nnef {
    tract_nnef::framework::Nnef {
        // Only the writer reads this field; the loaders' fragments are in the registries.
        stdlib: Vec::new(),
        registries: vec![bert_ops::stdlib_ops(), bert_ops::core_ops(), registry()],
        // Resources are read by `proto_model` below.
        resource_loaders: Vec::new(),
        allow_extended_identifier_syntax: false,
        extern_all_constants: false,
    }
}

/// The tar's graph text, tensors and quantization table, as tract's parser wants them.
///
/// tract's own tar reader also handles nested sub-models by calling its stock framework,
/// which would link every op back in; compiled bundles have none.
fn proto_model(bytes: &[u8]) -> TractResult<tract_nnef::ast::ProtoModel> {
    use std::io::Read;
    use tract_nnef::ast::{Identifier, ProtoModel};
    let mut graph = None;
    let mut quantization = None;
    let mut tensors = HashMap::new();
    for entry in tar::Archive::new(bytes).entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_owned();
        if path == "graph.nnef" {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            graph = Some(text);
        } else if path == "graph.quant" {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            quantization = Some(tract_nnef::ast::quant::parse_quantization(&text)?);
        } else if let Some(id) = path.strip_suffix(".dat") {
            let tensor = tract_nnef::tensors::read_tensor(&mut entry)
                .with_context(|| format!("reading tensor {path}"))?;
            tensors.insert(Identifier::from(id), Arc::new(tensor));
        }
    }
    let graph = graph.context("no graph.nnef in the archive")?;
    let proto = ProtoModel {
        doc: tract_nnef::ast::parse::parse_document(&graph)?,
        tensors,
        quantization: quantization.map(|q| q.into_iter().collect()),
        resources: HashMap::new(),
    };
    proto.validate()?;
    Ok(proto)
}

/// A decluttered graph as an NNEF tar, byte-identical for the same graph (fixed timestamps).
pub fn write(decluttered: &TypedModel) -> TractResult<Vec<u8>> {
    writer().write_to_tar_with_config(decluttered, Vec::new(), false, true)
}

/// Whether `bytes` start like a tar archive (the POSIX `ustar` magic), as `write` makes them.
pub fn is_compiled(bytes: &[u8]) -> bool {
    bytes.get(257..262) == Some(b"ustar")
}

/// Reads an NNEF tar back into a decluttered graph.
///
/// The loaded graph carries what NNEF spells out — casts of constants, the einsums'
/// layout reshapes and transposes — which tract's declutter folds again. Only its constant
/// propagation and per-op declutter rules are run: the full declutter adds axis-change
/// propagation, two thirds of its time natively (48 → 17 ms), and the plan codegen makes
/// of the result runs the same and gives the same bits (tested).
pub fn read(bytes: &[u8]) -> TractResult<TypedModel> {
    ensure!(
        is_compiled(bytes),
        "not a tar archive (`dotfind compile` writes this file)"
    );
    let mut model = reader()
        .model_for_proto_model(&proto_model(bytes)?)
        .context("dotfind loads the ops of BERT-family encoders")?;
    let mut declutter = Optimizer::declutter();
    declutter.passes.retain(|pass| {
        let name = format!("{pass:?}");
        name.starts_with("PropConst") || name == "declutter"
    });
    ensure!(
        declutter.passes.len() == 2,
        "tract's declutter passes changed: {:?}",
        declutter.passes
    );
    declutter.optimize(&mut model)?;
    Ok(model)
}

/// Constants smaller than this stay f32 (biases, norms: nothing to gain).
const MIN_NARROWED: usize = 4096;

/// Stores every large f32 constant whose values are all exact f16 values (weights a bundle
/// ships as f16 behind a Cast, which tract's declutter folded back into f32) as f16 behind a
/// [`WidenF16`], so `model.nnef.tar` — the browser's download — keeps the smaller form. The
/// loader folds each one into the very same f32 constant, so plans and outputs are
/// unchanged. Returns how many constants it narrowed.
pub fn narrow_f16_constants(model: &mut TypedModel) -> TractResult<usize> {
    use tract_nnef::tract_core::ops::konst::Const;
    let exact = |t: &Tensor| -> bool {
        t.datum_type() == f32::datum_type()
            && t.len() >= MIN_NARROWED
            && t.try_as_plain_ram()
                .and_then(|r| {
                    r.as_slice::<f32>().map(|v| {
                        v.iter()
                            .all(|&x| f16::from_f32(x).to_f32().to_bits() == x.to_bits())
                    })
                })
                .unwrap_or(false)
    };
    let narrowed: Vec<(usize, Arc<Tensor>)> = model
        .nodes()
        .iter()
        .filter(|node| node.op_is::<Const>())
        .filter_map(|node| node.outputs[0].fact.konst.clone().map(|t| (node.id, t)))
        .filter(|(_, t)| exact(t))
        .collect();
    for (id, tensor) in &narrowed {
        let name = model.node(*id).name.clone();
        let mut patch = TypedModelPatch::new("dotfind: store an f16-exact constant as f16");
        let half = patch.add_const(format!("{name}.f16"), tensor.cast_to::<f16>()?.into_owned())?;
        let wide = patch.wire_node(format!("{name}.f32"), WidenF16, &[half])?[0];
        patch.shunt_outside(model, OutletId::new(*id, 0), wide)?;
        patch.apply(model)?;
    }
    model.compact()?;
    Ok(narrowed.len())
}

/// Compiles the bundle in `dir`: writes `model.nnef.tar` from its (verified) `model.onnx`
/// and records it in `dotfind-model.json`, after which every loader uses it. Idempotent:
/// the same bundle and dotfind version give the same bytes. Returns the new file's entry.
#[cfg(not(target_arch = "wasm32"))]
pub fn compile_bundle(dir: &std::path::Path) -> crate::Result<crate::bundle::FileEntry> {
    use crate::bundle::{
        read_bundle_file, sha256_hex, BundleManifest, FileEntry, ModelBundle, COMPILED_MODEL_FILE,
        MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE,
    };
    use crate::error::Error;

    let mut manifest = BundleManifest::from_json(&read_bundle_file(dir, MANIFEST_FILE)?)?;
    let onnx = read_bundle_file(dir, MODEL_FILE)?;
    manifest.files[MODEL_FILE].verify(MODEL_FILE, &onnx)?;
    let mut graph = crate::encode::decluttered_graph(MODEL_FILE, &onnx)?;
    // tract-onnx's activation quantizer has no NNEF form; dotfind's drop-in has.
    crate::int8_graph::use_fast_dynamic_quantize(&mut graph);
    let invalid = |e: TractError| Error::InvalidModel {
        file: MODEL_FILE.into(),
        reason: format!("cannot compile to NNEF: {e:#}"),
    };
    narrow_f16_constants(&mut graph).map_err(invalid)?;
    let compiled = write(&graph).map_err(invalid)?;
    let entry = FileEntry {
        sha256: sha256_hex(&compiled),
        bytes: compiled.len() as u64,
    };
    manifest
        .files
        .insert(COMPILED_MODEL_FILE.into(), entry.clone());
    let mut descriptor = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::io(dir.join(MANIFEST_FILE), std::io::Error::other(e)))?;
    descriptor.push(b'\n');
    // What browsers will load must load, as the bundle it will be: an encoder is built from
    // it here (inputs, output, hidden size checked), so a bad graph fails now, not on a
    // visitor's page, and nothing is written.
    // The graph's digest is the one just computed from these bytes; the tokenizer is checked.
    let tokenizer = read_bundle_file(dir, TOKENIZER_FILE)?;
    let digests = [entry.sha256.clone(), sha256_hex(&tokenizer)];
    let bundle = ModelBundle::from_bytes_with_sha256(&descriptor, compiled, tokenizer, &digests)?;
    crate::encode::Encoder::new(&bundle)?;
    let compiled = bundle.model;
    // The graph first, then the descriptor that vouches for it, each by rename: a crash in
    // between leaves a bundle that still loads (the old descriptor ignores the new file).
    for (file, bytes) in [
        (COMPILED_MODEL_FILE, &compiled),
        (MANIFEST_FILE, &descriptor),
    ] {
        let path = dir.join(file);
        let tmp = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_nnef::tract_core::ops::element_wise::ElementWiseOp;

    /// x (f32) → GELU → dotfind's quantizer → its u8 output and an int8 table's
    /// dequantization with a scale whose decimal form needs all its digits.
    fn tiny_graph() -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 3])).unwrap();
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

    fn run(model: TypedModel) -> TVec<TValue> {
        let x = tensor2(&[[-3.0f32, -0.5, 0.0], [0.25, 1.5, 7.0]]);
        model.into_runnable().unwrap().run(tvec![x.into()]).unwrap()
    }

    #[test]
    fn dotfind_ops_survive_the_round_trip_bit_for_bit() {
        let tar = write(&tiny_graph()).unwrap();
        assert!(is_compiled(&tar));
        assert_eq!(write(&tiny_graph()).unwrap(), tar, "deterministic bytes");
        let loaded = read(&tar).unwrap();
        assert_eq!(run(loaded), run(tiny_graph()));
    }

    /// x (f32, [1, 64]) · w ([64, 64] f32 constant) + b, with `w` f16-exact or not.
    fn linear_graph(f16_exact: bool) -> TypedModel {
        use tract_nnef::tract_core::ops::{binary::TypedBinOp, math::Add};
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
        let op = tract_nnef::tract_core::ops::einsum::EinSum::new(
            "mk,kn->mn".parse().unwrap(),
            f32::datum_type(),
        );
        let y = model.wire_node("matmul", op, &[x, w]).unwrap();
        let y = model
            .wire_node("bias", TypedBinOp(Box::new(Add), None), &[y[0], b])
            .unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    #[test]
    fn f16_exact_weights_are_stored_as_f16_and_load_as_the_same_f32() {
        let x = tensor2(&[[0.25f32; 64]]);
        let eval = |m: TypedModel| {
            m.into_runnable()
                .unwrap()
                .run(tvec![x.clone().into()])
                .unwrap()
        };
        for (exact, narrowed) in [(true, 1), (false, 0)] {
            let mut graph = linear_graph(exact);
            let wide = write(&graph).unwrap();
            // Only the large f16-exact constant: the 64-value bias stays f32.
            assert_eq!(narrow_f16_constants(&mut graph).unwrap(), narrowed);
            let tar = write(&graph).unwrap();
            if exact {
                // 4096 weights at 2 bytes instead of 4 (tar pads files to 512 bytes).
                assert!(
                    wide.len() - tar.len() >= 8192 - 512,
                    "{} -> {}",
                    wide.len(),
                    tar.len()
                );
            } else {
                assert_eq!(tar, wide);
            }
            let loaded = read(&tar).unwrap();
            let casts = loaded
                .nodes()
                .iter()
                .filter(|n| n.op_is::<tract_nnef::tract_core::ops::cast::Cast>())
                .count();
            assert_eq!(
                casts, 0,
                "the loader folds the casts back into f32 constants"
            );
            assert_eq!(eval(loaded), eval(linear_graph(exact)));
        }
    }

    #[test]
    fn widening_anything_but_f16_is_an_error() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2])).unwrap();
        let err = model.wire_node("widen", WidenF16, &[x]).unwrap_err();
        assert!(
            format!("{err:#}").contains("dotfind_widen_f16 of F32"),
            "{err:#}"
        );
    }

    #[test]
    fn ops_outside_the_bert_set_are_refused_by_name() {
        use tract_nnef::tract_core::ops::math::Sin;
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2])).unwrap();
        let y = model
            .wire_node("sin", ElementWiseOp(Box::new(Sin {}), None), &[x])
            .unwrap();
        model.select_output_outlets(&y).unwrap();
        // tract writes it; dotfind's reader (the browser's) does not know it.
        let tar = write(&model).unwrap();
        let err = read(&tar).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "dotfind loads the ops of BERT-family encoders: In ModelBuilder::translate: \
             Wiring root graph body: Plugging in assignement for \"sin\": Resolving \
             invocation Identifier(\"sin\"): No definition for operator Identifier(\"sin\")"
        );
    }

    /// `tar` with each entry's bytes passed through `edit` (None drops the entry).
    fn edit_tar(tar: &[u8], edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
        use std::io::Read;
        let mut out = tar::Builder::new(Vec::new());
        for entry in tar::Archive::new(tar).entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            if let Some(bytes) = edit(&path, bytes) {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_cksum();
                out.append_data(&mut header, &path, &bytes[..]).unwrap();
            }
        }
        out.into_inner().unwrap()
    }

    #[test]
    fn damaged_archive_entries_are_named() {
        let tar = write(&linear_graph(false)).unwrap();
        let no_graph = edit_tar(&tar, |path, bytes| (path != "graph.nnef").then_some(bytes));
        assert_eq!(
            format!("{:#}", read(&no_graph).unwrap_err()),
            "no graph.nnef in the archive"
        );
        let truncated = edit_tar(&tar, |path, mut bytes| {
            if path == "w.dat" {
                bytes.truncate(bytes.len() / 2);
            }
            Some(bytes)
        });
        let err = format!("{:#}", read(&truncated).unwrap_err());
        assert_eq!(err, "reading tensor w.dat: failed to fill whole buffer");
    }

    #[test]
    fn bytes_that_are_not_a_tar_are_refused_by_name() {
        let err = read(b"\x08\x07onnx protobuf").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a tar archive (`dotfind compile` writes this file)"
        );
        assert!(!is_compiled(&[0u8; 300]));
    }
}
