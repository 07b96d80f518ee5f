// tfquant.spec.mse_optimal_range's search over candidate clipping ranges, in C++: for each
// candidate, the params spec.params_from_range gives and the quantization error of a
// histogram that spec._quantization_mses computes, with the same float64 operations in the
// same order (numpy's pairwise summation included) so that both choose the same range, bit
// for bit; compiled with -ffp-contract=off (no fused multiply-adds).
// tests/test_range_estimators.py checks the two against each other.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

constexpr int64_t kNumpyBufferSize = 8192;

// A float64 rounded to float32 as numpy's astype does: out-of-range values become infinities
// (a C++ cast of them would be undefined).
double RoundToFloat32(double x) {
  if (x > static_cast<double>(std::numeric_limits<float>::max())) {
    const double rounded = static_cast<double>(static_cast<float>(
        std::min(x, static_cast<double>(std::numeric_limits<float>::max()))));
    // Only values past the halfway point to the next (unrepresentable) power round up.
    return x >= 3.4028235677973366e38 ? std::numeric_limits<double>::infinity() : rounded;
  }
  if (x < -static_cast<double>(std::numeric_limits<float>::max())) return -RoundToFloat32(-x);
  return static_cast<double>(static_cast<float>(x));
}

// numpy's pairwise summation of n float64 values (its add.reduce over a contiguous row).
double PairwiseSum(const double* a, int64_t n) {
  if (n < 8) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += a[i];
    return sum;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) sum += a[i];
    return sum;
  }
  int64_t half = n / 2;
  half -= half % 8;
  return PairwiseSum(a, half) + PairwiseSum(a + half, n - half);
}

constexpr double kFloat32Max = 3.4028234663852886e38;
constexpr double kMinScale = 1e-30;

struct Spec {
  int64_t qmin, qmax;
  bool symmetric;
};

struct Histogram {
  const double* count;  // running sums over the bins, bins + 1 values each
  const double* first;
  const double* second;
  int64_t bins;
  double low, width;
};

// clip(ceil(position) if up else floor(position) + 1, 0, bins): the number of bin centers
// below a rounding boundary. Clamped first so that the integer conversion is exact (the
// x86-64 baseline has no rounding instruction: std::ceil would be a libm call per level).
int64_t BinsBelow(double position, bool up, int64_t bins) {
  const double limit = static_cast<double>(bins) + 2.0;
  if (!(position > -2.0)) return 0;
  if (position > limit) return bins;
  const int64_t truncated = static_cast<int64_t>(position);  // toward zero
  const double whole = static_cast<double>(truncated);
  int64_t below;
  if (up) {
    below = whole < position ? truncated + 1 : truncated;  // ceil
  } else {
    below = (whole > position ? truncated - 1 : truncated) + 1;  // floor + 1
  }
  return std::min(std::max<int64_t>(below, 0), bins);
}

// spec.params_from_range for one finite range: the float32 scale (widened) and zero point.
void ParamsFromRange(double rmin, double rmax, const Spec& spec, double* scale,
                     double* zero_point) {
  const double lo = std::min(std::min(rmin, rmax), 0.0);
  const double hi = std::max(std::max(rmin, rmax), 0.0);
  double s, zp = 0.0;
  if (spec.symmetric) {
    const double bound = std::max(-lo, hi);
    s = bound > 0 ? bound / static_cast<double>(spec.qmax) : 1.0;
  } else {
    const bool degenerate = hi - lo <= 0;
    const double width = degenerate ? 1.0 : hi - lo;
    s = width / static_cast<double>(spec.qmax - spec.qmin);
    zp = std::nearbyint(static_cast<double>(spec.qmin) - lo / s);  // ties to even, as np.round
    zp = std::min(std::max(zp, static_cast<double>(spec.qmin)), static_cast<double>(spec.qmax));
  }
  s = std::min(std::max(s, kMinScale), kFloat32Max);
  *scale = RoundToFloat32(s);
  *zero_point = zp;
}

// The error of the histogram under one range's params (spec._quantization_mses, one row).
double RangeError(const Histogram& h, double s, double zp, int64_t qmin, int64_t qmax,
                  std::vector<double>& terms) {
  const int64_t levels = qmax - qmin + 1;
  terms.resize(static_cast<size_t>(levels));
  int64_t lower_edge = 0;
  for (int64_t k = 0; k < levels; ++k) {
    const double shifted = static_cast<double>(qmin + k) - zp;
    int64_t upper_edge = h.bins;
    if (k + 1 < levels) {
      // Centers below the boundary halfway to the next level; a center on it rounds away
      // from zero (up above zero, down below it).
      const double halfway = shifted + 0.5;
      const double position = (halfway * s - h.low) / h.width - 0.5;
      upper_edge = BinsBelow(position, halfway > 0, h.bins);
    }
    const double value = RoundToFloat32(shifted * s);
    const double n = h.count[upper_edge] - h.count[lower_edge];
    const double first = h.first[upper_edge] - h.first[lower_edge];
    const double second = h.second[upper_edge] - h.second[lower_edge];
    terms[static_cast<size_t>(k)] = (second - 2.0 * value * first) + value * value * n;
    lower_edge = upper_edge;
  }
  // numpy reduces a long row in chunks of its buffer size, pairwise within each.
  double sum = 0.0;
  for (int64_t start = 0; start < levels; start += kNumpyBufferSize) {
    sum += PairwiseSum(terms.data() + start, std::min(kNumpyBufferSize, levels - start));
  }
  return sum;
}

