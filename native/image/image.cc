// masksub_image.node: the data loader's native image path (issue 10's throughput goal), a module
// of its own because the libtorch addon installs libtorch's allocator when it loads and must not
// be loaded in the loader's worker threads. Its functions are plain N-API, context-aware
// (NAPI_MODULE_INIT) and without shared mutable state, so any number of worker threads may call
// them at once:
//   jpegInfo / decodeJpegRegion  libjpeg-turbo (its libjpeg API) decoding only the rows and
//     columns a RandomResizedCrop box needs (jpeg_crop_scanline + jpeg_skip_scanlines, stopping
//     after the box's last row), optionally at 1/2, 1/4 or 1/8 size (DCT scaling). Errors go
//     through error_exit -> longjmp and come back as a JS Error with libjpeg's message; a corrupt
//     or truncated file never aborts the process and never yields a half-grey image (warnings,
//     which libjpeg gives for truncated data it pads, are errors here, as sharp's failOn 'error').
//   resampleBox  src/data/transforms.ts' resampleBox in C++, the same float32 taps, double sums in
//     the same order and the same rounding, so the bytes are identical (test/native-image.test.ts
//     compares them on random boxes, both interpolations, flip and both layouts).
//   augment  RandAugment's pixel ops (randaugment.h, src/data/randaugment.ts' bytes) and
//     3-Augment + color jitter (color.h, src/data/color.ts' bytes) on an image, the steps drawn
//     and encoded in JavaScript, the result written interleaved or channel-first into the batch
//     (test/randaugment-native.test.ts, test/color-native.test.ts).
// Build with -ffp-contract=off: a fused multiply-add would round differently from JavaScript.
#include <node_api.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdio>  // before jpeglib.h, which uses FILE
#include <cstring>
#include <string>
#include <vector>

#include <jpeglib.h>

#include "color.h"
#include "randaugment.h"

namespace {

#define CALL(env, expr)                                      \
  do {                                                       \
    if ((expr) != napi_ok) {                                 \
      napi_throw_error((env), nullptr, "N-API call failed: " #expr); \
      return nullptr;                                        \
    }                                                        \
  } while (0)

napi_value ThrowError(napi_env env, const std::string& message, const char* code = nullptr) {
  napi_throw_error(env, code, message.c_str());
  return nullptr;
}

bool GetInt(napi_env env, napi_value value, const char* name, int64_t* out, std::string* problem) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok || !std::isfinite(number) || number != std::floor(number)) {
    *problem = std::string(name) + " must be an integer";
    return false;
  }
  *out = static_cast<int64_t>(number);
  return true;
}

bool GetBytes(napi_env env, napi_value value, const char* name, uint8_t** data, size_t* length, std::string* problem) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  if (is_typed) {
    napi_typedarray_type type;
    void* pointer;
    napi_value buffer;
    size_t offset;
    napi_get_typedarray_info(env, value, &type, length, &pointer, &buffer, &offset);
    if (type != napi_uint8_array && type != napi_uint8_clamped_array) {
      *problem = std::string(name) + " must be a Uint8Array";
      return false;
    }
    *data = static_cast<uint8_t*>(pointer);
    return true;
  }
  *problem = std::string(name) + " must be a Uint8Array";
  return false;
}

// A typed array of one element type (Float64Array, Float32Array), or a problem naming the argument.
template <typename Element>
bool GetTypedArray(napi_env env, napi_value value, const char* name, napi_typedarray_type wanted, const char* type_name,
                   Element** data, size_t* length, std::string* problem) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  napi_typedarray_type type = napi_uint8_array;
  void* pointer = nullptr;
  if (is_typed) {
    napi_value buffer;
    size_t offset;
    napi_get_typedarray_info(env, value, &type, length, &pointer, &buffer, &offset);
  }
  if (!is_typed || type != wanted) {
    *problem = std::string(name) + " must be a " + type_name;
    return false;
  }
  *data = static_cast<Element*>(pointer);
  return true;
}

