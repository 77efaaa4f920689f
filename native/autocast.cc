// Automatic mixed precision (torch.autocast): inside an autocast region libtorch runs matmuls and
// convolutions in a lower precision (bfloat16 or float16) and keeps precision-sensitive ops
// (softmax, losses, norms) in float32. The state is libtorch's thread-local one; enter and exit
// follow torch.autocast's __enter__ / __exit__ (nesting count, weight-cast cache cleared when the
// outermost region ends). CPU autocast in libtorch 1.13 supports bfloat16 only.
#include <ATen/autocast_mode.h>

#include "common.h"

namespace masksub {

namespace {

bool is_cuda_device(const std::string& device) {
  if (device == "cuda") return true;
  if (device == "cpu") return false;
  throw ArgumentError("autocast device must be 'cpu' or 'cuda', got '" + device + "'");
}

}  // namespace

// (device, dtype) -> [enabled, dtype] before: turns autocast on for the device with that dtype.
OP(autocastEnter)
  const bool cuda = is_cuda_device(S(0));
  const at::ScalarType dtype = DT(1);
  if (dtype != at::kBFloat16 && dtype != at::kHalf) throw ArgumentError("autocast dtype must be bfloat16 or float16, got " + dtype_name(dtype));
  if (!cuda && dtype != at::kBFloat16) throw ArgumentError("CPU autocast supports bfloat16 only (libtorch 1.13); use float16 on a CUDA device");
  const bool was = cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
  const at::ScalarType previous = cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
  if (cuda) {
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
  at::autocast::increment_nesting();
  Napi::Array state = Napi::Array::New(env, 2);
  state.Set(uint32_t{0}, Napi::Boolean::New(env, was));
  state.Set(uint32_t{1}, Napi::String::New(env, dtype_name(previous)));
  return state;
END

// (device, enabled, dtype): puts back what autocastEnter returned.
OP(autocastExit)
  const bool cuda = is_cuda_device(S(0));
  const bool enabled = B(1);
  const at::ScalarType dtype = DT(2);
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
  return env.Undefined();
END

OP(autocastEnabled)
  return Napi::Boolean::New(env, is_cuda_device(S(0)) ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled());
END

}  // namespace masksub
