#!/usr/bin/env bash
# Runs the native misuse cases (wrong handles, a tensor for a generator, 5,000 failing ops with
# collected Generators) against a build of the addon with AddressSanitizer, so that an
# out-of-bounds read or a use-after-free is reported even where it would not crash. Not part of
# `npm test` (a sanitized build takes a few minutes). Any test file can be added:
#   bash scripts/asan-check.sh [test/engine.test.ts ...]
# The sanitized build goes to $MASKSUB_ASAN_DIR (default /tmp/masksub-asan); build/ is untouched.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${MASKSUB_ASAN_DIR:-/tmp/masksub-asan}"
libasan="$(gcc -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
  echo "asan-check: gcc's libasan.so was not found (apt-get install -y gcc)" >&2
  exit 1
fi

# A copy of what binding.gyp needs, so node-gyp builds into $work/build.
mkdir -p "$work/scripts"
rm -rf "$work/native"
cp -r "$root/native" "$work/native"
cp "$root/binding.gyp" "$work/"
cp "$root/scripts/torch-config.mjs" "$work/scripts/"
ln -sfn "$root/node_modules" "$work/node_modules"
nodedir=()
if [ -z "${npm_config_nodedir:-}" ] && [ -e /usr/include/node/node.h ]; then nodedir=(--nodedir=/usr); fi
echo "asan-check: building the addon with -fsanitize=address in $work/build"
(cd "$work" && CXXFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" LDFLAGS="-fsanitize=address" \
  node "$root/node_modules/node-gyp/bin/node-gyp.js" rebuild -j max "${nodedir[@]}" >"$work/build.log" 2>&1) || {
  tail -30 "$work/build.log" >&2
  exit 1
}

# Node and libtorch keep memory until exit, so leak reports would only be noise.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:print_summary=1"
export MASKSUB_ADDON="$work/build/Release/masksub_native.node"
run() {
  echo "asan-check: $*"
  LD_PRELOAD="$libasan" node "$@"
}
cd "$root"
status=0
run --import tsx test/helpers/binding-child.ts misuse || status=1
run --expose-gc --import tsx test/helpers/binding-child.ts generator-loop 5000 || status=1
for file in "$@"; do
  run --import tsx --test "$file" || status=1
done
if [ "$status" = 0 ]; then
  echo "asan-check: no AddressSanitizer report"
else
  echo "asan-check: FAILED (see the report above)" >&2
fi
exit "$status"
