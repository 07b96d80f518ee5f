// Node analysis: which TFLite nodes the delegate can run bit-exactly, and their OpNodes.
// Every check reads only fields the ABI declares, validates before dereferencing, and answers
// "not supported" (never crashes) for anything unexpected.
#include <math.h>
#include <string.h>

#include <algorithm>
#include <type_traits>

#include "delegate/graph.h"
#include "kernels/kernels.h"

namespace tfq::delegate {
namespace {

using kernels::Activation;
using kernels::QuantParams;

struct OpInfo {
  int32_t code;
  const char* name;
  int max_version;
};
const OpInfo kOps[] = {
    {abi::kConv2d, "CONV_2D", 8},           {abi::kDepthwiseConv2d, "DEPTHWISE_CONV_2D", 7},
    {abi::kFullyConnected, "FULLY_CONNECTED", 13}, {abi::kAdd, "ADD", 5},
    {abi::kMul, "MUL", 7},                  {abi::kAveragePool2d, "AVERAGE_POOL_2D", 3},
    {abi::kMaxPool2d, "MAX_POOL_2D", 3},    {abi::kMean, "MEAN", 3},
    {abi::kSoftmax, "SOFTMAX", 3},          {abi::kReshape, "RESHAPE", 2},
    {abi::kConcatenation, "CONCATENATION", 4}, {abi::kPad, "PAD", 4},
    {abi::kHardSwish, "HARD_SWISH", 1},     {abi::kLogistic, "LOGISTIC", 3},
    {abi::kQuantize, "QUANTIZE", 3},        {abi::kDequantize, "DEQUANTIZE", 6},
};

const OpInfo* FindOp(int32_t code) {
  for (const auto& op : kOps) if (op.code == code) return &op;
  return nullptr;
}

// ---- tensor helpers -----------------------------------------------------------------------------

const TfLiteTensor* Tensor(TfLiteContext* ctx, int index) {
  if (index < 0 || static_cast<size_t>(index) >= ctx->tensors_size) return nullptr;
  return &ctx->tensors[index];
}

bool IsConstant(const TfLiteTensor* t) {
  return t && t->allocation_type == kTfLiteMmapRo && t->data != nullptr;
}

Shape Dims(const TfLiteTensor* t) {
  Shape s;
  if (t && t->dims) s.assign(t->dims->data, t->dims->data + t->dims->size);
  return s;
}

int64_t NumElements(const Shape& s) {
  int64_t n = 1;
  for (int d : s) n *= d;
  return n;
}

const TfLiteAffineQuantization* Affine(const TfLiteTensor* t) {
  if (!t || t->quantization.type != kTfLiteAffineQuantization || !t->quantization.params) {
    return nullptr;
  }
  return static_cast<const TfLiteAffineQuantization*>(t->quantization.params);
}

// Reads n floats from a TfLiteFloatArray whose layout changed between releases: older ones are
// {int size; float data[]}, newer ones {float* data; int size; bool owning}. The first 4 bytes
// are the size in the old layout; in the new one they are the low half of a heap pointer, which
// is never a small count. Reads stay within whichever struct is really there.
bool ReadFloatArray(const TfLiteFloatArray* array, int n, std::vector<float>* out) {
  if (!array || n <= 0) return false;
  const char* p = reinterpret_cast<const char*>(array);
  int32_t first;
  memcpy(&first, p, 4);
  const float* data = nullptr;
  if (first == n) {
    data = reinterpret_cast<const float*>(p + 4);
  } else {
    if (first == 0 || first == 1) return false;
    int32_t size;
    memcpy(&size, p + 8, 4);
    if (size != n) return false;
    memcpy(&data, p, sizeof(data));
    if (!data) return false;
  }
  out->assign(data, data + n);
  for (float v : *out) {
    if (!(v > 0.0f) || !isfinite(v)) return false;
  }
  return true;
}

// An int8 per-tensor affine-quantized tensor (activations).
bool Int8PerTensor(const TfLiteTensor* t, QuantParams* q, std::string* why, const char* what) {
  if (!t) { *why = std::string(what) + " missing"; return false; }
  if (t->type != kTfLiteInt8) { *why = std::string(what) + " is not int8"; return false; }
  const TfLiteAffineQuantization* aq = Affine(t);
  if (!aq || !aq->zero_point || aq->zero_point->size != 1) {
    *why = std::string(what) + " is not per-tensor affine quantized";
    return false;
  }
  if (!(t->params.scale > 0.0f) || !isfinite(t->params.scale) || t->params.zero_point < -128 ||
      t->params.zero_point > 127) {
    *why = std::string(what) + " has unsupported quantization params";
    return false;
  }
  if (t->sparsity || t->is_variable) { *why = std::string(what) + " is sparse or variable"; return false; }
  if (!t->dims) { *why = std::string(what) + " has no shape"; return false; }
  q->scale = t->params.scale;
  q->zero_point = t->params.zero_point;
  return true;
}

// Constant int8 weights, symmetric (all zero points 0), per-tensor or per-channel along `axis`.
bool Int8Weights(const TfLiteTensor* t, int axis, int channels, std::vector<float>* scales,
                 std::string* why) {
  if (!IsConstant(t) || t->type != kTfLiteInt8 || t->sparsity || !t->dims) {
    *why = "weights are not constant dense int8";
    return false;
  }
  const TfLiteAffineQuantization* aq = Affine(t);
  if (!aq || !aq->zero_point) { *why = "weights are not affine quantized"; return false; }
  const int n = aq->zero_point->size;
  if (n != 1 && (n != channels || aq->quantized_dimension != axis)) {
    *why = "weights' per-channel axis or count is unsupported";
    return false;
  }
  for (int i = 0; i < n; ++i) {
    if (aq->zero_point->data[i] != 0) { *why = "weights have a nonzero zero point"; return false; }
  }
  if (n == 1) {
    if (!(t->params.scale > 0.0f)) { *why = "weights have no scale"; return false; }
    scales->assign(1, t->params.scale);
    return true;
  }
  if (!ReadFloatArray(aq->scale, n, scales)) { *why = "weights' scales unreadable"; return false; }
  return true;
}

bool Int32Bias(const TfLiteTensor* t, int channels, std::string* why) {
  if (!t) return true;  // optional
  if (!IsConstant(t) || t->type != kTfLiteInt32 || NumElements(Dims(t)) != channels) {
    *why = "bias is not a constant int32 vector of the output width";
    return false;
  }
  return true;
}

bool FusedActivation(int act, Activation* out, std::string* why) {
  switch (act) {
    case kTfLiteActNone: *out = Activation::kNone; return true;
    case kTfLiteActRelu: *out = Activation::kRelu; return true;
    case kTfLiteActRelu6: *out = Activation::kRelu6; return true;
    case kTfLiteActReluN1To1: *out = Activation::kReluN1To1; return true;
    default: *why = "unsupported fused activation"; return false;
  }
}

// The reference kernels reject a fused clamp whose bound does not fit int32 in the output's
// scale (a near-zero output scale); such nodes are left to the runtime, which reports it.
bool ClampRepresentable(Activation act, float scale) {
  if (act == Activation::kNone || act == Activation::kRelu) return true;
  const float bound = act == Activation::kRelu6 ? 6.0f : 1.0f;
  const float q = roundf(bound / scale);
  return q <= 2147483520.0f;
}

bool SameParams(const QuantParams& a, const QuantParams& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point;
}

void To4D(const Shape& s, int out[4]) {  // leading ones
  const int pad = 4 - static_cast<int>(s.size());
  for (int i = 0; i < 4; ++i) out[i] = i < pad ? 1 : s[i - pad];
}

bool Geometry(int padding, int sh, int sw, int dh, int dw, int kh, int kw,
              kernels::ConvGeometry* g, std::string* why) {
  if (padding != kTfLitePaddingSame && padding != kTfLitePaddingValid) {
    *why = "unknown padding";
    return false;
  }
  if (sh < 1 || sw < 1 || dh < 1 || dw < 1 || kh < 1 || kw < 1 || sh > 64 || sw > 64 ||
      dh > 64 || dw > 64) {
    *why = "unsupported stride, dilation or filter size";
    return false;
  }
  g->kernel_h = kh; g->kernel_w = kw; g->stride_h = sh; g->stride_w = sw;
  g->dilation_h = dh; g->dilation_w = dw;
  g->same_padding = padding == kTfLitePaddingSame;
  return true;
}

bool Rank4Positive(const Shape& s, std::string* why) {
  if (s.size() != 4) { *why = "input is not 4-D"; return false; }
  for (int d : s) if (d <= 0) { *why = "input has an empty dimension"; return false; }
  return true;
}

// ---- the op nodes -------------------------------------------------------------------------------

int64_t Total(const std::vector<Shape>& shapes) {
  int64_t n = 0;
  for (const auto& s : shapes) n += NumElements(s);
  return n;
}

// CONV_2D and DEPTHWISE_CONV_2D: one int8 input, the kernel gives the output shape.
template <typename Kernel>
class SpatialNode : public OpNode {
 public:
  std::unique_ptr<Kernel> k;
  int in_channels = -1;  // checked when >= 0 (depthwise weights are per input channel)
  bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out, std::string* why) const override {
    if (!Rank4Positive(in[0], why)) return false;
    if (in_channels >= 0 && in[0][3] != in_channels) { *why = "input channels changed"; return false; }
    int o[4];
    k->OutputShape(in[0].data(), o);
    if (o[1] <= 0 || o[2] <= 0) { *why = "empty output"; return false; }
    out->assign(1, Shape(o, o + 4));
    return true;
  }
  void Run(const isa::Ops& ops, const std::vector<const void*>& in, const std::vector<Shape>& is,
           const std::vector<void*>& out, const std::vector<Shape>&) const override {
    k->Run(ops, pool, static_cast<const int8_t*>(in[0]), is[0].data(), static_cast<int8_t*>(out[0]));
  }
  kernels::HvxCount Count(const std::vector<Shape>& in, const std::vector<Shape>&) const override {
    return k->Count(in[0].data());
  }
  static constexpr bool kIsConv = std::is_same_v<Kernel, kernels::Conv2D>;
  bool CanWriteBiased() const override { return true; }
  bool CanReadBiased() const override { return kIsConv; }
  void SetOutputBiased() override { k->SetOutputBiased(); }
  void SetInputBiased() override {
    if constexpr (kIsConv) k->SetInputBiased();
  }
  bool AbsorbInputPad(const int pads[4]) override {
    if constexpr (kIsConv) {
      return false;
    } else {
      k->SetInputPadding(pads[0], pads[1], pads[2], pads[3]);
      return true;
    }
  }
};

using ConvNode = SpatialNode<kernels::Conv2D>;
using DepthwiseNode = SpatialNode<kernels::DepthwiseConv2D>;

class FcNode : public OpNode {
 public:
  std::unique_ptr<kernels::FullyConnected> k;
  int depth = 0, units = 0;
  bool keep_num_dims = false;
  bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out, std::string* why) const override {
    const int64_t n = NumElements(in[0]);
    if (in[0].empty() || n % depth != 0) { *why = "input size is not a multiple of the depth"; return false; }
    if (keep_num_dims) {
      if (in[0].back() != depth) { *why = "keep_num_dims with a different last dimension"; return false; }
      Shape s = in[0];
      s.back() = units;
      out->assign(1, s);
    } else {
      out->assign(1, Shape{static_cast<int>(n / depth), units});
    }
    return true;
  }
  void Run(const isa::Ops& ops, const std::vector<const void*>& in, const std::vector<Shape>& is,
           const std::vector<void*>& out, const std::vector<Shape>&) const override {
    k->Run(ops, static_cast<const int8_t*>(in[0]), static_cast<int>(NumElements(is[0]) / depth),
           static_cast<int8_t*>(out[0]));
  }
  kernels::HvxCount Count(const std::vector<Shape>& in, const std::vector<Shape>&) const override {
    return k->Count(static_cast<int>(NumElements(in[0]) / depth));
  }
};