bool GetDoubles(napi_env env, napi_value value, const char* name, double** data, size_t* length, std::string* problem) {
  return GetTypedArray(env, value, name, napi_float64_array, "Float64Array", data, length, problem);
}

// ---- JPEG ----

struct ErrorManager {
  jpeg_error_mgr base;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void OnError(j_common_ptr info) {
  auto* manager = reinterpret_cast<ErrorManager*>(info->err);
  manager->base.format_message(info, manager->message);
  longjmp(manager->jump, 1);
}

// libjpeg reports a truncated file ("Premature end of JPEG file") and corrupt entropy data as
// warnings and pads with grey; treat them as errors (level -1 is a warning, >= 1 trace messages).
void OnMessage(j_common_ptr info, int level) {
  if (level < 0) OnError(info);
}

// One decompressor with its error handling; destroyed on every path out.
struct Decoder {
  jpeg_decompress_struct info;
  ErrorManager errors;
  Decoder() {
    std::memset(&info, 0, sizeof(info));
    info.err = jpeg_std_error(&errors.base);
    errors.base.error_exit = OnError;
    errors.base.emit_message = OnMessage;
    errors.message[0] = 0;
  }
  ~Decoder() { jpeg_destroy_decompress(&info); }
};

bool IsJpeg(const uint8_t* data, size_t length) { return length >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF; }

// Channels the decoded image will have: 1 for greyscale, 3 for YCbCr/RGB; 0 (unsupported here,
// the caller falls back to sharp) for CMYK/YCCK, which libjpeg cannot convert to RGB.
int OutputChannels(const jpeg_decompress_struct& info) {
  if (info.jpeg_color_space == JCS_GRAYSCALE) return 1;
  if (info.jpeg_color_space == JCS_YCbCr || info.jpeg_color_space == JCS_RGB) return 3;
  return 0;
}

napi_value SetNumber(napi_env env, napi_value object, const char* name, double value) {
  napi_value number;
  if (napi_create_double(env, value, &number) != napi_ok || napi_set_named_property(env, object, name, number) != napi_ok) return nullptr;
  return object;
}

// jpegInfo(bytes): { height, width, channels } from the header; channels 0 means CMYK/YCCK.
napi_value JpegInfo(napi_env env, napi_callback_info call) {
  size_t argc = 1;
  napi_value argv[1];
  CALL(env, napi_get_cb_info(env, call, &argc, argv, nullptr, nullptr));
  uint8_t* data;
  size_t length;
  std::string problem;
  if (argc < 1 || !GetBytes(env, argv[0], "bytes", &data, &length, &problem)) return ThrowError(env, "jpegInfo: " + (problem.empty() ? std::string("bytes missing") : problem));
  if (!IsJpeg(data, length)) return ThrowError(env, "not a JPEG file (no SOI marker)", "ERR_NOT_JPEG");
  Decoder decoder;
  if (setjmp(decoder.errors.jump)) return ThrowError(env, std::string("corrupt JPEG: ") + decoder.errors.message, "ERR_CORRUPT_JPEG");
  jpeg_create_decompress(&decoder.info);
  jpeg_mem_src(&decoder.info, data, static_cast<unsigned long>(length));
  jpeg_read_header(&decoder.info, TRUE);
  napi_value result;
  CALL(env, napi_create_object(env, &result));
  if (!SetNumber(env, result, "height", decoder.info.image_height) || !SetNumber(env, result, "width", decoder.info.image_width) ||
      !SetNumber(env, result, "channels", OutputChannels(decoder.info))) {
    return ThrowError(env, "jpegInfo: could not build the result");
  }
  return result;
}

// decodeJpegRegion(bytes, top, left, height, width, denominator, margin[, rgb = true]):
// decodes the image at 1/denominator size (1, 2, 4 or 8: libjpeg's DCT scaling), only the rows
// and columns covering the box [top, top + height) x [left, left + width) of that scaled image
// plus `margin` pixels around it (clamped to the image; the columns further widened to whole
// iMCUs by jpeg_crop_scanline). Returns { pixels, height, width, channels, top, left }: the
// decoded region (interleaved RGB, or for a greyscale JPEG with rgb false, one grey channel) and where it sits in the scaled image.
// Why a margin: at a region's edge libjpeg's fancy chroma upsampling has no neighbour and
// replicates the edge, so pixels within a few columns of a cut differ from a full decode (bench/
// jpeg_region.c measured 0.08% of box bytes without a margin); cutting a whole iMCU (16 px)
// outside the box gives exactly the full decode's bytes inside it (test/native-image.test.ts).
napi_value DecodeJpegRegion(napi_env env, napi_callback_info call) {
  size_t argc = 8;
  napi_value argv[8];
  CALL(env, napi_get_cb_info(env, call, &argc, argv, nullptr, nullptr));
  if (argc < 7) return ThrowError(env, "decodeJpegRegion(bytes, top, left, height, width, denominator, margin): 7 arguments expected");
  uint8_t* data;
  size_t length;
  std::string problem;
  int64_t top, left, height, width, denominator, margin;
  if (!GetBytes(env, argv[0], "bytes", &data, &length, &problem) || !GetInt(env, argv[1], "top", &top, &problem) ||
      !GetInt(env, argv[2], "left", &left, &problem) || !GetInt(env, argv[3], "height", &height, &problem) ||
      !GetInt(env, argv[4], "width", &width, &problem) || !GetInt(env, argv[5], "denominator", &denominator, &problem) ||
      !GetInt(env, argv[6], "margin", &margin, &problem)) {
    return ThrowError(env, "decodeJpegRegion: " + problem);
  }
  bool rgb = true;
  if (argc >= 8 && napi_get_value_bool(env, argv[7], &rgb) != napi_ok) return ThrowError(env, "decodeJpegRegion: rgb must be a boolean");
  if (denominator != 1 && denominator != 2 && denominator != 4 && denominator != 8) {
    return ThrowError(env, "decodeJpegRegion: denominator must be 1, 2, 4 or 8, got " + std::to_string(denominator));
  }
  if (margin < 0) return ThrowError(env, "decodeJpegRegion: margin must be >= 0");
  if (!IsJpeg(data, length)) return ThrowError(env, "not a JPEG file (no SOI marker)", "ERR_NOT_JPEG");
  Decoder decoder;
  // Everything the longjmp path may still need lives outside the setjmp scope's locals that the
  // compiler could keep in registers (volatile is not needed for values set before setjmp).
  napi_value buffer = nullptr;
  uint8_t* pixels = nullptr;
  if (setjmp(decoder.errors.jump)) return ThrowError(env, std::string("corrupt JPEG: ") + decoder.errors.message, "ERR_CORRUPT_JPEG");
  jpeg_decompress_struct& info = decoder.info;
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, data, static_cast<unsigned long>(length));
  jpeg_read_header(&info, TRUE);
  const int channels = OutputChannels(info);
  if (channels == 0) return ThrowError(env, "CMYK/YCCK JPEG (not decoded by the native path)", "ERR_UNSUPPORTED_JPEG");
  // Grey is replicated to RGB by libjpeg-turbo's colour converter, as sharp's path replicates it.
  if (rgb) info.out_color_space = JCS_RGB;
  else info.out_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  const int output_channels = rgb ? 3 : channels;
  info.scale_num = 1;
  info.scale_denom = static_cast<unsigned int>(denominator);
  // The defaults, said explicitly: the same IDCT and upsampling as sharp's (libvips') decode.
  info.dct_method = JDCT_ISLOW;
  info.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&info);
  const int64_t full_height = info.output_height;
  const int64_t full_width = info.output_width;
  if (!(top >= 0 && left >= 0 && height >= 1 && width >= 1 && top + height <= full_height && left + width <= full_width)) {
    return ThrowError(env, "decodeJpegRegion: box " + std::to_string(top) + "," + std::to_string(left) + " " + std::to_string(height) + "x" +
                               std::to_string(width) + " is not inside the " + std::to_string(full_height) + "x" + std::to_string(full_width) +
                               " image (at 1/" + std::to_string(denominator) + ")");
  }
  const int64_t first_row = std::max<int64_t>(0, top - margin);
  const int64_t end_row = std::min<int64_t>(full_height, top + height + margin);
  JDIMENSION x = static_cast<JDIMENSION>(std::max<int64_t>(0, left - margin));
  JDIMENSION span = static_cast<JDIMENSION>(std::min<int64_t>(full_width, left + width + margin) - x);
  if (x > 0 || span < full_width) jpeg_crop_scanline(&info, &x, &span);
  const size_t stride = static_cast<size_t>(info.output_width) * output_channels;
  const int64_t rows = end_row - first_row;
  if (napi_create_arraybuffer(env, stride * rows, reinterpret_cast<void**>(&pixels), &buffer) != napi_ok) {
    return ThrowError(env, "decodeJpegRegion: could not allocate " + std::to_string(stride * rows) + " bytes");
  }
  if (first_row > 0) jpeg_skip_scanlines(&info, static_cast<JDIMENSION>(first_row));
  while (info.output_scanline < end_row) {
    JSAMPROW row = pixels + static_cast<size_t>(info.output_scanline - first_row) * stride;
    jpeg_read_scanlines(&info, &row, 1);
  }
  const int64_t region_width = info.output_width;
  // The rest of the file is not needed; abort also frees the decoder's buffers.
  jpeg_abort_decompress(&info);
  napi_value array, result;
  CALL(env, napi_create_typedarray(env, napi_uint8_array, stride * rows, buffer, 0, &array));
  CALL(env, napi_create_object(env, &result));
  CALL(env, napi_set_named_property(env, result, "pixels", array));
  if (!SetNumber(env, result, "height", static_cast<double>(rows)) || !SetNumber(env, result, "width", static_cast<double>(region_width)) ||
      !SetNumber(env, result, "channels", output_channels) || !SetNumber(env, result, "top", static_cast<double>(first_row)) ||
      !SetNumber(env, result, "left", x) || !SetNumber(env, result, "imageHeight", static_cast<double>(full_height)) ||
      !SetNumber(env, result, "imageWidth", static_cast<double>(full_width))) {
    return ThrowError(env, "decodeJpegRegion: could not build the result");
  }
  return result;
}

