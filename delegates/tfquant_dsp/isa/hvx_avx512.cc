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

// ---- micro-kernels ------------------------------------------------------------------------------
// Register-blocked versions of the compositions in isa/compose.h (same bits, tested in
// tests/isa_test.cc): accumulators stay in zmm registers across the whole reduction, then go
// (GEMM tiles on the fast path: straight; else through a small buffer) to the
// requantization: one rounding of a 64-bit sum
// (isa/requant_avx512.h) for the blocks whose params allow it, else the lane-by-lane
// definition below, and one (masked) store per row and block pair or pixel.

// Requantization of 16 lanes, general params (the per-lane semantics of shl_w, srdhm_w, rdbpot_w, add_w, max_w,
// min_w and the two saturating packs, which on a value already clamped into the int8 range,
// or not, equal one saturating narrowing).
// Per-channel values that depend only on the params are computed once per block (LoadRq);
// the left shift and the INT32_MIN x INT32_MIN saturation are skipped when no lane needs them.
struct Rq16 {
  __m512i left, mult, mult_odd, shift, mask, half, zp, lo, hi;
  bool any_left, any_min_mult;
};
inline Rq16 LoadRq(const RequantArgs& rq, int block, int half) {
  const int off = block * 32 + half * 16;
  const __m512i one = _mm512_set1_epi32(1), thirty_one = _mm512_set1_epi32(31);
  Rq16 q;
  q.left = _mm512_and_si512(_mm512_loadu_si512(rq.left_shift + off), thirty_one);
  q.mult = _mm512_loadu_si512(rq.multiplier + off);
  q.mult_odd = _mm512_srli_epi64(q.mult, 32);
  q.shift = _mm512_and_si512(_mm512_loadu_si512(rq.right_shift + off), thirty_one);
  q.mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, q.shift), one);
  q.half = _mm512_srai_epi32(q.mask, 1);
  q.zp = _mm512_set1_epi32(rq.zero_point);
  q.lo = _mm512_set1_epi32(rq.act_min);
  q.hi = _mm512_set1_epi32(rq.act_max);
  q.any_left = _mm512_test_epi32_mask(q.left, q.left) != 0;
  q.any_min_mult = _mm512_cmpeq_epi32_mask(q.mult, _mm512_set1_epi32(INT32_MIN)) != 0;
  return q;
}
// shl_w, srdhm_w, rdbpot_w of 16 lanes (the requantization before the zero point).
inline __m512i Rescale16(__m512i x, const Rq16& q) {
  if (q.any_left) x = _mm512_sllv_epi32(x, q.left);
  // srdhm_w with the multiplier's odd lanes prepared.
  const __m512i nudge = _mm512_set1_epi64(int64_t{1} << 30);
  const __m512i even = _mm512_add_epi64(_mm512_mul_epi32(x, q.mult), nudge);
  const __m512i odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), q.mult_odd),
                                       nudge);
  __m512i r = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 31),
                                      _mm512_slli_epi64(odd, 1));
  if (q.any_min_mult) {
    const __mmask16 overflow = _mm512_cmpeq_epi32_mask(x, q.mult) &
                               _mm512_cmpeq_epi32_mask(x, _mm512_set1_epi32(INT32_MIN));
    r = _mm512_mask_mov_epi32(r, overflow, _mm512_set1_epi32(INT32_MAX));
  }
  // rdbpot_w: round up when remainder > half + (r < 0), i.e. remainder + (r >> 31) > half.
  const __m512i remainder = _mm512_add_epi32(_mm512_and_si512(r, q.mask),
                                             _mm512_srai_epi32(r, 31));
  x = _mm512_srav_epi32(r, q.shift);
  return _mm512_mask_add_epi32(x, _mm512_cmpgt_epi32_mask(remainder, q.half), x,
                               _mm512_set1_epi32(1));
}
inline __m128i Requant16(__m512i x, const Rq16& q) {
  x = _mm512_add_epi32(Rescale16(x, q), q.zp);
  x = _mm512_min_epi32(_mm512_max_epi32(x, q.lo), q.hi);
  return _mm512_cvtsepi32_epi8(x);
}

