// Parameter sweeps of the kernels (kernels/kernels.h) on every ISA implementation this CPU runs
// (the registry), on one thread and on a pool of two:
//   CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED against naive loops written here from
//   TFLite's reference int8 semantics (acc = bias + sum w * (x - input_zp), per-channel
//   MultiplyByQuantizedMultiplier, + output zero point, activation clamp);
//   ADD, MAX_POOL_2D and QUANTIZE against the scalar ISA's result.
// Shapes, strides, padding, dilation, depth multipliers, channel counts that are not multiples
// of the 32-lane blocks, extreme zero points (-128, 127) and multipliers (tiny, above one) are
// drawn at random. Usage: kernels_test [trials]; prints OK and returns 0 when every case agrees.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "isa/fixed_point.h"
#include "isa/hvx.h"
#include "kernels/kernels.h"

namespace {

using namespace tfq;           // NOLINT
using namespace tfq::kernels;  // NOLINT

int failures = 0;
std::mt19937 rng(12345);

int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
template <typename T>
T Pick(std::initializer_list<T> values) {
  return *(values.begin() + Uniform(0, static_cast<int>(values.size()) - 1));
}
float LogUniform(float lo, float hi) {
  return std::exp(std::uniform_real_distribution<float>(std::log(lo), std::log(hi))(rng));
}
int32_t ZeroPoint() { return Uniform(0, 3) == 0 ? Pick({-128, 127}) : Uniform(-128, 127); }
std::vector<int8_t> Bytes(size_t n, int lo = -128) {
  std::vector<int8_t> v(n);
  for (auto& b : v) b = static_cast<int8_t>(Uniform(lo, 127));
  return v;
}
Activation AnyActivation() {
  return Pick({Activation::kNone, Activation::kRelu, Activation::kRelu6, Activation::kReluN1To1});
}

// The per-channel requantization of TFLite's reference kernels.
int8_t Requantize(int64_t acc, double real, int32_t zp, int32_t lo, int32_t hi) {
  int32_t m;
  int shift;
  QuantizeMultiplier(real, &m, &shift);
  int32_t y = fp::MultiplyByQuantizedMultiplier(static_cast<int32_t>(acc), m, shift) + zp;
  return static_cast<int8_t>(std::min(std::max(y, lo), hi));
}

struct Case {
  const char* what;
  char detail[256];
};

void Compare(const Case& c, const char* isa, int threads, const std::vector<int8_t>& want,
             const std::vector<int8_t>& got) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i]) {
      if (failures < 20) {
        printf("FAIL %s (%s) isa %s, %d thread(s): element %zu of %zu: %d, expected %d\n", c.what,
               c.detail, isa, threads, i, want.size(), got[i], want[i]);
      }
      ++failures;
      return;
    }
  }
}

struct Runner {
  const isa::Ops* ops;
  ThreadPool* pool;
  int threads;
};
std::vector<Runner> runners;

// Runs a CONV_2D / DEPTHWISE_CONV_2D kernel with every runner and compares with `want`.
template <typename Kernel>
void RunEverywhere(const Case& c, const Kernel& kernel, const std::vector<int8_t>& input,
                   const int in_shape[4], const std::vector<int8_t>& want) {
  for (const Runner& r : runners) {
    std::vector<int8_t> got(want.size(), 0x55);
    Workspace ws;
    ws.Reserve(kernel.Scratch(in_shape, r.threads), r.threads);
    kernel.Run(*r.ops, r.pool, ws, input.data(), in_shape, got.data());
    Compare(c, r.ops->name, r.threads, want, got);
  }
}

// Leading padding of rows (`vertical`) or columns of a convolution's output (0 for VALID).
int PadBefore(const ConvGeometry& g, bool vertical, int in, int out) {
  if (!g.same_padding) return 0;
  return vertical ? PaddingBefore(in, g.kernel_h, g.stride_h, g.dilation_h, out)
                  : PaddingBefore(in, g.kernel_w, g.stride_w, g.dilation_w, out);
}

