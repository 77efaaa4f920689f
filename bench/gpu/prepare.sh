#!/usr/bin/env bash
# Prepares everything a GPU device machine needs to run `npm run bench -- --device cuda` there:
# that machine has no Node.js and no internet, only python3 with a CUDA PyTorch (and a C++
# compiler). Writes bench/gpu/payload/ (gitignored), which must stay under 64 MiB:
#   node.xz                the node binary running this script (debug info stripped), xz-compressed
#   node-headers.tar.xz    include/node (node-gyp builds the addon against it, no download)
#   node_modules.tar.xz    node-addon-api, node-gyp and tsx with their dependencies (bench/gpu/deps.mjs)
#   sources.tar.xz         package.json, binding.gyp, native/, scripts/, src/, reference/, bench/ (the code)
#   run-on-device.sh       a copy of the script that unpacks, builds and runs on the device
#   MANIFEST.json          versions, sizes and checksums
# Then, on the device (the `run` tool copies the working tree; carry the ignored payload):
#   run(command="bash bench/gpu/run-on-device.sh", carry=["bench/gpu/payload"], timeout_s=600)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PAYLOAD="${PAYLOAD:-$HERE/payload}"
LIMIT_BYTES=$((64 * 1024 * 1024))
NODE_BIN="${NODE_BIN:-$(command -v node)}"
NODE_HEADERS="${NODE_HEADERS:-}"
XZ_LEVEL="${XZ_LEVEL:-6}"

log() { echo "[prepare $(date +%T)] $*" >&2; }
die() { echo "prepare.sh: $*" >&2; exit 1; }

command -v xz >/dev/null || die "xz is needed (apt-get install xz-utils)"
[ -x "$NODE_BIN" ] || die "no node binary (set NODE_BIN)"
node_version="$("$NODE_BIN" -p process.version)"
node_major="$("$NODE_BIN" -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node $node_version is too old (>= 20 needed)"
# A binary that only needs glibc and libstdc++ runs on another Linux; one linked to a shared
# libnode (Debian's nodejs package) would not.
if ldd "$NODE_BIN" 2>/dev/null | grep -q 'libnode\.so'; then
  die "$NODE_BIN needs a shared libnode.so; use a self-contained node binary (nodejs.org or NodeSource build), e.g. NODE_BIN=/path/to/node"
fi
if [ -z "$NODE_HEADERS" ]; then
  for candidate in "$(dirname "$(dirname "$(readlink -f "$NODE_BIN")")")/include/node" /usr/include/node /usr/local/include/node; do
    if [ -f "$candidate/node_api.h" ] && [ -f "$candidate/common.gypi" ]; then NODE_HEADERS="$candidate"; break; fi
  done
fi
[ -n "$NODE_HEADERS" ] && [ -f "$NODE_HEADERS/node_api.h" ] || die "node headers not found (set NODE_HEADERS to the include/node folder)"
headers_version="$(sed -n 's/^#define NODE_\(MAJOR\|MINOR\|PATCH\)_VERSION \([0-9]*\)$/\2/p' "$NODE_HEADERS/node_version.h" | paste -sd. -)"
[ "v$headers_version" = "$node_version" ] || log "warning: headers in $NODE_HEADERS are v$headers_version, the node binary is $node_version"
for path in package.json package-lock.json binding.gyp native scripts src reference/torch_models.py bench/run.ts bench/child.ts bench/common.ts \
    bench/machine.ts bench/plan.ts bench/summary.ts bench/torch_bench.py bench/gpu/step-bench.ts bench/gpu/step_bench.py bench/gpu/cuda-check.ts; do
  [ -e "$ROOT/$path" ] || die "$ROOT/$path is missing"
done

rm -rf "$PAYLOAD"
mkdir -p "$PAYLOAD"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

log "node $node_version from $NODE_BIN"
cp "$NODE_BIN" "$scratch/node"
if command -v strip >/dev/null; then strip --strip-debug "$scratch/node" 2>/dev/null || cp "$NODE_BIN" "$scratch/node"; fi
"$scratch/node" -e 'process.exit(0)' || die "the stripped node binary does not run"
xz -T0 "-$XZ_LEVEL" -c "$scratch/node" > "$PAYLOAD/node.xz"

log "node headers from $NODE_HEADERS"
mkdir -p "$scratch/headers/include"
cp -a "$NODE_HEADERS" "$scratch/headers/include/node"
tar -C "$scratch/headers" -cJf "$PAYLOAD/node-headers.tar.xz" include

log "node_modules (node-addon-api, node-gyp, tsx and dependencies)"
(cd "$ROOT" && "$NODE_BIN" bench/gpu/deps.mjs > "$scratch/modules.txt")
# tokenizers ships a 5 MB binary for each of 13 platforms; the device is Linux x64 with glibc.
tar -C "$ROOT" -cJf "$PAYLOAD/node_modules.tar.xz" \
  --exclude='node_modules/tokenizers/tokenizers.android-*' --exclude='node_modules/tokenizers/tokenizers.darwin-*' \
  --exclude='node_modules/tokenizers/tokenizers.win32-*' --exclude='node_modules/tokenizers/tokenizers.linux-arm*' \
  --exclude='node_modules/tokenizers/tokenizers.*-musl.node' -T "$scratch/modules.txt"

log "sources"
(
  cd "$ROOT"
  # bench/ without its results and the GPU payload/output; everything the addon build and the
  # benchmark read, nothing else (no dist/, build/, runs/).
  find package.json package-lock.json tsconfig.json binding.gyp native scripts src reference bench \
    \( -path bench/results -o -path bench/gpu/payload -o -path bench/gpu/out \) -prune -o -type f -print \
    | LC_ALL=C sort > "$scratch/sources.txt"
  tar -cJf "$PAYLOAD/sources.tar.xz" -T "$scratch/sources.txt"
)
cp "$HERE/run-on-device.sh" "$PAYLOAD/run-on-device.sh"

commit="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
"$NODE_BIN" - "$PAYLOAD" "$node_version" "$commit" "$(wc -l < "$scratch/modules.txt")" "$(wc -l < "$scratch/sources.txt")" <<'EOF'
const { createHash } = require('node:crypto');
const { readdirSync, readFileSync, statSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const [payload, node, commit, modules, sources] = process.argv.slice(2);
const files = {};
for (const name of readdirSync(payload).sort()) {
  const path = join(payload, name);
  files[name] = { bytes: statSync(path).size, sha256: createHash('sha256').update(readFileSync(path)).digest('hex') };
}
const manifest = { created: new Date().toISOString(), node, gitCommit: commit, nodeModulesFolders: Number(modules), sourceFiles: Number(sources), files };
writeFileSync(join(payload, 'MANIFEST.json'), JSON.stringify(manifest, null, 2) + '\n');
EOF

total="$(du -cb "$PAYLOAD"/* | tail -1 | cut -f1)"
ls -l "$PAYLOAD" >&2
log "payload: $PAYLOAD, $((total / 1024 / 1024)) MiB ($total bytes)"
[ "$total" -lt "$LIMIT_BYTES" ] || die "payload is $total bytes, over the 64 MiB that can be carried to the device"
echo "$PAYLOAD"
