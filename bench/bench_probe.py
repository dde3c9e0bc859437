"""Probe depth on real corpora: `./build.sh bench-probe`. Needs ../shared/data.

Indexes of several lists, built with the shipped configuration (query bundle, f32 passages,
int8 vectors): the union of every collection (one corpus of ~29k passages of four kinds, where
the indexer's default layout has lists), and each collection alone with √n lists forced. Each
collection's judged queries are then searched exactly, at the corpus-size rule's depth
(0.3·√lists, at least 4: the default before the depth was measured) and at the depth the
indexer measured on the corpus (src/build/probe.rs). nDCG@10 by `dotfind eval`; recall@10 of
each probed run against the exact run. Indexes are kept in target/bench-probe/ (vectors are
re-used by text, so only the first run encodes). Writes BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

from sections import cpu_line, replace_section

ROOT = Path(__file__).resolve().parent.parent


def dotfind(binary: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *map(str, args)], check=True, capture_output=True, text=True)


def old_rule(lists: int) -> int:
    """The corpus-size rule (partition::default_probe): 0.3·√lists, at least 4."""
    return min(lists, max(4, math.ceil(0.3 * math.sqrt(lists))))


def union_corpus(collections: list[Path], out: Path) -> dict[str, str]:
    """Every collection's corpus in one file, ids prefixed by the collection's name."""
    prefixes = {}
    with out.open("w") as f:
        for c in collections:
            prefixes[c.name] = c.name + ":"
            for line in (c / "corpus.jsonl").open():
                d = json.loads(line)
                d["_id"] = prefixes[c.name] + str(d["_id"])
                f.write(json.dumps(d) + "\n")
    return prefixes


def index(binary: Path, model: Path, corpus: Path, out: Path, extra: list[str]) -> tuple[dict, str]:
    """(Re-)indexes `corpus` into `out` (stored vectors re-used): its manifest and what the
    indexer reported about the probe."""
    print(f"indexing {out.name}", file=sys.stderr, flush=True)
    p = dotfind(binary, "index", "--model", model / "query", "--passage-model", model / "f32",
                "--input", corpus, "--out", out, "--skip-empty", *extra)
    said = re.search(r"probe \d+ \(recall@10 ([0-9.]+) vs the exact scan on (\d+) pseudo-queries\)", p.stderr)
    return json.loads((out / "manifest.json").read_text()), (f"{said[1]} ({said[2]})" if said else "—")


def run(binary: Path, idx: Path, queries: Path, out: Path, probe: list[str]) -> dict[str, list[str]]:
    dotfind(binary, "run", "--index", idx, "--queries", queries, "-k", "100", "--out", out, *probe)
    ranked: dict[str, list[str]] = {}
    for line in out.read_text().splitlines():
        q, _, doc, *_ = line.split()
        ranked.setdefault(q, []).append(doc)
    return ranked


def ndcg(binary: Path, qrels: Path, run_file: Path, level: int) -> float:
    m = json.loads(dotfind(binary, "eval", "--qrels", qrels, "--run", run_file, "--rel-level", level, "--json").stdout)
    return m["ndcg@10"]


def recall10(probed: dict[str, list[str]], exact: dict[str, list[str]]) -> float:
    return sum(len(set(probed.get(q, [])[:10]) & set(top[:10])) / max(1, len(top[:10])) for q, top in exact.items()) / max(1, len(exact))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="natively prepared bundles (./build.sh model)")
    ap.add_argument("--data", type=Path, default=ROOT / "../shared/data")
    ap.add_argument("--dotfind", type=Path, default=ROOT / "target/release/dotfind")
    ap.add_argument("--command", default="./build.sh bench-probe")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"{args.data} is absent: bench-probe measures the collections there, nothing to do", file=sys.stderr)
        return
    work = ROOT / "target/bench-probe"
    work.mkdir(parents=True, exist_ok=True)
    collections = sorted(d for d in args.data.iterdir() if (d / "qrels.tsv").is_file())
    prefixes = union_corpus(collections, work / "union.jsonl")

    # (index name, corpus, extra index flags, [(collection, queries, qrels with the index's ids)])
    setups = []
    union_qrels = []
    for c in collections:
        q = work / f"union-{c.name}.qrels.tsv"
        with q.open("w") as f:
            for i, line in enumerate((c / "qrels.tsv").open()):
                cols = line.rstrip("\n").split("\t")
                if i == 0 and not cols[-1].lstrip("-").isdigit():
                    f.write(line)
                    continue
                cols[1] = prefixes[c.name] + cols[1]
                f.write("\t".join(cols) + "\n")
        union_qrels.append((c, q))
    setups.append(("union of all collections", work / "union.jsonl", [], union_qrels))
    for c in collections:
        n = sum(1 for _ in (c / "corpus.jsonl").open())
        setups.append((f"{c.name}, √n lists forced", c / "corpus.jsonl", ["--lists", str(max(2, round(n ** 0.5)))], [(c, c / "qrels.tsv")]))

    rows = []
    union_dir = work / "union"
    for name, corpus, extra, judged in setups:
        out = union_dir if not extra else work / f"{judged[0][0].name}-sqrt-lists"
        if extra and not out.exists() and (union_dir / "manifest.json").is_file():
            shutil.copytree(union_dir, out)  # its stored vectors are re-used by text
        manifest, said = index(args.dotfind, args.model, corpus, out, extra)
        layout = manifest["layout"]
        lists, measured = layout["lists"], layout["probe"]
        for c, qrels in judged:
            level = 2 if "trec-dl" in c.name else 1
            runs = {}
            for label, flags in [("exact", ["--exact"]), ("old", ["--probe", str(old_rule(lists))]), ("measured", [])]:
                f = work / f"{out.name}-{c.name}-{label}.trec"
                runs[label] = (run(args.dotfind, out, c / "queries.jsonl", f, flags), ndcg(args.dotfind, qrels, f, level))
            exact_ndcg = runs["exact"][1]
            rows.append({
                "index": name, "passages": manifest["passage_count"], "lists": lists, "collection": c.name,
                "old": old_rule(lists), "measured": measured, "said": said, "exact": exact_ndcg,
                "old_ndcg": runs["old"][1], "measured_ndcg": runs["measured"][1],
                "old_recall": recall10(runs["old"][0], runs["exact"][0]),
                "measured_recall": recall10(runs["measured"][0], runs["exact"][0]),
            })
            r = rows[-1]
            print(f"{name} / {c.name}: probe {r['old']} → {r['measured']} of {lists}; nDCG@10 exact {exact_ndcg:.4f}, "
                  f"old {r['old_ndcg']:.4f}, measured {r['measured_ndcg']:.4f}", file=sys.stderr, flush=True)

    lines = [
        "## Probe depth on real corpora: the depth measured at index time vs the corpus-size rule",
        "",
        f"Command: `{args.command}` — {cpu_line()}. Shipped configuration (query bundle, passages by its f32 twin, int8 vectors, "
        "48 code bytes a passage, 256 candidates rescored). Indexes of several lists: the union of every collection in ../shared/data "
        "(ids prefixed by collection; each collection's judged queries searched in the union, so the other collections' passages are "
        "unjudged distractors and nDCG@10 is lower than on the collection alone), and each collection alone with √n lists forced "
        "(below ~10k passages the indexer keeps one list). Depths: the corpus-size rule (0.3·√lists, at least 4; the default before), "
        "and the depth the indexer measured (src/build/probe.rs: 256 pseudo-queries cut from the passages, the smallest depth at which "
        "the top 10 of each kind — 2–4-word and 6–12-word spans — holds 98 % of the exact top 10, within 576 KiB of list directories and codes a query). A depth d scans, of the d lists whose "
        "centroids score highest, the best ones while they hold at most d lists' worth of passages on average (src/search/vector_lists.rs). "
        "Recall@10: each probed run's "
        "top 10 against the exact run's, per query, averaged.",
        "",
        "| index | passages | lists | queries of | probe: rule → measured | pseudo-query recall@10 at the measured depth (queries) | nDCG@10 exact | rule: nDCG@10 (Δ) | measured: nDCG@10 (Δ) | recall@10 vs exact: rule → measured |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['index']} | {r['passages']} | {r['lists']} | {r['collection']} | {r['old']} → {r['measured']} | {r['said']} | "
            f"{r['exact']:.4f} | {r['old_ndcg']:.4f} ({r['old_ndcg'] - r['exact']:+.4f}) | {r['measured_ndcg']:.4f} ({r['measured_ndcg'] - r['exact']:+.4f}) | "
            f"{r['old_recall']:.3f} → {r['measured_recall']:.3f} |")
    within = sum(abs(r["measured_ndcg"] - r["exact"]) <= 0.002 for r in rows)
    lines += ["", f"Measured depth within 0.002 nDCG@10 of the exact search: {within} of {len(rows)} rows "
              f"(the corpus-size rule: {sum(abs(r['old_ndcg'] - r['exact']) <= 0.002 for r in rows)} of {len(rows)})."]
    replace_section(ROOT / "BENCHMARKS.md", "probe", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
