// Helpers shared by the conv, depthwise and fully-connected kernels (internal to kernels/).
#pragma once

#include <algorithm>

#include "kernels/kernels.h"

namespace tfq::kernels::detail {

inline int RoundUp(int x, int m) { return (x + m - 1) / m * m; }

inline Requant MakeRequant(int channels, const double* real_multipliers, int32_t output_zero_point,
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

}  // namespace tfq::kernels::detail
