// Compares every SIMD implementation of the emulated ISA with its scalar definition, lane by
// lane, on random data mixed with edge values (INT32_MIN/MAX and neighbours, powers of two and
// their neighbours, rounding ties, values that saturate the packs). Exits nonzero on a mismatch
// and prints the seed and the first differing lane.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmath>
#include <limits>
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

// Random requantization params: shifts anywhere in [0, 31] (realistic ones too), multipliers
// from the edge set, zero point and clamp range anywhere in (or around) int8.
struct RqData {
  std::vector<int32_t> mult, left, right;
  RequantArgs args;
  void Fill(int channels) {
    mult.resize(channels); left.resize(channels); right.resize(channels);
    const int mode = rng() % 3;
    const bool realistic = mode != 0;
    for (int c = 0; c < channels; ++c) {
      mult[c] = realistic ? static_cast<int32_t>((1u << 30) + rng() % (1u << 30)) : EdgeOrRandom32();
      left[c] = realistic ? (rng() % 4 == 0 ? rng() % 3 : 0) : rng() % 32;
      right[c] = realistic ? rng() % 12 : rng() % 32;
      if (mode == 2) {  // what conv layers have (multipliers below 0.5; zero: padding channels)
        left[c] = 0;
        right[c] = 1 + rng() % 23;
        if (rng() % 16 == 0) mult[c] = 0, right[c] = rng() % 32;
      }
    }
    int32_t lo = static_cast<int32_t>(rng() % 300) - 150, hi = static_cast<int32_t>(rng() % 300) - 150;
    if (lo > hi) { const int32_t t = lo; lo = hi; hi = t; }
    if (rng() % 4 == 0) {  // clamp bounds beyond int16 (and zero points that make lanes wrap)
      lo = -100000 - static_cast<int32_t>(rng() % 1000);
      hi = 100000 + static_cast<int32_t>(rng() % 1000);
    }
    args = {mult.data(), left.data(), right.data(), static_cast<int32_t>(rng() % 256) - 128, lo, hi,
            static_cast<uint8_t>(rng() % 2 ? 0x80 : 0)};
  }
  // Rounding ties of rdbpot on tiny accumulators (multipliers near 0.5, shifts 1-3), with the
  // lower clamp bound at, just below or just above the zero point.
  void FillTies(int channels) {
    Fill(channels);
    for (int c = 0; c < channels; ++c) {
      mult[c] = static_cast<int32_t>((1u << 30) + rng() % 4);
      left[c] = 0;
      right[c] = 1 + rng() % 3;
    }
    args.act_min = args.zero_point + static_cast<int32_t>(rng() % 3) - 1;
    args.act_max = 127;
  }
};

// Weights 0 and accumulators (the bias) in [-8, 8]: every requantized value is near zero.
template <typename W>
void TinyAccumulators(std::vector<W>* w, std::vector<VecI32>* bias) {
  for (auto& v : *w) memset(&v, 0, sizeof(v));
  for (auto& v : *bias) {
    for (int i = 0; i < 32; ++i) v.w[i] = static_cast<int32_t>(rng() % 17) - 8;
  }
}

// Accumulators of realistic size, so that requantized values land inside the clamp range (and
// rounding ties decide output bytes) instead of saturating.
void SmallBias(std::vector<VecI32>* bias) {
  for (auto& v : *bias) {
    for (int i = 0; i < 32; ++i) v.w[i] = static_cast<int32_t>(rng() % 8192) - 4096;
  }
}

