// The external-delegate plugin: option parsing, the partitioner, and the kernel that runs one
// claimed partition (its intermediates in one lifetime-planned arena). Exports
// tflite_plugin_create_delegate / tflite_plugin_destroy_delegate (and, in isa_export.cc,
// tfquant_dsp_isas; the library is built with -fvisibility=hidden). No exception crosses a C
// callback (Guarded).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <tuple>
#include <vector>

#include "delegate/arena.h"
#include "delegate/graph.h"

namespace tfq::delegate {
namespace {

const char kKernelName[] = "TfQuantDspDelegate";

struct DelegateState {
  TfLiteDelegate delegate;
  Options options;
  std::unique_ptr<kernels::ThreadPool> pool;  // created once, for num_threads > 1
};

int64_t NumElements(const Shape& s) {
  int64_t n = 1;
  for (int d : s) n *= d;
  return n;
}

Shape Dims(const TfLiteTensor& t) {
  Shape s;
  if (t.dims) s.assign(t.dims->data, t.dims->data + t.dims->size);
  return s;
}

size_t ElementSize(TfLiteType type) { return type == kTfLiteFloat32 ? 4 : 1; }

void Report(TfLiteContext* ctx, const std::string& msg) {
  if (ctx && ctx->ReportError) ctx->ReportError(ctx, "tfquant_dsp: %s", msg.c_str());
}

// Runs body() (a TfLiteStatus) for a C callback: no exception crosses into the runtime. An
// allocation failure or any other exception is reported through the context's error reporter
// (without allocating: memory may be exhausted) and becomes `failure`.
template <typename Body>
TfLiteStatus Guarded(TfLiteContext* ctx, const char* stage, TfLiteStatus failure, Body&& body) {
  const char* what = "unknown exception";
  try {
    return body();
  } catch (const std::bad_alloc&) {
    what = "out of memory";
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  if (ctx && ctx->ReportError) ctx->ReportError(ctx, "tfquant_dsp: %s: %s", stage, what);
  return failure;
}

// One claimed partition: the ops in execution order, intermediate tensors in private buffers.
struct Partition {
  const Options* options = nullptr;
  std::vector<std::unique_ptr<OpNode>> ops;
  std::vector<int> inputs, outputs;       // the runtime's tensors at the partition boundary
  std::map<int, Shape> shapes;            // every tensor the ops touch, after Prepare
  // Tensors produced and consumed inside, at their offsets in one arena (PlanArena).
  std::map<int, size_t> internal;
  std::vector<uint8_t> arena;
  uint8_t* arena_base = nullptr;  // arena.data(), rounded up to kArenaAlignment
  kernels::Workspace workspace;   // the ops' scratch, reserved in Prepare
  size_t kept_bytes = 0;          // packed weight copies kept (options->packed_weights_bytes)
  std::map<int, Shape> prepared_inputs;
  // Profile (options->profile): per op, the node index, HVX counts at the prepared shapes, and
  // the accumulated run time.
  std::vector<int> node_index;
  std::vector<kernels::HvxCount> counts;
  std::vector<Shape> out_shapes;
  std::vector<double> op_seconds, op_min_seconds;
  int64_t invokes = 0;
  bool first_invoke_done = false;

  bool IsOutput(int t) const {
    for (int o : outputs) if (o == t) return true;
    return false;
  }
};

// The arena plan of a partition's intermediates: each tensor is alive from its producing op
// to its last reader (inclusive).
size_t PlanPartitionArena(const Partition& part, const std::map<int, size_t>& bytes,
                          std::map<int, size_t>* offsets) {
  std::vector<ArenaItem> items;
  for (const auto& [t, size] : bytes) {
    int first = -1, last = -1;
    for (int i = 0; i < static_cast<int>(part.ops.size()); ++i) {
      const OpNode& op = *part.ops[i];
      for (int o : op.outputs) if (o == t && first < 0) first = i;
      for (int in : op.inputs) if (in == t) last = i;
    }
    items.push_back({t, size, std::max(first, 0), std::max(last, std::max(first, 0)), 0});
  }
  const size_t total = PlanArena(&items);
  for (const ArenaItem& item : items) (*offsets)[item.tensor] = item.offset;
  return total;
}

// A tensor produced inside the partition by a convolution and read only as the input of
// convolutions travels biased (kernels::Conv2D::SetInputBiased): its producer stores x + 128
// as u8 and its consumers skip their conversion pass. Tensors leaving the partition stay int8.
void BiasActivations(Partition* part) {
  for (auto& producer : part->ops) {
    if (!producer->CanWriteBiased() || producer->outputs.size() != 1) continue;
    const int t = producer->outputs[0];
    if (part->IsOutput(t)) continue;
    bool read = false, all_biased = true;
    for (const auto& op : part->ops) {
      for (size_t i = 0; i < op->inputs.size(); ++i) {
        if (op->inputs[i] != t) continue;
        read = true;
        if (i != 0 || !op->CanReadBiased()) all_biased = false;
      }
    }
    if (!read || !all_biased) continue;
    producer->SetOutputBiased();
    for (auto& op : part->ops) {
      if (!op->inputs.empty() && op->inputs[0] == t) op->SetInputBiased();
    }
  }
}

// A PAD (of H and W, with the zero point) whose output only one op reads, as its input 0, is
// fused into that op when it can take the padding over (a depthwise convolution: padding taps
// hold the zero point and contribute nothing, as the PAD's would): the op reads the PAD's input
// and the PAD is dropped.
void FusePads(Partition* part) {
  for (size_t i = 0; i < part->ops.size();) {
    OpNode& pad = *part->ops[i];
    int pads[4];
    const int t = pad.outputs.size() == 1 ? pad.outputs[0] : -1;
    if (t < 0 || pad.inputs.empty() || !pad.ZeroPointSpatialPad(pads) || part->IsOutput(t)) {
      ++i;
      continue;
    }
    OpNode* consumer = nullptr;
    int reads = 0;
    for (const auto& op : part->ops) {
      for (size_t k = 0; k < op->inputs.size(); ++k) {
        if (op->inputs[k] != t) continue;
        ++reads;
        if (k == 0) consumer = op.get();
      }
    }
    if (reads != 1 || !consumer || !consumer->AbsorbInputPad(pads)) {
      ++i;
      continue;
    }
    consumer->inputs[0] = pad.inputs[0];
    part->ops.erase(part->ops.begin() + i);
    part->node_index.erase(part->node_index.begin() + i);
  }
}

void* KernelInitUnguarded(TfLiteContext* ctx, const char* buffer) {
  const auto* params = reinterpret_cast<const TfLiteDelegateParams*>(buffer);
  if (!params || !params->delegate || !params->nodes_to_replace) return nullptr;
  auto* state = static_cast<DelegateState*>(params->delegate->data_);
  auto part = std::make_unique<Partition>();
  part->options = &state->options;
  for (int i = 0; i < params->nodes_to_replace->size; ++i) {
    TfLiteNode* node = nullptr;
    TfLiteRegistration* reg = nullptr;
    if (ctx->GetNodeAndRegistration(ctx, params->nodes_to_replace->data[i], &node, &reg) != kTfLiteOk) {
      return nullptr;
    }
    std::unique_ptr<OpNode> op;
    std::string why;
    if (!AnalyzeNode(ctx, node, reg, state->options, &op, &why)) {
      Report(ctx, "node " + std::to_string(params->nodes_to_replace->data[i]) + ": " + why);
      return nullptr;
    }
    op->workspace = &part->workspace;
    part->ops.push_back(std::move(op));
    part->node_index.push_back(params->nodes_to_replace->data[i]);
  }
  if (params->input_tensors) {
    part->inputs.assign(params->input_tensors->data,
                        params->input_tensors->data + params->input_tensors->size);
  }
  if (params->output_tensors) {
    part->outputs.assign(params->output_tensors->data,
                         params->output_tensors->data + params->output_tensors->size);
  }
  FusePads(part.get());
  BiasActivations(part.get());
  return part.release();
}

// Appends the partition's profile to options->profile: one TSV line per op.
void WriteProfile(const Partition& part) {
  FILE* f = fopen(part.options->profile.c_str(), "a");
  if (!f) return;
  for (size_t i = 0; i < part.ops.size(); ++i) {
    std::string shape;
    if (i < part.out_shapes.size()) {
      for (size_t d = 0; d < part.out_shapes[i].size(); ++d) {
        shape += (d ? "x" : "") + std::to_string(part.out_shapes[i][d]);
      }
    }
    const kernels::HvxCount h = i < part.counts.size() ? part.counts[i] : kernels::HvxCount();
    const double seconds = i < part.op_seconds.size() ? part.op_seconds[i] : 0.0;
    const double fastest = part.invokes > 0 && i < part.op_min_seconds.size() ? part.op_min_seconds[i] : 0.0;
    fprintf(f, "%d\t%s\t%s\t%lld\t%.3f\t%.3f\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\n",
            part.node_index[i], part.ops[i]->name, shape.empty() ? "-" : shape.c_str(),
            static_cast<long long>(part.invokes), seconds * 1e6, fastest * 1e6,
            static_cast<long long>(h.macs),
            static_cast<long long>(h.vrmpy), static_cast<long long>(h.vmpy),
            static_cast<long long>(h.valu), static_cast<long long>(h.vshift),
            static_cast<long long>(h.vload), static_cast<long long>(h.vstore));
  }
  fclose(f);
}

// Starts a profile (options->profile) with the measured int8 dot-product peak of one core,
// what the per-op throughputs are compared with: "#vnni_peak<TAB>GMAC/s<TAB>form".
void WriteProfilePeak(const std::string& path) {
  const char* form = "none";
  const double gmacs = isa::MeasureVnniPeak(0.02, &form);
  FILE* f = fopen(path.c_str(), "a");
  if (!f) return;
  fprintf(f, "#vnni_peak\t%.3f\t%s\n", gmacs, form);
  fclose(f);
}

void KernelFree(TfLiteContext*, void* buffer) noexcept {
  auto* part = static_cast<Partition*>(buffer);
  try {
    if (part && part->options && !part->options->profile.empty()) WriteProfile(*part);
  } catch (...) {  // a profile that cannot be written (out of memory) is dropped
  }
  delete part;
}

TfLiteStatus KernelPrepareUnguarded(TfLiteContext* ctx, TfLiteNode* node) {
  auto* part = static_cast<Partition*>(node->user_data);
  if (!part) {
    Report(ctx, "partition failed to initialise");
    return kTfLiteError;
  }
  part->shapes.clear();
  part->prepared_inputs.clear();
  kernels::ScratchNeed scratch;
  // (rows per run, packed bytes, op) of the ops that pack their weights at each run.
  std::vector<std::tuple<int64_t, size_t, OpNode*>> repacked;
  // Shapes flow from the runtime's tensors (partition inputs and constants) through the ops.
  for (const auto& op : part->ops) {
    std::vector<Shape> in_shapes, out_shapes;
    for (int t : op->inputs) {
      auto it = part->shapes.find(t);
      if (it == part->shapes.end()) {
        const Shape s = Dims(ctx->tensors[t]);
        part->shapes[t] = s;
        part->prepared_inputs[t] = s;
        in_shapes.push_back(s);
      } else {
        in_shapes.push_back(it->second);
      }
    }
    std::string why;
    if (!op->InferShapes(in_shapes, &out_shapes, &why)) {
      Report(ctx, "shape inference failed: " + why);
      return kTfLiteError;
    }
    for (size_t i = 0; i < op->outputs.size(); ++i) part->shapes[op->outputs[i]] = out_shapes[i];
    if (op->RepackedBytes() > 0 && !out_shapes.empty() && !out_shapes[0].empty() &&
        out_shapes[0].back() > 0) {
      // Rows of the GEMM: every output element but the channels (pixels, or batches).
      repacked.emplace_back(NumElements(out_shapes[0]) / out_shapes[0].back(),
                            op->RepackedBytes(), op.get());
    }
    if (!part->options->profile.empty()) {
      part->counts.push_back(op->Count(in_shapes, out_shapes));
      part->out_shapes.push_back(out_shapes.empty() ? Shape() : out_shapes[0]);
    }
  }
  if (!part->options->profile.empty()) {
    // Counts for the shapes of this Prepare (the last one is what the profile reports).
    const size_t n = part->ops.size();
    part->counts.erase(part->counts.begin(), part->counts.end() - n);
    part->out_shapes.erase(part->out_shapes.begin(), part->out_shapes.end() - n);
    part->op_seconds.assign(n, 0.0);
    part->op_min_seconds.assign(n, 1e30);
    part->invokes = 0;
    part->first_invoke_done = false;
  }
  // Boundary outputs: resize the runtime's tensors if needed; intermediates: the arena.
  part->internal.clear();
  std::map<int, size_t> intermediate_bytes;
  for (const auto& op : part->ops) {
    for (size_t i = 0; i < op->outputs.size(); ++i) {
      const int t = op->outputs[i];
      const Shape& s = part->shapes[t];
      if (part->IsOutput(t)) {
        TfLiteTensor& tensor = ctx->tensors[t];
        if (Dims(tensor) != s) {
          auto* dims = static_cast<TfLiteIntArray*>(malloc(sizeof(int) * (1 + s.size())));
          if (!dims) return kTfLiteError;
          dims->size = static_cast<int>(s.size());
          for (size_t d = 0; d < s.size(); ++d) dims->data[d] = s[d];
          if (ctx->ResizeTensor(ctx, &tensor, dims) != kTfLiteOk) return kTfLiteError;
        }
      } else {
        intermediate_bytes[t] = NumElements(s) * ElementSize(op->output_types[i]);
      }
    }
  }
  const size_t arena_size = PlanPartitionArena(*part, intermediate_bytes, &part->internal);
  part->arena.assign(arena_size + kArenaAlignment, 0);
  const uintptr_t base = reinterpret_cast<uintptr_t>(part->arena.data());
  part->arena_base = part->arena.data() + ((kArenaAlignment - base % kArenaAlignment) %
                                           kArenaAlignment);
  // Packed copies within the budget for the weights that serve the fewest rows per run (the
  // packing costs them the most next to their arithmetic: a FULLY_CONNECTED of one row spends
  // twice as long packing as multiplying), smaller ones first among equals. Then the scratch of
  // every op as it will run.
  std::stable_sort(repacked.begin(), repacked.end());
  for (const auto& [rows, bytes, op] : repacked) {
    if (part->kept_bytes + bytes > part->options->packed_weights_bytes) continue;
    op->KeepPackedWeights();
    part->kept_bytes += bytes;
  }
  for (const auto& op : part->ops) {
    std::vector<Shape> in_shapes;
    for (int t : op->inputs) in_shapes.push_back(part->shapes[t]);
    scratch.Include(op->Scratch(in_shapes));
  }
  const kernels::ThreadPool* pool = part->options->pool;
  part->workspace.Reserve(scratch, pool ? pool->threads() : 1);
  return kTfLiteOk;
}

TfLiteStatus KernelInvokeUnguarded(TfLiteContext* ctx, TfLiteNode* node) {
  auto* part = static_cast<Partition*>(node->user_data);
  if (!part) return kTfLiteError;
  for (const auto& [t, s] : part->prepared_inputs) {
    if (Dims(ctx->tensors[t]) != s) {
      Report(ctx, "input shape changed after prepare");
      return kTfLiteError;
    }
  }
  const isa::Ops& ops = *part->options->isa;
  // Profiles time every invoke but the first (buffers are allocated on first use).
  const bool profile = !part->options->profile.empty() && part->first_invoke_done;
  if (profile) ++part->invokes;
  part->first_invoke_done = true;
  size_t op_number = 0;
  std::vector<const void*> in;
  std::vector<void*> out;
  std::vector<Shape> in_shapes, out_shapes;
  for (const auto& op : part->ops) {
    in.clear(); out.clear(); in_shapes.clear(); out_shapes.clear();
    for (int t : op->inputs) {
      auto it = part->internal.find(t);
      in.push_back(it != part->internal.end() ? part->arena_base + it->second
                                              : ctx->tensors[t].data);
      in_shapes.push_back(part->shapes[t]);
      if (!in.back()) { Report(ctx, "input tensor has no data"); return kTfLiteError; }
    }
    for (int t : op->outputs) {
      auto it = part->internal.find(t);
      out.push_back(it != part->internal.end() ? part->arena_base + it->second
                                               : ctx->tensors[t].data);
      out_shapes.push_back(part->shapes[t]);
      if (!out.back() && NumElements(out_shapes.back()) > 0) {
        Report(ctx, "output tensor has no data");
        return kTfLiteError;
      }
    }
    if (profile) {
      const auto start = std::chrono::steady_clock::now();
      op->Run(ops, in, in_shapes, out, out_shapes);
      const double t =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      part->op_seconds[op_number] += t;
      part->op_min_seconds[op_number] = std::min(part->op_min_seconds[op_number], t);
    } else {
      op->Run(ops, in, in_shapes, out, out_shapes);
    }
    ++op_number;
  }
  return kTfLiteOk;
}

// The guarded kernel callbacks (defined below).
void* KernelInit(TfLiteContext* ctx, const char* buffer, size_t);
TfLiteStatus KernelPrepare(TfLiteContext* ctx, TfLiteNode* node);
TfLiteStatus KernelInvoke(TfLiteContext* ctx, TfLiteNode* node);

TfLiteStatus DelegatePrepareUnguarded(TfLiteContext* ctx, TfLiteDelegate* delegate) {
  auto* state = static_cast<DelegateState*>(delegate->data_);
  TfLiteIntArray* plan = nullptr;
  if (ctx->GetExecutionPlan(ctx, &plan) != kTfLiteOk || !plan) return kTfLiteError;
  std::vector<int> claimed;
  std::map<std::string, int> rejected;
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode* node = nullptr;
    TfLiteRegistration* reg = nullptr;
    if (ctx->GetNodeAndRegistration(ctx, plan->data[i], &node, &reg) != kTfLiteOk) continue;
    std::string why;
    if (AnalyzeNode(ctx, node, reg, state->options, nullptr, &why)) {
      claimed.push_back(plan->data[i]);
    } else if (state->options.verbose) {
      const char* name = reg ? OpName(reg->builtin_code) : "?";
      const std::string op = std::string(*name == '?' ? "builtin " + std::to_string(reg ? reg->builtin_code : -1) : name);
      ++rejected[op + ": " + why];
    }
  }
  if (state->options.verbose) {
    fprintf(stderr, "tfquant_dsp: claimed %zu of %d nodes (isa %s)\n", claimed.size(), plan->size,
            state->options.isa->name);
    for (const auto& [reason, count] : rejected) {
      fprintf(stderr, "tfquant_dsp:   left to the CPU: %d x %s\n", count, reason.c_str());
    }
  }
  if (claimed.empty()) return kTfLiteOk;
  std::vector<int> array(1 + claimed.size());
  array[0] = static_cast<int>(claimed.size());
  for (size_t i = 0; i < claimed.size(); ++i) array[1 + i] = claimed[i];
  TfLiteRegistration reg;
  memset(&reg, 0, sizeof(reg));
  reg.init = KernelInit;
  reg.free = KernelFree;
  reg.prepare = KernelPrepare;
  reg.invoke = KernelInvoke;
  reg.custom_name = kKernelName;
  reg.version = 1;
  return ctx->ReplaceNodeSubsetsWithDelegateKernels(
      ctx, reg, reinterpret_cast<const TfLiteIntArray*>(array.data()), delegate);
}

// The C callbacks TFLite calls: the functions above, guarded. A failure while claiming nodes
// is a delegate error (the interpreter then runs the model on its own kernels); a failure in
// a partition's prepare or invoke is an error the interpreter reports (the process goes on, and
// a later invoke recomputes every intermediate).
void* KernelInit(TfLiteContext* ctx, const char* buffer, size_t) {
  void* part = nullptr;
  Guarded(ctx, "init", kTfLiteError, [&] {
    part = KernelInitUnguarded(ctx, buffer);
    return kTfLiteOk;
  });
  return part;
}

TfLiteStatus KernelPrepare(TfLiteContext* ctx, TfLiteNode* node) {
  return Guarded(ctx, "prepare", kTfLiteError, [&] { return KernelPrepareUnguarded(ctx, node); });
}

TfLiteStatus KernelInvoke(TfLiteContext* ctx, TfLiteNode* node) {
  return Guarded(ctx, "invoke", kTfLiteError, [&] { return KernelInvokeUnguarded(ctx, node); });
}

TfLiteStatus DelegatePrepare(TfLiteContext* ctx, TfLiteDelegate* delegate) {
  return Guarded(ctx, "claiming nodes", kTfLiteDelegateError,
                 [&] { return DelegatePrepareUnguarded(ctx, delegate); });
}

}  // namespace
}  // namespace tfq::delegate

