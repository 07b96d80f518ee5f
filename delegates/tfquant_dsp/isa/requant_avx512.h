// The AVX-512 micro-kernels' requantization (RequantArgs: shl_w, srdhm_w, rdbpot_w, + zero
// point, clamp, the two saturating packs) as ONE rounding of a 64-bit sum, for blocks whose
// params allow it: no left shift, right shift e in [1, 23], |zero point| <= 128 and no INT32_MIN
// multiplier (the params TFLite's QuantizeMultiplier gives every real multiplier below 0.5).
// Other blocks use the lane-by-lane definition in isa/hvx_avx512.cc.
//
// Why it is exact: with T = x * m (64 bits), srdhm is s = floor((T + 2^30) / 2^31) and
// rdbpot(s, e) = floor((s + 2^(e-1) - [s < 0]) / 2^e). Nested floors of divisions by powers of
// two merge, and s < 0 exactly when T < -2^30, so
//   rdbpot(srdhm(x, m), e) + zp = floor((T + 2^30 + (1 + 2 zp) * 2^(30+e) - [T < -2^30] * 2^31)
//                                       / 2^(31+e))
// where |sum| < 2^63. Its high dword is the floor by 2^32; an arithmetic shift by e - 1
// finishes. The result is at most 2^30 + 128 in magnitude, so the spec's wrap-around zero-point
// addition never wraps, and saturating it to int8 and then clamping to the activation range
// (itself saturated to int8) equals the spec's clamp-then-pack (saturation is monotonic). Lanes
// with m = 0 give zp for any e (e = 1 is used).
//
// With a ReLU-like clamp (act_min >= zp) the correction term is not needed: it only acts when
// T < -2^30, where s <= -1, and then both rdbpot(s, e) and the uncorrected
// floor((s + 2^(e-1)) / 2^e) are <= 0, so both outputs are act_min.
//
// Cost per 16 lanes: 11 instructions to the int32 result (7 without the correction), plus 1.75
// to narrow, clamp and permute (64 lanes at a time), against 15 + 3 for the lane-by-lane
// definition.
//
// Included by isa/hvx_avx512.cc only, inside its AVX-512 target region.
#ifndef TFQUANT_DSP_ISA_REQUANT_AVX512_H_
#define TFQUANT_DSP_ISA_REQUANT_AVX512_H_

#include <immintrin.h>
#include <stdint.h>

#include "isa/hvx.h"

