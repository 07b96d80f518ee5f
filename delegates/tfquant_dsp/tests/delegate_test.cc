// The delegate plugin against a fake TfLiteContext (no TFLite runtime): which nodes it claims,
// that a partition with a PAD fused into its depthwise convolution and intermediates in the
// arena computes what the same ops compute as separate partitions, that a new input shape is
// prepared again (outputs resized through the context), and that a failure is a status with a
// message, never a crash. Usage: delegate_test; prints OK and returns 0 when all checks pass.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <random>
#include <string>
#include <vector>

#include "abi/tflite_abi.h"

extern "C" {
TfLiteDelegate* tflite_plugin_create_delegate(const char* const* keys, const char* const* values,
                                              size_t n, void (*report_error)(const char*));
void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate);
}

namespace {

int failures = 0;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      printf("FAIL line %d: %s: ", __LINE__, #cond);       \
      printf(__VA_ARGS__);                                 \
      printf("\n");                                        \
      ++failures;                                          \
    }                                                      \
  } while (0)

TfLiteIntArray* IntArray(std::initializer_list<int> values) {
  auto* a = static_cast<TfLiteIntArray*>(malloc(sizeof(int) * (1 + values.size())));
  a->size = static_cast<int>(values.size());
  int i = 0;
  for (int v : values) a->data[i++] = v;
  return a;
}

// The model: a graph of int8 tensors and builtin nodes, owned here.
struct FakeModel {
  struct Quant {
    TfLiteAffineQuantization affine;
    std::vector<char> scales;  // {int size; float data[]} (the older TfLiteFloatArray layout)
  };
  std::vector<TfLiteTensor> tensors;
  std::vector<std::vector<uint8_t>> data;
  std::vector<Quant*> quants;
  std::vector<TfLiteNode> nodes;
  std::vector<TfLiteRegistration> registrations;
  std::vector<std::vector<char>> options;
  TfLiteIntArray* plan = nullptr;
  TfLiteContext context;
  std::string errors;
  // What the delegate asked to replace, and the kernel registration it gave.
  std::vector<int> replaced;
  TfLiteRegistration kernel;

  ~FakeModel() {
    for (auto& t : tensors) free(t.dims);
    for (auto* q : quants) { free(q->affine.zero_point); delete q; }
    for (auto& n : nodes) { free(n.inputs); free(n.outputs); }
    free(plan);
  }

  int Tensor(TfLiteType type, std::initializer_list<int> shape, float scale, int zero_point,
             bool constant, int seed = 0) {
    TfLiteTensor t;
    memset(&t, 0, sizeof(t));
    t.type = type;
    t.dims = IntArray(shape);
    size_t n = 1;
    for (int d : shape) n *= d;
    const size_t element = type == kTfLiteInt32 ? 4 : type == kTfLiteFloat32 ? 4 : 1;
    data.emplace_back(n * element);
    std::mt19937 rng(seed + static_cast<int>(tensors.size()));
    for (auto& b : data.back()) b = static_cast<uint8_t>(rng());
    if (type == kTfLiteInt8 && constant) {  // symmetric weights: no -128
      for (auto& b : data.back()) if (b == 0x80) b = 0x81;
    }
    t.bytes = data.back().size();
    t.allocation_type = constant ? kTfLiteMmapRo : kTfLiteArenaRw;
    t.params.scale = scale;
    t.params.zero_point = zero_point;
    if (type == kTfLiteInt8) {
      auto* q = new Quant();
      q->scales.resize(8);
      const int one = 1;
      memcpy(q->scales.data(), &one, 4);
      memcpy(q->scales.data() + 4, &scale, 4);
      q->affine.scale = reinterpret_cast<TfLiteFloatArray*>(q->scales.data());
      q->affine.zero_point = IntArray({zero_point});
      q->affine.quantized_dimension = 0;
      quants.push_back(q);
      t.quantization.type = kTfLiteAffineQuantization;
      t.quantization.params = &q->affine;
    }
    tensors.push_back(t);
    return static_cast<int>(tensors.size()) - 1;
  }

