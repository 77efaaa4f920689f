// The ops: libtorch's names and argument order, one line each where possible. A second argument
// that may be a tensor or a number picks the matching libtorch overload, as Python does.
#include "common.h"

namespace masksub {

#define BINARY(NAME, CALL)                                  \
  OP(NAME)                                                  \
    if (ISTENSOR(1)) return W(at::CALL(T(0), T(1)));        \
    return W(at::CALL(T(0), SC(1)));                        \
  END
#define BINARY_INPLACE(NAME, METHOD)                        \
  OP(NAME)                                                  \
    if (ISTENSOR(1)) T(0).METHOD(T(1));                     \
    else T(0).METHOD(SC(1));                                \
    return info[0];                                         \
  END
#define UNARY(NAME, CALL) OP(NAME) return W(at::CALL(T(0))); END
#define UNARY_INPLACE(NAME, METHOD) OP(NAME) T(0).METHOD(); return info[0]; END

static std::vector<at::Tensor> tuple_to_vector(const std::tuple<at::Tensor, at::Tensor>& pair) {
  return {std::get<0>(pair), std::get<1>(pair)};
}

// ---- pinned host memory ----
// libtorch's own error without CUDA names an allocator ("Need to provide pin_memory allocator to
// use pin memory"); ours says what to do.
OP(pinMemory)
  if (!at::hasCUDA()) {
    throw ArgumentError("pinMemory: pinned (page-locked) host memory needs CUDA, and this build or "
                        "machine has none; it only serves copies to a CUDA device");
  }
  at::Tensor& tensor = T(0);
  if (!tensor.device().is_cpu()) {
    throw ArgumentError("pinMemory: only a CPU tensor can be pinned, got one on " + tensor.device().str());
  }
  return W(tensor.pin_memory());
END
OP(isPinned) return Napi::Boolean::New(env, T(0).is_pinned()); END

// ---- memory format (layout) ----
// channels_last (NHWC strides, the same logical NCHW shape) is what cuDNN's and oneDNN's fastest
// convolutions read; a 4-D tensor only, as libtorch requires, said here before libtorch's assert.
OP(contiguousAs)
  at::Tensor& tensor = T(0);
  const std::string format = S(1);
  if (format == "contiguous") return W(tensor.contiguous(at::MemoryFormat::Contiguous));
  if (format != "channels_last") throw ArgumentError("memory format must be 'contiguous' or 'channels_last', got '" + format + "'");
  if (tensor.dim() != 4) throw ArgumentError("channels_last needs a 4-D tensor (N, C, H, W), got shape " + c10::str(tensor.sizes()));
  return W(tensor.contiguous(at::MemoryFormat::ChannelsLast));
END
OP(suggestMemoryFormat)
  switch (T(0).suggest_memory_format()) {
    case at::MemoryFormat::ChannelsLast: return Napi::String::New(env, "channels_last");
    case at::MemoryFormat::ChannelsLast3d: return Napi::String::New(env, "channels_last_3d");
    default: return Napi::String::New(env, "contiguous");
  }
END

// ---- arithmetic ----
OP(add)
  if (ISTENSOR(1)) return W(at::add(T(0), T(1), OSC(2).value_or(1)));
  return W(at::add(T(0), SC(1), OSC(2).value_or(1)));
END
OP(sub)
  if (ISTENSOR(1)) return W(at::sub(T(0), T(1), OSC(2).value_or(1)));
  return W(at::sub(T(0), SC(1), OSC(2).value_or(1)));
END
BINARY(mul, mul)
BINARY(div, div)
BINARY(pow, pow)
BINARY(remainder, remainder)
BINARY(eq, eq)
BINARY(ne, ne)
BINARY(lt, lt)
BINARY(le, le)
BINARY(gt, gt)
BINARY(ge, ge)
OP(rsub) return W(at::rsub(T(0), SC(1))); END
OP(maximum) return W(at::maximum(T(0), T(1))); END
OP(minimum) return W(at::minimum(T(0), T(1))); END
OP(logicalAnd) return W(at::logical_and(T(0), T(1))); END
OP(logicalOr) return W(at::logical_or(T(0), T(1))); END
UNARY(logicalNot, logical_not)
UNARY(neg, neg)
UNARY(exp, exp)
UNARY(log, log)
UNARY(log1p, log1p)
UNARY(expm1, expm1)
UNARY(sqrt, sqrt)
UNARY(rsqrt, rsqrt)
UNARY(abs, abs)
UNARY(sign, sign)
UNARY(sin, sin)
UNARY(cos, cos)
UNARY(erf, erf)
UNARY(erfinv, erfinv)
UNARY(reciprocal, reciprocal)
UNARY(square, square)
UNARY(floor, floor)
UNARY(ceil, ceil)
UNARY(round, round)
UNARY(isfinite, isfinite)
UNARY(isnan, isnan)
UNARY(relu, relu)
UNARY(sigmoid, sigmoid)
UNARY(tanh, tanh)
UNARY(silu, silu)
OP(gelu) return W(at::gelu(T(0), info.Length() > 1 && info[1].IsString() ? S(1) : "none")); END
OP(leakyRelu) return W(at::leaky_relu(T(0), SC(1))); END
OP(softplus) return W(at::softplus(T(0), SC(1), SC(2))); END
OP(clamp) return W(at::clamp(T(0), OSC(1), OSC(2))); END
OP(where) return W(at::where(T(0), T(1), T(2))); END
OP(lerp) return W(at::lerp(T(0), T(1), SC(2))); END

// ---- in place (optimizers, initialisers) ----
OP(add_)
  if (ISTENSOR(1)) T(0).add_(T(1), OSC(2).value_or(1));
  else T(0).add_(SC(1), OSC(2).value_or(1));
  return info[0];
END
BINARY_INPLACE(mul_, mul_)
BINARY_INPLACE(div_, div_)
OP(sub_)
  if (ISTENSOR(1)) T(0).sub_(T(1), OSC(2).value_or(1));
  else T(0).sub_(SC(1), OSC(2).value_or(1));
  return info[0];
END
OP(addcmul_) T(0).addcmul_(T(1), T(2), OSC(3).value_or(1)); return info[0]; END
OP(addcdiv_) T(0).addcdiv_(T(1), T(2), OSC(3).value_or(1)); return info[0]; END
OP(lerp_)
  if (ISTENSOR(2)) T(0).lerp_(T(1), T(2));
  else T(0).lerp_(T(1), SC(2));
  return info[0];
END
OP(copy_) T(0).copy_(T(1)); return info[0]; END
UNARY_INPLACE(zero_, zero_)
UNARY_INPLACE(sqrt_, sqrt_)
UNARY_INPLACE(erfinv_, erfinv_)
OP(fill_) T(0).fill_(SC(1)); return info[0]; END
OP(clamp_) T(0).clamp_(OSC(1), OSC(2)); return info[0]; END
OP(normal_) T(0).normal_(D(1), D(2), GEN(3)); return info[0]; END
OP(uniform_) T(0).uniform_(D(1), D(2), GEN(3)); return info[0]; END
OP(maskedFill_) T(0).masked_fill_(T(1), SC(2)); return info[0]; END

// ---- linear algebra ----
OP(matmul) return W(at::matmul(T(0), T(1))); END
OP(mm) return W(at::mm(T(0), T(1))); END
OP(bmm) return W(at::bmm(T(0), T(1))); END
OP(linear) return W(at::linear(T(0), T(1), OT(2))); END
OP(addmm) return W(at::addmm(T(0), T(1), T(2), SC(3), SC(4))); END

// ---- shape ----
OP(view) return W(T(0).view(IL(1))); END
OP(reshape) return W(at::reshape(T(0), IL(1))); END
OP(permute) return W(T(0).permute(IL(1))); END
OP(transpose) return W(at::transpose(T(0), I(1), I(2))); END
OP(flatten) return W(at::flatten(T(0), I(1), I(2))); END
OP(squeeze)
  auto dim = OI(1);
  if (dim) return W(at::squeeze(T(0), *dim));
  return W(at::squeeze(T(0)));
END
OP(unsqueeze) return W(at::unsqueeze(T(0), I(1))); END
OP(expand) return W(T(0).expand(IL(1))); END
OP(repeat) return W(T(0).repeat(IL(1))); END
OP(cat) return W(at::cat(TL(0), I(1))); END
OP(stack) return W(at::stack(TL(0), I(1))); END
OP(split)
  if (info[1].IsArray()) return wrap_list(env, at::split_with_sizes(T(0), IL(1), I(2)));
  return wrap_list(env, at::split(T(0), I(1), I(2)));
END
OP(chunk) return wrap_list(env, at::chunk(T(0), I(1), I(2))); END
OP(unbind) return wrap_list(env, at::unbind(T(0), I(1))); END
OP(narrow) return W(at::narrow(T(0), I(1), I(2), I(3))); END
OP(select) return W(at::select(T(0), I(1), I(2))); END
OP(slice) return W(at::slice(T(0), I(1), OI(2), OI(3), OI(4).value_or(1))); END
OP(indexSelect) return W(at::index_select(T(0), I(1), T(2))); END
OP(gather) return W(at::gather(T(0), I(1), T(2))); END
OP(scatter)
  if (ISTENSOR(3)) return W(at::scatter(T(0), I(1), T(2), T(3)));
  return W(at::scatter(T(0), I(1), T(2), SC(3)));
END
OP(scatterAdd) return W(at::scatter_add(T(0), I(1), T(2), T(3))); END
OP(maskedFill)
  if (ISTENSOR(2)) return W(at::masked_fill(T(0), T(1), T(2)));
  return W(at::masked_fill(T(0), T(1), SC(2)));
END
OP(maskedSelect) return W(at::masked_select(T(0), T(1))); END
OP(flip) return W(at::flip(T(0), IL(1))); END
OP(roll) return W(at::roll(T(0), IL(1), IL(2))); END
OP(pad)
  std::string mode = info.Length() > 2 && info[2].IsString() ? S(2) : "constant";
  return W(at::pad(T(0), IL(1), mode, OD(3)));
END
OP(oneHot) return W(at::one_hot(T(0), I(1))); END
OP(embedding) return W(at::embedding(T(0), T(1), OI(2).value_or(-1), false, false)); END
OP(tril) return W(at::tril(T(0), OI(1).value_or(0))); END
OP(triu) return W(at::triu(T(0), OI(1).value_or(0))); END

// ---- convolution, pooling, normalisation ----
OP(conv2d) return W(at::conv2d(T(0), T(1), OT(2), IL(3), IL(4), IL(5), I(6))); END
OP(maxPool2d) return W(at::max_pool2d(T(0), IL(1), IL(2), IL(3), IL(4), B(5))); END
OP(avgPool2d) return W(at::avg_pool2d(T(0), IL(1), IL(2), IL(3), B(4), B(5))); END
OP(adaptiveAvgPool2d) return W(at::adaptive_avg_pool2d(T(0), IL(1))); END
OP(adaptiveMaxPool2d) return W(std::get<0>(at::adaptive_max_pool2d(T(0), IL(1)))); END
OP(layerNorm) return W(at::layer_norm(T(0), IL(1), OT(2), OT(3), D(4), true)); END
OP(batchNorm)
  return W(at::batch_norm(T(0), OT(1), OT(2), OT(3), OT(4), B(5), D(6), D(7), true));
END
OP(groupNorm) return W(at::group_norm(T(0), I(1), OT(2), OT(3), D(4), true)); END
OP(dropout) return W(at::dropout(T(0), D(1), B(2))); END
OP(softmax) return W(at::softmax(T(0), I(1), ODT(2))); END
OP(logSoftmax) return W(at::log_softmax(T(0), I(1), ODT(2))); END

// ---- reductions ----
OP(sum)
  auto dims = OIL(1);
  if (!dims) return W(at::sum(T(0), ODT(3)));
  return W(at::sum(T(0), at::IntArrayRef(*dims), B(2), ODT(3)));
END
OP(mean)
  auto dims = OIL(1);
  if (!dims) return W(at::mean(T(0), ODT(3)));
  return W(at::mean(T(0), at::IntArrayRef(*dims), B(2), ODT(3)));
END
OP(prod) return W(at::prod(T(0))); END
OP(var)
  auto dims = OIL(1);
  bool unbiased = info.Length() > 2 && info[2].IsBoolean() ? B(2) : true;
  if (!dims) return W(at::var(T(0), unbiased));
  return W(at::var(T(0), at::IntArrayRef(*dims), unbiased, B(3)));
END
OP(std)
  auto dims = OIL(1);
  bool unbiased = info.Length() > 2 && info[2].IsBoolean() ? B(2) : true;
  if (!dims) return W(at::std(T(0), unbiased));
  return W(at::std(T(0), at::IntArrayRef(*dims), unbiased, B(3)));
END
OP(norm)
  auto dims = OIL(2);
  if (!dims) return W(at::linalg_vector_norm(T(0), SC(1)));
  return W(at::linalg_vector_norm(T(0), SC(1), at::IntArrayRef(*dims), B(3)));
END
OP(logsumexp) return W(at::logsumexp(T(0), IL(1), B(2))); END
OP(cumsum) return W(at::cumsum(T(0), I(1))); END
OP(all) return W(at::all(T(0))); END
OP(any) return W(at::any(T(0))); END
OP(amax) return W(at::amax(T(0), IL(1), B(2))); END
OP(amin) return W(at::amin(T(0), IL(1), B(2))); END
OP(max)
  auto dim = OI(1);
  if (!dim) return W(at::max(T(0)));
  return wrap_list(env, tuple_to_vector(at::max(T(0), *dim, B(2))));
END
OP(min)
  auto dim = OI(1);
  if (!dim) return W(at::min(T(0)));
  return wrap_list(env, tuple_to_vector(at::min(T(0), *dim, B(2))));
END
OP(argmax) return W(at::argmax(T(0), OI(1), B(2))); END
OP(argmin) return W(at::argmin(T(0), OI(1), B(2))); END
OP(argsort) return W(at::argsort(T(0), I(1), B(2))); END
OP(sort) return wrap_list(env, tuple_to_vector(at::sort(T(0), I(1), B(2)))); END
OP(topk) return wrap_list(env, tuple_to_vector(at::topk(T(0), I(1), I(2), B(3), B(4)))); END

// ---- losses ----
static int64_t reduction_arg(const Napi::CallbackInfo& info, size_t index) {
  if (index >= info.Length() || !info[index].IsString()) return at::Reduction::Mean;
  std::string name = info[index].As<Napi::String>().Utf8Value();
  if (name == "mean") return at::Reduction::Mean;
  if (name == "sum") return at::Reduction::Sum;
  if (name == "none") return at::Reduction::None;
  throw ArgumentError("reduction must be 'mean', 'sum' or 'none', got '" + name + "'");
}
OP(crossEntropy)
  return W(at::cross_entropy_loss(T(0), T(1), OT(2), reduction_arg(info, 3),
                                  OI(4).value_or(-100), OD(5).value_or(0.0)));
END
OP(binaryCrossEntropyWithLogits)
  return W(at::binary_cross_entropy_with_logits(T(0), T(1), OT(2), OT(3), reduction_arg(info, 4)));
END
OP(mseLoss) return W(at::mse_loss(T(0), T(1), reduction_arg(info, 2))); END
OP(nllLoss)
  return W(at::nll_loss(T(0), T(1), OT(2), reduction_arg(info, 3), OI(4).value_or(-100)));
END
OP(klDiv) return W(at::kl_div(T(0), T(1), reduction_arg(info, 2), B(3))); END

}  // namespace masksub
