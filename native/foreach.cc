// libtorch's multi-tensor ops (at::_foreach_*, what torch.optim's foreach=True implementations
// use): one call from JS updates a whole list of tensors, so an optimizer step costs a handful of
// addon calls per parameter group instead of several per parameter. A scalar argument is one
// number for every tensor or a list with one number per tensor. On the CPU libtorch runs the same
// per-tensor kernels in a loop, so results equal the single-tensor ops to the last bit.
#include "common.h"

namespace masksub {

namespace {

// A number, or an array of numbers (one per tensor); `count` is the length the list must have.
struct Scalars {
  bool list = false;
  at::Scalar one;
  std::vector<at::Scalar> each;
};

Scalars scalars_arg(const Napi::CallbackInfo& info, size_t index, size_t count) {
  Scalars scalars;
  if (index < info.Length() && info[index].IsArray()) {
    Napi::Array array = info[index].As<Napi::Array>();
    if (array.Length() != count) {
      throw ArgumentError("argument " + std::to_string(index + 1) + " has " + std::to_string(array.Length()) +
                          " numbers for " + std::to_string(count) + " tensors");
    }
    scalars.list = true;
    for (uint32_t i = 0; i < array.Length(); i++) {
      Napi::Value value = array.Get(i);
      if (!value.IsNumber()) throw ArgumentError("argument " + std::to_string(index + 1) + " must hold only numbers");
      scalars.each.emplace_back(value.As<Napi::Number>().DoubleValue());
    }
    return scalars;
  }
  scalars.one = scalar_arg(info, index);
  return scalars;
}

void same_length(const std::vector<at::Tensor>& self, const std::vector<at::Tensor>& other, const char* name) {
  if (self.size() != other.size()) {
    throw ArgumentError(std::string(name) + " has " + std::to_string(other.size()) + " tensors for " + std::to_string(self.size()));
  }
}

// `other` at `index` is a list of tensors (not of numbers): the List overloads of _foreach_*.
bool tensors_at(const Napi::CallbackInfo& info, size_t index) {
  return info.Length() > index && info[index].IsArray() && info[index].As<Napi::Array>().Length() > 0 &&
         !info[index].As<Napi::Array>().Get(uint32_t{0}).IsNumber();
}

}  // namespace

// (self, other: tensors | number | numbers): self[i] *= other[i] (or the number). The tensor
// form takes any tensors that broadcast to self[i], such as a 0-d factor per tensor (LAMB's trust
// ratios), as torch.optim's foreach code passes.
OP(foreachMul_)
  std::vector<at::Tensor> self = TL(0);
  if (tensors_at(info, 1)) {
    std::vector<at::Tensor> other = TL(1);
    same_length(self, other, "other");
    at::_foreach_mul_(self, other);
  } else {
    Scalars value = scalars_arg(info, 1, self.size());
    if (value.list) at::_foreach_mul_(self, value.each);
    else at::_foreach_mul_(self, value.one);
  }
  return env.Undefined();
END

OP(foreachDiv_)
  std::vector<at::Tensor> self = TL(0);
  if (tensors_at(info, 1)) {
    std::vector<at::Tensor> other = TL(1);
    same_length(self, other, "other");
    at::_foreach_div_(self, other);
  } else {
    Scalars value = scalars_arg(info, 1, self.size());
    if (value.list) at::_foreach_div_(self, value.each);
    else at::_foreach_div_(self, value.one);
  }
  return env.Undefined();
END

// Out of place: self[i] / other[i] (or the number) as new tensors.
OP(foreachDiv)
  std::vector<at::Tensor> self = TL(0);
  if (tensors_at(info, 1)) {
    std::vector<at::Tensor> other = TL(1);
    same_length(self, other, "other");
    return wrap_list(env, at::_foreach_div(self, other));
  }
  Scalars value = scalars_arg(info, 1, self.size());
  return wrap_list(env, value.list ? at::_foreach_div(self, value.each) : at::_foreach_div(self, value.one));
END

// (self, other: tensors | number | numbers, alpha?): self[i] += alpha * other[i], or += other.
OP(foreachAdd_)
  std::vector<at::Tensor> self = TL(0);
  if (tensors_at(info, 1)) {
    std::vector<at::Tensor> other = TL(1);
    same_length(self, other, "other");
    at::_foreach_add_(self, other, OSC(2).value_or(1));
  } else {
    Scalars value = scalars_arg(info, 1, self.size());
    if (value.list) at::_foreach_add_(self, value.each);
    else at::_foreach_add_(self, value.one);
  }
  return env.Undefined();
END

// Out of place: self[i] + alpha * other[i] (or + the number) as new tensors.
OP(foreachAdd)
  std::vector<at::Tensor> self = TL(0);
  if (tensors_at(info, 1)) {
    std::vector<at::Tensor> other = TL(1);
    same_length(self, other, "other");
    return wrap_list(env, at::_foreach_add(self, other, OSC(2).value_or(1)));
  }
  Scalars value = scalars_arg(info, 1, self.size());
  return wrap_list(env, value.list ? at::_foreach_add(self, value.each) : at::_foreach_add(self, value.one));
END

// self[i] += value * tensor1[i] (op) tensor2[i]: addcmul_ and addcdiv_ share everything but op.
template <typename One, typename Each>
void ternary(const Napi::CallbackInfo& info, One one, Each each) {
  std::vector<at::Tensor> self = TL(0);
  std::vector<at::Tensor> first = TL(1);
  std::vector<at::Tensor> second = TL(2);
  same_length(self, first, "tensor1");
  same_length(self, second, "tensor2");
  Scalars value = scalars_arg(info, 3, self.size());
  if (value.list) each(self, first, second, value.each);
  else one(self, first, second, value.one);
}

using Tensors = std::vector<at::Tensor>;
using ScalarList = std::vector<at::Scalar>;

OP(foreachAddcmul_)
  ternary(info, [](Tensors& a, Tensors& b, Tensors& c, const at::Scalar& v) { at::_foreach_addcmul_(a, b, c, v); },
          [](Tensors& a, Tensors& b, Tensors& c, const ScalarList& v) { at::_foreach_addcmul_(a, b, c, v); });
  return env.Undefined();
END

OP(foreachAddcdiv_)
  ternary(info, [](Tensors& a, Tensors& b, Tensors& c, const at::Scalar& v) { at::_foreach_addcdiv_(a, b, c, v); },
          [](Tensors& a, Tensors& b, Tensors& c, const ScalarList& v) { at::_foreach_addcdiv_(a, b, c, v); });
  return env.Undefined();
END

OP(foreachSqrt) return wrap_list(env, at::_foreach_sqrt(TL(0))); END

OP(foreachNorm) return wrap_list(env, at::_foreach_norm(TL(0), OSC(1).value_or(2))); END

// (grads, normType, maxNorm?, wide?): torch.nn.utils.clip_grad_norm_ in one addon call instead of
// ~10 (measured through test/optim.test.ts's call counter): the total norm of all gradients as
// one vector (each gradient's vector norm, one multi-tensor call when they share a device, then
// the norm of those norms on the first gradient's device), returned as a number. With maxNorm,
// every gradient is multiplied in place by maxNorm / (total + 1e-6) when that is below 1 (or NaN,
// which PyTorch propagates); a factor of exactly 1 would change nothing, so the gradients are
// then not touched. `wide`: the per-gradient norms of reduced-precision gradients are taken in
// float32 and the norm of norms in float64 (what the MaskSub step logs as gradNorm).
OP(clipGradNorm_)
  std::vector<at::Tensor> grads = TL(0);
  const double norm_type = D(1);
  const c10::optional<double> max_norm = OD(2);
  const bool wide = B(3);
  if (!(norm_type > 0)) throw ArgumentError("normType must be > 0 (Infinity for the max norm), got " + std::to_string(norm_type));
  if (max_norm && !(*max_norm >= 0)) throw ArgumentError("maxNorm must be >= 0, got " + std::to_string(*max_norm));
  if (grads.empty()) return Napi::Number::New(env, 0);
  at::NoGradGuard no_grad;
  const c10::Device device = grads[0].device();
  const bool infinity = std::isinf(norm_type);
  bool one_device = true;
  for (const at::Tensor& grad : grads) one_device = one_device && grad.device() == device;
  std::vector<at::Tensor> sources = grads;
  if (wide) {
    for (at::Tensor& source : sources) {
      if (source.scalar_type() != at::kFloat && source.scalar_type() != at::kDouble) source = source.to(at::kFloat);
    }
  }
  std::vector<at::Tensor> norms;
  if (infinity) {
    for (const at::Tensor& source : sources) norms.push_back(source.abs().max().to(device));
  } else if (one_device) {
    norms = at::_foreach_norm(sources, norm_type);
  } else {
    for (const at::Tensor& source : sources) norms.push_back(at::linalg_vector_norm(source, norm_type).to(device));
  }
  if (wide) {
    for (at::Tensor& norm : norms) norm = norm.to(at::kDouble);
  }
  at::Tensor stacked = at::stack(norms);
  at::Tensor total = infinity ? stacked.max() : at::linalg_vector_norm(stacked, norm_type);
  if (!max_norm) return Napi::Number::New(env, total.item<double>());
  // In the gradients' precision as PyTorch computes it (max_norm / t is reciprocal(t) * max_norm).
  at::Tensor coefficient = total.add(1e-6).reciprocal().mul(*max_norm).clamp(c10::nullopt, 1);
  // One read of both numbers (one device sync on a GPU).
  at::Tensor both = at::stack({total.to(at::kDouble), coefficient.to(at::kDouble)}).cpu();
  const double norm = both[0].item<double>();
  const double factor = both[1].item<double>();
  if (std::isnan(factor)) {
    for (at::Tensor& grad : grads) grad.mul_(coefficient.to(grad.device()));
  } else if (factor < 1) {
    // The coefficient as a double is exact, so this equals grad.mul_(coefficient).
    at::_foreach_mul_(grads, at::Scalar(factor));
  }
  return Napi::Number::New(env, norm);
END

}  // namespace masksub
