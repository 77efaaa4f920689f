// Data-parallel communication through libtorch's c10d, the engine behind torch.distributed: a
// TCPStore rendezvous (rank 0 serves it, as torchrun's MASTER_ADDR:MASTER_PORT) and one default
// process group per process, as init_process_group makes: ProcessGroupGloo (CPU tensors; CUDA
// tensors through host memory) or ProcessGroupNCCL (CUDA tensors; torch.distributed's default
// backend for CUDA). Collectives run on the group's own threads (Gloo) or CUDA streams (NCCL);
// each call here waits for its work: with Gloo it returns once every rank took part, or throws a
// JS error (a peer that exits closes its sockets and the others fail at once; a peer that hangs
// fails them after the group's timeout); with NCCL the wait makes the current CUDA stream wait
// for the collective, and a hung peer is caught by NCCL's watchdog after the timeout, which ends
// the process as torch.distributed's NCCL does.
// Gloo is built when gloo's headers are found (Debian: libgloo-dev; scripts/torch-config.mjs
// defines MASKSUB_DISTRIBUTED). NCCL is built when the torch found has CUDA (MASKSUB_CUDA) and its
// ProcessGroupNCCL.hpp and NCCL's nccl.h are on the include path (pip's torch: the nvidia-nccl
// package's include/, which bench/gpu/run-on-device.sh adds). Without either, every function
// says what is missing.
// ProcessGroupNCCL.hpp pulls in ATen's CUDA context (cuBLAS, cuSPARSE, cuSOLVER headers) and
// nccl.h; without any of them NCCL is left out rather than failing the build. MASKSUB_NO_NCCL
// (CPPFLAGS=-DMASKSUB_NO_NCCL) leaves it out on purpose: run-on-device.sh rebuilds so when a
// torch's NCCL headers do not compile here.
#if defined(MASKSUB_CUDA) && !defined(MASKSUB_NO_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>) && \
    __has_include(<nccl.h>) && __has_include(<cublas_v2.h>) && __has_include(<cusparse.h>) && __has_include(<cusolverDn.h>)
#define MASKSUB_NCCL 1
#endif
#if defined(MASKSUB_DISTRIBUTED) || defined(MASKSUB_NCCL)
#define MASKSUB_C10D 1
#endif

#ifdef MASKSUB_C10D
// Before common.h: its one-letter argument macros (T, I, D, ...) would rewrite c10's templates.
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>
#endif

#include "common.h"

#ifdef MASKSUB_C10D
// torch's build defines these for its own sources; the headers hide the groups without them.
#ifdef MASKSUB_DISTRIBUTED
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef MASKSUB_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <chrono>
#include <memory>

