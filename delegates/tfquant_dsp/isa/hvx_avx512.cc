// AVX-512 (F + BW + VNNI) implementation of the emulated ISA (isa/hvx.h). A 128-byte vector is
// two 512-bit registers; vrmpy maps onto VPDPBUSD (u8 x s8 four-way dot product into int32, no
// intermediate saturation). Only the functions below the target pragma use AVX-512; Best()
// picks this table only when the CPU has all three extensions.
#include <stdint.h>

#include "isa/hvx.h"

#if defined(__x86_64__) && !defined(TFQUANT_DSP_NO_SIMD)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vnni")
// GCC 12 reports its own _mm512_undefined_* helpers as uninitialised (a known false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "isa/requant_avx512.h"

namespace tfq::isa {
namespace {

using avx512::RqFast;

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

#include "isa/gemm_avx512.inc"
#include "isa/depthwise_avx512.inc"

// ---- ADD, MAX, QUANTIZE -------------------------------------------------------------------------

// rdbpot_w by a constant exponent e with mask = 2^e - 1 and half = mask >> 1 prepared.
inline __m512i RdbpotConst(__m512i x, __m512i e, __m512i mask, __m512i half) {
  const __m512i remainder = _mm512_add_epi32(_mm512_and_si512(x, mask), _mm512_srai_epi32(x, 31));
  const __m512i q = _mm512_srav_epi32(x, e);
  return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(remainder, half), q,
                               _mm512_set1_epi32(1));
}

struct ScaleConst {
  __m512i offset, shl, mult, mult_odd, e, mask, half;
  bool min_mult;  // the multiplier is INT32_MIN: srdhm_w's saturating case can occur
  ScaleConst(int32_t off, int32_t left, int32_t m, int32_t right) {
    const __m512i one = _mm512_set1_epi32(1);
    offset = _mm512_set1_epi32(off);
    shl = _mm512_set1_epi32(left & 31);
    mult = _mm512_set1_epi32(m);
    mult_odd = _mm512_srli_epi64(mult, 32);
    e = _mm512_set1_epi32(right & 31);
    mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, e), one);
    half = _mm512_srai_epi32(mask, 1);
    min_mult = m == INT32_MIN;
  }
  __m512i Apply(__m512i x) const {
    x = _mm512_sllv_epi32(_mm512_add_epi32(x, offset), shl);
    if (min_mult) return RdbpotConst(Srdhm(x, mult), e, mask, half);
    const __m512i nudge = _mm512_set1_epi64(int64_t{1} << 30);
    const __m512i even = _mm512_add_epi64(_mm512_mul_epi32(x, mult), nudge);
    const __m512i odd =
        _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), mult_odd), nudge);
    const __m512i r = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 31),
                                              _mm512_slli_epi64(odd, 1));
    return RdbpotConst(r, e, mask, half);
  }
};

// ADD with each of its three rescalings as one rounding (isa/requant_avx512.h): the inputs'
// (no zero point, no clamp after them) exact, the output's with its zero point folded in.
// a_shl / b_shl: the inputs' left shifts (one more for an input scaled by MakeRqFastHalf).
template <bool kRelu>
void AddRequantFast(const AddArgs& g, const RqFast& fa, const RqFast& fb, const RqFast& fo,
                    int a_shift, int b_shift) {
  const __m512i a_offset = _mm512_set1_epi32(g.a_offset), b_offset = _mm512_set1_epi32(g.b_offset);
  const __m512i a_shl = _mm512_set1_epi32(a_shift), b_shl = _mm512_set1_epi32(b_shift);
  const __m512i out_shl = _mm512_set1_epi32(g.out_shl & 31);
  const __m512i lo = _mm512_set1_epi32(g.act_min), hi = _mm512_set1_epi32(g.act_max);
  for (int i = 0; i < g.n; i += 16) {
    const int cnt = g.n - i < 16 ? g.n - i : 16;
    const __mmask64 m = cnt == 16 ? 0xFFFF : ((uint64_t{1} << cnt) - 1);
    __m512i xa = _mm512_cvtepi8_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(m, g.a + i)));
    __m512i xb = _mm512_cvtepi8_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(m, g.b + i)));
    xa = avx512::RescaleFast16Reg<false>(_mm512_sllv_epi32(_mm512_add_epi32(xa, a_offset), a_shl), fa);
    xb = avx512::RescaleFast16Reg<false>(_mm512_sllv_epi32(_mm512_add_epi32(xb, b_offset), b_shl), fb);
    __m512i x = _mm512_sllv_epi32(_mm512_add_epi32(xa, xb), out_shl);
    x = _mm512_min_epi32(_mm512_max_epi32(avx512::RescaleFast16Reg<kRelu>(x, fo), lo), hi);
    _mm512_mask_storeu_epi8(g.out + i, m, _mm512_castsi128_si512(_mm512_cvtsepi32_epi8(x)));
  }
}