// 32 lanes at once, when the clamp bounds fit int16 (Int16Tail): after the (wrap-around)
// int32 zero-point addition, narrowing to int16 with saturation and then clamping gives the
// same int8 as clamping in int32 and then narrowing (saturation is monotonic, and a value that
// saturates int16 lies beyond the int16 bounds either way).
struct Tail16 {
  __m512i zp, lo, hi;  // zp as int32 lanes, lo / hi as int16 lanes
};
inline bool Int16Tail(const RequantArgs& rq) {
  auto fits = [](int32_t v) { return v >= -32768 && v <= 32767; };
  return fits(rq.act_min) && fits(rq.act_max);
}
inline Tail16 LoadTail16(const RequantArgs& rq) {
  return {_mm512_set1_epi32(rq.zero_point),
          _mm512_set1_epi16(static_cast<int16_t>(rq.act_min)),
          _mm512_set1_epi16(static_cast<int16_t>(rq.act_max))};
}
// Narrows 32 int32 lanes (y0: channels 0-15, y1: 16-31, zero point added) to int8, clamped.
inline __m256i Narrow32(__m512i y0, __m512i y1, const Tail16& t) {
  // packs interleaves per 128-bit lane k: y0[4k..4k+3], y1[4k..4k+3].
  __m512i h = _mm512_packs_epi32(y0, y1);
  h = _mm512_min_epi16(_mm512_max_epi16(h, t.lo), t.hi);
  const __m512i b = _mm512_packs_epi16(h, h);  // lane k: dword 0 = x0 group k, dword 1 = x1's
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, b));
}
inline __m256i Requant32(__m512i x0, __m512i x1, const Rq16& q0, const Rq16& q1,
                         const Tail16& t) {
  return Narrow32(_mm512_add_epi32(Rescale16(x0, q0), t.zp),
                  _mm512_add_epi32(Rescale16(x1, q1), t.zp), t);
}

inline void Store32v(int8_t* out, __m256i v, int n, uint8_t flip = 0) {
  if (flip) v = _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(flip)));
  if (n >= 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v);
    return;
  }
  const __mmask64 m = n <= 0 ? 0 : ((uint64_t{1} << n) - 1);
  _mm512_mask_storeu_epi8(out, m, _mm512_castsi256_si512(v));
}
inline void Store32(int8_t* out, __m128i lo, __m128i hi, int n, uint8_t flip) {
  if (flip) {
    lo = _mm_xor_si128(lo, _mm_set1_epi8(static_cast<char>(flip)));
    hi = _mm_xor_si128(hi, _mm_set1_epi8(static_cast<char>(flip)));
  }
  if (n >= 32) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), lo);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), hi);
    return;
  }
  const __mmask64 m = n <= 0 ? 0 : ((uint64_t{1} << n) - 1);
  const __m512i v = _mm512_inserti32x4(_mm512_castsi128_si512(lo), hi, 1);
  _mm512_mask_storeu_epi8(out, m, v);
}

