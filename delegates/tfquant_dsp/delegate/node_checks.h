// Checks the delegate runs before claiming a node: tensor access, int8 / int32 quantization
// params, fused activations and conv geometry, each answering "not supported" with a reason.
// Internal to delegate/ (ops.cc, op_nodes.h).
#pragma once

#include <math.h>
#include <string.h>

#include <string>
#include <vector>

#include "delegate/graph.h"
#include "kernels/kernels.h"

namespace tfq::delegate::detail {

using kernels::Activation;
using kernels::QuantParams;

// ---- tensor helpers -----------------------------------------------------------------------------

inline const TfLiteTensor* Tensor(TfLiteContext* ctx, int index) {
  if (index < 0 || static_cast<size_t>(index) >= ctx->tensors_size) return nullptr;
  return &ctx->tensors[index];
}

inline bool IsConstant(const TfLiteTensor* t) {
  return t && t->allocation_type == kTfLiteMmapRo && t->data != nullptr;
}

inline Shape Dims(const TfLiteTensor* t) {
  Shape s;
  if (t && t->dims) s.assign(t->dims->data, t->dims->data + t->dims->size);
  return s;
}

inline int64_t NumElements(const Shape& s) {
  int64_t n = 1;
  for (int d : s) n *= d;
  return n;
}

inline const TfLiteAffineQuantization* Affine(const TfLiteTensor* t) {
  if (!t || t->quantization.type != kTfLiteAffineQuantization || !t->quantization.params) {
    return nullptr;
  }
  return static_cast<const TfLiteAffineQuantization*>(t->quantization.params);
}

// Reads n floats from a TfLiteFloatArray whose layout changed between releases: older ones are
// {int size; float data[]}, newer ones {float* data; int size; bool owning}. The first 4 bytes
// are the size in the old layout; in the new one they are the low half of a heap pointer, which
// is never a small count. Reads stay within whichever struct is really there.
inline bool ReadFloatArray(const TfLiteFloatArray* array, int n, std::vector<float>* out) {
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
inline bool Int8PerTensor(const TfLiteTensor* t, QuantParams* q, std::string* why, const char* what) {
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
inline bool Int8Weights(const TfLiteTensor* t, int axis, int channels, std::vector<float>* scales,
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

inline bool Int32Bias(const TfLiteTensor* t, int channels, std::string* why) {
  if (!t) return true;  // optional
  if (!IsConstant(t) || t->type != kTfLiteInt32 || NumElements(Dims(t)) != channels) {
    *why = "bias is not a constant int32 vector of the output width";
    return false;
  }
  return true;
}

inline bool FusedActivation(int act, Activation* out, std::string* why) {
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
inline bool ClampRepresentable(Activation act, float scale) {
  if (act == Activation::kNone || act == Activation::kRelu) return true;
  const float bound = act == Activation::kRelu6 ? 6.0f : 1.0f;
  const float q = roundf(bound / scale);
  return q <= 2147483520.0f;
}

inline bool SameParams(const QuantParams& a, const QuantParams& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point;
}

inline void To4D(const Shape& s, int out[4]) {  // leading ones
  const int pad = 4 - static_cast<int>(s.size());
  for (int i = 0; i < 4; ++i) out[i] = i < pad ? 1 : s[i - pad];
}

inline bool Geometry(int padding, int sh, int sw, int dh, int dw, int kh, int kw,
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

inline bool Rank4Positive(const Shape& s, std::string* why) {
  if (s.size() != 4) { *why = "input is not 4-D"; return false; }
  for (int d : s) if (d <= 0) { *why = "input has an empty dimension"; return false; }
  return true;
}

}  // namespace tfq::delegate::detail
