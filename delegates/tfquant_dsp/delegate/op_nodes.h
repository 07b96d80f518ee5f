// The OpNode of each op family the delegate claims: shape inference, the kernel call and the
// HVX cost model. Internal to delegate/ (created by AnalyzeNode in ops.cc).
#pragma once

#include <algorithm>
#include <memory>
#include <type_traits>
#include <vector>

#include "delegate/node_checks.h"

namespace tfq::delegate::detail {

// ---- the op nodes -------------------------------------------------------------------------------

inline int64_t Total(const std::vector<Shape>& shapes) {
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
    k->Run(ops, pool, *workspace, static_cast<const int8_t*>(in[0]), is[0].data(),
           static_cast<int8_t*>(out[0]));
  }
  kernels::ScratchNeed Scratch(const std::vector<Shape>& in) const override {
    return k->Scratch(in[0].data(), pool ? pool->threads() : 1);
  }
  size_t RepackedBytes() const override {
    if constexpr (kIsConv) {
      return k->gemm().kept() ? 0 : k->gemm().PackedBytes();
    } else {
      return 0;  // depthwise weights are widened once, at creation
    }
  }
  void KeepPackedWeights() override {
    if constexpr (kIsConv) k->KeepPackedWeights();
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
    k->Run(ops, *workspace, static_cast<const int8_t*>(in[0]),
           static_cast<int>(NumElements(is[0]) / depth), static_cast<int8_t*>(out[0]));
  }
  kernels::ScratchNeed Scratch(const std::vector<Shape>& in) const override {
    return k->Scratch(static_cast<int>(NumElements(in[0]) / depth));
  }
  size_t RepackedBytes() const override { return k->gemm().kept() ? 0 : k->gemm().PackedBytes(); }
  void KeepPackedWeights() override { k->KeepPackedWeights(); }
  kernels::HvxCount Count(const std::vector<Shape>& in, const std::vector<Shape>&) const override {
    return k->Count(static_cast<int>(NumElements(in[0]) / depth));
  }
};

inline bool BroadcastShape(const Shape& a, const Shape& b, Shape* out, std::string* why) {
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

}  // namespace tfq::delegate::detail
