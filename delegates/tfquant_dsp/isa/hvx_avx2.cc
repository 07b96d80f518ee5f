// AVX2 implementation of the emulated ISA (isa/hvx.h). Only the functions below the target
// pragma use AVX2; the library stays loadable on any x86-64 CPU and Best() picks this table only
// when the CPU has AVX2. Each 128-byte vector is four 256-bit registers.
#include <stdint.h>

#include <algorithm>

#include "isa/fixed_point.h"
#include "isa/hvx.h"

#if defined(__x86_64__) && !defined(TFQUANT_DSP_NO_SIMD)
#include <immintrin.h>
#define TFQ_HAVE_AVX2_IMPL 1

#pragma GCC push_options
#pragma GCC target("avx2")
// After the pragma: the compositions instantiated here are compiled for AVX2 and inline the
// vector operations below. compose.h's functions have internal linkage, so this file's AVX2
// copies never stand in for the scalar table's; fixed_point.h (shared inline functions) is
// included above the pragma for the same reason.
#include "isa/compose.h"

namespace tfq::isa {
namespace {

inline __m256i Ld(const void* p, int k) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p) + k);
}
inline void St(void* p, int k, __m256i v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p) + k, v);
}

// u8 x s8 four-way dot product per int32 lane, exact (no int16 saturation): split bytes into
// even/odd 16-bit halves and use the 16-bit multiply-add.
inline __m256i Dot4(__m256i a, __m256i b) {
  const __m256i lo_mask = _mm256_set1_epi16(0x00FF);
  const __m256i a_even = _mm256_and_si256(a, lo_mask);
  const __m256i a_odd = _mm256_srli_epi16(a, 8);
  const __m256i b_even = _mm256_srai_epi16(_mm256_slli_epi16(b, 8), 8);
  const __m256i b_odd = _mm256_srai_epi16(b, 8);
  return _mm256_add_epi32(_mm256_madd_epi16(a_even, b_even), _mm256_madd_epi16(a_odd, b_odd));
}

void VrmpyAcc(VecI32* acc, const VecU8* a, const VecI8* b) {
  for (int k = 0; k < 4; ++k) {
    St(acc->w, k, _mm256_add_epi32(Ld(acc->w, k), Dot4(Ld(a->b, k), Ld(b->b, k))));
  }
}

void VrmpySplatAccN(VecI32* acc, const uint8_t* x, const VecI8* b, int groups) {
  __m256i s0 = Ld(acc->w, 0), s1 = Ld(acc->w, 1), s2 = Ld(acc->w, 2), s3 = Ld(acc->w, 3);
  const __m256i lo_mask = _mm256_set1_epi16(0x00FF);
  for (int g = 0; g < groups; ++g) {
    uint32_t x4;
    __builtin_memcpy(&x4, x + 4 * g, 4);
    const __m256i xa = _mm256_set1_epi32(static_cast<int32_t>(x4));
    const __m256i x_even = _mm256_and_si256(xa, lo_mask);
    const __m256i x_odd = _mm256_srli_epi16(xa, 8);
    const int8_t* w = b[g].b;
#define TFQ_DOT(S, K)                                                                   \
  {                                                                                     \
    const __m256i bw = Ld(w, K);                                                        \
    const __m256i b_even = _mm256_srai_epi16(_mm256_slli_epi16(bw, 8), 8);              \
    const __m256i b_odd = _mm256_srai_epi16(bw, 8);                                     \
    S = _mm256_add_epi32(S, _mm256_add_epi32(_mm256_madd_epi16(x_even, b_even),         \
                                             _mm256_madd_epi16(x_odd, b_odd)));         \
  }
    TFQ_DOT(s0, 0) TFQ_DOT(s1, 1) TFQ_DOT(s2, 2) TFQ_DOT(s3, 3)
#undef TFQ_DOT
  }
  St(acc->w, 0, s0); St(acc->w, 1, s1); St(acc->w, 2, s2); St(acc->w, 3, s3);
}

#define TFQ_BINARY_W(Name, Expr)                                   \
  void Name(VecI32* r, const VecI32* a, const VecI32* b) {         \
    for (int k = 0; k < 4; ++k) {                                  \
      const __m256i x = Ld(a->w, k), y = Ld(b->w, k);              \
      St(r->w, k, (Expr));                                         \
    }                                                              \
  }
TFQ_BINARY_W(AddW, _mm256_add_epi32(x, y))
TFQ_BINARY_W(SubW, _mm256_sub_epi32(x, y))
TFQ_BINARY_W(MulW, _mm256_mullo_epi32(x, y))
TFQ_BINARY_W(ShlW, _mm256_sllv_epi32(x, _mm256_and_si256(y, _mm256_set1_epi32(31))))
TFQ_BINARY_W(MaxW, _mm256_max_epi32(x, y))
TFQ_BINARY_W(MinW, _mm256_min_epi32(x, y))
#undef TFQ_BINARY_W

void MacW(VecI32* acc, const VecI32* a, const VecI32* b) {
  for (int k = 0; k < 4; ++k) {
    St(acc->w, k, _mm256_add_epi32(Ld(acc->w, k), _mm256_mullo_epi32(Ld(a->w, k), Ld(b->w, k))));
  }
}

