"""Graph -> Graph passes. Each is a pure function in its own module.

Canonical (every export): remove_identity, fold_batch_norm, fuse_activation, merge_reshapes.
Optional float rewrites: cross_layer_equalization, keep_float.
Data-driven weight rounding (after calibration, before quantization): weight_rounding.
Quantization (tfquant.quantize chains them): unshare_constants,
keep_float_without_int16_kernel, correct_bias, apply_params, requantize_fixed_outputs,
isolate_float_ops, quantize_io.
"""

from tfquant.passes.apply_params import apply_params
from tfquant.passes.bias_correction import correct_bias
from tfquant.passes.cross_layer_equalization import cross_layer_equalization
from tfquant.passes.float_islands import isolate_float_ops
from tfquant.passes.fold_batch_norm import fold_batch_norm, lower_batch_norm
from tfquant.passes.fuse_activation import fuse_activation
from tfquant.passes.io_boundary import quantize_io
from tfquant.passes.keep_float import keep_float, keep_float_without_int16_kernel
from tfquant.passes.merge_reshapes import merge_reshapes
from tfquant.passes.remove_identity import remove_identity
from tfquant.passes.requantize import requantize_fixed_outputs
from tfquant.passes.unshare_constants import unshare_constants
from tfquant.passes.weight_rounding import round_weights


def canonicalize(graph):
    """The passes every export runs, in order: identities, BN folding, activation fusion,
    reshape chains."""
    graph = remove_identity(graph)
    graph = fold_batch_norm(graph)
    graph = fuse_activation(graph)
    return merge_reshapes(graph)


__all__ = ["apply_params", "canonicalize", "correct_bias", "cross_layer_equalization",
           "fold_batch_norm", "fuse_activation", "isolate_float_ops", "keep_float",
           "keep_float_without_int16_kernel", "lower_batch_norm", "merge_reshapes",
           "quantize_io", "remove_identity", "requantize_fixed_outputs", "round_weights", "unshare_constants"]
