"""The graph IR: tensors and ops at TFLite-op level, the one source of truth between stages.

Ops are named by TFLite builtin operator names ("CONV_2D", "ADD", ...) plus a few pseudo-ops
that only exist between the frontend and the passes ("BATCH_NORM", "IDENTITY"). Options are a
plain dict with snake_case keys (see writer.py for the keys each op understands). Tensors are
referred to by unique names; constants carry their numpy data.

Layouts are TFLite's: NHWC activations, CONV_2D filters [out, kh, kw, in], DEPTHWISE_CONV_2D
filters [1, kh, kw, in * multiplier], FULLY_CONNECTED weights [out, in]. A batch dimension of
unknown size is -1.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Iterable, Optional

import numpy as np

from tfquant.spec import QuantParams

PSEUDO_OPS = ("BATCH_NORM", "IDENTITY")


@dataclasses.dataclass
class Tensor:
    name: str
    shape: tuple
    dtype: np.dtype = np.dtype(np.float32)
    data: Optional[np.ndarray] = None
    quant: Optional[QuantParams] = None

    @property
    def is_const(self) -> bool:
        return self.data is not None


class SharedRef:
    """An op option that graph copies share rather than copy (a Keras layer, for instance)."""

    def __init__(self, value):
        self.value = value

    def __deepcopy__(self, memo):
        return self


@dataclasses.dataclass
class Op:
    type: str
    inputs: list
    outputs: list
    options: dict = dataclasses.field(default_factory=dict)
    # Names of the source layers (Keras) or ops this op came from, for messages and reports.
    source: tuple = ()

    @property
    def stays_float(self) -> bool:
        """Kept in float by the frontend's float fallback (opaque TFLite options)."""
        return bool(self.options.get("float_fallback", False))

    @property
    def label(self) -> str:
        origin = "/".join(self.source) if self.source else self.outputs[0]
        return f"{self.type} ({origin})"


class Graph:
    """A dataflow graph of Ops over named Tensors, kept in topological order."""

    def __init__(self):
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        # (layer name, reason) of source layers kept in float by the frontend's fallback.
        self.float_layers: list = []
        # Activation ranges learned by quantization-aware training, by tensor name.
        self.qat_ranges: dict = {}

    # -- construction -------------------------------------------------------------------------

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self.tensors:
            name = f"{base}_{i}"
            i += 1
        return name

    def add_tensor(self, name: str, shape, dtype=np.float32, data=None) -> str:
        name = self.unique_name(name)
        if data is not None:
            data = np.asarray(data, dtype=dtype)
            shape = data.shape
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), np.dtype(dtype), data)
        return name

    def add_const(self, name: str, data, dtype=np.float32) -> str:
        return self.add_tensor(name, np.shape(data), dtype, data)

    def add_op(self, op_type: str, inputs, outputs, options=None, source=()) -> Op:
        op = Op(op_type, list(inputs), list(outputs), dict(options or {}), tuple(source))
        self.ops.append(op)
        return op

    def copy(self) -> "Graph":
        return copy.deepcopy(self)

    # -- queries ------------------------------------------------------------------------------

    def producer(self, tensor: str) -> Optional[Op]:
        for op in self.ops:
            if tensor in op.outputs:
                return op
        return None

    def consumers(self, tensor: str) -> list:
        return [op for op in self.ops if tensor in op.inputs]

    def activation_tensors(self) -> list:
        """Names of all non-constant tensors that ops read or write, in graph order."""
        seen = dict.fromkeys(self.inputs)
        for op in self.ops:
            for name in op.inputs + op.outputs:
                if name and not self.tensors[name].is_const:
                    seen.setdefault(name)
        return list(seen)

    def ops_of_type(self, *types: str) -> list:
        return [op for op in self.ops if op.type in types]

    # -- editing ------------------------------------------------------------------------------

    def replace_uses(self, old: str, new: str, ops: Optional[Iterable[Op]] = None):
        """Make every consumer (or those in `ops`) of tensor `old` read `new` instead."""
        for op in (self.ops if ops is None else ops):
            op.inputs = [new if name == old else name for name in op.inputs]
        if ops is None:
            self.outputs = [new if name == old else name for name in self.outputs]

    def remove_op(self, op: Op):
        self.ops.remove(op)

    def toposort(self):
        """Reorder ops so that every op comes after the producers of its inputs (stable)."""
        available = set(self.inputs) | {n for n, t in self.tensors.items() if t.is_const}
        ordered, pending = [], list(self.ops)
        while pending:
            for op in pending:
                if all(not n or n in available for n in op.inputs):
                    ordered.append(op)
                    available.update(op.outputs)
                    pending.remove(op)
                    break
            else:
                raise ValueError(f"graph has a cycle or a missing tensor at {pending[0].label}")
        self.ops = ordered

    def prune(self):
        """Drop ops whose outputs nobody uses and tensors no op or graph I/O mentions."""
        changed = True
        while changed:
            changed = False
            used = set(self.outputs)
            for op in self.ops:
                used.update(op.inputs)
            for op in list(self.ops):
                if not any(out in used for out in op.outputs):
                    self.ops.remove(op)
                    changed = True
        live = set(self.inputs) | set(self.outputs)
        for op in self.ops:
            live.update(n for n in op.inputs + op.outputs if n)
        self.tensors = {name: t for name, t in self.tensors.items() if name in live}

    def validate(self):
        """Check that every tensor exists and ops are in topological order."""
        available = set(self.inputs) | {n for n, t in self.tensors.items() if t.is_const}
        for op in self.ops:
            for name in op.inputs:
                if name and name not in available:
                    raise ValueError(f"{op.label} reads {name!r} before it is produced")
            for name in op.outputs:
                if name not in self.tensors:
                    raise ValueError(f"{op.label} writes unknown tensor {name!r}")
                available.add(name)
        for name in self.outputs:
            if name not in available:
                raise ValueError(f"graph output {name!r} is never produced")

    def summary(self) -> str:
        lines = [f"inputs: {self.inputs}", f"outputs: {self.outputs}"]
        for op in self.ops:
            opts = {k: v for k, v in op.options.items() if not isinstance(v, np.ndarray)}
            lines.append(f"{op.type:22s} {op.inputs} -> {op.outputs} {opts}")
        return "\n".join(lines)
