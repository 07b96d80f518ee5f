// CONV_2D on the emulated ISA: the packed GEMM (PackedGemm), im2col rows in u8 and the
// register-tiled gemm_requant; 1xN "lines" for narrow inputs.
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
  uint8_t* const a_base = in_place ? nullptr : ThreadScratch(static_cast<size_t>(rows) * kp + 64);
  // Locals, not members: the byte stores below may alias anything, members would be reloaded.
  const int kh = g_.kernel_h, kw = g_.kernel_w, sh = g_.stride_h, sw = g_.stride_w;
  const int dh = g_.dilation_h, dw = g_.dilation_w;
  const int seg = kw * c;  // bytes per kernel row
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
  uint8_t* const lines = ThreadScratch(size);
  const uint8_t pad_value = static_cast<uint8_t>(input_zero_point_ + 128);
  const int threads = pool ? pool->threads() : 1;
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

}  // namespace tfq::kernels