void TestConv(int trials) {
  for (int trial = 0; trial < trials; ++trial) {
    ConvGeometry g;
    g.kernel_h = Pick({1, 1, 2, 3, 5});
    g.kernel_w = Uniform(0, 3) ? g.kernel_h : Pick({1, 3});
    g.stride_h = Uniform(1, 2);
    g.stride_w = Uniform(1, 2);
    g.dilation_h = Uniform(0, 4) ? 1 : 2;
    g.dilation_w = Uniform(0, 4) ? 1 : 2;
    g.same_padding = Uniform(0, 1);
    const int batches = Uniform(1, 2), h = Uniform(1, 12), w = Uniform(1, 12);
    const int in_c = Pick({1, 2, 3, 4, 5, 8, 17, 32, 33, 64}), out_c = Pick({1, 5, 16, 32, 33, 70});
    const int in_shape[4] = {batches, h, w, in_c};
    const int out_h = OutputSize(g.same_padding, h, g.kernel_h, g.stride_h, g.dilation_h);
    const int out_w = OutputSize(g.same_padding, w, g.kernel_w, g.stride_w, g.dilation_w);
    if (out_h <= 0 || out_w <= 0) continue;
    const int32_t in_zp = ZeroPoint(), out_zp = ZeroPoint();
    const float in_scale = LogUniform(1e-3f, 1.0f), out_scale = LogUniform(1e-3f, 1.0f);
    const bool per_channel = Uniform(0, 3) != 0;
    std::vector<float> filter_scales(per_channel ? out_c : 1);
    for (auto& s : filter_scales) s = Uniform(0, 15) ? LogUniform(1e-4f, 0.05f) : 1e-12f;
    const Activation act = AnyActivation();
    const std::vector<int8_t> filter = Bytes(static_cast<size_t>(out_c) * g.kernel_h * g.kernel_w * in_c, -127);
    std::vector<int32_t> bias(out_c);
    for (auto& b : bias) b = Uniform(-50000, 50000);
    const std::vector<int8_t> input = Bytes(static_cast<size_t>(batches) * h * w * in_c);
    int lo, hi;
    ActivationRange(act, out_scale, out_zp, &lo, &hi);
    const int pad_top = PadBefore(g, true, h, out_h), pad_left = PadBefore(g, false, w, out_w);
    std::vector<int8_t> want(static_cast<size_t>(batches) * out_h * out_w * out_c);
    Case c{"CONV_2D", {0}};
    snprintf(c.detail, sizeof(c.detail), "%dx%dx%dx%d k%dx%d s%dx%d d%dx%d %s out %d zp %d/%d",
             batches, h, w, in_c, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.dilation_h,
             g.dilation_w, g.same_padding ? "same" : "valid", out_c, in_zp, out_zp);
    for (int use_bias = 0; use_bias < 2; ++use_bias) {  // with and without a bias tensor
      Conv2D kernel(filter.data(), out_c, in_c, g, use_bias ? bias.data() : nullptr, in_scale, in_zp,
                    filter_scales.data(), static_cast<int>(filter_scales.size()), out_scale, out_zp,
                    act);
      // Every way of running the GEMM: weights packed at each run and the work split over rows
      // or over blocks of channels, or a packed copy kept.
      kernel.SetBlockSplit(Uniform(0, 1) ? 0 : size_t{1} << 30, 0);
      if (Uniform(0, 2) == 0) kernel.KeepPackedWeights();
      for (int b = 0; b < batches; ++b)
        for (int oy = 0; oy < out_h; ++oy)
          for (int ox = 0; ox < out_w; ++ox)
            for (int oc = 0; oc < out_c; ++oc) {
              int64_t acc = use_bias ? bias[oc] : 0;
              for (int ky = 0; ky < g.kernel_h; ++ky)
                for (int kx = 0; kx < g.kernel_w; ++kx) {
                  const int iy = oy * g.stride_h - pad_top + ky * g.dilation_h;
                  const int ix = ox * g.stride_w - pad_left + kx * g.dilation_w;
                  if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                  for (int ic = 0; ic < in_c; ++ic) {
                    const int x = input[((static_cast<size_t>(b) * h + iy) * w + ix) * in_c + ic];
                    const int f = filter[((static_cast<size_t>(oc) * g.kernel_h + ky) * g.kernel_w + kx) * in_c + ic];
                    acc += static_cast<int64_t>(f) * (x - in_zp);
                  }
                }
              const double real = static_cast<double>(in_scale) *
                                  static_cast<double>(filter_scales[per_channel ? oc : 0]) /
                                  static_cast<double>(out_scale);
              want[((static_cast<size_t>(b) * out_h + oy) * out_w + ox) * out_c + oc] =
                  Requantize(acc, real, out_zp, lo, hi);
            }
      RunEverywhere(c, kernel, input, in_shape, want);
    }
  }
}

