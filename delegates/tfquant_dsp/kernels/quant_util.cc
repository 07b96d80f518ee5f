#include "kernels/quant_util.h"

#include <math.h>

#include <algorithm>
#include <limits>

#include "isa/fixed_point.h"

namespace tfq::kernels {

using namespace tfq::fp;  // NOLINT

void QuantizeMultiplier(double real, int32_t* multiplier, int* shift) {
  if (real == 0.0) {
    *multiplier = 0;
    *shift = 0;
    return;
  }
  const double q = frexp(real, shift);
  int64_t q_fixed = static_cast<int64_t>(round(q * static_cast<double>(int64_t{1} << 31)));
  if (q_fixed == (int64_t{1} << 31)) {
    q_fixed /= 2;
    ++*shift;
  }
  if (*shift < -31) {
    *shift = 0;
    q_fixed = 0;
  }
  if (*shift > 30) {
    *shift = 30;
    q_fixed = (int64_t{1} << 31) - 1;
  }
  *multiplier = static_cast<int32_t>(q_fixed);
}

void ActivationRange(Activation act, float scale, int32_t zero_point, int32_t* lo, int32_t* hi) {
  auto quantize = [&](float f) { return zero_point + static_cast<int32_t>(roundf(f / scale)); };
  *lo = -128;
  *hi = 127;
  if (act == Activation::kRelu) {
    *lo = std::max(*lo, quantize(0.0f));
  } else if (act == Activation::kRelu6) {
    *lo = std::max(*lo, quantize(0.0f));
    *hi = std::min(*hi, quantize(6.0f));
  } else if (act == Activation::kReluN1To1) {
    *lo = std::max(*lo, quantize(-1.0f));
    *hi = std::min(*hi, quantize(1.0f));
  }
}

int OutputSize(bool same, int in, int filter, int stride, int dilation) {
  const int effective = (filter - 1) * dilation + 1;
  if (same) return (in + stride - 1) / stride;
  return (in + stride - effective) / stride;
}

int PaddingBefore(int in, int filter, int stride, int dilation, int out) {
  const int effective = (filter - 1) * dilation + 1;
  const int total = std::max(0, (out - 1) * stride + effective - in);
  return total / 2;
}

namespace {

constexpr int32_t kOneQ0 = std::numeric_limits<int32_t>::max();  // "1" in Q0.31

// Fixed-point product of values with a and b integer bits: result has a + b integer bits.
inline int32_t Mul(int32_t a, int32_t b) { return Srdhm(a, b); }

// exp(x) for x in [-1/4, 0), x in Q0.31.
int32_t ExpOnIntervalNegQuarterTo0(int32_t a) {
  const int32_t constant_term = 1895147668;      // exp(-1/8)
  const int32_t constant_1_over_3 = 715827883;   // 1/3
  const int32_t x = WrapAdd(a, 1 << 28);         // a + 1/8
  const int32_t x2 = Mul(x, x);
  const int32_t x3 = Mul(x2, x);
  const int32_t x4 = Mul(x2, x2);
  const int32_t x4_over_4 = SaturatingRoundingMultiplyByPot(x4, -2);
  const int32_t poly = SaturatingRoundingMultiplyByPot(
      WrapAdd(Mul(WrapAdd(x4_over_4, x3), constant_1_over_3), x2), -1);
  return WrapAdd(constant_term, Mul(constant_term, WrapAdd(x, poly)));
}

}  // namespace

int32_t ExpOnNegativeValues(int32_t a, int integer_bits) {
  const int fractional_bits = 31 - integer_bits;
  const int32_t one_quarter = int32_t{1} << (fractional_bits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = WrapSub(a & mask, one_quarter);
  int32_t result = ExpOnIntervalNegQuarterTo0(
      SaturatingRoundingMultiplyByPot(a_mod_quarter_minus_one_quarter, integer_bits));
  const int32_t remainder = WrapSub(a_mod_quarter_minus_one_quarter, a);
  static const struct { int exponent; int32_t multiplier; } kBarrel[] = {
      {-2, 1672461947}, {-1, 1302514674}, {0, 790015084}, {1, 290630308},
      {2, 39332535},    {3, 720401},      {4, 242}};
  for (const auto& step : kBarrel) {
    if (integer_bits > step.exponent) {
      const int shift = fractional_bits + step.exponent;
      if (remainder & (int32_t{1} << shift)) result = Mul(result, step.multiplier);
    }
  }
  if (integer_bits > 5) {
    const int32_t clamp = -(int32_t{1} << (36 - integer_bits));  // -32.0
    if (a < clamp) result = 0;
  }
  if (a == 0) result = kOneQ0;
  return result;
}

int32_t OneOverOnePlusXForXIn01(int32_t a) {
  // half_denominator = RoundingHalfSum(a, 1) in Q0.31.
  const int64_t sum = static_cast<int64_t>(a) + kOneQ0;
  const int32_t half_denominator = static_cast<int32_t>((sum + (sum >= 0 ? 1 : -1)) / 2);
  // Newton-Raphson in Q2.29.
  const int32_t constant_48_over_17 = 1515870810;
  const int32_t constant_neg_32_over_17 = -1010580540;
  int32_t x = WrapAdd(constant_48_over_17, Mul(half_denominator, constant_neg_32_over_17));
  const int32_t one_q2 = int32_t{1} << 29;
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = Mul(half_denominator, x);          // Q2.29
    const int32_t one_minus = WrapSub(one_q2, half_denominator_times_x);        // Q2.29
    x = WrapAdd(x, SaturatingRoundingMultiplyByPot(Mul(x, one_minus), 2));      // Q4 -> Q2
  }
  // ExactMulByPot<-1> (Q2 -> Q1, same raw), then Rescale to Q0: saturating shift left by 1.
  return SaturatingRoundingMultiplyByPot(x, 1);
}

int32_t Logistic(int32_t a, int integer_bits) {
  if (a == 0) return int32_t{1} << 30;  // one half
  const bool positive = a > 0;
  const int32_t abs_input = positive ? a : WrapSub(0, a);
  const int32_t result_if_positive =
      OneOverOnePlusXForXIn01(ExpOnNegativeValues(WrapSub(0, abs_input), integer_bits));
  return positive ? result_if_positive : WrapSub(kOneQ0, result_if_positive);
}

int32_t GetReciprocal(int32_t x, int x_integer_digits, int* num_bits_over_unit) {
  const int headroom_plus_one = x == 0 ? 32 : __builtin_clz(static_cast<uint32_t>(x));
  *num_bits_over_unit = x_integer_digits - headroom_plus_one;
  const int32_t shifted_sum_minus_one = static_cast<int32_t>(
      (static_cast<uint32_t>(x) << headroom_plus_one) - (static_cast<uint32_t>(1) << 31));
  return OneOverOnePlusXForXIn01(shifted_sum_minus_one);
}

}  // namespace tfq::kernels
