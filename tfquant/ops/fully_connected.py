"""FULLY_CONNECTED (Keras Dense).

Dense on [N, ..., in] is written as RESHAPE to [-1, in], a 2-D FULLY_CONNECTED and RESHAPE
back, from Keras and from .tflite files alike: tflite-runtime 2.14 computes per-channel
keep_num_dims FULLY_CONNECTED wrongly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.ops import common, delegate_models, keras_support as ks, tflite_support as ts
from tfquant.ops import weights
from tfquant.ops.record import DelegateCase, OpRecord, QuantRule
from tfquant.vocabulary import NoOptions


@dataclasses.dataclass(frozen=True)
class FullyConnectedOptions:
    keep_num_dims: bool = False
    # Hybrid (weight-only) kernels quantize the float input with its own zero point.
    asymmetric_quantize_inputs: bool = False
    fused_activation: str = "NONE"


class DenseWeights(weights.WeightLayout):
    """FULLY_CONNECTED: [out, in]; Keras [in, out]."""

    qat_kind = "dense"
    dense = True
    int4_packing = "litert"  # tflite-runtime 2.14 refuses INT4 FULLY_CONNECTED
    # Hybrid FULLY_CONNECTED ignores per-channel scales on tflite-runtime 2.14.
    hybrid_per_channel = False

    def hybrid_options(self, options):
        # Quantize the float input with its own zero point at run time, as TFLiteConverter.
        return dataclasses.replace(options, asymmetric_quantize_inputs=True)

    def input_channel_range(self, w):
        return np.abs(w).max(axis=0)

    def scale_input_channels(self, w, factor):
        return w * factor.reshape(1, -1)

    def mean_shift(self, error, input_mean, options):
        if input_mean.size != error.shape[1]:
            return None
        return error @ input_mean

    def to_keras(self, w, options):
        return w.T

    def from_keras(self, kernel):
        return kernel.T

    def qat_layer_arguments(self, w, options):
        return dict(filters=w.shape[0])

    def columns(self, x, w_shape, options, count, rng):
        if x.shape[-1] != w_shape[1]:
            return None
        x = x.reshape(-1, w_shape[1])
        return x[rng.choice(len(x), count, replace=False)] if len(x) > count else x

    def options_from_qat_layer(self, layer, kernel):
        return FullyConnectedOptions(False)


DENSE_WEIGHTS = DenseWeights()


def _dense(b, layer, inputs, out_shape):
    groups = ks.keras_dense_groups(layer) if getattr(layer, "quantization_mode", None) \
        else None
    inputs_count = int(b.graph.tensors[inputs[0]].shape[-1])
    if groups is None:  # (constants first: their order is the file's, tests/golden)
        kernel, scales = ks.keras_kernel(layer)  # [in, out]
        w = b.const(f"{layer.name}/kernel", DENSE_WEIGHTS.from_keras(kernel))
        bias_name = b.const(f"{layer.name}/bias", ks.bias_or_zeros(layer, kernel.shape[-1]))
    pre = ks.pre_activation_name(layer, "matmul")
    x, fc_shape = inputs[0], out_shape
    flatten = len(out_shape) > 2 and all(d > 0 for d in out_shape[1:-1])
    if flatten:
        in_shape = (-1, inputs_count)
        shape = b.const(f"{layer.name}/flatten_shape", np.array(in_shape, np.int32), np.int32)
        x = b.op("RESHAPE", [x, shape], in_shape, f"{layer.name}/flatten", layer)
        fc_shape = (-1, out_shape[-1])
        pre = f"{layer.name}/matmul"
    if groups is None:
        y = b.op("FULLY_CONNECTED", [x, w, bias_name], fc_shape, pre, layer,
                 FullyConnectedOptions(keep_num_dims=len(fc_shape) > 2),
                 weight_grid=ks.fixed_grid(kernel, scales))
    else:
        y = _grouped_dense(b, layer, x, groups, fc_shape, pre)
    if not flatten:
        return b.act(layer, y, out_shape, layer.activation, layer.name)
    y = b.act(layer, y, fc_shape, layer.activation, f"{layer.name}/activation")
    shape = b.const(f"{layer.name}/shape", np.array(out_shape, np.int32), np.int32)
    return b.op("RESHAPE", [y, shape], out_shape, layer.name, layer)


def _grouped_dense(b, layer, x, groups, fc_shape, name):
    """A Dense Keras quantized in several input groups (int4 block_size, GPTQ group_size):
    each group's codes keep their own per-channel scales in one FULLY_CONNECTED over that
    group's inputs (a SPLIT_V of the input), and ADDs sum the products."""
    from tfquant.ops.split_join import SplitOptions
    sizes = [end - start for start, end, _, _ in groups]
    parts = [b.graph.add_tensor(f"{layer.name}/group{g}_in", fc_shape[:-1] + (size,))
             for g, size in enumerate(sizes)]
    b.graph.add_op("SPLIT_V", [x, b.const(f"{layer.name}/group_sizes", np.array(
        sizes, np.int32), np.int32), b.const(f"{layer.name}/group_axis", np.array(
            len(fc_shape) - 1, np.int32), np.int32)], parts, SplitOptions(len(sizes)),
        source=(layer.name,))
    total = None
    bias = ks.bias_or_zeros(layer, fc_shape[-1])
    for g, ((_, _, codes, scale), part) in enumerate(zip(groups, parts)):
        kernel = (codes * scale.astype(np.float64)).astype(np.float32)
        w = b.const(f"{layer.name}/kernel_group{g}", DENSE_WEIGHTS.from_keras(kernel))
        bias_name = b.const(f"{layer.name}/bias_group{g}",
                            bias if g == 0 else np.zeros_like(bias))
        grid = ks.fixed_grid(kernel, np.broadcast_to(scale, codes.shape))
        y = b.op("FULLY_CONNECTED", [part, w, bias_name], fc_shape,
                 f"{name}/group{g}", layer, FullyConnectedOptions(
                     keep_num_dims=len(fc_shape) > 2), weight_grid=grid)
        total = y if total is None else b.op(
            "ADD", [total, y], fc_shape,
            name if g == len(groups) - 1 else f"{name}/sum{g}", layer)
    return total


