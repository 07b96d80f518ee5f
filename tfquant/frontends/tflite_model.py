"""TFLite frontend: a float .tflite flatbuffer (bytes or a path) -> the graph IR.

Reads models written by TFLiteConverter, by other exporters, or by tfquant itself (float mode):
- fp32 constants; fp16 (or int8) constants behind DEQUANTIZE and sparse constants behind
  DENSIFY are folded into fp32 constants;
- each op whose record (tfquant.ops) has a TFLite reader becomes an IR op with typed options;
  every other builtin op, and any op its reader declines, is kept as an opaque float op (its
  TFLite options carried as read, `keep_float`) and listed in `graph.float_layers`;
- RESHAPE / SQUEEZE / EXPAND_DIMS whose target shape is computed at run time (the
  SHAPE / STRIDED_SLICE / PACK chains of dynamic-batch models) take the static shape signature
  of their output, with -1 for the batch, as the Keras frontend does;
- the signature def of the main subgraph and the model metadata are carried on the graph
  (`graph.signature`, `graph.metadata`) and written back by the writer.

Robustness: the bytes are untrusted (tfquant.flatbuffer validates the structure). Any
malformed, truncated or inconsistent flatbuffer raises ModelLoadError with a one-line cause.
Work is bounded by the buffer size: constants may expand through DENSIFY only within a budget
proportional to the file size.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from tfquant import flatbuffer, ir, ops, vocabulary
from tfquant.errors import ModelLoadError
from tfquant.frontends.tflite_sparsity import SparsityError, densify
from tfquant.ops.tflite_support import KeepFloat

log = logging.getLogger("tfquant")

# Metadata that TFLiteConverter computes about its own conversion; it describes the float
# model, not the one tfquant writes, so it is not carried over.
CONVERTER_METADATA = ("min_runtime_version", "CONVERSION_METADATA", "reduced_precision_support")
# Largest constant (elements) a model may expand to through DENSIFY, relative to its size.
_MAX_EXPANSION = 64
_MIN_EXPANSION_ELEMENTS = 1 << 20
# Builtin ops tfquant cannot carry at all (the model is refused).
_REFUSED = ("WHILE", "IF", "CALL_ONCE", "CALL")
_name = flatbuffer.text
_ints = flatbuffer.ints


def from_tflite(model) -> ir.Graph:
    """Build the IR of a float TFLite model (bytes or a .tflite path).

    Raises ModelLoadError for anything that is not a well-formed float TFLite model tfquant can
    express (corrupt bytes, out-of-range indices or offsets, wrong buffer sizes, no subgraph,
    custom ops, control flow, already-quantized models).
    """
    data = flatbuffer.load_bytes(model)
    unpacked = flatbuffer.read(data)
    with flatbuffer.guarded("TFLite flatbuffer"):
        return _Importer(data, unpacked).build()


class _Importer:
    def __init__(self, data: bytes, model):
        self.data = data
        self.model = model
        self.graph = ir.Graph()
        self.names = {}  # flatbuffer tensor index -> IR tensor name
        self.const_budget = max(_MIN_EXPANSION_ELEMENTS, _MAX_EXPANSION * len(data))
        self.float_ops = []
        self.sparse = set()  # indices of sparse constant tensors

    # -- top level ------------------------------------------------------------------------------

    def build(self) -> ir.Graph:
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
            if graph.tensors[name].is_const:
                raise ModelLoadError(f"model input {name!r} is a constant")
        sparse = {self.names[i] for i in self.sparse}
        available = set(graph.inputs) | {n for n, t in graph.tensors.items()
                                          if t.is_const or t.variable} | sparse
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
        dtype = flatbuffer.NUMPY_TYPES.get(t.type)
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
        name = _name(t.name) or f"tensor_{index}"
        if t.isVariable:  # an op's state (fused LSTM): carried as it is
            if dtype != np.float32 or any(d < 0 for d in shape):
                raise ModelLoadError(f"{label} is a variable tensor of type {dtype} and shape "
                                     f"{shape}; tfquant carries float32 state of fixed shape")
            self.names[index] = self.graph.add_tensor(name, shape, dtype)
            self.graph.set_tensor(self.names[index], variable=True)
            return
        values = self._buffer_values(index, t, dtype, shape)
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
        return np.frombuffer(raw, dtype).reshape(shape)

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
        op_type = flatbuffer.builtin_name(code)
        if op_type is None or op_type == "CUSTOM":
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
            version = max(int(code.version), 1)
            record = ops.REGISTRY.get(op_type)
            try:
                if record is None or not record.read:
                    raise KeepFloat("no int8 implementation in tfquant")
                new_type, new_inputs, options = record.read(
                    self, inputs, outputs, operator.builtinOptions, label)
            except KeepFloat as reason:
                self._add_opaque(op_type, inputs, outputs, operator, version, label,
                                 str(reason))
            else:
                self.graph.add_op(new_type, new_inputs, outputs, options, (label,),
                                  source_version=version)
        available.update(outputs)

    def _add_opaque(self, op_type, inputs, outputs, operator, version, label, reason):
        if op_type in _REFUSED or op_type.startswith("STABLEHLO_"):
            raise ModelLoadError(f"operator {label} needs control flow or StableHLO, which "
                                 "tfquant does not convert")
        options = vocabulary.CarriedOptions(operator.builtinOptionsType,
                                            operator.builtinOptions)
        op = self.graph.add_op(op_type, inputs, outputs, options, (label,), keep_float=True,
                               source_version=version)
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
        self.graph.set_tensor(outputs[0], data=np.asarray(values, out.dtype))

    def _dequantize(self, name, label):
        tensor = self.graph.tensors[name]
        index = self.indices[name]
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

    # -- sparse constants -----------------------------------------------------------------------

    def _densify(self, name, label):
        """Dense values of a sparse constant (tflite_sparsity), within the expansion budget."""
        t = self.tensors[self.indices[name]]
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
            return ir.Signature(
                _name(signature.signatureKey) or "serving_default",
                tuple(aliases.get(("inputs", n), n) for n in graph.inputs),
                tuple(aliases.get(("outputs", n), n) for n in graph.outputs))
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
