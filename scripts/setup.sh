#!/usr/bin/env bash
# Installs everything masksub needs on a fresh Debian machine, then builds it (npm ci).
#   libtorch-dev          the PyTorch engine (C++), which the native addon is built against
#   libopenblas0-openmp   a fast BLAS for libtorch (the default reference BLAS is ~30x slower)
#   python3-torch         PyTorch itself, used by the tests to cross-check layers and losses
#   python3-torchvision   torchvision, used by the tests to cross-check image transforms and decoding
#   dataset-fashion-mnist the default data set (/usr/share/datasets/fashion-mnist)
#   chromium              headless browser for the report's real-browser test
#   libgloo-dev           gloo's headers, so the addon builds c10d's Gloo process group (the CPU backend of
#                         torch.distributed; Debian's libtorch already links libgloo) for train --nproc
#   libjpeg62-turbo-dev   libjpeg-turbo's headers, for the data loader's native image module (region decoding
#                         of JPEGs; without it the loader decodes with sharp, slower, the same bytes)
#   libjemalloc2          jemalloc, which `npm run bench` preloads under PyTorch (pytorch_jemalloc):
#                         the allocator PyTorch's CPU performance tuning guide recommends
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
  build-essential python3 binutils \
  libtorch-dev libopenblas0-openmp python3-torch python3-torchvision dataset-fashion-mnist chromium libjemalloc2 libgloo-dev libjpeg62-turbo-dev \
  fonts-noto-color-emoji unicode-data unicode-cldr-core
if ! command -v node >/dev/null || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "masksub needs Node.js >= 20 (with npm); install it first" >&2
  exit 1
fi
npm ci
