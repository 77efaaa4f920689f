#!/usr/bin/env bash
# Runs on a GPU device machine (no Node.js, no internet; python3 with a CUDA PyTorch, a C++
# compiler, make): unpacks the payload that bench/gpu/prepare.sh made, builds the addon against
# the PyTorch that python3 holds (scripts/build-native.mjs: torch's include/ and lib/, its C++ ABI
# flag, torch_cuda linked with --no-as-needed), checks a CUDA matmul + backward against the CPU,
# then runs the benchmark with --device cuda. Everything it writes goes under $OUT:
#   run-on-device.log   this script's log        environment.json   python/torch/GPU/compiler facts
#   build.log           the addon build          cuda-check.json    bench/gpu/cuda-check.ts
#   bench-cuda.jsonl    the benchmark's JSON lines; bench-cuda.log its progress
#   cuda-<date>.json    the benchmark's results file (machine info, figures, raw child results)
#   gpu-steps-cuda-<date>.json, step-bench.md/.log   with STEP_BENCH=1: bench/gpu/step-bench.ts (issue
#                       15's ours / PyTorch table for vit_fmnist, ViT-S/16 bf16, ResNet-50 bf16 channels_last)
# Usage (from the repository root, with the payload carried along):
#   run(command="bash bench/gpu/run-on-device.sh", carry=["bench/gpu/payload"], timeout_s=600)
# Environment: OUT (default bench/gpu/out), PAYLOAD (default bench/gpu/payload), PYTHON3
# (default python3), BENCH_ROUNDS (default 2) and BENCH_SECONDS (timed seconds of steps per
# process, default 3), sized for a 10-minute device call; BENCH_ARGS (more arguments for
# bench/run.ts, e.g. "--quick"), SKIP_BENCH=1 (build and check only), and for a dry
# run on a machine without a GPU: REQUIRE_CUDA=0 BENCH_DEVICE=cpu. KEEP_WORK=1 keeps the unpacked tree.
# STEP_BENCH=1 runs bench/gpu/step-bench.ts after the checks (STEP_ROUNDS, default 2; STEP_SECONDS,
# default 3; STEP_BUDGET seconds, default 420, after which it starts no new process); with
# SKIP_BENCH=1 too, it is the only benchmark.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PAYLOAD="${PAYLOAD:-$HERE/payload}"
OUT="${OUT:-$HERE/out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/masksub-gpu.XXXXXX")"
[ "${KEEP_WORK:-0}" = "1" ] || trap 'rm -rf "$WORK"' EXIT
exec > >(tee -a "$OUT/run-on-device.log") 2>&1
started=$(date +%s)
log() { echo "[run-on-device $(date +%T) +$(( $(date +%s) - started ))s] $*"; }
die() { log "FAILED: $*"; exit 1; }

PY="${PYTHON3:-$(command -v python3 || true)}"
[ -n "$PY" ] || die "no python3"
[ -d "$PAYLOAD" ] || die "no payload at $PAYLOAD: run bench/gpu/prepare.sh on the preparing machine and carry bench/gpu/payload"
for file in node.xz node-headers.tar.xz node_modules.tar.xz sources.tar.xz; do
  [ -f "$PAYLOAD/$file" ] || die "$PAYLOAD/$file is missing: rerun bench/gpu/prepare.sh"
done

# xz-compressed files: the xz tool where present, else Python's lzma (always there with python3).
unxz_to() { # unxz_to FILE.xz TARGET
  if command -v xz >/dev/null; then xz -dc "$1" > "$2"; else "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}
untar_xz() { # untar_xz ARCHIVE.tar.xz DIRECTORY
  mkdir -p "$2"
  if command -v xz >/dev/null; then tar -C "$2" -xJf "$1"; else "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$1" "$2"; fi
}

log "work directory $WORK"
mkdir -p "$WORK/bin"
unxz_to "$PAYLOAD/node.xz" "$WORK/bin/node"
chmod +x "$WORK/bin/node"
export PATH="$WORK/bin:$PATH"
node -e 'process.exit(0)' || die "the unpacked node does not run here (glibc too old?)"
log "node $(node -p process.version)"
untar_xz "$PAYLOAD/node-headers.tar.xz" "$WORK/nodedir"
untar_xz "$PAYLOAD/sources.tar.xz" "$WORK/masksub"
untar_xz "$PAYLOAD/node_modules.tar.xz" "$WORK/masksub"
cp "$PAYLOAD/MANIFEST.json" "$OUT/payload-manifest.json" 2>/dev/null || true

# What this machine has: python's torch and its CUDA, the GPU, the compiler.
"$PY" - "$OUT/environment.json" <<'EOF' || die "python3 cannot import torch"
import json, os, platform, shutil, subprocess, sys
import torch
info = {
    'python': sys.executable, 'pythonVersion': platform.python_version(), 'torch': torch.__version__,
    'torchDir': os.path.dirname(torch.__file__), 'torchCuda': torch.version.cuda,
    'cudaAvailable': torch.cuda.is_available(), 'cxx11Abi': bool(torch._C._GLIBCXX_USE_CXX11_ABI),
    'gpus': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    'cpuCount': os.cpu_count(), 'compiler': shutil.which('c++') or shutil.which('g++'), 'make': shutil.which('make'),
}
try:
    info['nvidiaSmi'] = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'],
                                       capture_output=True, text=True, timeout=30).stdout.strip()