bool BroadcastShape(const Shape& a, const Shape& b, Shape* out, std::string* why) {
  if (a.size() > 4 || b.size() > 4) { *why = "rank above 4"; return false; }
  const size_t r = std::max(a.size(), b.size());
  out->assign(r, 1);
  for (size_t i = 0; i < r; ++i) {
    const int da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1) { *why = "shapes do not broadcast"; return false; }
    (*out)[i] = da == 1 ? db : da;
  }
  return true;
}

class AddNode : public OpNode {
 public:
  kernels::AddParams p;
  bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out, std::string* why) const override {
    Shape s;
    if (!BroadcastShape(in[0], in[1], &s, why)) return false;
    out->assign(1, s);
    return true;
  }
  void Run(const isa::Ops& ops, const std::vector<const void*>& in, const std::vector<Shape>& is,
           const std::vector<void*>& out, const std::vector<Shape>& os) const override {
    int a[4], b[4], o[4];
    To4D(is[0], a); To4D(is[1], b); To4D(os[0], o);
    kernels::Add(ops, pool, p, static_cast<const int8_t*>(in[0]), a, static_cast<const int8_t*>(in[1]), b,
                 static_cast<int8_t*>(out[0]), o);
  }
  kernels::HvxCount Count(const std::vector<Shape>&, const std::vector<Shape>& out) const override {
    return kernels::ElementwiseCount(Total(out), 10, 6, 10, 2);
  }
};

