"""TFLite writer: serializes an IR graph (float or quantized) into a flatbuffer.

Uses the flatbuffer object API that ships with ai-edge-litert (schema_py_generated). The graph
must already hold final tensor types, quantization params and constant data: this module only
translates, it makes no quantization decision. Tensor i of the flatbuffer is the i-th tensor of
`graph.tensors`, so tools can map IR names to interpreter tensor indices with `tensor_index`.
"""

from __future__ import annotations

import flatbuffers
import ml_dtypes
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant import ir
from tfquant.errors import ConversionError
from tfquant.frontends.float_fallback import TFLITE_OPTIONS

# Packed 4-bit weights: IR tensors of this dtype hold int8 values in [-8, 7].
INT4 = np.dtype(ml_dtypes.int4)

_TENSOR_TYPES = {
    INT4: schema.TensorType.INT4,
    np.dtype(np.float32): schema.TensorType.FLOAT32,
    np.dtype(np.float16): schema.TensorType.FLOAT16,
    np.dtype(np.int32): schema.TensorType.INT32,
    np.dtype(np.int64): schema.TensorType.INT64,
    np.dtype(np.int8): schema.TensorType.INT8,
    np.dtype(np.uint8): schema.TensorType.UINT8,
    np.dtype(np.int16): schema.TensorType.INT16,
}

_ACTIVATIONS = {
    "NONE": schema.ActivationFunctionType.NONE,
    "RELU": schema.ActivationFunctionType.RELU,
    "RELU6": schema.ActivationFunctionType.RELU6,
}

_PADDING = {"SAME": schema.Padding.SAME, "VALID": schema.Padding.VALID}


def _act(op: ir.Op) -> int:
    return _ACTIVATIONS[op.options.get("fused_activation", "NONE")]


def _conv_options(op):
    o = schema.Conv2DOptionsT()
    o.padding = _PADDING[op.options["padding"]]
    o.strideH, o.strideW = op.options["stride"]
    o.dilationHFactor, o.dilationWFactor = op.options.get("dilation", (1, 1))
    o.fusedActivationFunction = _act(op)
    return schema.BuiltinOptions.Conv2DOptions, o


def _depthwise_options(op):
    o = schema.DepthwiseConv2DOptionsT()
    o.padding = _PADDING[op.options["padding"]]
    o.strideH, o.strideW = op.options["stride"]
    o.dilationHFactor, o.dilationWFactor = op.options.get("dilation", (1, 1))
    o.depthMultiplier = op.options["depth_multiplier"]
    o.fusedActivationFunction = _act(op)
    return schema.BuiltinOptions.DepthwiseConv2DOptions, o


def _fully_connected_options(op):
    o = schema.FullyConnectedOptionsT()
    o.fusedActivationFunction = _act(op)
    o.keepNumDims = bool(op.options.get("keep_num_dims", False))
    o.asymmetricQuantizeInputs = bool(op.options.get("asymmetric_quantize_inputs", False))
    return schema.BuiltinOptions.FullyConnectedOptions, o


def _pool_options(op):
    o = schema.Pool2DOptionsT()
    o.padding = _PADDING[op.options["padding"]]
    o.strideH, o.strideW = op.options["stride"]
    o.filterHeight, o.filterWidth = op.options["filter"]
    o.fusedActivationFunction = _act(op)
    return schema.BuiltinOptions.Pool2DOptions, o


def _binary_options(options_class, options_type):
    def build(op):
        o = options_class()
        o.fusedActivationFunction = _act(op)
        if hasattr(o, "potScaleInt16"):
            o.potScaleInt16 = False
        return options_type, o
    return build


def _concat_options(op):
    o = schema.ConcatenationOptionsT()
    o.axis = op.options["axis"]
    return schema.BuiltinOptions.ConcatenationOptions, o


def _mean_options(op):
    o = schema.ReducerOptionsT()
    o.keepDims = bool(op.options.get("keep_dims", False))
    return schema.BuiltinOptions.ReducerOptions, o


def _softmax_options(op):
    o = schema.SoftmaxOptionsT()
    o.beta = float(op.options.get("beta", 1.0))
    return schema.BuiltinOptions.SoftmaxOptions, o


def _leaky_relu_options(op):
    o = schema.LeakyReluOptionsT()
    o.alpha = float(op.options["alpha"])
    return schema.BuiltinOptions.LeakyReluOptions, o


def _simple(options_class, options_type):
    return lambda op: (options_type, options_class())


def _no_options(op):
    return schema.BuiltinOptions.NONE, None


