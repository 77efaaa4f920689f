// Core of the binding: handles, argument conversion, tensor creation and raw bytes, autograd,
// random generators, threads and devices. Ops live in ops.cc.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Logging.h>
#include <torch/version.h>

#include <pthread.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <sstream>

#include "common.h"

#ifdef MASKSUB_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace masksub {

std::atomic<int64_t> live_tensors{0};

// N-API type tags (random 128-bit values) that mark an External as ours and say which struct its
// pointer holds; nothing else can carry them.
static const napi_type_tag tensor_tag = {0x4a7e44a73f584c04ULL, 0x00aa34f72024590aULL};
static const napi_type_tag generator_tag = {0xb343c6330c786561ULL, 0x7f83ad43500b61e0ULL};

// The pointer an External carries, or nullptr unless the value is an External with this tag.
// napi_get_value_external refuses anything but an External with a status (no JS exception), so
// the tag check only ever sees Externals, never a primitive, null or undefined. Two N-API calls
// per handle read (the tags cost about 2-3% of a tiny op such as add on 1-element tensors).
static void* tagged_data(Napi::Value value, const napi_type_tag& tag) {
  void* data = nullptr;
  if (napi_get_value_external(value.Env(), value, &data) != napi_ok) return nullptr;
  bool tagged = false;
  if (napi_check_object_type_tag(value.Env(), value, &tag, &tagged) != napi_ok || !tagged) {
    return nullptr;
  }
  return data;
}

// The tensor slots of this JS thread (each worker thread has its own addon instance; its handles
// are made, read and finalized on it). A deque: references to slots stay valid as it grows, so an
// op may hold a T(i) reference while its result is wrapped. Never freed: tensors released during
// static destruction at exit would outlive libtorch's allocator.
static thread_local std::deque<Holder>* slots = nullptr;
static thread_local std::vector<uint32_t>* free_slots = nullptr;
// Whether new handles get a GC finalizer (see setHandleFinalizers).
static thread_local bool finalize_handles = true;
// A disposed handle's view: not alive, no tensor.
static thread_local Holder disposed_holder;

static void* encode_handle(const Holder& holder) {
  return reinterpret_cast<void*>((static_cast<uintptr_t>(holder.generation) << 32) | holder.index);
}

Holder* tensor_holder(Napi::Value value) {
  void* data = tagged_data(value, tensor_tag);
  if (!data) return nullptr;
  const auto code = reinterpret_cast<uintptr_t>(data);
  const auto index = static_cast<uint32_t>(code & 0xffffffffu);
  const auto generation = static_cast<uint32_t>(code >> 32);
  if (slots && index < slots->size()) {
    Holder& holder = (*slots)[index];
    if (holder.alive && holder.generation == generation) return &holder;
  }
  return &disposed_holder;
}

void release_holder(Holder* holder) {
  if (!holder->alive || holder == &disposed_holder) return;
  holder->alive = false;
  holder->tensor.reset();
  // Generation 0 is never used, so no handle encodes to a null pointer.
  if (++holder->generation == 0) holder->generation = 1;
  free_slots->push_back(holder->index);
  live_tensors--;
}

GeneratorHolder* generator_holder(Napi::Value value) {
  return static_cast<GeneratorHolder*>(tagged_data(value, generator_tag));
}

// What a JS value is, for errors that say what was passed instead of a handle.
static std::string kind_of(Napi::Value value) {
  if (tensor_holder(value)) return "a tensor";
  if (generator_holder(value)) return "a generator";
  if (value.IsExternal()) return "a foreign native handle";
  if (value.IsUndefined()) return "undefined";
  if (value.IsNull()) return "null";
  if (value.IsNumber()) return "a number";
  if (value.IsString()) return "a string";
  if (value.IsBoolean()) return "a boolean";
  if (value.IsArray()) return "an array";
  if (value.IsFunction()) return "a function";
  return "an object";
}

// A handle's finalizer (when it has one): the tensor is released when the JS handle is garbage
// collected without having been disposed.
static void finalize_holder(napi_env, void* data, void*) {
  const auto code = reinterpret_cast<uintptr_t>(data);
  const auto index = static_cast<uint32_t>(code & 0xffffffffu);
  const auto generation = static_cast<uint32_t>(code >> 32);
  if (!slots || index >= slots->size()) return;
  Holder& holder = (*slots)[index];
  if (holder.alive && holder.generation == generation) release_holder(&holder);
}

