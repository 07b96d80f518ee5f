// tfquant's own declarations of the parts of the TFLite C delegate interface the DSP delegate
// touches. No pip package ships TFLite's headers and no runtime exports TfLite* functions to a
// delegate, so these are written from the documented, "semi-ABI stable" layout (fields are only
// ever appended). Only the fields the delegate reads or writes are named; everything else is
// padding whose size is checked below against the sizes measured on x86-64 Linux for
// tflite-runtime 2.14, TF 2.21 and ai-edge-litert 2.3 (../shared/notes/tflite-int8.md §3).
#ifndef TFQUANT_DSP_ABI_TFLITE_ABI_H_
#define TFQUANT_DSP_ABI_TFLITE_ABI_H_

#include <stddef.h>
#include <stdint.h>

extern "C" {

typedef enum TfLiteStatus : int {
  kTfLiteOk = 0,
  kTfLiteError = 1,
  kTfLiteDelegateError = 2,
} TfLiteStatus;

typedef enum TfLiteType : int {
  kTfLiteNoType = 0,
  kTfLiteFloat32 = 1,
  kTfLiteInt32 = 2,
  kTfLiteUInt8 = 3,
  kTfLiteInt64 = 4,
  kTfLiteInt16 = 7,
  kTfLiteInt8 = 9,
} TfLiteType;

typedef enum TfLiteAllocationType : int {
  kTfLiteMemNone = 0,
  kTfLiteMmapRo = 1,
  kTfLiteArenaRw = 2,
  kTfLiteArenaRwPersistent = 3,
  kTfLiteDynamic = 4,
  kTfLitePersistentRo = 5,
} TfLiteAllocationType;

typedef enum TfLiteQuantizationType : int {
  kTfLiteNoQuantization = 0,
  kTfLiteAffineQuantization = 1,
} TfLiteQuantizationType;

// Size followed by the elements; allocated with malloc and freed by the runtime with free().
typedef struct TfLiteIntArray {
  int size;
  int data[];
} TfLiteIntArray;

// The float array of per-channel scales changed layout between releases ({int size; float
// data[]} in older ones); the delegate never dereferences it through a struct but through
// tfq::abi::ReadFloatArray (delegate/tensor_util.cc), which detects the layout.
struct TfLiteFloatArray;

typedef struct TfLiteAffineQuantization {
  TfLiteFloatArray* scale;
  TfLiteIntArray* zero_point;
  int32_t quantized_dimension;
} TfLiteAffineQuantization;

typedef struct TfLiteQuantizationParams {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

typedef struct TfLiteQuantization {
  TfLiteQuantizationType type;
  void* params;
} TfLiteQuantization;

struct TfLiteContext;
struct TfLiteDelegate;
struct TfLiteNode;

typedef struct TfLiteTensor {
  TfLiteType type;
  void* data;                        // TfLitePtrUnion: only the raw pointer is used
  TfLiteIntArray* dims;
  TfLiteQuantizationParams params;
  TfLiteAllocationType allocation_type;
  size_t bytes;
  const void* allocation;
  const char* name;
  TfLiteDelegate* delegate;
  int buffer_handle;
  bool data_is_stale;
  bool is_variable;
  TfLiteQuantization quantization;
  void* sparsity;
  const TfLiteIntArray* dims_signature;
} TfLiteTensor;

typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  TfLiteIntArray* temporaries;
  void* user_data;
  void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
  TfLiteDelegate* delegate;
  bool might_have_side_effect;
} TfLiteNode;

typedef struct TfLiteRegistration {
  void* (*init)(TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node);
  const char* (*profiling_string)(const TfLiteContext* context, const TfLiteNode* node);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external;
  void* async_kernel;
  uint64_t inplace_operator;
} TfLiteRegistration;

typedef struct TfLiteDelegateParams {
  TfLiteDelegate* delegate;
  TfLiteIntArray* nodes_to_replace;
  TfLiteIntArray* input_tensors;
  TfLiteIntArray* output_tensors;
} TfLiteDelegateParams;

typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(TfLiteContext* context, TfLiteIntArray** execution_plan);
  TfLiteTensor* tensors;
  void* impl_;
  TfLiteStatus (*ResizeTensor)(TfLiteContext* context, TfLiteTensor* tensor,
                               TfLiteIntArray* new_size);
  void (*ReportError)(TfLiteContext* context, const char* format, ...);
  void* AddTensors;
  TfLiteStatus (*GetNodeAndRegistration)(TfLiteContext* context, int node_index,
                                         TfLiteNode** node, TfLiteRegistration** registration);
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(TfLiteContext* context,
                                                        TfLiteRegistration registration,
                                                        const TfLiteIntArray* nodes_to_replace,
                                                        TfLiteDelegate* delegate);
  int recommended_num_threads;
  void* rest_[15];  // GetExternalContext ... ReleaseSubgraphContext: unused
} TfLiteContext;