inline __m512i Bcast4(const uint8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The fast requantization constants of one block (isa/requant_avx512.h), prepared once per
// block and GEMM call.
struct BlockRq {
  bool fast;
  RqFast f[2];
};
inline void LoadBlockRq(const RequantArgs& rq, int blk, BlockRq* b) {
  b->fast = avx512::LoadRqFast(rq, 32 * blk, &b->f[0]) && avx512::LoadRqFast(rq, 32 * blk + 16, &b->f[1]);
}

// Requantizes rows x blocks x 32 accumulators (acc[r][b][32], then 16 readable lanes more)
// by the lane-by-lane definition and stores them (the tiles the fast path cannot take).
__attribute__((noinline)) void RequantRows(const int32_t* acc, int rows, int blocks,
                                           const GemmArgs& g, int blk0, int8_t* out) {
  for (int b = 0; b < blocks; ++b) {
    const int blk = blk0 + b;
    const int n = g.channels - 32 * blk;
    const Rq16 q0 = LoadRq(g.rq, blk, 0), q1 = LoadRq(g.rq, blk, 1);
    if (Int16Tail(g.rq)) {
      const Tail16 t = LoadTail16(g.rq);
      for (int r = 0; r < rows; ++r) {
        const int32_t* a = acc + (static_cast<size_t>(r) * blocks + b) * 32;
        Store32v(out + r * g.out_stride + 32 * blk,
                 Requant32(_mm512_load_si512(a), _mm512_load_si512(a + 16), q0, q1, t), n,
                 g.rq.output_xor);
      }
      continue;
    }
    for (int r = 0; r < rows; ++r) {
      const int32_t* a = acc + (static_cast<size_t>(r) * blocks + b) * 32;
      Store32(out + r * g.out_stride + 32 * blk, Requant16(_mm512_load_si512(a), q0),
              Requant16(_mm512_load_si512(a + 16), q1), n, g.rq.output_xor);
    }
  }
}

// The fast requantization (isa/requant_avx512.h) of a GEMM tile's accumulators straight from
// their registers, inlined after the reduction: no round trip through a buffer and no call
// (all zmm registers are caller-saved), which made up a large part of the cost of small-K
// pointwise convolutions. The constants are read through an opaque pointer, as memory
// operands: hoisted into registers above the reduction loop, they would push accumulators out.
template <bool kRelu, int R, int B>
__attribute__((always_inline)) inline void RequantTileRegsT(const __m512i (&acc)[R][2 * B],
                                                            const GemmArgs& g, int blk0,
                                                            int8_t* out, const BlockRq* brq) {
  const avx512::Clamp8 clamp = avx512::MakeClamp8(g.rq);
  const __m512i order = avx512::OrderNatural();
  const int n = g.channels - 32 * blk0 < 32 * B ? g.channels - 32 * blk0 : 32 * B;
  const ptrdiff_t stride = g.out_stride;
  out += 32 * blk0;
  asm("" : "+r"(brq));
  if (B == 1) {  // two rows per narrowing
#pragma GCC unroll 8
    for (int r = 0; r < R; r += 2) {
      const __m512i y0 = avx512::RescaleFast16Reg<kRelu>(acc[r][0], brq[0].f[0]);
      const __m512i y1 = avx512::RescaleFast16Reg<kRelu>(acc[r][1], brq[0].f[1]);
      __m512i y2 = _mm512_setzero_si512(), y3 = _mm512_setzero_si512();
      if (r + 1 < R) {
        y2 = avx512::RescaleFast16Reg<kRelu>(acc[r + 1][0], brq[0].f[0]);
        y3 = avx512::RescaleFast16Reg<kRelu>(acc[r + 1][1], brq[0].f[1]);
      }
      const __m512i v = avx512::Narrow64(y0, y1, y2, y3, order, clamp);
      int8_t* o = out + r * stride;
      if (n == 32 && stride == 32 && r + 1 < R) {
        _mm512_storeu_si512(o, v);
        continue;
      }
      avx512::Store64(o, v, n);
      if (r + 1 < R) avx512::Store64(o + stride, _mm512_shuffle_i64x2(v, v, 0xEE), n);
    }
    return;
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const __m512i y0 = avx512::RescaleFast16Reg<kRelu>(acc[r][0], brq[0].f[0]);
    const __m512i y1 = avx512::RescaleFast16Reg<kRelu>(acc[r][1], brq[0].f[1]);
    const __m512i y2 = avx512::RescaleFast16Reg<kRelu>(acc[r][2], brq[1].f[0]);
    const __m512i y3 = avx512::RescaleFast16Reg<kRelu>(acc[r][3], brq[1].f[1]);
    avx512::Store64(out + r * stride, avx512::Narrow64(y0, y1, y2, y3, order, clamp), n);
  }
}
template <int R, int B>
__attribute__((always_inline)) inline void RequantTileRegs(const __m512i (&acc)[R][2 * B],
                                                           const GemmArgs& g, int blk0,
                                                           int8_t* out, const BlockRq* brq) {
  if (brq[0].f[0].relu) {
    RequantTileRegsT<true, R, B>(acc, g, blk0, out, brq);
  } else {
    RequantTileRegsT<false, R, B>(acc, g, blk0, out, brq);
  }
}

// R rows x B blocks (32 channels each = 2 zmm) of accumulators; kSegmented: rows in
// GemmArgs::segments (a separate instantiation: the segment bookkeeping measurably slows the
// short reductions of small pointwise convolutions).
template <int R, int B, bool kSegmented>
inline void GemmTile(const GemmArgs& g, const uint8_t* a, int blk0, int8_t* out,
                     const BlockRq* brq) {
  __m512i acc[R][2 * B];
#pragma GCC unroll 4
  for (int b = 0; b < B; ++b) {
    const __m512i b0 = Ld(g.bias[blk0 + b].w, 0), b1 = Ld(g.bias[blk0 + b].w, 1);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      acc[r][2 * b] = b0;
      acc[r][2 * b + 1] = b1;
    }
  }
  const int groups = g.groups;
  const int segments = kSegmented ? g.segments : 1;
  const int seg_groups = groups / segments;
  for (int seg = 0; seg < segments; ++seg) {
    const VecI8* w = g.w + static_cast<size_t>(blk0) * groups + seg * seg_groups;
    const uint8_t* as = a + seg * g.segment_stride;
    for (int k = 0; k < seg_groups; ++k) {
      __m512i wv[2 * B];
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) {
        wv[2 * b] = Ld(w[static_cast<size_t>(b) * groups + k].b, 0);
        wv[2 * b + 1] = Ld(w[static_cast<size_t>(b) * groups + k].b, 1);
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i x = Bcast4(as + r * g.a_stride + 4 * k);
#pragma GCC unroll 8
        for (int j = 0; j < 2 * B; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], x, wv[j]);
      }
    }
  }
  if (brq[0].fast && (B == 1 || brq[B - 1].fast)) {
    RequantTileRegs<R, B>(acc, g, blk0, out, brq);
    return;
  }
  // Requantization in a separate (not inlined) function: its constants would otherwise be
  // hoisted above the reduction loop and push accumulators out of registers.
  alignas(64) int32_t spill[R * 2 * B + 1][16];  // + 16 lanes the requantization reads
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < 2 * B; ++j) _mm512_store_si512(spill[r * 2 * B + j], acc[r][j]);
  }
  _mm512_store_si512(spill[R * 2 * B], _mm512_setzero_si512());
  RequantRows(&spill[0][0], R, B, g, blk0, out);
}