// The error of the lowest and highest levels alone: the values below the first rounding
// boundary and above the last (the clipped ones among them). Every other level's term is a
// sum of squares, so this is a lower bound of RangeError up to rounding.
double ClippingError(const Histogram& h, double s, double zp, int64_t qmin, int64_t qmax) {
  double error = 0.0;
  for (const int64_t q : {qmin, qmax}) {
    const double shifted = static_cast<double>(q) - zp;
    const double boundary = q == qmin ? shifted + 0.5 : shifted - 0.5;
    const int64_t edge = BinsBelow((boundary * s - h.low) / h.width - 0.5, boundary > 0, h.bins);
    const int64_t lower = q == qmin ? 0 : edge, upper = q == qmin ? edge : h.bins;
    const double value = RoundToFloat32(shifted * s);
    const double n = h.count[upper] - h.count[lower];
    const double first = h.first[upper] - h.first[lower];
    const double second = h.second[upper] - h.second[lower];
    error += (second - 2.0 * value * first) + value * value * n;
  }
  return error;
}

// The first range of lows[i], highs[i] with the smallest error (np.argmin: a NaN wins).
// The ranges go widest first (each list's ends grow with i) so that a good error is known
// early: a range whose clipping error alone exceeds the best so far by more than `slack`
// (far above the rounding of any sum here) cannot be chosen and is not summed level by level.
int64_t BestRange(const Histogram& h, const Spec& spec, const std::vector<double>& lows,
                  const std::vector<double>& highs, double slack, std::vector<double>& terms) {
  int64_t best = -1, first_nan = -1;
  double best_error = 0.0;
  for (int64_t i = static_cast<int64_t>(lows.size()) - 1; i >= 0; --i) {
    double s, zp;
    ParamsFromRange(lows[static_cast<size_t>(i)], highs[static_cast<size_t>(i)], spec, &s,
                    &zp);
    if (best >= 0 && ClippingError(h, s, zp, spec.qmin, spec.qmax) > best_error + slack) {
      continue;
    }
    const double error = RangeError(h, s, zp, spec.qmin, spec.qmax, terms);
    if (std::isnan(error)) {
      first_nan = i;
    } else if (best < 0 || error <= best_error) {  // a tie goes to the lower index
      best = i;
      best_error = error;
    }
  }
  return first_nan >= 0 ? first_nan : std::max<int64_t>(best, 0);
}

}  // namespace

extern "C" {

// spec.mse_optimal_range's search over a histogram (see there) of a range [rmin, rmax] that
// contains 0 and is not empty: the ends shrink together by each of `fractions`, then the high
// end alone, then the low end alone (each stage also keeps the range it starts from). The
// histogram's bins start at rmin and are `width` wide; prefix_{count,first,second} are the
// running sums (bins + 1 values) of count, count * center and count * center^2. Writes the
// chosen range to range_out[0..1]. Returns 0, or -1 on bad arguments.
__attribute__((visibility("default"))) int tfquant_mse_optimal_range(
    const double* prefix_count, const double* prefix_first, const double* prefix_second,
    int64_t bins, double rmin, double rmax, double width, const double* fractions,
    int64_t steps, int64_t qmin, int64_t qmax, int symmetric, double* range_out) {
  if (bins < 1 || steps < 1 || qmax < qmin || !(width > 0.0) || !(rmin <= 0.0) ||
      !(rmax >= 0.0)) {
    return -1;
  }
  const Histogram h{prefix_count, prefix_first, prefix_second, bins, rmin, width};
  const Spec spec{qmin, qmax, symmetric != 0};
  std::vector<double> terms, lows, highs;
  // Rounding in the sums is below 1e-12 of (largest |value|)^2 x count; 1000 times that.
  const double reach = std::max(-rmin, rmax);
  const double slack = 1e-9 * reach * reach * prefix_count[bins];
  for (int64_t i = 0; i < steps; ++i) {
    lows.push_back(fractions[i] * rmin);
    highs.push_back(fractions[i] * rmax);
  }
  int64_t best = BestRange(h, spec, lows, highs, slack, terms);
  double low = lows[static_cast<size_t>(best)], high = highs[static_cast<size_t>(best)];
  if (rmin != 0.0 && rmax != 0.0) {  // one-sided: moving the other end tries the same ranges
    for (int64_t i = 0; i < steps; ++i) {
      lows[static_cast<size_t>(i)] = low;
      highs[static_cast<size_t>(i)] = fractions[i] * rmax;
    }
    lows.push_back(low);
    highs.push_back(high);
    best = BestRange(h, spec, lows, highs, slack, terms);
    low = lows[static_cast<size_t>(best)];
    high = highs[static_cast<size_t>(best)];
    for (int64_t i = 0; i < steps; ++i) {
      lows[static_cast<size_t>(i)] = fractions[i] * rmin;
      highs[static_cast<size_t>(i)] = high;
    }
    lows[static_cast<size_t>(steps)] = low;
    highs[static_cast<size_t>(steps)] = high;
    best = BestRange(h, spec, lows, highs, slack, terms);
    low = lows[static_cast<size_t>(best)];
    high = highs[static_cast<size_t>(best)];
  }
  range_out[0] = low;
  range_out[1] = high;
  return 0;
}

}  // extern "C"
