"""Hybrid retrieval vs dense and lexical alone, on every collection of ../shared/data:
`./build.sh bench-hybrid`. Each collection is indexed with the shipped configuration (query
bundle, f32 passages, int8 vectors, default layout) into target/bench-hybrid/ (kept between
runs), then `dotfind run` writes a run per mode (the exact scan, so the dense side is the
model's own ranking) and `dotfind eval` scores it. Writes BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from sections import cpu_line, replace_section

ROOT = Path(__file__).resolve().parent.parent
MODES = [
    ("dense", ["--mode", "dense"]),
    ("lexical (BM25)", ["--mode", "lexical"]),
    ("hybrid, RRF", ["--mode", "hybrid", "--fusion", "rrf"]),
    ("hybrid, convex 0.5", ["--mode", "hybrid", "--fusion", "convex:0.5"]),
]


def dotfind(binary: Path, *args) -> str:
    return subprocess.run([str(binary), *map(str, args)], check=True, capture_output=True, text=True).stdout


def index_of(binary: Path, model: Path, collection: Path, out: Path) -> Path:
    manifest = out / "manifest.json"
    if manifest.exists():
        return out
    print(f"indexing {collection.name}", flush=True)
    dotfind(binary, "index", "--model", model / "query", "--passage-model", model / "f32",
            "--input", collection / "corpus.jsonl", "--out", out, "--skip-empty")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dotfind", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="prepared bundles (f32/, query/)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared/data")
    args = parser.parse_args()
    if not args.shared.is_dir():
        print(f"bench-hybrid: {args.shared} is absent; the benchmark needs ../shared/data", file=sys.stderr)
        return 1
    work = ROOT / "target/bench-hybrid"
    work.mkdir(parents=True, exist_ok=True)
    rows, deltas = [], []
    for collection in sorted(p for p in args.shared.iterdir() if (p / "qrels.tsv").exists()):
        index = index_of(args.dotfind, args.model, collection, work / collection.name)
        level = 2 if "trec-dl" in collection.name else 1
        scores = {}
        for name, flags in MODES:
            run = work / f"{collection.name}-{flags[1]}-{flags[-1].replace(':', '')}.run"
            dotfind(args.dotfind, "run", "--index", index, "--queries", collection / "queries.jsonl",
                    "-k", "1000", "--out", run, "--exact", *flags)
            m = json.loads(dotfind(args.dotfind, "eval", "--qrels", collection / "qrels.tsv", "--run", run,
                                   "--rel-level", level, "--json"))
            scores[name] = (m["ndcg@10"], m["recall@100"])
            print(f"{collection.name}: {name}: nDCG@10 {m['ndcg@10']:.4f}, R@100 {m['recall@100']:.4f}", flush=True)
        better = max(scores["dense"][0], scores["lexical (BM25)"][0])
        deltas.append({name: scores[name][0] - better for name, _ in MODES[2:]})
        cells = " | ".join(f"{scores[name][0]:.4f} / {scores[name][1]:.4f}" for name, _ in MODES)
        gains = " | ".join(f"{scores[name][0] - better:+.4f}" for name, _ in MODES[2:])
        rows.append(f"| {collection.name} | {cells} | {gains} |")
    means = " | ".join(f"{sum(d[name] for d in deltas) / len(deltas):+.4f}" for name, _ in MODES[2:])
    worst = " | ".join(f"{min(d[name] for d in deltas):+.4f}" for name, _ in MODES[2:])
    header = " | ".join(f"{name}: nDCG@10 / R@100" for name, _ in MODES)
    fused = " | ".join(f"{name} vs the better of dense and lexical" for name, _ in MODES[2:])
    replace_section(ROOT / "BENCHMARKS.md", "hybrid", "\n".join([
        "## Hybrid retrieval: dense, lexical and both fused (nDCG@10 on ../shared/data)",
        "",
        "Command: `./build.sh bench-hybrid` — each collection indexed as shipped (query bundle, f32 passages, "
        "int8 vectors), searched exactly (`dotfind run --exact --mode …`), documents ranked by their best passage, "
        f"scored by `dotfind eval` (TREC-DL'19 at relevance ≥ 2). Each side of a hybrid run is its top 1,000 passages. {cpu_line()}.",
        "",
        f"| collection | {header} | {fused} |",
        "|---|" + "---|" * (len(MODES) + len(MODES) - 2),
        *rows,
        f"| **mean gain** | {' | '.join([''] * len(MODES))} | {means} |",
        f"| **worst gain** | {' | '.join([''] * len(MODES))} | {worst} |",
        "",
        "Goal (issue 20): hybrid mean ≥ +0.02 over the better of dense and lexical, no collection below it by more than 0.005.",
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