inline __m256i Srdhm(__m256i a, __m256i b) {
  const __m256i nudge = _mm256_set1_epi64x(int64_t{1} << 30);
  const __m256i even = _mm256_add_epi64(_mm256_mul_epi32(a, b), nudge);
  const __m256i odd = _mm256_add_epi64(
      _mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32)), nudge);
  // Bits 31..62 of each 64-bit sum are the result: low half from `even` shifted right by 31,
  // high half from `odd` shifted left by 1.
  const __m256i r = _mm256_blend_epi32(_mm256_srli_epi64(even, 31), _mm256_slli_epi64(odd, 1),
                                       0xAA);
  const __m256i min = _mm256_set1_epi32(INT32_MIN);
  const __m256i overflow =
      _mm256_and_si256(_mm256_cmpeq_epi32(a, b), _mm256_cmpeq_epi32(a, min));
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(INT32_MAX), overflow);
}

void SrdhmW(VecI32* r, const VecI32* a, const VecI32* b) {
  for (int k = 0; k < 4; ++k) St(r->w, k, Srdhm(Ld(a->w, k), Ld(b->w, k)));
}

void RdbpotW(VecI32* r, const VecI32* a, const VecI32* e) {
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i zero = _mm256_setzero_si256();
  for (int k = 0; k < 4; ++k) {
    const __m256i x = Ld(a->w, k);
    const __m256i s = _mm256_and_si256(Ld(e->w, k), _mm256_set1_epi32(31));
    const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, s), one);
    const __m256i remainder = _mm256_and_si256(x, mask);
    // threshold = (mask >> 1) + (x < 0); cmpgt gives -1 for true, so subtract it.
    const __m256i threshold =
        _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_cmpgt_epi32(zero, x));
    const __m256i q = _mm256_srav_epi32(x, s);
    St(r->w, k, _mm256_sub_epi32(q, _mm256_cmpgt_epi32(remainder, threshold)));
  }
}

void PackWHSat(VecI16* r, const VecI32* lo, const VecI32* hi) {
  __m256i out[4];
  for (int k = 0; k < 2; ++k) {
    out[k] = _mm256_permute4x64_epi64(_mm256_packs_epi32(Ld(lo->w, 2 * k), Ld(lo->w, 2 * k + 1)),
                                      0xD8);
    out[2 + k] = _mm256_permute4x64_epi64(
        _mm256_packs_epi32(Ld(hi->w, 2 * k), Ld(hi->w, 2 * k + 1)), 0xD8);
  }
  for (int k = 0; k < 4; ++k) St(r->h, k, out[k]);
}

void PackHBSat(VecI8* r, const VecI16* lo, const VecI16* hi) {
  __m256i out[4];
  for (int k = 0; k < 2; ++k) {
    out[k] = _mm256_permute4x64_epi64(_mm256_packs_epi16(Ld(lo->h, 2 * k), Ld(lo->h, 2 * k + 1)),
                                      0xD8);
    out[2 + k] = _mm256_permute4x64_epi64(
        _mm256_packs_epi16(Ld(hi->h, 2 * k), Ld(hi->h, 2 * k + 1)), 0xD8);
  }
  for (int k = 0; k < 4; ++k) St(r->b, k, out[k]);
}

void UnpackBW(VecI32* r, const int8_t* p) {
  for (int k = 0; k < 4; ++k) {
    St(r->w, k, _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * k))));
  }
}

constexpr VectorPrims kPrims = {VrmpySplatAccN, AddW, MacW, ShlW, SrdhmW, RdbpotW,
                                MaxW, MinW, PackWHSat, PackHBSat, UnpackBW};

#include "isa/requant_avx2.inc"
#include "isa/gemm_avx2.inc"
#include "isa/depthwise_avx2.inc"
#include "isa/elementwise_avx2.inc"

// The other micro-kernels: the compositions of isa/compose.h over this file's vector operations
// (compiled here, under the AVX2 target, so the calls inline).
void MaxBN(int8_t* acc, const int8_t* x, int n) {
  int i = 0;
  for (; i + 32 <= n; i += 32) St(acc + i, 0, _mm256_max_epi8(Ld(acc + i, 0), Ld(x + i, 0)));
  ScalarMaxBN(acc + i, x + i, n - i);
}

}  // namespace
}  // namespace tfq::isa

#pragma GCC pop_options

namespace tfq::isa {
namespace {
const Ops kAvx2 = {
    "avx2", VrmpyAcc, VrmpySplatAccN, AddW, SubW, MulW, MacW, ShlW, SrdhmW, RdbpotW,
    MaxW,   MinW,     PackWHSat,      PackHBSat, UnpackBW,   GemmRequant, DepthwiseRows,
    AddRequant, MaxBN, QuantizeF32,
};
}  // namespace
const Ops* Avx2() { return &kAvx2; }
}  // namespace tfq::isa

#else
namespace tfq::isa {
const Ops* Avx2() { return nullptr; }
}  // namespace tfq::isa
#endif
