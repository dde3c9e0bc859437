#!/usr/bin/env python3
"""Regenerates demo/site/: chapters of "The Rust Programming Language" (MIT OR Apache-2.0),
taken from the rust-docs component of the Rust toolchain, with mdBook's chrome (sidebar,
scripts, styles) removed and the chapter content unchanged. The output is committed, so a
fresh machine has the demo corpus without this script; run it only to refresh the pages.
"""
import html
import re
import sys
from pathlib import Path

CHAPTERS = [
    "ch01-01-installation", "ch03-01-variables-and-mutability", "ch03-02-data-types",
    "ch04-01-what-is-ownership", "ch04-02-references-and-borrowing", "ch05-01-defining-structs",
    "ch06-01-defining-an-enum", "ch06-02-match", "ch08-01-vectors", "ch08-02-strings", "ch08-03-hash-maps",
    "ch09-01-unrecoverable-errors-with-panic", "ch09-02-recoverable-errors-with-result", "ch10-02-traits",
    "ch11-01-writing-tests", "ch13-01-closures", "ch15-01-box", "ch16-01-threads", "ch16-02-message-passing",
]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="../book.css">
</head>
<body>
<nav><a href="../">dotfind demo</a> · <a href="./">The Rust Programming Language (excerpts)</a></nav>
<main>
{main}
</main>
<footer>From <cite>The Rust Programming Language</cite> by Steve Klabnik, Carol Nichols and Chris Krycho,
with contributions from the Rust Community; MIT OR Apache-2.0. See ../NOTICE.txt.</footer>
</body>
</html>
"""


def main() -> None:
    book = Path(sys.argv[1]) if len(sys.argv) > 1 else next(
        Path.home().glob(".rustup/toolchains/*/share/doc/rust/html/book"))
    out = Path(__file__).resolve().parents[2] / "demo/site/book"
    out.mkdir(parents=True, exist_ok=True)
    links = []
    for name in CHAPTERS:
        text = (book / f"{name}.html").read_text(encoding="utf-8")
        title = html.unescape(re.search(r"<title>(.*?)</title>", text, re.S).group(1)).strip()
        main = re.search(r"<main>(.*?)</main>", text, re.S).group(1)
        main = re.sub(r"<script.*?</script>", "", main, flags=re.S)
        main = re.sub(r"<nav.*?</nav>", "", main, flags=re.S)
        (out / f"{name}.html").write_text(PAGE.format(title=html.escape(title), main=main.strip()), encoding="utf-8")
        links.append(f'<li><a href="{name}.html">{html.escape(title.split(" - ")[0])}</a></li>')
    index = PAGE.format(title="The Rust Programming Language (excerpts)",
                        main="<h1>The Rust Programming Language (excerpts)</h1>\n<ul>\n" + "\n".join(links) + "\n</ul>")
    (out / "index.html").write_text(index, encoding="utf-8")


if __name__ == "__main__":
    main()