template <int B, bool kSegmented>
inline void GemmRows(const GemmArgs& g, const uint8_t* a, int rows, int blk0, int8_t* out,
                     const BlockRq* brq) {
  switch (rows) {
    case 1: GemmTile<1, B, kSegmented>(g, a, blk0, out, brq); break;
    case 2: GemmTile<2, B, kSegmented>(g, a, blk0, out, brq); break;
    case 3: GemmTile<3, B, kSegmented>(g, a, blk0, out, brq); break;
    case 4: GemmTile<4, B, kSegmented>(g, a, blk0, out, brq); break;
    case 5: GemmTile<5, B, kSegmented>(g, a, blk0, out, brq); break;
    default: GemmTile<6, B, kSegmented>(g, a, blk0, out, brq); break;
  }
}

void GemmRequant(const GemmArgs& g) {
  constexpr int kRows = 6;
  // Block pairs outside, rows inside: the pair's weights and requantization constants are
  // reused by all rows (the rows of one call fit in L1).
  for (int blk = 0; blk < g.blocks; blk += 2) {
    const int nb = g.blocks - blk < 2 ? 1 : 2;
    BlockRq brq[2];
    for (int b = 0; b < nb; ++b) LoadBlockRq(g.rq, blk + b, &brq[b]);
    for (int r0 = 0; r0 < g.rows; r0 += kRows) {
      const int rows = g.rows - r0 < kRows ? g.rows - r0 : kRows;
      const uint8_t* a = g.a + r0 * g.a_stride;
      int8_t* out = g.out + r0 * g.out_stride;
      const bool segmented = g.segments > 1;
      if (nb == 2) {
        segmented ? GemmRows<2, true>(g, a, rows, blk, out, brq)
                  : GemmRows<2, false>(g, a, rows, blk, out, brq);
      } else {
        segmented ? GemmRows<1, true>(g, a, rows, blk, out, brq)
                  : GemmRows<1, false>(g, a, rows, blk, out, brq);
      }
    }
  }
}

