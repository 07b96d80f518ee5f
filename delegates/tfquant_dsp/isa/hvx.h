// The emulated DSP vector ISA: Hexagon-HVX-like 128-byte vectors with distinct types per lane
// width, and the operations the kernels use. Each operation's plain scalar definition (namespace
// tfq::isa::ref, isa/hvx_ref.cc) IS its specification; the host SIMD implementations
// (isa/hvx_avx2.cc, isa/hvx_avx512.cc) must give the same bits for every input, which
// tests/isa_test.cc checks on random data and edge values.
//
// Kernels reach the operations through a table of function pointers (`Ops`) chosen once at run
// time from the CPU's features and the ISA registry (`Best()`); the environment variable
// TFQUANT_DSP_ISA or the delegate option `isa` (a registry name) forces a lower one.
#ifndef TFQUANT_DSP_ISA_HVX_H_
#define TFQUANT_DSP_ISA_HVX_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace tfq::isa {

constexpr int kVectorBytes = 128;

struct alignas(64) VecI8 { int8_t b[128]; };     // 128 x int8
struct alignas(64) VecU8 { uint8_t b[128]; };    // 128 x uint8
struct alignas(64) VecI16 { int16_t h[64]; };    // 64 x int16
struct alignas(64) VecI32 { int32_t w[32]; };    // 32 x int32

// Requantization of int32 accumulators to int8, per channel (TFLite's
// MultiplyByQuantizedMultiplier, + zero point, clamp): for channel c,
//   y = min(max(rdbpot(srdhm(shl(acc, left_shift[c]), multiplier[c]), right_shift[c]) + zp,
//               act_min), act_max), then the two saturating packs to int8 (XOR output_xor).
// The arrays hold 32 entries per block of 32 channels.
struct RequantArgs {
  const int32_t* multiplier;
  const int32_t* left_shift;
  const int32_t* right_shift;
  int32_t zero_point, act_min, act_max;
  // XORed into every stored byte: 0, or 0x80 to store y + 128 as u8 (the form a CONV_2D's
  // vrmpy reads its input in, so that a consumer need not convert it).
  uint8_t output_xor = 0;
};

// A GEMM tile with fused requantization (the inner loops of CONV_2D): `rows` rows of u8
// activations (row r at a + r * a_stride, 4 * groups bytes) times `blocks` blocks of packed
// weights (w[blk * groups + g]: 32 channels x 4 consecutive k, as vrmpy_splat_acc_n wants).
// A row may be split into `segments` equal runs of groups / segments groups, run s at
// a + r * a_stride + s * segment_stride: a convolution then reads each kernel row's taps
// straight from its input line instead of from a copied (im2col) row.
struct GemmArgs {
  const uint8_t* a;
  ptrdiff_t a_stride;
  int rows, groups;
  int segments = 1;             // divides groups
  ptrdiff_t segment_stride = 0;
  const VecI8* w;       // [blocks][groups]
  const VecI32* bias;   // [blocks]
  int blocks;
  int channels;         // channels written: min(32, channels - 32 * blk) of block blk
  RequantArgs rq;       // indexed from channel 0 of block 0
  int8_t* out;          // row r, channel c at out + r * out_stride + c
  ptrdiff_t out_stride;
};

// Depthwise rows (the inner loops of DEPTHWISE_CONV_2D): `rows` rows of `pixels` output pixels;
// pixel p of row r reads the int8 window at in + r * in_row_stride + p * pixel_stride, tap
// (ky, kx) at + ky * tap_dy + kx * tap_dx, channel c at + c (the caller pads the input with its
// zero point), and is written at out + r * out_row_stride + p * out_stride.
struct DepthwiseArgs {
  const int8_t* in;
  ptrdiff_t pixel_stride, tap_dy, tap_dx;
  int kernel_h, kernel_w, pixels;
  int rows = 1;
  ptrdiff_t in_row_stride = 0, out_row_stride = 0;
  const VecI32* w;      // [kernel_h * kernel_w][blocks] widened weights
  const VecI32* bias;   // [blocks]
  int blocks, channels;
  RequantArgs rq;
  int8_t* out;          // pixel p, channel c at out + p * out_stride + c
  ptrdiff_t out_stride;
};

