#!/usr/bin/env python3
"""Indexing benchmark: dotfind vs Python onnxruntime encoding the same passages, same ONNX.

Run through `./build.sh bench-index` (it builds dotfind and prepares the model). Needs
../shared/data/beir-scifact; says so and exits 2 when it is absent. Prints a table and
rewrites this kind of CPU's "Indexing" section of BENCHMARKS.md (the others' stay).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sections import cpu_kind, cpu_line, replace_section

ROOT = Path(__file__).resolve().parent.parent


def encoded_text(doc: dict) -> str:
    return " ".join(p for p in (doc.get("title", "").strip(), doc.get("text", "").strip()) if p)


def ort_passage_encoder(bundle: Path, threads: int | None = None):
    """The bundle's descriptor, its tokenizer set up as dotfind sets it up for passages (no
    padding, truncation at the passage limit) and an onnxruntime session of its ONNX."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    meta = json.loads((bundle / "dotfind-model.json").read_text())
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=meta["max_passage_tokens"])
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(bundle / "model.onnx"), so, providers=["CPUExecutionProvider"])
    return meta, tok, sess


def ort_passages_per_s(bundle: Path, texts: list[str], batch: int, threads: int) -> float:
    meta, tok, sess = ort_passage_encoder(bundle, threads)
    start = time.perf_counter()
    encs = tok.encode_batch([meta["passage_prefix"] + t for t in texts])
    # Length-sorted batches: onnxruntime's best case (least padding).
    order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
    for b in range(0, len(order), batch):
        idx = order[b : b + batch]
        n = max(len(encs[i].ids) for i in idx)
        ids = np.zeros((len(idx), n), dtype=np.int64)
        mask = np.zeros((len(idx), n), dtype=np.int64)
        for r, i in enumerate(idx):
            e = encs[i].ids
            ids[r, : len(e)] = e
            mask[r, : len(e)] = 1
        sess.run(None, {"input_ids": ids, "attention_mask": mask})
    return len(texts) / (time.perf_counter() - start)


def ort_vectors(bundle: Path, texts: list[str]) -> np.ndarray:
    """onnxruntime's passage vectors for `texts`, one text per run (no padding), pooled as the
    bundle says: the reference dotfind's vectors are compared with."""
    meta, tok, sess = ort_passage_encoder(bundle)
    out = []
    for text in texts:
        ids = np.array([tok.encode(meta["passage_prefix"] + text).ids], dtype=np.int64)
        hidden = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        out.append(hidden[0] if meta["pooling"] == "cls" else hidden.mean(axis=0))
    return np.array(out)