extern "C" {

__attribute__((visibility("default"))) TfLiteDelegate* tflite_plugin_create_delegate(
    const char* const* options_keys, const char* const* options_values, size_t num_options,
    void (*report_error)(const char*)) {
  using namespace tfq::delegate;  // NOLINT
  auto* state = new (std::nothrow) DelegateState();
  if (!state) {
    if (report_error) report_error("tfquant_dsp: out of memory creating the delegate");
    return nullptr;
  }
  try {
    std::string error;
    if (!ParseOptions(options_keys, options_values, num_options, &state->options, &error)) {
      if (report_error) report_error(("tfquant_dsp: " + error).c_str());
      delete state;
      return nullptr;
    }
  } catch (...) {  // out of memory while parsing: no exception crosses the C boundary
    if (report_error) report_error("tfquant_dsp: out of memory creating the delegate");
    delete state;
    return nullptr;
  }
  if (state->options.num_threads > 1) {
    try {
      state->pool = std::make_unique<tfq::kernels::ThreadPool>(state->options.num_threads);
    } catch (...) {  // threads unavailable: run on the caller's thread only
      state->pool.reset();
      if (report_error) report_error("tfquant_dsp: could not start worker threads; using one");
    }
    state->options.pool = state->pool.get();
  }
  if (!state->options.profile.empty()) {
    try {
      WriteProfilePeak(state->options.profile);
    } catch (...) {  // the profile's first line is lost, the delegate still works
    }
  }
  memset(&state->delegate, 0, sizeof(state->delegate));
  state->delegate.data_ = state;
  state->delegate.Prepare = DelegatePrepare;
  state->delegate.flags = kTfLiteDelegateFlagsAllowDynamicTensors;
  state->delegate.opaque_delegate_builder = nullptr;
  return &state->delegate;
}

__attribute__((visibility("default"))) void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  if (delegate) delete static_cast<tfq::delegate::DelegateState*>(delegate->data_);
}

}  // extern "C"
