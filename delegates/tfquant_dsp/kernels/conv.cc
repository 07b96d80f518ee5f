// CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED on the emulated ISA.
#include <math.h>
#include <string.h>

#include <algorithm>

#include "isa/fixed_point.h"
#include "kernels/kernels.h"

namespace tfq::kernels {
namespace {

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

void PackedGemm::RowAccumulators(const isa::Ops& ops, const uint8_t* row, int32_t* acc_out) const {
  for (int blk = 0; blk < blocks_; ++blk) {
    VecI32 acc = bias_[blk];
    ops.vrmpy_splat_acc_n(&acc, row, &packed_[static_cast<size_t>(blk) * groups_], groups_);
    memcpy(acc_out + blk * 32, acc.w, sizeof(int32_t) * std::min(32, out_ - blk * 32));
  }
}

// ---- CONV_2D ------------------------------------------------------------------------------------

namespace {

// Conv2D::RunLines for at most 4 input channels: an im2col row would be a few dozen bytes
// copied in pieces of kernel_w * channels per pixel, which costs more than the dot products;
// reading the lines in place costs only the padding of each kernel row to whole groups of 4
// (at most 3 zero weights per kernel row: 9 groups instead of 7 for 3x3x3).
bool UseLines(int in_channels, const ConvGeometry& g) {
  return in_channels <= 4 && g.dilation_w == 1 && g.kernel_h * g.kernel_w > 1;
}

// The GEMM of a Conv2D: depth kh * kw * c, or for RunLines kh runs of kw * c rounded up to 4
// (zero weights at the padding).
PackedGemm MakeConvGemm(const int8_t* filter, int out, int in, const ConvGeometry& g,
                        const int32_t* bias, int32_t input_zero_point) {
  const int depth = g.kernel_h * g.kernel_w * in;
  if (!UseLines(in, g)) return PackedGemm(filter, out, depth, bias, input_zero_point);
  const int seg = g.kernel_w * in, seg_padded = RoundUp(seg, 4);
  std::vector<int8_t> padded(static_cast<size_t>(out) * g.kernel_h * seg_padded, 0);
  for (int c = 0; c < out; ++c) {
    for (int ky = 0; ky < g.kernel_h; ++ky) {
      memcpy(&padded[(static_cast<size_t>(c) * g.kernel_h + ky) * seg_padded],
             filter + static_cast<size_t>(c) * depth + ky * seg, seg);
    }
  }
  return PackedGemm(padded.data(), out, g.kernel_h * seg_padded, bias, input_zero_point);
}

}  // namespace

Conv2D::Conv2D(const int8_t* filter, int out_channels, int in_channels, const ConvGeometry& g,
               const int32_t* bias, float input_scale, int32_t input_zero_point,
               const float* filter_scales, int num_scales, float output_scale,
               int32_t output_zero_point, Activation act)
    : out_channels_(out_channels),
      in_channels_(in_channels),
      g_(g),
      input_zero_point_(input_zero_point),
      lines_(UseLines(in_channels, g)),
      gemm_(MakeConvGemm(filter, out_channels, in_channels, g, bias, input_zero_point)) {
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

// dst[i] = src[i] + 128 as u8 (x ^ 0x80), 64 bytes at a time (GCC vectors: SSE2 on any x86-64),
// then 8.
void ToU8(const int8_t* src, int n, uint8_t* dst) {
  typedef uint8_t V16 __attribute__((vector_size(16)));
  int i = 0;
  for (; i + 64 <= n; i += 64) {
    V16 v[4];
    memcpy(v, src + i, 64);
    for (auto& x : v) x ^= 0x80;
    memcpy(dst + i, v, 64);
  }
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= 0x8080808080808080ull;
    memcpy(dst + i, &v, 8);
  }
  for (; i < n; ++i) dst[i] = static_cast<uint8_t>(src[i] ^ 0x80);
}

// memcpy for the short copies of an im2col row (a few channels x kernel_w taps), inline: two
// overlapping word copies instead of a library call.
inline void CopySmall(uint8_t* d, const uint8_t* s, size_t n) {
  if (n >= 16) {
    memcpy(d, s, n);
  } else if (n >= 8) {
    uint64_t a, b;
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
    memcpy(d, &a, 8);
    memcpy(d + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + n - 4, 4);
    memcpy(d, &a, 4);
    memcpy(d + n - 4, &b, 4);
  } else {
    for (size_t i = 0; i < n; ++i) d[i] = s[i];
  }
}

// Runs fn(i) for i in [0, n), split into at most `tasks` contiguous chunks over the pool.
template <typename F>
void ForEachChunk(ThreadPool* pool, int n, int tasks, F fn) {
  tasks = std::max(1, std::min(n, tasks));
  ParallelFor(pool, tasks, [&](int t) {
    const int begin = static_cast<int>(static_cast<int64_t>(n) * t / tasks);
    const int end = static_cast<int>(static_cast<int64_t>(n) * (t + 1) / tasks);
    for (int i = begin; i < end; ++i) fn(i);
  });
}

constexpr int kRowTile = 6;       // rows of the AVX-512 register tile
constexpr int kBlockChunk = 2;    // blocks of 32 channels per gemm_requant call

int TaskRows(int64_t rows, ThreadPool* pool) {
  // Enough tasks for every thread to get a few (dynamic balance on shared cores), each a
  // multiple of the register tile, at most 48 rows (its u8 rows stay in L1/L2).
  const int threads = pool ? pool->threads() : 1;
  int64_t t = (rows + 3 * threads - 1) / (3 * threads);
  t = (t + kRowTile - 1) / kRowTile * kRowTile;
  return static_cast<int>(std::max<int64_t>(kRowTile, std::min<int64_t>(48, t)));
}

}  // namespace

isa::GemmArgs PackedGemm::Args(const uint8_t* a, ptrdiff_t a_stride, int rows, int blk0,
                               int blocks, const Requant& rq, int8_t* out,
                               ptrdiff_t out_stride) const {
  isa::GemmArgs g;
  g.a = a;
  g.a_stride = a_stride;
  g.rows = rows;
  g.groups = groups_;
  g.w = &packed_[static_cast<size_t>(blk0) * groups_];
  g.bias = &bias_[blk0];
  g.blocks = blocks;
  g.channels = out_ - 32 * blk0;
  g.rq = {&rq.multiplier[32 * blk0], &rq.left_shift[32 * blk0], &rq.right_shift[32 * blk0],
          rq.output_zero_point, rq.act_min, rq.act_max, rq.output_xor};
  g.out = out + 32 * blk0;
  g.out_stride = out_stride;
  return g;
}

void Conv2D::Run(const isa::Ops& ops, ThreadPool* pool, const int8_t* input, const int s[4],
                 int8_t* output) const {
  int o[4];
  OutputShape(s, o);
  if (o[1] <= 0 || o[2] <= 0) return;
  const int c = in_channels_;
  const int kp = gemm_.padded_depth();
  const int64_t rows = static_cast<int64_t>(o[0]) * o[1] * o[2];
  const int pad_top = PaddingBefore(s[1], g_.kernel_h, g_.stride_h, g_.dilation_h, o[1]);
  const int pad_left = PaddingBefore(s[2], g_.kernel_w, g_.stride_w, g_.dilation_w, o[2]);
  const uint8_t pad_value = static_cast<uint8_t>(input_zero_point_ + 128);
  if (lines_) {
    RunLines(ops, pool, input, s, o, pad_top, pad_left, output);
    return;
  }
  const bool pointwise = g_.kernel_h == 1 && g_.kernel_w == 1 && g_.stride_h == 1 &&
                         g_.stride_w == 1 && pad_top == 0 && pad_left == 0;
  // Width of the zero-point-padded input line the taps of one output row read.
  const int wp = std::max((o[2] - 1) * g_.stride_w + (g_.kernel_w - 1) * g_.dilation_w + 1,
                          pad_left + s[2]);
  // A biased input (SetInputBiased) already holds the u8 rows of a pointwise convolution.
  const bool in_place = input_biased_ && pointwise && kp == c;
  auto to_u8 = [&](const int8_t* src, int n, uint8_t* dst) {
    if (input_biased_) {
      memcpy(dst, src, n);
    } else {
      ToU8(src, n, dst);
    }
  };
  if (!in_place && a_.size() < static_cast<size_t>(rows) * kp + 64) {
    a_.resize(static_cast<size_t>(rows) * kp + 64);
  }
  // Locals, not members: the byte stores below may alias anything, members would be reloaded.
  const int kh = g_.kernel_h, kw = g_.kernel_w, sh = g_.stride_h, sw = g_.stride_w;
  const int dh = g_.dilation_h, dw = g_.dilation_w;
  const int seg = kw * c;  // bytes per kernel row
  uint8_t* const a_base = a_.data();
  const int task_rows = TaskRows(rows, pool);
  const int tasks = static_cast<int>((rows + task_rows - 1) / task_rows);
  ParallelFor(pool, tasks, [&](int task) {
    const int64_t r0 = static_cast<int64_t>(task) * task_rows;
    const int n_rows = static_cast<int>(std::min<int64_t>(task_rows, rows - r0));
    // im2col of these rows as u8: out-of-image taps hold the input zero point. For a general
    // convolution the kernel_h input rows of an output row are converted into `lines` (zero-point
    // padded left and right), then each output pixel copies its kernel_w taps of each (one copy
    // when not dilated). Short taps (kernel_w * channels <= 16) are copied 16 bytes at a time,
    // pixel by pixel: the overrun lands on this row's later taps or the next pixel's, written
    // afterwards, or on the depth padding, whose weights are zero (any byte there contributes
    // nothing). The task's last pixels, whose overrun could reach past its rows (another
    // task's), copy exactly.
    const size_t line_size = static_cast<size_t>(wp) * c + 16;
    std::vector<uint8_t> lines;
    if (!pointwise) lines.assign(line_size * kh, pad_value);
    int64_t r = r0;
    if (in_place) {
      r = r0 + n_rows;
    } else if (pointwise && kp == c) {  // the rows are contiguous on both sides: one pass
      to_u8(input + static_cast<size_t>(r0) * c, n_rows * c, a_base + r0 * kp);
      r = r0 + n_rows;
    }
    const bool short_taps = dw == 1 && seg <= 16;
    const int overrun = (kh - 1) * seg + 16 - kp;  // bytes past its row a pixel's copies write
    const int exact_tail = short_taps ? std::max(1, (overrun + kp - 1) / kp) : 0;
    while (r < r0 + n_rows) {
      if (pointwise) {
        uint8_t* dst = a_base + r * kp;
        to_u8(input + static_cast<size_t>(r) * c, c, dst);
        memset(dst + c, 0, kp - c);
        ++r;
        continue;
      }
      // The run of pixels of this task on output row (n, oy).
      const int ox0 = static_cast<int>(r % o[2]);
      const int oy = static_cast<int>((r / o[2]) % o[1]);
      const int n = static_cast<int>(r / (static_cast<int64_t>(o[2]) * o[1]));
      const int ox1 = static_cast<int>(std::min<int64_t>(o[2], ox0 + (r0 + n_rows - r)));
      for (int ky = 0; ky < kh; ++ky) {
        const int y = oy * sh - pad_top + ky * dh;
        uint8_t* line = lines.data() + ky * line_size;
        if (y >= 0 && y < s[1]) {
          to_u8(input + ((static_cast<size_t>(n) * s[1] + y) * s[2]) * c, s[2] * c,
                line + static_cast<size_t>(pad_left) * c);
        } else {
          memset(line, pad_value, line_size);
        }
      }
      // Copies in registers: the lambda reaches the outer locals through its closure, which
      // the byte stores may alias (every value would be reloaded after every store).
      const int n_kh = kh, n_kw = kw, n_seg = seg, n_kp = kp, n_c = c, n_dw = dw;
      const size_t pixel_step = static_cast<size_t>(sw) * c;
      const int64_t exact_from = short_taps ? r0 + n_rows - exact_tail - r + ox0 : ox0;
      const uint8_t* const lines_base = lines.data();
      uint8_t* d = a_base + r * kp;
      for (int ox = ox0; ox < ox1; ++ox, d += n_kp) {
        const uint8_t* src = lines_base + ox * pixel_step;
        const bool exact = ox >= exact_from;
        for (int ky = 0; ky < n_kh; ++ky, src += line_size) {
          if (!exact) {
            memcpy(d + ky * n_seg, src, 16);
          } else if (n_dw == 1) {
            CopySmall(d + ky * n_seg, src, n_seg);
          } else {
            for (int kx = 0; kx < n_kw; ++kx) {
              memcpy(d + ky * n_seg + kx * n_c, src + static_cast<size_t>(kx) * n_dw * n_c, n_c);
            }
          }
        }
        if (exact) memset(d + n_seg * n_kh, 0, n_kp - n_seg * n_kh);  // at most 3 bytes
      }
      r += ox1 - ox0;
    }
    const uint8_t* a = in_place ? reinterpret_cast<const uint8_t*>(input) + r0 * kp
                                : a_base + r0 * kp;
    int8_t* out = output + static_cast<size_t>(r0) * out_channels_;
    for (int blk = 0; blk < gemm_.blocks(); blk += kBlockChunk) {
      const int nb = std::min(kBlockChunk, gemm_.blocks() - blk);
      ops.gemm_requant(gemm_.Args(a, kp, n_rows, blk, nb, rq_, out, out_channels_));
    }
  });
}

void Conv2D::RunLines(const isa::Ops& ops, ThreadPool* pool, const int8_t* input,
                      const int s[4], const int o[4], int pad_top, int pad_left,
                      int8_t* output) const {
  const int c = in_channels_;
  const int hp = std::max((o[1] - 1) * g_.stride_h + (g_.kernel_h - 1) * g_.dilation_h + 1,
                          pad_top + s[1]);
  const int wp = std::max((o[2] - 1) * g_.stride_w + g_.kernel_w, pad_left + s[2]);
  // A kernel row's last group reads up to 3 bytes past the line's last tap: the next line's
  // start or the slack (their weights are zero).
  const size_t line = static_cast<size_t>(wp) * c + 16;
  const size_t size = static_cast<size_t>(s[0]) * hp * line;
  if (a_.size() < size) a_.resize(size);
  const uint8_t pad_value = static_cast<uint8_t>(input_zero_point_ + 128);
  const int threads = pool ? pool->threads() : 1;
  uint8_t* const lines = a_.data();
  ForEachChunk(pool, s[0] * hp, 3 * threads, [&](int i) {
    const int n = i / hp, y = i % hp - pad_top;
    uint8_t* dst = lines + i * line;
    if (y < 0 || y >= s[1]) {
      memset(dst, pad_value, line);
      return;
    }
    const size_t left = static_cast<size_t>(pad_left) * c, row = static_cast<size_t>(s[2]) * c;
    memset(dst, pad_value, left);
    const int8_t* src = input + (static_cast<size_t>(n) * s[1] + y) * row;
    if (input_biased_) {
      memcpy(dst + left, src, row);
    } else {
      ToU8(src, static_cast<int>(row), dst + left);
    }
    memset(dst + left + row, pad_value, line - left - row);
  });
  const int rows = s[0] * o[1];
  ForEachChunk(pool, rows, 3 * threads, [&](int i) {
    const int n = i / o[1], oy = i % o[1];
    int8_t* out = output + static_cast<size_t>(i) * o[2] * out_channels_;
    const uint8_t* a = lines + (static_cast<size_t>(n) * hp + oy * g_.stride_h) * line;
    for (int blk = 0; blk < gemm_.blocks(); blk += kBlockChunk) {
      const int nb = std::min(kBlockChunk, gemm_.blocks() - blk);
      isa::GemmArgs args = gemm_.Args(a, static_cast<ptrdiff_t>(g_.stride_w) * c, o[2], blk, nb,
                                      rq_, out, out_channels_);
      args.segments = g_.kernel_h;
      args.segment_stride = static_cast<ptrdiff_t>(g_.dilation_h) * line;
      ops.gemm_requant(args);
    }
  });
}

HvxCount Conv2D::Count(const int s[4]) const {
  int o[4];
  OutputShape(s, o);
  HvxCount h;
  const int64_t rows = static_cast<int64_t>(o[0]) * o[1] * o[2];
  const int64_t k = static_cast<int64_t>(g_.kernel_h) * g_.kernel_w * in_channels_;
  h.macs = rows * out_channels_ * k;
  // im2col: one load, one XOR (none for a biased input) and one store per 128 bytes of u8
  // rows; a pointwise convolution of a biased input reads it in place.
  const bool pointwise = g_.kernel_h == 1 && g_.kernel_w == 1 && g_.stride_h == 1 &&
                         g_.stride_w == 1 && o[1] == s[1] && o[2] == s[2];
  if (lines_) {  // RunLines: one pass over the input
    const int64_t vectors = (static_cast<int64_t>(s[0]) * s[1] * s[2] * in_channels_ + 127) / 128;
    h.vload += vectors; h.vstore += vectors;
    if (!input_biased_) h.valu += vectors;
  } else if (!(input_biased_ && pointwise && gemm_.padded_depth() == in_channels_)) {
    const int64_t a_vectors = (rows * gemm_.padded_depth() + 127) / 128;
    h.vload += a_vectors; h.vstore += a_vectors;
    if (!input_biased_) h.valu += a_vectors;
  }
  // vrmpy (vector x scalar) per row, block and group of 4 depth values; a weight vector is
  // loaded once per 4 rows (register blocking over rows).
  h.vrmpy = rows * gemm_.blocks() * gemm_.groups();
  h.vload += (rows + 3) / 4 * gemm_.blocks() * gemm_.groups();
  h += RequantCount(rows * gemm_.blocks());
  if (rq_.output_xor) h.valu += (rows * gemm_.blocks() + 3) / 4;  // one XOR per 128 bytes
  return h;
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
  out[1] = OutputSize(g_.same_padding, in[1] + input_pad_[0] + input_pad_[1], g_.kernel_h,
                      g_.stride_h, g_.dilation_h);
  out[2] = OutputSize(g_.same_padding, in[2] + input_pad_[2] + input_pad_[3], g_.kernel_w,
                      g_.stride_w, g_.dilation_w);
  out[3] = out_channels_;
}

void DepthwiseConv2D::Run(const isa::Ops& ops, ThreadPool* pool, const int8_t* input,
                          const int s[4], int8_t* output) const {
  int o[4];
  OutputShape(s, o);
  if (o[1] <= 0 || o[2] <= 0) return;
  // Rows / columns of zero point before the input: a fused PAD's, then the op's own.
  const int pad_top = input_pad_[0] + PaddingBefore(s[1] + input_pad_[0] + input_pad_[1],
                                                    g_.kernel_h, g_.stride_h, g_.dilation_h, o[1]);
  const int pad_left = input_pad_[2] + PaddingBefore(s[2] + input_pad_[2] + input_pad_[3],
                                                     g_.kernel_w, g_.stride_w, g_.dilation_w, o[2]);
  const int hp = std::max((o[1] - 1) * g_.stride_h + (g_.kernel_h - 1) * g_.dilation_h + 1,
                          pad_top + s[1]);
  const int wp = std::max((o[2] - 1) * g_.stride_w + (g_.kernel_w - 1) * g_.dilation_w + 1,
                          pad_left + s[2]);
  // In place unless the image is small and not strided: then the border windows (each copied
  // and run through the generic taps) are a large share of the pixels, and one padded copy of
  // the input (about the output's size at stride 1) is cheaper (measured on MobileNet's
  // 14x14 and 7x7 layers: 30-50% faster; at stride 2 the copy is four times the output).
  const bool small = g_.stride_h == 1 && g_.stride_w == 1 && o[1] * o[2] <= 32 * 32;
  if (multiplier_ == 1 && padded_channels_ == in_channels_ && !small) {
    RunUnpadded(ops, pool, input, s, o, pad_top, pad_left, output);
    return;
  }
  const int cp = padded_channels_;
  // Zero-point-padded input with channels expanded to the output channels (c reads c / m),
  // 64 bytes of slack for the last vector loads.
  const size_t size = static_cast<size_t>(s[0]) * hp * wp * cp + 64;
  if (buf_.size() < size) buf_.resize(size);
  const int8_t zp = static_cast<int8_t>(input_zero_point_);
  const bool direct_rows = multiplier_ == 1 && cp == in_channels_;
  const int threads = pool ? pool->threads() : 1;
  ForEachChunk(pool, s[0] * hp, 3 * threads, [&](int row) {
    const int n = row / hp, yp = row % hp, y = yp - pad_top;
    int8_t* dst = &buf_[(static_cast<size_t>(row) * wp) * cp];
    if (y < 0 || y >= s[1]) {
      memset(dst, zp, static_cast<size_t>(wp) * cp);
      return;
    }
    const int8_t* src = input + ((static_cast<size_t>(n) * s[1] + y) * s[2]) * in_channels_;
    memset(dst, zp, static_cast<size_t>(pad_left) * cp);
    if (direct_rows) {
      memcpy(dst + static_cast<size_t>(pad_left) * cp, src, static_cast<size_t>(s[2]) * cp);
    } else {
      for (int x = 0; x < s[2]; ++x) {
        int8_t* d = dst + static_cast<size_t>(x + pad_left) * cp;
        const int8_t* p = src + static_cast<size_t>(x) * in_channels_;
        if (multiplier_ == 1) {
          memcpy(d, p, in_channels_);
        } else {
          for (int c = 0; c < out_channels_; ++c) d[c] = p[c / multiplier_];
        }
        memset(d + out_channels_, zp, cp - out_channels_);
      }
    }
    const int right = wp - pad_left - s[2];
    memset(dst + static_cast<size_t>(pad_left + s[2]) * cp, zp, static_cast<size_t>(right) * cp);
  });
  isa::DepthwiseArgs d;
  d.pixel_stride = static_cast<ptrdiff_t>(g_.stride_w) * cp;
  d.tap_dy = static_cast<ptrdiff_t>(g_.dilation_h) * wp * cp;
  d.tap_dx = static_cast<ptrdiff_t>(g_.dilation_w) * cp;
  d.kernel_h = g_.kernel_h;
  d.kernel_w = g_.kernel_w;
  d.pixels = o[2];
  d.w = weights_.data();
  d.bias = bias_.data();
  d.blocks = cp / 32;
  d.channels = out_channels_;
  d.rq = {rq_.multiplier.data(), rq_.left_shift.data(), rq_.right_shift.data(),
          rq_.output_zero_point, rq_.act_min, rq_.act_max, rq_.output_xor};
  d.out_stride = out_channels_;
  d.in_row_stride = static_cast<ptrdiff_t>(g_.stride_h) * wp * cp;
  d.out_row_stride = static_cast<ptrdiff_t>(o[2]) * out_channels_;
  // One call per task and image: the per-call setup (weights, requantization constants) is
  // paid once for all its rows.
  const int rows = o[0] * o[1];
  const int tasks = std::max(1, std::min(rows, 3 * threads));
  ParallelFor(pool, tasks, [&](int task) {
    const int row0 = static_cast<int>(static_cast<int64_t>(rows) * task / tasks);
    const int row1 = static_cast<int>(static_cast<int64_t>(rows) * (task + 1) / tasks);
    for (int row = row0; row < row1;) {
      const int n = row / o[1], oy = row % o[1];
      const int end = std::min(row1, (n + 1) * o[1]);
      isa::DepthwiseArgs r = d;
      r.in = &buf_[((static_cast<size_t>(n) * hp + oy * g_.stride_h) * wp) * cp];
      r.out = output + static_cast<size_t>(row) * o[2] * out_channels_;
      r.rows = end - row;
      ops.depthwise_rows(r);
      row = end;
    }
  });
}

void DepthwiseConv2D::RunUnpadded(const isa::Ops& ops, ThreadPool* pool, const int8_t* input,
                                  const int s[4], const int o[4], int pad_top, int pad_left,
                                  int8_t* output) const {
  const int c = in_channels_, kh = g_.kernel_h, kw = g_.kernel_w;
  const int sh = g_.stride_h, sw = g_.stride_w, dh = g_.dilation_h, dw = g_.dilation_w;
  isa::DepthwiseArgs base;
  base.kernel_h = kh;
  base.kernel_w = kw;
  base.w = weights_.data();
  base.bias = bias_.data();
  base.blocks = c / 32;
  base.channels = out_channels_;
  base.rq = {rq_.multiplier.data(), rq_.left_shift.data(), rq_.right_shift.data(),
             rq_.output_zero_point, rq_.act_min, rq_.act_max, rq_.output_xor};
  base.out_stride = c;
  // Output columns [ox_lo, ox_hi) have their whole window inside the image horizontally.
  int ox_lo = 0, ox_hi = o[2];
  while (ox_lo < o[2] && ox_lo * sw - pad_left < 0) ++ox_lo;
  while (ox_hi > ox_lo && (ox_hi - 1) * sw - pad_left + (kw - 1) * dw >= s[2]) --ox_hi;
  const int8_t zp = static_cast<int8_t>(input_zero_point_);
  const size_t window = static_cast<size_t>(kh) * kw * c;
  const int threads = pool ? pool->threads() : 1;
  const int rows = o[0] * o[1];
  const int tasks = std::max(1, std::min(rows, 3 * threads));
  ParallelFor(pool, tasks, [&](int task) {
    const int row0 = static_cast<int>(static_cast<int64_t>(rows) * task / tasks);
    const int row1 = static_cast<int>(static_cast<int64_t>(rows) * (task + 1) / tasks);
    auto pixel = [&](int n, int y, int x) {
      return input + ((static_cast<size_t>(n) * s[1] + y) * s[2] + x) * c;
    };
    // Windows that leave the image are copied (zero point outside) one after the other into
    // `scratch`; windows_out[i] is where window i's output goes. Windows whose outputs lie
    // evenly apart go through one depthwise_rows call: a whole row, or the same edge column of
    // all the task's rows (one call each instead of two per row: the per-call setup of the
    // weights and requantization constants is what such short calls cost).
    std::vector<int8_t> scratch;
    auto copy_window = [&](int8_t* wdst, int n, int oy, int ox) {
      const int y0 = oy * sh - pad_top;
      for (int ky = 0; ky < kh; ++ky) {
        const int y = y0 + ky * dh;
        for (int kx = 0; kx < kw; ++kx) {
          const int x = ox * sw - pad_left + kx * dw;
          int8_t* d = wdst + (static_cast<size_t>(ky) * kw + kx) * c;
          if (y < 0 || y >= s[1] || x < 0 || x >= s[2]) {
            memset(d, zp, c);
          } else {
            memcpy(d, pixel(n, y, x), c);
          }
        }
      }
    };
    auto run_windows = [&](int count, int8_t* out, ptrdiff_t out_stride) {
      isa::DepthwiseArgs d = base;
      d.in = scratch.data();
      d.pixel_stride = static_cast<ptrdiff_t>(window);
      d.tap_dy = static_cast<ptrdiff_t>(kw) * c;
      d.tap_dx = c;
      d.pixels = count;
      d.out = out;
      d.out_stride = out_stride;
      ops.depthwise_rows(d);
    };
    auto rows_in = [&](int row) {
      const int y0 = (row % o[1]) * sh - pad_top;
      return y0 >= 0 && y0 + (kh - 1) * dh < s[1] && ox_lo < ox_hi;
    };
    auto out_row = [&](int row) { return output + static_cast<size_t>(row) * o[2] * c; };
    // The interior of rows inside the image, in place, one call per run of such rows of one
    // image; rows crossing the top or bottom edge entirely as windows.
    for (int row = row0; row < row1;) {
      const int n = row / o[1], oy = row % o[1];
      if (!rows_in(row)) {
        scratch.resize(static_cast<size_t>(o[2]) * window + 64);
        for (int ox = 0; ox < o[2]; ++ox) copy_window(&scratch[ox * window], n, oy, ox);
        run_windows(o[2], out_row(row), c);
        ++row;
        continue;
      }
      int end = row + 1;
      while (end < row1 && end / o[1] == n && rows_in(end)) ++end;
      isa::DepthwiseArgs d = base;
      d.in = pixel(n, oy * sh - pad_top, ox_lo * sw - pad_left);
      d.pixel_stride = static_cast<ptrdiff_t>(sw) * c;
      d.tap_dy = static_cast<ptrdiff_t>(dh) * s[2] * c;
      d.tap_dx = static_cast<ptrdiff_t>(dw) * c;
      d.pixels = ox_hi - ox_lo;
      d.rows = end - row;
      d.in_row_stride = static_cast<ptrdiff_t>(sh) * s[2] * c;
      d.out_row_stride = static_cast<ptrdiff_t>(o[2]) * c;
      d.out = out_row(row) + static_cast<size_t>(ox_lo) * c;
      ops.depthwise_rows(d);
      row = end;
    }
    // The left and right edge columns of the rows inside, one call per column over runs of
    // consecutive such rows.
    for (int ox = 0; ox < o[2]; ++ox) {
      if (ox == ox_lo) ox = std::max(ox_hi, ox_lo);
      if (ox >= o[2]) break;
      for (int row = row0; row < row1;) {
        if (!rows_in(row)) { ++row; continue; }
        int end = row;
        while (end < row1 && rows_in(end)) ++end;
        scratch.resize(static_cast<size_t>(end - row) * window + 64);
        for (int r = row; r < end; ++r) {
          copy_window(&scratch[(r - row) * window], r / o[1], r % o[1], ox);
        }
        run_windows(end - row, out_row(row) + static_cast<size_t>(ox) * c,
                    static_cast<ptrdiff_t>(o[2]) * c);
        row = end;
      }
    }
  });
}

HvxCount DepthwiseConv2D::Count(const int s[4]) const {
  int o[4];
  OutputShape(s, o);
  HvxCount h;
  const int64_t pixels = static_cast<int64_t>(o[0]) * o[1] * o[2];
  const int64_t taps = static_cast<int64_t>(g_.kernel_h) * g_.kernel_w;
  const int64_t blocks = padded_channels_ / 32;
  h.macs = pixels * out_channels_ * taps;
  // Padding copy: one load and one store per 128 bytes of the padded input.
  const int64_t copy = (static_cast<int64_t>(s[0]) * s[1] * s[2] * padded_channels_ + 127) / 128;
  h.vload += copy; h.vstore += copy;
  // Per pixel, block and tap: a load, a byte -> word unpack, a 32-bit multiply-accumulate.
  const int64_t steps = pixels * blocks * taps;
  h.vload += steps; h.vshift += steps; h.vmpy += steps;
  h += RequantCount(pixels * blocks);
  if (rq_.output_xor) h.valu += (pixels * blocks + 3) / 4;  // one XOR per 128 bytes
  return h;
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
      ops.gemm_requant(gemm_.Args(row.data(), 0, 1, 0, gemm_.blocks(), rq_, dst, out_));
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

HvxCount FullyConnected::Count(int batches) const {
  HvxCount h;
  h.macs = static_cast<int64_t>(batches) * out_ * depth_;
  h.vrmpy = static_cast<int64_t>(batches) * gemm_.blocks() * gemm_.groups();
  h.vload = (batches + 3) / 4 * static_cast<int64_t>(gemm_.blocks()) * gemm_.groups();
  h += RequantCount(static_cast<int64_t>(batches) * gemm_.blocks());
  return h;
}

HvxCount RequantCount(int64_t n) {
  HvxCount h;
  h.vmpy = 2 * n;
  h.valu = 5 * n;
  h.vshift = 4 * n;
  h.vstore = n;
  return h;
}

HvxCount ElementwiseCount(int64_t n, int alu, int mpy, int shift, int loads) {
  const int64_t v32 = (n + 31) / 32, v128 = (n + 127) / 128;
  HvxCount h;
  h.valu = v32 * alu;
  h.vmpy = v32 * mpy;
  h.vshift = v32 * shift;
  h.vload = v128 * loads;
  h.vstore = v128;
  return h;
}

}  // namespace tfq::kernels
