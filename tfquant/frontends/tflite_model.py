"""TFLite frontend: a float .tflite flatbuffer (bytes or a path) -> the graph IR.

Reads models written by TFLiteConverter, by other exporters, or by tfquant itself (float mode):
- fp32 constants; fp16 (or int8) constants behind DEQUANTIZE and sparse constants behind
  DENSIFY are folded into fp32 constants;
- the ops tfquant quantizes become IR ops with the options the passes, the quantizer and the
  writer use (data-movement ops, TRANSPOSE / SLICE / RESIZE_*, carry their TFLite options as
  read); every other builtin op is kept as an opaque float op (float_fallback's
  representation: TFLite options preserved, marked `float_fallback`) and listed in
  `graph.float_layers`;
- RESHAPE / SQUEEZE / EXPAND_DIMS whose target shape is computed at run time (the
  SHAPE / STRIDED_SLICE / PACK chains of dynamic-batch models) take the static shape signature
  of their output, with -1 for the batch, as the Keras frontend does;
- the signature def of the main subgraph and the model metadata are carried on the graph
  (`graph.signature`, `graph.metadata`) and written back by the writer.

Robustness: the bytes are untrusted. Any malformed, truncated or inconsistent flatbuffer raises
ModelLoadError with a one-line cause. Work is bounded by the buffer size: the number of tables
the parser may visit, and the bytes constants may expand to, are checked before they are read.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant import ir
from tfquant.errors import ModelLoadError
from tfquant.frontends.float_fallback import FLOAT_FALLBACK, TFLITE_OPTIONS
from tfquant.frontends.tflite_sparsity import SparsityError, densify
from tfquant.op_constraints import OP_CONSTRAINTS

log = logging.getLogger("tfquant")

_NUMPY_TYPES = {
    schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16,
    schema.TensorType.INT32: np.int32, schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT64: np.int64, schema.TensorType.BOOL: np.bool_,
    schema.TensorType.INT16: np.int16, schema.TensorType.INT8: np.int8,
    schema.TensorType.FLOAT64: np.float64,
}
_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
                  if not k.startswith("_") and isinstance(v, int)}
_ACTIVATIONS = {schema.ActivationFunctionType.NONE: "NONE",
                schema.ActivationFunctionType.RELU: "RELU",
                schema.ActivationFunctionType.RELU6: "RELU6"}
_PADDING = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}
# Metadata that TFLiteConverter computes about its own conversion; it describes the float
# model, not the one tfquant writes, so it is not carried over.
CONVERTER_METADATA = ("min_runtime_version", "CONVERSION_METADATA", "reduced_precision_support")
# Largest constant (elements) a model may expand to through DENSIFY, relative to its size.
_MAX_EXPANSION = 64
_MIN_EXPANSION_ELEMENTS = 1 << 20


class _Unsupported(Exception):
    """The op is valid TFLite but tfquant keeps it as an opaque float op (the reason)."""


def load_tflite_bytes(model) -> bytes:
    """The flatbuffer bytes of `model` (bytes, bytearray, memoryview or a .tflite path)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise ModelLoadError(f"model file {path!r} does not exist")
    with open(path, "rb") as f:
        return f.read()


