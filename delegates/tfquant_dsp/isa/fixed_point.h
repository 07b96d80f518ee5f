// Single-lane definitions of the fixed-point primitives (the lane semantics of the ISA's vector
// operations, and the scalar arithmetic of the kernels that are not vectorised). Written from
// the semantics in ../shared/notes/tflite-int8.md §2 and gemmlowp's documented behaviour.
#ifndef TFQUANT_DSP_ISA_FIXED_POINT_H_
#define TFQUANT_DSP_ISA_FIXED_POINT_H_

#include <stdint.h>

#include <limits>

namespace tfq::fp {

inline int32_t WrapAdd(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
inline int32_t WrapSub(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
}
inline int32_t WrapMul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}
inline int32_t WrapShl(int32_t a, int s) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) << s);
}

// floor((a*b + 2^30) / 2^31); the only overflow, INT32_MIN * INT32_MIN, saturates.
inline int32_t Srdhm(int32_t a, int32_t b) {
  if (a == b && a == std::numeric_limits<int32_t>::min()) {
    return std::numeric_limits<int32_t>::max();
  }
  const int64_t ab = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  return static_cast<int32_t>((ab + (int64_t{1} << 30)) >> 31);
}

// x / 2^e rounded half away from zero, e in [0, 31].
inline int32_t RoundingDivideByPot(int32_t x, int e) {
  const int32_t mask = static_cast<int32_t>((int64_t{1} << e) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> e) + (remainder > threshold ? 1 : 0);
}

// TFLite's MultiplyByQuantizedMultiplier ("double rounding").
inline int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return RoundingDivideByPot(Srdhm(WrapShl(x, left), multiplier), right);
}

// int16 lane variants (HARD_SWISH).
inline int16_t Srdhm16(int16_t a, int16_t b) {
  if (a == b && a == std::numeric_limits<int16_t>::min()) {
    return std::numeric_limits<int16_t>::max();
  }
  const int32_t ab = static_cast<int32_t>(a) * static_cast<int32_t>(b);
  return static_cast<int16_t>((ab + (1 << 14)) >> 15);
}
inline int16_t RoundingDivideByPot16(int16_t x, int e) {
  const int16_t mask = static_cast<int16_t>((1 << e) - 1);
  const int16_t remainder = static_cast<int16_t>(x & mask);
  const int16_t threshold = static_cast<int16_t>((mask >> 1) + (x < 0 ? 1 : 0));
  return static_cast<int16_t>((x >> e) + (remainder > threshold ? 1 : 0));
}
// a*b/2^15 truncated toward zero (ARM SQDMULH), saturating INT16_MIN * INT16_MIN.
inline int16_t SaturatingDoublingHighMul16(int16_t a, int16_t b) {
  if (a == b && a == std::numeric_limits<int16_t>::min()) {
    return std::numeric_limits<int16_t>::max();
  }
  const int32_t ab = static_cast<int32_t>(a) * static_cast<int32_t>(b);
  return static_cast<int16_t>(ab / (1 << 15));
}
inline int16_t SaturatingLeftShift16(int16_t v, int amount) {
  int64_t r = static_cast<int64_t>(v) * (int64_t{1} << amount);
  if (r > 32767) r = 32767;
  if (r < -32768) r = -32768;
  return static_cast<int16_t>(r);
}

// Saturating multiply by 2^exponent (gemmlowp SaturatingRoundingMultiplyByPOT).
inline int32_t SaturatingRoundingMultiplyByPot(int32_t x, int exponent) {
  if (exponent == 0) return x;
  if (exponent < 0) return RoundingDivideByPot(x, -exponent);
  const int32_t min = std::numeric_limits<int32_t>::min();
  const int32_t max = std::numeric_limits<int32_t>::max();
  const int32_t threshold = static_cast<int32_t>((int64_t{1} << (31 - exponent)) - 1);
  if (x > threshold) return max;
  if (x < -threshold) return min;
  return WrapShl(x, exponent);
}

inline int32_t SaturateInt8(int32_t v) { return v < -128 ? -128 : (v > 127 ? 127 : v); }

// TFLite's QUANTIZE of one float to int8: saturate(round_half_away(x / scale) + zero_point).
// roundf without a libm call: truncate, then correct by the exact remainder x - t. |x| >= 2^23
// (and NaN, which the reference's float -> int conversion sends to INT32_MIN) saturate.
inline int8_t QuantizeFloat(float value, float scale, int32_t zero_point) {
  const float x = value / scale;
  if (x > -8388608.0f && x < 8388608.0f) {
    const int32_t t = static_cast<int32_t>(x);
    const float d = x - static_cast<float>(t);
    return static_cast<int8_t>(
        SaturateInt8(t + (d >= 0.5f ? 1 : 0) - (d <= -0.5f ? 1 : 0) + zero_point));
  }
  return static_cast<int8_t>(x >= 8388608.0f ? 127 : -128);
}

}  // namespace tfq::fp

#endif  // TFQUANT_DSP_ISA_FIXED_POINT_H_
