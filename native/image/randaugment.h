// RandAugment's pixel ops for the native image module (image.cc's randAugment): the arithmetic of
// src/data/randaugment.ts written in C++, operation for operation, so that the bytes are the
// JavaScript's (and so Pillow 9.4's, which randaugment.ts reproduces). test/randaugment-native.test.ts
// compares every op at several magnitudes on random images of odd sizes, 1 and 3 channels.
//
// Only pixels are here. The random draws (op choice, magnitude noise, signs, resampling) stay in
// JavaScript (randAugmentSteps), and the arguments that need JavaScript's own number formatting
// (the rotation matrix rounds through toFixed(15)) are computed there: randaugment.ts'
// encodeRandAugmentSteps turns the drawn steps into RANDAUGMENT_STEP_FIELDS numbers per op:
//   code, argument, bicubic (0 / 1), then the affine matrix a b c d e f (output -> input, PIL's)
// so the same (seed, epoch, index) gives the same bytes whichever path runs.
//
// How the float arithmetic stays JavaScript's: randaugment.ts rounds with Math.fround after each
// operation of the blend and SMOOTH filter; here those are float operations, which round once
// from the exact result, as fround of an exact double does (a float times an integer below 2^8,
// and an integer below 2^8 plus a float of magnitude above 2^-30, are exact in double). The
// autocontrast and affine ops are double arithmetic in both, in the same order; the module is
// built with -ffp-contract=off, so no fused multiply-add rounds differently.
#ifndef MASKSUB_NATIVE_IMAGE_RANDAUGMENT_H_
#define MASKSUB_NATIVE_IMAGE_RANDAUGMENT_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace masksub_image {

// The op codes of encodeRandAugmentSteps (src/data/randaugment.ts' NATIVE_OP_CODES).
enum RandAugmentCode : int {
  kIdentity = 0,  // an op not applied, posterize at 8 bits or more, rotation by a multiple of 360
  kAutoContrast = 1,
  kEqualize = 2,
  kInvert = 3,
  kPosterize = 4,    // argument: the bit mask (computed in JavaScript from the bits kept)
  kSolarize = 5,     // argument: threshold
  kSolarizeAdd = 6,  // argument: the value added below 128
  kColor = 7,        // argument: the blend factor (and the same for the next three)
  kContrast = 8,
  kBrightness = 9,
  kSharpness = 10,
  kAffine = 11,  // bicubic flag and matrix
  kCodeCount = 12,
};
constexpr int kStepFields = 9;

// ECMAScript's ToUint8, what storing a number into a Uint8Array does (truncate, modulo 256).
inline uint8_t ToUint8(double value) {
  if (!std::isfinite(value)) return 0;
  double wrapped = std::fmod(std::trunc(value), 256.0);
  if (wrapped < 0) wrapped += 256;
  return static_cast<uint8_t>(wrapped);
}

// ToUint8 of a value known to be finite and within int32 range (the hot loops' values are all
// within [-1, 256]): the conversion truncates and the narrowing is modulo 256, with no library
// call (std::trunc and std::fmod are calls without SSE4.1, and cost the affine op half its time).
inline uint8_t SmallToUint8(double value) { return static_cast<uint8_t>(static_cast<int32_t>(value)); }

// Math.floor of a value within int64 range, without the library call.
inline int64_t Floor(double value) {
  const int64_t truncated = static_cast<int64_t>(value);
  return value < static_cast<double>(truncated) ? truncated - 1 : truncated;
}

struct Image {
  int64_t height, width, channels;
  size_t size() const { return static_cast<size_t>(height * width * channels); }
};

// ---- lookup tables (PIL ImageOps) ----

inline void ApplyTables(const uint8_t* in, uint8_t* out, const Image& image, const uint8_t (*tables)[256]) {
  const size_t size = image.size();
  if (image.channels == 1) {
    const uint8_t* table = tables[0];
    for (size_t index = 0; index < size; index++) out[index] = table[in[index]];
  } else {
    const uint8_t *red = tables[0], *green = tables[1], *blue = tables[2];
    for (size_t index = 0; index < size; index += 3) {
      out[index] = red[in[index]];
      out[index + 1] = green[in[index + 1]];
      out[index + 2] = blue[in[index + 2]];
    }
  }
}

