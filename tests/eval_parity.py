#!/usr/bin/env python3
"""`dotfind eval` against pytrec_eval (trec_eval's own code) on many random runs and qrels,
edge cases included: ties, duplicate docids, judged queries missing from the run, run queries
without judgments, queries with no relevant document, graded judgments and --rel-level.

Run by ./build.sh test with the project venv: python tests/eval_parity.py target/release/dotfind
"""
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytrec_eval

DOTFIND = sys.argv[1] if len(sys.argv) > 1 else "target/release/dotfind"
MEASURES = {"recip_rank", "ndcg_cut_10", "recall_100", "recall_1000", "map"}
passed = failed = 0


def trec_sorted(docs):
    """trec_eval's order: score descending, then docid descending."""
    by_docid_desc = sorted(docs.items(), key=lambda kv: kv[0], reverse=True)
    return sorted(by_docid_desc, key=lambda kv: -kv[1])  # stable: ties keep docid-descending order


def reference(qrels, run_lines, rel_level):
    run = {}
    for q, d, s in run_lines:
        docs = run.setdefault(q, {})
        docs[d] = max(s, docs.get(d, float("-inf")))  # duplicates keep their best score
    ev = pytrec_eval.RelevanceEvaluator(qrels, MEASURES, relevance_level=rel_level)
    full = ev.evaluate(run)
    top10 = {q: dict(trec_sorted(docs)[:10]) for q, docs in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=rel_level).evaluate(top10)
    qs = sorted(full)
    mean = lambda key, src: sum(src[q][key] for q in qs) / len(qs) if qs else 0.0
    return {"mrr@10": mean("recip_rank", rr), "ndcg@10": mean("ndcg_cut_10", full),
            "recall@100": mean("recall_100", full), "recall@1000": mean("recall_1000", full),
            "map": mean("map", full), "queries": len(qs)}


def case(rng, tmp, n):
    docs = [f"d{i}" for i in range(rng.randint(5, 1500))]
    queries = [f"q{i}" for i in range(rng.randint(1, 12))]
    qrels, lines = {}, []
    for q in queries:
        if rng.random() < 0.85:
            judged = rng.sample(docs, rng.randint(1, min(len(docs), 40)))
            grades = [0] if rng.random() < 0.15 else [0, 1, 2, 3]
            qrels[q] = {d: rng.choice(grades) for d in judged}
        if rng.random() < 0.9:
            depth = rng.randint(1, min(len(docs), 1200))
            for d in rng.sample(docs, depth):
                score = round(rng.uniform(0, 5), rng.choice([0, 1, 3]))  # coarse rounding → ties
                lines.append((q, d, score))
            if lines and rng.random() < 0.3:
                lines.append(lines[rng.randrange(len(lines))][:2] + (round(rng.uniform(0, 5), 1),))  # duplicate docid
    if not any(q in qrels for q, _, _ in lines):
        return None
    rng.shuffle(lines)
    qrels_path, run_path = tmp / f"qrels{n}.tsv", tmp / f"run{n}.trec"
    qrels_path.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, ds in qrels.items() for d, g in ds.items()))
    run_path.write_text("".join(f"{q} Q0 {d} {i + 1} {s} r\n" for i, (q, d, s) in enumerate(lines)))
    return qrels, lines, qrels_path, run_path


def main():
    global passed, failed
    rng = random.Random(20261128)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = 0
        while n < 200:
            made = case(rng, tmp, n)
            if made is None:
                continue
            qrels, lines, qrels_path, run_path = made
            rel_level = rng.choice([1, 1, 2, 3])
            out = subprocess.run([DOTFIND, "eval", "--qrels", str(qrels_path), "--run", str(run_path),
                                  "--rel-level", str(rel_level), "--json"], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"case {n}: dotfind failed: {out.stderr.strip()}")
                failed += 1
            else:
                got, want = json.loads(out.stdout), reference(qrels, lines, rel_level)
                bad = {k: (got[k], want[k]) for k in want if abs(got[k] - want[k]) > 1e-9}
                if bad:
                    print(f"case {n} (rel-level {rel_level}): {bad}")
                    failed += 1
                else:
                    passed += 1
            n += 1
    print(f"eval parity with pytrec_eval: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