namespace masksub {

#ifdef MASKSUB_C10D
namespace {

// What both groups derive from: torch 1.x's ProcessGroupGloo / ProcessGroupNCCL are
// c10d::ProcessGroup's; torch 2.x split that class, and they are c10d::Backend's (a ProcessGroup
// now dispatches to one Backend per device type). allreduce, broadcast and barrier have the same
// signatures on both, so the code below calls them through this type alone.
#if TORCH_VERSION_MAJOR >= 2
using GroupBackend = c10d::Backend;
#else
using GroupBackend = c10d::ProcessGroup;
#endif

struct DefaultGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<GroupBackend> group;
  std::string backend;
  int rank = 0;
  int size = 1;
};

std::unique_ptr<DefaultGroup> default_group;

DefaultGroup& current_group() {
  if (!default_group) throw std::runtime_error("no process group: call distInit first");
  return *default_group;
}

// Tensors are sent in buckets of at most `cap` bytes, each one flat buffer (DDP's bucketing:
// one collective per bucket instead of one per tensor). A bucket holds tensors of one dtype and
// device, in the given order, so every rank forms the same buckets from the same list.
std::vector<std::vector<size_t>> buckets_of(const std::vector<at::Tensor>& tensors, int64_t cap) {
  std::vector<std::vector<size_t>> buckets;
  int64_t bytes = 0;
  for (size_t index = 0; index < tensors.size(); index++) {
    const at::Tensor& tensor = tensors[index];
    if (!tensor.defined()) throw ArgumentError("tensor " + std::to_string(index) + " is undefined");
    if (tensor.is_sparse()) throw ArgumentError("tensor " + std::to_string(index) + " is sparse");
    const int64_t size = tensor.numel() * static_cast<int64_t>(tensor.element_size());
    bool fits = !buckets.empty() && bytes + size <= cap;
    if (fits) {
      const at::Tensor& first = tensors[buckets.back().front()];
      fits = first.scalar_type() == tensor.scalar_type() && first.device() == tensor.device();
    }
    if (!fits) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(index);
    bytes += size;
  }
  return buckets;
}

// One collective per bucket over a flat copy of its tensors, then the results copied back.
template <typename Launch>
void bucketed(std::vector<at::Tensor>& tensors, int64_t cap, Launch launch, bool copy_back,
              double scale) {
  at::NoGradGuard no_grad;
  for (const std::vector<size_t>& bucket : buckets_of(tensors, cap)) {
    std::vector<at::Tensor> members;
    members.reserve(bucket.size());
    for (size_t index : bucket) members.push_back(tensors[index]);
    const bool direct = members.size() == 1 && members[0].is_contiguous();
    at::Tensor flat = direct ? members[0] : at::cat([&] {
      std::vector<at::Tensor> views;
      for (const at::Tensor& member : members) views.push_back(member.reshape({-1}));
      return views;
    }());
    std::vector<at::Tensor> buffers{flat};
    launch(buffers)->wait();
    if (scale != 1.0) flat.mul_(scale);
    if (!direct && copy_back) {
      int64_t offset = 0;
      for (at::Tensor& member : members) {
        const int64_t count = member.numel();
        member.copy_(flat.narrow(0, offset, count).view(member.sizes()));
        offset += count;
      }
    }
  }
}

c10d::ReduceOp reduce_op(const std::string& name) {
  if (name == "sum" || name == "avg") return c10d::ReduceOp::SUM;
  if (name == "max") return c10d::ReduceOp::MAX;
  if (name == "min") return c10d::ReduceOp::MIN;
  throw ArgumentError("op must be 'sum', 'avg', 'max' or 'min', got '" + name + "'");
}

// The dimensions a BatchNorm reduces over (all but the channels, dimension 1) and the shape that
// broadcasts a per-channel vector against the input.
std::vector<int64_t> reduced_dims(const at::Tensor& input) {
  std::vector<int64_t> dims{0};
  for (int64_t dim = 2; dim < input.dim(); dim++) dims.push_back(dim);
  return dims;
}

std::vector<int64_t> channel_shape(const at::Tensor& input) {
  std::vector<int64_t> shape(static_cast<size_t>(input.dim()), 1);
  shape[1] = input.size(1);
  return shape;
}

void all_reduce_sum(at::Tensor& flat, const char* what) {
  std::vector<at::Tensor> buffers{flat};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::SUM;
  try {
    current_group().group->allreduce(buffers, options)->wait();
  } catch (const std::exception& error) {
    throw std::runtime_error(std::string("SyncBatchNorm: the all-reduce of ") + what + " failed: " + error.what());
  }
}

// torch.nn.SyncBatchNorm's training-mode math (torch/nn/modules/_functions.py), written with
// generic ATen ops because libtorch's batch_norm_stats / batch_norm_gather_stats_with_counts /
// batch_norm_backward_reduce / batch_norm_backward_elemt have CUDA kernels only. Forward: each
// rank's per-channel sum and sum of squares (accumulated in float64, so E[x^2] - E[x]^2 loses
// nothing a float32 batch could show) and its element count travel in one all-reduce; every rank
// then normalises with the global mean and biased variance, and updates its running statistics
// with the global mean and the unbiased variance, as BatchNorm over the whole batch does. Backward:
// the two per-channel reductions sum(dy) and sum(dy * (x - mean)) are all-reduced (one
// collective), and the input gradient is the single-batch formula with those global sums and the
// global count. The weight and bias gradients stay local, as PyTorch's: the data-parallel
// gradient all-reduce adds the ranks' parts.
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, at::Tensor running_mean, at::Tensor running_var, double momentum,
                            double eps) {
    const int64_t channels = input.size(1);
    const std::vector<int64_t> dims = reduced_dims(input);
    const at::Tensor wide = input.to(at::kDouble);
    at::Tensor stats = at::cat({wide.sum(dims), wide.square().sum(dims),
                                at::full({1}, static_cast<double>(input.numel() / channels), wide.options())});
    all_reduce_sum(stats, "the batch statistics");
    const double count = stats[2 * channels].item<double>();
    if (count <= 1) {
      throw ArgumentError("SyncBatchNorm expects more than 1 value per channel when training over all ranks, got " +
                          std::to_string(static_cast<int64_t>(count)));
    }
    const at::Tensor mean = stats.narrow(0, 0, channels).div(count);
    const at::Tensor variance = stats.narrow(0, channels, channels).div(count).sub(mean.square()).clamp_min(0);
    if (running_mean.defined()) running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
    if (running_var.defined()) {
      running_var.mul_(1 - momentum).add_(variance.mul(count / (count - 1)).to(running_var.scalar_type()), momentum);
    }
    const at::Tensor mean_narrow = mean.to(weight.scalar_type());
    const at::Tensor invstd = variance.add(eps).rsqrt().to(weight.scalar_type());
    // y = x * scale + shift with scale = weight * invstd and shift = bias - mean * scale, the
    // arrangement of libtorch's CPU batch_norm.
    const at::Tensor scale = weight.mul(invstd);
    const at::Tensor shift = bias.sub(mean_narrow.mul(scale));
    const std::vector<int64_t> shape = channel_shape(input);
    ctx->save_for_backward({input, weight, mean_narrow, invstd});
    ctx->saved_data["count"] = count;
    return input.mul(scale.view(shape)).add(shift.view(shape));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                  torch::autograd::variable_list grad_outputs) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const at::Tensor& input = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& mean = saved[2];
    const at::Tensor& invstd = saved[3];
    const double count = ctx->saved_data["count"].toDouble();
    const at::Tensor dy = grad_outputs[0].contiguous();
    const std::vector<int64_t> dims = reduced_dims(input);
    const std::vector<int64_t> shape = channel_shape(input);
    const int64_t channels = input.size(1);
    const at::Tensor centered = input.sub(mean.view(shape));
    const at::Tensor sum_dy = dy.sum(dims);
    const at::Tensor sum_dy_centered = dy.mul(centered).sum(dims);
    const at::Tensor grad_weight = sum_dy_centered.mul(invstd);
    const at::Tensor grad_bias = sum_dy;
    at::Tensor combined = at::cat({sum_dy, sum_dy_centered});
    all_reduce_sum(combined, "the gradient statistics");
    const at::Tensor mean_dy = combined.narrow(0, 0, channels).div(count);
    const at::Tensor mean_dy_centered = combined.narrow(0, channels, channels).div(count);
    const at::Tensor grad_input = dy.sub(mean_dy.view(shape))
                                      .sub(centered.mul(invstd.square().mul(mean_dy_centered).view(shape)))
                                      .mul(invstd.mul(weight).view(shape));
    return {grad_input, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace
#endif

// Why a backend is missing from this build, in the words a user can act on.
[[maybe_unused]] static std::string missing(const std::string& backend) {
  if (backend == "gloo") {
    return "this build of masksub has no Gloo backend: gloo's headers were not found when the addon was built "
           "(Debian: apt-get install -y libgloo-dev, then npm rebuild masksub)";
  }
#ifndef MASKSUB_CUDA
  return "this build of masksub has no NCCL backend: the libtorch it was built against has no CUDA "
         "(libtorch_cuda.so); build it against a CUDA torch (PYTHON3 with a CUDA PyTorch, or LIBTORCH=...) "
         "or use --dist-backend gloo";
#elif defined(MASKSUB_NO_NCCL)
  return "this build of masksub has no NCCL backend: it was built with MASKSUB_NO_NCCL (run-on-device.sh does so "
         "when torch's NCCL headers do not compile; see its build-nccl.log); use --dist-backend gloo";
#else
  return "this build of masksub has no NCCL backend: torch's ProcessGroupNCCL.hpp, NCCL's nccl.h or the cuBLAS / "
         "cuSPARSE / cuSOLVER headers were not on the include path when the addon was built (pip: the nvidia-* "
         "packages' include/ folders in CPATH, then npm rebuild masksub); or use --dist-backend gloo";
#endif
}

#ifndef MASKSUB_C10D
static std::runtime_error not_built() { return std::runtime_error(missing("gloo")); }
#endif

OP(distAvailable)
#ifdef MASKSUB_C10D
  return Napi::Boolean::New(env, true);
#else
  return Napi::Boolean::New(env, false);
#endif
END

// The backends this build has, in torch's names.
OP(distBackends)
  Napi::Array names = Napi::Array::New(env);
  uint32_t count = 0;
#ifdef MASKSUB_DISTRIBUTED
  names.Set(count++, "gloo");
#endif
#ifdef MASKSUB_NCCL
  names.Set(count++, "nccl");
#endif
  (void)count;
  return names;
END

// Why `backend` ('gloo' or 'nccl') is not in this build; empty when it is.
OP(distMissing)
  const std::string backend = S(0);
  if (backend != "gloo" && backend != "nccl") throw ArgumentError("backend must be 'gloo' or 'nccl', got '" + backend + "'");
#ifdef MASKSUB_DISTRIBUTED
  if (backend == "gloo") return Napi::String::New(env, "");
#endif
#ifdef MASKSUB_NCCL
  if (backend == "nccl") return Napi::String::New(env, "");
#endif
  return Napi::String::New(env, missing(backend));
END

// (rank, worldSize, host, port, timeoutMs, interface, backend): rank 0 serves the store on
// host:port; every rank connects to it and the group forms. Gloo: a full mesh of TCP pairs, on the
// network interface `interface` (GLOO_SOCKET_IFNAME's meaning; empty = the address `host` resolves
// to when it is a loopback address, else the machine's hostname, Gloo's default device). NCCL:
// rank 0 puts NCCL's unique id in the store and each rank's communicator forms on the first
// collective, on the device of that collective's tensors (NCCL reads NCCL_SOCKET_IFNAME itself).
OP(distInit)
#ifdef MASKSUB_C10D
  const int64_t rank = I(0);
  const int64_t size = I(1);
  const std::string host = S(2);
  const int64_t port = I(3);
  const int64_t timeout_ms = I(4);
  const std::string interface = S(5);
  const std::string backend = S(6);
  if (default_group) throw std::runtime_error("the process group is already initialised; call distDestroy first");
  if (size < 1) throw ArgumentError("world size must be >= 1, got " + std::to_string(size));
  if (rank < 0 || rank >= size) throw ArgumentError("rank " + std::to_string(rank) + " is outside [0, " + std::to_string(size) + ")");
  if (port < 1 || port > 65535) throw ArgumentError("port must be in [1, 65535], got " + std::to_string(port));
  if (timeout_ms < 1) throw ArgumentError("timeout must be positive, got " + std::to_string(timeout_ms) + " ms");
  if (backend != "gloo" && backend != "nccl") throw ArgumentError("backend must be 'gloo' or 'nccl', got '" + backend + "'");
#ifndef MASKSUB_DISTRIBUTED
  if (backend == "gloo") throw std::runtime_error(missing(backend));
#endif
#ifndef MASKSUB_NCCL
  if (backend == "nccl") throw std::runtime_error(missing(backend));
#endif
  const std::chrono::milliseconds timeout(timeout_ms);
  auto group = std::make_unique<DefaultGroup>();
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(port);
  store_options.isServer = rank == 0;
  store_options.numWorkers = static_cast<size_t>(size);
  store_options.waitWorkers = true;
  store_options.timeout = timeout;
  group->store = c10::make_intrusive<c10d::TCPStore>(host, store_options);
#ifdef MASKSUB_DISTRIBUTED
  if (backend == "gloo") {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const bool loopback = host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
    if (!interface.empty()) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else if (loopback) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    // Two threads move the buckets, torch.distributed's default for Gloo.
    options->threads = 2;
    group->group = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, static_cast<int>(rank),
                                                               static_cast<int>(size), options);
  }