namespace tfq::isa::avx512 {

struct RqFast {
  __m512i mult, mult_odd;     // m (mul_epi32 reads the even dwords); m of the odd dwords
  __m512i add_even, add_odd;  // 2^30 + (1 + 2 zp) * 2^(30+e) of even / odd dwords, 64-bit
  __m512i shift;              // e - 1 per dword
  __m512i threshold;          // the correction applies where T < threshold (64-bit)
  bool relu;                  // act_min >= zp: no correction term needed
};

// From 16 lanes of params; false if the block needs the general path.
inline bool MakeRqFast(__m512i m, __m512i left, __m512i right, int32_t zero_point,
                       int32_t act_min, RqFast* f) {
  if (zero_point < -128 || zero_point > 128) return false;
  f->relu = act_min >= zero_point;
  const __m512i thirty_one = _mm512_set1_epi32(31);
  left = _mm512_and_si512(left, thirty_one);
  __m512i e = _mm512_and_si512(right, thirty_one);
  const __mmask16 nonzero = _mm512_test_epi32_mask(m, m);
  const __mmask16 bad_e = _mm512_cmplt_epi32_mask(e, _mm512_set1_epi32(1)) |
                          _mm512_cmpgt_epi32_mask(e, _mm512_set1_epi32(23));
  if (_mm512_test_epi32_mask(left, left) != 0 || (nonzero & bad_e) != 0 ||
      _mm512_cmpeq_epi32_mask(m, _mm512_set1_epi32(INT32_MIN)) != 0) {
    return false;
  }
  e = _mm512_mask_mov_epi32(_mm512_set1_epi32(1), nonzero, e);
  const __m512i k = _mm512_set1_epi64(1 + 2 * static_cast<int64_t>(zero_point));
  const __m512i half_unit = _mm512_set1_epi64(int64_t{1} << 30);
  const __m512i thirty = _mm512_set1_epi64(30);
  const __m512i e_even = _mm512_and_si512(e, _mm512_set1_epi64(0xFFFFFFFF));
  const __m512i e_odd = _mm512_srli_epi64(e, 32);
  f->mult = m;
  f->mult_odd = _mm512_srli_epi64(m, 32);
  f->add_even = _mm512_add_epi64(half_unit, _mm512_sllv_epi64(k, _mm512_add_epi64(e_even, thirty)));
  f->add_odd = _mm512_add_epi64(half_unit, _mm512_sllv_epi64(k, _mm512_add_epi64(e_odd, thirty)));
  f->shift = _mm512_sub_epi32(e, _mm512_set1_epi32(1));
  f->threshold = _mm512_set1_epi64(-(int64_t{1} << 30));
  return true;
}

// srdhm(x, m) + zp alone (a right shift of 0) for a caller that passes 2x (x doubled without
// overflow): floor((2x * m + 2^31 + zp * 2^32) / 2^32), the high dword; srdhm rounds half up,
// so there is no correction term.
inline bool MakeRqFastHalf(int32_t m, int32_t zero_point, RqFast* f) {
  if (zero_point < -128 || zero_point > 128 || m == INT32_MIN) return false;
  f->mult = f->mult_odd = _mm512_set1_epi32(m);
  f->add_even = f->add_odd =
      _mm512_set1_epi64((int64_t{1} << 31) + static_cast<int64_t>(zero_point) * (int64_t{1} << 32));
  f->shift = _mm512_setzero_si512();
  f->threshold = _mm512_set1_epi64(INT64_MIN);
  f->relu = true;
  return true;
}

// Channels [off, off + 16) of rq, in order.
inline bool LoadRqFast(const RequantArgs& rq, int off, RqFast* f) {
  return MakeRqFast(_mm512_loadu_si512(rq.multiplier + off), _mm512_loadu_si512(rq.left_shift + off),
                    _mm512_loadu_si512(rq.right_shift + off), rq.zero_point, rq.act_min, f);
}
// Lane i of f from channel off + idx[i] (idx in [0, 32): a permutation of a block's channels).
inline bool LoadRqFastPermuted(const RequantArgs& rq, int off, __m512i idx, RqFast* f) {
  auto gather = [&](const int32_t* p) {
    return _mm512_permutex2var_epi32(_mm512_loadu_si512(p + off), idx,
                                     _mm512_loadu_si512(p + off + 16));
  };
  return MakeRqFast(gather(rq.multiplier), gather(rq.left_shift), gather(rq.right_shift),
                    rq.zero_point, rq.act_min, f);
}

// rdbpot(srdhm(x, m), e) + zp from the 64-bit products te = x * m of the even lanes and to of
// the odd ones, exactly, or (kRelu, for f.relu blocks) as far as the clamp to act_min can tell.
template <bool kRelu>
inline __m512i RescaleFastProducts(__m512i te, __m512i to, const RqFast& f) {
  __m512i ve = _mm512_add_epi64(te, f.add_even);
  __m512i vo = _mm512_add_epi64(to, f.add_odd);
  if (!kRelu) {
    const __m512i two31 = _mm512_set1_epi64(int64_t{1} << 31);
    ve = _mm512_mask_sub_epi64(ve, _mm512_cmplt_epi64_mask(te, f.threshold), ve, two31);
    vo = _mm512_mask_sub_epi64(vo, _mm512_cmplt_epi64_mask(to, f.threshold), vo, two31);
  }
  // Even dwords take the high dword of ve's qword; odd ones keep vo's, already in place.
  const __m512i h = _mm512_mask_shuffle_epi32(vo, 0x5555, ve, static_cast<_MM_PERM_ENUM>(0xF5));
  return _mm512_srav_epi32(h, f.shift);
}
// Of 16 lanes in a register.
template <bool kRelu>
inline __m512i RescaleFast16Reg(__m512i x, const RqFast& f) {
  return RescaleFastProducts<kRelu>(_mm512_mul_epi32(x, f.mult),
                                    _mm512_mul_epi32(_mm512_srli_epi64(x, 32), f.mult_odd), f);
}
// Of the 16 accumulators at x (64-byte aligned). The odd lanes are shifted down in a register:
// a load 4 bytes on would straddle two of the just-stored accumulator vectors, which store
// forwarding cannot serve (a stall of tens of cycles per load).
template <bool kRelu>
inline __m512i RescaleFast16(const int32_t* x, const RqFast& f) {
  return RescaleFast16Reg<kRelu>(_mm512_load_si512(x), f);
}

// The activation range saturated to int8, and output_xor.
struct Clamp8 {
  __m512i lo, hi, flip;
};
inline Clamp8 MakeClamp8(const RequantArgs& rq) {
  auto sat = [](int32_t v) { return static_cast<char>(v < -128 ? -128 : (v > 127 ? 127 : v)); };
  return {_mm512_set1_epi8(sat(rq.act_min)), _mm512_set1_epi8(sat(rq.act_max)),
          _mm512_set1_epi8(static_cast<char>(rq.output_xor))};
}

// 64 int32 lanes to 64 clamped int8 (XOR output_xor). The packs leave, in 128-bit lane k, dword j = the int8 of
// y_j[4k..4k+3]; `order` (a dword permutation) puts them where they belong: kOrderNatural when
// y0..y3 are 64 consecutive channels.
inline __m512i Narrow64(__m512i y0, __m512i y1, __m512i y2, __m512i y3, __m512i order,
                        const Clamp8& c) {
  __m512i b = _mm512_packs_epi16(_mm512_packs_epi32(y0, y1), _mm512_packs_epi32(y2, y3));
  b = _mm512_xor_si512(_mm512_min_epi8(_mm512_max_epi8(b, c.lo), c.hi), c.flip);
  return _mm512_permutexvar_epi32(order, b);
}
inline __m512i OrderNatural() {
  return _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
}

// Stores bytes [0, n) of v (n <= 64).
inline void Store64(int8_t* out, __m512i v, int n) {
  if (n >= 64) {
    _mm512_storeu_si512(out, v);
    return;
  }
  const __mmask64 m = n <= 0 ? 0 : ((uint64_t{1} << n) - 1);
  _mm512_mask_storeu_epi8(out, m, v);
}

}  // namespace tfq::isa::avx512

#endif  // TFQUANT_DSP_ISA_REQUANT_AVX512_H_
