#!/usr/bin/env python3
"""Python side of `./build.sh bench-encoders` (driven by bench/bench_encoders.mjs).

For the benchmark's queries it prints one JSON object with
  reference   PyTorch f32 embeddings of the source checkpoint (the parity yardstick for
              every runtime), pooled as the bundle says, batch 1, unpadded
  input_ids   the Python `tokenizers` ids those came from (the browser side checks that
              dotfind's tokenizer gives the same ones)
  onnxruntime the native floor: Python onnxruntime on the bundles' own model.onnx files,
              one thread, one query per call, timed like dotfind's native example:
              start-up = session creation from bytes already in memory; per query =
              tokenize + run + pool + normalize; warm-up pass, then ROUNDS timed passes.

    python bench/bench_encoders.py --model MODEL_DIR --queries QUERIES.json [--source ID] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools/model"))
from prepare_model import STANDIN, load_checkpoint, pool  # noqa: E402  (same loading and pooling as the bundles)


def normalize(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="prepared model folder (f32/, int8/)")
    ap.add_argument("--queries", required=True, type=Path, help="JSON array of query strings")
    ap.add_argument("--source", default=STANDIN, help="checkpoint the bundles were prepared from")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import onnxruntime as ort
    import torch
    from tokenizers import Tokenizer

    queries = json.loads(args.queries.read_text(encoding="utf-8"))
    meta = json.loads((args.model / "int8" / "dotfind-model.json").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_str((args.model / "int8" / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=meta["max_query_tokens"])
    tokenize = lambda q: tokenizer.encode(meta["query_prefix"] + q).ids  # noqa: E731

    # Reference: the source checkpoint in PyTorch f32, as prepare_model.py's reference.json.
    torch.set_num_threads(1)
    model, _, _ = load_checkpoint(args.source)
    reference, input_ids = [], []
    for q in queries:
        ids = tokenize(q)
        t = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            h = model(input_ids=t, attention_mask=torch.ones_like(t)).last_hidden_state.numpy()
        reference.append(normalize(pool(h, np.ones((1, len(ids))), meta["pooling"])[0]).tolist())
        input_ids.append(ids)

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # the setting: single thread, like ORT-web numThreads=1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    runs = {}
    for precision in ("f32", "int8", "int8-ffn-f32"):
        if not (args.model / precision / "model.onnx").is_file():
            continue
        model_bytes = (args.model / precision / "model.onnx").read_bytes()
        t0 = time.perf_counter()
        sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        startup_ms = (time.perf_counter() - t0) * 1e3

        def encode(q: str) -> np.ndarray:
            ids = np.array([tokenize(q)], dtype=np.int64)
            mask = np.ones_like(ids)
            h = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]
            return normalize(pool(h, mask, meta["pooling"])[0])

        vectors = [encode(q).tolist() for q in queries]  # warm-up pass; also the parity vectors
        times_ms = []
        for _ in range(args.rounds):
            for q in queries:
                t0 = time.perf_counter()
                encode(q)
                times_ms.append((time.perf_counter() - t0) * 1e3)
        runs[precision] = dict(startup_ms=startup_ms, times_ms=times_ms, vectors=vectors)

    print(json.dumps(dict(onnxruntime_version=ort.__version__, reference=reference, input_ids=input_ids,
                          onnxruntime=runs)))


if __name__ == "__main__":
    main()
