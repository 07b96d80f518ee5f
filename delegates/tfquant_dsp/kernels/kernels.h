// int8 kernels on the emulated DSP ISA, each bit-exact with TFLite's reference kernel of the same
// op. Shapes are NHWC. The kernels know nothing about TFLite's structs: the delegate
// (delegate/) translates nodes into these parameter structs.
//
// Weighted ops (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) are classes built once from the
// constant weights; Run() may be called with any input shape whose Scratch() need the
// workspace it is given holds (Workspace::Reserve). Kernels never allocate while they run.
#ifndef TFQUANT_DSP_KERNELS_KERNELS_H_
#define TFQUANT_DSP_KERNELS_KERNELS_H_

#include <stdint.h>

#include <vector>

#include "isa/hvx.h"
#include "kernels/quant_util.h"
#include "kernels/thread_pool.h"
#include "kernels/workspace.h"

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

// ---- GEMM-based: CONV_2D and FULLY_CONNECTED --------------------------------------------------

struct ConvGeometry {
  int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  bool same_padding = false;
};

// The GEMM of CONV_2D and FULLY_CONNECTED: weights [out][depth] int8 times u8 activation rows.
// The weights stay where the caller keeps them (the delegate: TFLite's constant buffer) and
// are packed into the layout vrmpy reads at run time, into workspace scratch: per block of 32
// output channels, groups = ceil(depth / 4) vectors of 128 bytes holding [32 channels][4
// consecutive k], zero past depth and out. Keeping no packed copy keeps the weights' memory
// at one copy (ResNet50: 25 MB); the packing is one pass over the weights per run, fused with
// the GEMM where few rows reuse each weight (see Conv2D::Run).
// Activations enter the dot product as u8 (x + 128); the bias absorbs -(128 + input_zero_point)
// * sum(w), so padding taps filled with the input zero point contribute exactly nothing, as in
// the reference kernel.
class PackedGemm {
 public:
  // filter: [out][depth] int8, borrowed (it must outlive this object); bias: int32 or nullptr;
  // input_zero_point of the activations.
  PackedGemm(const int8_t* filter, int out, int depth, const int32_t* bias,
             int32_t input_zero_point);
  // The same, owning its filter (a copy made for the GEMM).
  PackedGemm(std::vector<int8_t> filter, int out, int depth, const int32_t* bias,
             int32_t input_zero_point);
  PackedGemm(PackedGemm&&) = default;
  PackedGemm(const PackedGemm&) = delete;
  PackedGemm& operator=(const PackedGemm&) = delete;
  int out() const { return out_; }
  int depth() const { return depth_; }
  int padded_depth() const { return groups_ * 4; }
  int blocks() const { return blocks_; }
  int groups() const { return groups_; }
  size_t BlockBytes() const { return static_cast<size_t>(groups_) * sizeof(isa::VecI8); }
  size_t PackedBytes() const { return blocks_ * BlockBytes(); }
  // Keeps a packed copy of every block (PackedBytes()) from now on, for runs to read instead
  // of packing: for weights that serve few rows per run (see delegate option
  // packed_weights_kb). Throws std::bad_alloc.
  void KeepPacked();
  const isa::VecI8* kept() const { return kept_.empty() ? nullptr : kept_.data(); }
  // Packs blocks [blk0, blk0 + count) into dst (count * groups vectors).
  void Pack(int blk0, int count, isa::VecI8* dst) const;
  // Packs every block into dst (PackedBytes()), split over the pool.
  void PackAll(ThreadPool* pool, isa::VecI8* dst) const;
  // The int32 accumulators (bias and zero-point corrections included) of one row for the 32
  // channels of block blk (acc[32]; lanes past out are padding); packed: every block (PackAll).
  void BlockAccumulators(const isa::Ops& ops, const isa::VecI8* packed, const uint8_t* row,
                         int blk, int32_t* acc) const;
  // The GEMM tile arguments for rows of a (a_stride apart) and blocks [blk0, blk0 + blocks),
  // whose packed weights are at w.
  isa::GemmArgs Args(const isa::VecI8* w, const uint8_t* a, ptrdiff_t a_stride, int rows,
                     int blk0, int blocks, const Requant& rq, int8_t* out,
                     ptrdiff_t out_stride) const;

