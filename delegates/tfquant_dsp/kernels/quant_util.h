// The quantization arithmetic the kernels share: multiplier decomposition, activation clamps,
// padding, and the gemmlowp-style fixed-point transcendental functions used by TFLite's
// reference SOFTMAX and LOGISTIC (scalar, defined in terms of isa/fixed_point.h).
#ifndef TFQUANT_DSP_KERNELS_QUANT_UTIL_H_
#define TFQUANT_DSP_KERNELS_QUANT_UTIL_H_

#include <stdint.h>

namespace tfq::kernels {

// real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31) (or 0). TFLite's
// QuantizeMultiplier: frexp, round half away from zero, renormalise 2^31, flush below 2^-31.
void QuantizeMultiplier(double real, int32_t* multiplier, int* shift);

enum class Activation { kNone, kRelu, kRelu6, kReluN1To1 };
// Clamp bounds in the int8 domain: zp + round(f / scale) computed in float, half away from zero.
void ActivationRange(Activation act, float scale, int32_t zero_point, int32_t* lo, int32_t* hi);

// Output size and leading padding of one spatial dimension (TFLite's SAME / VALID rules).
int OutputSize(bool same, int in, int filter, int stride, int dilation);
int PaddingBefore(int in, int filter, int stride, int dilation, int out);

// gemmlowp fixed-point functions on raw int32 values. `integer_bits` is the format of the input.
int32_t ExpOnNegativeValues(int32_t a, int integer_bits);     // returns Q0.31
int32_t OneOverOnePlusXForXIn01(int32_t a);                    // Q0.31 -> Q0.31
int32_t Logistic(int32_t a, int integer_bits);                 // returns Q0.31
// 1 / x for x in fixed point with x_integer_digits integer bits (TFLite GetReciprocal).
int32_t GetReciprocal(int32_t x, int x_integer_digits, int* num_bits_over_unit);

}  // namespace tfq::kernels

#endif  // TFQUANT_DSP_KERNELS_QUANT_UTIL_H_