inline __m512i Widen16(const int8_t* p) {
  return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// The fast requantization (isa/requant_avx512.h) of n pixels x 32 accumulators, two pixels
// per narrowing; `order` maps the packed dwords of pixels p, p + 1 to their 64 output bytes.
template <bool kRelu>
void RequantPixelsFastT(const int32_t* acc, int n, const RqFast& f0, const RqFast& f1,
                        __m512i order, const RequantArgs& rq, int8_t* out, ptrdiff_t out_stride,
                        int width) {
  const avx512::Clamp8 clamp = avx512::MakeClamp8(rq);
  for (int p = 0; p < n; p += 2) {
    const int32_t* a = acc + 32 * p;
    const __m512i y0 = avx512::RescaleFast16<kRelu>(a, f0);
    const __m512i y1 = avx512::RescaleFast16<kRelu>(a + 16, f1);
    __m512i y2 = _mm512_setzero_si512(), y3 = _mm512_setzero_si512();
    if (p + 1 < n) {
      y2 = avx512::RescaleFast16<kRelu>(a + 32, f0);
      y3 = avx512::RescaleFast16<kRelu>(a + 48, f1);
    }
    const __m512i v = avx512::Narrow64(y0, y1, y2, y3, order, clamp);
    Store32v(out + p * out_stride, _mm512_castsi512_si256(v), width);
    if (p + 1 < n) Store32v(out + (p + 1) * out_stride, _mm512_extracti64x4_epi64(v, 1), width);
  }
}
__attribute__((noinline)) void RequantPixelsFast(const int32_t* acc, int n, const RqFast& f0,
                                                 const RqFast& f1, __m512i order,
                                                 const RequantArgs& rq, int8_t* out,
                                                 ptrdiff_t out_stride, int width) {
  if (f0.relu) {
    RequantPixelsFastT<true>(acc, n, f0, f1, order, rq, out, out_stride, width);
  } else {
    RequantPixelsFastT<false>(acc, n, f0, f1, order, rq, out, out_stride, width);
  }
}

// Requantizes n pixels x 32 accumulators (acc[p][32], then 32 readable lanes more) and stores
// them out_stride apart.
// (The params are loaded here, into registers: passed in, they would be re-read from memory
// for every vector.)
__attribute__((noinline)) void RequantPixels(const int32_t* acc, int n, const RequantArgs& rq,
                                             int blk, int8_t* out, ptrdiff_t out_stride,
                                             int width) {
  RqFast f0, f1;
  if (avx512::LoadRqFast(rq, 32 * blk, &f0) && avx512::LoadRqFast(rq, 32 * blk + 16, &f1)) {
    RequantPixelsFast(acc, n, f0, f1, avx512::OrderNatural(), rq, out, out_stride, width);
    return;
  }
  const Rq16 q0 = LoadRq(rq, blk, 0), q1 = LoadRq(rq, blk, 1);
  if (Int16Tail(rq)) {
    const Tail16 t = LoadTail16(rq);
    for (int p = 0; p < n; ++p) {
      Store32v(out + p * out_stride,
               Requant32(_mm512_load_si512(acc + 32 * p), _mm512_load_si512(acc + 32 * p + 16),
                         q0, q1, t),
               width, rq.output_xor);
    }
    return;
  }
  for (int p = 0; p < n; ++p) {
    Store32(out + p * out_stride, Requant16(_mm512_load_si512(acc + 32 * p), q0),
            Requant16(_mm512_load_si512(acc + 32 * p + 16), q1), width, rq.output_xor);
  }
}

// One block of 32 channels over all pixels, the taps' weights held in registers (KH x KW
// known at compile time), or loaded per tap (KH = KW = 0: any size). Accumulators of 8 pixels
// at a time go through memory to the requantization (kept out of line, see RequantRows).
template <int KH, int KW>
void DepthwiseBlock(const DepthwiseArgs& d, int blk) {
  const int kh = KH ? KH : d.kernel_h, kw = KW ? KW : d.kernel_w;
  constexpr int kTaps = KH * KW;
  constexpr int kBatch = 16;
  __m512i wr[kTaps ? kTaps : 1][2];
#pragma GCC unroll 16
  for (int t = 0; t < kTaps; ++t) {
    wr[t][0] = Ld(d.w[static_cast<size_t>(t) * d.blocks + blk].w, 0);
    wr[t][1] = Ld(d.w[static_cast<size_t>(t) * d.blocks + blk].w, 1);
  }
  const __m512i bias0 = Ld(d.bias[blk].w, 0), bias1 = Ld(d.bias[blk].w, 1);
  const int n = d.channels - 32 * blk;
  alignas(64) int32_t acc[kBatch + 1][32];  // + the lanes RequantPixels reads past the end
  memset(acc[kBatch], 0, sizeof(acc[kBatch]));
  for (int p0 = 0; p0 < d.pixels; p0 += kBatch) {
    const int count = d.pixels - p0 < kBatch ? d.pixels - p0 : kBatch;
    for (int i = 0; i < count; ++i) {
      const int8_t* window = d.in + (p0 + i) * d.pixel_stride + 32 * blk;
      __m512i s0 = bias0, s1 = bias1, u0 = _mm512_setzero_si512(), u1 = _mm512_setzero_si512();
      int t = 0;
#pragma GCC unroll 8
      for (int ky = 0; ky < kh; ++ky) {
#pragma GCC unroll 8
        for (int kx = 0; kx < kw; ++kx, ++t) {
          const int8_t* x = window + ky * d.tap_dy + kx * d.tap_dx;
          __m512i w0, w1;
          if (kTaps) {
            w0 = wr[t][0];
            w1 = wr[t][1];
          } else {
            w0 = Ld(d.w[static_cast<size_t>(t) * d.blocks + blk].w, 0);
            w1 = Ld(d.w[static_cast<size_t>(t) * d.blocks + blk].w, 1);
          }
          // Two accumulator chains per half (even / odd taps), summed at the end (wrap-around
          // addition is associative, so the bits are those of the sequential sum).
          if (t & 1) {
            u0 = _mm512_add_epi32(u0, _mm512_mullo_epi32(Widen16(x), w0));
            u1 = _mm512_add_epi32(u1, _mm512_mullo_epi32(Widen16(x + 16), w1));
          } else {
            s0 = _mm512_add_epi32(s0, _mm512_mullo_epi32(Widen16(x), w0));
            s1 = _mm512_add_epi32(s1, _mm512_mullo_epi32(Widen16(x + 16), w1));
          }
        }
      }
      _mm512_store_si512(acc[i], _mm512_add_epi32(s0, u0));
      _mm512_store_si512(acc[i] + 16, _mm512_add_epi32(s1, u1));
    }
    RequantPixels(&acc[0][0], count, d.rq, blk, d.out + p0 * d.out_stride + 32 * blk,
                  d.out_stride, n);
  }
}

// The same block with 16-bit pairs of taps on VPDPWSSD (acc += a.lo * b.lo + a.hi * b.hi per
// 32-bit lane, wrap-around): exact when every weight of the block fits int16 (products of int8
// inputs and int16 weights fit int32, and wrap-around sums are order-independent). Two taps'
// 32 channels are sign-extended to int16 and interleaved with unpacklo/hi_epi16, which leaves
// channels {8k + j} in the "lo" accumulator and {8k + 4 + j} in the "hi" one (k, j < 4); the
// weights go through the same interleave, and one qword permute per half restores the order.
constexpr int kMaxPairTaps = 32;

inline __m512i WidenPair16(const int8_t* p) {
  return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512i Narrow32To16(const VecI32& w) {  // 32 int32 (int16-range) -> 32 int16
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(Ld(w.w, 0))),
                            _mm512_cvtepi32_epi16(Ld(w.w, 1)), 1);
}

