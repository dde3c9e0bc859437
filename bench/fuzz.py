"""Runs every fuzz target of `fuzz/` (built by `./build.sh fuzz`) for a while and reports the
CPU time each got and what it found: `./build.sh fuzz [--seconds N] [--jobs J] [--targets a,b]
[--record]`. A finding (panic, timeout, out of memory, allocation over the limit) fails the
run and leaves its input in target/fuzz/artifacts/. With --record the figures go to
BENCHMARKS.md, with the command.

Each target starts from fuzz/seeds/TARGET (committed, real files) and the corpus earlier runs
grew in target/fuzz/corpus/TARGET. Limits every input is held to: 10 s, 2 GB of memory,
no single allocation over 512 MB (a length field read from a file must be checked against
the file's size before anything is sized by it).
"""

from __future__ import annotations

import argparse
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
    if args.record:
        rows = [f"| {n} | {r['runs']:,} | {r['cpu']:.0f} | {'none' if r['ok'] else r['finding']} |" for n, r in results.items()]
        replace_section(ROOT / "BENCHMARKS.md", "fuzz", "\n".join([
            "## Reliability: fuzzing every reader of fetched bytes",
            "",
            f"Command: `./build.sh fuzz --seconds {args.seconds} --jobs {args.jobs} --record` — libFuzzer "
            f"(cargo-fuzz, nightly, debug assertions on), each target from its committed seeds plus the "
            f"corpus earlier runs grew; every input held to {' '.join(LIMITS)}. {cpu_line()}.",
            "",
            "| target | inputs run | CPU seconds | findings |",
            "|---|---|---|---|",
            *rows,
            f"| **all** | {sum(r['runs'] for r in results.values()):,} | {total:.0f} ({total / 3600:.2f} CPU-hours) | {len(failed)} |",
            "",
            "Every finding is listed, with its fix and regression test, in `fuzz/README.md`.",
        ]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
