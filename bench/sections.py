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


def cpu_line() -> str:
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"] if f in flags]
    return f"CPU: {model}, {os.cpu_count()} cores, SIMD: {' '.join(simd) or 'none'}"
