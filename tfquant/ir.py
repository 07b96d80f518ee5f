"""The graph IR: tensors and ops at TFLite-op level, the one source of truth between stages.

Ops are named by TFLite builtin operator names ("CONV_2D", "ADD", ...) plus the pseudo-ops of
tfquant.vocabulary that exist only between a frontend and the passes. Every op type has one
record in tfquant.ops (its typed options class among other things).

Tensor and Op are frozen: a pass edits a graph by replacing them (Graph.set_tensor,
Graph.replace_op), so a graph copy shares every tensor, op and weight array it does not change
(weight arrays are read-only views). Producer and consumer lookups are indexed.

Layouts are TFLite's: NHWC activations, CONV_2D filters [out, kh, kw, in], DEPTHWISE_CONV_2D
filters [1, kh, kw, in * multiplier], FULLY_CONNECTED weights [out, in]. A batch dimension of
unknown size is -1.
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import Iterable, Optional

import numpy as np

from tfquant import vocabulary
from tfquant.spec import QuantParams

_FLOAT32 = np.dtype(np.float32)


def _read_only(data, dtype) -> np.ndarray:
    """`data` as an array of `dtype` that nobody can write through (a view: the caller's own
    array stays writable)."""
    array = np.asarray(data, dtype=dtype).view()
    array.flags.writeable = False
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class Tensor:
    name: str
    shape: tuple
    dtype: np.dtype = _FLOAT32
    data: Optional[np.ndarray] = None  # constants only; read-only
    quant: Optional[QuantParams] = None
    # A TFLite variable tensor (the state of a fused LSTM): available from the start, read and
    # written by the op that owns it, never an activation to calibrate or quantize.
    variable: bool = False

    def __post_init__(self):
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        if self.data is not None:
            data = _read_only(self.data, self.dtype)
            object.__setattr__(self, "data", data)
            object.__setattr__(self, "shape", tuple(int(d) for d in data.shape))
        else:
            object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclasses.dataclass(frozen=True)
class WeightGrid:
    """The weight grid a QAT layer trained on (bits, symmetric, per channel): the int8 export
    puts the weights on the same grid. With `scale` (one float32 per output channel), the
    weights are a source's own integer codes times these scales (a Keras-quantized Dense):
    the export keeps those scales, hence the codes, and no pass rescales the weights."""

    bits: int
    symmetric: bool
    per_channel: bool
    scale: Optional[tuple] = None


@dataclasses.dataclass(frozen=True, eq=False)
class Op:
    type: str
    inputs: tuple
    outputs: tuple
    options: object = vocabulary.NO_OPTIONS  # the typed options of the op's record
    # Names of the source layers (Keras) or ops this op came from, for messages and reports.
    source: tuple = ()
    # Runs in float inside a quantized model (float fallback, float / int16-less layers).
    keep_float: bool = False
    # The operator version the source .tflite gave the op (a floor for the writer where the
    # op's record keeps source versions).
    source_version: int = 1
    # QAT: the grid the layer's weights trained on (FoldedBatchNorm export).
    weight_grid: Optional[WeightGrid] = None
    # QAT graph only: the batch norm kept attached to its conv / dense (training-time fold).
    batch_norm: Optional[vocabulary.BatchNormOptions] = None

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "source", tuple(self.source))

    def replace(self, **changes) -> "Op":
        return dataclasses.replace(self, **changes)

    @property
    def fixed_weights(self) -> bool:
        """Whether the op's weights are integer codes with fixed scales (WeightGrid.scale)."""
        return self.weight_grid is not None and self.weight_grid.scale is not None

    @property
    def label(self) -> str:
        origin = "/".join(self.source) if self.source else self.outputs[0]
        return f"{self.type} ({origin})"


@dataclasses.dataclass(frozen=True)
class Signature:
    """A serving signature: its key and one name per graph input and output, by position."""

    key: str = "serving_default"
    inputs: tuple = ()
    outputs: tuple = ()


