// aarch64 NEON implementation of the emulated ISA (isa/hvx.h). A 128-byte vector is eight
// 128-bit registers. Two tables: "neon" (ASIMD, every aarch64 CPU) and "neon_i8mm", whose vrmpy
// is USDOT (u8 x s8 four-way dot product, Armv8.6 I8MM), chosen at run time from HWCAP2.
// The fixed-point operations map one to one: srdhm is SQRDMULH, rdbpot is a sign fixup then
// SRSHL, the packs are SQXTN.
#include <stdint.h>

#include "isa/fixed_point.h"
#include "isa/hvx.h"

#if defined(__aarch64__) && !defined(TFQUANT_DSP_NO_SIMD)
#include <arm_neon.h>

#include "isa/compose.h"

namespace tfq::isa {
namespace {

inline int32x4_t LdW(const int32_t* p, int k) { return vld1q_s32(p + 4 * k); }
inline void StW(int32_t* p, int k, int32x4_t v) { vst1q_s32(p + 4 * k, v); }

// Wrap-around int32 arithmetic. GCC's arm_neon.h writes vaddq_s32 and friends as C operators on
// signed vectors (overflow is undefined there, and UBSan says so); the unsigned forms wrap.
inline uint32x4_t U(int32x4_t v) { return vreinterpretq_u32_s32(v); }
inline int32x4_t Add(int32x4_t a, int32x4_t b) { return vreinterpretq_s32_u32(vaddq_u32(U(a), U(b))); }
inline int32x4_t Sub(int32x4_t a, int32x4_t b) { return vreinterpretq_s32_u32(vsubq_u32(U(a), U(b))); }
inline int32x4_t Mul(int32x4_t a, int32x4_t b) { return vreinterpretq_s32_u32(vmulq_u32(U(a), U(b))); }
inline int32x4_t Mla(int32x4_t acc, int32x4_t a, int32x4_t b) {
  return vreinterpretq_s32_u32(vmlaq_u32(U(acc), U(a), U(b)));
}

// u8 x s8 four-way dot products of 16 bytes into 4 int32 lanes, exact: every product fits
// int16 (255 * -128 = -32640), pairs and quads are summed in int32.
inline int32x4_t Dot4(int16x8_t a_lo, int16x8_t a_hi, int8x16_t b) {
  const int32x4_t lo = vpaddlq_s16(vmulq_s16(a_lo, vmovl_s8(vget_low_s8(b))));
  const int32x4_t hi = vpaddlq_s16(vmulq_s16(a_hi, vmovl_high_s8(b)));
  return vpaddq_s32(lo, hi);
}
inline int16x8_t WidenLow(uint8x16_t a) { return vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(a))); }
inline int16x8_t WidenHigh(uint8x16_t a) { return vreinterpretq_s16_u16(vmovl_high_u8(a)); }

void VrmpyAcc(VecI32* acc, const VecU8* a, const VecI8* b) {
  for (int k = 0; k < 8; ++k) {
    const uint8x16_t x = vld1q_u8(a->b + 16 * k);
    StW(acc->w, k, Add(LdW(acc->w, k), Dot4(WidenLow(x), WidenHigh(x), vld1q_s8(b->b + 16 * k))));
  }
}

void VrmpySplatAccN(VecI32* acc, const uint8_t* x, const VecI8* b, int groups) {
  int32x4_t s[8];
  for (int k = 0; k < 8; ++k) s[k] = LdW(acc->w, k);
  for (int g = 0; g < groups; ++g) {
    uint32_t x4;
    __builtin_memcpy(&x4, x + 4 * g, 4);
    const int16x8_t xs = WidenLow(vreinterpretq_u8_u32(vdupq_n_u32(x4)));  // x0..x3 twice
    for (int k = 0; k < 8; ++k) s[k] = Add(s[k], Dot4(xs, xs, vld1q_s8(b[g].b + 16 * k)));
  }
  for (int k = 0; k < 8; ++k) StW(acc->w, k, s[k]);
}

#define TFQ_BINARY_W(Name, Expr)                                   \
  void Name(VecI32* r, const VecI32* a, const VecI32* b) {         \
    for (int k = 0; k < 8; ++k) {                                  \
      const int32x4_t x = LdW(a->w, k), y = LdW(b->w, k);          \
      StW(r->w, k, (Expr));                                        \
    }                                                              \
  }
TFQ_BINARY_W(AddW, Add(x, y))
TFQ_BINARY_W(SubW, Sub(x, y))
TFQ_BINARY_W(MulW, Mul(x, y))
TFQ_BINARY_W(ShlW, vshlq_s32(x, vandq_s32(y, vdupq_n_s32(31))))
TFQ_BINARY_W(SrdhmW, vqrdmulhq_s32(x, y))
TFQ_BINARY_W(MaxW, vmaxq_s32(x, y))
TFQ_BINARY_W(MinW, vminq_s32(x, y))
#undef TFQ_BINARY_W

void MacW(VecI32* acc, const VecI32* a, const VecI32* b) {
  for (int k = 0; k < 8; ++k) StW(acc->w, k, Mla(LdW(acc->w, k), LdW(a->w, k), LdW(b->w, k)));
}

// Ties away from zero: negative lanes step down by one (saturating) before SRSHL's
// round-half-up right shift; exact for every x and e in [0, 31].
void RdbpotW(VecI32* r, const VecI32* a, const VecI32* e) {
  for (int k = 0; k < 8; ++k) {
    const int32x4_t x = LdW(a->w, k);
    const int32x4_t shift = vnegq_s32(vandq_s32(LdW(e->w, k), vdupq_n_s32(31)));
    const int32x4_t fixup = vshrq_n_s32(vandq_s32(x, shift), 31);
    StW(r->w, k, vrshlq_s32(vqaddq_s32(x, fixup), shift));
  }
}

