"""Pieces several records share: the default operator-version rule and option writers."""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.ops.tflite_support import ACTIVATION_CODES, PADDING_CODES

INT8, INT16, UINT8 = np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.uint8)
FLOAT16, FLOAT32 = np.dtype(np.float16), np.dtype(np.float32)


def version_by_type(types) -> int:
    """Version 1 for float, 2 for int8, 3 for int16 inputs or outputs: the numbering most
    element-wise and data-movement ops follow."""
    if types.input == INT16 or types.output == INT16:
        return 3
    if types.input == INT8 or types.output == INT8:
        return 2
    return 1


def version_from_source(types) -> int:
    """For ops read from a .tflite whose options are kept as read: the source file's version,
    or more if the types need it."""
    return max(types.source_version, version_by_type(types))


def version_one(types) -> int:
    return 1


def activation_code(options) -> int:
    return ACTIVATION_CODES[getattr(options, "fused_activation", "NONE")]


def padding_code(name: str) -> int:
    return PADDING_CODES[name]


def no_options(options):
    return schema.BuiltinOptions.NONE, None


def empty_options(options_class, options_type):
    """A writer for ops whose options table exists but holds nothing tfquant sets."""
    return lambda options: (options_type, options_class())
