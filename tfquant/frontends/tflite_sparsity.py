"""TFLite's sparse tensor format (SparsityParameters) decoded into a dense numpy array.

A sparse tensor of rank n is stored as n + k levels in `traversal_order`: the first n are the
original dimensions (permuted), the last k split the dimensions in `block_map` into blocks
(the block size is the dense size of that level). Each level is DENSE (every index 0..size-1)
or SPARSE_CSR (per parent position, the indices in array_indices[segments[p]:segments[p+1]]).
The values are stored in traversal order. This module expands the levels with numpy (no Python
loop per element) and checks every index and segment before using it.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema


class SparsityError(ValueError):
    """The sparsity parameters are inconsistent with the shape or the values."""


def _values(vector) -> np.ndarray:
    values = getattr(vector, "values", None) if vector is not None else None
    return np.asarray([] if values is None else values, np.int64)


def _level_sizes(shape, order, block_map, levels) -> tuple:
    rank = len(shape)
    if sorted(order) != list(range(rank + len(block_map))) or \
            sorted(order[:rank]) != list(range(rank)) or len(levels) != len(order) or \
            any(not 0 <= d < rank for d in block_map) or len(set(block_map)) != len(block_map):
        raise SparsityError("traversal order, block map and dimension metadata disagree")
    block_size = [0] * len(block_map)
    for level, dim in enumerate(order):
        if dim >= rank:
            block_size[dim - rank] = int(levels[level].denseSize)
    sizes = []
    for dim in order:
        if dim >= rank:
            sizes.append(block_size[dim - rank])
        elif dim in block_map:
            b = block_size[block_map.index(dim)]
            if b <= 0 or shape[dim] % b:
                raise SparsityError(f"block size {b} does not divide dimension {dim}")
            sizes.append(shape[dim] // b)
        else:
            sizes.append(shape[dim])
    return sizes, block_size


def densify(values: np.ndarray, shape, sparsity) -> np.ndarray:
    """The dense array of `shape` that `values` and the SparsityParametersT `sparsity`
    describe; raises SparsityError on any inconsistency."""
    shape = [int(d) for d in shape]
    rank, dense_count = len(shape), int(np.prod(shape, dtype=object))
    order = [int(d) for d in (sparsity.traversalOrder if sparsity.traversalOrder is not None
                              else [])]
    block_map = [int(d) for d in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    levels = sparsity.dimMetadata or []
    sizes, block_size = _level_sizes(shape, order, block_map, levels)

    # parent: position of each element in the previous level's storage; coords: its index at
    # every level so far
    parent = np.zeros(1, np.int64)
    coords = []
    for level, meta in enumerate(levels):
        size = sizes[level]
        if meta.format == schema.DimensionType.DENSE:
            if int(meta.denseSize) != size:
                raise SparsityError(f"level {level} is dense of size {meta.denseSize}, the "
                                    f"shape needs {size}")
            coords = [np.repeat(c, size) for c in coords]
            coords.append(np.tile(np.arange(size, dtype=np.int64), parent.size))
            parent = np.repeat(parent, size) * size + coords[-1]
        elif meta.format == schema.DimensionType.SPARSE_CSR:
            segments, indices = _values(meta.arraySegments), _values(meta.arrayIndices)
            if parent.size and int(parent.max()) + 1 >= segments.size:
                raise SparsityError(f"level {level} has {segments.size} segments for "
                                    f"{int(parent.max()) + 1} parents")
            if segments.size == 0 or segments[0] != 0 or np.any(np.diff(segments) < 0) or \
                    segments[-1] > indices.size or np.any(indices < 0) or \
                    np.any(indices >= size):
                raise SparsityError(f"corrupt segments or indices at level {level}")
            starts, counts = segments[parent], segments[parent + 1] - segments[parent]
            total = int(counts.sum())
            if total > dense_count:
                raise SparsityError(f"level {level} holds more entries than the dense tensor")
            offsets = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
            parent = np.repeat(starts - offsets, counts) + np.arange(total, dtype=np.int64)
            coords = [np.repeat(c, counts) for c in coords]
            coords.append(indices[parent])
        else:
            raise SparsityError(f"unknown format {meta.format} at level {level}")
        if parent.size > dense_count:
            raise SparsityError("the levels address more elements than the dense shape has")
    if parent.size != values.size:
        raise SparsityError(f"{values.size} values stored, the indices address {parent.size}")
    dense_index = [None] * rank
    for level, dim in enumerate(order[:rank]):
        dense_index[dim] = coords[level]
    for level in range(rank, len(order)):
        block = order[level] - rank
        dim = block_map[block]
        dense_index[dim] = dense_index[dim] * block_size[block] + coords[level]
    dense = np.zeros(shape, values.dtype)
    dense[tuple(dense_index)] = values
    return dense
