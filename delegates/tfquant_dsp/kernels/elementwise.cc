// ADD, MUL, SOFTMAX, LOGISTIC, HARD_SWISH, QUANTIZE, DEQUANTIZE.
#include <math.h>
#include <string.h>

#include <algorithm>
#include <limits>

#include "isa/fixed_point.h"
#include "kernels/kernels.h"

namespace tfq::kernels {

using namespace tfq::fp;  // NOLINT
using isa::VecI16;
using isa::VecI32;
using isa::VecI8;

namespace {

// Visits the 4-D output index space, giving flat offsets into both (broadcast) inputs.
template <typename F>
void ForEachBroadcast(const int a[4], const int b[4], const int o[4], F f) {
  size_t i = 0;
  for (int d0 = 0; d0 < o[0]; ++d0) {
    for (int d1 = 0; d1 < o[1]; ++d1) {
      for (int d2 = 0; d2 < o[2]; ++d2) {
        for (int d3 = 0; d3 < o[3]; ++d3, ++i) {
          const size_t ia = ((static_cast<size_t>(a[0] == 1 ? 0 : d0) * a[1] + (a[1] == 1 ? 0 : d1)) * a[2] +
                             (a[2] == 1 ? 0 : d2)) * a[3] + (a[3] == 1 ? 0 : d3);
          const size_t ib = ((static_cast<size_t>(b[0] == 1 ? 0 : d0) * b[1] + (b[1] == 1 ? 0 : d1)) * b[2] +
                             (b[2] == 1 ? 0 : d2)) * b[3] + (b[3] == 1 ? 0 : d3);
          f(i, ia, ib);
        }
      }
    }
  }
}

bool SameShape(const int a[4], const int b[4]) {
  return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

}  // namespace

// ---- ADD ----------------------------------------------------------------------------------------

AddParams MakeAddParams(QuantParams in1, QuantParams in2, QuantParams out, Activation act) {
  AddParams p;
  p.input1_offset = -in1.zero_point;
  p.input2_offset = -in2.zero_point;
  p.output_offset = out.zero_point;
  p.left_shift = 20;
  const double twice_max_input_scale = 2 * static_cast<double>(std::max(in1.scale, in2.scale));
  const double real1 = static_cast<double>(in1.scale) / twice_max_input_scale;
  const double real2 = static_cast<double>(in2.scale) / twice_max_input_scale;
  const double real_out =
      twice_max_input_scale / ((1 << p.left_shift) * static_cast<double>(out.scale));
  QuantizeMultiplier(real1, &p.input1_multiplier, &p.input1_shift);
  QuantizeMultiplier(real2, &p.input2_multiplier, &p.input2_shift);
  QuantizeMultiplier(real_out, &p.output_multiplier, &p.output_shift);
  ActivationRange(act, out.scale, out.zero_point, &p.act_min, &p.act_max);
  return p;
}

namespace {
int32_t AddOne(const AddParams& p, int8_t a, int8_t b) {
  const int32_t sa = MultiplyByQuantizedMultiplier((p.input1_offset + a) * (1 << p.left_shift),
                                                   p.input1_multiplier, p.input1_shift);
  const int32_t sb = MultiplyByQuantizedMultiplier((p.input2_offset + b) * (1 << p.left_shift),
                                                   p.input2_multiplier, p.input2_shift);
  const int32_t r = MultiplyByQuantizedMultiplier(WrapAdd(sa, sb), p.output_multiplier,
                                                  p.output_shift) + p.output_offset;
  return std::min(std::max(r, p.act_min), p.act_max);
}

}  // namespace

void Add(const isa::Ops& ops, ThreadPool* pool, const AddParams& p, const int8_t* a, const int as[4],
         const int8_t* b, const int bs[4], int8_t* out, const int os[4]) {
  if (SameShape(as, os) && SameShape(bs, os)) {
    const size_t n = static_cast<size_t>(os[0]) * os[1] * os[2] * os[3];
    // Left shifts of the inputs: (x + offset) * 2^20 * 2^max(shift, 0); the reference forms the
    // product with 2^20 first and then the multiplier's left shift (shifts <= 0 in practice).
    isa::AddArgs g;
    g.a_offset = p.input1_offset;
    g.a_shl = p.left_shift + (p.input1_shift > 0 ? p.input1_shift : 0);
    g.a_mult = p.input1_multiplier;
    g.a_rshift = p.input1_shift > 0 ? 0 : -p.input1_shift;
    g.b_offset = p.input2_offset;
    g.b_shl = p.left_shift + (p.input2_shift > 0 ? p.input2_shift : 0);
    g.b_mult = p.input2_multiplier;
    g.b_rshift = p.input2_shift > 0 ? 0 : -p.input2_shift;
    g.out_shl = p.output_shift > 0 ? p.output_shift : 0;
    g.out_mult = p.output_multiplier;
    g.out_rshift = p.output_shift > 0 ? 0 : -p.output_shift;
    g.out_offset = p.output_offset;
    g.act_min = p.act_min;
    g.act_max = p.act_max;
    // Chunks of whole 32-element vectors, one per task.
    const int threads = pool ? pool->threads() : 1;
    const size_t chunk = std::max<size_t>(4096, (n / (3 * threads) + 31) / 32 * 32);
    const int tasks = static_cast<int>((n + chunk - 1) / chunk);
    ParallelFor(pool, tasks, [&](int t) {
      isa::AddArgs c = g;
      const size_t begin = static_cast<size_t>(t) * chunk;
      c.a = a + begin;
      c.b = b + begin;
      c.out = out + begin;
      c.n = static_cast<int>(std::min(chunk, n - begin));
      ops.add_requant(c);
    });
    return;
  }
  ForEachBroadcast(as, bs, os, [&](size_t i, size_t ia, size_t ib) {
    out[i] = static_cast<int8_t>(AddOne(p, a[ia], b[ib]));
  });
}

// ---- MUL ----------------------------------------------------------------------------------------

MulParams MakeMulParams(QuantParams in1, QuantParams in2, QuantParams out, Activation act) {
  MulParams p;
  p.input1_offset = -in1.zero_point;
  p.input2_offset = -in2.zero_point;
  p.output_offset = out.zero_point;
  const double real = static_cast<double>(in1.scale) * static_cast<double>(in2.scale) /
                      static_cast<double>(out.scale);
  QuantizeMultiplier(real, &p.multiplier, &p.shift);
  ActivationRange(act, out.scale, out.zero_point, &p.act_min, &p.act_max);
  return p;
}

void Mul(const MulParams& p, const int8_t* a, const int as[4], const int8_t* b, const int bs[4],
         int8_t* out, const int os[4]) {
  ForEachBroadcast(as, bs, os, [&](size_t i, size_t ia, size_t ib) {
    const int32_t prod = (p.input1_offset + a[ia]) * (p.input2_offset + b[ib]);
    const int32_t r = MultiplyByQuantizedMultiplier(prod, p.multiplier, p.shift) + p.output_offset;
    out[i] = static_cast<int8_t>(std::min(std::max(r, p.act_min), p.act_max));
  });
}

// ---- SOFTMAX ------------------------------------------------------------------------------------

namespace {
constexpr int kScaledDiffIntegerBits = 5;
constexpr int kAccumulationIntegerBits = 12;

int CalculateInputRadius(int input_integer_bits, int input_left_shift, int total_signed_bits = 31) {
  const double max_input_rescaled = 1.0 * ((1 << input_integer_bits) - 1) *
                                    static_cast<double>(int64_t{1} << (total_signed_bits - input_integer_bits)) /
                                    static_cast<double>(int64_t{1} << input_left_shift);
  return static_cast<int>(floor(max_input_rescaled));
}
}  // namespace

bool MakeSoftmaxParams(float beta, float input_scale, SoftmaxParams* p) {
  const double max_real = static_cast<double>((int64_t{1} << 31) - 1);
  const double real = std::min<double>(static_cast<double>(beta) * static_cast<double>(input_scale) *
                                           static_cast<double>(1 << (31 - kScaledDiffIntegerBits)),
                                       max_real);
  int shift;
  QuantizeMultiplier(real, &p->input_multiplier, &shift);
  if (shift < 0 || real <= 1.0) return false;  // the reference kernel aborts here
  p->input_left_shift = shift;
  p->diff_min = -CalculateInputRadius(kScaledDiffIntegerBits, shift);
  for (int d = 0; d < 256; ++d) {
    p->exp_of[d] = 0;
    if (-d >= p->diff_min) {
      const int32_t rescaled = Srdhm(WrapShl(-d, p->input_left_shift), p->input_multiplier);
      p->exp_of[d] = ExpOnNegativeValues(rescaled, kScaledDiffIntegerBits);
    }
  }
  return true;
}

void Softmax(const SoftmaxParams& p, const int8_t* in, int rows, int depth, int8_t* out) {
  for (int r = 0; r < rows; ++r) {
    const int8_t* x = in + static_cast<size_t>(r) * depth;
    int8_t* y = out + static_cast<size_t>(r) * depth;
    int8_t max_in_row = std::numeric_limits<int8_t>::min();
    for (int c = 0; c < depth; ++c) max_in_row = std::max(max_in_row, x[c]);
    int32_t sum_of_exps = 0;  // Q12.19
    for (int c = 0; c < depth; ++c) {
      const int d = max_in_row - x[c];
      if (-d >= p.diff_min) {
        sum_of_exps = WrapAdd(sum_of_exps, RoundingDivideByPot(p.exp_of[d], kAccumulationIntegerBits));
      }
    }
    int num_bits_over_unit;
    const int32_t shifted_scale = GetReciprocal(sum_of_exps, kAccumulationIntegerBits,
                                                &num_bits_over_unit);
    const int exponent = num_bits_over_unit + 31 - 8;
    for (int c = 0; c < depth; ++c) {
      const int d = max_in_row - x[c];
      if (-d >= p.diff_min) {
        const int32_t unsat = RoundingDivideByPot(Srdhm(shifted_scale, p.exp_of[d]), exponent);
        y[c] = static_cast<int8_t>(SaturateInt8(unsat - 128));
      } else {
        y[c] = -128;
      }
    }
  }
}

// ---- LOGISTIC -----------------------------------------------------------------------------------

bool MakeLogisticParams(QuantParams in, LogisticParams* p) {
  constexpr int kInputIntegerBits = 4;
  const double real = static_cast<double>(in.scale) * static_cast<double>(1 << (31 - kInputIntegerBits));
  int shift;
  QuantizeMultiplier(real, &p->input_multiplier, &shift);
  if (shift < 0) return false;
  p->input_left_shift = shift;
  p->input_zero_point = in.zero_point;
  p->input_range_radius = CalculateInputRadius(kInputIntegerBits, shift, 31);
  return true;
}

void Logistic(const LogisticParams& p, const int8_t* in, int n, int8_t* out) {
  for (int i = 0; i < n; ++i) {
    const int32_t x = int32_t{in[i]} - p.input_zero_point;
    if (x <= -p.input_range_radius) {
      out[i] = -128;
    } else if (x >= p.input_range_radius) {
      out[i] = 127;
    } else {
      const int32_t in_q4 = MultiplyByQuantizedMultiplier(x, p.input_multiplier, p.input_left_shift);
      const int32_t out_q0 = tfq::kernels::Logistic(in_q4, 4);
      const int32_t out_q23 = RoundingDivideByPot(out_q0, 31 - 8);
      out[i] = static_cast<int8_t>(SaturateInt8(out_q23 - 128));
    }
  }
}

// ---- HARD_SWISH ---------------------------------------------------------------------------------

namespace {
int16_t DownScaleInt32ToInt16Multiplier(int32_t m) {
  constexpr int32_t kRoundingOffset = 1 << 15;
  if (m >= std::numeric_limits<int32_t>::max() - kRoundingOffset) return 32767;
  return static_cast<int16_t>((m + kRoundingOffset) >> 16);
}
}  // namespace

bool MakeHardSwishParams(QuantParams in, QuantParams out, HardSwishParams* p) {
  p->input_zero_point = in.zero_point;
  p->output_zero_point = out.zero_point;
  const float hires_input_scale = (1.0f / 128.0f) * in.scale;
  const float reluish_scale = 3.0f / 32768.0f;
  const float output_multiplier = hires_input_scale / out.scale;
  int32_t m;
  QuantizeMultiplier(output_multiplier, &m, &p->output_multiplier_exponent);
  p->output_multiplier_fixedpoint_int16 = DownScaleInt32ToInt16Multiplier(m);
  if (p->output_multiplier_exponent > 0) return false;  // the reference kernel rejects it
  const float reluish_multiplier = hires_input_scale / reluish_scale;
  QuantizeMultiplier(reluish_multiplier, &m, &p->reluish_multiplier_exponent);
  p->reluish_multiplier_fixedpoint_int16 = DownScaleInt32ToInt16Multiplier(m);
  return true;
}

void HardSwish(const HardSwishParams& p, const int8_t* in, int n, int8_t* out) {
  for (int i = 0; i < n; ++i) {
    const int16_t input_value = static_cast<int16_t>(in[i] - p.input_zero_point);
    const int16_t hires = static_cast<int16_t>(input_value * (1 << 7));
    const int16_t preshift_output = Srdhm16(hires, p.output_multiplier_fixedpoint_int16);
    int16_t reluish = hires;
    if (p.reluish_multiplier_exponent > 0) {
      reluish = SaturatingLeftShift16(reluish, p.reluish_multiplier_exponent - 1);
    }
    reluish = Srdhm16(reluish, p.reluish_multiplier_fixedpoint_int16);
    if (p.reluish_multiplier_exponent > 0) reluish = SaturatingLeftShift16(reluish, 1);
    if (p.reluish_multiplier_exponent < 0) {
      reluish = RoundingDivideByPot16(reluish, -p.reluish_multiplier_exponent);
    }
    reluish = static_cast<int16_t>((reluish + (1 << 15)) >> 1);
    const int16_t preshift = SaturatingDoublingHighMul16(reluish, preshift_output);
    int16_t v = RoundingDivideByPot16(preshift, -p.output_multiplier_exponent);
    v = static_cast<int16_t>(v + p.output_zero_point);
    v = std::min<int16_t>(v, 127);
    v = std::max<int16_t>(v, -128);
    out[i] = static_cast<int8_t>(v);
  }
}

// ---- QUANTIZE / DEQUANTIZE ----------------------------------------------------------------------

void Quantize(const isa::Ops& ops, QuantParams q, const float* in, int n, int8_t* out) {
  ops.quantize_f32(in, n, q.scale, q.zero_point, out);
}

void Dequantize(QuantParams q, const int8_t* in, int n, float* out) {
  const double scale = q.scale;
  for (int i = 0; i < n; ++i) {
    out[i] = static_cast<float>(scale * (int32_t{in[i]} - q.zero_point));
  }
}

}  // namespace tfq::kernels
