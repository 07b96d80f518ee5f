// int8 kernels on the emulated DSP ISA, each bit-exact with TFLite's reference kernel of the same
// op. Shapes are NHWC. The kernels know nothing about TFLite's structs: the delegate
// (delegate/) translates nodes into these parameter structs.
//
// Weighted ops (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) are classes: the constructor
// repacks the constant weights once into the layout the vector loop wants; Run() may be called
// with any input shape.
#ifndef TFQUANT_DSP_KERNELS_KERNELS_H_
#define TFQUANT_DSP_KERNELS_KERNELS_H_

#include <stdint.h>

#include <vector>

#include "isa/hvx.h"
#include "kernels/quant_util.h"
#include "kernels/thread_pool.h"

namespace tfq::kernels {

// The emulated HVX instructions one run of a kernel issues, counted analytically from its loop
// structure (no counting on the fast path), by instruction class of a Hexagon-class vector
// unit: the DSP cost model turns them into cycles. macs are the useful multiply-accumulates.
struct HvxCount {
  int64_t macs = 0;
  int64_t vrmpy = 0;   // 4-way byte multiply-accumulate (128 MACs each)
  int64_t vmpy = 0;    // other multiplies (32-bit lane products, rounding doubling multiply)
  int64_t valu = 0;    // add / sub / min / max / compare / logic
  int64_t vshift = 0;  // shifts, packs, unpacks, permutes
  int64_t vload = 0;   // 128-byte vector loads
  int64_t vstore = 0;  // 128-byte vector stores
  HvxCount& operator+=(const HvxCount& o) {
    macs += o.macs; vrmpy += o.vrmpy; vmpy += o.vmpy; valu += o.valu; vshift += o.vshift;
    vload += o.vload; vstore += o.vstore;
    return *this;
  }
};
// Requantizing n vectors of 32 accumulators (shl, srdhm = 2 multiplies, rdbpot = 2 ALU + 1
// shift, + zero point, min, max, 2 packs, 1 store).
HvxCount RequantCount(int64_t n);
// An element-wise pass over n bytes with `alu` ALU, `mpy` multiply and `shift` shift-class
// instructions per 32 lanes, `loads` input streams and one output stream.
HvxCount ElementwiseCount(int64_t n, int alu, int mpy, int shift, int loads);

// Requantization of an int32 accumulator to int8 for 32 output channels at a time.
struct Requant {
  std::vector<int32_t> multiplier, left_shift, right_shift;  // per channel, padded to 32
  int32_t output_zero_point = 0, act_min = -128, act_max = 127;
  uint8_t output_xor = 0;  // 0x80: the output is stored biased (x + 128 as u8), see Conv2D
};

// The scratch memory of one kernel Run (im2col rows, padded inputs), shared by every kernel the
// calling thread runs: kernels on one thread run one at a time (their pool tasks only index
// into it), so the thread keeps one buffer, the largest any kernel asked for, instead of one
// per layer. Its contents are undefined on entry. Throws std::bad_alloc.
uint8_t* ThreadScratch(size_t bytes);

// ---- GEMM-based: CONV_2D and FULLY_CONNECTED --------------------------------------------------

struct ConvGeometry {
  int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  bool same_padding = false;
};

// Weights [out][k] (k = kh*kw*in) packed for vrmpy: per block of 32 output channels, k/4 vectors
// of 128 bytes holding [32 channels][4 consecutive k]. Activations enter the dot product as u8
// (x + 128); the bias absorbs -(128 + input_zero_point) * sum(w), so padding taps filled with the
// input zero point contribute exactly nothing, as in the reference kernel.
class PackedGemm {
 public:
  // filter: [out][depth] int8; bias: int32 or nullptr; input_zero_point of the activations.
  PackedGemm(const int8_t* filter, int out, int depth, const int32_t* bias,
             int32_t input_zero_point);
  int out() const { return out_; }
  int depth() const { return depth_; }
  int padded_depth() const { return groups_ * 4; }
  // The int32 accumulators (bias and zero-point corrections included) for all out channels.
  void RowAccumulators(const isa::Ops& ops, const uint8_t* row, int32_t* acc) const;
  // The GEMM tile arguments for rows of a (a_stride apart) and blocks [blk0, blk0 + blocks).
  isa::GemmArgs Args(const uint8_t* a, ptrdiff_t a_stride, int rows, int blk0, int blocks,
                     const Requant& rq, int8_t* out, ptrdiff_t out_stride) const;
  int blocks() const { return blocks_; }
  int groups() const { return groups_; }

