// AVERAGE_POOL_2D, MAX_POOL_2D, MEAN (over H, W), PAD, CONCATENATION.
#include <string.h>

#include <algorithm>
#include <vector>

#include "isa/fixed_point.h"
#include "kernels/kernels.h"

namespace tfq::kernels {

void PoolOutputShape(const PoolParams& p, const int in[4], int out[4]) {
  out[0] = in[0];
  out[1] = OutputSize(p.same_padding, in[1], p.filter_h, p.stride_h, 1);
  out[2] = OutputSize(p.same_padding, in[2], p.filter_w, p.stride_w, 1);
  out[3] = in[3];
}

namespace {
template <typename F>
void Pool(const PoolParams& p, const int8_t* /*in*/, const int s[4], int8_t* out, F reduce) {
  int o[4];
  PoolOutputShape(p, s, o);
  const int pad_h = PaddingBefore(s[1], p.filter_h, p.stride_h, 1, o[1]);
  const int pad_w = PaddingBefore(s[2], p.filter_w, p.stride_w, 1, o[2]);
  for (int n = 0; n < o[0]; ++n) {
    for (int oy = 0; oy < o[1]; ++oy) {
      for (int ox = 0; ox < o[2]; ++ox) {
        const int y0 = oy * p.stride_h - pad_h, x0 = ox * p.stride_w - pad_w;
        const int fy0 = std::max(0, -y0), fy1 = std::min(p.filter_h, s[1] - y0);
        const int fx0 = std::max(0, -x0), fx1 = std::min(p.filter_w, s[2] - x0);
        for (int c = 0; c < s[3]; ++c) {
          reduce(n, y0, x0, fy0, fy1, fx0, fx1, c,
                 out + ((static_cast<size_t>(n) * o[1] + oy) * o[2] + ox) * s[3] + c);
        }
      }
    }
  }
}
}  // namespace

void AveragePool(const PoolParams& p, const int8_t* in, const int s[4], int8_t* out) {
  Pool(p, in, s, out, [&](int n, int y0, int x0, int fy0, int fy1, int fx0, int fx1, int c,
                          int8_t* dst) {
    int32_t acc = 0, count = 0;
    for (int fy = fy0; fy < fy1; ++fy) {
      for (int fx = fx0; fx < fx1; ++fx) {
        acc += in[((static_cast<size_t>(n) * s[1] + y0 + fy) * s[2] + x0 + fx) * s[3] + c];
        ++count;
      }
    }
    if (count == 0) { *dst = static_cast<int8_t>(std::min(std::max(0, p.act_min), p.act_max)); return; }
    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
    *dst = static_cast<int8_t>(std::min(std::max(acc, p.act_min), p.act_max));
  });
}

void MaxPool(const isa::Ops& ops, const PoolParams& p, const int8_t* in, const int s[4],
             int8_t* out) {
  // Per output pixel, the max of the in-image taps' channel rows (a window always holds at
  // least one in-image tap), then the fused clamp.
  int o[4];
  PoolOutputShape(p, s, o);
  const int pad_h = PaddingBefore(s[1], p.filter_h, p.stride_h, 1, o[1]);
  const int pad_w = PaddingBefore(s[2], p.filter_w, p.stride_w, 1, o[2]);
  const int c = s[3];
  const bool clamp = p.act_min > -128 || p.act_max < 127;
  for (int n = 0; n < o[0]; ++n) {
    for (int oy = 0; oy < o[1]; ++oy) {
      for (int ox = 0; ox < o[2]; ++ox) {
        const int y0 = oy * p.stride_h - pad_h, x0 = ox * p.stride_w - pad_w;
        const int fy0 = std::max(0, -y0), fy1 = std::min(p.filter_h, s[1] - y0);
        const int fx0 = std::max(0, -x0), fx1 = std::min(p.filter_w, s[2] - x0);
        int8_t* dst = out + ((static_cast<size_t>(n) * o[1] + oy) * o[2] + ox) * c;
        bool first = true;
        for (int fy = fy0; fy < fy1; ++fy) {
          for (int fx = fx0; fx < fx1; ++fx) {
            const int8_t* src = in + ((static_cast<size_t>(n) * s[1] + y0 + fy) * s[2] + x0 + fx) * c;
            if (first) {
              memcpy(dst, src, c);
              first = false;
            } else {
              ops.max_b_n(dst, src, c);
            }
          }
        }
        if (first) memset(dst, -128, c);  // no in-image tap (not produced by TFLite's shapes)
        if (clamp) {
          for (int i = 0; i < c; ++i) {
            dst[i] = static_cast<int8_t>(std::min<int32_t>(std::max<int32_t>(dst[i], p.act_min), p.act_max));
          }
        }
      }
    }
  }
}

void MeanHW(QuantParams in, QuantParams out, const int8_t* input, const int s[4], int8_t* output) {
  int32_t multiplier;
  int shift;
  QuantizeMultiplier(static_cast<double>(in.scale) / static_cast<double>(out.scale), &multiplier,
                     &shift);
  const int64_t count = static_cast<int64_t>(s[1]) * s[2];
  if (count == 0) return;
  // The reference folds 1/count into the multiplier.
  int fold = 63 - __builtin_clzll(static_cast<uint64_t>(count));
  fold = std::min(fold, 32);
  fold = std::min(fold, 31 + shift);
  const int32_t m = static_cast<int32_t>((static_cast<int64_t>(multiplier) << fold) / count);
  const int sh = shift - fold;
  // Sums over the pixels in input order (channels inner: sequential reads), wrap-around as int32.
  std::vector<uint32_t> sums(s[3]);
  for (int n = 0; n < s[0]; ++n) {
    std::fill(sums.begin(), sums.end(), 0u);
    const int8_t* x = input + static_cast<size_t>(n) * count * s[3];
    for (int64_t i = 0; i < count; ++i, x += s[3]) {
      for (int c = 0; c < s[3]; ++c) sums[c] += static_cast<uint32_t>(static_cast<int32_t>(x[c]));
    }
    for (int c = 0; c < s[3]; ++c) {
      const int32_t sum = static_cast<int32_t>(sums[c]);
      const int32_t shifted = static_cast<int32_t>(sum - static_cast<int64_t>(in.zero_point) * count);
      const int32_t r = fp::MultiplyByQuantizedMultiplier(shifted, m, sh) + out.zero_point;
      output[static_cast<size_t>(n) * s[3] + c] = static_cast<int8_t>(fp::SaturateInt8(r));
    }
  }
}

void Pad(const int8_t* in, const int s[4], const int pads[4][2], int8_t pad_value, int8_t* out) {
  int o[4];
  for (int d = 0; d < 4; ++d) o[d] = s[d] + pads[d][0] + pads[d][1];
  const bool whole_rows = pads[3][0] == 0 && pads[3][1] == 0;  // rows of W x C are contiguous
  if (whole_rows) {
    // Each output row once: the padding memset, the rest copied (no write twice).
    const size_t row = static_cast<size_t>(o[2]) * o[3];
    const size_t left = static_cast<size_t>(pads[2][0]) * o[3], body = static_cast<size_t>(s[2]) * s[3];
    for (int a = 0; a < o[0]; ++a) {
      for (int b = 0; b < o[1]; ++b) {
        int8_t* dst = out + (static_cast<size_t>(a) * o[1] + b) * row;
        const int ia = a - pads[0][0], ib = b - pads[1][0];
        if (ia < 0 || ia >= s[0] || ib < 0 || ib >= s[1]) {
          memset(dst, pad_value, row);
          continue;
        }
        memset(dst, pad_value, left);
        memcpy(dst + left, in + (static_cast<size_t>(ia) * s[1] + ib) * body, body);
        memset(dst + left + body, pad_value, row - left - body);
      }
    }
    return;
  }
  memset(out, pad_value, static_cast<size_t>(o[0]) * o[1] * o[2] * o[3]);
  for (int a = 0; a < s[0]; ++a) {
    for (int b = 0; b < s[1]; ++b) {
      if (whole_rows) {
        const int8_t* src = in + ((static_cast<size_t>(a) * s[1] + b) * s[2]) * s[3];
        int8_t* dst = out + ((static_cast<size_t>(a + pads[0][0]) * o[1] + b + pads[1][0]) * o[2] +
                             pads[2][0]) * o[3];
        memcpy(dst, src, static_cast<size_t>(s[2]) * s[3]);
        continue;
      }
      for (int c = 0; c < s[2]; ++c) {
        const int8_t* src = in + ((static_cast<size_t>(a) * s[1] + b) * s[2] + c) * s[3];
        int8_t* dst = out + ((static_cast<size_t>(a + pads[0][0]) * o[1] + b + pads[1][0]) * o[2] +
                             c + pads[2][0]) * o[3] + pads[3][0];
        memcpy(dst, src, s[3]);
      }
    }
  }
}

void Concat(const std::vector<const int8_t*>& inputs, const std::vector<int>& axis_sizes,
            int outer, int inner, int element_size, int8_t* out) {
  for (int o = 0; o < outer; ++o) {
    for (size_t i = 0; i < inputs.size(); ++i) {
      const size_t bytes = static_cast<size_t>(axis_sizes[i]) * inner * element_size;
      memcpy(out, inputs[i] + o * bytes, bytes);
      out += bytes;
    }
  }
}

}  // namespace tfq::kernels