// The plain N-API calls: node-addon-api's External::New allocates a second block per handle to
// carry a C++ finalizer, and a tensor handle is made for every op result. The finalizer itself is
// the larger part of a handle's cost (N-API keeps a weak reference per handle and the GC calls
// back for each), so handles made inside a tidy scope, which disposes them, are made without one
// (setHandleFinalizers): a tiny op in a scope measured 0.61x its former cost, a handle made and
// disposed in a scope 0.74x (bench/handles.ts, README).
Napi::Value wrap(Napi::Env env, at::Tensor tensor) {
  if (!slots) {
    slots = new std::deque<Holder>();
    free_slots = new std::vector<uint32_t>();
  }
  Holder* holder;
  if (!free_slots->empty()) {
    holder = &(*slots)[free_slots->back()];
    free_slots->pop_back();
  } else {
    if (slots->size() >= 0xffffffffu) throw Napi::Error::New(env, "too many live tensor handles");
    slots->emplace_back();
    holder = &slots->back();
    holder->index = static_cast<uint32_t>(slots->size() - 1);
  }
  holder->tensor = std::move(tensor);
  holder->alive = true;
  live_tensors++;
  napi_value external = nullptr;
  if (napi_create_external(env, encode_handle(*holder), finalize_handles ? finalize_holder : nullptr, nullptr,
                           &external) != napi_ok) {
    release_holder(holder);
    throw Napi::Error::New(env, "cannot create a tensor handle");
  }
  if (napi_type_tag_object(env, external, &tensor_tag) != napi_ok) {
    release_holder(holder);
    throw Napi::Error::New(env, "cannot type-tag a tensor handle");
  }
  return Napi::Value(env, external);
}

Napi::Value wrap_list(Napi::Env env, const std::vector<at::Tensor>& tensors) {
  Napi::Array array = Napi::Array::New(env, tensors.size());
  for (size_t i = 0; i < tensors.size(); i++) array.Set(i, wrap(env, tensors[i]));
  return array;
}

Napi::Value wrap_optional(Napi::Env env, const at::Tensor& tensor) {
  if (!tensor.defined()) return env.Null();
  return wrap(env, tensor);
}

static bool absent(const Napi::CallbackInfo& info, size_t index) {
  return index >= info.Length() || info[index].IsUndefined() || info[index].IsNull();
}

static std::string position(size_t index) { return "argument " + std::to_string(index); }

// Picks an op's overload (tensor or number); tensor_arg then checks the tag, so another handle
// kind here still ends in a TypeError naming the argument.
bool is_tensor(const Napi::CallbackInfo& info, size_t index) {
  return index < info.Length() && info[index].IsExternal();
}

at::Tensor& tensor_arg(const Napi::CallbackInfo& info, size_t index) {
  Holder* holder = index < info.Length() ? tensor_holder(info[index]) : nullptr;
  if (!holder) {
    throw ArgumentError(position(index) + " must be a tensor, got " +
                        (index < info.Length() ? kind_of(info[index]) : "nothing"));
  }
  if (!holder->alive) {
    throw ArgumentError(position(index) + " is a tensor that was already disposed");
  }
  return holder->tensor;
}

c10::optional<at::Tensor> optional_tensor_arg(const Napi::CallbackInfo& info, size_t index) {
  if (absent(info, index)) return c10::nullopt;
  return tensor_arg(info, index);
}

std::vector<at::Tensor> tensor_list_arg(const Napi::CallbackInfo& info, size_t index) {
  if (index >= info.Length() || !info[index].IsArray()) {
    throw ArgumentError(position(index) + " must be an array of tensors");
  }
  Napi::Array array = info[index].As<Napi::Array>();
  std::vector<at::Tensor> tensors;
  tensors.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) {
    Holder* holder = tensor_holder(array.Get(i));
    if (!holder) {
      throw ArgumentError(position(index) + " must hold only tensors, but item " +
                          std::to_string(i) + " is " + kind_of(array.Get(i)));
    }
    if (!holder->alive) throw ArgumentError(position(index) + " holds a disposed tensor");
    tensors.push_back(holder->tensor);
  }
  return tensors;
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t index) {
  if (index < info.Length() && info[index].IsBigInt()) {
    bool lossless = true;
    return info[index].As<Napi::BigInt>().Int64Value(&lossless);
  }
  if (index >= info.Length() || !info[index].IsNumber()) {
    throw ArgumentError(position(index) + " must be an integer");
  }
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (value != static_cast<double>(static_cast<int64_t>(value))) {
    throw ArgumentError(position(index) + " must be an integer, got " + std::to_string(value));
  }
  return static_cast<int64_t>(value);
}