  template <typename Options>
  void Node(int32_t code, std::initializer_list<int> inputs, std::initializer_list<int> outputs,
            const Options* opts) {
    TfLiteNode node;
    memset(&node, 0, sizeof(node));
    node.inputs = IntArray(inputs);
    node.outputs = IntArray(outputs);
    if (opts) {
      options.emplace_back(sizeof(Options));
      memcpy(options.back().data(), opts, sizeof(Options));
    } else {
      options.emplace_back();
    }
    nodes.push_back(node);
    TfLiteRegistration reg;
    memset(&reg, 0, sizeof(reg));
    reg.builtin_code = code;
    reg.version = 1;
    registrations.push_back(reg);
  }

  void Finish() {  // data pointers and the execution plan, once every tensor and node exists
    for (size_t i = 0; i < tensors.size(); ++i) tensors[i].data = data[i].data();
    for (size_t i = 0; i < nodes.size(); ++i) {
      nodes[i].builtin_data = options[i].empty() ? nullptr : options[i].data();
    }
    plan = static_cast<TfLiteIntArray*>(malloc(sizeof(int) * (1 + nodes.size())));
    plan->size = static_cast<int>(nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i) plan->data[i] = static_cast<int>(i);
    memset(&context, 0, sizeof(context));
    context.impl_ = this;
    context.tensors = tensors.data();
    context.tensors_size = tensors.size();
    context.GetExecutionPlan = [](TfLiteContext* c, TfLiteIntArray** p) {
      *p = Self(c)->plan;
      return kTfLiteOk;
    };
    context.GetNodeAndRegistration = [](TfLiteContext* c, int i, TfLiteNode** n,
                                        TfLiteRegistration** r) {
      FakeModel* m = Self(c);
      if (i < 0 || i >= static_cast<int>(m->nodes.size())) return kTfLiteError;
      *n = &m->nodes[i];
      *r = &m->registrations[i];
      return kTfLiteOk;
    };
    context.ReplaceNodeSubsetsWithDelegateKernels = [](TfLiteContext* c, TfLiteRegistration reg,
                                                       const TfLiteIntArray* replace,
                                                       TfLiteDelegate*) {
      FakeModel* m = Self(c);
      m->replaced.assign(replace->data, replace->data + replace->size);
      m->kernel = reg;
      return kTfLiteOk;
    };
    context.ResizeTensor = [](TfLiteContext* c, TfLiteTensor* t, TfLiteIntArray* dims) {
      FakeModel* m = Self(c);
      const size_t index = static_cast<size_t>(t - m->tensors.data());
      free(t->dims);
      t->dims = dims;
      size_t n = 1;
      for (int i = 0; i < dims->size; ++i) n *= dims->data[i];
      m->data[index].assign(n, 0);
      t->data = m->data[index].data();
      t->bytes = n;
      return kTfLiteOk;
    };
    context.ReportError = ReportError;
  }

  static void ReportError(TfLiteContext* c, const char* format, ...) {
    char buffer[512];
    va_list args;
    va_start(args, format);
    vsnprintf(buffer, sizeof(buffer), format, args);
    va_end(args);
    Self(c)->errors += std::string(buffer) + "\n";
  }

  static FakeModel* Self(TfLiteContext* c) { return static_cast<FakeModel*>(c->impl_); }

  void SetShape(int tensor, std::initializer_list<int> shape, int seed) {
    free(tensors[tensor].dims);
    tensors[tensor].dims = IntArray(shape);
    size_t n = 1;
    for (int d : shape) n *= d;
    data[tensor].resize(n);
    std::mt19937 rng(seed);
    for (auto& b : data[tensor]) b = static_cast<uint8_t>(rng());
    tensors[tensor].data = data[tensor].data();
    tensors[tensor].bytes = n;
  }
};

