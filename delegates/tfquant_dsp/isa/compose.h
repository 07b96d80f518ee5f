// The definitions of the ISA's micro-kernels (Ops::gemm_requant, Ops::depthwise_rows) as
// compositions of its per-vector operations. Instantiated with the scalar operations, this IS
// the specification the scalar table runs; the AVX2 table instantiates it with its own vector
// operations (inlined, no function-pointer calls), and the AVX-512 table has hand-written
// register-blocked versions tested against it.
//
// Included only by the isa/*.cc files.
#ifndef TFQUANT_DSP_ISA_COMPOSE_H_
#define TFQUANT_DSP_ISA_COMPOSE_H_

#include <stddef.h>

#include "isa/fixed_point.h"
#include "isa/hvx.h"

namespace tfq::isa {
// Internal linkage: a SIMD file instantiates these under its target pragma, and its copies
// must not replace the scalar file's at link time.
namespace {

// The per-vector operations a composition uses (a subset of Ops, known at compile time).
struct VectorPrims {
  void (*vrmpy_splat_acc_n)(VecI32* acc, const uint8_t* x, const VecI8* b, int groups);
  void (*add_w)(VecI32* r, const VecI32* a, const VecI32* b);
  void (*mac_w)(VecI32* acc, const VecI32* a, const VecI32* b);
  void (*shl_w)(VecI32* r, const VecI32* a, const VecI32* s);
  void (*srdhm_w)(VecI32* r, const VecI32* a, const VecI32* b);
  void (*rdbpot_w)(VecI32* r, const VecI32* a, const VecI32* e);
  void (*max_w)(VecI32* r, const VecI32* a, const VecI32* b);
  void (*min_w)(VecI32* r, const VecI32* a, const VecI32* b);
  void (*pack_w_h_sat)(VecI16* r, const VecI32* lo, const VecI32* hi);
  void (*pack_h_b_sat)(VecI8* r, const VecI16* lo, const VecI16* hi);
  void (*unpack_b_w)(VecI32* r, const int8_t* p);
};

// Requantizes 32 accumulators of block `block` and stores the first n bytes at out.
template <const VectorPrims& P>
inline void ComposedRequantStore(const VecI32& acc, const RequantArgs& rq, int block, int n,
                                 int8_t* out) {
  VecI32 x = acc, t;
  LoadW(&t, rq.left_shift + block * 32);
  P.shl_w(&x, &x, &t);
  LoadW(&t, rq.multiplier + block * 32);
  P.srdhm_w(&x, &x, &t);
  LoadW(&t, rq.right_shift + block * 32);
  P.rdbpot_w(&x, &x, &t);
  SplatW(&t, rq.zero_point);
  P.add_w(&x, &x, &t);
  SplatW(&t, rq.act_min);
  P.max_w(&x, &x, &t);
  SplatW(&t, rq.act_max);
  P.min_w(&x, &x, &t);
  VecI16 h;
  P.pack_w_h_sat(&h, &x, &x);
  VecI8 b;
  P.pack_h_b_sat(&b, &h, &h);
  for (int i = 0; i < n; ++i) b.b[i] = static_cast<int8_t>(b.b[i] ^ rq.output_xor);
  StorePartialB(out, b, n);
}

inline int BlockWidth(int channels, int block) {
  const int n = channels - 32 * block;
  return n < 32 ? n : 32;
}

template <const VectorPrims& P>
void ComposedGemmRequant(const GemmArgs& g) {
  for (int r = 0; r < g.rows; ++r) {
    for (int blk = 0; blk < g.blocks; ++blk) {
      VecI32 acc = g.bias[blk];
      const int n = g.groups / g.segments;
      for (int s = 0; s < g.segments; ++s) {
        P.vrmpy_splat_acc_n(&acc, g.a + r * g.a_stride + s * g.segment_stride,
                            g.w + static_cast<size_t>(blk) * g.groups + s * n, n);
      }
      ComposedRequantStore<P>(acc, g.rq, blk, BlockWidth(g.channels, blk),
                              g.out + r * g.out_stride + 32 * blk);
    }
  }
}

template <const VectorPrims& P>
void ComposedDepthwiseRow(const DepthwiseArgs& d, const int8_t* in, int8_t* out) {
  for (int p = 0; p < d.pixels; ++p) {
    const int8_t* window = in + p * d.pixel_stride;
    for (int blk = 0; blk < d.blocks; ++blk) {
      VecI32 acc = d.bias[blk], x;
      int t = 0;
      for (int ky = 0; ky < d.kernel_h; ++ky) {
        for (int kx = 0; kx < d.kernel_w; ++kx, ++t) {
          P.unpack_b_w(&x, window + ky * d.tap_dy + kx * d.tap_dx + 32 * blk);
          P.mac_w(&acc, &x, &d.w[static_cast<size_t>(t) * d.blocks + blk]);
        }
      }
      ComposedRequantStore<P>(acc, d.rq, blk, BlockWidth(d.channels, blk),
                              out + p * d.out_stride + 32 * blk);
    }
  }
}

template <const VectorPrims& P>
void ComposedDepthwiseRows(const DepthwiseArgs& d) {
  for (int row = 0; row < d.rows; ++row) {
    ComposedDepthwiseRow<P>(d, d.in + row * d.in_row_stride, d.out + row * d.out_row_stride);
  }
}

template <const VectorPrims& P>
inline void ComposedScale(VecI32* x, int32_t offset, int32_t shl, int32_t mult, int32_t rshift) {
  VecI32 t;
  SplatW(&t, offset);
  P.add_w(x, x, &t);
  SplatW(&t, shl);
  P.shl_w(x, x, &t);
  SplatW(&t, mult);
  P.srdhm_w(x, x, &t);
  SplatW(&t, rshift);
  P.rdbpot_w(x, x, &t);
}

template <const VectorPrims& P>
void ComposedAddRequant(const AddArgs& g) {
  for (int i = 0; i < g.n; i += 32) {
    const int cnt = g.n - i < 32 ? g.n - i : 32;
    int8_t ta[32] = {0}, tb[32] = {0};
    memcpy(ta, g.a + i, cnt);
    memcpy(tb, g.b + i, cnt);
    VecI32 xa, xb, t;
    P.unpack_b_w(&xa, ta);
    P.unpack_b_w(&xb, tb);
    ComposedScale<P>(&xa, g.a_offset, g.a_shl, g.a_mult, g.a_rshift);
    ComposedScale<P>(&xb, g.b_offset, g.b_shl, g.b_mult, g.b_rshift);
    P.add_w(&xa, &xa, &xb);
    ComposedScale<P>(&xa, 0, g.out_shl, g.out_mult, g.out_rshift);
    SplatW(&t, g.out_offset);
    P.add_w(&xa, &xa, &t);
    SplatW(&t, g.act_min);
    P.max_w(&xa, &xa, &t);
    SplatW(&t, g.act_max);
    P.min_w(&xa, &xa, &t);
    VecI16 h;
    P.pack_w_h_sat(&h, &xa, &xa);
    VecI8 r;
    P.pack_h_b_sat(&r, &h, &h);
    StorePartialB(g.out + i, r, cnt);
  }
}

inline void ScalarMaxBN(int8_t* acc, const int8_t* x, int n) {
  for (int i = 0; i < n; ++i) acc[i] = acc[i] > x[i] ? acc[i] : x[i];
}

inline void ScalarQuantizeF32(const float* in, int n, float scale, int32_t zero_point,
                              int8_t* out) {
  for (int i = 0; i < n; ++i) out[i] = fp::QuantizeFloat(in[i], scale, zero_point);
}

}  // namespace
}  // namespace tfq::isa

#endif  // TFQUANT_DSP_ISA_COMPOSE_H_