c10::optional<int64_t> optional_int_arg(const Napi::CallbackInfo& info, size_t index) {
  if (absent(info, index)) return c10::nullopt;
  return int_arg(info, index);
}

double double_arg(const Napi::CallbackInfo& info, size_t index) {
  if (index >= info.Length() || !info[index].IsNumber()) {
    throw ArgumentError(position(index) + " must be a number");
  }
  return info[index].As<Napi::Number>().DoubleValue();
}

c10::optional<double> optional_double_arg(const Napi::CallbackInfo& info, size_t index) {
  if (absent(info, index)) return c10::nullopt;
  return double_arg(info, index);
}

bool bool_arg(const Napi::CallbackInfo& info, size_t index) {
  if (absent(info, index)) return false;
  if (!info[index].IsBoolean()) throw ArgumentError(position(index) + " must be a boolean");
  return info[index].As<Napi::Boolean>().Value();
}

std::string string_arg(const Napi::CallbackInfo& info, size_t index) {
  if (index >= info.Length() || !info[index].IsString()) {
    throw ArgumentError(position(index) + " must be a string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

std::vector<int64_t> int_list_arg(const Napi::CallbackInfo& info, size_t index) {
  if (index < info.Length() && info[index].IsNumber()) return {int_arg(info, index)};
  if (index >= info.Length() || !info[index].IsArray()) {
    throw ArgumentError(position(index) + " must be an array of integers");
  }
  Napi::Array array = info[index].As<Napi::Array>();
  std::vector<int64_t> values(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value value = array.Get(i);
    if (!value.IsNumber()) throw ArgumentError(position(index) + " must hold only integers");
    double number = value.As<Napi::Number>().DoubleValue();
    if (number != static_cast<double>(static_cast<int64_t>(number))) {
      throw ArgumentError(position(index) + " must hold only integers");
    }
    values[i] = static_cast<int64_t>(number);
  }
  return values;
}

c10::optional<std::vector<int64_t>> optional_int_list_arg(const Napi::CallbackInfo& info,
                                                          size_t index) {
  if (absent(info, index)) return c10::nullopt;
  return int_list_arg(info, index);
}

// Whole numbers become integer scalars, as Python ints do, so int tensors stay int.
at::Scalar scalar_arg(const Napi::CallbackInfo& info, size_t index) {
  if (index < info.Length() && info[index].IsBoolean()) {
    return at::Scalar(info[index].As<Napi::Boolean>().Value());
  }
  double value = double_arg(info, index);
  if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 9.0e15) {
    return at::Scalar(static_cast<int64_t>(value));
  }
  return at::Scalar(value);
}

c10::optional<at::Scalar> optional_scalar_arg(const Napi::CallbackInfo& info, size_t index) {
  if (absent(info, index)) return c10::nullopt;
  return scalar_arg(info, index);
}

static const std::vector<std::pair<std::string, at::ScalarType>>& dtype_table() {
  static const std::vector<std::pair<std::string, at::ScalarType>> table = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"bfloat16", at::kBFloat16},
      {"float16", at::kHalf},  {"int64", at::kLong},     {"int32", at::kInt},
      {"int16", at::kShort},   {"int8", at::kChar},      {"uint8", at::kByte},
      {"bool", at::kBool}};
  return table;
}

at::ScalarType dtype_arg(const Napi::CallbackInfo& info, size_t index) {
  std::string name = string_arg(info, index);
  for (const auto& entry : dtype_table()) {
    if (entry.first == name) return entry.second;
  }
  throw ArgumentError("unknown dtype '" + name + "'");
}