// Whether all taps' weights of block blk lie in [-32768, 32767].
bool WeightsFitInt16(const DepthwiseArgs& d, int taps, int blk) {
  __m512i lo = _mm512_set1_epi32(INT32_MAX), hi = _mm512_set1_epi32(INT32_MIN);
  for (int t = 0; t < taps; ++t) {
    for (int k = 0; k < 2; ++k) {
      const __m512i w = Ld(d.w[static_cast<size_t>(t) * d.blocks + blk].w, k);
      lo = _mm512_min_epi32(lo, w);
      hi = _mm512_max_epi32(hi, w);
    }
  }
  return _mm512_reduce_min_epi32(lo) >= -32768 && _mm512_reduce_max_epi32(hi) <= 32767;
}

template <int kTapsFixed>
void DepthwiseBlockPairs(const DepthwiseArgs& d, int blk) {
  const int taps = kTapsFixed ? kTapsFixed : d.kernel_h * d.kernel_w;
  const int pairs = (taps + 1) / 2;
  constexpr int kPairsMax = kTapsFixed ? (kTapsFixed + 1) / 2 : kMaxPairTaps / 2;
  ptrdiff_t offset[2 * kPairsMax];
  __m512i wlo[kPairsMax], whi[kPairsMax];
  for (int t = 0; t < 2 * pairs; ++t) {
    const int tt = t < taps ? t : taps - 1;  // the odd tap out reads a real tap, weight 0
    offset[t] = (tt / d.kernel_w) * d.tap_dy + (tt % d.kernel_w) * d.tap_dx + 32 * blk;
  }
  for (int i = 0; i < pairs; ++i) {
    const __m512i a = Narrow32To16(d.w[static_cast<size_t>(2 * i) * d.blocks + blk]);
    const __m512i b = 2 * i + 1 < taps
                          ? Narrow32To16(d.w[static_cast<size_t>(2 * i + 1) * d.blocks + blk])
                          : _mm512_setzero_si512();
    wlo[i] = _mm512_unpacklo_epi16(a, b);
    whi[i] = _mm512_unpackhi_epi16(a, b);
  }
  const __m512i order0 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
  const __m512i order1 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
  const __m512i bias0 = Ld(d.bias[blk].w, 0), bias1 = Ld(d.bias[blk].w, 1);
  const int n = d.channels - 32 * blk;
  constexpr int kBatch = 16;
  alignas(64) int32_t acc[kBatch + 1][32];  // + the lanes RequantPixels reads past the end
  memset(acc[kBatch], 0, sizeof(acc[kBatch]));
  for (int p0 = 0; p0 < d.pixels; p0 += kBatch) {
    const int count = d.pixels - p0 < kBatch ? d.pixels - p0 : kBatch;
    for (int i = 0; i < count; ++i) {
      const int8_t* window = d.in + (p0 + i) * d.pixel_stride;
      __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
#pragma GCC unroll 16
      for (int k = 0; k < (kTapsFixed ? kPairsMax : pairs); ++k) {
        const __m512i a = WidenPair16(window + offset[2 * k]);
        const __m512i b = WidenPair16(window + offset[2 * k + 1]);
        lo = _mm512_dpwssd_epi32(lo, _mm512_unpacklo_epi16(a, b), wlo[k]);
        hi = _mm512_dpwssd_epi32(hi, _mm512_unpackhi_epi16(a, b), whi[k]);
      }
      _mm512_store_si512(acc[i], _mm512_add_epi32(bias0, _mm512_permutex2var_epi64(lo, order0, hi)));
      _mm512_store_si512(acc[i] + 16,
                         _mm512_add_epi32(bias1, _mm512_permutex2var_epi64(lo, order1, hi)));
    }
    RequantPixels(&acc[0][0], count, d.rq, blk, d.out + p0 * d.out_stride + 32 * blk,
                  d.out_stride, n);
  }
}