// One partition of `nodes` run through the kernel registration the delegate gave: its output
// tensor's bytes after init, prepare, invoke (empty on failure).
struct PartitionRun {
  TfLiteStatus prepare = kTfLiteError, invoke = kTfLiteError;
  std::vector<uint8_t> output;
};

PartitionRun RunPartition(FakeModel& m, TfLiteDelegate* delegate, std::initializer_list<int> nodes,
                          std::initializer_list<int> inputs, int output) {
  PartitionRun run;
  TfLiteDelegateParams params;
  params.delegate = delegate;
  params.nodes_to_replace = IntArray(nodes);
  params.input_tensors = IntArray(inputs);
  params.output_tensors = IntArray({output});
  TfLiteNode node;
  memset(&node, 0, sizeof(node));
  node.user_data = m.kernel.init(&m.context, reinterpret_cast<const char*>(&params), 0);
  run.prepare = m.kernel.prepare(&m.context, &node);
  if (run.prepare == kTfLiteOk) {
    run.invoke = m.kernel.invoke(&m.context, &node);
    if (run.invoke == kTfLiteOk) run.output = m.data[output];
  }
  m.kernel.free(&m.context, node.user_data);
  free(params.nodes_to_replace);
  free(params.input_tensors);
  free(params.output_tensors);
  return run;
}

int ProfileLines(const char* path) {
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  int lines = 0;
  char buffer[1024];
  while (fgets(buffer, sizeof(buffer), f)) if (buffer[0] != '#') ++lines;
  fclose(f);
  return lines;
}

TfLiteDelegate* Create(const char* profile) {
  const char* keys[] = {"fc_requant", "profile"};
  const char* values[] = {"double", profile};
  return tflite_plugin_create_delegate(keys, values, profile ? 2 : 1, nullptr);
}

