#!/usr/bin/env bash
# Type-checks native/distributed.cc's NCCL path on a machine without NCCL or cuBLAS (this CPU VM):
# g++ -fsyntax-only against the torch headers found here (Debian's libtorch 1.13 ships
# ProcessGroupNCCL.hpp and ATen/cuda) with MASKSUB_CUDA defined, the real cuda_runtime_api.h, and
# small stand-ins for the few NCCL / cuBLAS / cuSPARSE / cuSOLVER declarations those headers name
# (types and prototypes only: nothing is linked or run). It checks the torch 1.x branch (the group
# as c10d::ProcessGroup); the 2.x branch compiles for the first time on the GPU machine, where
# run-on-device.sh falls back to a build without NCCL if it does not.
# Usage: bash bench/gpu/nccl-syntax-check.sh   (1-2 min; exit 0 = the NCCL branch was compiled without a warning)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CUDA_INCLUDE="${CUDA_INCLUDE:-/usr/local/cuda/include}"
[ -f "$CUDA_INCLUDE/cuda_runtime_api.h" ] || { echo "nccl-syntax-check: no cuda_runtime_api.h in $CUDA_INCLUDE (set CUDA_INCLUDE)" >&2; exit 2; }
[ -f /usr/include/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp ] || { echo "nccl-syntax-check: no ProcessGroupNCCL.hpp under /usr/include (Debian: libtorch-dev)" >&2; exit 2; }
stubs="$(mktemp -d)"
trap 'rm -rf "$stubs"' EXIT
mkdir -p "$stubs/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$stubs/c10/cuda/impl/cuda_cmake_macros.h"
cat > "$stubs/nccl.h" <<'EOF'
#pragma once
#include <cuda_runtime_api.h>
#define NCCL_MAJOR 2
#define NCCL_MINOR 14
#define NCCL_PATCH 3
#define NCCL_VERSION(X, Y, Z) ((X) * 10000 + (Y) * 100 + (Z))
#define NCCL_VERSION_CODE NCCL_VERSION(NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH)
typedef struct ncclComm* ncclComm_t;
typedef struct { char internal[128]; } ncclUniqueId;
typedef enum { ncclSuccess, ncclUnhandledCudaError, ncclSystemError, ncclInternalError, ncclInvalidArgument, ncclInvalidUsage, ncclRemoteError, ncclInProgress } ncclResult_t;
typedef enum { ncclSum, ncclProd, ncclMax, ncclMin, ncclAvg } ncclRedOp_t;
typedef enum { ncclInt8, ncclUint8, ncclInt32, ncclUint32, ncclInt64, ncclUint64, ncclFloat16, ncclFloat32, ncclFloat64, ncclBfloat16 } ncclDataType_t;
typedef enum { ncclScalarDevice, ncclScalarHostImmediate } ncclScalarResidence_t;
extern "C" {
const char* ncclGetErrorString(ncclResult_t result);
const char* ncclGetLastError(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError);
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank);
ncclResult_t ncclRedOpCreatePreMulSum(ncclRedOp_t* op, void* scalar, ncclDataType_t datatype, ncclScalarResidence_t residence, ncclComm_t comm);
ncclResult_t ncclRedOpDestroy(ncclRedOp_t op, ncclComm_t comm);
}
EOF
printf '#pragma once\n#include <cuda_runtime_api.h>\ntypedef struct cublasContext* cublasHandle_t;\ntypedef enum { CUBLAS_STATUS_SUCCESS } cublasStatus_t;\n' > "$stubs/cublas_v2.h"
printf '#pragma once\ntypedef struct cusparseContext* cusparseHandle_t;\ntypedef enum { CUSPARSE_STATUS_SUCCESS } cusparseStatus_t;\n' > "$stubs/cusparse.h"
printf '#pragma once\ntypedef enum { CUSOLVER_STATUS_SUCCESS, CUSOLVER_STATUS_INVALID_VALUE = 3, CUSOLVER_STATUS_EXECUTION_FAILED = 6 } cusolverStatus_t;\n' > "$stubs/cusolver_common.h"
printf '#pragma once\n#include <cusolver_common.h>\ntypedef struct cusolverDnContext* cusolverDnHandle_t;\n' > "$stubs/cusolverDn.h"
addon_api="$(cd "$ROOT" && node -p "require('node-addon-api').include_dir" 2>/dev/null || echo "$ROOT/node_modules/node-addon-api")"
flags=(-std=c++17 -fexceptions -frtti -Wall -Wextra -Werror -Wno-unused-parameter -Wno-deprecated-declarations -Werror=missing-declarations
  -D_GLIBCXX_USE_CXX11_ABI=1 -DNAPI_CPP_EXCEPTIONS -DNAPI_VERSION=8 -DBUILDING_NODE_EXTENSION -DMASKSUB_DISTRIBUTED=1 -DMASKSUB_CUDA=1
  -I/usr/include/node -I"$ROOT/$addon_api" -I"$addon_api" -I"$stubs" -I"$CUDA_INCLUDE" -I/usr/include -I/usr/include/torch/csrc/api/include)
# The NCCL branch must be the one compiled, not skipped by distributed.cc's __has_include guard.
g++ -E "${flags[@]}" "$ROOT/native/distributed.cc" 2>/dev/null | grep -q 'make_intrusive<c10d::ProcessGroupNCCL>' \
  || { echo "nccl-syntax-check: the NCCL branch was not selected (distributed.cc's guard)" >&2; exit 1; }
g++ -fsyntax-only "${flags[@]}" "$ROOT/native/distributed.cc"
echo "nccl-syntax-check: native/distributed.cc's NCCL path type-checks against $(grep -o '"[0-9.]*"' /usr/include/torch/csrc/api/include/torch/version.h | tr -d '"') headers"
