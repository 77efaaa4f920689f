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

}  // namespace

OP(foreachMul_)
  std::vector<at::Tensor> self = TL(0);
  Scalars value = scalars_arg(info, 1, self.size());
  if (value.list) at::_foreach_mul_(self, value.each);
  else at::_foreach_mul_(self, value.one);
  return env.Undefined();
END

OP(foreachDiv_)
  std::vector<at::Tensor> self = TL(0);
  Scalars value = scalars_arg(info, 1, self.size());
  if (value.list) at::_foreach_div_(self, value.each);
  else at::_foreach_div_(self, value.one);
  return env.Undefined();
END

// (self, other: tensors | number | numbers, alpha?): self[i] += alpha * other[i], or += other.
OP(foreachAdd_)
  std::vector<at::Tensor> self = TL(0);
  const bool tensors = info.Length() > 1 && info[1].IsArray() && info[1].As<Napi::Array>().Length() > 0 &&
                       !info[1].As<Napi::Array>().Get(uint32_t{0}).IsNumber();
  if (tensors) {
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

}  // namespace masksub
