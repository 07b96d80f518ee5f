// DEPTHWISE_CONV_2D on the emulated ISA.
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

struct DepthwiseConv2D::Plan {
  int o[4] = {0, 0, 0, 0};
  int pad_top = 0, pad_left = 0, hp = 0, wp = 0;
  bool unpadded = false;  // RunUnpadded
  int tasks = 1;          // tasks over output rows
  ScratchNeed need;       // shared: the padded input; per thread: RunUnpadded's edge windows
};

DepthwiseConv2D::Plan DepthwiseConv2D::MakePlan(const int s[4], int threads) const {
  Plan p;
  OutputShape(s, p.o);
  const int* o = p.o;
  if (o[1] <= 0 || o[2] <= 0) return p;
  // Rows / columns of zero point before the input: a fused PAD's, then the op's own.
  p.pad_top = input_pad_[0] + PaddingBefore(s[1] + input_pad_[0] + input_pad_[1], g_.kernel_h,
                                            g_.stride_h, g_.dilation_h, o[1]);
  p.pad_left = input_pad_[2] + PaddingBefore(s[2] + input_pad_[2] + input_pad_[3], g_.kernel_w,
                                             g_.stride_w, g_.dilation_w, o[2]);
  p.hp = std::max((o[1] - 1) * g_.stride_h + (g_.kernel_h - 1) * g_.dilation_h + 1,
                  p.pad_top + s[1]);
  p.wp = std::max((o[2] - 1) * g_.stride_w + (g_.kernel_w - 1) * g_.dilation_w + 1,
                  p.pad_left + s[2]);
  const int rows = o[0] * o[1];
  p.tasks = std::max(1, std::min(rows, 3 * threads));
  // In place unless the image is small and not strided: then the border windows (each copied
  // and run through the generic taps) are a large share of the pixels, and one padded copy of
  // the input (about the output's size at stride 1) is cheaper (measured on MobileNet's
  // 14x14 and 7x7 layers: 30-50% faster; at stride 2 the copy is four times the output).
  const bool small = g_.stride_h == 1 && g_.stride_w == 1 && o[1] * o[2] <= 32 * 32;
  p.unpadded = multiplier_ == 1 && padded_channels_ == in_channels_ && !small;
  if (p.unpadded) {
    // A task copies at most a whole output row, or one edge column of its rows, of windows.
    const size_t window = static_cast<size_t>(g_.kernel_h) * g_.kernel_w * in_channels_;
    const int task_rows = (rows + p.tasks - 1) / p.tasks;
    p.need.per_thread = static_cast<size_t>(std::max(o[2], task_rows)) * window + 64;
  } else {
    // Zero-point-padded input with channels expanded to the output channels (c reads c / m),
    // 64 bytes of slack for the last vector loads.
    p.need.shared = static_cast<size_t>(s[0]) * p.hp * p.wp * padded_channels_ + 64;
  }
  return p;
}

ScratchNeed DepthwiseConv2D::Scratch(const int s[4], int threads) const {
  return MakePlan(s, threads).need;
}

void DepthwiseConv2D::Run(const isa::Ops& ops, ThreadPool* pool, const Workspace& ws,
                          const int8_t* input, const int s[4], int8_t* output) const {
  const int threads = pool ? pool->threads() : 1;
  const Plan p = MakePlan(s, threads);
  const int* o = p.o;
  if (o[1] <= 0 || o[2] <= 0) return;
  ws.Check(p.need);
  const int pad_top = p.pad_top, pad_left = p.pad_left, hp = p.hp, wp = p.wp;
  if (p.unpadded) {
    RunUnpadded(ops, pool, ws, p, input, s, output);
    return;
  }
  const int cp = padded_channels_;
  int8_t* const buf = reinterpret_cast<int8_t*>(ws.shared());
  const int8_t zp = static_cast<int8_t>(input_zero_point_);
  const bool direct_rows = multiplier_ == 1 && cp == in_channels_;
  ForEachChunk(pool, s[0] * hp, 3 * threads, [&](int row) {
    const int n = row / hp, yp = row % hp, y = yp - pad_top;
    int8_t* dst = &buf[(static_cast<size_t>(row) * wp) * cp];
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
  const int tasks = p.tasks;
  ParallelFor(pool, tasks, [&](int task) {
    const int row0 = static_cast<int>(static_cast<int64_t>(rows) * task / tasks);
    const int row1 = static_cast<int>(static_cast<int64_t>(rows) * (task + 1) / tasks);
    for (int row = row0; row < row1;) {
      const int n = row / o[1], oy = row % o[1];
      const int end = std::min(row1, (n + 1) * o[1]);
      isa::DepthwiseArgs r = d;
      r.in = &buf[((static_cast<size_t>(n) * hp + oy * g_.stride_h) * wp) * cp];
      r.out = output + static_cast<size_t>(row) * o[2] * out_channels_;
      r.rows = end - row;
      ops.depthwise_rows(r);
      row = end;
    }
  });
}

void DepthwiseConv2D::RunUnpadded(const isa::Ops& ops, ThreadPool* pool, const Workspace& ws,
                                  const Plan& p, const int8_t* input, const int s[4],
                                  int8_t* output) const {
  const int* o = p.o;
  const int pad_top = p.pad_top, pad_left = p.pad_left;
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
  const int rows = o[0] * o[1];
  const int tasks = p.tasks;
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
    int8_t* const scratch = reinterpret_cast<int8_t*>(ws.thread());  // MakePlan's per_thread
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
      d.in = scratch;
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

}  // namespace tfq::kernels