// ---- resampling (transforms.ts' resampleBox, byte for byte) ----

struct Taps {
  std::vector<int32_t> start, count;
  std::vector<float> weights;
  int span = 0;
};

double BilinearFilter(double x) {
  const double distance = std::fabs(x);
  return distance < 1 ? 1 - distance : 0;
}

double BicubicFilter(double x) {
  const double a = -0.5;
  const double distance = std::fabs(x);
  if (distance < 1) return ((a + 2) * distance - (a + 3)) * distance * distance + 1;
  if (distance < 2) return ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a;
  return 0;
}

// computeTaps of transforms.ts: float32 weights normalized by their double total.
void ComputeTaps(int64_t input_size, int64_t output_size, int64_t first, int64_t length, bool bicubic, Taps* taps) {
  const double scale = static_cast<double>(input_size) / static_cast<double>(output_size);
  const double half_width = bicubic ? 2 : 1;
  const double support = scale >= 1 ? half_width * scale : half_width;
  const double inverse_scale = scale >= 1 ? 1 / scale : 1;
  const int span = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps->span = span;
  taps->start.assign(length, 0);
  taps->count.assign(length, 0);
  taps->weights.assign(static_cast<size_t>(length) * span, 0.0f);
  for (int64_t position = 0; position < length; position++) {
    const double center = scale * (static_cast<double>(first + position) + 0.5);
    const int64_t low = std::max<int64_t>(static_cast<int64_t>(std::trunc(center - support + 0.5)), 0);
    const int64_t size = std::min<int64_t>(static_cast<int64_t>(std::trunc(center + support + 0.5)), input_size) - low;
    float* weights = taps->weights.data() + position * span;
    double total = 0;
    for (int64_t tap = 0; tap < size; tap++) {
      const double argument = (static_cast<double>(tap + low) - center + 0.5) * inverse_scale;
      const double weight = bicubic ? BicubicFilter(argument) : BilinearFilter(argument);
      weights[tap] = static_cast<float>(weight);
      total += weight;
    }
    if (total != 0) {
      for (int64_t tap = 0; tap < size; tap++) weights[tap] = static_cast<float>(static_cast<double>(weights[tap]) / total);
    }
    taps->start[position] = static_cast<int32_t>(low);
    taps->count[position] = static_cast<int32_t>(size);
  }
}

