// CONV_2D on the emulated ISA: im2col rows in u8 through the packed GEMM (kernels/packed_gemm.cc)
// and the register-tiled gemm_requant; 1xN "lines" for narrow inputs.
#include <string.h>

#include <algorithm>

#include "kernels/conv_common.h"
#include "kernels/kernels.h"

namespace tfq::kernels {
namespace {

using isa::VecI8;
using namespace detail;  // NOLINT: RoundUp, MakeRequant, ForEachChunk

// Runs whose im2col rows take at most kBlockSplitBytes (few rows: the late, weight-heavy layers)
// are split over blocks of output channels instead of rows: each task packs its blocks into
// its own scratch and runs every row over them while they are in cache, so the weights are
// read once from memory, as the GEMM reads them anyway. Larger runs reuse each weight over
// many rows and pack every block up front, as do weights under kBlockSplitMinWeights (they
// pack in microseconds; the split would only add a pass, and a synchronisation of the pool,
// for the im2col).
constexpr size_t kBlockSplitBytes = 512 * 1024;
constexpr size_t kBlockSplitMinWeights = 128 * 1024;

}  // namespace

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
  return PackedGemm(std::move(padded), out, g.kernel_h * seg_padded, bias, input_zero_point);
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
      block_split_bytes_(kBlockSplitBytes),
      block_split_min_weights_(kBlockSplitMinWeights),
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

int TaskRows(int64_t rows, int threads) {
  // Enough tasks for every thread to get a few (dynamic balance on shared cores), each a
  // multiple of the register tile, at most 48 rows (its u8 rows stay in L1/L2).
  int64_t t = (rows + 3 * threads - 1) / (3 * threads);
  t = (t + kRowTile - 1) / kRowTile * kRowTile;
  return static_cast<int>(std::max<int64_t>(kRowTile, std::min<int64_t>(48, t)));
}

}  // namespace

struct Conv2D::Plan {
  int o[4] = {0, 0, 0, 0};
  int64_t rows = 0;
  int pad_top = 0, pad_left = 0;
  int threads = 1;
  bool pointwise = false;  // 1x1, stride 1, no padding
  bool in_place = false;   // the GEMM reads a biased input as it is (no im2col)
  bool by_blocks = false;  // tasks over blocks of channels (kBlockSplitBytes)
  int wp = 0;              // width of a zero-point-padded input line
  size_t line_size = 0;    // bytes of one such line (+16 of slack)
  int task_rows = 0, tasks = 0;  // tasks over rows
  int chunk = kBlockChunk;       // blocks per gemm_requant call (and per task, by_blocks)
  int hp = 0;                    // RunLines: height of the padded input
  // Shared scratch: every block packed (unless by_blocks), then (by_blocks, RunLines) every
  // im2col row or RunLines' padded lines at a_offset. Per thread: the kernel_h input lines of
  // the im2col, then (split over rows) the task's im2col rows at task_a_offset; or the task's
  // packed blocks (by_blocks; the two phases do not overlap).
  size_t packed_bytes = 0, a_offset = 0, a_bytes = 0;
  size_t lines_bytes = 0, task_a_offset = 0, task_a_bytes = 0, panel_bytes = 0;
  ScratchNeed Need() const {
    return {a_offset + a_bytes, std::max(task_a_offset + task_a_bytes, panel_bytes)};
  }
};