 private:
  int out_, depth_, groups_, blocks_;
  std::vector<isa::VecI8> packed_;        // [blocks][groups]
  std::vector<isa::VecI32> bias_;         // [blocks]
};

class Conv2D {
 public:
  // filter [out][kh][kw][in]; per-channel (or per-tensor: one) filter scales.
  Conv2D(const int8_t* filter, int out_channels, int in_channels, const ConvGeometry& g,
         const int32_t* bias, float input_scale, int32_t input_zero_point,
         const float* filter_scales, int num_scales, float output_scale,
         int32_t output_zero_point, Activation act);
  void OutputShape(const int in_shape[4], int out_shape[4]) const;
  void Run(const isa::Ops& ops, ThreadPool* pool, const int8_t* input, const int in_shape[4],
           int8_t* output) const;
  HvxCount Count(const int in_shape[4]) const;
  const PackedGemm& gemm() const { return gemm_; }
  // Biased activations: x + 128 stored as u8 (x ^ 0x80), the form vrmpy reads. With a biased
  // input the im2col needs no conversion (a pointwise convolution reads the input in place);
  // a biased output is for consumers that are all such convolutions (the delegate decides).
  void SetInputBiased() { input_biased_ = true; }
  void SetOutputBiased() { rq_.output_xor = 0x80; }

 private:
  // Inputs of few channels (a network's first layer): the GEMM reads each kernel row's taps
  // straight from zero-point-padded u8 input lines (GemmArgs::segments), no im2col copy; the
  // weights of each kernel row are padded with zeros to whole groups of 4 (see UseLines).
  void RunLines(const isa::Ops& ops, ThreadPool* pool, const int8_t* input, const int s[4],
                const int o[4], int pad_top, int pad_left, int8_t* output) const;
  int out_channels_, in_channels_;
  ConvGeometry g_;
  int32_t input_zero_point_;
  bool input_biased_ = false;
  bool lines_;  // RunLines
  PackedGemm gemm_;
  Requant rq_;
};

class DepthwiseConv2D {
 public:
  // filter [1][kh][kw][in * multiplier]; output channel c reads input channel c / multiplier.
  DepthwiseConv2D(const int8_t* filter, int in_channels, int multiplier, const ConvGeometry& g,
                  const int32_t* bias, float input_scale, int32_t input_zero_point,
                  const float* filter_scales, int num_scales, float output_scale,
                  int32_t output_zero_point, Activation act);
  void OutputShape(const int in_shape[4], int out_shape[4]) const;
  void Run(const isa::Ops& ops, ThreadPool* pool, const int8_t* input, const int in_shape[4],
           int8_t* output) const;
  HvxCount Count(const int in_shape[4]) const;
  void SetOutputBiased() { rq_.output_xor = 0x80; }  // see Conv2D
  // Absorbs a PAD of the input with the input zero point (the delegate fuses PAD -> this op):
  // the input is taken as padded by these rows / columns before the op's own padding. Padding
  // taps contribute nothing either way, so the result is that of the two ops.
  void SetInputPadding(int top, int bottom, int left, int right) {
    input_pad_[0] = top; input_pad_[1] = bottom; input_pad_[2] = left; input_pad_[3] = right;
  }

 private:
  int in_channels_, multiplier_, out_channels_, padded_channels_;
  int input_pad_[4] = {0, 0, 0, 0};  // SetInputPadding: top, bottom, left, right
  // multiplier 1, channels a multiple of 32, not small (see Run): interior windows read the
  // input in place.
  void RunUnpadded(const isa::Ops& ops, ThreadPool* pool, const int8_t* input, const int s[4],
                   const int o[4], int pad_top, int pad_left, int8_t* output) const;
  ConvGeometry g_;
  int32_t input_zero_point_;
  std::vector<isa::VecI32> weights_;  // [kh*kw][blocks] widened filter values
  std::vector<isa::VecI32> bias_;     // [blocks]: bias - input_zp * sum over taps of w
  Requant rq_;
};

enum class FcRequant { kFixedPoint, kDouble };

class FullyConnected {
 public:
  // filter [out][depth]; num_scales 1 (per-tensor) or out (per-channel).
  FullyConnected(const int8_t* filter, int out, int depth, const int32_t* bias, float input_scale,
                 int32_t input_zero_point, const float* filter_scales, int num_scales,
                 float output_scale, int32_t output_zero_point, Activation act, FcRequant mode);
  // input holds `batches` rows of depth values.
  void Run(const isa::Ops& ops, const int8_t* input, int batches, int8_t* output) const;
  HvxCount Count(int batches) const;