inline uint8_t RoundPixel(double sum) {
  // Math.fround, then torch.round's half-to-even, clamped to [0, 255], as transforms.ts does.
  const double value = static_cast<float>(sum);
  if (value >= 255) return 255;
  if (!(value > 0)) return 0;
  double rounded = std::floor(value + 0.5);
  if (rounded - value == 0.5 && (static_cast<int64_t>(rounded) & 1) == 1) rounded -= 1;
  return static_cast<uint8_t>(rounded);
}

// Per thread: the planar float32 intermediate and the double row of the height pass, reused
// across calls (each worker thread is its own OS thread, so nothing is shared).
thread_local std::vector<float> middle_scratch;
thread_local std::vector<double> sum_scratch;

// resampleBox(pixels, imageHeight, imageWidth, channels, boxTop, boxLeft, boxHeight, boxWidth,
//             outputHeight, outputWidth, bicubic, windowTop, windowLeft, windowHeight, windowWidth,
//             flip, target, offset, channelFirst)
// The arguments are checked by the TypeScript wrapper (src/data/native-image.ts) with the same
// messages as transforms.ts; here only what would make memory access unsafe is checked again.
napi_value ResampleBox(napi_env env, napi_callback_info call) {
  size_t argc = 19;
  napi_value argv[19];
  CALL(env, napi_get_cb_info(env, call, &argc, argv, nullptr, nullptr));
  if (argc < 19) return ThrowError(env, "resampleBox: 19 arguments expected");
  uint8_t *pixels, *target;
  size_t pixels_length, target_length;
  std::string problem;
  int64_t n[18];
  static const char* const names[] = {"imageHeight", "imageWidth", "channels", "boxTop", "boxLeft", "boxHeight", "boxWidth", "outputHeight", "outputWidth",
                                      "bicubic", "windowTop", "windowLeft", "windowHeight", "windowWidth", "flip", "", "offset", "channelFirst"};
  if (!GetBytes(env, argv[0], "pixels", &pixels, &pixels_length, &problem) || !GetBytes(env, argv[16], "target", &target, &target_length, &problem)) {
    return ThrowError(env, "resampleBox: " + problem);
  }
  for (int index = 1; index < 19; index++) {
    if (index == 16) continue;
    if (index == 10 || index == 15 || index == 18) {
      bool flag;
      if (napi_get_value_bool(env, argv[index], &flag) != napi_ok) return ThrowError(env, std::string("resampleBox: ") + names[index - 1] + " must be a boolean");
      n[index - 1] = flag ? 1 : 0;
    } else if (!GetInt(env, argv[index], names[index - 1], &n[index - 1], &problem)) {
      return ThrowError(env, "resampleBox: " + problem);
    }
  }
  const int64_t image_height = n[0], image_width = n[1], channels = n[2];
  const int64_t box_top = n[3], box_left = n[4], box_height = n[5], box_width = n[6];
  const int64_t output_height = n[7], output_width = n[8];
  const bool bicubic = n[9] != 0;
  const int64_t window_top = n[10], window_left = n[11], window_height = n[12], window_width = n[13];
  const bool flip = n[14] != 0;
  const int64_t offset = n[16];
  const bool channel_first = n[17] != 0;
  if (!(channels >= 1 && channels <= 4 && image_height >= 1 && image_width >= 1 &&
        static_cast<uint64_t>(image_height * image_width * channels) <= pixels_length)) {
    return ThrowError(env, "resampleBox: the pixels are not a " + std::to_string(image_height) + "x" + std::to_string(image_width) + "x" + std::to_string(channels) + " image");
  }
  if (!(box_top >= 0 && box_left >= 0 && box_height >= 1 && box_width >= 1 && box_top + box_height <= image_height && box_left + box_width <= image_width)) {
    return ThrowError(env, "resampleBox: the box is not inside the image");
  }
  if (!(window_top >= 0 && window_left >= 0 && window_height >= 1 && window_width >= 1 && window_top + window_height <= output_height &&
        window_left + window_width <= output_width)) {
    return ThrowError(env, "resampleBox: the window is not inside the output");
  }
  if (!(offset >= 0 && static_cast<uint64_t>(offset + window_height * window_width * channels) <= target_length)) {
    return ThrowError(env, "resampleBox: the output does not fit the target");
  }
  Taps horizontal, vertical;
  ComputeTaps(box_width, output_width, window_left, window_width, bicubic, &horizontal);
  ComputeTaps(box_height, output_height, window_top, window_height, bicubic, &vertical);
  const int64_t first_row = vertical.start[0];
  const int64_t rows = vertical.start[window_height - 1] + vertical.count[window_height - 1] - first_row;
  const int64_t plane = rows * window_width;
  if (middle_scratch.size() < static_cast<size_t>(plane * channels)) middle_scratch.resize(plane * channels);
  float* middle = middle_scratch.data();
  // Width pass: for each kept input row, each output column's taps summed in double (as
  // JavaScript numbers), stored as float32 in a planar intermediate.
  for (int64_t row = 0; row < rows; row++) {
    const uint8_t* row_base = pixels + ((box_top + first_row + row) * image_width + box_left) * channels;
    float* target_row = middle + row * window_width;
    for (int64_t column = 0; column < window_width; column++) {
      const int64_t taps = flip ? window_width - 1 - column : column;
      const int size = horizontal.count[taps];
      const float* weights = horizontal.weights.data() + taps * horizontal.span;
      const uint8_t* source = row_base + static_cast<int64_t>(horizontal.start[taps]) * channels;
      if (channels == 3) {
        double red = 0, green = 0, blue = 0;
        for (int tap = 0; tap < size; tap++, source += 3) {
          const double weight = weights[tap];
          red += weight * source[0];
          green += weight * source[1];
          blue += weight * source[2];
        }
        target_row[column] = static_cast<float>(red);
        target_row[plane + column] = static_cast<float>(green);
        target_row[2 * plane + column] = static_cast<float>(blue);
      } else {
        for (int64_t channel = 0; channel < channels; channel++) {
          double sum = 0;
          for (int tap = 0; tap < size; tap++) sum += static_cast<double>(weights[tap]) * source[tap * channels + channel];
          target_row[channel * plane + column] = static_cast<float>(sum);
        }
      }
    }
  }
  // Height pass: the taps outermost and the columns innermost (so the compiler vectorizes over
  // columns); each column's sum still adds its taps in order 0, 1, 2, ..., as transforms.ts does.
  if (sum_scratch.size() < static_cast<size_t>(window_width)) sum_scratch.resize(window_width);
  double* sums = sum_scratch.data();
  const int64_t output_plane = window_height * window_width;
  for (int64_t channel = 0; channel < channels; channel++) {
    const float* channel_base = middle + channel * plane;
    for (int64_t row = 0; row < window_height; row++) {
      const float* low = channel_base + (vertical.start[row] - first_row) * window_width;
      const int size = vertical.count[row];
      const float* weights = vertical.weights.data() + row * vertical.span;
      std::fill(sums, sums + window_width, 0.0);
      for (int tap = 0; tap < size; tap++) {
        const double weight = weights[tap];
        const float* source = low + tap * window_width;
        for (int64_t column = 0; column < window_width; column++) sums[column] += weight * static_cast<double>(source[column]);
      }
      if (channel_first) {
        uint8_t* out = target + offset + channel * output_plane + row * window_width;
        for (int64_t column = 0; column < window_width; column++) out[column] = RoundPixel(sums[column]);
      } else {
        uint8_t* out = target + offset + row * window_width * channels + channel;
        for (int64_t column = 0; column < window_width; column++) out[column * channels] = RoundPixel(sums[column]);
      }
    }
  }
  return nullptr;
}