class Graph:
    """A dataflow graph of Ops over named Tensors, kept in topological order."""

    def __init__(self):
        self.tensors: dict[str, Tensor] = {}
        self._ops: list[Op] = []
        self._ops_view: Optional[tuple] = ()
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        # (layer name, reason) of source layers kept in float by the frontend.
        self.float_layers: list = []
        # Activation ranges learned by quantization-aware training, by tensor name.
        self.qat_ranges: dict = {}
        # Carried from a source .tflite and written back by the writer.
        self.signature: Optional[Signature] = None
        self.metadata: dict[str, bytes] = {}
        self._producer: dict[str, Op] = {}
        self._consumers: dict[str, dict[int, Op]] = {}

    # -- ops and the index ---------------------------------------------------------------------

    @property
    def ops(self) -> tuple:
        """The ops in order (a tuple: edit through add_op / replace_op / remove_op / set_ops)."""
        if self._ops_view is None:
            self._ops_view = tuple(self._ops)
        return self._ops_view

    def _index(self, op: Op):
        for name in op.outputs:
            self._producer[name] = op
        for name in op.inputs:
            if name:
                self._consumers.setdefault(name, {})[id(op)] = op

    def _unindex(self, op: Op):
        for name in op.outputs:
            if self._producer.get(name) is op:
                del self._producer[name]
        for name in op.inputs:
            if name:
                self._consumers.get(name, {}).pop(id(op), None)

    def set_ops(self, ops: Iterable[Op]):
        """Replace the whole op list (e.g. with a reordering)."""
        self._ops = list(ops)
        self._ops_view = None
        self._producer, self._consumers = {}, {}
        for op in self._ops:
            self._index(op)

    # -- construction -------------------------------------------------------------------------

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self.tensors:
            name = f"{base}_{i}"
            i += 1
        return name

    def add_tensor(self, name: str, shape, dtype=np.float32, data=None, quant=None) -> str:
        """Add a tensor under a fresh name derived from `name`; returns that name."""
        name = self.unique_name(name)
        self.tensors[name] = Tensor(name, tuple(shape) if data is None else (), dtype, data,
                                    quant)
        return name

    def add_const(self, name: str, data, dtype=np.float32) -> str:
        return self.add_tensor(name, np.shape(data), dtype, data)

    def set_tensor(self, name: str, **changes) -> Tensor:
        """Replace tensor `name` by a copy with `changes` (it keeps its place in the order). A
        constant's data is cast to its (new) dtype: change both together."""
        tensor = dataclasses.replace(self.tensors[name], **changes)
        self.tensors[name] = tensor
        return tensor

    def add_op(self, op_type: str, inputs, outputs, options=vocabulary.NO_OPTIONS, source=(),
               **fields) -> Op:
        return self.append(Op(op_type, inputs, outputs, options, source, **fields))

    def append(self, op: Op) -> Op:
        self._ops.append(op)
        self._ops_view = None
        self._index(op)
        return op

    def insert(self, position: int, op: Op) -> Op:
        self._ops.insert(position, op)
        self._ops_view = None
        self._index(op)
        return op

    def replace_op(self, old: Op, new: Op) -> Op:
        """Put `new` where `old` is."""
        self._ops[self._ops.index(old)] = new
        self._ops_view = None
        self._unindex(old)
        self._index(new)
        return new

    def update_op(self, op: Op, **changes) -> Op:
        return self.replace_op(op, op.replace(**changes))

    def remove_op(self, op: Op):
        self._ops.remove(op)
        self._ops_view = None
        self._unindex(op)

    def copy(self) -> "Graph":
        """A copy that shares every (immutable) tensor, op and weight array."""
        new = Graph()
        new.tensors = dict(self.tensors)
        new.inputs, new.outputs = list(self.inputs), list(self.outputs)
        new.float_layers = list(self.float_layers)
        new.qat_ranges = dict(self.qat_ranges)
        new.signature, new.metadata = self.signature, dict(self.metadata)
        new.set_ops(self._ops)
        return new

    # -- queries ------------------------------------------------------------------------------

    def producer(self, tensor: str) -> Optional[Op]:
        return self._producer.get(tensor)

    def consumers(self, tensor: str) -> list:
        """The ops reading `tensor` (each once, in no particular order)."""
        return list(self._consumers.get(tensor, {}).values())

    def activation_tensors(self) -> list:
        """Names of all non-constant tensors that ops read or write, in graph order."""
        seen = dict.fromkeys(self.inputs)
        for op in self._ops:
            for name in op.inputs + op.outputs:
                tensor = self.tensors[name] if name else None
                if tensor is not None and not tensor.is_const and not tensor.variable:
                    seen.setdefault(name)
        return list(seen)

    def ops_of_type(self, *types: str) -> list:
        return [op for op in self._ops if op.type in types]

    # -- editing ------------------------------------------------------------------------------

    def replace_uses(self, old: str, new: str, ops: Optional[Iterable[Op]] = None):
        """Make every consumer (or those in `ops`) of tensor `old` read `new` instead; without
        `ops`, graph outputs named `old` become `new` too."""
        readers = self.consumers(old) if ops is None else list(ops)
        for op in readers:
            self.update_op(op, inputs=tuple(new if n == old else n for n in op.inputs))
        if ops is None:
            self.outputs = [new if name == old else name for name in self.outputs]

    def toposort(self):
        """Reorder ops so that every op comes after the producers of its inputs. Stable: among
        the ops that can run, the earliest in the current order goes first."""
        available = set(self.inputs) | {n for n, t in self.tensors.items()
                                         if t.is_const or t.variable}
        waiting_on = {}  # position -> number of inputs not yet available
        readers = {}  # tensor -> positions of ops waiting for it
        ready = []
        for position, op in enumerate(self._ops):
            missing = {n for n in op.inputs if n and n not in available}
            waiting_on[position] = len(missing)
            for name in missing:
                readers.setdefault(name, []).append(position)
            if not missing:
                heapq.heappush(ready, position)
        ordered = []
        while ready:
            position = heapq.heappop(ready)
            op = self._ops[position]
            ordered.append(op)
            for name in op.outputs:
                if name in available:
                    continue
                available.add(name)
                for reader in readers.pop(name, ()):
                    waiting_on[reader] -= 1
                    if waiting_on[reader] == 0:
                        heapq.heappush(ready, reader)
        if len(ordered) != len(self._ops):
            stuck = next(op for i, op in enumerate(self._ops) if waiting_on[i] > 0)
            raise ValueError(f"graph has a cycle or a missing tensor at {stuck.label}")
        self.set_ops(ordered)

    def prune(self):
        """Drop ops whose outputs nobody uses and tensors no op or graph I/O mentions."""
        changed = True
        while changed:
            changed = False
            used = set(self.outputs)
            for op in self._ops:
                used.update(op.inputs)
            for op in list(self._ops):
                if not any(out in used for out in op.outputs):
                    self.remove_op(op)
                    changed = True
        live = set(self.inputs) | set(self.outputs)
        for op in self._ops:
            live.update(n for n in op.inputs + op.outputs if n)
        self.tensors = {name: t for name, t in self.tensors.items() if name in live}

    def validate(self):
        """Check that every tensor exists, is produced once, and ops are in topological
        order."""
        available = set(self.inputs) | {n for n, t in self.tensors.items()
                                         if t.is_const or t.variable}
        for op in self._ops:
            for name in op.inputs:
                if name and name not in available:
                    raise ValueError(f"{op.label} reads {name!r} before it is produced")
            for name in op.outputs:
                if name not in self.tensors:
                    raise ValueError(f"{op.label} writes unknown tensor {name!r}")
                if name in available:
                    raise ValueError(f"{op.label} writes {name!r}, which is already produced")
                available.add(name)
        for name in self.outputs:
            if name not in available:
                raise ValueError(f"graph output {name!r} is never produced")

    def summary(self) -> str:
        lines = [f"inputs: {self.inputs}", f"outputs: {self.outputs}"]
        for op in self._ops:
            lines.append(f"{op.type:22s} {list(op.inputs)} -> {list(op.outputs)} {op.options}")
        return "\n".join(lines)