Conv2D::Plan Conv2D::MakePlan(const int s[4], int threads) const {
  Plan p;
  p.threads = threads;
  OutputShape(s, p.o);
  if (p.o[1] <= 0 || p.o[2] <= 0) return p;
  const int c = in_channels_;
  const int kp = gemm_.padded_depth();
  p.rows = static_cast<int64_t>(p.o[0]) * p.o[1] * p.o[2];
  p.pad_top = PaddingBefore(s[1], g_.kernel_h, g_.stride_h, g_.dilation_h, p.o[1]);
  p.pad_left = PaddingBefore(s[2], g_.kernel_w, g_.stride_w, g_.dilation_w, p.o[2]);
  if (lines_) {
    p.hp = std::max((p.o[1] - 1) * g_.stride_h + (g_.kernel_h - 1) * g_.dilation_h + 1,
                    p.pad_top + s[1]);
    p.wp = std::max((p.o[2] - 1) * g_.stride_w + g_.kernel_w, p.pad_left + s[2]);
    // A kernel row's last group reads up to 3 bytes past the line's last tap: the next line's
    // start or the slack (their weights are zero).
    p.line_size = static_cast<size_t>(p.wp) * c + 16;
    p.packed_bytes = gemm_.kept() ? 0 : gemm_.PackedBytes();
    p.a_offset = Workspace::Align(p.packed_bytes);
    p.a_bytes = static_cast<size_t>(s[0]) * p.hp * p.line_size;
    return p;
  }
  p.pointwise = g_.kernel_h == 1 && g_.kernel_w == 1 && g_.stride_h == 1 && g_.stride_w == 1 &&
                p.pad_top == 0 && p.pad_left == 0;
  p.in_place = input_biased_ && p.pointwise && kp == c;
  p.wp = std::max((p.o[2] - 1) * g_.stride_w + (g_.kernel_w - 1) * g_.dilation_w + 1,
                  p.pad_left + s[2]);
  p.line_size = static_cast<size_t>(p.wp) * c + 16;
  p.task_rows = TaskRows(p.rows, threads);
  p.tasks = static_cast<int>((p.rows + p.task_rows - 1) / p.task_rows);
  const size_t a_bytes = static_cast<size_t>(p.rows) * kp;
  p.by_blocks = !gemm_.kept() && gemm_.blocks() >= 2 && a_bytes <= block_split_bytes_ &&
                gemm_.PackedBytes() >= block_split_min_weights_;
  if (p.by_blocks && gemm_.blocks() < 2 * kBlockChunk * threads) p.chunk = 1;
  p.packed_bytes = p.by_blocks || gemm_.kept() ? 0 : gemm_.PackedBytes();
  p.a_offset = Workspace::Align(p.packed_bytes);
  p.lines_bytes = p.pointwise ? 0 : p.line_size * g_.kernel_h;
  p.task_a_offset = Workspace::Align(p.lines_bytes);
  if (p.by_blocks) {
    p.a_bytes = p.in_place ? 0 : a_bytes + 64;
  } else {  // each task's rows only: the im2col does not grow with the image
    p.task_a_bytes = p.in_place ? 0 : static_cast<size_t>(p.task_rows) * kp + 64;
  }
  p.panel_bytes = p.by_blocks ? p.chunk * gemm_.BlockBytes() : 0;
  return p;
}

ScratchNeed Conv2D::Scratch(const int s[4], int threads) const {
  return MakePlan(s, threads).Need();
}