c10::optional<at::ScalarType> optional_dtype_arg(const Napi::CallbackInfo& info, size_t index) {
  if (absent(info, index)) return c10::nullopt;
  return dtype_arg(info, index);
}

std::string dtype_name(at::ScalarType type) {
  for (const auto& entry : dtype_table()) {
    if (entry.second == type) return entry.first;
  }
  return c10::toString(type);
}

c10::Device device_arg(const Napi::CallbackInfo& info, size_t index) {
  if (absent(info, index)) return c10::Device(c10::kCPU);
  std::string name = string_arg(info, index);
  try {
    c10::Device device(name);
    if (device.is_cuda() && !at::hasCUDA()) {
      throw ArgumentError("device '" + name +
                          "' requested, but this build of the addon has no CUDA (libtorch " +
                          "without CUDA or no GPU visible)");
    }
    return device;
  } catch (const c10::Error&) {
    throw ArgumentError("unknown device '" + name + "' (use 'cpu', 'cuda' or 'cuda:N')");
  }
}

c10::optional<at::Generator> generator_arg(const Napi::CallbackInfo& info, size_t index) {
  if (absent(info, index)) return c10::nullopt;
  GeneratorHolder* holder = generator_holder(info[index]);
  if (!holder) {
    throw ArgumentError(position(index) + " must be a generator, got " + kind_of(info[index]));
  }
  return holder->generator;
}

at::TensorOptions options_arg(const Napi::CallbackInfo& info, size_t dtype_index,
                              size_t device_index) {
  at::TensorOptions options = at::TensorOptions().device(device_arg(info, device_index));
  auto dtype = optional_dtype_arg(info, dtype_index);
  return options.dtype(dtype.value_or(at::kFloat));
}

// Runs while an error is being reported, so it reads handles only through their tags.
std::string describe_arguments(const Napi::CallbackInfo& info) {
  std::ostringstream out;
  for (size_t i = 0; i < info.Length(); i++) {
    if (i) out << ", ";
    Napi::Value value = info[i];
    if (Holder* holder = tensor_holder(value)) {
      if (!holder->alive) {
        out << "<disposed tensor>";
      } else if (!holder->tensor.defined()) {
        out << "<undefined tensor>";
      } else {
        out << "tensor" << holder->tensor.sizes() << " " << dtype_name(holder->tensor.scalar_type());
        if (!holder->tensor.is_cpu()) out << " " << holder->tensor.device();
      }
    } else if (generator_holder(value)) {
      out << "<generator>";
    } else if (value.IsExternal()) {
      out << "<foreign native handle>";
    } else if (value.IsNumber()) {
      out << value.As<Napi::Number>().DoubleValue();
    } else if (value.IsString()) {
      out << "'" << value.As<Napi::String>().Utf8Value() << "'";
    } else if (value.IsBoolean()) {
      out << (value.As<Napi::Boolean>().Value() ? "true" : "false");
    } else if (value.IsArray()) {
      Napi::Array array = value.As<Napi::Array>();
      out << "[";
      for (uint32_t j = 0; j < array.Length() && j < 8; j++) {
        if (j) out << ",";
        Napi::Value item = array.Get(j);
        if (item.IsNumber()) {
          out << item.As<Napi::Number>().DoubleValue();
        } else if (Holder* holder = tensor_holder(item)) {
          if (holder->alive) out << "tensor" << holder->tensor.sizes();
          else out << "<disposed>";
        } else {
          out << "?";
        }
      }
      if (array.Length() > 8) out << ",...";
      out << "]";
    } else if (value.IsNull() || value.IsUndefined()) {
      out << "null";
    } else {
      out << "?";
    }
  }
  return out.str();
}

// ---- handles and metadata ----
// Reads the handle without tensor_arg, which refuses disposed tensors: disposing twice is fine.
static Holder* handle_arg(const Napi::CallbackInfo& info, size_t index) {
  Holder* holder = index < info.Length() ? tensor_holder(info[index]) : nullptr;
  if (!holder) {
    throw ArgumentError(position(index) + " must be a tensor, got " +
                        (index < info.Length() ? kind_of(info[index]) : "nothing"));
  }
  return holder;
}

OP(dispose)
  release_holder(handle_arg(info, 0));
  return env.Undefined();
