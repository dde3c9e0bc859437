#!/usr/bin/env bash
# Rewrites fuzz/seeds/ (committed) from real files: the demo index cut into lists (what
# `./build.sh test` builds into target/demo-index-lists), the tiny test bundles compiled, and
# the hard strings. Run again when a format changes; the fuzzers start from these, and from
# the inputs of past findings, kept as `regression-*`.
set -euo pipefail
cd "$(dirname "$0")/.."
index=target/demo-index-lists
[ -f "$index/manifest.json" ] || { echo "make_seeds: run ./build.sh test first ($index is missing)" >&2; exit 1; }
# Inputs that once found a bug (`regression-*`) stay.
mkdir -p fuzz/seeds && find fuzz/seeds -type f ! -name "regression-*" -delete
seed() { mkdir -p "fuzz/seeds/$1"; cat > "fuzz/seeds/$1/$2"; }
# A little-endian u32 (the passage count some targets take before the file).
u32() { python3 -c "import struct,sys; sys.stdout.buffer.write(struct.pack('<I', $1))"; }
passages=$(python3 -c "import json; print(json.load(open('$index/manifest.json'))['passage_count'])")

seed index_manifest lists.json < "$index/manifest.json"
seed index_manifest demo.json < target/demo-index/manifest.json
seed bundle_descriptor query.json < "$index/model/dotfind-model.json"
seed vector_shard centroids.bin < "$index/vectors/centroids.bin"
for f in "$index"/vectors/0000[0-2].bin; do seed vector_list "$(basename "$f")" < "$f"; done
dims=$(python3 -c "import json; print(json.load(open('$index/manifest.json'))['model']['dims'])")
{ u32 "$dims"; cat "$index/vectors/codebook.bin"; } | seed codebook codebook.bin
for f in "$index"/passages/0000[0-2].bin; do seed passage_shard "$(basename "$f")" < "$f"; done
{ u32 "$passages"; cat "$index/parts.bin"; } | seed part_table parts.bin
for f in "$index"/ids/*.bin; do { u32 "$passages"; cat "$f"; } | seed id_bucket "$(basename "$f")"; done
for f in "$index"/terms/0000[0-2].bin; do { u32 "$passages"; cat "$f"; } | seed term_bucket "$(basename "$f")"; done

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for kind in f32 int8; do
  cp tests/fixtures/tiny-onnx/$kind/{dotfind-model.json,model.onnx,tokenizer.json} "$tmp/"
  target/release/dotfind compile --model "$tmp" >/dev/null
  seed model_graph "tiny-$kind.graph" < "$tmp/model.graph"
  seed bundle_descriptor "tiny-$kind.json" < "$tmp/dotfind-model.json"
done
seed tokenizer_json tiny.json < tests/fixtures/tiny-onnx/f32/tokenizer.json

# Stored values: [kind, bits, group] then bytes (kind 0 f32, 1 f16, 2 group codes).
printf '\x00\x00\x00\x00\x00\x80\x3f\x00\x00\x00\xc0' | seed stored_values f32
printf '\x01\x00\x00\x00\x3c\x00\xc0\xff\x7b' | seed stored_values f16
{ printf '\x02\x04\x20'; head -c 20 /dev/zero; } | seed stored_values q4-32
{ printf '\x02\x08\x80'; head -c 132 /dev/zero; } | seed stored_values q8-128

python3 - <<'PY'
import json, os
strings = json.load(open('tests/fixtures/hard_strings.json'))
texts = strings['tokenizer_cases'] + strings['embedding_cases']
os.makedirs('fuzz/seeds/query_text', exist_ok=True)
for i, t in enumerate(texts):
    t = t if isinstance(t, str) else json.dumps(t)
    open(f'fuzz/seeds/query_text/{i:02d}.txt', 'w', encoding='utf-8').write(t[:2000])
PY
du -sh fuzz/seeds