// The micro-kernels against their compositions (the scalar table), on random tile shapes:
// rows and blocks not multiples of the register tiles, channel counts not multiples of 32,
// strides larger than the rows, and every output byte outside the written range checked too.
void TestMicroKernels(const Ops& s, const Ops& t, int trials) {
  for (int trial = 0; trial < trials; ++trial) {
    const unsigned seed = 7000u * trial + 5u;
    rng.seed(seed);
    {
      GemmArgs g;
      g.rows = 1 + rng() % 15;
      g.groups = 1 + rng() % 20;
      g.blocks = 1 + rng() % 5;
      g.channels = 32 * (g.blocks - 1) + 1 + rng() % 32;
      g.a_stride = 4 * g.groups + rng() % 9;
      g.out_stride = 32 * g.blocks + rng() % 7;
      size_t a_size = g.rows * g.a_stride + 8;
      if (trial % 3 == 2) {  // segmented rows (a convolution's kernel rows read in place)
        g.segments = 1 + rng() % 3;
        g.groups = g.segments * (1 + rng() % 6);
        g.a_stride = 1 + rng() % 13;  // overlapping rows, as pixels of one input line
        g.segment_stride = g.rows * g.a_stride + 4 * g.groups / g.segments + rng() % 5;
        a_size = g.segments * g.segment_stride + 8;
      }
      if (trial % 17 == 7) {  // long rows (the AVX2 kernel widens them in chunks)
        g.segments = trial % 2 ? 1 : 3;
        g.groups = g.segments * (g.segments == 1 ? 1000 + rng() % 900 : 400 + rng() % 500);
        g.a_stride = 4 * g.groups + rng() % 9;
        g.segment_stride = 4 * g.groups / g.segments;
        a_size = g.rows * g.a_stride + 8;
      }
      std::vector<uint8_t> a(a_size);
      for (auto& v : a) v = rng();
      std::vector<VecI8> w(static_cast<size_t>(g.blocks) * g.groups);
      for (auto& v : w) Fill(&v);
      if (trial % 5 == 0) { for (auto& v : a) v = 255; for (auto& v : w) memset(v.b, 0x80, 128); }
      std::vector<VecI32> bias(g.blocks);
      for (auto& v : bias) Fill32(&v);
      if (trial % 4 == 1) SmallBias(&bias);
      RqData rq;
      rq.Fill(32 * g.blocks);
      if (trial % 4 == 3) {
        TinyAccumulators(&w, &bias);
        rq.FillTies(32 * g.blocks);
      }
      g.a = a.data(); g.w = w.data(); g.bias = bias.data(); g.rq = rq.args;
      std::vector<int8_t> o1(g.rows * g.out_stride, 0x5A), o2(o1);
      g.out = o1.data(); s.gemm_requant(g);
      g.out = o2.data(); t.gemm_requant(g);
      if (o1 != o2) {
        fprintf(stderr, "FAIL %s.gemm_requant seed=%u rows=%d groups=%d segments=%d blocks=%d "
                "channels=%d\n", t.name, seed, g.rows, g.groups, g.segments, g.blocks, g.channels);
        ++failures;
      }
    }
    {
      DepthwiseArgs d;
      d.kernel_h = 1 + rng() % 4;
      d.kernel_w = 1 + rng() % 4;
      if (trial % 2 == 0) d.kernel_h = d.kernel_w = 3;
      d.pixels = 1 + rng() % 9;
      d.blocks = 1 + rng() % 3;
      d.channels = 32 * (d.blocks - 1) + 1 + rng() % 32;
      const int cp = 32 * d.blocks;
      d.tap_dx = cp;
      d.tap_dy = cp * (d.kernel_w + 3);
      d.pixel_stride = cp * (1 + rng() % 2);
      d.out_stride = cp + rng() % 5;
      d.rows = 1 + rng() % 3;
      d.in_row_stride = d.tap_dy * (1 + rng() % 2);
      std::vector<int8_t> in((d.rows - 1) * d.in_row_stride + d.pixels * d.pixel_stride +
                             d.kernel_h * d.tap_dy + 64);
      for (auto& v : in) v = static_cast<int8_t>(rng());
      std::vector<VecI32> w(static_cast<size_t>(d.kernel_h) * d.kernel_w * d.blocks);
      for (auto& v : w) {
        if (trial % 3 == 0) Fill32(&v);  // any int32 weights (wrap-around products)
        else for (int i = 0; i < 32; ++i) v.w[i] = static_cast<int8_t>(rng());
      }
      std::vector<VecI32> bias(d.blocks);
      for (auto& v : bias) Fill32(&v);
      if (trial % 4 == 1) SmallBias(&bias);
      RqData rq;
      rq.Fill(cp);
      if (trial % 4 == 3) {
        TinyAccumulators(&w, &bias);
        rq.FillTies(cp);
      }
      d.in = in.data(); d.w = w.data(); d.bias = bias.data(); d.rq = rq.args;
      d.out_row_stride = d.pixels * d.out_stride + rng() % 5;
      std::vector<int8_t> o1(d.rows * d.out_row_stride, 0x5A), o2(o1);
      d.out = o1.data(); s.depthwise_rows(d);
      d.out = o2.data(); t.depthwise_rows(d);
      if (o1 != o2) {
        fprintf(stderr, "FAIL %s.depthwise_rows seed=%u k=%dx%d rows=%d pixels=%d channels=%d\n",
                t.name, seed, d.kernel_h, d.kernel_w, d.rows, d.pixels, d.channels);
        ++failures;
      }
    }
  }
}