END

// (on): whether handles made from now on get a GC finalizer; returns the previous setting.
// tidy() turns them off while a scope is open: every tensor made there is disposed by the scope
// or, when it escapes (keep(), a top-level tidy's result), handed to a FinalizationRegistry.
OP(setHandleFinalizers)
  const bool previous = finalize_handles;
  finalize_handles = B(0);
  return Napi::Boolean::New(env, previous);
END

OP(isAlive) return Napi::Boolean::New(env, handle_arg(info, 0)->alive); END

OP(liveTensors) return Napi::Number::New(env, static_cast<double>(live_tensors.load())); END

OP(shape)
  at::Tensor& tensor = T(0);
  Napi::Array array = Napi::Array::New(env, tensor.dim());
  for (int64_t i = 0; i < tensor.dim(); i++) array.Set(i, Napi::Number::New(env, tensor.size(i)));
  return array;
END

OP(dtype) return Napi::String::New(env, dtype_name(T(0).scalar_type())); END
OP(device) return Napi::String::New(env, T(0).device().str()); END
OP(numel) return Napi::Number::New(env, static_cast<double>(T(0).numel())); END
OP(dim) return Napi::Number::New(env, static_cast<double>(T(0).dim())); END
OP(isContiguous) return Napi::Boolean::New(env, T(0).is_contiguous()); END

OP(item)
  at::Tensor& tensor = T(0);
  if (tensor.numel() != 1) {
    throw ArgumentError("item() needs a tensor with one element, got shape " +
                        c10::str(tensor.sizes()));
  }
  at::Scalar value = tensor.item();
  if (value.isBoolean()) return Napi::Boolean::New(env, value.toBool());
  return Napi::Number::New(env, value.toDouble());
END

// ---- raw bytes (typed arrays in and out, safetensors) ----
OP(fromBytes)
  if (!info[0].IsTypedArray() && !info[0].IsBuffer() && !info[0].IsArrayBuffer()) {
    throw ArgumentError("argument 0 must be a typed array or buffer");
  }
  const uint8_t* data = nullptr;
  size_t length = 0;
  if (info[0].IsTypedArray()) {
    Napi::TypedArray array = info[0].As<Napi::TypedArray>();
    data = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
    length = array.ByteLength();
  } else {
    Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
    data = static_cast<const uint8_t*>(buffer.Data());
    length = buffer.ByteLength();
  }
  at::ScalarType type = DT(1);
  std::vector<int64_t> shape = IL(2);
  for (int64_t size : shape) {
    if (size < 0) throw ArgumentError("shape sizes must not be negative");
  }
  at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(type));
  size_t expected = static_cast<size_t>(tensor.numel()) * tensor.element_size();
  if (expected != length) {
    throw ArgumentError("shape " + c10::str(tensor.sizes()) + " of " + dtype_name(type) +
                        " needs " + std::to_string(expected) + " bytes, got " +
                        std::to_string(length));
  }
  if (length) std::memcpy(tensor.data_ptr(), data, length);
  return W(tensor);
END

OP(toBytes)
  at::Tensor tensor = T(0).detach().to(at::kCPU).contiguous();
  size_t length = static_cast<size_t>(tensor.numel()) * tensor.element_size();
  Napi::Buffer<uint8_t> buffer = Napi::Buffer<uint8_t>::New(env, length);
  if (length) std::memcpy(buffer.Data(), tensor.data_ptr(), length);
  return buffer;
END

// ---- creation ----
OP(empty) return W(at::empty(IL(0), OPTS(1, 2))); END
OP(zeros) return W(at::zeros(IL(0), OPTS(1, 2))); END
OP(ones) return W(at::ones(IL(0), OPTS(1, 2))); END
OP(full) return W(at::full(IL(0), SC(1), OPTS(2, 3))); END
OP(arange) return W(at::arange(SC(0), SC(1), SC(2), OPTS(3, 4))); END
OP(linspace) return W(at::linspace(SC(0), SC(1), I(2), OPTS(3, 4))); END
OP(eye) return W(at::eye(I(0), I(1), OPTS(2, 3))); END
OP(rand) return W(at::rand(IL(0), GEN(3), OPTS(1, 2))); END
OP(randn) return W(at::randn(IL(0), GEN(3), OPTS(1, 2))); END
OP(randint) return W(at::randint(I(0), I(1), IL(2), GEN(5), OPTS(3, 4))); END
OP(randperm) return W(at::randperm(I(0), GEN(3), OPTS(1, 2))); END
OP(bernoulli)
  if (info[1].IsNumber()) return W(at::bernoulli(T(0), D(1), GEN(2)));
  return W(at::bernoulli(T(0), GEN(2)));