// One table for every channel, from randaugment.ts' sameTable builders.
template <typename Build>
void SameTable(const uint8_t* in, uint8_t* out, const Image& image, Build build) {
  uint8_t tables[3][256];
  for (int value = 0; value < 256; value++) tables[0][value] = ToUint8(build(value));
  std::memcpy(tables[1], tables[0], 256);
  std::memcpy(tables[2], tables[0], 256);
  ApplyTables(in, out, image, tables);
}

inline void Histograms(const uint8_t* in, const Image& image, double (*counts)[256]) {
  for (int64_t channel = 0; channel < image.channels; channel++) std::fill(counts[channel], counts[channel] + 256, 0.0);
  const size_t size = image.size();
  if (image.channels == 1) {
    for (size_t index = 0; index < size; index++) counts[0][in[index]]++;
  } else {
    for (size_t index = 0; index < size; index += 3) {
      counts[0][in[index]]++;
      counts[1][in[index + 1]]++;
      counts[2][in[index + 2]]++;
    }
  }
}

inline void AutoContrast(const uint8_t* in, uint8_t* out, const Image& image) {
  double counts[3][256];
  uint8_t tables[3][256];
  Histograms(in, image, counts);
  for (int64_t channel = 0; channel < image.channels; channel++) {
    const double* histogram = counts[channel];
    int low = 0;
    while (low < 256 && histogram[low] == 0) low++;
    int high = 255;
    while (high >= 0 && histogram[high] == 0) high--;
    uint8_t* table = tables[channel];
    if (high <= low) {
      for (int value = 0; value < 256; value++) table[value] = static_cast<uint8_t>(value);
      continue;
    }
    const double scale = 255.0 / (high - low);
    const double offset = -low * scale;
    for (int value = 0; value < 256; value++) table[value] = ToUint8(std::max(0.0, std::min(255.0, std::trunc(value * scale + offset))));
  }
  ApplyTables(in, out, image, tables);
}

inline void Equalize(const uint8_t* in, uint8_t* out, const Image& image) {
  double counts[3][256];
  uint8_t tables[3][256];
  Histograms(in, image, counts);
  for (int64_t channel = 0; channel < image.channels; channel++) {
    const double* histogram = counts[channel];
    uint8_t* table = tables[channel];
    double total = 0, last = 0;
    int used = 0;
    for (int value = 0; value < 256; value++) {
      if (histogram[value] > 0) {
        total += histogram[value];
        last = histogram[value];
        used++;
      }
    }
    const double step = used <= 1 ? 0 : std::floor((total - last) / 255);
    if (step == 0) {
      for (int value = 0; value < 256; value++) table[value] = static_cast<uint8_t>(value);
      continue;
    }
    double running = std::floor(step / 2);
    for (int value = 0; value < 256; value++) {
      table[value] = ToUint8(std::min(255.0, std::floor(running / step)));
      running += histogram[value];
    }
  }
  ApplyTables(in, out, image, tables);
}

// ---- ImageEnhance (PIL's Image.blend in float32, truncated) ----

inline uint8_t BlendValue(float alpha, float base, float pixel) {
  const float value = base + alpha * (pixel - base);
  return value <= 0 ? 0 : value >= 255 ? 255 : static_cast<uint8_t>(static_cast<int>(value));
}

// degenerate + factor * (image - degenerate), the degenerate image given per byte.
inline void BlendBytes(const uint8_t* in, const uint8_t* degenerate, uint8_t* out, size_t size, double factor) {
  const float alpha = static_cast<float>(factor);
  for (size_t index = 0; index < size; index++) out[index] = BlendValue(alpha, degenerate[index], in[index]);
}

inline void BlendConstant(const uint8_t* in, double degenerate, uint8_t* out, size_t size, double factor) {
  const float alpha = static_cast<float>(factor);
  const float base = static_cast<float>(degenerate);
  for (size_t index = 0; index < size; index++) out[index] = BlendValue(alpha, base, in[index]);
}

