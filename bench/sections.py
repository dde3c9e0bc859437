"""What Python benchmarks share: the one way one writes its section of BENCHMARKS.md (between
the markers `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, replaced in place, or
appended), and the machine line printed with every figure."""

import os
from pathlib import Path


def replace_section(path: Path, title: str, body: str) -> None:
    start, end = f"<!-- bench:{title} -->", f"<!-- /bench:{title} -->"
    text = path.read_text() if path.exists() else "# dotfind benchmarks\n\nEvery figure below was printed by the command shown with it, on this project's 2-core build machine.\n"
    block = f"{start}\n{body}\n{end}"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def cpu() -> tuple[str, set[str]]:
    """This machine's CPU model and flags (from /proc/cpuinfo; "unknown CPU" elsewhere)."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


SIMD_FLAGS = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"]


def cpu_line() -> str:
    model, flags = cpu()
    simd = [f for f in SIMD_FLAGS if f in flags]
    return f"CPU: {model}, {os.cpu_count()} cores, SIMD: {' '.join(simd) or 'none'}"


def cpu_kind() -> str:
    """The widest int8 instruction this CPU has, which decides native encoding speed: the
    name of a benchmark's section per kind of CPU (`amx`, `avx512-vnni`, `avx-vnni`, `avx2`,
    `other`), so a run on one kind keeps the figures of the others."""
    _, flags = cpu()
    for flag, kind in [("amx_int8", "amx"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni"),
                       ("avx2", "avx2")]:
        if flag in flags:
            return kind
    return "other"