_OPTIONS = {
    "CONV_2D": _conv_options,
    "DEPTHWISE_CONV_2D": _depthwise_options,
    "FULLY_CONNECTED": _fully_connected_options,
    "MAX_POOL_2D": _pool_options,
    "AVERAGE_POOL_2D": _pool_options,
    "ADD": _binary_options(schema.AddOptionsT, schema.BuiltinOptions.AddOptions),
    "SUB": _binary_options(schema.SubOptionsT, schema.BuiltinOptions.SubOptions),
    "MUL": _binary_options(schema.MulOptionsT, schema.BuiltinOptions.MulOptions),
    "CONCATENATION": _concat_options,
    "MEAN": _mean_options,
    "SOFTMAX": _softmax_options,
    "LEAKY_RELU": _leaky_relu_options,
    "RESHAPE": _no_options,
    "PAD": _simple(schema.PadOptionsT, schema.BuiltinOptions.PadOptions),
    "HARD_SWISH": _simple(schema.HardSwishOptionsT, schema.BuiltinOptions.HardSwishOptions),
    "QUANTIZE": _simple(schema.QuantizeOptionsT, schema.BuiltinOptions.QuantizeOptions),
    "DEQUANTIZE": _no_options,
    "PRELU": _no_options,
    "LOGISTIC": _no_options,
    "TANH": _no_options,
    "RELU": _no_options,
    "RELU6": _no_options,
}

SUPPORTED_OPS = tuple(sorted(_OPTIONS))


def op_version(op: ir.Op, graph: ir.Graph) -> int:
    """The lowest operator version that covers what this op uses (tensor types, options).

    The numbers are those TF 2.21's TFLiteConverter writes for the same ops and types
    (measured; tests/test_end_to_end.py compares them), all resolvable by tflite-runtime 2.14.
    """
    def dtype(i, outputs=False):
        names = op.outputs if outputs else op.inputs
        return graph.tensors[names[i]].dtype if i < len(names) and names[i] else None

    x, w, y = dtype(0), dtype(1), dtype(0, outputs=True)
    int8, int16, f32 = np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.float32)
    hybrid = x == f32 and w == int8
    if op.type == "CONV_2D":
        if x == int16:
            return 4
        if hybrid:
            return 5 if graph.tensors[op.inputs[1]].quant.scale.size > 1 else 2
        return 3 if x == int8 else 1
    if op.type == "DEPTHWISE_CONV_2D":
        dilated = tuple(op.options.get("dilation", (1, 1))) != (1, 1)
        if x == int16:
            return 5
        if hybrid:
            return 6 if graph.tensors[op.inputs[1]].quant.scale.size > 1 else 4
        if x == int8:
            return 3
        return 2 if dilated else 1
    if op.type == "FULLY_CONNECTED":
        if x == int16:
            return 7
        if hybrid:
            return 9 if op.options.get("asymmetric_quantize_inputs") else 3
        if op.options.get("keep_num_dims"):
            return 5
        return 4 if x == int8 else 1
    if op.type == "QUANTIZE":
        return 2 if x in (int8, np.dtype(np.uint8)) else 1
    if op.type == "DEQUANTIZE":
        if x == np.dtype(np.float16):
            return 3
        return 2 if x in (int8, int16) else 1
    if op.type in ("RESHAPE", "HARD_SWISH", "PRELU"):
        return 1
    if op.type == "LEAKY_RELU":  # TFLiteConverter writes 1 for int8 too
        return 2 if x == int16 else 1
    if op.type == "MUL" and x == int16:
        return 4
    if x == int16 or y == int16:
        return 3
    if x == int8 or y == int8:
        return 2
    return 1


class _ModelBuilder(flatbuffers.Builder):
    """A flatbuffer builder that
    - aligns every byte vector (the constant buffers) to 16 bytes, as TFLite's converter does,
      so kernels may read int32/float weights through aligned pointers;
    - writes each distinct quantization vector (scales, zero points) once and lets every
      tensor that uses it point at it. Per-channel zero points are all-zero vectors shared by
      a layer's weights and bias (and by layers of equal width), which takes two thirds of the
      per-channel overhead out of the file; the format allows shared references."""

    def __init__(self, size):
        super().__init__(size)
        self._shared = {}

    def StartVector(self, elemSize, numElems, alignment):  # noqa: N802 (flatbuffers API)
        if elemSize == 1 and numElems >= 16:
            alignment = max(alignment, 16)
        return super().StartVector(elemSize, numElems, alignment)

    def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers API)
        if x.dtype not in (np.float32, np.int64):
            return super().CreateNumpyVector(x)
        key = (x.dtype.str, x.tobytes())
        if key not in self._shared:
            self._shared[key] = super().CreateNumpyVector(x)
        return self._shared[key]


def tensor_index(graph: ir.Graph) -> dict:
    """IR tensor name -> flatbuffer tensor index (the writer's ordering)."""
    return {name: i for i, name in enumerate(graph.tensors)}


def _quantization(tensor: ir.Tensor):
    if tensor.quant is None:
        return None
    q = schema.QuantizationParametersT()
    q.scale = np.asarray(tensor.quant.scale, np.float32)
    q.zeroPoint = np.asarray(tensor.quant.zero_point, np.int64)
    q.quantizedDimension = int(tensor.quant.axis or 0)
    return q


