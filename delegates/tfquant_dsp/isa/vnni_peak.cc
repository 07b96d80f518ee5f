// The measured int8 dot-product peak of one core (isa/hvx.h MeasureVnniPeak): what the
// profile's "share of the measured peak" is taken against, instead of a nominal
// instructions-per-cycle figure at a nominal clock.
#include <stdint.h>

#include <chrono>
#include <initializer_list>

#include "isa/hvx.h"

#if defined(__x86_64__) && !defined(TFQUANT_DSP_NO_SIMD)
#include <immintrin.h>

namespace tfq::isa {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Enough independent accumulators to cover VPDPBUSD's latency (4-5 cycles) at up to two
// issues per cycle.
constexpr int kChains = 12;
constexpr int kInner = 1000;  // dot products per chain between clock reads

// The timed loop of MeasureVnniPeak for vector type V and its dot-product instruction DOT:
// after a warm-up (a tenth of the time: the vector unit's power-up and, on some CPUs, an
// AVX-512 clock change), dot products per second over all chains for `seconds`, in `rate`.
// A macro, not a template: the body must be compiled under its ISA's target pragma.
#define TFQ_VNNI_PEAK_LOOP(V, SPLAT, DOT, LANE0)                               \
  volatile int32_t seed = 0x01020304; /* opaque: nothing folds at compile time */ \
  const V a = SPLAT(seed), b = SPLAT(seed + 1);                                \
  V acc[kChains];                                                              \
  for (auto& v : acc) v = SPLAT(seed);                                         \
  double rate = 0;                                                             \
  for (const double budget : {seconds / 10, seconds}) {                        \
    const auto start = Clock::now();                                           \
    int64_t dots = 0;                                                          \
    double elapsed;                                                            \
    do {                                                                       \
      for (int i = 0; i < kInner; ++i) {                                       \
        _Pragma("GCC unroll 16") for (int j = 0; j < kChains; ++j) {           \
          acc[j] = DOT(acc[j], a, b);                                          \
        }                                                                      \
      }                                                                        \
      dots += static_cast<int64_t>(kInner) * kChains;                          \
      elapsed = Since(start);                                                  \
    } while (elapsed < budget);                                                \
    rate = dots / elapsed;                                                     \
  }                                                                            \
  volatile int32_t sink = 0;                                                   \
  for (const auto& v : acc) sink = sink + LANE0(v)

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vnni")
double PeakZmm(double seconds) {  // 64 MACs per dot product
  TFQ_VNNI_PEAK_LOOP(__m512i, _mm512_set1_epi32, _mm512_dpbusd_epi32, _mm512_cvtsi512_si32);
  return 64 * rate;
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,avxvnni")
double PeakYmm(double seconds) {  // 32 MACs per dot product
  TFQ_VNNI_PEAK_LOOP(__m256i, _mm256_set1_epi32, _mm256_dpbusd_avx_epi32, _mm256_cvtsi256_si32);
  return 32 * rate;
}
#pragma GCC pop_options

#undef TFQ_VNNI_PEAK_LOOP

}  // namespace

double MeasureVnniPeak(double seconds, const char** form) {
  if (CpuHasAvx512Vnni()) {
    if (form) *form = "zmm";
    return PeakZmm(seconds) / 1e9;
  }
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avxvnni")) {
    if (form) *form = "ymm";
    return PeakYmm(seconds) / 1e9;
  }
  if (form) *form = "none";
  return 0.0;
}

}  // namespace tfq::isa

#else

namespace tfq::isa {
double MeasureVnniPeak(double, const char** form) {
  if (form) *form = "none";
  return 0.0;
}
}  // namespace tfq::isa

#endif