def _read(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.FullyConnectedOptionsT, label)
    if o.weightsFormat != schema.FullyConnectedOptionsWeightsFormat.DEFAULT:
        raise ts.KeepFloat("shuffled weights format")
    new_inputs = ts.weighted(imp, inputs, outputs, label, 2, 0)
    g = imp.graph
    out_shape = g.tensors[outputs[0]].shape
    activation = ts.activation(o)
    if not (o.keepNumDims and len(out_shape) > 2):
        return "FULLY_CONNECTED", new_inputs, FullyConnectedOptions(
            keep_num_dims=bool(o.keepNumDims), fused_activation=activation)
    if sum(d < 0 for d in out_shape) > 1:
        raise ts.KeepFloat("keep_num_dims with several unknown dimensions")
    units, in_features = g.tensors[inputs[1]].shape
    flat_shape = g.add_const(f"{outputs[0]}/flatten_shape",
                             np.array([-1, in_features], np.int32), np.int32)
    flat = g.add_tensor(f"{outputs[0]}/flatten", (-1, in_features), np.float32)
    g.add_op("RESHAPE", [inputs[0], flat_shape], [flat], source=(label,))
    fc = g.add_tensor(f"{outputs[0]}/matmul", (-1, units), np.float32)
    g.add_op("FULLY_CONNECTED", [flat] + new_inputs[1:], [fc],
             FullyConnectedOptions(False, fused_activation=activation), (label,))
    shape = g.add_const(f"{outputs[0]}/shape", np.array(out_shape, np.int32), np.int32)
    return "RESHAPE", [fc, shape], NoOptions()


def _write(options):
    o = schema.FullyConnectedOptionsT()
    o.fusedActivationFunction = common.activation_code(options)
    o.keepNumDims = bool(options.keep_num_dims)
    o.asymmetricQuantizeInputs = bool(options.asymmetric_quantize_inputs)
    return schema.BuiltinOptions.FullyConnectedOptions, o


def _version(t) -> int:
    if t.input == common.INT16:
        return 7
    if t.hybrid:
        return 9 if t.options.asymmetric_quantize_inputs else 3
    if t.options.keep_num_dims:
        return 5
    return 4 if t.input == common.INT8 else 1


FULLY_CONNECTED = OpRecord(
    name="FULLY_CONNECTED", options=FullyConnectedOptions, write=_write, read=_read,
    version=_version, quant=QuantRule(bias_input=2, fused_activation=True),
    weights=DENSE_WEIGHTS, keras={"Dense": _dense}, qat=weights.render_folded,
    delegate=(DelegateCase("dense_per_channel", delegate_models.dense(True, False)),
              DelegateCase("dense_per_tensor", delegate_models.dense(False, False)),
              DelegateCase("dense_wide_per_channel", delegate_models.dense(True, True)),
              DelegateCase("dense_wide_per_tensor", delegate_models.dense(False, True)),
              DelegateCase("mean_and_softmax", delegate_models.mean_and_softmax)))


RECORDS = (FULLY_CONNECTED,)