// An input's rescaling as one rounding: a right shift >= 1 (MakeRqFast), or none, with the
// input doubled by one more left shift when (x + offset) * 2^(shl + 1) cannot overflow (TFLite's
// larger-scale input has the multiplier 0.5: shift 0).
inline bool AddInputFast(int32_t offset, int32_t shl, int32_t mult, int32_t rshift, RqFast* f,
                         int* shift) {
  shl &= 31;
  *shift = shl;
  if ((rshift & 31) == 0) {
    const int64_t reach = (128 + (offset < 0 ? -int64_t{offset} : int64_t{offset})) << (shl + 1);
    *shift = shl + 1;
    return reach <= (int64_t{1} << 31) && avx512::MakeRqFastHalf(mult, 0, f);
  }
  return avx512::MakeRqFast(_mm512_set1_epi32(mult), _mm512_setzero_si512(),
                            _mm512_set1_epi32(rshift), 0, INT32_MIN, f);
}

void AddRequant(const AddArgs& g) {
  RqFast fa, fb, fo;
  int a_shift, b_shift;
  if (AddInputFast(g.a_offset, g.a_shl, g.a_mult, g.a_rshift, &fa, &a_shift) &&
      AddInputFast(g.b_offset, g.b_shl, g.b_mult, g.b_rshift, &fb, &b_shift) &&
      avx512::MakeRqFast(_mm512_set1_epi32(g.out_mult), _mm512_setzero_si512(),
                         _mm512_set1_epi32(g.out_rshift), g.out_offset, g.act_min, &fo)) {
    if (fo.relu) {
      AddRequantFast<true>(g, fa, fb, fo, a_shift, b_shift);
    } else {
      AddRequantFast<false>(g, fa, fb, fo, a_shift, b_shift);
    }
    return;
  }
  const ScaleConst sa(g.a_offset, g.a_shl, g.a_mult, g.a_rshift);
  const ScaleConst sb(g.b_offset, g.b_shl, g.b_mult, g.b_rshift);
  const ScaleConst so(0, g.out_shl, g.out_mult, g.out_rshift);
  const __m512i zp = _mm512_set1_epi32(g.out_offset), lo = _mm512_set1_epi32(g.act_min),
                hi = _mm512_set1_epi32(g.act_max);
  for (int i = 0; i < g.n; i += 16) {
    const int cnt = g.n - i < 16 ? g.n - i : 16;
    const __mmask64 m = cnt == 16 ? 0xFFFF : ((uint64_t{1} << cnt) - 1);
    const __m512i xa = _mm512_cvtepi8_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(m, g.a + i)));
    const __m512i xb = _mm512_cvtepi8_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(m, g.b + i)));
    __m512i x = so.Apply(_mm512_add_epi32(sa.Apply(xa), sb.Apply(xb)));
    x = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(x, zp), lo), hi);
    _mm512_mask_storeu_epi8(g.out + i, m, _mm512_castsi128_si512(_mm512_cvtsepi32_epi8(x)));
  }
}

void MaxBN(int8_t* acc, const int8_t* x, int n) {
  for (int i = 0; i < n; i += 64) {
    const int cnt = n - i < 64 ? n - i : 64;
    const __mmask64 m = cnt == 64 ? ~__mmask64{0} : ((__mmask64{1} << cnt) - 1);
    _mm512_mask_storeu_epi8(acc + i, m, _mm512_max_epi8(_mm512_maskz_loadu_epi8(m, acc + i),
                                                        _mm512_maskz_loadu_epi8(m, x + i)));
  }
}

// QUANTIZE: clamping to +-1e6 first keeps the truncation exact and maps NaN to the low end
// (MAXPS returns its second operand for NaN), as the scalar definition does; every value
// beyond 1e6 in magnitude saturates either way.
void QuantizeF32(const float* in, int n, float scale, int32_t zero_point, int8_t* out) {
  const __m512 s = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-1e6f), hi = _mm512_set1_ps(1e6f);
  const __m512 half = _mm512_set1_ps(0.5f), neg_half = _mm512_set1_ps(-0.5f);
  const __m512i zp = _mm512_set1_epi32(zero_point), one = _mm512_set1_epi32(1);
  for (int i = 0; i < n; i += 16) {
    const int cnt = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>(cnt == 16 ? 0xFFFF : ((1u << cnt) - 1));
    __m512 x = _mm512_div_ps(_mm512_maskz_loadu_ps(m, in + i), s);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512i r = _mm512_cvttps_epi32(x);
    const __m512 d = _mm512_sub_ps(x, _mm512_cvtepi32_ps(r));
    r = _mm512_mask_add_epi32(r, _mm512_cmp_ps_mask(d, half, _CMP_GE_OQ), r, one);
    r = _mm512_mask_sub_epi32(r, _mm512_cmp_ps_mask(d, neg_half, _CMP_LE_OQ), r, one);
    r = _mm512_add_epi32(r, zp);
    _mm512_mask_storeu_epi8(out + i, m, _mm512_castsi128_si512(_mm512_cvtsepi32_epi8(r)));
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
    GemmRequant, DepthwiseRows, AddRequant, MaxBN, QuantizeF32,
};
}  // namespace
const Ops* Avx512() { return &kAvx512; }
}  // namespace tfq::isa

#else
namespace tfq::isa {
const Ops* Avx512() { return nullptr; }
}  // namespace tfq::isa
#endif