except Exception as error:  # noqa: BLE001
    info['nvidiaSmi'] = f'unavailable: {error}'
json.dump(info, open(sys.argv[1], 'w'), indent=1)
print(json.dumps(info))
if not info['cudaAvailable'] and os.environ.get('REQUIRE_CUDA', '1') != '0':
    sys.exit('torch.cuda.is_available() is False')
EOF
command -v make >/dev/null || die "make is missing (node-gyp needs make and a C++ compiler)"
command -v c++ >/dev/null || command -v g++ >/dev/null || die "no C++ compiler (c++/g++)"

# c10/cuda headers include cuda_runtime_api.h; pip's torch has no CUDA headers, so find them in a
# CUDA toolkit or in pip's nvidia-cuda-runtime package and hand them to the compiler through CPATH.
cuda_include="$("$PY" - <<'EOF'
import glob, os, sys
candidates = [os.environ.get('CUDA_HOME', ''), os.environ.get('CUDA_PATH', ''), '/usr/local/cuda']
candidates = [os.path.join(c, 'include') for c in candidates if c] + ['/usr/include']
for path in sys.path:
    candidates += glob.glob(os.path.join(path, 'nvidia', 'cuda_runtime', 'include'))
candidates += sorted(glob.glob('/usr/local/cuda-*/include'), reverse=True)
for c in candidates:
    if os.path.isfile(os.path.join(c, 'cuda_runtime_api.h')):
        print(c)
        break
EOF
)"
if [ -n "$cuda_include" ]; then
  log "CUDA headers: $cuda_include"
  export CPATH="$cuda_include${CPATH:+:$CPATH}"
else
  log "warning: no cuda_runtime_api.h found (CUDA_HOME, /usr/local/cuda, pip nvidia-cuda-runtime); the build may fail"
fi
# NCCL's nccl.h and the CUDA libraries' headers that torch's ProcessGroupNCCL.hpp pulls in through
# ATen's CUDA context (cuBLAS, cuSPARSE, cuSOLVER), for the c10d NCCL backend: pip's nvidia-*
# packages each hold an include/ folder; native/distributed.cc builds NCCL only when all are found.
nvidia_includes="$("$PY" - <<'EOF'
import glob, os, sys
found = []
for path in sys.path:
    for include in sorted(glob.glob(os.path.join(path, 'nvidia', '*', 'include'))):
        if include not in found:
            found.append(include)
print(':'.join(found))
EOF
)"
if [ -n "$nvidia_includes" ]; then
  export CPATH="$nvidia_includes${CPATH:+:$CPATH}"
fi
nccl_include="$(IFS=:; for dir in $nvidia_includes ${CUDA_HOME:+$CUDA_HOME/include} /usr/local/cuda/include /usr/include; do
  if [ -f "$dir/nccl.h" ]; then echo "$dir"; break; fi
done)"
if [ -n "$nccl_include" ]; then
  log "NCCL headers: $nccl_include"
  case ":$CPATH:" in *":$nccl_include:"*) ;; *) export CPATH="$nccl_include:$CPATH" ;; esac
else
  log "no nccl.h found (pip nvidia-nccl, CUDA_HOME): the addon builds without the NCCL backend"
fi

log "building the addon against $("$PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
cd "$WORK/masksub"
unset LIBTORCH
export PYTHON3="$PY" MASKSUB_PYTHON="$PY" npm_config_nodedir="$WORK/nodedir"
if ! node scripts/build-native.mjs > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  [ -n "$nccl_include" ] || die "the addon build failed (full log: build.log)"
  # The NCCL backend is the one part of the addon that was never compiled before a GPU machine
  # (native/distributed.cc); build without it rather than lose the run, and keep the log.
  mv "$OUT/build.log" "$OUT/build-nccl.log"
  log "the build with NCCL failed (build-nccl.log); building again with CPPFLAGS=-DMASKSUB_NO_NCCL"
  if ! CPPFLAGS="${CPPFLAGS:+$CPPFLAGS }-DMASKSUB_NO_NCCL" node scripts/build-native.mjs > "$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    die "the addon build failed without NCCL too (full log: build.log)"
  fi