class MulNode : public OpNode {
 public:
  kernels::MulParams p;
  bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out, std::string* why) const override {
    Shape s;
    if (!BroadcastShape(in[0], in[1], &s, why)) return false;
    out->assign(1, s);
    return true;
  }
  void Run(const isa::Ops&, const std::vector<const void*>& in, const std::vector<Shape>& is,
           const std::vector<void*>& out, const std::vector<Shape>& os) const override {
    int a[4], b[4], o[4];
    To4D(is[0], a); To4D(is[1], b); To4D(os[0], o);
    kernels::Mul(p, static_cast<const int8_t*>(in[0]), a, static_cast<const int8_t*>(in[1]), b,
                 static_cast<int8_t*>(out[0]), o);
  }
  kernels::HvxCount Count(const std::vector<Shape>&, const std::vector<Shape>& out) const override {
    return kernels::ElementwiseCount(Total(out), 6, 3, 6, 2);
  }
};

class PoolNode : public OpNode {
 public:
  kernels::PoolParams p;
  bool max = false;
  bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out, std::string* why) const override {
    if (!Rank4Positive(in[0], why)) return false;
    int o[4];
    kernels::PoolOutputShape(p, in[0].data(), o);
    if (o[1] <= 0 || o[2] <= 0) { *why = "empty output"; return false; }
    out->assign(1, Shape(o, o + 4));
    return true;
  }
  void Run(const isa::Ops& ops, const std::vector<const void*>& in, const std::vector<Shape>& is,
           const std::vector<void*>& out, const std::vector<Shape>&) const override {
    if (max) {
      kernels::MaxPool(ops, p, static_cast<const int8_t*>(in[0]), is[0].data(),
                       static_cast<int8_t*>(out[0]));
    } else {
      kernels::AveragePool(p, static_cast<const int8_t*>(in[0]), is[0].data(),
                           static_cast<int8_t*>(out[0]));
    }
  }
  kernels::HvxCount Count(const std::vector<Shape>&, const std::vector<Shape>& out) const override {
    // Per output vector: one load and max/add per window tap (byte lanes, 128 per vector).
    const int taps = p.filter_h * p.filter_w;
    kernels::HvxCount h = kernels::ElementwiseCount(Total(out), 0, max ? 0 : 1, max ? 0 : 2, 0);
    const int64_t v = (Total(out) + 127) / 128;
    h.vload += v * taps;
    h.valu += v * taps * (max ? 1 : 4);
    return h;
  }
};