void PackWHSat(VecI16* r, const VecI32* lo, const VecI32* hi) {
  int16x8_t out[8];
  for (int k = 0; k < 4; ++k) {
    out[k] = vcombine_s16(vqmovn_s32(LdW(lo->w, 2 * k)), vqmovn_s32(LdW(lo->w, 2 * k + 1)));
    out[4 + k] = vcombine_s16(vqmovn_s32(LdW(hi->w, 2 * k)), vqmovn_s32(LdW(hi->w, 2 * k + 1)));
  }
  for (int k = 0; k < 8; ++k) vst1q_s16(r->h + 8 * k, out[k]);
}

void PackHBSat(VecI8* r, const VecI16* lo, const VecI16* hi) {
  int8x16_t out[8];
  for (int k = 0; k < 4; ++k) {
    out[k] = vcombine_s8(vqmovn_s16(vld1q_s16(lo->h + 16 * k)),
                         vqmovn_s16(vld1q_s16(lo->h + 16 * k + 8)));
    out[4 + k] = vcombine_s8(vqmovn_s16(vld1q_s16(hi->h + 16 * k)),
                             vqmovn_s16(vld1q_s16(hi->h + 16 * k + 8)));
  }
  for (int k = 0; k < 8; ++k) vst1q_s8(r->b + 16 * k, out[k]);
}

void UnpackBW(VecI32* r, const int8_t* p) {
  for (int k = 0; k < 2; ++k) {
    const int8x16_t v = vld1q_s8(p + 16 * k);
    const int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
    StW(r->w, 4 * k, vmovl_s16(vget_low_s16(lo)));
    StW(r->w, 4 * k + 1, vmovl_high_s16(lo));
    StW(r->w, 4 * k + 2, vmovl_s16(vget_low_s16(hi)));
    StW(r->w, 4 * k + 3, vmovl_high_s16(hi));
  }
}

void MaxBN(int8_t* acc, const int8_t* x, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) vst1q_s8(acc + i, vmaxq_s8(vld1q_s8(acc + i), vld1q_s8(x + i)));
  ScalarMaxBN(acc + i, x + i, n - i);
}

constexpr VectorPrims kPrims = {VrmpySplatAccN, AddW, MacW, ShlW, SrdhmW, RdbpotW,
                                MaxW, MinW, PackWHSat, PackHBSat, UnpackBW};

const Ops kNeon = {
    "neon", VrmpyAcc, VrmpySplatAccN, AddW, SubW, MulW, MacW, ShlW, SrdhmW, RdbpotW,
    MaxW,   MinW,     PackWHSat,      PackHBSat, UnpackBW,
    ComposedGemmRequant<kPrims>, ComposedDepthwiseRows<kPrims>, ComposedAddRequant<kPrims>,
    MaxBN, ScalarQuantizeF32,
};

}  // namespace
}  // namespace tfq::isa

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+i8mm")

namespace tfq::isa {
namespace {

void VrmpyAccUsdot(VecI32* acc, const VecU8* a, const VecI8* b) {
  for (int k = 0; k < 8; ++k) {
    StW(acc->w, k, vusdotq_s32(LdW(acc->w, k), vld1q_u8(a->b + 16 * k), vld1q_s8(b->b + 16 * k)));
  }
}

void VrmpySplatAccNUsdot(VecI32* acc, const uint8_t* x, const VecI8* b, int groups) {
  int32x4_t s[8];
  for (int k = 0; k < 8; ++k) s[k] = LdW(acc->w, k);
  for (int g = 0; g < groups; ++g) {
    uint32_t x4;
    __builtin_memcpy(&x4, x + 4 * g, 4);
    const uint8x16_t xs = vreinterpretq_u8_u32(vdupq_n_u32(x4));
    for (int k = 0; k < 8; ++k) s[k] = vusdotq_s32(s[k], xs, vld1q_s8(b[g].b + 16 * k));
  }
  for (int k = 0; k < 8; ++k) StW(acc->w, k, s[k]);
}

constexpr VectorPrims kPrimsI8mm = {VrmpySplatAccNUsdot, AddW, MacW, ShlW, SrdhmW, RdbpotW,
                                    MaxW, MinW, PackWHSat, PackHBSat, UnpackBW};

void GemmRequantUsdot(const GemmArgs& g) { ComposedGemmRequant<kPrimsI8mm>(g); }

}  // namespace
}  // namespace tfq::isa

#pragma GCC pop_options

namespace tfq::isa {
namespace {
const Ops kNeonI8mm = {
    "neon_i8mm", VrmpyAccUsdot, VrmpySplatAccNUsdot, AddW, SubW, MulW, MacW, ShlW, SrdhmW,
    RdbpotW,     MaxW,          MinW,                PackWHSat, PackHBSat, UnpackBW,
    GemmRequantUsdot, ComposedDepthwiseRows<kPrims>, ComposedAddRequant<kPrims>, MaxBN,
    ScalarQuantizeF32,
};
}  // namespace
const Ops* Neon() { return &kNeon; }
const Ops* NeonI8mm() { return &kNeonI8mm; }
}  // namespace tfq::isa

#else
namespace tfq::isa {
const Ops* Neon() { return nullptr; }
const Ops* NeonI8mm() { return nullptr; }
}  // namespace tfq::isa
#endif