// GEMM tiles requantized straight from their registers (the fast path) next to blocks that
// need the lane-by-lane definition, in one call: full 6-row tiles and a remainder, a block
// pair and a single block, a ReLU-like clamp (act_min >= zero point) or not, accumulators
// near rounding ties (small ones, multipliers near 0.5) or large enough to saturate.
void TestGemmTileMix(const Ops& s, const Ops& t, int trials) {
  for (int trial = 0; trial < trials; ++trial) {
    const unsigned seed = 6100u * trial + 11u;
    rng.seed(seed);
    GemmArgs g;
    g.rows = 6 * (1 + rng() % 3) + rng() % 6;
    g.groups = 1 + rng() % 12;
    g.blocks = 1 + rng() % 3;
    g.channels = 32 * g.blocks - rng() % 3;
    g.a_stride = 4 * g.groups;
    g.out_stride = g.channels + (rng() % 2 ? 0 : 1 + rng() % 5);
    std::vector<uint8_t> a(g.rows * g.a_stride + 8);
    for (auto& v : a) v = rng();
    std::vector<VecI8> w(static_cast<size_t>(g.blocks) * g.groups);
    for (auto& v : w) Fill(&v);
    std::vector<VecI32> bias(g.blocks);
    SmallBias(&bias);
    RqData rq;
    const bool ties = trial % 2 == 1;
    if (ties) {
      TinyAccumulators(&w, &bias);
      rq.FillTies(32 * g.blocks);
    } else {
      rq.Fill(32 * g.blocks);
      for (int c = 0; c < 32 * g.blocks; ++c) {  // fast-path params (conv layers')
        rq.mult[c] = static_cast<int32_t>((1u << 30) + rng() % (1u << 30));
        rq.left[c] = 0;
        rq.right[c] = 1 + rng() % 12;
      }
      rq.args.zero_point = static_cast<int32_t>(rng() % 256) - 128;
      const bool relu = trial % 4 == 0;
      rq.args.act_min = relu ? rq.args.zero_point : -128;
      rq.args.act_max = 127;
    }
    // One block (when there are several) takes the general path: a left shift.
    if (g.blocks > 1) {
      const int general = static_cast<int>(rng() % g.blocks);
      for (int c = 0; c < 32; ++c) rq.left[32 * general + c] = 1;
    }
    g.a = a.data(); g.w = w.data(); g.bias = bias.data(); g.rq = rq.args;
    std::vector<int8_t> o1(g.rows * g.out_stride, 0x5A), o2(o1);
    g.out = o1.data(); s.gemm_requant(g);
    g.out = o2.data(); t.gemm_requant(g);
    if (o1 != o2) {
      fprintf(stderr, "FAIL %s.gemm_requant (tile mix) seed=%u rows=%d groups=%d blocks=%d "
              "channels=%d ties=%d\n", t.name, seed, g.rows, g.groups, g.blocks, g.channels,
              ties);
      ++failures;
    }
  }
}