 private:
  void Init(const int32_t* bias, int32_t input_zero_point);
  std::vector<int8_t> owned_;   // the filter, when this object owns it
  const int8_t* filter_;        // [out][depth]
  int out_, depth_, groups_, blocks_;
  std::vector<isa::VecI32> bias_;  // [blocks]
  std::vector<isa::VecI8> kept_;   // KeepPacked: [blocks][groups]
};

class Conv2D {
 public:
  // filter [out][kh][kw][in]; per-channel (or per-tensor: one) filter scales.
  Conv2D(const int8_t* filter, int out_channels, int in_channels, const ConvGeometry& g,
         const int32_t* bias, float input_scale, int32_t input_zero_point,
         const float* filter_scales, int num_scales, float output_scale,
         int32_t output_zero_point, Activation act);
  void OutputShape(const int in_shape[4], int out_shape[4]) const;
  ScratchNeed Scratch(const int in_shape[4], int threads) const;
  void Run(const isa::Ops& ops, ThreadPool* pool, const Workspace& ws, const int8_t* input,
           const int in_shape[4], int8_t* output) const;
  HvxCount Count(const int in_shape[4]) const;
  const PackedGemm& gemm() const { return gemm_; }
  void KeepPackedWeights() { gemm_.KeepPacked(); }  // see PackedGemm::KeepPacked
  // Biased activations: x + 128 stored as u8 (x ^ 0x80), the form vrmpy reads. With a biased
  // input the im2col needs no conversion (a pointwise convolution reads the input in place);
  // a biased output is for consumers that are all such convolutions (the delegate decides).
  void SetInputBiased() { input_biased_ = true; }
  void SetOutputBiased() { rq_.output_xor = 0x80; }
  // Runs whose im2col rows take at most max_im2col_bytes, of weights of at least
  // min_weight_bytes when packed, split their work over blocks of output channels rather than
  // rows (see Run; the defaults suit the L2 caches of current CPUs).
  void SetBlockSplit(size_t max_im2col_bytes, size_t min_weight_bytes) {
    block_split_bytes_ = max_im2col_bytes;
    block_split_min_weights_ = min_weight_bytes;
  }

 private:
  // Inputs of few channels (a network's first layer): the GEMM reads each kernel row's taps
  // straight from zero-point-padded u8 input lines (GemmArgs::segments), no im2col copy; the
  // weights of each kernel row are padded with zeros to whole groups of 4 (see UseLines).
  struct Plan;  // how Run splits a run of one input shape (conv.cc)
  Plan MakePlan(const int in_shape[4], int threads) const;
  void RunLines(const isa::Ops& ops, ThreadPool* pool, const Workspace& ws, const Plan& p,
                const int8_t* input, const int s[4], int8_t* output) const;
  int out_channels_, in_channels_;
  ConvGeometry g_;
  int32_t input_zero_point_;
  bool input_biased_ = false;
  bool lines_;  // RunLines
  size_t block_split_bytes_, block_split_min_weights_;
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
  ScratchNeed Scratch(const int in_shape[4], int threads) const;
  void Run(const isa::Ops& ops, ThreadPool* pool, const Workspace& ws, const int8_t* input,
           const int in_shape[4], int8_t* output) const;
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
  struct Plan;  // the padding and scratch of a run of one input shape (depthwise_conv.cc)
  Plan MakePlan(const int in_shape[4], int threads) const;
  void RunUnpadded(const isa::Ops& ops, ThreadPool* pool, const Workspace& ws, const Plan& p,
                   const int8_t* input, const int s[4], int8_t* output) const;
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
  ScratchNeed Scratch(int batches) const;
  const PackedGemm& gemm() const { return gemm_; }
  void KeepPackedWeights() { gemm_.KeepPacked(); }  // see PackedGemm::KeepPacked
  // input holds `batches` rows of depth values.
  void Run(const isa::Ops& ops, const Workspace& ws, const int8_t* input, int batches,
           int8_t* output) const;
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