enum { kTfLiteDelegateFlagsAllowDynamicTensors = 1 };

typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(TfLiteContext* context, TfLiteDelegate* delegate);
  void* CopyFromBufferHandle;
  void* CopyToBufferHandle;
  void* FreeBufferHandle;
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

// builtin_data of the ops the delegate claims (only the leading fields it reads; the runtime
// allocates the full structs, so reading a prefix is safe).
typedef enum TfLitePadding : int { kTfLitePaddingUnknown = 0, kTfLitePaddingSame = 1,
                                   kTfLitePaddingValid = 2 } TfLitePadding;
typedef enum TfLiteFusedActivation : int {
  kTfLiteActNone = 0, kTfLiteActRelu = 1, kTfLiteActReluN1To1 = 2, kTfLiteActRelu6 = 3,
  kTfLiteActTanh = 4, kTfLiteActSignBit = 5, kTfLiteActSigmoid = 6,
} TfLiteFusedActivation;

typedef struct TfLiteConvParams {
  TfLitePadding padding;
  int stride_width;
  int stride_height;
  TfLiteFusedActivation activation;
  int dilation_width_factor;
  int dilation_height_factor;
} TfLiteConvParams;

typedef struct TfLiteDepthwiseConvParams {
  TfLitePadding padding;
  int stride_width;
  int stride_height;
  int depth_multiplier;
  TfLiteFusedActivation activation;
  int dilation_width_factor;
  int dilation_height_factor;
} TfLiteDepthwiseConvParams;

typedef struct TfLitePoolParams {
  TfLitePadding padding;
  int stride_width;
  int stride_height;
  int filter_width;
  int filter_height;
  TfLiteFusedActivation activation;
} TfLitePoolParams;

typedef struct TfLiteFullyConnectedParams {
  TfLiteFusedActivation activation;
  int weights_format;  // 0 = default
  bool keep_num_dims;
  bool asymmetric_quantize_inputs;
} TfLiteFullyConnectedParams;

typedef struct TfLiteAddParams {  // also TfLiteMulParams / TfLiteSubParams
  TfLiteFusedActivation activation;
  bool pot_scale_int16;
} TfLiteAddParams;

typedef struct TfLiteConcatenationParams {
  int axis;
  TfLiteFusedActivation activation;
} TfLiteConcatenationParams;

typedef struct TfLiteSoftmaxParams {
  float beta;
} TfLiteSoftmaxParams;

typedef struct TfLiteReducerParams {
  bool keep_dims;
} TfLiteReducerParams;

typedef struct TfLiteReshapeParams {
  int shape[8];
  int num_dimensions;
} TfLiteReshapeParams;

}  // extern "C"

// Builtin operator codes (schema BuiltinOperator) of the ops the delegate knows.
namespace tfq::abi {
enum BuiltinOp : int32_t {
  kAdd = 0, kAveragePool2d = 1, kConcatenation = 2, kConv2d = 3, kDepthwiseConv2d = 4,
  kDequantize = 6, kFullyConnected = 9, kLogistic = 14, kMaxPool2d = 17, kMul = 18,
  kReshape = 22, kSoftmax = 25, kPad = 34, kMean = 40, kQuantize = 114, kHardSwish = 117,
};
}  // namespace tfq::abi

#if (defined(__x86_64__) || defined(__aarch64__)) && defined(__linux__)
static_assert(sizeof(TfLiteRegistration) == 88, "TfLiteRegistration layout");
static_assert(sizeof(TfLiteDelegate) == 56, "TfLiteDelegate layout");
static_assert(sizeof(TfLiteTensor) == 112, "TfLiteTensor layout");
static_assert(sizeof(TfLiteContext) == 200, "TfLiteContext layout");
static_assert(offsetof(TfLiteTensor, quantization) == 80, "TfLiteTensor.quantization");
static_assert(offsetof(TfLiteContext, ReplaceNodeSubsetsWithDelegateKernels) == 64,
              "TfLiteContext.ReplaceNodeSubsetsWithDelegateKernels");
static_assert(offsetof(TfLiteRegistration, version) == 56, "TfLiteRegistration.version");
static_assert(offsetof(TfLiteDelegate, flags) == 40, "TfLiteDelegate.flags");
static_assert(sizeof(TfLiteNode) == 80, "TfLiteNode layout");
#endif

#endif  // TFQUANT_DSP_ABI_TFLITE_ABI_H_