// 3x3 depthwise rows at strides 1 and 2 with int8 weights (the AVX-512 column-sharing path,
// which carries pair interleaves from pixel to pixel at stride 1): pixel counts odd and even
// (pairs of pixels share a narrowing), several rows, ReLU-like clamps or not, rounding ties.
void TestDepthwise3x3(const Ops& s, const Ops& t, int trials) {
  for (int trial = 0; trial < trials; ++trial) {
    const unsigned seed = 3700u * trial + 13u;
    rng.seed(seed);
    DepthwiseArgs d;
    d.kernel_h = d.kernel_w = 3;
    d.pixels = 1 + rng() % 40;
    d.blocks = 1 + rng() % 2;
    d.channels = 32 * d.blocks - rng() % 3;
    const int cp = 32 * d.blocks;
    const int stride = 1 + trial % 2;
    d.tap_dx = cp;
    d.tap_dy = cp * (stride * d.pixels + 3);
    d.pixel_stride = stride * cp;
    d.out_stride = cp + rng() % 3;
    d.rows = 1 + rng() % 3;
    d.in_row_stride = d.tap_dy;
    std::vector<int8_t> in((d.rows + 2) * d.tap_dy + 64);
    for (auto& v : in) v = static_cast<int8_t>(rng());
    std::vector<VecI32> w(static_cast<size_t>(9) * d.blocks);
    for (auto& v : w) for (int i = 0; i < 32; ++i) v.w[i] = static_cast<int8_t>(rng());
    std::vector<VecI32> bias(d.blocks);
    SmallBias(&bias);
    RqData rq;
    if (trial % 3 == 2) {
      TinyAccumulators(&w, &bias);
      rq.FillTies(cp);
    } else {
      rq.Fill(cp);
      for (int c = 0; c < cp; ++c) {  // conv layers' params: the fast requantization
        rq.mult[c] = static_cast<int32_t>((1u << 30) + rng() % (1u << 30));
        rq.left[c] = 0;
        rq.right[c] = 1 + rng() % 12;
      }
      rq.args.zero_point = static_cast<int32_t>(rng() % 256) - 128;
      rq.args.act_min = trial % 4 < 2 ? rq.args.zero_point : -128;
      rq.args.act_max = 127;
      if (trial % 5 == 0) rq.left[rng() % cp] = 1;  // a block on the lane-by-lane path
    }
    d.in = in.data(); d.w = w.data(); d.bias = bias.data(); d.rq = rq.args;
    d.out_row_stride = d.pixels * d.out_stride + rng() % 5;
    std::vector<int8_t> o1(d.rows * d.out_row_stride, 0x5A), o2(o1);
    d.out = o1.data(); s.depthwise_rows(d);
    d.out = o2.data(); t.depthwise_rows(d);
    if (o1 != o2) {
      fprintf(stderr, "FAIL %s.depthwise_rows (3x3) seed=%u stride=%d rows=%d pixels=%d "
              "channels=%d\n", t.name, seed, stride, d.rows, d.pixels, d.channels);
      ++failures;
    }
  }
}

void TestAdd(const Ops& s, const Ops& t, int trials) {
  for (int trial = 0; trial < trials; ++trial) {
    const unsigned seed = 9100u * trial + 3u;
    rng.seed(seed);
    AddArgs g;
    g.n = 1 + rng() % 200;
    std::vector<int8_t> a(g.n), b(g.n), o1(g.n + 8, 0x5A), o2(o1);
    for (auto& v : a) v = static_cast<int8_t>(rng());
    for (auto& v : b) v = static_cast<int8_t>(rng());
    const bool realistic = rng() % 2;
    auto mult = [&] { return realistic ? static_cast<int32_t>((1u << 30) + rng() % (1u << 30)) : EdgeOrRandom32(); };
    auto shift = [&] { return static_cast<int32_t>(realistic ? rng() % 12 : rng() % 32); };
    g.a_offset = static_cast<int32_t>(rng() % 256) - 128;
    g.b_offset = static_cast<int32_t>(rng() % 256) - 128;
    g.a_shl = realistic ? 20 : rng() % 32;
    g.b_shl = realistic ? 20 : rng() % 32;
    g.a_mult = mult(); g.b_mult = mult(); g.out_mult = mult();
    g.a_rshift = shift(); g.b_rshift = shift(); g.out_rshift = realistic ? 20 + rng() % 8 : shift();
    g.out_shl = realistic ? 0 : rng() % 32;
    g.out_offset = static_cast<int32_t>(rng() % 256) - 128;
    g.act_min = -128 + static_cast<int32_t>(rng() % 100);
    g.act_max = 127 - static_cast<int32_t>(rng() % 100);
    g.a = a.data(); g.b = b.data();
    g.out = o1.data(); s.add_requant(g);
    g.out = o2.data(); t.add_requant(g);
    if (o1 != o2) {
      fprintf(stderr, "FAIL %s.add_requant seed=%u n=%d\n", t.name, seed, g.n);
      ++failures;
    }
  }
}