END
OP(zerosLike) return W(at::zeros_like(T(0))); END
OP(onesLike) return W(at::ones_like(T(0))); END
OP(fullLike) return W(at::full_like(T(0), SC(1))); END
OP(randLike) return W(at::rand_like(T(0))); END
OP(randnLike) return W(at::randn_like(T(0))); END

// ---- conversion ----
OP(to)
  at::Tensor& tensor = T(0);
  auto dtype = ODT(1);
  c10::Device device = info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()
                           ? DEV(2) : tensor.device();
  return W(tensor.to(device, dtype.value_or(tensor.scalar_type()), B(3), B(4)));
END
OP(contiguous) return W(T(0).contiguous()); END
OP(clone) return W(T(0).clone()); END
OP(detach) return W(T(0).detach()); END
OP(alias) return W(T(0)); END

// ---- autograd ----
OP(requiresGrad) return Napi::Boolean::New(env, T(0).requires_grad()); END
OP(setRequiresGrad) T(0).requires_grad_(B(1)); return env.Undefined(); END
OP(isLeaf) return Napi::Boolean::New(env, T(0).is_leaf()); END
OP(grad) return wrap_optional(env, T(0).grad()); END
OP(setGrad)
  if (absent(info, 1)) T(0).mutable_grad().reset();
  else T(0).mutable_grad() = T(1);
  return env.Undefined();
END
OP(setData) T(0).set_data(T(1)); return env.Undefined(); END
OP(retainGrad) T(0).retain_grad(); return env.Undefined(); END
OP(backward)
  at::Tensor& tensor = T(0);
  c10::optional<at::Tensor> gradient = OT(1);
  c10::optional<bool> retain = absent(info, 2) ? c10::nullopt : c10::optional<bool>(B(2));
  tensor.backward(gradient.value_or(at::Tensor()), retain, false);
  return env.Undefined();
END
OP(setGradEnabled)
  bool previous = at::GradMode::is_enabled();
  at::GradMode::set_enabled(B(0));
  return Napi::Boolean::New(env, previous);
END
OP(isGradEnabled) return Napi::Boolean::New(env, at::GradMode::is_enabled()); END

// ---- random numbers ----
OP(manualSeed)
  at::manual_seed(static_cast<uint64_t>(I(0)));
  return env.Undefined();
END

OP(newGenerator)
  auto* holder = new GeneratorHolder{at::make_generator<at::CPUGeneratorImpl>(
      static_cast<uint64_t>(I(0)))};
  auto external = Napi::External<GeneratorHolder>::New(
      env, holder, [](Napi::Env, GeneratorHolder* unused) { delete unused; });
  external.TypeTag(&generator_tag);
  return external;
END

static at::Generator generator_or_default(const Napi::CallbackInfo& info, size_t index) {
  auto generator = generator_arg(info, index);
  if (generator) return *generator;
  return at::detail::getDefaultCPUGenerator();
}

OP(generatorSeed)
  at::Generator generator = generator_or_default(info, 1);
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_current_seed(static_cast<uint64_t>(I(0)));
  return env.Undefined();
END

OP(getRngState)
  at::Generator generator = generator_or_default(info, 0);
  std::lock_guard<std::mutex> lock(generator.mutex());
  return W(generator.get_state());
END

OP(setRngState)
  at::Generator generator = generator_or_default(info, 1);
  at::Tensor state = T(0);
  if (state.scalar_type() != at::kByte || state.dim() != 1) {
    throw ArgumentError("a generator state is a 1-D uint8 tensor");
  }
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
  return env.Undefined();
END

