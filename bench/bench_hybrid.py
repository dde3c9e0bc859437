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
    ("hybrid (default fusion)", ["--mode", "hybrid"]),
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


# The convex weights swept (the dense side's share).
WEIGHTS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def default_fusion(binary: Path) -> str:
    """The `--fusion` default `dotfind run --help` prints."""
    text = dotfind(binary, "run", "--help")
    return text.split("--fusion <FUSION>", 1)[1].split("[default: ", 1)[1].split("]", 1)[0]


def ndcg_of(binary: Path, index: Path, collection: Path, flags: list[str], work: Path) -> tuple[float, float]:
    run = work / f"{collection.name}-{'-'.join(flags).replace(':', '')}.run"
    dotfind(binary, "run", "--index", index, "--queries", collection / "queries.jsonl",
            "-k", "1000", "--out", run, "--exact", *flags)
    level = 2 if "trec-dl" in collection.name else 1
    m = json.loads(dotfind(binary, "eval", "--qrels", collection / "qrels.tsv", "--run", run,
                           "--rel-level", level, "--json"))
    return m["ndcg@10"], m["recall@100"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dotfind", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="prepared bundles (f32/, query/)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared/data")
    parser.add_argument("--index-only", action="store_true",
                        help="only index the collections (what bench-lexical searches too)")
    args = parser.parse_args()
    if not args.shared.is_dir():
        print(f"bench-hybrid: {args.shared} is absent; the benchmark needs ../shared/data", file=sys.stderr)
        return 1
    work = ROOT / "target/bench-hybrid"
    work.mkdir(parents=True, exist_ok=True)
    collections = sorted(p for p in args.shared.iterdir() if (p / "qrels.tsv").exists())
    indexes = [index_of(args.dotfind, args.model, c, work / c.name) for c in collections]
    if args.index_only:
        return 0
    results = {}
    for collection, index in zip(collections, indexes):
        r = {name: ndcg_of(args.dotfind, index, collection, flags, work) for name, flags in MODES}
        for w in WEIGHTS:
            r[w] = ndcg_of(args.dotfind, index, collection, ["--mode", "hybrid", "--fusion", f"convex:{w}"], work)
        r["best single"] = max(r["dense"][0], r["lexical (BM25)"][0])
        results[collection.name] = r
        print(f"{collection.name}: " + ", ".join(f"{k}: {v[0]:.4f}" for k, v in r.items() if isinstance(v, tuple)), flush=True)

    def gain(coll: str, key) -> float:
        return results[coll][key][0] - results[coll]["best single"]

    # The convex weight for each collection chosen on the others only (the highest mean gain
    # there): how a weight picked on some collections does on one it never saw.
    held_out = {}
    for coll in results:
        others = [c for c in results if c != coll]
        w = max(WEIGHTS, key=lambda w: sum(gain(c, w) for c in others))
        held_out[coll] = (w, gain(coll, w))
    chosen = max(WEIGHTS, key=lambda w: sum(gain(c, w) for c in results))
    names = [name for name, _ in MODES]
    rows = []
    for coll, r in results.items():
        cells = " | ".join(f"{r[n][0]:.4f}" for n in names)
        w, g = held_out[coll]
        rows.append(f"| {coll} | {cells} | {' | '.join(f'{gain(coll, n):+.4f}' for n in names[2:])} | {g:+.4f} (w = {w}) |")
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    summary = [gain(c, n) for n in names[2:] for c in results]
    k = len(results)
    means = [mean(summary[i * k:(i + 1) * k]) for i in range(len(names) - 2)]
    worsts = [min(summary[i * k:(i + 1) * k]) for i in range(len(names) - 2)]
    held = [g for _, g in held_out.values()]
    sweep = " · ".join(f"{w}: {mean([gain(c, w) for c in results]):+.4f}" for w in WEIGHTS)
    replace_section(ROOT / "BENCHMARKS.md", "hybrid", "\n".join([
        "## Hybrid retrieval: dense, lexical and both fused (nDCG@10 on ../shared/data)",
        "",
        "Command: `./build.sh bench-hybrid` — each collection indexed as shipped (query bundle, f32 passages, "
        "int8 vectors), searched exactly (`dotfind run --exact --mode …`), documents ranked by their best passage, "
        "scored by `dotfind eval` (TREC-DL'19 at relevance ≥ 2). Each side of a hybrid run is its top 1,000 passages. "
        "Gains are over the better of dense and lexical on that collection. *Held out*: the convex weight w "
        "(dense share) chosen on the other collections only, then measured on this one — the estimate of "
        f"how a weight picked here does on collections we do not have. {cpu_line()}.",
        "",
        "| collection | " + " | ".join(f"{n}" for n in names) + " | " + " | ".join(f"{n}: gain" for n in names[2:]) + " | convex, w held out: gain |",
        "|---|" + "---|" * (2 * len(names) - 1),
        *rows,
        "| **mean gain** | " + " | ".join([""] * len(names)) + " | " + " | ".join(f"{m:+.4f}" for m in means) + f" | {mean(held):+.4f} |",
        "| **worst gain** | " + " | ".join([""] * len(names)) + " | " + " | ".join(f"{m:+.4f}" for m in worsts) + f" | {min(held):+.4f} |",
        "",
        f"Mean gain of convex fusion by weight: {sweep}; on all collections together the best is w = {chosen}. "
        f"`--mode hybrid` fuses by default as `{default_fusion(args.dotfind)}`.",
        "",
        "Goal (issue 20): hybrid mean ≥ +0.02 over the better of dense and lexical, no collection below it by more than 0.005.",
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
