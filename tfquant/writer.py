"""TFLite writer: serializes an IR graph (float or quantized) into a flatbuffer.

Uses the flatbuffer object API that ships with ai-edge-litert (schema_py_generated). The graph
must already hold final tensor types, quantization params and constant data: this module only
translates, it makes no quantization decision. Tensor i of the flatbuffer is the i-th tensor of
`graph.tensors`, so tools can map IR names to interpreter tensor indices with `tensor_index`.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant import flatbuffer, ir, ops, spec, vocabulary
from tfquant.errors import ConversionError
from tfquant.ops import common

# Packed 4-bit weights: IR tensors of this dtype hold int8 values in [-8, 7].
INT4 = spec.INT4

_TENSOR_TYPES = {dtype: code for code, dtype in flatbuffer.NUMPY_TYPES.items()}
_TENSOR_TYPES[INT4] = schema.TensorType.INT4


def _types(op: ir.Op, graph: ir.Graph) -> ops.OpTypes:
    def dtype(names, i):
        return graph.tensors[names[i]].dtype if i < len(names) and names[i] else None

    weights = graph.tensors[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] else None
    per_channel = bool(weights is not None and weights.quant is not None
                       and weights.quant.scale.size > 1)
    return ops.OpTypes(dtype(op.inputs, 0), dtype(op.inputs, 1), dtype(op.outputs, 0),
                       per_channel, op.options, op.source_version)


def op_version(op: ir.Op, graph: ir.Graph) -> int:
    """The lowest operator version that covers what this op uses (tensor types, options): the
    op record's rule (the numbers TF 2.21's TFLiteConverter writes, all resolvable by
    tflite-runtime 2.14); ops carried opaquely from a source .tflite keep their version."""
    types = _types(op, graph)
    if isinstance(op.options, vocabulary.CarriedOptions):
        return common.version_from_source(types)
    return ops.get(op.type).version(types)


def _options(op: ir.Op):
    if isinstance(op.options, vocabulary.CarriedOptions):
        return op.options.options_type, op.options.options
    record = ops.REGISTRY.get(op.type)
    if record is None or record.pseudo or not record.write:
        raise ConversionError(f"op {op.label} has no TFLite equivalent in this writer")
    return record.write(op.options)


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
    return np.ascontiguousarray(tensor.data).reshape(-1).view(np.uint8)


def _tensor(tensor: ir.Tensor, buffer: int):
    if tensor.dtype not in _TENSOR_TYPES:
        raise ConversionError(f"tensor {tensor.name!r} has dtype {tensor.dtype}, which the "
                              "TFLite writer does not support")
    t = schema.TensorT()
    t.name = tensor.name
    t.type = _TENSOR_TYPES[tensor.dtype]
    t.shape = [1 if d < 0 else int(d) for d in tensor.shape]
    t.isVariable = bool(tensor.variable)
    if any(d < 0 for d in tensor.shape):
        t.shapeSignature = [int(d) for d in tensor.shape]
    t.buffer = buffer
    t.quantization = _quantization(tensor)
    return t


# Constants of at least this many bytes with equal contents share one buffer: weights that
# several ops read (unshared per op for their params) are written once when their codes agree.
_SHARED_BUFFER_BYTES = 1024


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
    shared = {}  # (dtype, byte count) -> [(buffer, bytes)] of large constants written
    constant_bytes = 0
    for tensor in graph.tensors.values():
        buffer = 0
        if tensor.is_const:
            raw = _buffer_bytes(tensor)
            same_size = shared.setdefault((tensor.dtype.str, raw.size), []) \
                if raw.size >= _SHARED_BUFFER_BYTES else None
            buffer = next((b for b, other in same_size or () if np.array_equal(raw, other)), 0)
            if not buffer:
                data = schema.BufferT()
                data.data = raw
                model.buffers.append(data)
                buffer = len(model.buffers) - 1
                constant_bytes += raw.size
                if same_size is not None:
                    same_size.append((buffer, raw))
        subgraph.tensors.append(_tensor(tensor, buffer))
    subgraph.inputs = [index[n] for n in graph.inputs]
    subgraph.outputs = [index[n] for n in graph.outputs]

    opcodes, opcode_index = [], {}
    subgraph.operators = []
    for op in graph.ops:
        options_type, options = _options(op)
        key = (getattr(schema.BuiltinOperator, op.type), op_version(op, graph))
        if key not in opcode_index:
            oc = schema.OperatorCodeT()
            oc.builtinCode = key[0]
            oc.deprecatedBuiltinCode = min(key[0],
                                           schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
            oc.version = key[1]
            opcode_index[key] = len(opcodes)
            opcodes.append(oc)
        operator = schema.OperatorT()
        operator.opcodeIndex = opcode_index[key]
        operator.inputs = [index[n] if n else -1 for n in op.inputs]
        operator.outputs = [index[n] for n in op.outputs]
        operator.builtinOptionsType, operator.builtinOptions = options_type, options
        subgraph.operators.append(operator)
    model.operatorCodes = opcodes
    model.subgraphs = [subgraph]

    model.signatureDefs = [_signature(graph, index)]
    for name, value in graph.metadata.items():
        data = schema.BufferT()  # metadata carried over from a source .tflite, byte for byte
        data.data = np.frombuffer(bytes(value), np.uint8)
        model.buffers.append(data)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata = (model.metadata or []) + [entry]

    # Sized for the constants up front: growing a builder copies everything written so far.
    builder = _ModelBuilder(constant_bytes + 64 * len(graph.tensors) + (1 << 20))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _signature(graph: ir.Graph, index: dict):
    """The serving signature: IR tensor names, or the names a source model's signature gave
    the graph's inputs and outputs (graph.signature, set by the TFLite frontend)."""
    source = graph.signature or ir.Signature()
    signature = schema.SignatureDefT()
    signature.signatureKey = source.key
    signature.subgraphIndex = 0
    signature.inputs = [_tensor_map(n, index, source.inputs, i)
                        for i, n in enumerate(graph.inputs)]
    signature.outputs = [_tensor_map(n, index, source.outputs, i)
                         for i, n in enumerate(graph.outputs)]
    return signature


def _tensor_map(name, index, aliases=(), position=0):
    m = schema.TensorMapT()
    m.name = aliases[position] if position < len(aliases) else name
    m.tensorIndex = index[name]
    return m