class MeanNode : public OpNode {
 public:
  QuantParams in_q, out_q;
  bool keep_dims = false;
  bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out, std::string* why) const override {
    if (!Rank4Positive(in[0], why)) return false;
    out->assign(1, keep_dims ? Shape{in[0][0], 1, 1, in[0][3]} : Shape{in[0][0], in[0][3]});
    return true;
  }
  void Run(const isa::Ops&, const std::vector<const void*>& in, const std::vector<Shape>& is,
           const std::vector<void*>& out, const std::vector<Shape>&) const override {
    kernels::MeanHW(in_q, out_q, static_cast<const int8_t*>(in[0]), is[0].data(),
                    static_cast<int8_t*>(out[0]));
  }
  kernels::HvxCount Count(const std::vector<Shape>& in, const std::vector<Shape>& out) const override {
    kernels::HvxCount h = kernels::ElementwiseCount(Total(out), 6, 2, 4, 0);
    const int64_t v = (Total(in) + 127) / 128;
    h.vload += v;
    h.valu += 4 * v;   // widening adds into 32-bit sums
    h.vshift += 4 * v;
    return h;
  }
};

class UnaryNode : public OpNode {  // same-shape ops
 public:
  enum Kind { kSoftmax, kLogistic, kHardSwish, kQuantize, kDequantize, kCopy } kind = kCopy;
  kernels::SoftmaxParams softmax;
  kernels::LogisticParams logistic;
  kernels::HardSwishParams hard_swish;
  QuantParams q;
  bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out, std::string* why) const override {
    if (kind == kSoftmax && (in[0].empty() || in[0].back() <= 0)) { *why = "softmax over an empty axis"; return false; }
    out->assign(1, in[0]);
    return true;
  }
  void Run(const isa::Ops& ops, const std::vector<const void*>& in, const std::vector<Shape>& is,
           const std::vector<void*>& out, const std::vector<Shape>&) const override {
    const int n = static_cast<int>(NumElements(is[0]));
    const auto* x = static_cast<const int8_t*>(in[0]);
    auto* y = static_cast<int8_t*>(out[0]);
    switch (kind) {
      case kSoftmax: {
        const int depth = is[0].back();
        kernels::Softmax(softmax, x, n / depth, depth, y);
        break;
      }
      case kLogistic: kernels::Logistic(logistic, x, n, y); break;
      case kHardSwish: kernels::HardSwish(hard_swish, x, n, y); break;
      case kQuantize: kernels::Quantize(ops, q, static_cast<const float*>(in[0]), n, y); break;
      case kDequantize: kernels::Dequantize(q, x, n, static_cast<float*>(out[0])); break;
      case kCopy: memcpy(y, x, n); break;
    }
  }
  kernels::HvxCount Count(const std::vector<Shape>&, const std::vector<Shape>& out) const override {
    // The fixed-point exp / reciprocal / logistic polynomials: about 40 multiplies and 60 ALU
    // and shift instructions per 32 lanes (gemmlowp's sequences); hard swish about a quarter.
    switch (kind) {
      case kSoftmax: case kLogistic: return kernels::ElementwiseCount(Total(out), 60, 40, 60, 1);
      case kHardSwish: return kernels::ElementwiseCount(Total(out), 15, 10, 15, 1);
      default: return kernels::ElementwiseCount(Total(out), 2, 1, 4, 1);
    }
  }
};

class ReshapeNode : public OpNode {
 public:
  Shape target;  // may hold one -1
  bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out, std::string* why) const override {
    const int64_t n = NumElements(in[0]);
    int64_t known = 1;
    int unknown = -1;
    Shape s = target;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == -1) {
        if (unknown >= 0) { *why = "two -1 in a reshape"; return false; }
        unknown = static_cast<int>(i);
      } else if (s[i] < 0) {
        *why = "negative reshape dimension";
        return false;
      } else {
        known *= s[i];
      }
    }
    if (unknown >= 0) {
      if (known == 0 || n % known != 0) { *why = "reshape does not divide"; return false; }
      s[unknown] = static_cast<int>(n / known);
    }
    if (NumElements(s) != n) { *why = "reshape changes the element count"; return false; }
    out->assign(1, s);
    return true;
  }
  void Run(const isa::Ops&, const std::vector<const void*>& in, const std::vector<Shape>& is,
           const std::vector<void*>& out, const std::vector<Shape>&) const override {
    if (out[0] != in[0]) memmove(out[0], in[0], NumElements(is[0]));
  }
};