#endif
#ifdef MASKSUB_NCCL
  if (backend == "nccl") {
    // ProcessGroupNCCL::Options derives from ProcessGroup::Options (torch 1.x) or Backend::Options
    // (2.x); both hold `timeout`, the watchdog's limit for one collective.
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    group->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(group->store, static_cast<int>(rank),
                                                               static_cast<int>(size), options);
  }
#endif
  group->backend = backend;
  group->rank = static_cast<int>(rank);
  group->size = static_cast<int>(size);
  default_group = std::move(group);
  return env.Undefined();
#else
  throw not_built();
#endif
END

OP(distDestroy)
#ifdef MASKSUB_C10D
  default_group.reset();
#endif
  return env.Undefined();
END

// (tensors, op, bucketBytes): in place on every tensor; 'avg' = sum / world size (Gloo has no
// AVG op and torch 1.13's NCCL none either; torch's DDP divides the same way).
OP(distAllReduce)
#ifdef MASKSUB_C10D
  std::vector<at::Tensor> tensors = TL(0);
  const std::string name = S(1);
  const int64_t cap = I(2);
  DefaultGroup& group = current_group();
  c10d::AllreduceOptions options;
  options.reduceOp = reduce_op(name);
  const double scale = name == "avg" ? 1.0 / group.size : 1.0;
  bucketed(tensors, cap, [&](std::vector<at::Tensor>& buffers) { return group.group->allreduce(buffers, options); },
           true, scale);
  return env.Undefined();
