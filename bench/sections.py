"""The one way a Python benchmark writes its section of BENCHMARKS.md: between the markers
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, replaced in place, or appended."""

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