class ConcatNode : public OpNode {
 public:
  int axis = 0;  // may be negative
  bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out, std::string* why) const override {
    const int rank = static_cast<int>(in[0].size());
    const int a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) { *why = "bad concatenation axis"; return false; }
    Shape s = in[0];
    for (size_t i = 1; i < in.size(); ++i) {
      if (static_cast<int>(in[i].size()) != rank) { *why = "ranks differ"; return false; }
      for (int d = 0; d < rank; ++d) {
        if (d != a && in[i][d] != s[d]) { *why = "shapes differ off the axis"; return false; }
      }
      s[a] += in[i][a];
    }
    out->assign(1, s);
    return true;
  }
  void Run(const isa::Ops&, const std::vector<const void*>& in, const std::vector<Shape>& is,
           const std::vector<void*>& out, const std::vector<Shape>&) const override {
    const int rank = static_cast<int>(is[0].size());
    const int a = axis < 0 ? axis + rank : axis;
    int outer = 1, inner = 1;
    for (int d = 0; d < a; ++d) outer *= is[0][d];
    for (int d = a + 1; d < rank; ++d) inner *= is[0][d];
    std::vector<const int8_t*> ptrs;
    std::vector<int> sizes;
    for (size_t i = 0; i < in.size(); ++i) {
      ptrs.push_back(static_cast<const int8_t*>(in[i]));
      sizes.push_back(is[i][a]);
    }
    kernels::Concat(ptrs, sizes, outer, inner, 1, static_cast<int8_t*>(out[0]));
  }
};

class PadNode : public OpNode {
 public:
  std::vector<std::pair<int, int>> pads;  // per input dimension
  int8_t pad_value = 0;                   // the output's zero point (same params as the input)
  bool ZeroPointSpatialPad(int p[4]) const override {
    if (pads.size() != 4 || pads[0] != std::make_pair(0, 0) || pads[3] != std::make_pair(0, 0)) {
      return false;
    }
    p[0] = pads[1].first; p[1] = pads[1].second; p[2] = pads[2].first; p[3] = pads[2].second;
    return true;
  }
  bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out, std::string* why) const override {
    if (in[0].size() != pads.size() || in[0].size() > 4) { *why = "pad rank mismatch"; return false; }
    Shape s = in[0];
    for (size_t i = 0; i < s.size(); ++i) s[i] += pads[i].first + pads[i].second;
    out->assign(1, s);
    return true;
  }
  void Run(const isa::Ops&, const std::vector<const void*>& in, const std::vector<Shape>& is,
           const std::vector<void*>& out, const std::vector<Shape>&) const override {
    int s[4], p[4][2];
    To4D(is[0], s);
    const int lead = 4 - static_cast<int>(is[0].size());
    for (int d = 0; d < 4; ++d) {
      p[d][0] = d < lead ? 0 : pads[d - lead].first;
      p[d][1] = d < lead ? 0 : pads[d - lead].second;
    }
    kernels::Pad(static_cast<const int8_t*>(in[0]), s, p, pad_value, static_cast<int8_t*>(out[0]));
  }
};

// ---- analysis -----------------------------------------------------------------------------------

int NumInputs(const TfLiteNode* node) { return node->inputs ? node->inputs->size : 0; }
int NumOutputs(const TfLiteNode* node) { return node->outputs ? node->outputs->size : 0; }
int Input(const TfLiteNode* node, int i) { return i < NumInputs(node) ? node->inputs->data[i] : -1; }

template <typename T>
T* Params(const TfLiteNode* node) { return static_cast<T*>(node->builtin_data); }

bool ReadIntTensor(const TfLiteTensor* t, std::vector<int64_t>* out) {
  if (!IsConstant(t)) return false;
  const int64_t n = NumElements(Dims(t));
  if (n < 0 || n > 64) return false;
  out->clear();
  if (t->type == kTfLiteInt32) {
    const int32_t* d = static_cast<const int32_t*>(t->data);
    out->assign(d, d + n);
  } else if (t->type == kTfLiteInt64) {
    const int64_t* d = static_cast<const int64_t*>(t->data);
    out->assign(d, d + n);
  } else {
    return false;
  }
  return true;
}

}  // namespace

kernels::HvxCount OpNode::Count(const std::vector<Shape>&, const std::vector<Shape>& out) const {
  return kernels::ElementwiseCount(Total(out), 0, 0, 0, 1);
}

const char* OpName(int32_t code) {
  const OpInfo* op = FindOp(code);
  return op ? op->name : "?";
}

int32_t OpCodeByName(const std::string& name) {
  for (const auto& op : kOps) if (name == op.name) return op.code;
  return -1;
}

