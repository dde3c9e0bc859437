"""Runs every fuzz target of `fuzz/` (built by `./build.sh fuzz`) for a while and reports the
CPU time each got and what it found: `./build.sh fuzz [--seconds N] [--jobs J] [--targets a,b]
[--record]`. A finding (panic, timeout, out of memory, allocation over the limit) fails the
run and leaves its input in target/fuzz/artifacts/. With --record the figures go to
BENCHMARKS.md, with the command.

Each target starts from fuzz/seeds/TARGET (committed, real files) and the corpus earlier runs
grew in target/fuzz/corpus/TARGET. Limits every input is held to: 10 s, 2 GB of memory,
no single allocation over 512 MB (a length field read from a file must be checked against
the file's size before anything is sized by it).

Runs add up: target/fuzz/ledger.json keeps, per build of the targets (the sha-256 of their
binaries), each target's CPU time, inputs and findings over every run; --record reports those
totals, so several shorter runs of the same build count as one long one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from sections import cpu_line, replace_section

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target/fuzz/x86_64-unknown-linux-gnu/release"
LIMITS = ["-timeout=10", "-rss_limit_mb=2048", "-malloc_limit_mb=512"]


def build_digest(names: list[str]) -> str:
    """What the ledger is kept per: the targets' binaries, so code changes start afresh."""
    h = hashlib.sha256()
    for name in sorted(names):
        h.update((BIN / name).read_bytes())
    return h.hexdigest()[:16]


def add_to_ledger(digest: str, results: dict) -> dict:
    """This run's figures added to the ledger of build `digest`; returns that build's totals."""
    path = ROOT / "target/fuzz/ledger.json"
    ledger = json.loads(path.read_text()) if path.exists() else {}
    totals = ledger.setdefault(digest, {})
    for name, r in results.items():
        t = totals.setdefault(name, {"cpu": 0.0, "runs": 0, "findings": 0, "sessions": 0})
        t["cpu"] += r["cpu"]
        t["runs"] += r["runs"]
        t["findings"] += 0 if r["ok"] else 1
        t["sessions"] += 1
    path.write_text(json.dumps(ledger, indent=1))
    return totals


def targets() -> list[str]:
    text = (ROOT / "fuzz/Cargo.toml").read_text()
    return re.findall(r'^name = "([a-z_]+)"\s*\npath = "fuzz_targets/', text, re.M)


def start(target: str, seconds: int) -> tuple[subprocess.Popen, Path]:
    corpus = ROOT / "target/fuzz/corpus" / target
    artifacts = ROOT / "target/fuzz/artifacts"
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    log = ROOT / "target/fuzz" / f"{target}.log"
    command = [
        str(BIN / target), str(corpus), str(ROOT / "fuzz/seeds" / target),
        f"-max_total_time={seconds}", "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/{target}-", *LIMITS,
    ]
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT), log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once")
    parser.add_argument("--targets", default="", help="comma-separated; default all")
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args()
    names = args.targets.split(",") if args.targets else targets()
    pending, running, results = list(names), {}, {}
    began = time.time()
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            proc, log = start(name, args.seconds)
            running[proc.pid] = (name, proc, log)
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        name, proc, log = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        text = log.read_text(errors="replace")
        runs = re.search(r"stat::number_of_executed_units: (\d+)", text)
        crash = re.search(r"^(thread '.*panicked.*|==\d+== ERROR: libFuzzer: .*|SUMMARY: .*)$", text, re.M)
        artifact = re.search(r"Test unit written to (\S+)", text)
        results[name] = {
            "cpu": usage.ru_utime + usage.ru_stime,
            "runs": int(runs.group(1)) if runs else 0,
            "ok": proc.returncode == 0,
            "finding": (crash.group(1) if crash else f"exit {proc.returncode}") if proc.returncode else "",
            "artifact": artifact.group(1) if artifact else "",
        }
        r = results[name]
        state = "ok" if r["ok"] else f"FINDING: {r['finding']} ({r['artifact'] or log})"
        print(f"fuzz {name}: {r['runs']:,} inputs, {r['cpu']:.0f} CPU-s, {state}", flush=True)
    total = sum(r["cpu"] for r in results.values())
    failed = [n for n, r in results.items() if not r["ok"]]
    print(f"fuzz: {len(results)} targets, {total / 60:.1f} CPU-minutes in {(time.time() - began) / 60:.1f} min, "
          f"{len(failed)} with findings", flush=True)
    digest = build_digest(targets())
    totals = add_to_ledger(digest, results)
    all_cpu = sum(t["cpu"] for t in totals.values())
    print(f"fuzz: build {digest}: {all_cpu / 3600:.2f} CPU-hours over all runs, "
          f"{sum(t['findings'] for t in totals.values())} findings", flush=True)
    if args.record:
        rows = [f"| {n} | {t['sessions']} | {t['runs']:,} | {t['cpu']:.0f} | {t['findings']} |" for n, t in sorted(totals.items())]
        replace_section(ROOT / "BENCHMARKS.md", "fuzz", "\n".join([
            "## Reliability: fuzzing every reader of fetched bytes",
            "",
            f"Command: `./build.sh fuzz --seconds {args.seconds} --jobs {args.jobs} --record` (and earlier runs of the same "
            f"build of the targets, `{digest}`, which add up) — libFuzzer (cargo-fuzz, nightly, debug assertions on), "
            f"each target from its committed seeds plus the corpus earlier runs grew; every input held to {' '.join(LIMITS)}. {cpu_line()}.",
            "",
            "| target | runs | inputs | CPU seconds | findings |",
            "|---|---|---|---|---|",
            *rows,
            f"| **all** | | {sum(t['runs'] for t in totals.values()):,} | {all_cpu:.0f} ({all_cpu / 3600:.2f} CPU-hours) | "
            f"{sum(t['findings'] for t in totals.values())} |",
            "",
            "Every finding is listed, with its fix and regression test, in `fuzz/README.md`.",
        ]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
