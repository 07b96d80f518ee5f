// CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED on the emulated ISA.
#include <math.h>
#include <string.h>

#include <algorithm>

#include "isa/fixed_point.h"
#include "kernels/kernels.h"

namespace tfq::kernels {
namespace {

using isa::VecI16;
using isa::VecI32;
using isa::VecI8;

int RoundUp(int x, int m) { return (x + m - 1) / m * m; }

Requant MakeRequant(int channels, const double* real_multipliers, int32_t output_zero_point,
                    float output_scale, Activation act) {
  Requant rq;
  const int padded = RoundUp(std::max(channels, 1), 32);
  rq.multiplier.assign(padded, 0);
  rq.left_shift.assign(padded, 0);
  rq.right_shift.assign(padded, 0);
  for (int c = 0; c < channels; ++c) {
    int32_t m;
    int shift;
    QuantizeMultiplier(real_multipliers[c], &m, &shift);
    rq.multiplier[c] = m;
    rq.left_shift[c] = shift > 0 ? shift : 0;
    rq.right_shift[c] = shift > 0 ? 0 : -shift;
  }
  rq.output_zero_point = output_zero_point;
  ActivationRange(act, output_scale, output_zero_point, &rq.act_min, &rq.act_max);
  return rq;
}

}  // namespace

void RequantizeStore(const isa::Ops& ops, const VecI32& acc, const Requant& rq, int block, int n,
                     int8_t* out) {
  VecI32 x = acc, t;
  isa::LoadW(&t, &rq.left_shift[block * 32]);
  ops.shl_w(&x, &x, &t);
  isa::LoadW(&t, &rq.multiplier[block * 32]);
  ops.srdhm_w(&x, &x, &t);
  isa::LoadW(&t, &rq.right_shift[block * 32]);
  ops.rdbpot_w(&x, &x, &t);
  isa::SplatW(&t, rq.output_zero_point);
  ops.add_w(&x, &x, &t);
  isa::SplatW(&t, rq.act_min);
  ops.max_w(&x, &x, &t);
  isa::SplatW(&t, rq.act_max);
  ops.min_w(&x, &x, &t);
  VecI16 h;
  ops.pack_w_h_sat(&h, &x, &x);
  VecI8 b;
  ops.pack_h_b_sat(&b, &h, &h);
  isa::StorePartialB(out, b, n);
}

// ---- PackedGemm ---------------------------------------------------------------------------------

PackedGemm::PackedGemm(const int8_t* filter, int out, int depth, const int32_t* bias,
                       int32_t input_zero_point)
    : out_(out), depth_(depth), groups_((depth + 3) / 4), blocks_((out + 31) / 32) {
  packed_.resize(static_cast<size_t>(blocks_) * groups_);
  memset(packed_.data(), 0, packed_.size() * sizeof(VecI8));
  bias_.resize(blocks_);
  for (int c = 0; c < blocks_ * 32; ++c) {
    const int blk = c / 32, lane = c % 32;
    int32_t sum = 0;
    if (c < out) {
      for (int k = 0; k < depth; ++k) {
        const int8_t w = filter[static_cast<size_t>(c) * depth + k];
        packed_[static_cast<size_t>(blk) * groups_ + k / 4].b[4 * lane + k % 4] = w;
        sum += w;
      }
    }
    const int32_t b = (c < out && bias) ? bias[c] : 0;
    bias_[blk].w[lane] = fp::WrapSub(b, fp::WrapMul(128 + input_zero_point, sum));
  }
}

void PackedGemm::RowTimesWeights(const isa::Ops& ops, const uint8_t* row, const Requant& rq,
                                 int8_t* out_row) const {
  for (int blk = 0; blk < blocks_; ++blk) {
    VecI32 acc = bias_[blk];
    ops.vrmpy_splat_acc_n(&acc, row, &packed_[static_cast<size_t>(blk) * groups_], groups_);
    RequantizeStore(ops, acc, rq, blk, std::min(32, out_ - blk * 32), out_row + blk * 32);
  }
}

void PackedGemm::RowAccumulators(const isa::Ops& ops, const uint8_t* row, int32_t* acc_out) const {
  for (int blk = 0; blk < blocks_; ++blk) {
    VecI32 acc = bias_[blk];
    ops.vrmpy_splat_acc_n(&acc, row, &packed_[static_cast<size_t>(blk) * groups_], groups_);
    memcpy(acc_out + blk * 32, acc.w, sizeof(int32_t) * std::min(32, out_ - blk * 32));
  }
}

// ---- CONV_2D ------------------------------------------------------------------------------------

Conv2D::Conv2D(const int8_t* filter, int out_channels, int in_channels, const ConvGeometry& g,
               const int32_t* bias, float input_scale, int32_t input_zero_point,
               const float* filter_scales, int num_scales, float output_scale,
               int32_t output_zero_point, Activation act)
    : out_channels_(out_channels),
      in_channels_(in_channels),
      g_(g),
      input_zero_point_(input_zero_point),
      gemm_(filter, out_channels, g.kernel_h * g.kernel_w * in_channels, bias, input_zero_point) {
  std::vector<double> real(out_channels);
  for (int c = 0; c < out_channels; ++c) {
    const double fs = static_cast<double>(filter_scales[num_scales == 1 ? 0 : c]);
    real[c] = static_cast<double>(input_scale) * fs / static_cast<double>(output_scale);
  }
  rq_ = MakeRequant(out_channels, real.data(), output_zero_point, output_scale, act);
}

void Conv2D::OutputShape(const int in[4], int out[4]) const {
  out[0] = in[0];
  out[1] = OutputSize(g_.same_padding, in[1], g_.kernel_h, g_.stride_h, g_.dilation_h);
  out[2] = OutputSize(g_.same_padding, in[2], g_.kernel_w, g_.stride_w, g_.dilation_w);
  out[3] = out_channels_;
}

namespace {

// The input as u8 (x + 128) with the padding (and any row/column the filter window can reach
// beyond the image) filled with the input zero point, plus a few bytes of slack so that reads of
// a whole number of 4-byte groups stay inside the buffer.
struct PaddedInput {
  std::vector<uint8_t> data;
  int hp, wp, pad_top, pad_left;
};

PaddedInput PadInputU8(const int8_t* in, const int s[4], int out_h, int out_w,
                       const ConvGeometry& g, int32_t zero_point) {
  PaddedInput p;
  p.pad_top = PaddingBefore(s[1], g.kernel_h, g.stride_h, g.dilation_h, out_h);
  p.pad_left = PaddingBefore(s[2], g.kernel_w, g.stride_w, g.dilation_w, out_w);
  const int need_h = (out_h - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h + 1;
  const int need_w = (out_w - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w + 1;
  p.hp = std::max(need_h, p.pad_top + s[1]);
  p.wp = std::max(need_w, p.pad_left + s[2]);
  const int c = s[3];
  p.data.assign(static_cast<size_t>(s[0]) * p.hp * p.wp * c + 64,
                static_cast<uint8_t>(zero_point + 128));
  for (int n = 0; n < s[0]; ++n) {
    for (int y = 0; y < s[1]; ++y) {
      const int8_t* src = in + ((static_cast<size_t>(n) * s[1] + y) * s[2]) * c;
      uint8_t* dst = &p.data[((static_cast<size_t>(n) * p.hp + y + p.pad_top) * p.wp + p.pad_left) * c];
      for (int i = 0; i < s[2] * c; ++i) dst[i] = static_cast<uint8_t>(src[i] ^ 0x80);
    }
  }
  return p;
}

}  // namespace

void Conv2D::Run(const isa::Ops& ops, const int8_t* input, const int s[4], int8_t* output) const {
  int o[4];
  OutputShape(s, o);
  if (o[1] <= 0 || o[2] <= 0) return;
  const PaddedInput p = PadInputU8(input, s, o[1], o[2], g_, input_zero_point_);
  const int c = in_channels_;
  const bool pointwise = g_.kernel_h == 1 && g_.kernel_w == 1;
  std::vector<uint8_t> row(gemm_.padded_depth() + 64, 0);
  for (int n = 0; n < o[0]; ++n) {
    for (int oy = 0; oy < o[1]; ++oy) {
      for (int ox = 0; ox < o[2]; ++ox) {
        int8_t* out = output + ((static_cast<size_t>(n) * o[1] + oy) * o[2] + ox) * out_channels_;
        const size_t base = static_cast<size_t>(n) * p.hp;
        if (pointwise) {
          const uint8_t* src =
              &p.data[((base + oy * g_.stride_h) * p.wp + ox * g_.stride_w) * c];
          gemm_.RowTimesWeights(ops, src, rq_, out);
          continue;
        }
        uint8_t* dst = row.data();
        for (int ky = 0; ky < g_.kernel_h; ++ky) {
          const int y = oy * g_.stride_h + ky * g_.dilation_h;
          for (int kx = 0; kx < g_.kernel_w; ++kx) {
            const int x = ox * g_.stride_w + kx * g_.dilation_w;
            memcpy(dst, &p.data[((base + y) * p.wp + x) * c], c);
            dst += c;
          }
        }
        gemm_.RowTimesWeights(ops, row.data(), rq_, out);
      }
    }
  }
}

// ---- DEPTHWISE_CONV_2D --------------------------------------------------------------------------

DepthwiseConv2D::DepthwiseConv2D(const int8_t* filter, int in_channels, int multiplier,
                                 const ConvGeometry& g, const int32_t* bias, float input_scale,
                                 int32_t input_zero_point, const float* filter_scales,
                                 int num_scales, float output_scale, int32_t output_zero_point,
                                 Activation act)
    : in_channels_(in_channels),
      multiplier_(multiplier),
      out_channels_(in_channels * multiplier),
      padded_channels_(RoundUp(in_channels * multiplier, 32)),
      g_(g),
      input_zero_point_(input_zero_point) {
  const int taps = g.kernel_h * g.kernel_w;
  const int blocks = padded_channels_ / 32;
  weights_.resize(static_cast<size_t>(taps) * blocks);
  memset(weights_.data(), 0, weights_.size() * sizeof(VecI32));
  bias_.resize(blocks);
  for (int c = 0; c < padded_channels_; ++c) {
    int32_t sum = 0;
    for (int t = 0; t < taps && c < out_channels_; ++t) {
      const int8_t w = filter[static_cast<size_t>(t) * out_channels_ + c];
      weights_[static_cast<size_t>(t) * blocks + c / 32].w[c % 32] = w;
      sum += w;
    }
    const int32_t b = (c < out_channels_ && bias) ? bias[c] : 0;
    bias_[c / 32].w[c % 32] = fp::WrapSub(b, fp::WrapMul(input_zero_point, sum));
  }
  std::vector<double> real(out_channels_);
  for (int c = 0; c < out_channels_; ++c) {
    const double fs = static_cast<double>(filter_scales[num_scales == 1 ? 0 : c]);
    real[c] = static_cast<double>(input_scale) * fs / static_cast<double>(output_scale);
  }
  rq_ = MakeRequant(out_channels_, real.data(), output_zero_point, output_scale, act);
}

void DepthwiseConv2D::OutputShape(const int in[4], int out[4]) const {
  out[0] = in[0];
  out[1] = OutputSize(g_.same_padding, in[1], g_.kernel_h, g_.stride_h, g_.dilation_h);
  out[2] = OutputSize(g_.same_padding, in[2], g_.kernel_w, g_.stride_w, g_.dilation_w);
  out[3] = out_channels_;
}

void DepthwiseConv2D::Run(const isa::Ops& ops, const int8_t* input, const int s[4],
                          int8_t* output) const {
  int o[4];
  OutputShape(s, o);
  if (o[1] <= 0 || o[2] <= 0) return;
  const int pad_top = PaddingBefore(s[1], g_.kernel_h, g_.stride_h, g_.dilation_h, o[1]);
  const int pad_left = PaddingBefore(s[2], g_.kernel_w, g_.stride_w, g_.dilation_w, o[2]);
  const int hp = std::max((o[1] - 1) * g_.stride_h + (g_.kernel_h - 1) * g_.dilation_h + 1,
                          pad_top + s[1]);
  const int wp = std::max((o[2] - 1) * g_.stride_w + (g_.kernel_w - 1) * g_.dilation_w + 1,
                          pad_left + s[2]);
  const int cp = padded_channels_;
  // Zero-point-padded input with channels expanded to the output channels (c reads c / m).
  std::vector<int8_t> buf(static_cast<size_t>(s[0]) * hp * wp * cp,
                          static_cast<int8_t>(input_zero_point_));
  for (int n = 0; n < s[0]; ++n) {
    for (int y = 0; y < s[1]; ++y) {
      for (int x = 0; x < s[2]; ++x) {
        const int8_t* src = input + ((static_cast<size_t>(n) * s[1] + y) * s[2] + x) * in_channels_;
        int8_t* dst = &buf[((static_cast<size_t>(n) * hp + y + pad_top) * wp + x + pad_left) * cp];
        if (multiplier_ == 1) {
          memcpy(dst, src, in_channels_);
        } else {
          for (int c = 0; c < out_channels_; ++c) dst[c] = src[c / multiplier_];
        }
      }
    }
  }
  const int blocks = cp / 32;
  for (int n = 0; n < o[0]; ++n) {
    for (int oy = 0; oy < o[1]; ++oy) {
      for (int ox = 0; ox < o[2]; ++ox) {
        int8_t* out = output + ((static_cast<size_t>(n) * o[1] + oy) * o[2] + ox) * out_channels_;
        for (int blk = 0; blk < blocks; ++blk) {
          VecI32 acc = bias_[blk], x;
          int t = 0;
          for (int ky = 0; ky < g_.kernel_h; ++ky) {
            const int y = oy * g_.stride_h + ky * g_.dilation_h;
            for (int kx = 0; kx < g_.kernel_w; ++kx, ++t) {
              const int xx = ox * g_.stride_w + kx * g_.dilation_w;
              ops.unpack_b_w(&x, &buf[((static_cast<size_t>(n) * hp + y) * wp + xx) * cp + blk * 32]);
              ops.mac_w(&acc, &x, &weights_[static_cast<size_t>(t) * blocks + blk]);
            }
          }
          RequantizeStore(ops, acc, rq_, blk, std::min(32, out_channels_ - blk * 32),
                          out + blk * 32);
        }
      }
    }
  }
}

// ---- FULLY_CONNECTED ----------------------------------------------------------------------------

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

void FullyConnected::Run(const isa::Ops& ops, const int8_t* input, int batches,
                         int8_t* output) const {
  std::vector<uint8_t> row(gemm_.padded_depth() + 64, 0);
  std::vector<int32_t> acc(mode_ == FcRequant::kDouble ? out_ : 0);
  for (int b = 0; b < batches; ++b) {
    const int8_t* src = input + static_cast<size_t>(b) * depth_;
    for (int k = 0; k < depth_; ++k) row[k] = static_cast<uint8_t>(src[k] ^ 0x80);
    int8_t* dst = output + static_cast<size_t>(b) * out_;
    if (mode_ == FcRequant::kFixedPoint) {
      gemm_.RowTimesWeights(ops, row.data(), rq_, dst);
      continue;
    }
    gemm_.RowAccumulators(ops, row.data(), acc.data());
    for (int c = 0; c < out_; ++c) {
      const double v = round(static_cast<double>(acc[c]) * double_scale_[c]);
      const double clamped = std::min<double>(std::max<double>(v + output_zero_point_, act_min_),
                                              act_max_);
      dst[c] = static_cast<int8_t>(clamped);
    }
  }
}

}  // namespace tfq::kernels