bool AnalyzeNode(TfLiteContext* ctx, const TfLiteNode* node, const TfLiteRegistration* reg,
                 const Options& options, std::unique_ptr<OpNode>* created, std::string* why) {
  if (!node || !reg) { *why = "no node"; return false; }
  const OpInfo* info = FindOp(reg->builtin_code);
  if (!info || reg->custom_name != nullptr) { *why = "op not supported"; return false; }
  if (!options.allowed_ops.empty() &&
      std::find(options.allowed_ops.begin(), options.allowed_ops.end(), info->code) ==
          options.allowed_ops.end()) {
    *why = "op not in the allow-list";
    return false;
  }
  if (reg->version < 1 || reg->version > info->max_version) { *why = "op version unknown"; return false; }
  if (NumOutputs(node) != 1 || NumInputs(node) < 1) { *why = "unexpected arity"; return false; }
  if (!node->builtin_data && info->code != abi::kHardSwish && info->code != abi::kLogistic &&
      info->code != abi::kQuantize && info->code != abi::kDequantize &&
      info->code != abi::kReshape && info->code != abi::kPad && info->code != abi::kMean) {
    *why = "no builtin options";
    return false;
  }
  const int out_index = node->outputs->data[0];
  const TfLiteTensor* out = Tensor(ctx, out_index);
  const TfLiteTensor* in0 = Tensor(ctx, Input(node, 0));
  QuantParams qin{}, qout{};
  const bool create = created != nullptr;
  std::unique_ptr<OpNode> made;
  Activation act = Activation::kNone;
  TfLiteType out_type = kTfLiteInt8;

  switch (info->code) {
    case abi::kConv2d: {
      const auto* p = Params<TfLiteConvParams>(node);
      if (NumInputs(node) < 2 || NumInputs(node) > 3) { *why = "unexpected arity"; return false; }
      if (!Int8PerTensor(in0, &qin, why, "input") || !Int8PerTensor(out, &qout, why, "output")) return false;
      if (IsConstant(in0)) { *why = "constant input"; return false; }
      const TfLiteTensor* w = Tensor(ctx, Input(node, 1));
      const Shape ws = Dims(w), is = Dims(in0);
      if (ws.size() != 4 || is.size() != 4 || ws[3] != is[3] || ws[0] <= 0) {
        *why = "filter does not match the input channels (grouped convolution?)";
        return false;
      }
      std::vector<float> scales;
      if (!Int8Weights(w, 0, ws[0], &scales, why)) return false;
      const TfLiteTensor* b = Tensor(ctx, Input(node, 2));
      if (!Int32Bias(b, ws[0], why)) return false;
      if (!FusedActivation(p->activation, &act, why)) return false;
      if (!ClampRepresentable(act, qout.scale)) { *why = "fused clamp overflows the output scale"; return false; }
      kernels::ConvGeometry g;
      if (!Geometry(p->padding, p->stride_height, p->stride_width, p->dilation_height_factor,
                    p->dilation_width_factor, ws[1], ws[2], &g, why)) return false;
      if (create) {
        auto n = std::make_unique<ConvNode>();
        n->k = std::make_unique<kernels::Conv2D>(
            static_cast<const int8_t*>(w->data), ws[0], ws[3], g,
            b ? static_cast<const int32_t*>(b->data) : nullptr, qin.scale, qin.zero_point,
            scales.data(), static_cast<int>(scales.size()), qout.scale, qout.zero_point, act);
        n->inputs = {Input(node, 0)};
        made = std::move(n);
      }
      break;
    }
    case abi::kDepthwiseConv2d: {
      const auto* p = Params<TfLiteDepthwiseConvParams>(node);
      if (NumInputs(node) < 2 || NumInputs(node) > 3) { *why = "unexpected arity"; return false; }
      if (!Int8PerTensor(in0, &qin, why, "input") || !Int8PerTensor(out, &qout, why, "output")) return false;
      if (IsConstant(in0)) { *why = "constant input"; return false; }
      const TfLiteTensor* w = Tensor(ctx, Input(node, 1));
      const Shape ws = Dims(w), is = Dims(in0);
      if (ws.size() != 4 || is.size() != 4 || ws[0] != 1 || is[3] <= 0 || ws[3] % is[3] != 0) {
        *why = "filter shape does not match the input";
        return false;
      }
      std::vector<float> scales;
      if (!Int8Weights(w, 3, ws[3], &scales, why)) return false;
      const TfLiteTensor* b = Tensor(ctx, Input(node, 2));
      if (!Int32Bias(b, ws[3], why)) return false;
      if (!FusedActivation(p->activation, &act, why)) return false;
      if (!ClampRepresentable(act, qout.scale)) { *why = "fused clamp overflows the output scale"; return false; }
      kernels::ConvGeometry g;
      if (!Geometry(p->padding, p->stride_height, p->stride_width, p->dilation_height_factor,
                    p->dilation_width_factor, ws[1], ws[2], &g, why)) return false;
      if (create) {
        auto n = std::make_unique<DepthwiseNode>();
        n->in_channels = is[3];
        n->k = std::make_unique<kernels::DepthwiseConv2D>(
            static_cast<const int8_t*>(w->data), is[3], ws[3] / is[3], g,
            b ? static_cast<const int32_t*>(b->data) : nullptr, qin.scale, qin.zero_point,
            scales.data(), static_cast<int>(scales.size()), qout.scale, qout.zero_point, act);
        n->inputs = {Input(node, 0)};
        made = std::move(n);
      }
      break;
    }
    case abi::kFullyConnected: {
      const auto* p = Params<TfLiteFullyConnectedParams>(node);
      if (NumInputs(node) < 2 || NumInputs(node) > 3) { *why = "unexpected arity"; return false; }
      if (p->weights_format != 0) { *why = "shuffled weights"; return false; }
      if (!Int8PerTensor(in0, &qin, why, "input") || !Int8PerTensor(out, &qout, why, "output")) return false;
      if (IsConstant(in0)) { *why = "constant input"; return false; }
      const TfLiteTensor* w = Tensor(ctx, Input(node, 1));
      const Shape ws = Dims(w);
      if (ws.size() != 2 || ws[0] <= 0 || ws[1] <= 0) { *why = "filter is not 2-D"; return false; }
      std::vector<float> scales;
      if (!Int8Weights(w, 0, ws[0], &scales, why)) return false;
      const TfLiteTensor* b = Tensor(ctx, Input(node, 2));
      if (!Int32Bias(b, ws[0], why)) return false;
      if (!FusedActivation(p->activation, &act, why)) return false;
      if (!ClampRepresentable(act, qout.scale)) { *why = "fused clamp overflows the output scale"; return false; }
      if (create) {
        auto n = std::make_unique<FcNode>();
        n->depth = ws[1];
        n->units = ws[0];
        n->keep_num_dims = p->keep_num_dims;
        n->k = std::make_unique<kernels::FullyConnected>(
            static_cast<const int8_t*>(w->data), ws[0], ws[1],
            b ? static_cast<const int32_t*>(b->data) : nullptr, qin.scale, qin.zero_point,
            scales.data(), static_cast<int>(scales.size()), qout.scale, qout.zero_point, act,
            options.fc_mode == FcMode::kDouble ? kernels::FcRequant::kDouble
                                               : kernels::FcRequant::kFixedPoint);
        n->inputs = {Input(node, 0)};
        made = std::move(n);
      }
      break;
    }
    case abi::kAdd:
    case abi::kMul: {
      const auto* p = Params<TfLiteAddParams>(node);
      if (NumInputs(node) != 2) { *why = "unexpected arity"; return false; }
      QuantParams q2;
      const TfLiteTensor* in1 = Tensor(ctx, Input(node, 1));
      if (!Int8PerTensor(in0, &qin, why, "input 1") || !Int8PerTensor(in1, &q2, why, "input 2") ||
          !Int8PerTensor(out, &qout, why, "output")) return false;
      if (IsConstant(in0) && IsConstant(in1)) { *why = "constant folding left to the runtime"; return false; }
      if (!FusedActivation(p->activation, &act, why)) return false;
      if (!ClampRepresentable(act, qout.scale)) { *why = "fused clamp overflows the output scale"; return false; }
      Shape s;
      if (!BroadcastShape(Dims(in0), Dims(in1), &s, why)) return false;
      if (create) {
        if (info->code == abi::kAdd) {
          auto n = std::make_unique<AddNode>();
          n->p = kernels::MakeAddParams(qin, q2, qout, act);
          made = std::move(n);
        } else {
          auto n = std::make_unique<MulNode>();
          n->p = kernels::MakeMulParams(qin, q2, qout, act);
          made = std::move(n);
        }
        made->inputs = {Input(node, 0), Input(node, 1)};
      }
      break;
    }
    case abi::kAveragePool2d:
    case abi::kMaxPool2d: {
      const auto* p = Params<TfLitePoolParams>(node);
      if (!Int8PerTensor(in0, &qin, why, "input") || !Int8PerTensor(out, &qout, why, "output")) return false;
      if (!SameParams(qin, qout)) { *why = "pooling must keep the quantization params"; return false; }
      if (Dims(in0).size() != 4) { *why = "input is not 4-D"; return false; }
      if (!FusedActivation(p->activation, &act, why)) return false;
      if (!ClampRepresentable(act, qout.scale)) { *why = "fused clamp overflows the output scale"; return false; }
      kernels::ConvGeometry g;
      if (!Geometry(p->padding, p->stride_height, p->stride_width, 1, 1, p->filter_height,
                    p->filter_width, &g, why)) return false;
      if (create) {
        auto n = std::make_unique<PoolNode>();
        n->max = info->code == abi::kMaxPool2d;
        n->p = {p->filter_height, p->filter_width, p->stride_height, p->stride_width,
                g.same_padding, -128, 127};
        kernels::ActivationRange(act, qout.scale, qout.zero_point, &n->p.act_min, &n->p.act_max);
        n->inputs = {Input(node, 0)};
        made = std::move(n);
      }
      break;
    }
    case abi::kMean: {
      if (NumInputs(node) != 2 || !node->builtin_data) { *why = "unexpected arity"; return false; }
      if (!Int8PerTensor(in0, &qin, why, "input") || !Int8PerTensor(out, &qout, why, "output")) return false;
      std::vector<int64_t> axes;
      if (!ReadIntTensor(Tensor(ctx, Input(node, 1)), &axes) || Dims(in0).size() != 4) {
        *why = "MEAN axes are not constant or the input is not 4-D";
        return false;
      }
      std::sort(axes.begin(), axes.end());
      if (axes != std::vector<int64_t>{1, 2}) { *why = "MEAN only over H and W"; return false; }
      if (create) {
        auto n = std::make_unique<MeanNode>();
        n->in_q = qin;
        n->out_q = qout;
        n->keep_dims = Params<TfLiteReducerParams>(node)->keep_dims;
        n->inputs = {Input(node, 0)};
        made = std::move(n);
      }
      break;
    }
    case abi::kSoftmax:
    case abi::kLogistic:
    case abi::kHardSwish: {
      if (NumInputs(node) != 1) { *why = "unexpected arity"; return false; }
      if (!Int8PerTensor(in0, &qin, why, "input") || !Int8PerTensor(out, &qout, why, "output")) return false;
      auto n = std::make_unique<UnaryNode>();
      if (info->code == abi::kSoftmax) {
        if (qout.zero_point != -128 || qout.scale != 1.0f / 256) { *why = "softmax output params"; return false; }
        if (Dims(in0).empty()) { *why = "scalar softmax"; return false; }
        n->kind = UnaryNode::kSoftmax;
        if (!kernels::MakeSoftmaxParams(Params<TfLiteSoftmaxParams>(node)->beta, qin.scale, &n->softmax)) {
          *why = "softmax input scale too small for the reference kernel";
          return false;
        }
      } else if (info->code == abi::kLogistic) {
        if (qout.zero_point != -128 || qout.scale != 1.0f / 256) { *why = "logistic output params"; return false; }
        n->kind = UnaryNode::kLogistic;
        if (!kernels::MakeLogisticParams(qin, &n->logistic)) { *why = "logistic input scale"; return false; }
      } else {
        n->kind = UnaryNode::kHardSwish;
        if (!kernels::MakeHardSwishParams(qin, qout, &n->hard_swish)) { *why = "hard swish scales"; return false; }
      }
      n->inputs = {Input(node, 0)};
      if (create) made = std::move(n);
      break;
    }
    case abi::kQuantize: {
      if (NumInputs(node) != 1 || !in0 || in0->type != kTfLiteFloat32 || IsConstant(in0) || !in0->dims) {
        *why = "only float32 -> int8 QUANTIZE";
        return false;
      }
      if (!Int8PerTensor(out, &qout, why, "output")) return false;
      if (create) {
        auto n = std::make_unique<UnaryNode>();
        n->kind = UnaryNode::kQuantize;
        n->q = qout;
        n->inputs = {Input(node, 0)};
        made = std::move(n);
      }
      break;
    }
    case abi::kDequantize: {
      if (NumInputs(node) != 1 || IsConstant(in0)) { *why = "constant DEQUANTIZE"; return false; }
      if (!Int8PerTensor(in0, &qin, why, "input")) return false;
      if (!out || out->type != kTfLiteFloat32 || !out->dims) { *why = "only int8 -> float32 DEQUANTIZE"; return false; }
      out_type = kTfLiteFloat32;
      if (create) {
        auto n = std::make_unique<UnaryNode>();
        n->kind = UnaryNode::kDequantize;
        n->q = qin;
        n->inputs = {Input(node, 0)};
        made = std::move(n);
      }
      break;
    }
    case abi::kReshape: {
      if (!Int8PerTensor(in0, &qin, why, "input") || !Int8PerTensor(out, &qout, why, "output")) return false;
      if (IsConstant(in0)) { *why = "constant input"; return false; }
      Shape target;
      if (NumInputs(node) >= 2 && Input(node, 1) >= 0) {
        std::vector<int64_t> v;
        if (!ReadIntTensor(Tensor(ctx, Input(node, 1)), &v)) { *why = "RESHAPE shape is not constant"; return false; }
        for (int64_t d : v) target.push_back(static_cast<int>(d));
      } else if (node->builtin_data) {
        const auto* p = Params<TfLiteReshapeParams>(node);
        if (p->num_dimensions < 0 || p->num_dimensions > 8) { *why = "bad reshape params"; return false; }
        target.assign(p->shape, p->shape + p->num_dimensions);
      } else {
        *why = "RESHAPE without a shape";
        return false;
      }
      if (create) {
        auto n = std::make_unique<ReshapeNode>();
        n->target = target;
        n->inputs = {Input(node, 0)};
        made = std::move(n);
      }
      break;
    }
    case abi::kConcatenation: {
      const auto* p = Params<TfLiteConcatenationParams>(node);
      if (!Int8PerTensor(out, &qout, why, "output")) return false;
      if (p->activation != kTfLiteActNone) { *why = "fused activation on concatenation"; return false; }
      const int rank = static_cast<int>(Dims(out).size());
      if (p->axis < -rank || p->axis >= rank) { *why = "bad axis"; return false; }
      std::vector<int> ins;
      for (int i = 0; i < NumInputs(node); ++i) {
        QuantParams qi;
        if (!Int8PerTensor(Tensor(ctx, Input(node, i)), &qi, why, "input")) return false;
        if (!SameParams(qi, qout)) { *why = "inputs with different quantization params"; return false; }
        ins.push_back(Input(node, i));
      }
      if (create) {
        auto n = std::make_unique<ConcatNode>();
        n->axis = p->axis;
        n->inputs = ins;
        made = std::move(n);
      }
      break;
    }
    case abi::kPad: {
      if (NumInputs(node) != 2) { *why = "only PAD with two inputs"; return false; }
      if (!Int8PerTensor(in0, &qin, why, "input") || !Int8PerTensor(out, &qout, why, "output")) return false;
      if (!SameParams(qin, qout)) { *why = "pad must keep the quantization params"; return false; }
      std::vector<int64_t> v;
      const int rank = static_cast<int>(Dims(in0).size());
      if (!ReadIntTensor(Tensor(ctx, Input(node, 1)), &v) || static_cast<int>(v.size()) != 2 * rank ||
          rank > 4) {
        *why = "paddings are not constant or the rank is above 4";
        return false;
      }
      for (int64_t x : v) if (x < 0 || x > (1 << 20)) { *why = "bad paddings"; return false; }
      if (create) {
        auto n = std::make_unique<PadNode>();
        for (int d = 0; d < rank; ++d) n->pads.push_back({static_cast<int>(v[2 * d]), static_cast<int>(v[2 * d + 1])});
        n->pad_value = static_cast<int8_t>(qout.zero_point);
        n->inputs = {Input(node, 0)};
        made = std::move(n);
      }
      break;
    }
    default:
      *why = "op not supported";
      return false;
  }
  if (create) {
    made->name = info->name;
    made->pool = options.pool;
    made->outputs = {out_index};
    made->output_types = {out_type};
    *created = std::move(made);
  }
  return true;
}

}  // namespace tfq::delegate
