// The scalar definitions of the ISA's operations: the specification every SIMD implementation is
// tested against, and the implementation used where no SIMD is available (or TFQUANT_DSP_ISA=scalar).
#include "isa/compose.h"
#include "isa/fixed_point.h"
#include "isa/hvx.h"

namespace tfq::isa {
namespace {

using namespace tfq::fp;  // NOLINT

int16_t SatH(int32_t v) { return v < -32768 ? -32768 : (v > 32767 ? 32767 : v); }
int8_t SatB(int32_t v) { return v < -128 ? -128 : (v > 127 ? 127 : v); }

void VrmpyAcc(VecI32* acc, const VecU8* a, const VecI8* b) {
  for (int i = 0; i < 32; ++i) {
    int32_t s = acc->w[i];
    for (int j = 0; j < 4; ++j) s = WrapAdd(s, int32_t{a->b[4 * i + j]} * b->b[4 * i + j]);
    acc->w[i] = s;
  }
}
void VrmpySplatAccN(VecI32* acc, const uint8_t* x, const VecI8* b, int groups) {
  for (int g = 0; g < groups; ++g) {
    for (int i = 0; i < 32; ++i) {
      int32_t s = acc->w[i];
      for (int j = 0; j < 4; ++j) s = WrapAdd(s, int32_t{x[4 * g + j]} * b[g].b[4 * i + j]);
      acc->w[i] = s;
    }
  }
}
void AddW(VecI32* r, const VecI32* a, const VecI32* b) {
  for (int i = 0; i < 32; ++i) r->w[i] = WrapAdd(a->w[i], b->w[i]);
}
void SubW(VecI32* r, const VecI32* a, const VecI32* b) {
  for (int i = 0; i < 32; ++i) r->w[i] = WrapSub(a->w[i], b->w[i]);
}
void MulW(VecI32* r, const VecI32* a, const VecI32* b) {
  for (int i = 0; i < 32; ++i) r->w[i] = WrapMul(a->w[i], b->w[i]);
}
void MacW(VecI32* acc, const VecI32* a, const VecI32* b) {
  for (int i = 0; i < 32; ++i) acc->w[i] = WrapAdd(acc->w[i], WrapMul(a->w[i], b->w[i]));
}
void ShlW(VecI32* r, const VecI32* a, const VecI32* s) {
  for (int i = 0; i < 32; ++i) r->w[i] = WrapShl(a->w[i], s->w[i] & 31);
}
void SrdhmW(VecI32* r, const VecI32* a, const VecI32* b) {
  for (int i = 0; i < 32; ++i) r->w[i] = Srdhm(a->w[i], b->w[i]);
}
void RdbpotW(VecI32* r, const VecI32* a, const VecI32* e) {
  for (int i = 0; i < 32; ++i) r->w[i] = RoundingDivideByPot(a->w[i], e->w[i] & 31);
}
void MaxW(VecI32* r, const VecI32* a, const VecI32* b) {
  for (int i = 0; i < 32; ++i) r->w[i] = a->w[i] > b->w[i] ? a->w[i] : b->w[i];
}
void MinW(VecI32* r, const VecI32* a, const VecI32* b) {
  for (int i = 0; i < 32; ++i) r->w[i] = a->w[i] < b->w[i] ? a->w[i] : b->w[i];
}
void PackWHSat(VecI16* r, const VecI32* lo, const VecI32* hi) {
  VecI16 t;
  for (int i = 0; i < 32; ++i) t.h[i] = SatH(lo->w[i]);
  for (int i = 0; i < 32; ++i) t.h[32 + i] = SatH(hi->w[i]);
  *r = t;
}
void PackHBSat(VecI8* r, const VecI16* lo, const VecI16* hi) {
  VecI8 t;
  for (int i = 0; i < 64; ++i) t.b[i] = SatB(lo->h[i]);
  for (int i = 0; i < 64; ++i) t.b[64 + i] = SatB(hi->h[i]);
  *r = t;
}
void UnpackBW(VecI32* r, const int8_t* p) {
  for (int i = 0; i < 32; ++i) r->w[i] = p[i];
}

constexpr VectorPrims kPrims = {VrmpySplatAccN, AddW, MacW, ShlW, SrdhmW, RdbpotW,
                                MaxW, MinW, PackWHSat, PackHBSat, UnpackBW};

const Ops kScalar = {
    "scalar", VrmpyAcc, VrmpySplatAccN, AddW, SubW, MulW, MacW, ShlW, SrdhmW, RdbpotW,
    MaxW,     MinW,     PackWHSat,      PackHBSat, UnpackBW,
    ComposedGemmRequant<kPrims>, ComposedDepthwiseRows<kPrims>, ComposedAddRequant<kPrims>,
    ScalarMaxBN, ScalarQuantizeF32,
};

}  // namespace

const Ops* Scalar() { return &kScalar; }

}  // namespace tfq::isa
