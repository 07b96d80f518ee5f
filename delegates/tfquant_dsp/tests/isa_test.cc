// Compares every SIMD implementation of the emulated ISA with its scalar definition, lane by
// lane, on random data mixed with edge values (INT32_MIN/MAX and neighbours, powers of two and
// their neighbours, rounding ties, values that saturate the packs). Exits nonzero on a mismatch
// and prints the seed and the first differing lane.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <random>
#include <vector>

#include "isa/hvx.h"

namespace {

using namespace tfq::isa;  // NOLINT

std::mt19937 rng;

int32_t EdgeOrRandom32() {
  static const int32_t kEdges[] = {INT32_MIN, INT32_MIN + 1, INT32_MIN + 2, -2, -1, 0, 1, 2,
                                   INT32_MAX, INT32_MAX - 1, 1 << 30, -(1 << 30), (1 << 30) + 1,
                                   32767, 32768, -32768, -32769, 127, 128, -128, -129};
  switch (rng() % 4) {
    case 0: return kEdges[rng() % (sizeof(kEdges) / sizeof(kEdges[0]))];
    case 1: {  // a power of two, +-2
      const int p = rng() % 31;
      return static_cast<int32_t>((rng() % 2 ? 1 : -1) * (int64_t{1} << p) + int(rng() % 5) - 2);
    }
    case 2: return static_cast<int32_t>(rng()) >> (rng() % 24);  // small magnitudes
    default: return static_cast<int32_t>(rng());
  }
}

template <typename V>
void Fill(V* v) {
  for (size_t i = 0; i < sizeof(V); ++i) reinterpret_cast<uint8_t*>(v)[i] = rng();
}
void Fill32(VecI32* v) { for (int i = 0; i < 32; ++i) v->w[i] = EdgeOrRandom32(); }
void FillShift(VecI32* v) { for (int i = 0; i < 32; ++i) v->w[i] = rng() % 32; }
// Values that make a rounding divide land exactly on a tie: +-(k * 2^e + 2^(e-1)).
void FillTies(VecI32* v, const VecI32& e) {
  for (int i = 0; i < 32; ++i) {
    const int s = e.w[i];
    if (s == 0) { v->w[i] = EdgeOrRandom32(); continue; }
    const int64_t k = static_cast<int64_t>(rng() % 1000) - 500;
    int64_t x = k * (int64_t{1} << s) + (int64_t{1} << (s - 1));
    if (x > INT32_MAX || x < INT32_MIN) x = int64_t{1} << (s - 1);
    v->w[i] = static_cast<int32_t>(rng() % 2 ? x : -x);
  }
}

int failures = 0;

template <typename V>
bool Same(const char* impl, const char* op, const V& want, const V& got, unsigned seed) {
  if (memcmp(&want, &got, sizeof(V)) == 0) return true;
  for (size_t i = 0; i < sizeof(V); ++i) {
    if (reinterpret_cast<const uint8_t*>(&want)[i] != reinterpret_cast<const uint8_t*>(&got)[i]) {
      fprintf(stderr, "FAIL %s.%s seed=%u first differing byte %zu\n", impl, op, seed, i);
      break;
    }
  }
  ++failures;
  return false;
}

void TestImpl(const Ops& s, const Ops& t, int trials) {
  for (int trial = 0; trial < trials; ++trial) {
    const unsigned seed = 1000u * trial + 17u;
    rng.seed(seed);
    VecI32 a, b, e, r1, r2, acc;
    Fill32(&a); Fill32(&b); Fill32(&acc);
    FillShift(&e);
    if (trial % 3 == 0) b = a;  // exercises the INT32_MIN * INT32_MIN saturation
#define TFQ_CHECK_BINARY(OP, X, Y)                      \
    s.OP(&r1, &X, &Y); t.OP(&r2, &X, &Y);                 \
    Same(t.name, #OP, r1, r2, seed);
    TFQ_CHECK_BINARY(add_w, a, b)
    TFQ_CHECK_BINARY(sub_w, a, b)
    TFQ_CHECK_BINARY(mul_w, a, b)
    TFQ_CHECK_BINARY(srdhm_w, a, b)
    TFQ_CHECK_BINARY(max_w, a, b)
    TFQ_CHECK_BINARY(min_w, a, b)
    TFQ_CHECK_BINARY(shl_w, a, e)
    TFQ_CHECK_BINARY(rdbpot_w, a, e)
    VecI32 ties;
    FillTies(&ties, e);
    TFQ_CHECK_BINARY(rdbpot_w, ties, e)
#undef TFQ_CHECK_BINARY
    r1 = acc; r2 = acc;
    s.mac_w(&r1, &a, &b); t.mac_w(&r2, &a, &b);
    Same(t.name, "mac_w", r1, r2, seed);
    // In-place use (r == a) must work too.
    r1 = a; r2 = a;
    s.srdhm_w(&r1, &r1, &b); t.srdhm_w(&r2, &r2, &b);
    Same(t.name, "srdhm_w(in place)", r1, r2, seed);

    VecU8 ua; VecI8 sb;
    Fill(&ua); Fill(&sb);
    if (trial % 4 == 0) { memset(ua.b, 255, 128); memset(sb.b, 0x80, 128); }  // extremes
    r1 = acc; r2 = acc;
    s.vrmpy_acc(&r1, &ua, &sb); t.vrmpy_acc(&r2, &ua, &sb);
    Same(t.name, "vrmpy_acc", r1, r2, seed);

    const int groups = 1 + rng() % 37;
    std::vector<VecI8> w(groups);
    std::vector<uint8_t> x(4 * groups);
    for (auto& v : w) Fill(&v);
    for (auto& v : x) v = rng();
    if (trial % 4 == 1) { for (auto& v : w) memset(v.b, 0x80, 128); for (auto& v : x) v = 255; }
    r1 = acc; r2 = acc;
    s.vrmpy_splat_acc_n(&r1, x.data(), w.data(), groups);
    t.vrmpy_splat_acc_n(&r2, x.data(), w.data(), groups);
    Same(t.name, "vrmpy_splat_acc_n", r1, r2, seed);

    VecI32 lo, hi;
    Fill32(&lo); Fill32(&hi);
    VecI16 h1, h2, hl, hh;
    s.pack_w_h_sat(&h1, &lo, &hi); t.pack_w_h_sat(&h2, &lo, &hi);
    Same(t.name, "pack_w_h_sat", h1, h2, seed);
    Fill(&hl); Fill(&hh);
    VecI8 b1, b2;
    s.pack_h_b_sat(&b1, &hl, &hh); t.pack_h_b_sat(&b2, &hl, &hh);
    Same(t.name, "pack_h_b_sat", b1, b2, seed);

    int8_t bytes[32];
    for (auto& v : bytes) v = rng();
    s.unpack_b_w(&r1, bytes); t.unpack_b_w(&r2, bytes);
    Same(t.name, "unpack_b_w", r1, r2, seed);
  }
}

// A few hand-checked values of the scalar definitions themselves.
void TestSpec() {
  const Ops& s = *Scalar();
  VecI32 a, b, r, e;
  SplatW(&a, INT32_MIN); SplatW(&b, INT32_MIN);
  s.srdhm_w(&r, &a, &b);
  if (r.w[0] != INT32_MAX) { fprintf(stderr, "FAIL spec srdhm saturation\n"); ++failures; }
  SplatW(&a, 1 << 30); SplatW(&b, 1);  // 2^30 * 1 / 2^31 = 0.5 -> rounds up to 1
  s.srdhm_w(&r, &a, &b);
  if (r.w[0] != 1) { fprintf(stderr, "FAIL spec srdhm tie\n"); ++failures; }
  SplatW(&a, -(1 << 30));  // -0.5 -> rounds up to 0
  s.srdhm_w(&r, &a, &b);
  if (r.w[0] != 0) { fprintf(stderr, "FAIL spec srdhm negative tie\n"); ++failures; }
  SplatW(&e, 1);
  SplatW(&a, -3);  // -1.5 -> -2 (ties away from zero)
  s.rdbpot_w(&r, &a, &e);
  if (r.w[0] != -2) { fprintf(stderr, "FAIL spec rdbpot negative tie\n"); ++failures; }
  SplatW(&a, 3);  // 1.5 -> 2
  s.rdbpot_w(&r, &a, &e);
  if (r.w[0] != 2) { fprintf(stderr, "FAIL spec rdbpot positive tie\n"); ++failures; }
}

}  // namespace

int main(int argc, char** argv) {
  const int trials = argc > 1 ? atoi(argv[1]) : 3000;
  TestSpec();
  const Ops* impls[] = {Avx2(), Avx512()};
  const bool supported[] = {CpuHasAvx2(), CpuHasAvx512Vnni()};
  int tested = 0;
  for (int i = 0; i < 2; ++i) {
    if (impls[i] == nullptr || !supported[i]) {
      printf("skip %s (not compiled in or not supported by this CPU)\n", i ? "avx512" : "avx2");
      continue;
    }
    TestImpl(*Scalar(), *impls[i], trials);
    printf("%s: %d trials compared with scalar\n", impls[i]->name, trials);
    ++tested;
  }
  printf("best implementation here: %s\n", Best()->name);
  if (failures) {
    printf("%d FAILURES\n", failures);
    return 1;
  }
  printf("OK (%d SIMD implementations)\n", tested);
  return 0;
}