// Element-wise ADD of two int8 streams (TFLite's int8 ADD): for each input,
// x = rdbpot(srdhm(shl(x + offset, shl), mult), rshift); then
// out = clamp(rdbpot(srdhm(shl(xa + xb, out_shl), out_mult), out_rshift) + out_offset).
struct AddArgs {
  const int8_t* a;
  const int8_t* b;
  int8_t* out;
  int n;
  int32_t a_offset, a_shl, a_mult, a_rshift;
  int32_t b_offset, b_shl, b_mult, b_rshift;
  int32_t out_shl, out_mult, out_rshift, out_offset, act_min, act_max;
};

// One implementation of the ISA. Lane i of the result is defined from lane i of the operands
// unless the comment says otherwise. Pointers may alias only where noted (r == a is allowed for
// every element-wise op).
struct Ops {
  const char* name;
  // vrmpy (vector x vector): r.w[i] = acc.w[i] + sum_{j<4} a.b[4i+j] * b.b[4i+j], u8 x s8,
  // int32 wrap-around, no saturation.
  void (*vrmpy_acc)(VecI32* acc, const VecU8* a, const VecI8* b);
  // vrmpy (vector x scalar) repeated over `groups` weight vectors:
  // acc.w[i] += sum_{g<groups} sum_{j<4} x[4g+j] * b[g].b[4i+j]  (x: u8, b: s8, wrap-around).
  // The GEMM inner loop of CONV_2D / FULLY_CONNECTED. x must hold 4*groups bytes.
  void (*vrmpy_splat_acc_n)(VecI32* acc, const uint8_t* x, const VecI8* b, int groups);
  void (*add_w)(VecI32* r, const VecI32* a, const VecI32* b);   // wrap-around
  void (*sub_w)(VecI32* r, const VecI32* a, const VecI32* b);   // wrap-around
  void (*mul_w)(VecI32* r, const VecI32* a, const VecI32* b);   // low 32 bits of the product
  // acc.w[i] += a.w[i] * b.w[i], low 32 bits (vmpyie/vmpyio accumulate pair).
  void (*mac_w)(VecI32* acc, const VecI32* a, const VecI32* b);
  // Left shift by s.w[i] in [0, 31], bits shifted out are lost (wrap-around).
  void (*shl_w)(VecI32* r, const VecI32* a, const VecI32* s);
  // Rounding doubling high multiply (gemmlowp SaturatingRoundingDoublingHighMul, ARM SQRDMULH,
  // HVX vmpye/vmpyo:rnd:sat): floor((a*b + 2^30) / 2^31), saturating only INT32_MIN*INT32_MIN.
  void (*srdhm_w)(VecI32* r, const VecI32* a, const VecI32* b);
  // Rounding divide by 2^e.w[i], e in [0, 31], ties away from zero (gemmlowp
  // RoundingDivideByPOT; on HVX: a saturating -1 on negative lanes, then vasr:rnd).
  void (*rdbpot_w)(VecI32* r, const VecI32* a, const VecI32* e);
  void (*max_w)(VecI32* r, const VecI32* a, const VecI32* b);
  void (*min_w)(VecI32* r, const VecI32* a, const VecI32* b);
  // Saturating packs: r lanes [0, n/2) from lo, [n/2, n) from hi, in order.
  void (*pack_w_h_sat)(VecI16* r, const VecI32* lo, const VecI32* hi);
  void (*pack_h_b_sat)(VecI8* r, const VecI16* lo, const VecI16* hi);
  // Sign-extends 32 int8 values at p into the 32 int32 lanes of r.
  void (*unpack_b_w)(VecI32* r, const int8_t* p);

