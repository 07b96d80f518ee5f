// FULLY_CONNECTED on the emulated ISA (the packed GEMM of conv.cc, one row per batch).
#include <math.h>
#include <string.h>

#include <algorithm>

#include "isa/fixed_point.h"
#include "kernels/conv_common.h"
#include "kernels/kernels.h"

namespace tfq::kernels {
namespace {

using isa::VecI32;
using isa::VecI8;
using namespace detail;  // NOLINT: RoundUp, MakeRequant, ForEachChunk

}  // namespace

FullyConnected::FullyConnected(const int8_t* filter, int out, int depth, const int32_t* bias,
                               float input_scale, int32_t input_zero_point,
                               const float* filter_scales, int num_scales, float output_scale,
                               int32_t output_zero_point, Activation act, FcRequant mode)
    : out_(out),
      depth_(depth),
      input_zero_point_(input_zero_point),
      mode_(mode),
      gemm_(filter, out, depth, bias, input_zero_point),
      output_zero_point_(output_zero_point) {
  std::vector<double> real(out);
  for (int c = 0; c < out; ++c) {
    if (num_scales == 1) {
      // Per-tensor: the scale product is formed in float, then widened (TFLite
      // GetQuantizedConvolutionMultipler).
      const float product = input_scale * filter_scales[0];
      real[c] = static_cast<double>(product) / static_cast<double>(output_scale);
    } else {
      real[c] = static_cast<double>(input_scale) * static_cast<double>(filter_scales[c]) /
                static_cast<double>(output_scale);
    }
  }
  rq_ = MakeRequant(out, real.data(), output_zero_point, output_scale, act);
  ActivationRange(act, output_scale, output_zero_point, &act_min_, &act_max_);
  double_scale_ = real;
}

namespace {

// Bytes of shared scratch before the u8 row: every block packed, unless the gemm keeps them.
size_t PackedScratch(const PackedGemm& gemm) {
  return gemm.kept() ? 0 : Workspace::Align(gemm.PackedBytes());
}

}  // namespace

// Shared scratch: the packed blocks (PackedScratch), then the u8 row (padded depth + 64).
ScratchNeed FullyConnected::Scratch(int /*batches*/) const {
  return {PackedScratch(gemm_) + gemm_.padded_depth() + 64, 0};
}

void FullyConnected::Run(const isa::Ops& ops, const Workspace& ws, const int8_t* input,
                         int batches, int8_t* output) const {
  ws.Check(Scratch(batches));
  const VecI8* packed = gemm_.kept();
  if (!packed) {
    gemm_.PackAll(nullptr, reinterpret_cast<VecI8*>(ws.shared()));
    packed = reinterpret_cast<const VecI8*>(ws.shared());
  }
  uint8_t* const row = ws.shared() + PackedScratch(gemm_);
  memset(row + depth_, 0, gemm_.padded_depth() + 64 - depth_);
  for (int b = 0; b < batches; ++b) {
    const int8_t* src = input + static_cast<size_t>(b) * depth_;
    for (int k = 0; k < depth_; ++k) row[k] = static_cast<uint8_t>(src[k] ^ 0x80);
    int8_t* dst = output + static_cast<size_t>(b) * out_;
    if (mode_ == FcRequant::kFixedPoint) {
      ops.gemm_requant(gemm_.Args(packed, row, 0, 1, 0, gemm_.blocks(), rq_, dst, out_));
      continue;
    }
    // kDouble: the raw accumulators of each block of 32 channels, rescaled in double.
    for (int blk = 0; blk < gemm_.blocks(); ++blk) {
      int32_t acc[32];
      gemm_.BlockAccumulators(ops, packed, row, blk, acc);
      const int n = std::min(32, out_ - 32 * blk);
      for (int i = 0; i < n; ++i) {
        const int c = 32 * blk + i;
        const double v = round(static_cast<double>(acc[i]) * double_scale_[c]);
        const double clamped =
            std::min<double>(std::max<double>(v + output_zero_point_, act_min_), act_max_);
        dst[c] = static_cast<int8_t>(clamped);
      }
    }
  }
}

HvxCount FullyConnected::Count(int batches) const {
  HvxCount h;
  h.macs = static_cast<int64_t>(batches) * out_ * depth_;
  h.vrmpy = static_cast<int64_t>(batches) * gemm_.blocks() * gemm_.groups();
  h.vload = (batches + 3) / 4 * static_cast<int64_t>(gemm_.blocks()) * gemm_.groups();
  h += RequantCount(static_cast<int64_t>(batches) * gemm_.blocks());
  return h;
}

}  // namespace tfq::kernels
