//! Round trips of the compiled graph format, and damaged files refused with a reason.
//! Writing is native-only, and so are these tests.

use super::*;
use tract_core::ops::array::{Gather, MultiBroadcastTo};
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::element_wise::ElementWiseOp;
use tract_core::ops::nn::GeluExact;
use tract_core::ops::quant::DequantizeLinearF32;

use crate::ops::dynamic_quantize::DynamicQuantizeU8;

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

/// Weights a writer chooses to store in 4 bits: a fifth of the f32 bytes, read back as
/// [`round_trip_constants`] says, column by column (each group within one output column),
/// and close to the original; the bias it did not choose stays exact.
#[test]
fn group_coded_weights_read_back_as_their_round_trip() {
    let q4 = ValueEncoding::Groups(crate::kernels::groups::GroupCode { bits: 4, group: 32 });
    let choose = |node: &TypedNode, _: &Tensor| (node.name == "w").then(|| q4.into());
    let graph = linear_graph(false);
    let bytes = write_with(&graph, &choose).unwrap();
    let plain = write(&graph).unwrap();
    // 4096 weights: 2048 bytes of codes and 128 groups × 4 bytes, instead of 16384.
    assert_eq!(
        plain.len() - bytes.len() + header_growth(&plain, &bytes),
        16384 - (2048 + 512)
    );
    let loaded = read(&bytes).unwrap();
    let expected = round_trip_constants(&graph, &choose).unwrap();
    check_same_graph(&expected, &loaded).unwrap();
    let konst = |m: &TypedModel, name: &str| {
        let node = m.node(m.node_by_name(name).unwrap().id);
        node.op_as::<Const>().unwrap().val().clone()
    };
    let values = |t: Arc<Tensor>| {
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    };
    let (w, back) = (values(konst(&graph, "w")), values(konst(&loaded, "w")));
    // Values span [-7, 7.3] with 101 levels: each within half a 4-bit step of its group.
    let worst = w
        .iter()
        .zip(&back)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst > 0.0 && worst < 14.3 / 15.0 / 2.0 + 0.01,
        "worst error {worst}"
    );
    assert_eq!(konst(&graph, "b"), konst(&loaded, "b"));
}

/// Bytes a quantizer made are stored as given when they decode to exactly the constant's
/// values, and refused, naming the encoding, when they do not.
#[test]
fn given_encoded_bytes_are_stored_only_if_they_are_the_values() {
    let q4 = ValueEncoding::Groups(crate::kernels::groups::GroupCode { bits: 4, group: 32 });
    let plain = |node: &TypedNode, _: &Tensor| (node.name == "w").then(|| q4.into());
    let graph = linear_graph(false);
    // The weights' 4-bit bytes, column by column, as the writer stores them.
    let bytes = write_with(&graph, &plain).unwrap();
    let record = |b: &[u8]| {
        let header = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
        let json: serde_json::Value = serde_json::from_slice(&b[16..16 + header]).unwrap();
        let w = json["constants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["stored_as"] == "q4/32")
            .unwrap()
            .clone();
        let start = 16 + header + w["offset"].as_u64().unwrap() as usize;
        b[start..start + w["bytes"].as_u64().unwrap() as usize].to_vec()
    };
    let encoded = record(&bytes);
    let given = |node: &TypedNode, _: &Tensor| {
        (node.name == "w").then(|| StorageChoice {
            encoding: q4,
            encoded: Some(encoded.clone()),
        })
    };
    // The original f32 weights are not what those bytes hold.
    let err = write_with(&graph, &given).unwrap_err();
    assert!(
        format!("{err:#}")
            .contains("the q4/32 bytes given for a constant do not decode to its values"),
        "{err:#}"
    );
    // The weights as read back are, and the bytes are stored as given.
    let rounded = round_trip_constants(&graph, &plain).unwrap();
    let again = write_with(&rounded, &given).unwrap();
    assert_eq!(record(&again), encoded);
    check_same_graph(&rounded, &read(&again).unwrap()).unwrap();
}

/// Bytes the header of `b` has beyond `a`'s (it names the encoding).
fn header_growth(a: &[u8], b: &[u8]) -> usize {
    let header = |f: &[u8]| u32::from_le_bytes([f[12], f[13], f[14], f[15]]) as usize;
    header(b) - header(a)
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
        "compiled graph format 9, this dotfind reads 4: run `dotfind compile` again"
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
            with_node(2, json!({"name": "m", "op": {"op": "Axis", "axis_op": "Reshape", "at": u64::MAX, "from": ["64"], "to": ["8", "8"]}, "inputs": x})),
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

/// A large i8 constant (int8 weight codes, bell-shaped as a model's are) is stored deflated,
/// smaller, and reads back to the same graph and outputs.
#[test]
fn int8_codes_are_stored_deflated_and_read_back_the_same() {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, 64])).unwrap();
    let codes: Vec<i8> = (0..64 * 128)
        .map(|i: i32| ((i * 7919) % 127 - 63) / (1 + (i % 5)))
        .map(|c| c as i8)
        .collect();
    let w = model
        .add_const("w", tensor1(&codes).into_shape(&[64, 128]).unwrap())
        .unwrap();
    let cast = tract_core::ops::cast::Cast {
        to: f32::datum_type(),
    };
    let w = model.wire_node("w_f32", cast, &[w]).unwrap();
    let op = EinSum::new("mk,kn->mn".parse().unwrap(), f32::datum_type());
    let y = model.wire_node("matmul", op, &[x, w[0]]).unwrap();
    model.select_output_outlets(&y).unwrap();
    let bytes = write(&model).unwrap();
    let header = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    let json: serde_json::Value = serde_json::from_slice(&bytes[16..16 + header]).unwrap();
    let record = &json["constants"][0];
    assert_eq!(record["deflated"], true, "{record}");
    assert!(record["bytes"].as_u64().unwrap() < 64 * 128, "{record}");
    let loaded = read(&bytes).unwrap();
    check_same_graph(&model, &loaded).unwrap();
    let x = tensor1(&[0.5f32; 64]).into_shape(&[1, 64]).unwrap();
    assert_eq!(run(loaded, x.clone()), run(model, x));
}