// 3x3 taps, not dilated, pixels S = 1 or 2 columns apart (pixel_stride == S * tap_dx): the same
// 16-bit pair arithmetic as DepthwiseBlockPairs, but the pairs are formed once per input column
// and shared by the output pixels whose windows overlap it. Column x gives
//   P(x) = rows (0, 1) interleaved   -> tap pair (0, kx), (1, kx) of every pixel reading it,
//   H(x) = row 2 at (x, x + 1)       -> tap pair (2, 0), (2, 1) of pixel x / S, and, with the
//                                       weights (0, w(2, 2)), tap (2, 2) of pixel x / S - 1.
// A pixel at column c = S * p then needs P(c), P(c + 1), P(c + 2), H(c), H(c + 1): five
// VPDPWSSD per half as before, but per new column only three widenings and four interleaves
// instead of ten and ten per pixel.
// Channel of lane i of the pairs' lo / hi accumulators (see kPermuted below).
inline __m512i PairIndexLo() {
  return _mm512_set_epi32(27, 26, 25, 24, 19, 18, 17, 16, 11, 10, 9, 8, 3, 2, 1, 0);
}
inline __m512i PairIndexHi() {
  return _mm512_set_epi32(31, 30, 29, 28, 23, 22, 21, 20, 15, 14, 13, 12, 7, 6, 5, 4);
}
struct Col16 {
  __m512i p_lo, p_hi, r2;  // P(x) interleaved halves, row 2 widened
};
inline Col16 LoadCol16(const int8_t* x, ptrdiff_t dy) {
  const __m512i a = WidenPair16(x), b = WidenPair16(x + dy);
  return {_mm512_unpacklo_epi16(a, b), _mm512_unpackhi_epi16(a, b), WidenPair16(x + 2 * dy)};
}

// kPermuted: the accumulators stay in the interleaved channel order the pairs leave (lo lane
// 4k + j = channel 8k + j, hi lane 4k + j = channel 8k + 4 + j) and the bias and requantization
// constants f[0], f[1] are permuted to match instead (no un-permuting per pixel).
template <int S, bool kPermuted>
void DepthwiseBlock3x3(const DepthwiseArgs& d, int blk, const RqFast* f) {
  auto w16 = [&](int ky, int kx) { return Narrow32To16(d.w[static_cast<size_t>(3 * ky + kx) * d.blocks + blk]); };
  const __m512i zero = _mm512_setzero_si512();
  __m512i wp_lo[3], wp_hi[3];
  for (int kx = 0; kx < 3; ++kx) {
    wp_lo[kx] = _mm512_unpacklo_epi16(w16(0, kx), w16(1, kx));
    wp_hi[kx] = _mm512_unpackhi_epi16(w16(0, kx), w16(1, kx));
  }
  const __m512i wh0_lo = _mm512_unpacklo_epi16(w16(2, 0), w16(2, 1));
  const __m512i wh0_hi = _mm512_unpackhi_epi16(w16(2, 0), w16(2, 1));
  const __m512i wh1_lo = _mm512_unpacklo_epi16(zero, w16(2, 2));
  const __m512i wh1_hi = _mm512_unpackhi_epi16(zero, w16(2, 2));
  const __m512i order0 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
  const __m512i order1 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
  const __m512i bias0 = Ld(d.bias[blk].w, 0), bias1 = Ld(d.bias[blk].w, 1);
  const __m512i bias_lo = _mm512_permutex2var_epi32(bias0, PairIndexLo(), bias1);
  const __m512i bias_hi = _mm512_permutex2var_epi32(bias0, PairIndexHi(), bias1);
  const ptrdiff_t dx = d.tap_dx, dy = d.tap_dy;
  const int8_t* in_blk = d.in + 32 * blk;
  const int n = d.channels - 32 * blk;
  constexpr int kBatch = 16;
  alignas(64) int32_t acc[kBatch + 1][32];  // + the lanes RequantPixels reads past the end
  memset(acc[kBatch], 0, sizeof(acc[kBatch]));
  for (int row = 0; row < d.rows; ++row) {
    const int8_t* in = in_blk + row * d.in_row_stride;
    int8_t* out_row = d.out + row * d.out_row_stride;
    // c0..c2: the columns of the current pixel; for S = 1 the next pixel's first two are c1, c2.
    Col16 c0 = LoadCol16(in, dy), c1 = LoadCol16(in + dx, dy), c2;
    // For S = 1 a pixel's H(c) pair is the previous pixel's H(c + 1): carried, not redone.
    __m512i h0_lo = _mm512_unpacklo_epi16(c0.r2, c1.r2);
    __m512i h0_hi = _mm512_unpackhi_epi16(c0.r2, c1.r2);
    for (int p0 = 0; p0 < d.pixels; p0 += kBatch) {
      const int count = d.pixels - p0 < kBatch ? d.pixels - p0 : kBatch;
      for (int i = 0; i < count; ++i) {
        const int8_t* col = in + static_cast<ptrdiff_t>(p0 + i) * S * dx;
        c2 = LoadCol16(col + 2 * dx, dy);
        if (S != 1) {
          h0_lo = _mm512_unpacklo_epi16(c0.r2, c1.r2);
          h0_hi = _mm512_unpackhi_epi16(c0.r2, c1.r2);
        }
        const __m512i h1_lo = _mm512_unpacklo_epi16(c1.r2, c2.r2);
        const __m512i h1_hi = _mm512_unpackhi_epi16(c1.r2, c2.r2);
        __m512i lo = _mm512_dpwssd_epi32(kPermuted ? bias_lo : zero, c0.p_lo, wp_lo[0]);
        __m512i hi = _mm512_dpwssd_epi32(kPermuted ? bias_hi : zero, c0.p_hi, wp_hi[0]);
        __m512i lo2 = _mm512_dpwssd_epi32(zero, h0_lo, wh0_lo);
        __m512i hi2 = _mm512_dpwssd_epi32(zero, h0_hi, wh0_hi);
        lo = _mm512_dpwssd_epi32(lo, c1.p_lo, wp_lo[1]);
        hi = _mm512_dpwssd_epi32(hi, c1.p_hi, wp_hi[1]);
        lo2 = _mm512_dpwssd_epi32(lo2, h1_lo, wh1_lo);
        hi2 = _mm512_dpwssd_epi32(hi2, h1_hi, wh1_hi);
        lo = _mm512_dpwssd_epi32(lo, c2.p_lo, wp_lo[2]);
        hi = _mm512_dpwssd_epi32(hi, c2.p_hi, wp_hi[2]);
        lo = _mm512_add_epi32(lo, lo2);
        hi = _mm512_add_epi32(hi, hi2);
        if (kPermuted) {
          _mm512_store_si512(acc[i], lo);
          _mm512_store_si512(acc[i] + 16, hi);
        } else {
          _mm512_store_si512(acc[i], _mm512_add_epi32(bias0, _mm512_permutex2var_epi64(lo, order0, hi)));
          _mm512_store_si512(acc[i] + 16,
                             _mm512_add_epi32(bias1, _mm512_permutex2var_epi64(lo, order1, hi)));
        }
        if (S == 1) {
          c0 = c1;
          c1 = c2;
          h0_lo = h1_lo;
          h0_hi = h1_hi;
        } else if (p0 + i + 1 < d.pixels) {
          c0 = c2;
          c1 = LoadCol16(col + 3 * dx, dy);
        }
      }
      int8_t* out = out_row + p0 * d.out_stride + 32 * blk;
      if (kPermuted) {
        // Packed dwords of pixel p: 4k and 4k + 1 (channels 8k .. 8k + 7); of p + 1: 4k + 2, 4k + 3.
        const __m512i order = _mm512_set_epi32(15, 14, 11, 10, 7, 6, 3, 2, 13, 12, 9, 8, 5, 4, 1, 0);
        RequantPixelsFast(&acc[0][0], count, f[0], f[1], order, d.rq, out, d.out_stride, n);
      } else {
        RequantPixels(&acc[0][0], count, d.rq, blk, out, d.out_stride, n);
      }
    }
  }
}

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

