#!/usr/bin/env python3
"""Writes a synthetic dotfind index (random unit vectors, int8) of N passages, reusing the
model folder of a real index. Written from docs/format.md alone, so it also checks that the
spec is enough to produce files dotfind accepts. For search-latency benchmarks only.

usage: synthetic_index.py --like REAL_INDEX --passages N --out DIR
"""
import argparse
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import xxhash


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--like", type=Path, required=True)
    ap.add_argument("--passages", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    real = json.loads((args.like / "manifest.json").read_text())
    dims, n = real["model"]["dims"], args.passages
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(args.like / "model", args.out / "model")

    rng = np.random.default_rng(0)
    v = rng.standard_normal((n, dims)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    scales = np.abs(v).max(axis=1) / 127.0
    q = np.clip(np.round(v / scales[:, None]), -127, 127).astype(np.int8)

    files = {}
    shards = []
    max_bytes = 20 * 1024 * 1024
    per_shard = (max_bytes - 16) // (dims + 4)
    for s, start in enumerate(range(0, n, per_shard)):
        end = min(n, start + per_shard)
        count = end - start
        vec = b"DFVC" + struct.pack("<HBBII", 1, 2, 0, dims, count) + scales[start:end].astype("<f4").tobytes() + q[start:end].tobytes()
        blob, offsets = bytearray(), []
        for i in range(start, end):
            offsets.append(len(blob))
            for field in (f"syn-{i}", f"syn-{i}", f"/synthetic/{i}", f"Synthetic passage {i}", "", f"Random vector {i}."):
                b = field.encode()
                blob += varint(len(b)) + b
        offsets.append(len(blob))
        pas = b"DFPS" + struct.pack("<HHI", 1, 0, count) + struct.pack(f"<{count + 1}I", *offsets) + bytes(blob)
        names = (f"vectors-{s:03}.bin", f"passages-{s:03}.bin")
        for name, data in zip(names, (vec, pas)):
            (args.out / name).write_bytes(data)
            files[name] = {"bytes": len(data), "xxh3_128": xxhash.xxh3_128_hexdigest(data)}
        shards.append({"vectors": names[0], "passages": names[1], "count": count})
    for name, entry in real["files"].items():
        if name.startswith("model/"):
            files[name] = entry
    manifest = dict(real, passage_count=n, document_count=n, shards=shards, files=dict(sorted(files.items())))
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
