"""Graph -> Graph passes. Each is a pure function in its own module."""

from tfquant.passes.cross_layer_equalization import cross_layer_equalization
from tfquant.passes.fold_batch_norm import fold_batch_norm
from tfquant.passes.fuse_activation import fuse_activation
from tfquant.passes.keep_float import keep_float
from tfquant.passes.merge_reshapes import merge_reshapes
from tfquant.passes.remove_identity import remove_identity


def canonicalize(graph):
    """The passes every export runs, in order: identities, BN folding, activation fusion,
    reshape chains."""
    graph = remove_identity(graph)
    graph = fold_batch_norm(graph)
    graph = fuse_activation(graph)
    return merge_reshapes(graph)


__all__ = ["canonicalize", "cross_layer_equalization", "fold_batch_norm", "fuse_activation",
           "keep_float", "merge_reshapes", "remove_identity"]