#else
  throw not_built();
#endif
END

// (tensors, root, bucketBytes): every rank's tensors take the root's values.
OP(distBroadcast)
#ifdef MASKSUB_C10D
  std::vector<at::Tensor> tensors = TL(0);
  const int64_t root = I(1);
  const int64_t cap = I(2);
  DefaultGroup& group = current_group();
  if (root < 0 || root >= group.size) throw ArgumentError("root " + std::to_string(root) + " is outside [0, " + std::to_string(group.size) + ")");
  c10d::BroadcastOptions options;
  options.rootRank = root;
  bucketed(tensors, cap, [&](std::vector<at::Tensor>& buffers) { return group.group->broadcast(buffers, options); },
           group.rank != root, 1.0);
  return env.Undefined();
#else
  throw not_built();
#endif
END

// (input, weight, bias, runningMean, runningVar, momentum, eps): training-mode BatchNorm whose
// batch statistics are those of every rank's batch together (torch.nn.SyncBatchNorm); the running
// statistics are updated in place with the global ones. Differentiable.
OP(syncBatchNorm)
#ifdef MASKSUB_C10D
  at::Tensor& input = T(0);
  at::Tensor& weight = T(1);
  at::Tensor& bias = T(2);
  c10::optional<at::Tensor> running_mean = OT(3);
  c10::optional<at::Tensor> running_var = OT(4);
  const double momentum = D(5);
  const double eps = D(6);
  current_group();
  if (input.dim() < 2) throw ArgumentError("input must have a channel dimension (N, C, ...), got shape " + c10::str(input.sizes()));
  const int64_t channels = input.size(1);
  for (const auto& [name, tensor] : {std::pair<const char*, const at::Tensor*>{"weight", &weight}, {"bias", &bias},
                                     {"runningMean", running_mean ? &*running_mean : nullptr},
                                     {"runningVar", running_var ? &*running_var : nullptr}}) {
    if (tensor && (tensor->dim() != 1 || tensor->size(0) != channels)) {
      throw ArgumentError(std::string(name) + " must have shape [" + std::to_string(channels) + "] (the input's channels), got " +
                          c10::str(tensor->sizes()));
    }
  }
  if (!(momentum >= 0 && momentum <= 1)) throw ArgumentError("momentum must be in [0, 1], got " + std::to_string(momentum));
  if (!(eps > 0)) throw ArgumentError("eps must be > 0, got " + std::to_string(eps));
  return W(SyncBatchNormFunction::apply(input, weight, bias, running_mean.value_or(at::Tensor()),
                                        running_var.value_or(at::Tensor()), momentum, eps));
#else
  throw not_built();
#endif
END

OP(distBarrier)
#ifdef MASKSUB_C10D
  current_group().group->barrier()->wait();
  return env.Undefined();
#else
  throw not_built();
#endif
END

}  // namespace masksub
