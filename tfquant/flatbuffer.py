"""The one reader of .tflite flatbuffers: validated unpacking, names, types and a light view
of a model's operators. The TFLite frontend, the float fallback, the peers, the benchmark and
the tests read models through it.

The bytes are untrusted: read() checks the header and counts the tables the object API will
visit before it visits them (a crafted file can point many vector entries at one table, which
would make unpacking quadratic or worse in its size), and any parser failure becomes a
ModelLoadError with a one-line cause.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.errors import ModelLoadError

BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
                 if not k.startswith("_") and isinstance(v, int)}
# TFLite tensor types with a numpy dtype (INT4 is the writer's: packed, see spec.INT4).
NUMPY_TYPES = {
    schema.TensorType.FLOAT32: np.dtype(np.float32), schema.TensorType.FLOAT16: np.dtype(np.float16),
    schema.TensorType.FLOAT64: np.dtype(np.float64), schema.TensorType.INT8: np.dtype(np.int8),
    schema.TensorType.INT16: np.dtype(np.int16), schema.TensorType.INT32: np.dtype(np.int32),
    schema.TensorType.INT64: np.dtype(np.int64), schema.TensorType.UINT8: np.dtype(np.uint8),
    schema.TensorType.UINT16: np.dtype(np.uint16), schema.TensorType.UINT32: np.dtype(np.uint32),
    schema.TensorType.UINT64: np.dtype(np.uint64), schema.TensorType.BOOL: np.dtype(np.bool_),
    schema.TensorType.COMPLEX64: np.dtype(np.complex64),
    schema.TensorType.COMPLEX128: np.dtype(np.complex128),
}


def load_bytes(model) -> bytes:
    """The flatbuffer bytes of `model` (bytes, bytearray, memoryview or a .tflite path)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise ModelLoadError(f"model file {path!r} does not exist")
    with open(path, "rb") as f:
        return f.read()


def has_variable_tensors(model) -> bool:
    """Whether any tensor of the model's subgraphs is a variable (a fused LSTM's state)."""
    root = schema.Model.GetRootAsModel(load_bytes(model), 0)
    for g in range(root.SubgraphsLength()):
        subgraph = root.Subgraphs(g)
        if any(subgraph.Tensors(i).IsVariable() for i in range(subgraph.TensorsLength())):
            return True
    return False


def is_tflite(model) -> bool:
    """True for flatbuffer bytes and for paths ending in .tflite."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return True
    return isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".tflite")


def text(value) -> str:
    """A tensor / signature / metadata name, decoded; control characters (from a corrupt or
    hostile file) become '?' so that names are safe in one-line messages."""
    if value is None:
        return ""
    decoded = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return "".join(c if c.isprintable() else "?" for c in decoded)


def ints(values) -> list:
    return [] if values is None else [int(v) for v in values]


def builtin_name(code) -> Optional[str]:
    """The builtin operator name of an OperatorCodeT (None if unknown)."""
    return BUILTIN_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode))


def _check_structure(data: bytes):
    """Header checks and a budget of one table per 4 bytes (a well-formed file has at most
    that many), spent before the object API visits anything."""
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


def guarded(what: str):
    """Context manager turning any parser failure on untrusted bytes into ModelLoadError."""
    return _Guard(what)


class _Guard:
    def __init__(self, what):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None or isinstance(error, ModelLoadError):
            return False
        if not isinstance(error, Exception):
            return False
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelLoadError(f"corrupt {self.what} ({type(error).__name__}"
                             f"{': ' + message[:200] if message else ''})") from None


def read(model) -> "schema.ModelT":
    """The unpacked, structure-checked model of `model` (bytes or a .tflite path)."""
    data = load_bytes(model)
    with guarded("TFLite flatbuffer"):
        _check_structure(data)
        unpacked = schema.ModelT.InitFromPackedBuf(data, 0)
    if not unpacked.subgraphs:
        raise ModelLoadError("TFLite model has no subgraph")
    return unpacked


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    type: int  # schema.TensorType
    shape: tuple
    scale: np.ndarray  # empty when not quantized
    zero_point: np.ndarray
    quantized_dimension: int
    buffer: int

    @property
    def quantized(self) -> bool:
        return self.scale.size > 0


@dataclasses.dataclass(frozen=True)
class OpInfo:
    name: str  # builtin name, or the custom code
    version: int
    inputs: tuple  # TensorInfo, optional (-1) inputs left out
    outputs: tuple
    options: object


def tensor_info(subgraph, index: int) -> TensorInfo:
    t = subgraph.tensors[index]
    q = t.quantization
    scale = np.asarray([] if q is None or q.scale is None else q.scale, np.float64)
    zero = np.asarray([] if q is None or q.zeroPoint is None else q.zeroPoint, np.int64)
    return TensorInfo(index, text(t.name), int(t.type), tuple(ints(t.shape)), scale, zero,
                      int(q.quantizedDimension) if q is not None else 0, int(t.buffer))


def operators(model, subgraph_index: int = 0) -> list:
    """The ops of a subgraph in order (a light, read-only view for comparisons and reports)."""
    if not isinstance(model, schema.ModelT):
        model = read(model)
    with guarded("TFLite flatbuffer"):
        return _operators(model, subgraph_index)


def _operators(model, subgraph_index: int) -> list:
    subgraph = model.subgraphs[subgraph_index]
    result = []
    for op in subgraph.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        name = builtin_name(code)
        if name is None or name == "CUSTOM":
            name = text(code.customCode) or "CUSTOM"
        result.append(OpInfo(name, int(code.version),
                             tuple(tensor_info(subgraph, i) for i in ints(op.inputs) if i >= 0),
                             tuple(tensor_info(subgraph, i) for i in ints(op.outputs)),
                             op.builtinOptions))
    return result


def op_versions(model) -> dict:
    """{op name: set of versions} over the main subgraph's operators."""
    versions = {}
    for op in operators(model):
        versions.setdefault(op.name, set()).add(op.version)
    return versions