 private:
  int out_, depth_;
  int32_t input_zero_point_;
  FcRequant mode_;
  PackedGemm gemm_;
  Requant rq_;
  std::vector<double> double_scale_;  // per channel, kDouble mode
  std::vector<int32_t> raw_bias_;     // kDouble mode works on the raw accumulator
  int32_t output_zero_point_, act_min_, act_max_;
};

// ---- element-wise and data movement ------------------------------------------------------------

struct QuantParams {
  float scale;
  int32_t zero_point;
};

// Broadcast shapes are given as 4-D (leading ones added by the caller).
struct AddParams {
  int32_t input1_offset, input2_offset, output_offset;
  int32_t input1_multiplier, input2_multiplier, output_multiplier;
  int input1_shift, input2_shift, output_shift;
  int left_shift;
  int32_t act_min, act_max;
};
AddParams MakeAddParams(QuantParams in1, QuantParams in2, QuantParams out, Activation act);
void Add(const isa::Ops& ops, ThreadPool* pool, const AddParams& p, const int8_t* a, const int a_shape[4],
         const int8_t* b, const int b_shape[4], int8_t* out, const int out_shape[4]);

struct MulParams {
  int32_t input1_offset, input2_offset, output_offset, multiplier;
  int shift;
  int32_t act_min, act_max;
};
MulParams MakeMulParams(QuantParams in1, QuantParams in2, QuantParams out, Activation act);
void Mul(const MulParams& p, const int8_t* a, const int a_shape[4], const int8_t* b,
         const int b_shape[4], int8_t* out, const int out_shape[4]);

struct PoolParams {
  int filter_h, filter_w, stride_h, stride_w;
  bool same_padding;
  int32_t act_min, act_max;
};
void PoolOutputShape(const PoolParams& p, const int in_shape[4], int out_shape[4]);
void AveragePool(const PoolParams& p, const int8_t* in, const int in_shape[4], int8_t* out);
void MaxPool(const isa::Ops& ops, const PoolParams& p, const int8_t* in, const int in_shape[4],
             int8_t* out);

// MEAN over H and W of an NHWC tensor; output [N][C].
void MeanHW(QuantParams in, QuantParams out, const int8_t* input, const int in_shape[4],
            int8_t* output);

struct SoftmaxParams {
  int32_t input_multiplier;
  int input_left_shift;
  int diff_min;
  // The exponential of x - max_in_row = -d for d in [0, 255] (the only values it takes),
  // computed once here; 0 where the reference skips the element (-d < diff_min).
  int32_t exp_of[256];
};
// false if the reference kernel would reject (or abort on) these params.
bool MakeSoftmaxParams(float beta, float input_scale, SoftmaxParams* p);
void Softmax(const SoftmaxParams& p, const int8_t* in, int rows, int depth, int8_t* out);

struct LogisticParams {
  int32_t input_zero_point, input_range_radius, input_multiplier;
  int input_left_shift;
};
bool MakeLogisticParams(QuantParams in, LogisticParams* p);
void Logistic(const LogisticParams& p, const int8_t* in, int n, int8_t* out);

struct HardSwishParams {
  int32_t input_zero_point, output_zero_point;
  int16_t reluish_multiplier_fixedpoint_int16, output_multiplier_fixedpoint_int16;
  int reluish_multiplier_exponent, output_multiplier_exponent;
};
bool MakeHardSwishParams(QuantParams in, QuantParams out, HardSwishParams* p);
void HardSwish(const HardSwishParams& p, const int8_t* in, int n, int8_t* out);

void Quantize(const isa::Ops& ops, QuantParams out, const float* in, int n, int8_t* output);
void Dequantize(QuantParams in, const int8_t* input, int n, float* out);

// PAD of an NHWC-or-lower-rank tensor given as 4-D with per-dimension (before, after) padding.
void Pad(const int8_t* in, const int in_shape[4], const int pads[4][2], int8_t pad_value,
         int8_t* out);
// CONCATENATION of tensors sharing quantization params: outer x (axis_size_i * inner) blocks.
void Concat(const std::vector<const int8_t*>& inputs, const std::vector<int>& axis_sizes,
            int outer, int inner, int element_size, int8_t* out);

}  // namespace tfq::kernels

#endif  // TFQUANT_DSP_KERNELS_KERNELS_H_
