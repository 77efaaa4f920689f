// Shared helpers of the binding: the tensor handle, argument conversion, and the one error guard
// that turns every libtorch or argument error into a JS exception naming the op and its inputs.
#pragma once

#include <ATen/ATen.h>
#include <napi.h>

#include <atomic>
#include <string>
#include <vector>

namespace masksub {

// A tensor handle's slot. A JS handle is an External (carrying the tensor type tag) whose value
// encodes a slot index and the slot's generation, not a pointer: dispose() releases the tensor
// and bumps the generation, so a handle used after dispose (or after its slot was reused) is
// recognised as disposed without touching freed memory. `alive` is false for such handles.
struct Holder {
  at::Tensor tensor;
  bool alive = false;
  uint32_t generation = 1;
  uint32_t index = 0;
};

// Releases a live handle's tensor and frees its slot for reuse.
void release_holder(Holder* holder);

// A JS-visible generator handle (an External carrying the generator type tag).
struct GeneratorHolder {
  at::Generator generator;
};

// The handle behind a JS value, or nullptr when the value is not a handle of that kind (a
// disposed tensor handle gives a Holder whose `alive` is false): the
// N-API type tag is checked before the External's pointer is read, so a generator passed as a
// tensor (or any other External) is never misread.
Holder* tensor_holder(Napi::Value value);
GeneratorHolder* generator_holder(Napi::Value value);

extern std::atomic<int64_t> live_tensors;

// Argument errors raised by the conversion helpers; the guard turns them into TypeErrors.
struct ArgumentError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Napi::Value wrap(Napi::Env env, at::Tensor tensor);
Napi::Value wrap_list(Napi::Env env, const std::vector<at::Tensor>& tensors);
Napi::Value wrap_optional(Napi::Env env, const at::Tensor& tensor);

at::Tensor& tensor_arg(const Napi::CallbackInfo& info, size_t index);
c10::optional<at::Tensor> optional_tensor_arg(const Napi::CallbackInfo& info, size_t index);
std::vector<at::Tensor> tensor_list_arg(const Napi::CallbackInfo& info, size_t index);
int64_t int_arg(const Napi::CallbackInfo& info, size_t index);
c10::optional<int64_t> optional_int_arg(const Napi::CallbackInfo& info, size_t index);
double double_arg(const Napi::CallbackInfo& info, size_t index);
c10::optional<double> optional_double_arg(const Napi::CallbackInfo& info, size_t index);
bool bool_arg(const Napi::CallbackInfo& info, size_t index);
std::string string_arg(const Napi::CallbackInfo& info, size_t index);
std::vector<int64_t> int_list_arg(const Napi::CallbackInfo& info, size_t index);
c10::optional<std::vector<int64_t>> optional_int_list_arg(const Napi::CallbackInfo& info, size_t index);
at::Scalar scalar_arg(const Napi::CallbackInfo& info, size_t index);
c10::optional<at::Scalar> optional_scalar_arg(const Napi::CallbackInfo& info, size_t index);
bool is_tensor(const Napi::CallbackInfo& info, size_t index);
at::ScalarType dtype_arg(const Napi::CallbackInfo& info, size_t index);
c10::optional<at::ScalarType> optional_dtype_arg(const Napi::CallbackInfo& info, size_t index);
c10::Device device_arg(const Napi::CallbackInfo& info, size_t index);
c10::optional<at::Generator> generator_arg(const Napi::CallbackInfo& info, size_t index);
at::TensorOptions options_arg(const Napi::CallbackInfo& info, size_t dtype_index, size_t device_index);

std::string dtype_name(at::ScalarType type);
std::string describe_arguments(const Napi::CallbackInfo& info);

template <typename Body>
Napi::Value guard(const Napi::CallbackInfo& info, const char* op, Body body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const ArgumentError& error) {
    throw Napi::TypeError::New(info.Env(), std::string(op) + ": " + error.what());
  } catch (const c10::Error& error) {
    throw Napi::Error::New(info.Env(), std::string(op) + "(" + describe_arguments(info) +
                                           "): " + error.what_without_backtrace());
  } catch (const std::exception& error) {
    throw Napi::Error::New(info.Env(),
                           std::string(op) + "(" + describe_arguments(info) + "): " + error.what());
  }
}

// One pattern for every op: OP(name) { ... return value; } END
#define OP(NAME)                                                  \
  Napi::Value NAME(const Napi::CallbackInfo& info) {              \
    return ::masksub::guard(info, #NAME, [&]() -> Napi::Value {   \
      Napi::Env env = info.Env();                                 \
      (void)env;
#define END \
  });       \
  }

#define T(i) ::masksub::tensor_arg(info, i)
#define OT(i) ::masksub::optional_tensor_arg(info, i)
#define TL(i) ::masksub::tensor_list_arg(info, i)
#define I(i) ::masksub::int_arg(info, i)
#define OI(i) ::masksub::optional_int_arg(info, i)
#define D(i) ::masksub::double_arg(info, i)
#define OD(i) ::masksub::optional_double_arg(info, i)
#define B(i) ::masksub::bool_arg(info, i)
#define S(i) ::masksub::string_arg(info, i)
#define IL(i) ::masksub::int_list_arg(info, i)
#define OIL(i) ::masksub::optional_int_list_arg(info, i)
#define SC(i) ::masksub::scalar_arg(info, i)
#define OSC(i) ::masksub::optional_scalar_arg(info, i)
#define DT(i) ::masksub::dtype_arg(info, i)
#define ODT(i) ::masksub::optional_dtype_arg(info, i)
#define DEV(i) ::masksub::device_arg(info, i)
#define GEN(i) ::masksub::generator_arg(info, i)
#define OPTS(a, b) ::masksub::options_arg(info, a, b)
#define W(x) ::masksub::wrap(env, x)
#define ISTENSOR(i) ::masksub::is_tensor(info, i)

void install_caching_allocator();

// Every function of the addon, declared from the one list (ops.def); core.cc registers the same
// list. An OP body missing from the list fails to compile (-Werror=missing-declarations).
#define NATIVE_OP(NAME, ...) Napi::Value NAME(const Napi::CallbackInfo& info);
#include "ops.def"
#undef NATIVE_OP

}  // namespace masksub