void TestDepthwise(int trials) {
  for (int trial = 0; trial < trials; ++trial) {
    ConvGeometry g;
    g.kernel_h = Pick({1, 3, 3, 5});
    g.kernel_w = Uniform(0, 3) ? g.kernel_h : Pick({1, 3});
    g.stride_h = Uniform(1, 2);
    g.stride_w = g.stride_h;
    g.dilation_h = Uniform(0, 4) ? 1 : 2;
    g.dilation_w = g.dilation_h;
    g.same_padding = Uniform(0, 1);
    const int batches = Uniform(1, 2), h = Uniform(1, 14), w = Uniform(1, 14);
    const int in_c = Pick({1, 3, 8, 17, 32, 33, 64, 96}), mult = Pick({1, 1, 1, 2, 3});
    const int out_c = in_c * mult;
    const int in_shape[4] = {batches, h, w, in_c};
    const int out_h = OutputSize(g.same_padding, h, g.kernel_h, g.stride_h, g.dilation_h);
    const int out_w = OutputSize(g.same_padding, w, g.kernel_w, g.stride_w, g.dilation_w);
    if (out_h <= 0 || out_w <= 0) continue;
    const int32_t in_zp = ZeroPoint(), out_zp = ZeroPoint();
    const float in_scale = LogUniform(1e-3f, 1.0f), out_scale = LogUniform(1e-3f, 1.0f);
    const bool per_channel = Uniform(0, 3) != 0;
    std::vector<float> filter_scales(per_channel ? out_c : 1);
    for (auto& s : filter_scales) s = Uniform(0, 15) ? LogUniform(1e-4f, 0.3f) : 1e-12f;
    const Activation act = AnyActivation();
    const std::vector<int8_t> filter = Bytes(static_cast<size_t>(g.kernel_h) * g.kernel_w * out_c, -127);
    std::vector<int32_t> bias(out_c);
    for (auto& b : bias) b = Uniform(-20000, 20000);
    const std::vector<int8_t> input = Bytes(static_cast<size_t>(batches) * h * w * in_c);
    DepthwiseConv2D kernel(filter.data(), in_c, mult, g, bias.data(), in_scale, in_zp,
                           filter_scales.data(), static_cast<int>(filter_scales.size()),
                           out_scale, out_zp, act);
    int lo, hi;
    ActivationRange(act, out_scale, out_zp, &lo, &hi);
    const int pad_top = PadBefore(g, true, h, out_h), pad_left = PadBefore(g, false, w, out_w);
    std::vector<int8_t> want(static_cast<size_t>(batches) * out_h * out_w * out_c);
    for (int b = 0; b < batches; ++b)
      for (int oy = 0; oy < out_h; ++oy)
        for (int ox = 0; ox < out_w; ++ox)
          for (int oc = 0; oc < out_c; ++oc) {
            int64_t acc = bias[oc];
            for (int ky = 0; ky < g.kernel_h; ++ky)
              for (int kx = 0; kx < g.kernel_w; ++kx) {
                const int iy = oy * g.stride_h - pad_top + ky * g.dilation_h;
                const int ix = ox * g.stride_w - pad_left + kx * g.dilation_w;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                const int x = input[((static_cast<size_t>(b) * h + iy) * w + ix) * in_c + oc / mult];
                const int f = filter[(static_cast<size_t>(ky) * g.kernel_w + kx) * out_c + oc];
                acc += static_cast<int64_t>(f) * (x - in_zp);
              }
            const double real = static_cast<double>(in_scale) *
                                static_cast<double>(filter_scales[per_channel ? oc : 0]) /
                                static_cast<double>(out_scale);
            want[((static_cast<size_t>(b) * out_h + oy) * out_w + ox) * out_c + oc] =
                Requantize(acc, real, out_zp, lo, hi);
          }
    Case c{"DEPTHWISE_CONV_2D", {0}};
    snprintf(c.detail, sizeof(c.detail), "%dx%dx%dx%d k%dx%d s%d d%d %s x%d zp %d/%d", batches,
             h, w, in_c, g.kernel_h, g.kernel_w, g.stride_h, g.dilation_h,
             g.same_padding ? "same" : "valid", mult, in_zp, out_zp);
    RunEverywhere(c, kernel, input, in_shape, want);
  }
}