// ---- threads, devices, build ----
// Starts `count` threads that all wait at a gate, then lets them go. libtorch's thread pools
// (OpenMP's team and the pthreadpool behind NNPACK/XNNPACK) wait forever for a worker that
// pthread_create could not start (seen under `ulimit -u 100`), so we find out first and fail.
static void probe_threads(int64_t count) {
  struct Gate {
    std::mutex mutex;
    std::condition_variable opened;
    bool open = false;
  } gate;
  auto wait_at_gate = [](void* argument) -> void* {
    auto* shared = static_cast<Gate*>(argument);
    std::unique_lock<std::mutex> lock(shared->mutex);
    shared->opened.wait(lock, [shared] { return shared->open; });
    return nullptr;
  };
  std::vector<pthread_t> started;
  started.reserve(static_cast<size_t>(count));
  int failure = 0;
  for (int64_t i = 0; i < count; i++) {
    pthread_t thread;
    failure = pthread_create(&thread, nullptr, wait_at_gate, &gate);
    if (failure != 0) break;
    started.push_back(thread);
  }
  {
    std::lock_guard<std::mutex> lock(gate.mutex);
    gate.open = true;
  }
  gate.opened.notify_all();
  for (pthread_t thread : started) pthread_join(thread, nullptr);
  if (failure != 0) {
    throw std::runtime_error(
        "cannot start " + std::to_string(count) + " threads (only " +
        std::to_string(started.size()) + " started; pthread_create: " + std::strerror(failure) +
        "): use fewer threads (--threads or MASKSUB_THREADS) or raise the process limit (ulimit -u)");
  }
}

OP(setNumThreads)
  int64_t threads = I(0);
  if (threads < 1 || threads > 4096) {
    throw ArgumentError("the thread count must be in [1, 4096], got " + std::to_string(threads));
  }
  // Each of the two pools libtorch sizes here runs threads - 1 workers next to the caller.
  probe_threads(2 * (threads - 1));
  at::set_num_threads(static_cast<int>(threads));
  return env.Undefined();
END
OP(getNumThreads) return Napi::Number::New(env, at::get_num_threads()); END
OP(cudaAvailable) return Napi::Boolean::New(env, at::hasCUDA()); END
OP(cudaDeviceCount)
#ifdef MASKSUB_CUDA
  return Napi::Number::New(env, at::hasCUDA() ? static_cast<int>(c10::cuda::device_count()) : 0);
#else
  return Napi::Number::New(env, 0);
#endif
END
OP(synchronize)
#ifdef MASKSUB_CUDA
  if (at::hasCUDA()) c10::cuda::device_synchronize();
#endif
  return env.Undefined();
END
OP(buildInfo)
  Napi::Object object = Napi::Object::New(env);
  object.Set("torchVersion", Napi::String::New(env, TORCH_VERSION));
  object.Set("cxx11Abi", Napi::Boolean::New(env, _GLIBCXX_USE_CXX11_ABI != 0));
#ifdef MASKSUB_CUDA
  object.Set("cuda", Napi::Boolean::New(env, true));
#else
  object.Set("cuda", Napi::Boolean::New(env, false));
#endif
  object.Set("parallelInfo", Napi::String::New(env, at::get_parallel_info()));
  return object;
END

}  // namespace masksub

static Napi::Object init(Napi::Env env, Napi::Object exports) {
  masksub::install_caching_allocator();
  // libtorch 1.13 symbolizes a C++ stack trace for every error it raises (measured: 22 ms per
  // failed op), and our messages never show it (what_without_backtrace); PyTorch's own switch
  // TORCH_SHOW_CPP_STACKTRACES=1 keeps the traces for debugging.
  const char* traces = std::getenv("TORCH_SHOW_CPP_STACKTRACES");
  if (!traces || std::string(traces) != "1") {
    c10::SetStackTraceFetcher([] {
      return std::string("(C++ stack trace not collected: set TORCH_SHOW_CPP_STACKTRACES=1)");
    });
  }
  // The registration comes from the same list as the declarations and the TypeScript interface.
#define NATIVE_OP(NAME, ...) \
  exports.Set(#NAME, Napi::Function::New(env, masksub::NAME, #NAME));
#include "ops.def"
#undef NATIVE_OP
  return exports;
}

// Node's module macro defines its own undeclared entry points.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-declarations"
NODE_API_MODULE(masksub_native, init)
#pragma GCC diagnostic pop
