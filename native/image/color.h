// DeiT-III's 3-Augment and color jitter for the native image module (image.cc's augment): the
// arithmetic of src/data/color.ts (torchvision 0.14's tensor functional on uint8 images) written
// in C++, operation for operation, so that the bytes are color.ts' (test/color-native.test.ts).
// The draws (which of the three, the blur's sigma, the jitter's factors and order) and the blur
// kernel (computed with JavaScript's Math.exp) stay in JavaScript: color.ts' encodeColorSteps
// gives them as randaugment.h's step layout (code, argument, flag, six more numbers):
//   kGrayscale, kBlur (argument: kernel size, field 3: where its taps start in `kernels`),
//   kAdjustBrightness / kAdjustContrast / kAdjustSaturation (argument: the factor);
// solarize at 128 is randaugment.h's kSolarize (torchvision's `>= 128 inverted` is PIL's `< 128 kept`).
// float32 arithmetic rounds as color.ts' Math.fround after each operation (see randaugment.h).
#ifndef MASKSUB_NATIVE_IMAGE_COLOR_H_
#define MASKSUB_NATIVE_IMAGE_COLOR_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "randaugment.h"

namespace masksub_image {

constexpr int kGrayscale = 12;
constexpr int kBlur = 13;
constexpr int kAdjustBrightness = 14;
constexpr int kAdjustContrast = 15;
constexpr int kAdjustSaturation = 16;
constexpr int kAllCodeCount = 17;

// torchvision's rgb_to_grayscale on uint8: float32 products and sums, truncated (color.ts' luma).
inline uint8_t TorchLuma(uint8_t red, uint8_t green, uint8_t blue) {
  const float r = static_cast<float>(0.2989), g = static_cast<float>(0.587), b = static_cast<float>(0.114);
  const float value = (r * static_cast<float>(red) + g * static_cast<float>(green)) + b * static_cast<float>(blue);
  return static_cast<uint8_t>(static_cast<int>(value));
}

// Grayscale with as many channels as the input.
inline void Grayscale(const uint8_t* in, uint8_t* out, const Image& image) {
  const size_t size = image.size();
  if (image.channels == 1) {
    std::memcpy(out, in, size);
    return;
  }
  for (size_t index = 0; index < size; index += 3) out[index] = out[index + 1] = out[index + 2] = TorchLuma(in[index], in[index + 1], in[index + 2]);
}

// torch.round (halves to even) of a float32 sum, clamped to [0, 255] (color.ts' roundEven).
inline uint8_t RoundEvenByte(float total) {
  const double value = total;
  const double floor = std::floor(value);
  const double fraction = value - floor;
  double rounded;
  if (fraction != 0.5) rounded = std::floor(value + 0.5);  // Math.round: halves up, only non-halves here
  else rounded = std::fmod(floor, 2.0) == 0 ? floor : floor + 1;
  return static_cast<uint8_t>(std::min(255.0, std::max(0.0, rounded)));
}

inline int64_t Reflect(int64_t index, int64_t length) {
  if (length == 1) return 0;
  int64_t position = index;
  while (position < 0 || position >= length) position = position < 0 ? -position : 2 * (length - 1) - position;
  return position;
}

// color.ts' gaussianBlur: the row pass then the column pass, each a float32 sum of float32
// products in tap order, reflect padding; `kernel` has `size` taps (odd, size / 2 below each side).
inline void Blur(const uint8_t* in, uint8_t* out, const Image& image, const float* kernel, int64_t size, std::vector<float>* rows_scratch) {
  const int64_t height = image.height, width = image.width, channels = image.channels;
  const int64_t half = (size - 1) / 2;
  rows_scratch->resize(image.size());
  float* rows = rows_scratch->data();
  for (int64_t row = 0; row < height; row++) {
    for (int64_t column = 0; column < width; column++) {
      for (int64_t channel = 0; channel < channels; channel++) {
        float total = 0;
        for (int64_t tap = 0; tap < size; tap++) {
          const int64_t source = Reflect(column + tap - half, width);
          total = total + kernel[tap] * static_cast<float>(in[(row * width + source) * channels + channel]);
        }
        rows[(row * width + column) * channels + channel] = total;
      }
    }
  }
  for (int64_t row = 0; row < height; row++) {
    for (int64_t column = 0; column < width; column++) {
      for (int64_t channel = 0; channel < channels; channel++) {
        float total = 0;
        for (int64_t tap = 0; tap < size; tap++) {
          const int64_t source = Reflect(row + tap - half, height);
          total = total + kernel[tap] * rows[(source * width + column) * channels + channel];
        }
        out[(row * width + column) * channels + channel] = RoundEvenByte(total);
      }
    }
  }
}

// torchvision's _blend on uint8: ratio * a + (1 - ratio) * b in float32, clamped, truncated.
inline uint8_t TorchBlend(float ratio, float rest, float value, float other) {
  const float blended = ratio * value + rest * other;
  return static_cast<uint8_t>(static_cast<int>(std::min(255.0f, std::max(0.0f, blended))));
}

inline void AdjustBrightness(const uint8_t* in, uint8_t* out, const Image& image, double factor) {
  const float ratio = static_cast<float>(factor), rest = static_cast<float>(1 - factor);
  const size_t size = image.size();
  for (size_t index = 0; index < size; index++) out[index] = TorchBlend(ratio, rest, in[index], 0.0f);
}

inline void AdjustContrast(const uint8_t* in, uint8_t* out, const Image& image, double factor) {
  const size_t size = image.size();
  double sum = 0;
  if (image.channels == 1) {
    for (size_t index = 0; index < size; index++) sum += in[index];
  } else {
    for (size_t index = 0; index < size; index += 3) sum += TorchLuma(in[index], in[index + 1], in[index + 2]);
  }
  const float mean = static_cast<float>(sum / static_cast<double>(image.height * image.width));
  const float ratio = static_cast<float>(factor), rest = static_cast<float>(1 - factor);
  for (size_t index = 0; index < size; index++) out[index] = TorchBlend(ratio, rest, in[index], mean);
}

inline void AdjustSaturation(const uint8_t* in, uint8_t* out, const Image& image, double factor) {
  const size_t size = image.size();
  if (image.channels == 1) {
    std::memcpy(out, in, size);
    return;
  }
  const float ratio = static_cast<float>(factor), rest = static_cast<float>(1 - factor);
  for (size_t index = 0; index < size; index += 3) {
    const float gray = TorchLuma(in[index], in[index + 1], in[index + 2]);
    for (int channel = 0; channel < 3; channel++) out[index + channel] = TorchBlend(ratio, rest, in[index + channel], gray);
  }
}

}  // namespace masksub_image

#endif  // MASKSUB_NATIVE_IMAGE_COLOR_H_