// ---- RandAugment, 3-Augment, color jitter (randaugment.h, color.h) ----

// Per thread, reused across calls: the two buffers the ops alternate between and one for a
// degenerate image (Color's grey, Sharpness' smoothed image).
thread_local std::vector<uint8_t> augment_ping, augment_pong, augment_scratch;
thread_local std::vector<float> blur_scratch;

bool GetFloats(napi_env env, napi_value value, const char* name, float** data, size_t* length, std::string* problem) {
  return GetTypedArray(env, value, name, napi_float32_array, "Float32Array", data, length, problem);
}

// augment(pixels, height, width, channels, steps, fill, target, offset, channelFirst[, kernels]):
// applies the encoded steps (randaugment.h's layout, RANDAUGMENT_STEP_FIELDS numbers each) one
// after another to the interleaved image `pixels` (not modified) and writes the result at
// `offset` of `target`, interleaved or channel-first (transforms.ts' toChannelFirst layout).
// `fill` holds one byte per channel for pixels the geometric ops map from outside the image;
// `kernels` (Float32Array) the taps of the blur steps (color.h).
// Checked here in full, since a bad step would otherwise read out of bounds; the wrapper in
// src/data/native-image.ts gives the same messages before the call.
napi_value Augment(napi_env env, napi_callback_info call) {
  size_t argc = 10;
  napi_value argv[10];
  CALL(env, napi_get_cb_info(env, call, &argc, argv, nullptr, nullptr));
  if (argc < 9) return ThrowError(env, "augment(pixels, height, width, channels, steps, fill, target, offset, channelFirst[, kernels]): 9 arguments expected");
  uint8_t *pixels, *fill, *target;
  double* steps;
  size_t pixels_length, fill_length, target_length, steps_length;
  int64_t height, width, channels, offset;
  bool channel_first;
  std::string problem;
  if (!GetBytes(env, argv[0], "pixels", &pixels, &pixels_length, &problem) || !GetInt(env, argv[1], "height", &height, &problem) ||
      !GetInt(env, argv[2], "width", &width, &problem) || !GetInt(env, argv[3], "channels", &channels, &problem) ||
      !GetDoubles(env, argv[4], "steps", &steps, &steps_length, &problem) || !GetBytes(env, argv[5], "fill", &fill, &fill_length, &problem) ||
      !GetBytes(env, argv[6], "target", &target, &target_length, &problem) || !GetInt(env, argv[7], "offset", &offset, &problem)) {
    return ThrowError(env, "augment: " + problem);
  }
  if (napi_get_value_bool(env, argv[8], &channel_first) != napi_ok) return ThrowError(env, "augment: channelFirst must be a boolean");
  float* kernels = nullptr;
  size_t kernels_length = 0;
  if (argc >= 10 && !GetFloats(env, argv[9], "kernels", &kernels, &kernels_length, &problem)) return ThrowError(env, "augment: " + problem);
  if (!(channels == 1 || channels == 3)) return ThrowError(env, "rand-augment needs 1- or 3-channel images (PIL's L or RGB), got " + std::to_string(channels) + " channels");
  if (!(height >= 1 && width >= 1 && height <= (1 << 20) && width <= (1 << 20) && static_cast<uint64_t>(height * width * channels) <= pixels_length)) {
    return ThrowError(env, "augment: the pixels are not a " + std::to_string(height) + "x" + std::to_string(width) + "x" + std::to_string(channels) + " image");
  }
  const masksub_image::Image image{height, width, channels};
  const size_t size = image.size();
  if (!(offset >= 0 && static_cast<uint64_t>(offset) + size <= target_length)) {
    return ThrowError(env, "augment: the " + std::to_string(height) + "x" + std::to_string(width) + "x" + std::to_string(channels) + " result does not fit at offset " +
                               std::to_string(offset) + " of a " + std::to_string(target_length) + "-byte target");
  }
  if (fill_length < static_cast<size_t>(channels)) return ThrowError(env, "augment: fill needs one byte per channel (" + std::to_string(channels) + ")");
  if (steps_length % masksub_image::kStepFields != 0) {
    return ThrowError(env, "augment: steps must hold " + std::to_string(masksub_image::kStepFields) + " numbers per op, got " + std::to_string(steps_length));
  }
  for (size_t step = 0; step < steps_length; step += masksub_image::kStepFields) {
    const double code = steps[step];
    const std::string which = "augment: step " + std::to_string(step / masksub_image::kStepFields);
    if (!(code >= 0 && code < masksub_image::kAllCodeCount && code == std::floor(code))) {
      return ThrowError(env, which + " has no op code 0-" + std::to_string(masksub_image::kAllCodeCount - 1));
    }
    for (int field = 1; field < masksub_image::kStepFields; field++) {
      if (!std::isfinite(steps[step + field])) return ThrowError(env, which + " has a value that is not finite");
    }
    if (code == masksub_image::kBlur) {
      const double size = steps[step + 1], start = steps[step + 3];
      if (!(size >= 1 && size == std::floor(size) && std::fmod(size, 2.0) == 1 && start >= 0 && start == std::floor(start) && start + size <= kernels_length)) {
        return ThrowError(env, which + ": the blur kernel (size " + std::to_string(size) + " at " + std::to_string(start) + ") is not an odd size within the " +
                                   std::to_string(kernels_length) + " kernel taps given");
      }
      if ((size - 1) / 2 >= height || (size - 1) / 2 >= width) {
        return ThrowError(env, which + ": blur kernel " + std::to_string(static_cast<int64_t>(size)) + " is too large for a " + std::to_string(height) + "x" + std::to_string(width) + " image");
      }
    }
  }
  augment_ping.resize(size);
  augment_pong.resize(size);
  const uint8_t* current = pixels;
  for (size_t step = 0; step < steps_length; step += masksub_image::kStepFields) {
    uint8_t* out = current == augment_ping.data() ? augment_pong.data() : augment_ping.data();
    const double* fields = steps + step;
    bool changed = true;
    switch (static_cast<int>(fields[0])) {
      case masksub_image::kGrayscale: masksub_image::Grayscale(current, out, image); break;
      case masksub_image::kBlur:
        masksub_image::Blur(current, out, image, kernels + static_cast<int64_t>(fields[3]), static_cast<int64_t>(fields[1]), &blur_scratch);
        break;
      case masksub_image::kAdjustBrightness: masksub_image::AdjustBrightness(current, out, image, fields[1]); break;
      case masksub_image::kAdjustContrast: masksub_image::AdjustContrast(current, out, image, fields[1]); break;
      case masksub_image::kAdjustSaturation: masksub_image::AdjustSaturation(current, out, image, fields[1]); break;
      default: changed = masksub_image::ApplyStep(fields, current, out, image, fill, &augment_scratch);
    }
    if (changed) current = out;
  }
  uint8_t* destination = target + offset;
  if (!channel_first) {
    // memmove: the target may be the pixels themselves.
    std::memmove(destination, current, size);
    return nullptr;
  }
  if (current == pixels && destination < pixels + pixels_length && pixels < destination + size) {
    std::memcpy(augment_ping.data(), pixels, size);
    current = augment_ping.data();
  }
  const int64_t plane = height * width;
  if (channels == 1) {
    std::memcpy(destination, current, size);
  } else {
    uint8_t *red = destination, *green = destination + plane, *blue = destination + 2 * plane;
    for (int64_t pixel = 0; pixel < plane; pixel++) {
      red[pixel] = current[3 * pixel];
      green[pixel] = current[3 * pixel + 1];
      blue[pixel] = current[3 * pixel + 2];
    }
  }
  return nullptr;
}

}  // namespace

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"jpegInfo", nullptr, JpegInfo, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"decodeJpegRegion", nullptr, DecodeJpegRegion, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"resampleBox", nullptr, ResampleBox, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"augment", nullptr, Augment, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  if (napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties) != napi_ok) return nullptr;
  napi_value version;
  if (napi_create_double(env, LIBJPEG_TURBO_VERSION_NUMBER, &version) == napi_ok) napi_set_named_property(env, exports, "libjpegTurboVersion", version);
  return exports;
}