void TestFullyConnected(int trials) {
  for (int trial = 0; trial < trials; ++trial) {
    const int batches = Uniform(1, 5), depth = Pick({1, 3, 4, 7, 64, 100, 257}),
              out = Pick({1, 2, 10, 32, 33, 100});
    const int32_t in_zp = ZeroPoint(), out_zp = ZeroPoint();
    const float in_scale = LogUniform(1e-3f, 1.0f), out_scale = LogUniform(1e-3f, 1.0f);
    const bool per_channel = Uniform(0, 1);
    std::vector<float> filter_scales(per_channel ? out : 1);
    for (auto& s : filter_scales) s = LogUniform(1e-4f, 0.05f);
    const Activation act = AnyActivation();
    const std::vector<int8_t> filter = Bytes(static_cast<size_t>(out) * depth, -127);
    std::vector<int32_t> bias(out);
    for (auto& b : bias) b = Uniform(-50000, 50000);
    const std::vector<int8_t> input = Bytes(static_cast<size_t>(batches) * depth);
    FullyConnected kernel(filter.data(), out, depth, bias.data(), in_scale, in_zp,
                          filter_scales.data(), static_cast<int>(filter_scales.size()), out_scale,
                          out_zp, act, FcRequant::kFixedPoint);
    if (Uniform(0, 1)) kernel.KeepPackedWeights();  // or packed at each run
    int lo, hi;
    ActivationRange(act, out_scale, out_zp, &lo, &hi);
    std::vector<int8_t> want(static_cast<size_t>(batches) * out);
    for (int b = 0; b < batches; ++b)
      for (int o = 0; o < out; ++o) {
        int64_t acc = bias[o];
        for (int k = 0; k < depth; ++k) {
          acc += static_cast<int64_t>(filter[static_cast<size_t>(o) * depth + k]) *
                 (input[static_cast<size_t>(b) * depth + k] - in_zp);
        }
        // Per-tensor: TFLite forms the scale product in float first.
        const double real = per_channel
            ? static_cast<double>(in_scale) * static_cast<double>(filter_scales[o]) / static_cast<double>(out_scale)
            : static_cast<double>(in_scale * filter_scales[0]) / static_cast<double>(out_scale);
        want[static_cast<size_t>(b) * out + o] = Requantize(acc, real, out_zp, lo, hi);
      }
    Case c{"FULLY_CONNECTED", {0}};
    snprintf(c.detail, sizeof(c.detail), "batches %d depth %d out %d zp %d/%d", batches, depth,
             out, in_zp, out_zp);
    for (const Runner& r : runners) {
      if (r.threads > 1) continue;  // FULLY_CONNECTED runs on the caller's thread
      std::vector<int8_t> got(want.size(), 0x55);
      Workspace ws;
      ws.Reserve(kernel.Scratch(batches), 1);
      kernel.Run(*r.ops, ws, input.data(), batches, got.data());
      Compare(c, r.ops->name, r.threads, want, got);
    }
  }
}