void TestMaxB(const Ops& s, const Ops& t, int trials) {
  for (int trial = 0; trial < trials; ++trial) {
    const unsigned seed = 5300u * trial + 1u;
    rng.seed(seed);
    const int n = 1 + rng() % 300;
    std::vector<int8_t> acc(n + 8), x(n);
    for (auto& v : acc) v = static_cast<int8_t>(rng());
    for (auto& v : x) v = static_cast<int8_t>(rng());
    std::vector<int8_t> a1(acc), a2(acc);
    s.max_b_n(a1.data(), x.data(), n);
    t.max_b_n(a2.data(), x.data(), n);
    if (a1 != a2) {
      fprintf(stderr, "FAIL %s.max_b_n seed=%u n=%d\n", t.name, seed, n);
      ++failures;
    }
  }
}

void TestQuantize(const Ops& s, const Ops& t, int trials) {
  static const float kEdges[] = {0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 0.49999997f, -0.49999997f,
                                 8388607.5f, -8388607.5f, 8388608.0f, -8388608.0f, 1e6f, -1e6f,
                                 3e9f, -3e9f, 1e30f, -1e30f, 0.0f, -0.0f};
  for (int trial = 0; trial < trials; ++trial) {
    const unsigned seed = 4400u * trial + 9u;
    rng.seed(seed);
    const int n = 1 + rng() % 70;
    const float scale = trial % 3 == 0 ? 1.0f : std::ldexp(1.0f + (rng() % 1000) / 1000.0f, -int(rng() % 10));
    const int32_t zp = static_cast<int32_t>(rng() % 256) - 128;
    std::vector<float> in(n);
    for (auto& v : in) {
      switch (rng() % 5) {
        case 0: v = kEdges[rng() % (sizeof(kEdges) / sizeof(kEdges[0]))] * scale; break;
        case 1: v = (static_cast<int>(rng() % 600) - 300 + 0.5f) * scale; break;  // ties
        case 4: {  // a few ulps off a tie (the AVX-512 reciprocal path's margin)
          v = (static_cast<int>(rng() % 8000) - 4000 + 0.5f) * scale;
          const float toward = rng() % 2 ? HUGE_VALF : -HUGE_VALF;
          for (int k = static_cast<int>(rng() % 6); k > 0; --k) v = std::nextafter(v, toward);
          break;
        }
        case 2: v = std::numeric_limits<float>::quiet_NaN(); break;
        default: v = (static_cast<float>(rng()) / 4294967296.0f - 0.5f) * 400.0f * scale;
      }
    }
    std::vector<int8_t> o1(n + 4, 0x5A), o2(o1);
    s.quantize_f32(in.data(), n, scale, zp, o1.data());
    t.quantize_f32(in.data(), n, scale, zp, o2.data());
    if (o1 != o2) {
      fprintf(stderr, "FAIL %s.quantize_f32 seed=%u\n", t.name, seed);
      ++failures;
    }
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
  int tested = 0;
  for (int i = 0; i < IsaCount(); ++i) {  // every SIMD implementation of the registry
    const IsaEntry& entry = IsaAt(i);
    const Ops* impl = entry.table();
    if (impl == Scalar()) continue;
    if (!Runnable(entry)) {
      printf("skip %s (%s)\n", entry.name,
             impl ? "not supported by this CPU" : "not compiled in");
      continue;
    }
    if (strcmp(impl->name, entry.name) != 0) {
      printf("FAIL: registry entry %s holds table %s\n", entry.name, impl->name);
      ++failures;
    }
    TestImpl(*Scalar(), *impl, trials);
    TestMicroKernels(*Scalar(), *impl, trials / 3 + 1);
    TestGemmTileMix(*Scalar(), *impl, trials / 3 + 1);
    TestDepthwise3x3(*Scalar(), *impl, trials / 3 + 1);
    TestAdd(*Scalar(), *impl, trials / 3 + 1);
    TestQuantize(*Scalar(), *impl, trials / 3 + 1);
    TestMaxB(*Scalar(), *impl, trials / 3 + 1);
    printf("%s: %d trials compared with scalar\n", impl->name, trials);
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