def _buffer_bytes(tensor: ir.Tensor) -> np.ndarray:
    """A constant's bytes; INT4 tensors pack two values per byte, the even element in the low
    nibble (TFLite's packed int4 layout)."""
    if tensor.dtype == INT4:
        values = np.asarray(tensor.data, np.int8).reshape(-1)
        if values.size % 2:
            values = np.append(values, np.int8(0))
        packed = (values[0::2] & 0x0F) | ((values[1::2] & 0x0F) << 4)
        return packed.astype(np.uint8)
    return np.frombuffer(np.ascontiguousarray(tensor.data).tobytes(), np.uint8)


def _tensor(tensor: ir.Tensor, buffer: int):
    if tensor.dtype not in _TENSOR_TYPES:
        raise ConversionError(f"tensor {tensor.name!r} has dtype {tensor.dtype}, which the "
                              "TFLite writer does not support")
    t = schema.TensorT()
    t.name = tensor.name
    t.type = _TENSOR_TYPES[tensor.dtype]
    t.shape = [1 if d < 0 else int(d) for d in tensor.shape]
    if any(d < 0 for d in tensor.shape):
        t.shapeSignature = [int(d) for d in tensor.shape]
    t.buffer = buffer
    t.quantization = _quantization(tensor)
    return t


def write_tflite(graph: ir.Graph, description: str = "tfquant") -> bytes:
    """Serialize `graph` into TFLite flatbuffer bytes."""
    graph.validate()
    index = tensor_index(graph)
    model = schema.ModelT()
    model.version = 3
    model.description = description
    model.buffers = [schema.BufferT()]  # buffer 0 is the empty sentinel

    subgraph = schema.SubGraphT()
    subgraph.name = "main"
    subgraph.tensors = []
    for tensor in graph.tensors.values():
        buffer = 0
        if tensor.is_const:
            data = schema.BufferT()
            data.data = _buffer_bytes(tensor)
            model.buffers.append(data)
            buffer = len(model.buffers) - 1
        subgraph.tensors.append(_tensor(tensor, buffer))
    subgraph.inputs = [index[n] for n in graph.inputs]
    subgraph.outputs = [index[n] for n in graph.outputs]

    opcodes, opcode_index = [], {}
    subgraph.operators = []
    for op in graph.ops:
        opaque = op.options.get(TFLITE_OPTIONS)
        if op.type not in _OPTIONS and opaque is None:
            raise ConversionError(f"op {op.label} has no TFLite equivalent in this writer")
        code = getattr(schema.BuiltinOperator, op.type)
        version = op_version(op, graph)
        if opaque:  # options carried from a source .tflite: its version, or more for the types
            version = max(opaque[2], version)
        key = (code, version)
        if key not in opcode_index:
            oc = schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
            oc.version = key[1]
            opcode_index[key] = len(opcodes)
            opcodes.append(oc)
        operator = schema.OperatorT()
        operator.opcodeIndex = opcode_index[key]
        operator.inputs = [index[n] if n else -1 for n in op.inputs]
        operator.outputs = [index[n] for n in op.outputs]
        if opaque:
            operator.builtinOptionsType, operator.builtinOptions = opaque[0], opaque[1]
        else:
            operator.builtinOptionsType, operator.builtinOptions = _OPTIONS[op.type](op)
        subgraph.operators.append(operator)
    model.operatorCodes = opcodes
    model.subgraphs = [subgraph]

    model.signatureDefs = [_signature(graph, index)]
    for name, value in (getattr(graph, "metadata", None) or {}).items():
        data = schema.BufferT()  # metadata carried over from a source .tflite, byte for byte
        data.data = np.frombuffer(bytes(value), np.uint8)
        model.buffers.append(data)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata = (model.metadata or []) + [entry]

    builder = _ModelBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _signature(graph: ir.Graph, index: dict):
    """The serving signature: IR tensor names, or the names a source model's signature gave
    the graph's inputs and outputs (`graph.signature`, set by the TFLite frontend: its key and
    one name per input and per output, by position)."""
    source = getattr(graph, "signature", None) or {}
    signature = schema.SignatureDefT()
    signature.signatureKey = source.get("key", "serving_default")
    signature.subgraphIndex = 0
    signature.inputs = [_tensor_map(n, index, source.get("inputs", ()), i)
                        for i, n in enumerate(graph.inputs)]
    signature.outputs = [_tensor_map(n, index, source.get("outputs", ()), i)
                         for i, n in enumerate(graph.outputs)]
    return signature


def _tensor_map(name, index, aliases=(), position=0):
    m = schema.TensorMapT()
    m.name = aliases[position] if position < len(aliases) else name
    m.tensorIndex = index[name]
    return m