void DepthwiseRows(const DepthwiseArgs& d) {
  const int taps = d.kernel_h * d.kernel_w;
  for (int blk = 0; blk < d.blocks; ++blk) {
    const bool pairs = taps <= kMaxPairTaps && WeightsFitInt16(d, taps, blk);
    const bool k3x3 = d.kernel_h == 3 && d.kernel_w == 3;
    const int stride = d.pixel_stride == d.tap_dx ? 1 : d.pixel_stride == 2 * d.tap_dx ? 2 : 0;
    RqFast f[2];
    const bool permuted =
        pairs && k3x3 && stride &&
        avx512::LoadRqFastPermuted(d.rq, 32 * blk, PairIndexLo(), &f[0]) &&
        avx512::LoadRqFastPermuted(d.rq, 32 * blk, PairIndexHi(), &f[1]);
    if (permuted && stride == 1) {
      DepthwiseBlock3x3<1, true>(d, blk, f);
    } else if (permuted) {
      DepthwiseBlock3x3<2, true>(d, blk, f);
    } else if (pairs && k3x3 && stride == 1) {
      DepthwiseBlock3x3<1, false>(d, blk, f);
    } else if (pairs && k3x3 && stride == 2) {
      DepthwiseBlock3x3<2, false>(d, blk, f);
    } else {
      for (int row = 0; row < d.rows; ++row) {
        DepthwiseArgs r = d;
        r.in += row * d.in_row_stride;
        r.out += row * d.out_row_stride;
        if (pairs && taps == 9) {
          DepthwiseBlockPairs<9>(r, blk);
        } else if (pairs) {
          DepthwiseBlockPairs<0>(r, blk);
        } else if (k3x3) {
          DepthwiseBlock<3, 3>(r, blk);
        } else {
          DepthwiseBlock<0, 0>(r, blk);
        }
      }
    }
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
