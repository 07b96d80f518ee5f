// The delegate's view of the claimed TFLite nodes: each becomes an OpNode bound to one kernel,
// with its constant operands (weights, bias, shapes, paddings, axes) consumed at creation.
#ifndef TFQUANT_DSP_DELEGATE_GRAPH_H_
#define TFQUANT_DSP_DELEGATE_GRAPH_H_

#include <memory>
#include <string>
#include <vector>

#include "abi/tflite_abi.h"
#include "isa/hvx.h"
#include "kernels/kernels.h"

namespace tfq::delegate {

using Shape = std::vector<int>;

enum class FcMode { kFixedPoint, kDouble };

struct Options {
  int num_threads = 1;
  std::vector<int32_t> allowed_ops;  // empty: every supported op
  bool verbose = false;
  FcMode fc_mode = FcMode::kDouble;
  const isa::Ops* isa = nullptr;
  kernels::ThreadPool* pool = nullptr;  // owned by the delegate; null for one thread
  std::string profile;  // if set: per-op times and HVX counts appended to this file (TSV)
  // Memory a partition may spend on packed copies of GEMM weights (PackedGemm::KeepPacked),
  // for the ops with the fewest rows per run first; all other weights are packed at each run
  // from TFLite's buffer.
  size_t packed_weights_bytes = size_t{2} << 20;
};

// An op the delegate runs. `inputs` are the tensors read at run time (activations, and constant
// operands of element-wise ops), `outputs` the tensors written.
class OpNode {
 public:
  virtual ~OpNode() = default;
  std::vector<int> inputs, outputs;
  std::vector<TfLiteType> output_types;
  const char* name = "?";              // the TFLite op
  kernels::ThreadPool* pool = nullptr;  // for kernels that split their work
  // The partition's scratch memory, reserved in Prepare for every op's Scratch().
  const kernels::Workspace* workspace = nullptr;
  // Output shapes from input shapes; false (with a reason) if the shapes are unsupported.
  virtual bool InferShapes(const std::vector<Shape>& in, std::vector<Shape>* out,
                           std::string* why) const = 0;
  virtual void Run(const isa::Ops& ops, const std::vector<const void*>& in,
                   const std::vector<Shape>& in_shapes, const std::vector<void*>& out,
                   const std::vector<Shape>& out_shapes) const = 0;
  // GEMM weights packed at every run: their bytes when packed (0: none, or a copy is kept),
  // and keeping a packed copy instead (Options::packed_weights_bytes).
  virtual size_t RepackedBytes() const { return 0; }
  virtual void KeepPackedWeights() {}
  // The scratch memory one Run at these input shapes needs (in workspace).
  virtual kernels::ScratchNeed Scratch(const std::vector<Shape>& /*in*/) const { return {}; }
  // The emulated HVX instructions one Run issues for these shapes (the DSP cost model). The
  // default is a data-movement pass over the outputs.
  virtual kernels::HvxCount Count(const std::vector<Shape>& in,
                                  const std::vector<Shape>& out) const;
  // Biased activations inside a partition (x + 128 as u8, see kernels::Conv2D::SetInputBiased):
  // whether the op can write its output / read its input 0 that way, and switching it to.
  virtual bool CanWriteBiased() const { return false; }
  virtual bool CanReadBiased() const { return false; }
  virtual void SetOutputBiased() {}
  virtual void SetInputBiased() {}
  // PAD fusion (the PAD's output read only by the next op): whether this op is a PAD of H and
  // W only with the zero point of its (same-params) output, and its pads (top, bottom, left,
  // right); whether this op can take such a padding of its input 0 over, and doing so.
  virtual bool ZeroPointSpatialPad(int /*pads*/[4]) const { return false; }
  virtual bool AbsorbInputPad(const int /*pads*/[4]) { return false; }
};

// Whether the node can be run exactly (why = the reason if not). With `create`, also builds it.
bool AnalyzeNode(TfLiteContext* context, const TfLiteNode* node, const TfLiteRegistration* reg,
                 const Options& options, std::unique_ptr<OpNode>* created, std::string* why);

// The delegate options (delegate/options.cc): false with a one-line error for a bad one.
bool ParseOptions(const char* const* keys, const char* const* values, size_t n, Options* o,
                  std::string* error);

const char* OpName(int32_t builtin_code);
int32_t OpCodeByName(const std::string& name);  // -1 if unknown

}  // namespace tfq::delegate

#endif  // TFQUANT_DSP_DELEGATE_GRAPH_H_