def dotfind_vectors(binary: Path, bundle: Path, texts: list[str]) -> np.ndarray:
    """`dotfind encode --passages`: the encoder `dotfind index` runs, one passage per call."""
    run = subprocess.run([str(binary), "encode", "--model", str(bundle), "--passages"], check=True,
                         input="".join(t + "\n" for t in texts), capture_output=True, text=True)
    return np.array([json.loads(l) for l in run.stdout.splitlines()])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def dotfind_index(binary: Path, bundle: Path, corpus: Path, out: Path, vectors: str, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(binary), "index", "--model", str(bundle), "--input", str(corpus), "--out", str(out),
                    "--vectors", vectors, *extra], check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="prepared model folder (f32/, int8/, int8-ffn-f32/)")
    ap.add_argument("--dotfind", type=Path, default=ROOT / "target/release/dotfind")
    ap.add_argument("--corpus", type=Path, default=ROOT / "../shared/data/beir-scifact/corpus.jsonl")
    ap.add_argument("--limit", type=int, default=1000, help="passages to encode (first N documents)")
    ap.add_argument("--command", default="./build.sh bench-index")
    args = ap.parse_args()
    if not args.corpus.is_file():
        print(f"benchmark skipped: {args.corpus} is absent (it lives in ../shared, which a fresh clone lacks)",
              file=sys.stderr)
        sys.exit(2)

    docs = [json.loads(l) for l in args.corpus.read_text().splitlines() if l.strip()][: args.limit]
    texts = [encoded_text(d) for d in docs]
    bundle = args.model / "int8-ffn-f32"  # the shipped query model
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subset = tmp / "corpus.jsonl"
        subset.write_text("".join(json.dumps(d) + "\n" for d in docs))
        # Interleaved, one run: dotfind, onnxruntime, dotfind, onnxruntime — for each passage
        # encoder (the bundle `dotfind index` encodes passages with; the shipped query model
        # int8-ffn-f32 is what is copied into the index in every case), against onnxruntime
        # running the same ONNX file: all-int8, the shipped query model itself, and the f32
        # twin (`--passage-model`, what the demo uses).
        encoders = {
            "int8": ("int8 bundle (`--model int8`)", args.model / "int8", ()),
            "int8-ffn-f32": ("int8-ffn-f32 bundle (`--model int8-ffn-f32`)", bundle, ()),
            "f32": ("f32 twin (`--model int8-ffn-f32 --passage-model f32`, the demo's)", bundle,
                    ("--passage-model", str(args.model / "f32"))),
        }
        rates: dict[str, tuple[list[float], list[float]]] = {}
        for precision, (_, model, extra) in encoders.items():
            df, ort_rates = [], []
            for rep in range(2):
                secs = dotfind_index(args.dotfind, model, subset, tmp / f"idx-{precision}{rep}", "int8", *extra)
                df.append(len(docs) / secs)
                ort_rates.append(ort_passages_per_s(args.model / precision, texts, 32, threads))
            rates[precision] = (df, ort_rates)
            # Printed at once: the rest of the run (parity, sizes) takes minutes more.
            print(f"{precision}: dotfind {df}, onnxruntime {ort_rates} passages/s", file=sys.stderr, flush=True)
        # Speed must not cost quality: dotfind's vectors against onnxruntime's, same ONNX.
        sample = [t.replace("\n", " ") for t in texts[:100]]
        # And both against f32 (onnxruntime running the f32 ONNX): what quantization costs,
        # dotfind's and onnxruntime's side by side.
        parity = {}
        truth = ort_vectors(args.model / "f32", sample)
        for precision, (_, model, extra) in encoders.items():
            passage_model = Path(extra[1]) if extra else model
            ours = dotfind_vectors(args.dotfind, passage_model, sample)
            theirs = truth if precision == "f32" else ort_vectors(args.model / precision, sample)
            same = cosines(ours, theirs)
            parity[precision] = (float(same.mean()), float(same.min()),
                                 float(cosines(ours, truth).mean()), float(cosines(theirs, truth).mean()))
        sizes = {}
        small = tmp / "small.jsonl"
        small.write_text("".join(json.dumps(d) + "\n" for d in docs[:200]))
        for enc in ("int8", "f16", "f32"):
            out = tmp / f"size-{enc}"
            dotfind_index(args.dotfind, bundle, small, out, enc)
            count = json.loads((out / "manifest.json").read_text())["passage_count"]
            # Every file of the folder: the vector lists (and centroids, codebook), and the
            # passage fragments, whatever the format names them.
            vec, meta = (sum(f.stat().st_size for f in (out / sub).iterdir()) for sub in ("vectors", "passages"))
            sizes[enc] = (vec / count, meta / count)

    kind = cpu_kind()
    lines = [
        f"## Indexing (passage encoding), SciFact — {kind} CPUs",
        "",
        f"Command: `{args.command}` — {cpu_line()}. First {len(docs)} SciFact documents (title + text, truncated at "
        f"{json.loads((bundle / 'dotfind-model.json').read_text())['max_passage_tokens']} tokens), "
        f"{threads} cores, two interleaved rounds, best of each. Parity, over the first {len(sample)} "
        "documents (one passage per run): cosine of dotfind's vectors with onnxruntime's from the same ONNX, and "
        "of each runtime's vectors with onnxruntime's from the f32 ONNX (what quantization costs).",
        "",
        "| passage encoder (same ONNX for both) | dotfind index (tract, with dotfind's AMX or AVX2 int8 / AMX bf16 / fused-attention ops where the CPU runs them; one passage per call, "
        f"{threads} threads) | Python onnxruntime {__import__('onnxruntime').__version__} (batch 32, length-sorted, {threads} threads) | ratio | cos dotfind vs onnxruntime, mean (min) | cos vs f32: dotfind / onnxruntime (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for precision, (df, ort_rates) in rates.items():
        label = encoders[precision][0]
        mean, low, ours_f32, theirs_f32 = parity[precision]
        lines.append(f"| {label} | {max(df):.1f} /s | {max(ort_rates):.1f} /s | {max(df) / max(ort_rates):.2f}× "
                     f"| {mean:.5f} ({low:.5f}) | {ours_f32:.5f} / {theirs_f32:.5f} |")
    lines += [
        "",
        "All rounds (passages/s): " + "; ".join(
            f"{p}: dotfind {', '.join(f'{x:.1f}' for x in df)}, onnxruntime {', '.join(f'{x:.1f}' for x in o)}"
            for p, (df, o) in rates.items()) + ".",
        "",
        "Goal (issue 19): ≥ 1.5× on every kind of CPU, each passage encoder: " + "; ".join(
            f"{p} {max(df) / max(o):.2f}× {'pass' if max(df) / max(o) >= 1.5 else '**fail**'}"
            for p, (df, o) in rates.items()) + ".",
        "",
        "| vector encoding | vector bytes / passage | passage metadata bytes / passage |",
        "|---|---|---|",
    ] + [f"| {e} | {v:.0f} | {m:.0f} |" for e, (v, m) in sizes.items()] + [
        "",
        "(Sizes measured on the first 200 documents; metadata holds id, URL, title and the full passage text.)",
    ]
    body = "\n".join(lines)
    print(body)
    replace_section(ROOT / "BENCHMARKS.md", f"index-{kind}", body)


if __name__ == "__main__":
    main()
