// Node analysis: which TFLite nodes the delegate can run bit-exactly, and their OpNodes.
// Every check reads only fields the ABI declares, validates before dereferencing, and answers
// "not supported" (never crashes) for anything unexpected.
#include <math.h>
#include <string.h>

#include <algorithm>
#include <type_traits>

#include "delegate/graph.h"
#include "delegate/node_checks.h"
#include "delegate/op_nodes.h"
#include "kernels/kernels.h"

namespace tfq::delegate {
namespace {

using namespace detail;  // NOLINT: the checks and node types written for this file

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