fi
tail -3 "$OUT/build.log"
log "addon built"

log "CUDA check"
if ! node --import tsx bench/gpu/cuda-check.ts > "$OUT/cuda-check.json"; then
  cat "$OUT/cuda-check.json" || true
  [ "${REQUIRE_CUDA:-1}" = "0" ] || die "the CUDA check failed (cuda-check.json)"
  log "REQUIRE_CUDA=0: going on without CUDA"
fi
cat "$OUT/cuda-check.json"

# The trainer end to end on the GPU: a short MaskSub run on the generated data set (no download).
log "train on $([ "${REQUIRE_CUDA:-1}" = "0" ] && echo cpu || echo cuda)"
train_device="$([ "${REQUIRE_CUDA:-1}" = "0" ] && echo cpu || echo cuda)"
if node --import tsx src/cli/main.ts train --dataset synthetic --model vit_tiny_patch4_28 --method masksub --epochs 2 \
     --warmup-epochs 0 --batch-size 256 --limit-train 4096 --limit-test 1000 --device "$train_device" --out "$WORK/train-run" > "$OUT/train-$train_device.log" 2>&1; then
  cp "$WORK/train-run/metrics.jsonl" "$OUT/train-$train_device-metrics.jsonl"
  tail -3 "$OUT/train-$train_device.log"
else
  tail -20 "$OUT/train-$train_device.log"; log "the training run failed (train-$train_device.log); going on"
fi

if [ "${STEP_BENCH:-0}" = "1" ]; then
  step_device="$([ "${REQUIRE_CUDA:-1}" = "0" ] && echo cpu || echo cuda)"
  step_tiny="$([ "$step_device" = "cpu" ] && echo --tiny || true)"
  log "step bench --device $step_device (${STEP_ROUNDS:-2} rounds, ${STEP_SECONDS:-3} s per process, budget ${STEP_BUDGET:-420} s)"
  MASKSUB_BENCH_COMMIT="$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("gitCommit", ""))' "$PAYLOAD/MANIFEST.json" 2>/dev/null || true)"
  export MASKSUB_BENCH_COMMIT
  # shellcheck disable=SC2086
  if node --import tsx bench/gpu/step-bench.ts --device "$step_device" $step_tiny --rounds "${STEP_ROUNDS:-2}" --seconds "${STEP_SECONDS:-3}" \
       --budget "${STEP_BUDGET:-420}" --python "$PY" --out "$OUT" > "$OUT/step-bench.md" 2> "$OUT/step-bench.log"; then
    cat "$OUT/step-bench.md"
  else
    tail -20 "$OUT/step-bench.log"; cat "$OUT/step-bench.md" || true; log "the step bench had failures (step-bench.log); going on"
  fi
fi

if [ "${SKIP_BENCH:-0}" = "1" ]; then log "SKIP_BENCH=1: done"; exit 0; fi
stamp="$(date -u +%Y-%m-%dT%H-%M-%S)"
device="${BENCH_DEVICE:-cuda}"
log "benchmark --device $device (${BENCH_ROUNDS:-2} rounds, ${BENCH_SECONDS:-3} s of steps per process)"
# The unpacked tree has no .git: the result file takes its commit from the payload's manifest.
MASKSUB_BENCH_COMMIT="$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("gitCommit", ""))' "$PAYLOAD/MANIFEST.json" 2>/dev/null || true)"
export MASKSUB_BENCH_COMMIT
# shellcheck disable=SC2086
node --import tsx bench/run.ts --device "$device" --out "$OUT" --name "$device-$stamp" --rounds "${BENCH_ROUNDS:-2}" --seconds "${BENCH_SECONDS:-3}" ${BENCH_ARGS:-} \
  > "$OUT/bench-$device.jsonl" 2> "$OUT/bench-$device.log" || { tail -30 "$OUT/bench-$device.log"; die "the benchmark failed (bench-$device.log)"; }
tail -5 "$OUT/bench-$device.log"
grep -E '"metric":"(step_time_ratio|masksub_cost|peak_rss_ratio|gpu_used_mib)"' "$OUT/bench-$device.jsonl" | cut -c1-240 || true
log "done: results under $OUT"