TfLiteDelegate* CreatePackedBudget(const char* kb, const char* threads) {
  const char* keys[] = {"fc_requant", "packed_weights_kb", "num_threads"};
  const char* values[] = {"double", kb, threads};
  return tflite_plugin_create_delegate(keys, values, 3, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  // A scratch directory: the argument, else Bazel's TEST_TMPDIR, else /tmp.
  const char* dir = argc > 1 ? argv[1] : getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp";
  const std::string profile = std::string(dir) + "/delegate_test_profile.tsv";
  FakeModel m;
  // x -> CONV 3x3 (same, relu) -> PAD 1 -> DEPTHWISE 3x3 (valid) -> CONV 1x1 -> CONV 1x1
  // -> LEAKY_RELU (not the delegate's) -> ADD with the first convolution's output.
  const int x = m.Tensor(kTfLiteInt8, {1, 8, 8, 4}, 0.05f, 3, false);
  const int conv_w = m.Tensor(kTfLiteInt8, {8, 3, 3, 4}, 0.02f, 0, true);
  const int conv_b = m.Tensor(kTfLiteInt32, {8}, 0.f, 0, true);
  for (size_t i = 0; i < 8; ++i) reinterpret_cast<int32_t*>(m.data[conv_b].data())[i] %= 3000;
  const int conv_out = m.Tensor(kTfLiteInt8, {1, 8, 8, 8}, 0.1f, -20, false);
  const int paddings = m.Tensor(kTfLiteInt32, {4, 2}, 0.f, 0, true);
  const int pads[8] = {0, 0, 1, 1, 1, 1, 0, 0};
  memcpy(m.data[paddings].data(), pads, sizeof(pads));
  const int pad_out = m.Tensor(kTfLiteInt8, {1, 10, 10, 8}, 0.1f, -20, false);
  const int dw_w = m.Tensor(kTfLiteInt8, {1, 3, 3, 8}, 0.03f, 0, true);
  const int dw_b = m.Tensor(kTfLiteInt32, {8}, 0.f, 0, true);
  for (size_t i = 0; i < 8; ++i) reinterpret_cast<int32_t*>(m.data[dw_b].data())[i] %= 3000;
  const int dw_out = m.Tensor(kTfLiteInt8, {1, 8, 8, 8}, 0.08f, 5, false);
  const int pw1_w = m.Tensor(kTfLiteInt8, {32, 1, 1, 8}, 0.04f, 0, true);  // expands 4x
  const int pw1_out = m.Tensor(kTfLiteInt8, {1, 8, 8, 32}, 0.12f, 7, false);
  const int pw2_w = m.Tensor(kTfLiteInt8, {8, 1, 1, 32}, 0.04f, 0, true);
  const int pw2_out = m.Tensor(kTfLiteInt8, {1, 8, 8, 8}, 0.12f, -9, false);
  const int leaky_out = m.Tensor(kTfLiteInt8, {1, 8, 8, 8}, 0.08f, 5, false);
  const int sum = m.Tensor(kTfLiteInt8, {1, 8, 8, 8}, 0.15f, -3, false);
  TfLiteConvParams conv{kTfLitePaddingSame, 1, 1, kTfLiteActRelu, 1, 1};
  TfLiteDepthwiseConvParams dw{kTfLitePaddingValid, 1, 1, 1, kTfLiteActNone, 1, 1};
  TfLiteAddParams add{kTfLiteActNone, false};
  m.Node(tfq::abi::kConv2d, {x, conv_w, conv_b}, {conv_out}, &conv);
  m.Node(tfq::abi::kPad, {conv_out, paddings}, {pad_out}, static_cast<const int*>(nullptr));
  m.Node(tfq::abi::kDepthwiseConv2d, {pad_out, dw_w, dw_b}, {dw_out}, &dw);
  TfLiteConvParams pointwise{kTfLitePaddingValid, 1, 1, kTfLiteActNone, 1, 1};
  m.Node(tfq::abi::kConv2d, {dw_out, pw1_w}, {pw1_out}, &pointwise);
  m.Node(tfq::abi::kConv2d, {pw1_out, pw2_w}, {pw2_out}, &pointwise);
  m.Node(98 /* LEAKY_RELU */, {pw2_out}, {leaky_out}, static_cast<const int*>(nullptr));
  m.Node(tfq::abi::kAdd, {leaky_out, conv_out}, {sum}, &add);
  m.Finish();

  // 1. Partitioning: everything but LEAKY_RELU is claimed.
  remove(profile.c_str());
  TfLiteDelegate* delegate = Create(profile.c_str());
  CHECK(delegate != nullptr, "the delegate was not created");
  if (!delegate) return 1;
  CHECK(delegate->Prepare(&m.context, delegate) == kTfLiteOk, "%s", m.errors.c_str());
  CHECK((m.replaced == std::vector<int>{0, 1, 2, 3, 4, 6}), "claimed %zu nodes",
        m.replaced.size());

  // 2. CONV -> PAD -> DEPTHWISE -> CONV -> CONV as one partition (the PAD fused; three
  // intermediates in the arena, the first and the third sharing bytes) against the five ops
  // as separate partitions.
  PartitionRun fused = RunPartition(m, delegate, {0, 1, 2, 3, 4}, {x}, pw2_out);
  CHECK(fused.invoke == kTfLiteOk, "%s", m.errors.c_str());
  CHECK(ProfileLines(profile.c_str()) == 4, "the fused partition profiled %d ops (want 4: the PAD "
        "fused)", ProfileLines(profile.c_str()));
  RunPartition(m, delegate, {0}, {x}, conv_out);
  RunPartition(m, delegate, {1}, {conv_out}, pad_out);
  RunPartition(m, delegate, {2}, {pad_out}, dw_out);
  RunPartition(m, delegate, {3}, {dw_out}, pw1_out);
  PartitionRun separate = RunPartition(m, delegate, {4}, {pw1_out}, pw2_out);
  CHECK(separate.invoke == kTfLiteOk && fused.output == separate.output,
        "the fused partition differs from the separate ops");

  // 3. A new input shape (batch 2): prepared again, the output resized through the context;
  // each image computes what it computes alone.
  m.SetShape(x, {2, 8, 8, 4}, 7);
  const std::vector<uint8_t> both = m.data[x];
  PartitionRun batch = RunPartition(m, delegate, {0, 1, 2, 3, 4}, {x}, pw2_out);
  CHECK(batch.invoke == kTfLiteOk && batch.output.size() == 2 * 8 * 8 * 8 &&
        m.tensors[pw2_out].dims->data[0] == 2, "batch 2 not prepared: %s", m.errors.c_str());
  for (int image = 0; image < 2; ++image) {
    m.SetShape(x, {1, 8, 8, 4}, 0);
    memcpy(m.data[x].data(), both.data() + image * 8 * 8 * 4, 8 * 8 * 4);
    PartitionRun one = RunPartition(m, delegate, {0, 1, 2, 3, 4}, {x}, pw2_out);
    CHECK(one.invoke == kTfLiteOk && batch.output.size() == 2 * one.output.size() &&
          memcmp(one.output.data(), batch.output.data() + image * one.output.size(),
                 one.output.size()) == 0, "image %d of the batch differs", image);
  }

  // 4. Failures are statuses with messages: an input without data at invoke.
  m.errors.clear();
  m.tensors[x].data = nullptr;
  PartitionRun broken = RunPartition(m, delegate, {0, 1, 2, 3, 4}, {x}, pw2_out);
  CHECK(broken.prepare == kTfLiteOk && broken.invoke == kTfLiteError &&
        m.errors.find("tfquant_dsp: input tensor has no data") != std::string::npos,
        "errors: %s", m.errors.c_str());
  m.tensors[x].data = m.data[x].data();
  // ... and a node the partition cannot analyse fails init, then prepare, with a message.
  m.errors.clear();
  PartitionRun unclaimable = RunPartition(m, delegate, {5}, {pw2_out}, leaky_out);
  CHECK(unclaimable.prepare == kTfLiteError &&
        m.errors.find("partition failed to initialise") != std::string::npos,
        "errors: %s", m.errors.c_str());

  // 5. Weights packed at every invoke (no packed copy kept: packed_weights_kb 0) or all kept,
  // on one thread and on two: the bytes of the default delegate's run.
  m.errors.clear();
  const PartitionRun want = RunPartition(m, delegate, {0, 1, 2, 3, 4}, {x}, pw2_out);
  CHECK(want.invoke == kTfLiteOk, "%s", m.errors.c_str());
  for (const char* threads : {"1", "2"}) {
    for (const char* kb : {"0", "1048576"}) {
      TfLiteDelegate* budget = CreatePackedBudget(kb, threads);
      CHECK(budget != nullptr, "packed_weights_kb=%s num_threads=%s refused", kb, threads);
      if (!budget) continue;
      PartitionRun run = RunPartition(m, budget, {0, 1, 2, 3, 4}, {x}, pw2_out);
      CHECK(run.invoke == kTfLiteOk && run.output == want.output,
            "packed_weights_kb=%s num_threads=%s differs: %s", kb, threads, m.errors.c_str());
      tflite_plugin_destroy_delegate(budget);
    }
  }
  CHECK(CreatePackedBudget("-1", "1") == nullptr, "a negative packed_weights_kb was accepted");

  tflite_plugin_destroy_delegate(delegate);
  remove(profile.c_str());
  if (failures) {
    printf("%d FAILURES\n", failures);
    return 1;
  }
  printf("OK (partitioning, PAD fusion and arena, re-prepare on a new shape, errors, packed "
         "weights kept or not)\n");
  return 0;
}