  // ---- Micro-kernels: whole inner loops, so a kernel calls the ISA once per tile instead of
  // once per vector. Each is DEFINED as the composition of the operations above written in
  // isa/compose.h (the scalar table runs exactly that); a SIMD table may compute it any way
  // that gives the same bits, which tests/isa_test.cc checks.
  //
  // For r < rows, blk < blocks: acc = bias[blk]; for each segment s (of n = groups / segments
  // groups) vrmpy_splat_acc_n(acc, a + r * a_stride + s * segment_stride,
  // w + blk * groups + s * n, n); requantize (RequantArgs) and store the first
  // min(32, channels - 32 * blk) bytes at out + r * out_stride + 32 * blk.
  void (*gemm_requant)(const GemmArgs& args);
  // For each row, p < pixels, blk < blocks: acc = bias[blk]; for each tap t = ky * kernel_w + kx:
  // unpack_b_w(x, window(p, ky, kx) + 32 * blk); mac_w(acc, x, w[t * blocks + blk]); then
  // requantize and store as gemm_requant does.
  void (*depthwise_rows)(const DepthwiseArgs& args);
  // For each chunk of 32 elements (the last one partial: lanes beyond n read as 0 and are not
  // stored): unpack_b_w both inputs, then per input add_w offset, shl_w, srdhm_w, rdbpot_w
  // (splatted params), add_w the two, shl_w, srdhm_w, rdbpot_w, add_w out_offset, max_w,
  // min_w, the two packs, store.
  void (*add_requant)(const AddArgs& args);
  // Byte max over a row (HVX vmax.b): acc[i] = max(acc[i], x[i]) for i < n (MAX_POOL_2D).
  void (*max_b_n)(int8_t* acc, const int8_t* x, int n);
  // QUANTIZE at a float boundary of the model: out[i] = fp::QuantizeFloat(in[i], scale, zp).
  void (*quantize_f32)(const float* in, int n, float scale, int32_t zero_point, int8_t* out);
};

// Operations whose every implementation is the scalar one (data movement).
inline void SplatW(VecI32* r, int32_t v) { for (int i = 0; i < 32; ++i) r->w[i] = v; }
inline void LoadW(VecI32* r, const int32_t* p) { memcpy(r->w, p, sizeof(r->w)); }
inline void StoreW(int32_t* p, const VecI32& a) { memcpy(p, a.w, sizeof(a.w)); }
// Partial load: lanes [0, n) from p, the rest `fill`.
inline void LoadPartialB(VecI8* r, const int8_t* p, int n, int8_t fill) {
  memcpy(r->b, p, n);
  memset(r->b + n, fill, 128 - n);
}
// Partial store of lanes [0, n).
inline void StorePartialB(int8_t* p, const VecI8& a, int n) { memcpy(p, a.b, n); }

// The implementations; each returns nullptr where it is not compiled in (another
// architecture, or TFQUANT_DSP_NO_SIMD).
const Ops* Scalar();
const Ops* Avx2();
const Ops* Avx512();    // AVX-512 F + BW + VNNI
const Ops* Neon();      // aarch64 ASIMD
const Ops* NeonI8mm();  // aarch64 ASIMD + I8MM (USDOT)

// The ISA registry: every implementation this library knows, in one table (isa/registry.cc).
// Best(), ByName(), the delegate's `isa` option, the Python loader (through the exported
// tfquant_dsp_isas) and the ISA test all read it; adding an ISA is one entry here.
struct IsaEntry {
  const char* name;
  const Ops* (*table)();   // nullptr result where not compiled in
  bool (*supported)();     // whether this CPU can run it
  int priority;            // Best() prefers the highest runnable one
};
int IsaCount();
const IsaEntry& IsaAt(int i);
// Compiled in and supported by this CPU.
bool Runnable(const IsaEntry& entry);

// CPU features (false on other architectures or without SIMD compiled in).
bool CpuHasAvx2();
bool CpuHasAvx512Vnni();
bool CpuHasI8mm();

// The int8 dot-product peak of one core, measured (isa/vnni_peak.cc): `seconds` of a
// register-only loop of independent VPDPBUSD, zmm with AVX-512 VNNI, else ymm with AVX-VNNI,
// in GMAC/s; 0 without VNNI. *form (if given) is set to "zmm", "ymm" or "none".
double MeasureVnniPeak(double seconds, const char** form);

// The best runnable implementation, capped by TFQUANT_DSP_ISA if set (an ISA name: nothing
// of higher priority is chosen).
const Ops* Best();
// Lookup by registry name; nullptr if unknown or not runnable here.
const Ops* ByName(const char* name);
// "name (runnable), name (not on this CPU), ..." for messages.
void DescribeIsas(char* buffer, size_t size);

}  // namespace tfq::isa

#endif  // TFQUANT_DSP_ISA_HVX_H_
