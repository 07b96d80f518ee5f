// AVX-512 (F + BW + VNNI) implementation of the emulated ISA (isa/hvx.h). A 128-byte vector is
// two 512-bit registers; vrmpy maps onto VPDPBUSD (u8 x s8 four-way dot product into int32, no
// intermediate saturation). Only the functions below the target pragma use AVX-512; Best()
// picks this table only when the CPU has all three extensions.
#include <immintrin.h>
#include <stdint.h>

#include "isa/hvx.h"

#if defined(__x86_64__) && !defined(TFQUANT_DSP_NO_SIMD)

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vnni")
// GCC 12 reports its own _mm512_undefined_* helpers as uninitialised (a known false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace tfq::isa {
namespace {

inline __m512i Ld(const void* p, int k) {
  return _mm512_loadu_si512(reinterpret_cast<const __m512i*>(p) + k);
}
inline void St(void* p, int k, __m512i v) {
  _mm512_storeu_si512(reinterpret_cast<__m512i*>(p) + k, v);
}

void VrmpyAcc(VecI32* acc, const VecU8* a, const VecI8* b) {
  for (int k = 0; k < 2; ++k) {
    St(acc->w, k, _mm512_dpbusd_epi32(Ld(acc->w, k), Ld(a->b, k), Ld(b->b, k)));
  }
}

void VrmpySplatAccN(VecI32* acc, const uint8_t* x, const VecI8* b, int groups) {
  __m512i s0 = Ld(acc->w, 0), s1 = Ld(acc->w, 1);
  for (int g = 0; g < groups; ++g) {
    uint32_t x4;
    __builtin_memcpy(&x4, x + 4 * g, 4);
    const __m512i xa = _mm512_set1_epi32(static_cast<int32_t>(x4));
    s0 = _mm512_dpbusd_epi32(s0, xa, Ld(b[g].b, 0));
    s1 = _mm512_dpbusd_epi32(s1, xa, Ld(b[g].b, 1));
  }
  St(acc->w, 0, s0);
  St(acc->w, 1, s1);
}

#define TFQ_BINARY_W(Name, Expr)                                   \
  void Name(VecI32* r, const VecI32* a, const VecI32* b) {         \
    for (int k = 0; k < 2; ++k) {                                  \
      const __m512i x = Ld(a->w, k), y = Ld(b->w, k);              \
      St(r->w, k, (Expr));                                         \
    }                                                              \
  }
TFQ_BINARY_W(AddW, _mm512_add_epi32(x, y))
TFQ_BINARY_W(SubW, _mm512_sub_epi32(x, y))
TFQ_BINARY_W(MulW, _mm512_mullo_epi32(x, y))
TFQ_BINARY_W(ShlW, _mm512_sllv_epi32(x, _mm512_and_si512(y, _mm512_set1_epi32(31))))
TFQ_BINARY_W(MaxW, _mm512_max_epi32(x, y))
TFQ_BINARY_W(MinW, _mm512_min_epi32(x, y))
#undef TFQ_BINARY_W

void MacW(VecI32* acc, const VecI32* a, const VecI32* b) {
  for (int k = 0; k < 2; ++k) {
    St(acc->w, k, _mm512_add_epi32(Ld(acc->w, k), _mm512_mullo_epi32(Ld(a->w, k), Ld(b->w, k))));
  }
}

inline __m512i Srdhm(__m512i a, __m512i b) {
  const __m512i nudge = _mm512_set1_epi64(int64_t{1} << 30);
  const __m512i even = _mm512_add_epi64(_mm512_mul_epi32(a, b), nudge);
  const __m512i odd = _mm512_add_epi64(
      _mm512_mul_epi32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(b, 32)), nudge);
  const __m512i r = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 31),
                                            _mm512_slli_epi64(odd, 1));
  const __mmask16 overflow = _mm512_cmpeq_epi32_mask(a, b) &
                             _mm512_cmpeq_epi32_mask(a, _mm512_set1_epi32(INT32_MIN));
  return _mm512_mask_mov_epi32(r, overflow, _mm512_set1_epi32(INT32_MAX));
}

void SrdhmW(VecI32* r, const VecI32* a, const VecI32* b) {
  for (int k = 0; k < 2; ++k) St(r->w, k, Srdhm(Ld(a->w, k), Ld(b->w, k)));
}

void RdbpotW(VecI32* r, const VecI32* a, const VecI32* e) {
  const __m512i one = _mm512_set1_epi32(1);
  for (int k = 0; k < 2; ++k) {
    const __m512i x = Ld(a->w, k);
    const __m512i s = _mm512_and_si512(Ld(e->w, k), _mm512_set1_epi32(31));
    const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, s), one);
    const __m512i remainder = _mm512_and_si512(x, mask);
    const __mmask16 negative = _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512());
    const __m512i half = _mm512_srai_epi32(mask, 1);
    const __m512i threshold = _mm512_mask_add_epi32(half, negative, half, one);
    const __m512i q = _mm512_srav_epi32(x, s);
    const __mmask16 up = _mm512_cmpgt_epi32_mask(remainder, threshold);
    St(r->w, k, _mm512_mask_add_epi32(q, up, q, one));
  }
}

void PackWHSat(VecI16* r, const VecI32* lo, const VecI32* hi) {
  __m256i out[4];
  out[0] = _mm512_cvtsepi32_epi16(Ld(lo->w, 0));
  out[1] = _mm512_cvtsepi32_epi16(Ld(lo->w, 1));
  out[2] = _mm512_cvtsepi32_epi16(Ld(hi->w, 0));
  out[3] = _mm512_cvtsepi32_epi16(Ld(hi->w, 1));
  for (int k = 0; k < 4; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(r->h) + k, out[k]);
}

void PackHBSat(VecI8* r, const VecI16* lo, const VecI16* hi) {
  __m256i out[4];
  out[0] = _mm512_cvtsepi16_epi8(Ld(lo->h, 0));
  out[1] = _mm512_cvtsepi16_epi8(Ld(lo->h, 1));
  out[2] = _mm512_cvtsepi16_epi8(Ld(hi->h, 0));
  out[3] = _mm512_cvtsepi16_epi8(Ld(hi->h, 1));
  for (int k = 0; k < 4; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(r->b) + k, out[k]);
}

void UnpackBW(VecI32* r, const int8_t* p) {
  for (int k = 0; k < 2; ++k) {
    St(r->w, k, _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k))));
  }
}

}  // namespace
}  // namespace tfq::isa

#pragma GCC pop_options

namespace tfq::isa {
namespace {
const Ops kAvx512 = {
    "avx512", VrmpyAcc, VrmpySplatAccN, AddW, SubW, MulW, MacW, ShlW, SrdhmW, RdbpotW,
    MaxW,     MinW,     PackWHSat,      PackHBSat, UnpackBW,
};
}  // namespace
const Ops* Avx512() { return &kAvx512; }
}  // namespace tfq::isa

#else
namespace tfq::isa {
const Ops* Avx512() { return nullptr; }
}  // namespace tfq::isa
#endif