// PIL's RGB -> L: 16-bit fixed point, rounded.
inline uint8_t PilLuma(uint32_t red, uint32_t green, uint32_t blue) { return static_cast<uint8_t>((red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16); }

inline void Color(const uint8_t* in, uint8_t* out, const Image& image, double factor, std::vector<uint8_t>* scratch) {
  const size_t size = image.size();
  // A grey image blended with itself is itself (the L conversion of L is the identity).
  if (image.channels == 1) {
    BlendBytes(in, in, out, size, factor);
    return;
  }
  scratch->resize(size);
  uint8_t* degenerate = scratch->data();
  for (size_t index = 0; index < size; index += 3) degenerate[index] = degenerate[index + 1] = degenerate[index + 2] = PilLuma(in[index], in[index + 1], in[index + 2]);
  BlendBytes(in, degenerate, out, size, factor);
}

inline void Contrast(const uint8_t* in, uint8_t* out, const Image& image, double factor) {
  const size_t size = image.size();
  double sum = 0;
  if (image.channels == 1) {
    for (size_t index = 0; index < size; index++) sum += in[index];
  } else {
    for (size_t index = 0; index < size; index += 3) sum += PilLuma(in[index], in[index + 1], in[index + 2]);
  }
  const double mean = std::trunc(sum / static_cast<double>(image.height * image.width) + 0.5);
  BlendConstant(in, mean, out, size, factor);
}

// PIL's ImageFilter.SMOOTH in float32 (randaugment.ts' smooth, the same sums in the same order).
inline void Smooth(const uint8_t* in, uint8_t* out, const Image& image) {
  const int64_t height = image.height, width = image.width, channels = image.channels;
  std::memcpy(out, in, image.size());
  const float edge = static_cast<float>(1.0 / 13.0);
  const float center = static_cast<float>(5.0 / 13.0);
  const int64_t stride = width * channels;
  for (int64_t row = 1; row < height - 1; row++) {
    for (int64_t at = row * stride + channels; at < row * stride + (width - 1) * channels; at++) {
      const int64_t below = at + stride;
      const int64_t above = at - stride;
      float total = (static_cast<float>(in[below - channels]) * edge + static_cast<float>(in[below]) * edge) + static_cast<float>(in[below + channels]) * edge;
      total = total + ((static_cast<float>(in[at - channels]) * edge + static_cast<float>(in[at]) * center) + static_cast<float>(in[at + channels]) * edge);
      total = total + ((static_cast<float>(in[above - channels]) * edge + static_cast<float>(in[above]) * edge) + static_cast<float>(in[above + channels]) * edge);
      out[at] = total <= 0 ? 0 : total >= 255 ? 255 : static_cast<uint8_t>(static_cast<int>(total + 0.5f));
    }
  }
}

inline void Sharpness(const uint8_t* in, uint8_t* out, const Image& image, double factor, std::vector<uint8_t>* scratch) {
  scratch->resize(image.size());
  Smooth(in, scratch->data(), image);
  BlendBytes(in, scratch->data(), out, image.size(), factor);
}

// ---- affine transform (PIL's Image.transform(AFFINE), bilinear or bicubic, fill outside) ----

// PIL's BICUBIC macro, the a = -1 cubic (randaugment.ts' cubic).
inline double Cubic(double v1, double v2, double v3, double v4, double t) {
  const double p1 = v2;
  const double p2 = -v1 + v3;
  const double p3 = 2 * (v1 - v2) + v3 - v4;
  const double p4 = -v1 + v2 - v3 + v4;
  return p1 + t * (p2 + t * (p3 + t * p4));
}

// Cubic of four pixel values: p1-p4 are then integers, exact in int as in double, so only the
// evaluation rounds, as in Cubic (14 % less CPU time for a bicubic rotation, 3.25 -> 2.8 ms).
inline double CubicOfBytes(int v1, int v2, int v3, int v4, double t) {
  const double p1 = v2;
  const double p2 = v3 - v1;
  const double p3 = 2 * (v1 - v2) + v3 - v4;
  const double p4 = v2 - v1 - v3 + v4;
  return p1 + t * (p2 + t * (p3 + t * p4));
}

inline void Affine(const uint8_t* in, uint8_t* out, const Image& image, const double* matrix, bool bicubic, const uint8_t* fill) {
  const int64_t height = image.height, width = image.width, channels = image.channels;
  const double a = matrix[0], b = matrix[1], c = matrix[2], d = matrix[3], e = matrix[4], f = matrix[5];
  const int64_t stride = width * channels;
  auto clamp_x = [width](int64_t x) { return x < 0 ? 0 : x < width ? x : width - 1; };
  auto clamp_y = [height](int64_t y) { return y < 0 ? 0 : y < height ? y : height - 1; };
  for (int64_t row = 0; row < height; row++) {
    const double y_out = row + 0.5;
    for (int64_t column = 0; column < width; column++) {
      uint8_t* target = out + (row * width + column) * channels;
      const double x_out = column + 0.5;
      double x = a * x_out + b * y_out + c;
      double y = d * x_out + e * y_out + f;
      if (x < 0 || x >= width || y < 0 || y >= height) {
        for (int64_t channel = 0; channel < channels; channel++) target[channel] = fill[channel];
        continue;
      }
      x -= 0.5;
      y -= 0.5;
      // x and y are in [-0.5, side - 0.5) here.
      const int64_t x0 = Floor(x);
      const int64_t y0 = Floor(y);
      const double dx = x - static_cast<double>(x0);
      const double dy = y - static_cast<double>(y0);
      if (!bicubic) {
        const int64_t left = clamp_x(x0) * channels;
        const int64_t right = clamp_x(x0 + 1) * channels;
        const uint8_t* top = in + clamp_y(y0) * stride;
        const uint8_t* bottom = in + clamp_y(y0 + 1) * stride;
        for (int64_t channel = 0; channel < channels; channel++) {
          const int top_left = top[left + channel], bottom_left = bottom[left + channel];
          const double upper = top_left + (top[right + channel] - top_left) * dx;
          const double lower = bottom_left + (bottom[right + channel] - bottom_left) * dx;
          target[channel] = SmallToUint8(upper + (lower - upper) * dy);
        }
      } else {
        int64_t columns[4];
        const uint8_t* rows[4];
        for (int tap = 0; tap < 4; tap++) {
          columns[tap] = clamp_x(x0 - 1 + tap) * channels;
          rows[tap] = in + clamp_y(y0 - 1 + tap) * stride;
        }
        for (int64_t channel = 0; channel < channels; channel++) {
          double values[4];
          for (int tap = 0; tap < 4; tap++) {
            const uint8_t* base = rows[tap] + channel;
            values[tap] = CubicOfBytes(base[columns[0]], base[columns[1]], base[columns[2]], base[columns[3]], dx);
          }
          const double value = Cubic(values[0], values[1], values[2], values[3], dy);
          target[channel] = value <= 0 ? 0 : value >= 255 ? 255 : static_cast<uint8_t>(static_cast<int>(value));
        }
      }
    }
  }
}

// One encoded step from `in` to `out` (distinct buffers of image.size() bytes). Returns false
// (leaving `out` unwritten) for kIdentity, so the caller keeps `in`.
inline bool ApplyStep(const double* step, const uint8_t* in, uint8_t* out, const Image& image, const uint8_t* fill, std::vector<uint8_t>* scratch) {
  const int code = static_cast<int>(step[0]);
  const double argument = step[1];
  switch (code) {
    case kAutoContrast: AutoContrast(in, out, image); return true;
    case kEqualize: Equalize(in, out, image); return true;
    case kInvert: SameTable(in, out, image, [](int value) { return 255.0 - value; }); return true;
    case kPosterize: {
      const int mask = static_cast<int>(argument) & 0xff;
      SameTable(in, out, image, [mask](int value) { return static_cast<double>(value & mask); });
      return true;
    }
    case kSolarize: SameTable(in, out, image, [argument](int value) { return value < argument ? value : 255.0 - value; }); return true;
    case kSolarizeAdd: SameTable(in, out, image, [argument](int value) { return value < 128 ? std::min(255.0, value + argument) : value; }); return true;
    case kColor: Color(in, out, image, argument, scratch); return true;
    case kContrast: Contrast(in, out, image, argument); return true;
    case kBrightness: BlendConstant(in, 0, out, image.size(), argument); return true;
    case kSharpness: Sharpness(in, out, image, argument, scratch); return true;
    case kAffine: Affine(in, out, image, step + 3, step[2] != 0, fill); return true;
    default: return false;
  }
}

}  // namespace masksub_image

#endif  // MASKSUB_NATIVE_IMAGE_RANDAUGMENT_H_