// ADD (broadcasting), MAX_POOL_2D and QUANTIZE: every runner against the scalar ISA on one
// thread (their arithmetic is the scalar table's, which tests/isa_test.cc pins down).
void TestAgainstScalar(int trials) {
  const isa::Ops& scalar = *isa::Scalar();
  for (int trial = 0; trial < trials; ++trial) {
    const int s[4] = {Uniform(1, 2), Uniform(1, 9), Uniform(1, 9), Pick({1, 3, 31, 32, 33, 70})};
    int bs[4] = {s[0], s[1], s[2], s[3]};
    for (int d = 0; d < 4; ++d) if (Uniform(0, 3) == 0) bs[d] = 1;
    const size_t n = static_cast<size_t>(s[0]) * s[1] * s[2] * s[3];
    const size_t bn = static_cast<size_t>(bs[0]) * bs[1] * bs[2] * bs[3];
    const std::vector<int8_t> a = Bytes(n), b = Bytes(bn);
    const AddParams add = MakeAddParams({LogUniform(1e-3f, 1.f), ZeroPoint()},
                                        {LogUniform(1e-3f, 1.f), ZeroPoint()},
                                        {LogUniform(1e-3f, 1.f), ZeroPoint()}, AnyActivation());
    std::vector<int8_t> want(n);
    Add(scalar, nullptr, add, a.data(), s, b.data(), bs, want.data(), s);
    Case c{"ADD", {0}};
    snprintf(c.detail, sizeof(c.detail), "%dx%dx%dx%d + %dx%dx%dx%d", s[0], s[1], s[2], s[3],
             bs[0], bs[1], bs[2], bs[3]);
    for (const Runner& r : runners) {
      std::vector<int8_t> got(n, 0x55);
      Add(*r.ops, r.pool, add, a.data(), s, b.data(), bs, got.data(), s);
      Compare(c, r.ops->name, r.threads, want, got);
    }
    PoolParams pool{Pick({1, 2, 3}), Pick({1, 2, 3}), Uniform(1, 2), Uniform(1, 2),
                    static_cast<bool>(Uniform(0, 1)), Pick({-128, -60}), Pick({127, 90})};
    int o[4];
    PoolOutputShape(pool, s, o);
    if (o[1] > 0 && o[2] > 0) {
      std::vector<int8_t> pool_want(static_cast<size_t>(o[0]) * o[1] * o[2] * o[3]);
      MaxPool(scalar, pool, a.data(), s, pool_want.data());
      Case p{"MAX_POOL_2D", {0}};
      snprintf(p.detail, sizeof(p.detail), "%dx%dx%dx%d f%dx%d s%dx%d", s[0], s[1], s[2], s[3],
               pool.filter_h, pool.filter_w, pool.stride_h, pool.stride_w);
      for (const Runner& r : runners) {
        std::vector<int8_t> got(pool_want.size(), 0x55);
        MaxPool(*r.ops, pool, a.data(), s, got.data());
        Compare(p, r.ops->name, r.threads, pool_want, got);
      }
    }
    std::vector<float> floats(n);
    for (auto& f : floats) f = std::uniform_real_distribution<float>(-300.f, 300.f)(rng);
    if (n > 2) floats[1] = NAN;
    const QuantParams qp{LogUniform(1e-2f, 2.f), ZeroPoint()};
    std::vector<int8_t> q_want(n);
    Quantize(scalar, qp, floats.data(), static_cast<int>(n), q_want.data());
    Case q{"QUANTIZE", {0}};
    snprintf(q.detail, sizeof(q.detail), "%zu values", n);
    for (const Runner& r : runners) {
      std::vector<int8_t> got(n, 0x55);
      Quantize(*r.ops, qp, floats.data(), static_cast<int>(n), got.data());
      Compare(q, r.ops->name, r.threads, q_want, got);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int trials = argc > 1 ? atoi(argv[1]) : 200;
  ThreadPool pool(2);
  for (int i = 0; i < isa::IsaCount(); ++i) {
    const isa::IsaEntry& entry = isa::IsaAt(i);
    if (!isa::Runnable(entry)) continue;
    runners.push_back({entry.table(), nullptr, 1});
    runners.push_back({entry.table(), &pool, 2});
    printf("testing %s (1 and 2 threads)\n", entry.name);
  }
  TestConv(trials);
  TestDepthwise(trials);
  TestFullyConnected(trials);
  TestAgainstScalar(trials);
  if (failures) {
    printf("%d FAILURES\n", failures);
    return 1;
  }
  printf("OK (%zu runners, %d trials per kernel)\n", runners.size(), trials);
  return 0;
}