def is_tflite_model(model) -> bool:
    """True for flatbuffer bytes and for paths ending in .tflite."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return True
    return isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".tflite")


def from_tflite(model) -> ir.Graph:
    """Build the IR of a float TFLite model (bytes or a .tflite path).

    Raises ModelLoadError for anything that is not a well-formed float TFLite model tfquant can
    express (corrupt bytes, out-of-range indices or offsets, wrong buffer sizes, no subgraph,
    custom ops, control flow, already-quantized models).
    """
    data = load_tflite_bytes(model)
    try:
        return _Importer(data).build()
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001  untrusted bytes: any parser failure is a load error
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelLoadError(f"corrupt TFLite flatbuffer ({type(e).__name__}"
                             f"{': ' + message[:200] if message else ''})") from None


# -- parsing under a budget ---------------------------------------------------------------------

def _check_structure(data: bytes):
    """Check the header and count the tables the object API will visit, before it visits
    them: a crafted file can point many vector entries at the same table, which would make
    unpacking take time quadratic (or worse) in its size. A well-formed file has at most one
    table per 4 bytes."""
    if len(data) < 16:
        raise ModelLoadError(f"not a TFLite model: {len(data)} bytes is too short")
    if data[4:8] != b"TFL3":
        raise ModelLoadError("not a TFLite model: the flatbuffer identifier is not 'TFL3'")
    root = int.from_bytes(data[:4], "little")
    if not 8 <= root <= len(data) - 4:
        raise ModelLoadError("corrupt TFLite flatbuffer: root table offset out of range")
    budget = [len(data) // 4 + 64]

    def spend(count: int):
        if count < 0:
            raise ModelLoadError("corrupt TFLite flatbuffer: negative vector length")
        budget[0] -= count
        if budget[0] < 0:
            raise ModelLoadError("corrupt TFLite flatbuffer: more tables than the file can "
                                 "hold (overlapping or repeated structures)")

    model = schema.Model.GetRootAs(data, 0)
    spend(model.SubgraphsLength())
    for i in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(i)
        spend(subgraph.TensorsLength())
        spend(subgraph.OperatorsLength())
        for j in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(j)
            spend(tensor.VariantTensorsLength())
            sparsity = tensor.Sparsity()
            if sparsity is not None:
                spend(sparsity.DimMetadataLength())
    for length in (model.OperatorCodesLength(), model.BuffersLength(),
                   model.MetadataLength(), model.SignatureDefsLength()):
        spend(length)
    for i in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(i)
        spend(signature.InputsLength())
        spend(signature.OutputsLength())


def _name(value) -> str:
    """A tensor / signature / metadata name, decoded; control characters (from a corrupt or
    hostile file) become '?' so that names are safe in one-line messages."""
    if value is None:
        return ""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)


def _ints(values) -> list:
    return [] if values is None else [int(v) for v in values]


class _Importer:
    def __init__(self, data: bytes):
        self.data = data
        self.graph = ir.Graph()
        self.names = {}  # flatbuffer tensor index -> IR tensor name
        self.const_budget = max(_MIN_EXPANSION_ELEMENTS, _MAX_EXPANSION * len(data))
        self.float_ops = []
        self.sparse = set()  # indices of sparse constant tensors

    # -- top level ------------------------------------------------------------------------------

    def build(self) -> ir.Graph:
        _check_structure(self.data)
        self.model = schema.ModelT.InitFromPackedBuf(self.data, 0)
        if not self.model.subgraphs:
            raise ModelLoadError("TFLite model has no subgraph")
        self.subgraph = self.model.subgraphs[0]
        self.tensors = self.subgraph.tensors or []
        self.buffers = self.model.buffers or []
        graph = self.graph
        for index in range(len(self.tensors)):
            self._declare(index)
        self.indices = {name: index for index, name in self.names.items()}
        graph.inputs = [self._tensor_name(i, "subgraph input") for i in
                        _ints(self.subgraph.inputs)]
        graph.outputs = [self._tensor_name(i, "subgraph output") for i in
                         _ints(self.subgraph.outputs)]
        if not graph.inputs or not graph.outputs:
            raise ModelLoadError("TFLite model's main subgraph has no inputs or no outputs")
        if len(set(graph.inputs)) != len(graph.inputs):
            raise ModelLoadError("TFLite model lists a subgraph input twice")
        for name in graph.inputs:
            tensor = graph.tensors[name]
            if tensor.is_const or tensor.dtype != np.float32:
                raise ModelLoadError(f"model input {name!r} has dtype {tensor.dtype}; tfquant "
                                     "converts models with float32 inputs")
        sparse = {self.names[i] for i in self.sparse}
        available = set(graph.inputs) | {n for n, t in graph.tensors.items() if t.is_const} | \
            sparse
        for position, operator in enumerate(self.subgraph.operators or []):
            self._operator(position, operator, available)
        for name in graph.outputs:
            if name not in available:
                raise ModelLoadError(f"subgraph output {name!r} is never computed")
            if name in graph.inputs or graph.tensors[name].is_const:
                raise ModelLoadError(f"subgraph output {name!r} is an input or a constant; "
                                     "tfquant converts models whose outputs are computed")
        graph.prune()
        graph.validate()
        graph.signature = self._signature()
        graph.metadata = self._metadata()
        kept = {id(op) for op in graph.ops}
        graph.float_layers = [(label, reason) for op, label, reason in self.float_ops
                              if id(op) in kept]
        for label, reason in graph.float_layers:
            log.info("kept in float: %s (%s)", label, reason)
        return graph

    # -- tensors --------------------------------------------------------------------------------

    def _tensor_name(self, index: int, where: str) -> str:
        if not 0 <= index < len(self.tensors):
            raise ModelLoadError(f"{where} refers to tensor {index}, but the subgraph has "
                                 f"{len(self.tensors)} tensors")
        return self.names[index]

    def _declare(self, index: int):
        t = self.tensors[index]
        dtype = _NUMPY_TYPES.get(t.type)
        label = f"tensor {index} ({_name(t.name)!r})"
        if dtype is None:
            raise ModelLoadError(f"{label} has tensor type {t.type}, which tfquant does not "
                                 "read")
        shape = _ints(t.shape)
        signature = _ints(t.shapeSignature)
        if signature and len(signature) == len(shape):
            shape = signature
        if any(d < -1 for d in shape) or len(shape) > 8:
            raise ModelLoadError(f"{label} has an invalid shape {shape}")
        if t.isVariable:
            raise ModelLoadError(f"{label} is a variable tensor (stateful model); tfquant "
                                 "converts stateless models")
        values = self._buffer_values(index, t, dtype, shape)
        name = _name(t.name) or f"tensor_{index}"
        if values is not None:
            self.names[index] = self.graph.add_const(name, values, dtype)
        else:
            if t.quantization is not None and t.quantization.scale is not None and \
                    len(t.quantization.scale) and dtype in (np.int8, np.uint8, np.int16):
                raise ModelLoadError(f"{label} is a quantized activation: the model is "
                                     "already quantized; give tfquant the float model")
            self.names[index] = self.graph.add_tensor(name, shape, dtype)

    def _buffer_values(self, index, t, dtype, shape):
        if not 0 <= t.buffer < max(len(self.buffers), 1):
            raise ModelLoadError(f"tensor {index} refers to buffer {t.buffer}, but the model "
                                 f"has {len(self.buffers)} buffers")
        if t.buffer == 0 or not self.buffers:
            return None
        raw = self._buffer_bytes(t.buffer, f"tensor {index}")
        if not raw:
            return None
        if t.sparsity is not None:
            self.sparse.add(index)  # a sparse constant: DENSIFY reads it (_densify)
            return None
        if any(d < 0 for d in shape):
            raise ModelLoadError(f"constant tensor {index} has an unknown dimension")
        count = math.prod(shape)
        if count * np.dtype(dtype).itemsize != len(raw):
            raise ModelLoadError(f"tensor {index} ({_name(t.name)!r}): buffer has {len(raw)} "
                                 f"bytes, shape {shape} of {np.dtype(dtype).name} needs "
                                 f"{count * np.dtype(dtype).itemsize}")
        return np.frombuffer(raw, dtype).reshape(shape).copy()

    def _buffer_bytes(self, index: int, user: str) -> bytes:
        """The bytes of buffer `index`: inline, or stored after the flatbuffer at an offset
        (models over 2 GB), checked against the file size."""
        buffer = self.buffers[index]
        if buffer.offset > 1:
            if buffer.offset + buffer.size > len(self.data):
                raise ModelLoadError(f"buffer {index} ({user}) lies outside the file: offset "
                                     f"{buffer.offset}, size {buffer.size}, file "
                                     f"{len(self.data)} bytes")
            return self.data[buffer.offset:buffer.offset + buffer.size]
        if buffer.data is None:
            return b""
        return np.asarray(buffer.data, np.uint8).tobytes()

    # -- operators ------------------------------------------------------------------------------

    def _operator(self, position: int, operator, available: set):
        codes = self.model.operatorCodes or []
        if not 0 <= operator.opcodeIndex < len(codes):
            raise ModelLoadError(f"operator {position} has opcode index "
                                 f"{operator.opcodeIndex}, but the model has {len(codes)}")
        code = codes[operator.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        op_type = _BUILTIN_NAMES.get(builtin)
        if op_type is None or builtin == schema.BuiltinOperator.CUSTOM:
            custom = _name(code.customCode) or f"builtin code {builtin}"
            raise ModelLoadError(f"operator {position} is custom or unknown op {custom!r}; "
                                 "tfquant converts models of builtin TFLite ops")
        inputs = [self._tensor_name(i, f"operator {position} ({op_type})") if i >= 0 else ""
                  for i in _ints(operator.inputs)]
        outputs = [self._tensor_name(i, f"operator {position} ({op_type})")
                   for i in _ints(operator.outputs)]
        label = f"{op_type} ({outputs[0] if outputs else position})"
        if not outputs or len(set(outputs)) != len(outputs):
            raise ModelLoadError(f"operator {label} has no outputs or writes one twice")
        for name in inputs:
            if name and name not in available:
                raise ModelLoadError(f"operator {label} reads {name!r} before it is computed "
                                     "(operators out of order or a cycle)")
        for name in outputs:
            if name in available:
                raise ModelLoadError(f"operator {label} writes {name!r}, which is an input, a "
                                     "constant or already computed")
        if operator.builtinOptions2Type or _ints(operator.intermediates):
            raise ModelLoadError(f"operator {label} uses options tfquant cannot carry "
                                 "(StableHLO options or intermediates)")
        sparse = [n for n in inputs if n and self.indices[n] in self.sparse]
        if sparse and (op_type != "DENSIFY" or len(inputs) != 1):
            raise ModelLoadError(f"operator {label} reads sparse tensor {sparse[0]!r}; only "
                                 "DENSIFY may read sparse constants")
        if op_type in ("DEQUANTIZE", "DENSIFY") and len(inputs) == 1 and len(outputs) == 1 \
                and (sparse or self.graph.tensors[inputs[0]].is_const):
            self._fold_constant(op_type, inputs, outputs, label)
        else:
            options = operator.builtinOptions
            try:
                converted = _CONVERTERS.get(op_type, _opaque)(self, inputs, outputs, options,
                                                               label)
            except _Unsupported as reason:
                converted = None
                self._add_opaque(op_type, inputs, outputs, operator, code, label, str(reason))
            if converted is not None:
                new_type, new_inputs, new_options = converted
                if TFLITE_OPTIONS in new_options:  # carried as read: keep the source version
                    new_options[TFLITE_OPTIONS] += (max(int(code.version), 1),)
                self.graph.add_op(new_type, new_inputs, outputs, new_options, (label,))
        available.update(outputs)

    def _add_opaque(self, op_type, inputs, outputs, operator, code, label, reason):
        if op_type in ("WHILE", "IF", "CALL_ONCE", "CALL") or \
                op_type.startswith("STABLEHLO_"):
            raise ModelLoadError(f"operator {label} needs control flow or StableHLO, which "
                                 "tfquant does not convert")
        options = {TFLITE_OPTIONS: (operator.builtinOptionsType, operator.builtinOptions,
                                    max(int(code.version), 1)),
                   FLOAT_FALLBACK: True}
        op = self.graph.add_op(op_type, inputs, outputs, options, (label,))
        self.float_ops.append((op, label, reason))

    def _fold_constant(self, op_type, inputs, outputs, label):
        if op_type == "DENSIFY":
            values = self._densify(inputs[0], label)
        else:
            values = self._dequantize(inputs[0], label)
        out = self.graph.tensors[outputs[0]]
        if out.dtype != np.float32 and op_type == "DEQUANTIZE":
            raise ModelLoadError(f"{label} dequantizes to {out.dtype}, not float32")
        expected = tuple(out.shape)
        if tuple(values.shape) != expected:
            raise ModelLoadError(f"{label}: folded constant has shape {values.shape}, the "
                                 f"output tensor {expected}")
        out.data = np.asarray(values, out.dtype)

    def _dequantize(self, name, label):
        tensor = self.graph.tensors[name]
        index = self._index_of(name)
        values = tensor.data
        if tensor.dtype == np.float16:
            return values.astype(np.float32)
        if tensor.dtype in (np.int8, np.uint8, np.int16):
            q = self.tensors[index].quantization
            scale = np.asarray([] if q is None or q.scale is None else q.scale, np.float64)
            zero = np.asarray([] if q is None or q.zeroPoint is None else q.zeroPoint,
                              np.float64)
            if scale.size == 0:
                raise ModelLoadError(f"{label}: constant {name!r} has no quantization scale")
            if zero.size == 0:
                zero = np.zeros_like(scale)
            if scale.size > 1:
                axis = int(q.quantizedDimension)
                if not 0 <= axis < values.ndim or values.shape[axis] != scale.size or \
                        zero.size != scale.size:
                    raise ModelLoadError(f"{label}: per-channel params of {name!r} do not "
                                         "match its shape")
                shape = [1] * values.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            elif zero.size != 1:
                raise ModelLoadError(f"{label}: zero points of {name!r} do not match scales")
            return ((values.astype(np.float64) - zero) * scale).astype(np.float32)
        if tensor.dtype == np.float32:
            return values
        raise ModelLoadError(f"{label}: cannot dequantize a {tensor.dtype} constant")

    def _index_of(self, name):
        return self.indices[name]

    # -- sparse constants -----------------------------------------------------------------------

    def _densify(self, name, label):
        """Dense values of a sparse constant (tflite_sparsity), within the expansion budget."""
        t = self.tensors[self._index_of(name)]
        dtype = self.graph.tensors[name].dtype
        if t.sparsity is None:
            if self.graph.tensors[name].data is None:
                raise ModelLoadError(f"{label}: input {name!r} is neither dense nor sparse")
            return self.graph.tensors[name].data
        shape = _ints(t.shapeSignature) or _ints(t.shape)
        if not shape or any(d <= 0 for d in shape):
            raise ModelLoadError(f"{label}: sparse constant {name!r} has shape {shape}")
        dense_count = math.prod(shape)
        if dense_count > self.const_budget:
            raise ModelLoadError(f"{label}: sparse constant {name!r} would expand to "
                                 f"{dense_count} elements, more than this file can describe")
        self.const_budget -= dense_count
        raw = self._buffer_bytes(t.buffer, name)
        if len(raw) % np.dtype(dtype).itemsize:
            raise ModelLoadError(f"{label}: sparse buffer of {name!r} has a partial element")
        try:
            return densify(np.frombuffer(raw, dtype), shape, t.sparsity)
        except SparsityError as e:
            raise ModelLoadError(f"{label}: sparse constant {name!r}: {e}") from None

    # -- signature and metadata -----------------------------------------------------------------

    def _signature(self):
        graph = self.graph
        for signature in self.model.signatureDefs or []:
            if signature.subgraphIndex != 0:
                continue
            aliases = {}
            for side, ios in (("inputs", signature.inputs), ("outputs", signature.outputs)):
                for entry in ios or []:
                    if not 0 <= entry.tensorIndex < len(self.tensors):
                        raise ModelLoadError(f"signature {_name(signature.signatureKey)!r} "
                                             f"refers to tensor {entry.tensorIndex}")
                    aliases[(side, self.names[entry.tensorIndex])] = _name(entry.name)
            return {"key": _name(signature.signatureKey) or "serving_default",
                    "inputs": [aliases.get(("inputs", n), n) for n in graph.inputs],
                    "outputs": [aliases.get(("outputs", n), n) for n in graph.outputs]}
        return None

    def _metadata(self) -> dict:
        kept = {}
        for entry in self.model.metadata or []:
            name = _name(entry.name)
            if not 0 <= entry.buffer < len(self.buffers):
                raise ModelLoadError(f"metadata {name!r} refers to buffer {entry.buffer}, but "
                                     f"the model has {len(self.buffers)} buffers")
            if name in CONVERTER_METADATA:
                continue
            kept[name] = self._buffer_bytes(entry.buffer, f"metadata {name!r}")
        return kept


# -- one converter per op tfquant quantizes ----------------------------------------------------
# Each takes (importer, input names, output names, TFLite options object, label) and returns
# (IR op type, IR inputs, IR options), or raises _Unsupported to keep the op as opaque float.

def _opaque(imp, inputs, outputs, options, label):
    raise _Unsupported("no int8 implementation in tfquant")


def _activation(options) -> str:
    code = getattr(options, "fusedActivationFunction", 0)
    if code not in _ACTIVATIONS:
        raise _Unsupported(f"fused activation {code} (only RELU and RELU6 are quantized)")
    return _ACTIVATIONS[code]


def _padding(options, label) -> str:
    if options.padding not in _PADDING:
        raise ModelLoadError(f"{label}: unknown padding {options.padding}")
    return _PADDING[options.padding]


def _positive(values, what, label) -> tuple:
    values = tuple(int(v) for v in values)
    if any(v < 1 for v in values):
        raise ModelLoadError(f"{label}: {what} {values} must be positive")
    return values


def _require(options, cls, label):
    if options is None:
        return cls()
    if not isinstance(options, cls):
        raise ModelLoadError(f"{label} has options of the wrong type ({type(options).__name__})")
    return options


def _const(imp, name, rank=None, what="weights", label=""):
    tensor = imp.graph.tensors[name] if name else None
    if tensor is None or not tensor.is_const:
        raise _Unsupported(f"{what} are not constant")
    if tensor.dtype != np.float32:
        raise _Unsupported(f"{what} have type {tensor.dtype}")
    if rank is not None and tensor.data.ndim != rank:
        raise ModelLoadError(f"{label}: {what} have rank {tensor.data.ndim}, expected {rank}")
    return tensor


def _activation_input(imp, name, label):
    tensor = imp.graph.tensors[name] if name else None
    if tensor is None:
        raise ModelLoadError(f"{label} has no data input")
    if tensor.is_const:
        raise _Unsupported("its data input is constant")
    if tensor.dtype != np.float32:
        raise _Unsupported(f"its input has type {tensor.dtype}")
    return tensor


def _weighted(imp, inputs, outputs, label, rank, out_axis):
    if len(inputs) not in (2, 3):
        raise ModelLoadError(f"{label} has {len(inputs)} inputs")
    _activation_input(imp, inputs[0], label)
    weights = _const(imp, inputs[1], rank, "weights", label)
    channels = weights.shape[out_axis]
    if len(inputs) == 3 and inputs[2]:
        bias = _const(imp, inputs[2], None, "bias", label)
        if bias.data.size != channels:
            raise ModelLoadError(f"{label}: bias has {bias.data.size} values for "
                                 f"{channels} output channels")
        if bias.data.ndim != 1:
            bias.data = bias.data.reshape(-1)
            bias.shape = bias.data.shape
        bias_name = inputs[2]
    else:
        bias_name = imp.graph.add_const(f"{outputs[0]}/bias", np.zeros(channels, np.float32))
    return [inputs[0], inputs[1], bias_name]


def _conv_2d(imp, inputs, outputs, options, label):
    o = _require(options, schema.Conv2DOptionsT, label)
    new_inputs = _weighted(imp, inputs, outputs, label, 4, 0)
    return "CONV_2D", new_inputs, {
        "padding": _padding(o, label),
        "stride": _positive((o.strideH, o.strideW), "stride", label),
        "dilation": _positive((o.dilationHFactor, o.dilationWFactor), "dilation", label),
        "fused_activation": _activation(o)}


def _depthwise_conv_2d(imp, inputs, outputs, options, label):
    o = _require(options, schema.DepthwiseConv2DOptionsT, label)
    new_inputs = _weighted(imp, inputs, outputs, label, 4, 3)
    weights = imp.graph.tensors[inputs[1]].shape
    in_channels = imp.graph.tensors[inputs[0]].shape[-1:]
    multiplier = int(o.depthMultiplier)
    if in_channels and in_channels[0] > 0 and weights[3] % in_channels[0] == 0:
        multiplier = weights[3] // in_channels[0]  # what the kernels use
    if weights[0] != 1 or multiplier < 1:
        raise ModelLoadError(f"{label}: depthwise weights of shape {weights} do not fit the "
                             "input")
    return "DEPTHWISE_CONV_2D", new_inputs, {
        "padding": _padding(o, label),
        "stride": _positive((o.strideH, o.strideW), "stride", label),
        "dilation": _positive((o.dilationHFactor, o.dilationWFactor), "dilation", label),
        "depth_multiplier": multiplier, "fused_activation": _activation(o)}


def _fully_connected(imp, inputs, outputs, options, label):
    o = _require(options, schema.FullyConnectedOptionsT, label)
    if o.weightsFormat != schema.FullyConnectedOptionsWeightsFormat.DEFAULT:
        raise _Unsupported("shuffled weights format")
    new_inputs = _weighted(imp, inputs, outputs, label, 2, 0)
    x = imp.graph.tensors[inputs[0]]
    out_shape = imp.graph.tensors[outputs[0]].shape
    activation = _activation(o)
    if o.keepNumDims and len(out_shape) > 2:
        # As the Keras frontend: RESHAPE + 2-D FULLY_CONNECTED + RESHAPE (tflite-runtime 2.14
        # computes per-channel keep_num_dims FC wrongly).
        if sum(d < 0 for d in out_shape) > 1:
            raise _Unsupported("keep_num_dims with several unknown dimensions")
        in_features = imp.graph.tensors[inputs[1]].shape[1]
        units = imp.graph.tensors[inputs[1]].shape[0]
        g = imp.graph
        flat_shape = g.add_const(f"{outputs[0]}/flatten_shape",
                                 np.array([-1, in_features], np.int32), np.int32)
        flat = g.add_tensor(f"{outputs[0]}/flatten", (-1, in_features), np.float32)
        g.add_op("RESHAPE", [x.name, flat_shape], [flat], source=(label,))
        fc = g.add_tensor(f"{outputs[0]}/matmul", (-1, units), np.float32)
        g.add_op("FULLY_CONNECTED", [flat] + new_inputs[1:], [fc],
                 {"keep_num_dims": False, "fused_activation": activation}, (label,))
        shape = g.add_const(f"{outputs[0]}/shape", np.array(out_shape, np.int32), np.int32)
        return "RESHAPE", [fc, shape], {}
    return "FULLY_CONNECTED", new_inputs, {"keep_num_dims": bool(o.keepNumDims),
                                           "fused_activation": activation}


def _binary(op_type, cls):
    def convert(imp, inputs, outputs, options, label):
        o = _require(options, cls, label)
        if len(inputs) != 2 or not all(inputs):
            raise ModelLoadError(f"{label} needs two inputs")
        tensors = [imp.graph.tensors[n] for n in inputs]
        if all(t.is_const for t in tensors):
            raise _Unsupported("both operands are constant")
        if any(t.dtype != np.float32 for t in tensors):
            raise _Unsupported("non-float operands")
        return op_type, list(inputs), {"fused_activation": _activation(o)}
    return convert


def _concatenation(imp, inputs, outputs, options, label):
    o = _require(options, schema.ConcatenationOptionsT, label)
    if _activation(o) != "NONE":
        raise _Unsupported("fused activation on CONCATENATION")
    if not inputs or not all(inputs):
        raise ModelLoadError(f"{label} has no inputs")
    for name in inputs:
        _activation_input(imp, name, label)
    rank = len(imp.graph.tensors[outputs[0]].shape)
    if not -rank <= o.axis < rank:
        raise ModelLoadError(f"{label}: axis {o.axis} out of range for rank {rank}")
    return "CONCATENATION", list(inputs), {"axis": int(o.axis) % rank}


def _pool(op_type):
    def convert(imp, inputs, outputs, options, label):
        o = _require(options, schema.Pool2DOptionsT, label)
        if len(inputs) != 1:
            raise ModelLoadError(f"{label} has {len(inputs)} inputs")
        _activation_input(imp, inputs[0], label)
        return op_type, list(inputs), {
            "padding": _padding(o, label),
            "stride": _positive((o.strideH, o.strideW), "stride", label),
            "filter": _positive((o.filterHeight, o.filterWidth), "filter", label),
            "fused_activation": _activation(o)}
    return convert


def _mean(imp, inputs, outputs, options, label):
    o = _require(options, schema.ReducerOptionsT, label)
    if len(inputs) != 2:
        raise ModelLoadError(f"{label} has {len(inputs)} inputs")
    _activation_input(imp, inputs[0], label)
    axes = imp.graph.tensors[inputs[1]] if inputs[1] else None
    if axes is None or not axes.is_const or axes.dtype != np.int32:
        raise _Unsupported("axes are not a constant int32 tensor")
    return "MEAN", list(inputs), {"keep_dims": bool(o.keepDims)}


def _softmax(imp, inputs, outputs, options, label):
    o = _require(options, schema.SoftmaxOptionsT, label)
    if len(inputs) != 1:
        raise ModelLoadError(f"{label} has {len(inputs)} inputs")
    _activation_input(imp, inputs[0], label)
    if not np.isfinite(o.beta) or o.beta <= 0:
        raise _Unsupported(f"beta {o.beta}")
    return "SOFTMAX", list(inputs), {"beta": float(o.beta)}


def _leaky_relu(imp, inputs, outputs, options, label):
    o = _require(options, schema.LeakyReluOptionsT, label)
    _unary(imp, inputs, label)
    if not np.isfinite(o.alpha):
        raise _Unsupported(f"alpha {o.alpha}")
    return "LEAKY_RELU", list(inputs), {"alpha": float(o.alpha)}


def _unary(imp, inputs, label):
    if len(inputs) != 1:
        raise ModelLoadError(f"{label} has {len(inputs)} inputs")
    _activation_input(imp, inputs[0], label)


def _elementwise(op_type):
    def convert(imp, inputs, outputs, options, label):
        _unary(imp, inputs, label)
        return op_type, list(inputs), {}
    return convert


def _prelu(imp, inputs, outputs, options, label):
    if len(inputs) != 2 or not all(inputs):
        raise ModelLoadError(f"{label} needs two inputs")
    _activation_input(imp, inputs[0], label)
    _const(imp, inputs[1], None, "alpha", label)
    return "PRELU", list(inputs), {}


def _pad(imp, inputs, outputs, options, label):
    if len(inputs) != 2:
        raise ModelLoadError(f"{label} has {len(inputs)} inputs")
    _activation_input(imp, inputs[0], label)
    pads = imp.graph.tensors[inputs[1]] if inputs[1] else None
    if pads is None or not pads.is_const or pads.dtype != np.int32:
        raise _Unsupported("paddings are not a constant int32 tensor")
    return "PAD", list(inputs), {}


def _reshape(op_type):
    def convert(imp, inputs, outputs, options, label):
        return _reshape_to(imp, inputs, outputs, label, keep_shape_input=op_type == "RESHAPE")
    return convert


def _reshape_to(imp, inputs, outputs, label, keep_shape_input):
    """RESHAPE, SQUEEZE and EXPAND_DIMS: a RESHAPE to the output's static shape signature (a
    run-time computed shape input is replaced, as the Keras frontend writes it)."""
    if not inputs or not inputs[0]:
        raise ModelLoadError(f"{label} has no data input")
    _activation_input(imp, inputs[0], label)
    out_shape = imp.graph.tensors[outputs[0]].shape
    given = imp.graph.tensors[inputs[1]] if len(inputs) > 1 and inputs[1] else None
    if keep_shape_input and given is not None and given.is_const and \
            given.dtype == np.int32 and given.data.ndim == 1:
        return "RESHAPE", [inputs[0], inputs[1]], {}
    if sum(d < 0 for d in out_shape) > 1:
        raise _Unsupported("target shape has several unknown dimensions")
    shape = imp.graph.add_const(f"{outputs[0]}/shape", np.array(out_shape, np.int32), np.int32)
    return "RESHAPE", [inputs[0], shape], {}


def _data_movement(op_type, options_cls):
    """TRANSPOSE, STRIDED_SLICE, SLICE, RESIZE_*: quantized with their input's params; the
    index / size inputs must be constant int32, and the TFLite options are carried as read."""
    int_inputs = OP_CONSTRAINTS[op_type].int_inputs
    options_type = getattr(schema.BuiltinOptions, options_cls.__name__[:-1])

    def convert(imp, inputs, outputs, options, label):
        if len(inputs) != 1 + len(int_inputs):
            raise ModelLoadError(f"{label} has {len(inputs)} inputs")
        _activation_input(imp, inputs[0], label)
        for i in int_inputs:
            tensor = imp.graph.tensors[inputs[i]] if inputs[i] else None
            if tensor is None or not tensor.is_const or tensor.dtype != np.int32:
                raise _Unsupported(f"input {i} is not a constant int32 tensor")
        if options is None:
            return op_type, list(inputs), {TFLITE_OPTIONS: (schema.BuiltinOptions.NONE, None)}
        return op_type, list(inputs), {
            TFLITE_OPTIONS: (options_type, _require(options, options_cls, label))}
    return convert


_CONVERTERS = {
    "CONV_2D": _conv_2d,
    "DEPTHWISE_CONV_2D": _depthwise_conv_2d,
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _binary("ADD", schema.AddOptionsT),
    "SUB": _binary("SUB", schema.SubOptionsT),
    "MUL": _binary("MUL", schema.MulOptionsT),
    "CONCATENATION": _concatenation,
    "MAX_POOL_2D": _pool("MAX_POOL_2D"),
    "AVERAGE_POOL_2D": _pool("AVERAGE_POOL_2D"),
    "MEAN": _mean,
    "SOFTMAX": _softmax,
    "LEAKY_RELU": _leaky_relu,
    "PRELU": _prelu,
    "RELU": _elementwise("RELU"),
    "RELU6": _elementwise("RELU6"),
    "LOGISTIC": _elementwise("LOGISTIC"),
    "TANH": _elementwise("TANH"),
    "HARD_SWISH": _elementwise("HARD_SWISH"),
    "PAD": _pad,
    "RESHAPE": _reshape("RESHAPE"),
    "SQUEEZE": _reshape("SQUEEZE"),
    "EXPAND_DIMS": _reshape("EXPAND_DIMS"),
    "TRANSPOSE": _data_movement("TRANSPOSE", schema.TransposeOptionsT),
    "STRIDED_SLICE": _data_movement("STRIDED_SLICE", schema.StridedSliceOptionsT),
    "SLICE": _data_movement("SLICE", schema.SliceOptionsT),
    "RESIZE_BILINEAR": _data_movement("RESIZE_BILINEAR", schema.ResizeBilinearOptionsT),
    "RESIZE_NEAREST_NEIGHBOR": _data_movement("RESIZE_NEAREST_NEIGHBOR",
                                              schema.ResizeNearestNeighborOptionsT),
}

# TFLite ops that become tfquant IR ops (quantized); every other builtin op stays float.
QUANTIZED_OPS = tuple(sorted(_CONVERTERS))
