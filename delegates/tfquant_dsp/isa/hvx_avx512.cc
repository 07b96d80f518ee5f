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

// ---- micro-kernels ------------------------------------------------------------------------------
// Register-blocked versions of the compositions in isa/compose.h (same bits, tested in
// tests/isa_test.cc): accumulators stay in zmm registers across the whole reduction and the
// requantization is applied in registers before one (masked) 32-byte store per row and block.

// Requantization of 16 lanes (the per-lane semantics of shl_w, srdhm_w, rdbpot_w, add_w, max_w,
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
inline __m256i Requant32(__m512i x0, __m512i x1, const Rq16& q0, const Rq16& q1,
                         const Tail16& t) {
  // packs interleaves per 128-bit lane k: x0[4k..4k+3], x1[4k..4k+3].
  __m512i h = _mm512_packs_epi32(_mm512_add_epi32(Rescale16(x0, q0), t.zp),
                                 _mm512_add_epi32(Rescale16(x1, q1), t.zp));
  h = _mm512_min_epi16(_mm512_max_epi16(h, t.lo), t.hi);
  const __m512i b = _mm512_packs_epi16(h, h);  // lane k: dword 0 = x0 group k, dword 1 = x1's
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, b));
}
inline void Store32v(int8_t* out, __m256i v, int n) {
  if (n >= 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v);
    return;
  }
  const __mmask64 m = n <= 0 ? 0 : ((uint64_t{1} << n) - 1);
  _mm512_mask_storeu_epi8(out, m, _mm512_castsi256_si512(v));
}
inline void Store32(int8_t* out, __m128i lo, __m128i hi, int n) {
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

// Requantizes rows x blocks x 32 accumulators (acc[r][b][32]) and stores them.
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
                 Requant32(_mm512_load_si512(a), _mm512_load_si512(a + 16), q0, q1, t), n);
      }
      continue;
    }
    for (int r = 0; r < rows; ++r) {
      const int32_t* a = acc + (static_cast<size_t>(r) * blocks + b) * 32;
      Store32(out + r * g.out_stride + 32 * blk, Requant16(_mm512_load_si512(a), q0),
              Requant16(_mm512_load_si512(a + 16), q1), n);
    }
  }
}

// R rows x B blocks (32 channels each = 2 zmm) of accumulators.
template <int R, int B>
inline void GemmTile(const GemmArgs& g, const uint8_t* a, int blk0, int8_t* out) {
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
  const VecI8* w = g.w + static_cast<size_t>(blk0) * g.groups;
  const int groups = g.groups;
  for (int k = 0; k < groups; ++k) {
    __m512i wv[2 * B];
  #pragma GCC unroll 4
  for (int b = 0; b < B; ++b) {
      wv[2 * b] = Ld(w[static_cast<size_t>(b) * groups + k].b, 0);
      wv[2 * b + 1] = Ld(w[static_cast<size_t>(b) * groups + k].b, 1);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512i x = Bcast4(a + r * g.a_stride + 4 * k);
#pragma GCC unroll 8
      for (int j = 0; j < 2 * B; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], x, wv[j]);
    }
  }
  // Requantization in a separate (not inlined) function: its constants would otherwise be
  // hoisted above the reduction loop and push accumulators out of registers.
  alignas(64) int32_t spill[R][2 * B][16];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < 2 * B; ++j) _mm512_store_si512(spill[r][j], acc[r][j]);
  }
  RequantRows(&spill[0][0][0], R, B, g, blk0, out);
}

template <int B>
inline void GemmRows(const GemmArgs& g, const uint8_t* a, int rows, int blk0, int8_t* out) {
  switch (rows) {
    case 1: GemmTile<1, B>(g, a, blk0, out); break;
    case 2: GemmTile<2, B>(g, a, blk0, out); break;
    case 3: GemmTile<3, B>(g, a, blk0, out); break;
    case 4: GemmTile<4, B>(g, a, blk0, out); break;
    case 5: GemmTile<5, B>(g, a, blk0, out); break;
    default: GemmTile<6, B>(g, a, blk0, out); break;
  }
}

void GemmRequant(const GemmArgs& g) {
  constexpr int kRows = 6;
  for (int r0 = 0; r0 < g.rows; r0 += kRows) {
    const int rows = g.rows - r0 < kRows ? g.rows - r0 : kRows;
    const uint8_t* a = g.a + r0 * g.a_stride;
    int8_t* out = g.out + r0 * g.out_stride;
    int blk = 0;
    for (; blk + 2 <= g.blocks; blk += 2) GemmRows<2>(g, a, rows, blk, out);
    if (blk < g.blocks) GemmRows<1>(g, a, rows, blk, out);
  }
}

inline __m512i Widen16(const int8_t* p) {
  return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Requantizes n pixels x 32 accumulators (acc[p][32]) and stores them out_stride apart.
// (The params are loaded here, into registers: passed in, they would be re-read from memory
// for every vector.)
__attribute__((noinline)) void RequantPixels(const int32_t* acc, int n, const RequantArgs& rq,
                                             int blk, int8_t* out, ptrdiff_t out_stride,
                                             int width) {
  const Rq16 q0 = LoadRq(rq, blk, 0), q1 = LoadRq(rq, blk, 1);
  if (Int16Tail(rq)) {
    const Tail16 t = LoadTail16(rq);
    for (int p = 0; p < n; ++p) {
      Store32v(out + p * out_stride,
               Requant32(_mm512_load_si512(acc + 32 * p), _mm512_load_si512(acc + 32 * p + 16),
                         q0, q1, t),
               width);
    }
    return;
  }
  for (int p = 0; p < n; ++p) {
    Store32(out + p * out_stride, Requant16(_mm512_load_si512(acc + 32 * p), q0),
            Requant16(_mm512_load_si512(acc + 32 * p + 16), q1), width);
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
  alignas(64) int32_t acc[kBatch][32];
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
  alignas(64) int32_t acc[kBatch][32];
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

void AddRequant(const AddArgs& g) {
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
    if (pairs && taps == 9) {
      DepthwiseBlockPairs<9>(d, blk);
    } else if (pairs) {
      DepthwiseBlockPairs<0>(d, blk);
    } else if (d.kernel_h == 3 && d.kernel_w == 3) {
      DepthwiseBlock<3, 3>(d, blk);
    } else {
      DepthwiseBlock<0, 0>(d, blk);
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