void Conv2D::Run(const isa::Ops& ops, ThreadPool* pool, const Workspace& ws, const int8_t* input,
                 const int s[4], int8_t* output) const {
  const Plan p = MakePlan(s, pool ? pool->threads() : 1);
  if (p.o[1] <= 0 || p.o[2] <= 0) return;
  ws.Check(p.Need());
  if (lines_) {
    RunLines(ops, pool, ws, p, input, s, output);
    return;
  }
  const int c = in_channels_;
  const int kp = gemm_.padded_depth();
  const int* o = p.o;
  const int64_t rows = p.rows;
  const int pad_top = p.pad_top, pad_left = p.pad_left;
  const bool pointwise = p.pointwise;
  const uint8_t pad_value = static_cast<uint8_t>(input_zero_point_ + 128);
  auto to_u8 = [&](const int8_t* src, int n, uint8_t* dst) {
    if (input_biased_) {
      memcpy(dst, src, n);
    } else {
      ToU8(src, n, dst);
    }
  };
  const VecI8* const packed =
      gemm_.kept() ? gemm_.kept() : reinterpret_cast<const VecI8*>(ws.shared());
  // by_blocks: every row's im2col, shared by the block tasks.
  const uint8_t* const a_all = p.in_place ? reinterpret_cast<const uint8_t*>(input)
                                          : ws.shared() + p.a_offset;
  // Locals, not members: the byte stores below may alias anything, members would be reloaded.
  const int kh = g_.kernel_h, kw = g_.kernel_w, sh = g_.stride_h, sw = g_.stride_w;
  const int dh = g_.dilation_h, dw = g_.dilation_w;
  const int seg = kw * c;  // bytes per kernel row
  // im2col of rows [r0, r0 + n_rows) as u8: out-of-image taps hold the input zero point. For a
  // general convolution the kernel_h input rows of an output row are converted into `lines`
  // (zero-point padded left and right; the thread's scratch), then each output pixel copies its
  // kernel_w taps of each (one copy when not dilated). Short taps (kernel_w * channels <= 16)
  // are copied 16 bytes at a time, pixel by pixel: the overrun lands on this row's later taps
  // or the next pixel's, written afterwards, or on the depth padding, whose weights are zero
  // (any byte there contributes nothing). The last pixels of the range, whose overrun could
  // reach past its rows (another task's), copy exactly.
  auto im2col = [&](int64_t r0, int n_rows, uint8_t* a_rows) {
    // Row r goes to a_rows + (r - r0) * kp.
    const size_t line_size = p.line_size;
    uint8_t* const lines = pointwise ? nullptr : ws.thread();
    if (!pointwise) memset(lines, pad_value, line_size * kh);
    int64_t r = r0;
    if (p.in_place) {
      r = r0 + n_rows;
    } else if (pointwise && kp == c) {  // the rows are contiguous on both sides: one pass
      to_u8(input + static_cast<size_t>(r0) * c, n_rows * c, a_rows);
      r = r0 + n_rows;
    }
    const bool short_taps = dw == 1 && seg <= 16;
    const int overrun = (kh - 1) * seg + 16 - kp;  // bytes past its row a pixel's copies write
    const int exact_tail = short_taps ? std::max(1, (overrun + kp - 1) / kp) : 0;
    while (r < r0 + n_rows) {
      if (pointwise) {
        uint8_t* dst = a_rows + (r - r0) * kp;
        to_u8(input + static_cast<size_t>(r) * c, c, dst);
        memset(dst + c, 0, kp - c);
        ++r;
        continue;
      }
      // The run of pixels of this range on output row (n, oy).
      const int ox0 = static_cast<int>(r % o[2]);
      const int oy = static_cast<int>((r / o[2]) % o[1]);
      const int n = static_cast<int>(r / (static_cast<int64_t>(o[2]) * o[1]));
      const int ox1 = static_cast<int>(std::min<int64_t>(o[2], ox0 + (r0 + n_rows - r)));
      for (int ky = 0; ky < kh; ++ky) {
        const int y = oy * sh - pad_top + ky * dh;
        uint8_t* line = lines + ky * line_size;
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
      const uint8_t* const lines_base = lines;
      uint8_t* d = a_rows + (r - r0) * kp;
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
  };
  const int blocks = gemm_.blocks();
  if (p.by_blocks) {
    if (!p.in_place) {
      ParallelFor(pool, p.tasks, [&](int task) {
        const int64_t r0 = static_cast<int64_t>(task) * p.task_rows;
        im2col(r0, static_cast<int>(std::min<int64_t>(p.task_rows, rows - r0)),
               ws.shared() + p.a_offset + r0 * kp);
      });
    }
    ParallelFor(pool, (blocks + p.chunk - 1) / p.chunk, [&](int task) {
      const int blk = task * p.chunk, nb = std::min(p.chunk, blocks - blk);
      VecI8* panel = reinterpret_cast<VecI8*>(ws.thread());
      gemm_.Pack(blk, nb, panel);
      ops.gemm_requant(gemm_.Args(panel, a_all, kp, static_cast<int>(rows), blk, nb, rq_,
                                  output, out_channels_));
    });
    return;
  }
  if (!gemm_.kept()) gemm_.PackAll(pool, reinterpret_cast<VecI8*>(ws.shared()));
  ParallelFor(pool, p.tasks, [&](int task) {
    const int64_t r0 = static_cast<int64_t>(task) * p.task_rows;
    const int n_rows = static_cast<int>(std::min<int64_t>(p.task_rows, rows - r0));
    uint8_t* const task_a = ws.thread() + p.task_a_offset;
    im2col(r0, n_rows, task_a);
    const uint8_t* a = p.in_place ? a_all + r0 * kp : task_a;
    int8_t* out = output + static_cast<size_t>(r0) * out_channels_;
    for (int blk = 0; blk < blocks; blk += p.chunk) {
      const int nb = std::min(p.chunk, blocks - blk);
      ops.gemm_requant(gemm_.Args(packed + static_cast<size_t>(blk) * gemm_.groups(), a, kp,
                                  n_rows, blk, nb, rq_, out, out_channels_));
    }
  });
}

void Conv2D::RunLines(const isa::Ops& ops, ThreadPool* pool, const Workspace& ws, const Plan& p,
                      const int8_t* input, const int s[4], int8_t* output) const {
  const int c = in_channels_;
  const int* o = p.o;
  const int hp = p.hp, pad_top = p.pad_top, pad_left = p.pad_left;
  const size_t line = p.line_size;
  const VecI8* const packed =
      gemm_.kept() ? gemm_.kept() : reinterpret_cast<const VecI8*>(ws.shared());
  uint8_t* const lines = ws.shared() + p.a_offset;
  if (!gemm_.kept()) gemm_.PackAll(pool, reinterpret_cast<VecI8*>(ws.shared()));
  const uint8_t pad_value = static_cast<uint8_t>(input_zero_point_ + 128);
  ForEachChunk(pool, s[0] * hp, 3 * p.threads, [&](int i) {
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
  ForEachChunk(pool, rows, 3 * p.threads, [&](int i) {
    const int n = i / o[1], oy = i % o[1];
    int8_t* out = output + static_cast<size_t>(i) * o[2] * out_channels_;
    const uint8_t* a = lines + (static_cast<size_t>(n) * hp + oy * g_.stride_h) * line;
    for (int blk = 0; blk < gemm_.blocks(); blk += kBlockChunk) {
      const int nb = std::min(kBlockChunk, gemm_.blocks() - blk);
      isa::GemmArgs args = gemm_.Args(packed + static_cast<size_t>(blk) * gemm_.groups(), a,
                                      static_cast<ptrdiff_t>(g_.stride_w) * c, o[2], blk, nb,
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
