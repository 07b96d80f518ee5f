"""Keras frontend: Keras 3 and tf_keras (Keras 2) models to the graph IR.

Walks the functional graph itself (no get_config/from_config round trip), so Sequential,
Functional and models nested inside models (any depth, shared or not) all work. Each Keras layer
becomes one or more IR ops; BatchNormalization becomes a BATCH_NORM pseudo-op and Dropout an
IDENTITY pseudo-op that the passes fold or remove.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tfquant import ir
from tfquant.errors import TfquantError, UnsupportedLayerError
from tfquant.frontends import float_fallback

_FUSABLE_ACTIVATIONS = {"relu": "RELU", "relu6": "RELU6"}
_ACTIVATION_OPS = {
    "relu": "RELU", "relu6": "RELU6", "sigmoid": "LOGISTIC", "tanh": "TANH",
    "hard_swish": "HARD_SWISH", "hard_silu": "HARD_SWISH",
}


class _Unsupported(Exception):
    """Raised by a layer converter for a configuration TFLite int8 cannot express."""


def _shape(keras_tensor) -> tuple:
    shape = keras_tensor.shape
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return tuple(-1 if d is None else int(d) for d in dims)


def _value(variable) -> np.ndarray:
    return np.array(variable.numpy() if hasattr(variable, "numpy") else variable, np.float32)


def _activation_name(activation) -> str:
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return name.lower()


def _is_model(layer) -> bool:
    return hasattr(layer, "_nodes_by_depth") or hasattr(layer, "_functional")


def _model_inputs(model) -> list:
    try:
        return list(model.inputs or [])
    except (AttributeError, ValueError):  # an unbuilt Sequential has no inputs yet
        return []


def _functional_of(model):
    """The object holding the node graph: Keras 3 Sequential keeps it in `_functional`."""
    functional = getattr(model, "_functional", None) or model
    if not hasattr(functional, "_nodes_by_depth") or not _model_inputs(model):
        raise TfquantError(
            f"model {model.name!r} has no defined inputs; build it with an Input layer "
            "(or call it on data once) before converting")
    return functional


def _node_io(node):
    """(layer, flat input KerasTensors, flat output KerasTensors) of a node, either Keras."""
    if hasattr(node, "operation"):  # Keras 3
        return node.operation, list(node.input_tensors), list(node.output_tensors)
    import tensorflow as tf  # tf_keras nodes hold nested structures
    return node.layer, list(node.keras_inputs), tf.nest.flatten(node.outputs)


# Op type of a layer kept as the Keras layer itself (quantization-aware training renders it
# back as that layer, in float).
KERAS_LAYER = "KERAS_LAYER"


class _Builder:
    def __init__(self, float_fallback: bool, keep_keras_layers: bool = False):
        self.graph = ir.Graph()
        self.float_fallback = float_fallback
        self.keep_keras_layers = keep_keras_layers
        self.unsupported: list = []
        self.float_layers: list = []

    # -- helpers used by the layer converters ----------------------------------------------

    def act(self, layer, x, out_shape, activation, name):
        """Emit the op for a layer's activation function; returns the output tensor."""
        kind = _activation_name(activation)
        if kind == "linear":
            return x
        if kind == "softmax":
            return self.op("SOFTMAX", [x], out_shape, name, layer, {"beta": 1.0})
        if kind in _ACTIVATION_OPS:
            return self.op(_ACTIVATION_OPS[kind], [x], out_shape, name, layer)
        raise _Unsupported(f"{type(layer).__name__} activation={kind}")

    def op(self, op_type, inputs, out_shape, name, layer, options=None):
        out = self.graph.add_tensor(name, out_shape)
        self.graph.add_op(op_type, inputs, [out], options, source=(layer.name,))
        return out

    def const(self, name, data, dtype=np.float32):
        return self.graph.add_const(name, data, dtype)

    # -- graph walk -------------------------------------------------------------------------

    def inline(self, model, input_names: list) -> list:
        functional = _functional_of(model)
        names = {}
        for keras_tensor, name in zip(model.inputs, input_names):
            names[id(keras_tensor)] = name
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                layer, inputs, outputs = _node_io(node)
                if type(layer).__name__ == "InputLayer":
                    continue
                try:
                    in_names = [names[id(t)] for t in inputs]
                except KeyError:
                    raise TfquantError(
                        f"layer {layer.name!r} reads a tensor from outside its model; "
                        "tfquant converts models whose inputs are Input layers") from None
                if _is_model(layer):
                    out_names = self.inline(layer, in_names)
                else:
                    self._inputs_of_current_node = inputs
                    out_names = self.layer(layer, in_names, outputs)
                for keras_tensor, name in zip(outputs, out_names):
                    names[id(keras_tensor)] = name
        return [names[id(t)] for t in model.outputs]

    def layer(self, layer, in_names, outputs) -> list:
        kind = type(layer).__name__
        converter = _CONVERTERS.get(kind)
        first_new_op = len(self.graph.ops)
        try:
            if converter is None:
                raise _Unsupported(kind)
            data_format = getattr(layer, "data_format", "channels_last")
            if data_format not in (None, "channels_last"):
                raise _Unsupported(f"{kind} data_format={data_format}")
            return [converter(self, layer, in_names, _shape(outputs[0]))]
        except _Unsupported as reason:
            del self.graph.ops[first_new_op:]  # drop a partial conversion
            if self.keep_keras_layers:
                self.float_layers.append((layer.name, str(reason)))
                return self.keras_layer(layer, in_names, outputs)
            if self.float_fallback:
                self.float_layers.append((layer.name, str(reason)))
                return float_fallback.splice_float_layer(self.graph, layer, in_names,
                                                         self._inputs_of_current_node,
                                                         outputs)
            self.unsupported.append((layer.name, str(reason)))
            return [in_names[0] if in_names else layer.name for _ in outputs]

    def keras_layer(self, layer, in_names, outputs) -> list:
        out_names = [self.graph.add_tensor(layer.name, _shape(t)) for t in outputs]
        self.graph.add_op(KERAS_LAYER, list(in_names), out_names,
                          {"keras_layer": ir.SharedRef(layer), float_fallback.FLOAT_FALLBACK: True},
                          source=(layer.name,))
        return out_names


def from_keras(model, float_fallback: bool = False,
               keep_keras_layers: bool = False) -> ir.Graph:
    """Build the IR of a Keras 3 or tf_keras model (Sequential, Functional, nested).

    Layers tfquant cannot quantize raise UnsupportedLayerError naming all of them, or, with
    `float_fallback`, become float TFLite ops (marked so the quantizer keeps them float), or,
    with `keep_keras_layers` (quantization-aware training), KERAS_LAYER ops holding the layer.
    """
    builder = _Builder(float_fallback, keep_keras_layers)
    graph = builder.graph
    input_names = []
    _functional_of(model)  # fails clearly on models without inputs
    for keras_tensor in model.inputs:
        dtype = getattr(keras_tensor, "dtype", "float32")
        if "float" not in str(dtype):
            raise TfquantError(f"model input {keras_tensor.name!r} has dtype {dtype}; tfquant "
                               "converts models with float inputs")
        history = getattr(keras_tensor, "_keras_history", None)
        layer = getattr(history, "operation", None) or getattr(history, "layer", None)
        name = getattr(layer, "name", None) or keras_tensor.name.split(":")[0] or "input"
        input_names.append(graph.add_tensor(name, _shape(keras_tensor)))
    graph.inputs = input_names
    graph.outputs = builder.inline(model, input_names)
    if builder.unsupported:
        raise UnsupportedLayerError(
            builder.unsupported,
            "replace them with supported layers (docs/supported_layers.md lists them) or "
            "convert with float fallback (--float_fallback) to keep them in float")
    graph.float_layers = builder.float_layers
    # A graph output that is also an input (identity model) cannot be expressed in TFLite.
    graph.validate()
    return graph


# -- one converter per Keras layer type -------------------------------------------------------
# Each takes (builder, layer, input tensor names, output shape) and returns the output name.

def _padding(layer) -> str:
    padding = str(layer.padding).upper()
    if padding not in ("SAME", "VALID"):
        raise TfquantError(f"layer {layer.name!r} uses padding={layer.padding!r}; only 'same' "
                           "and 'valid' exist in TFLite")
    return padding


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _conv2d(b: _Builder, layer, inputs, out_shape):
    if getattr(layer, "groups", 1) != 1:
        raise _Unsupported(f"Conv2D groups={layer.groups}")
    kernel = _value(layer.kernel)  # [kh, kw, in, out]
    bias = _value(layer.bias) if layer.use_bias else np.zeros(kernel.shape[-1], np.float32)
    options = {"padding": _padding(layer), "stride": _pair(layer.strides),
               "dilation": _pair(layer.dilation_rate)}
    w = b.const(f"{layer.name}/kernel", kernel.transpose(3, 0, 1, 2))
    bias_name = b.const(f"{layer.name}/bias", bias)
    pre = layer.name + "/conv" if _activation_name(layer.activation) != "linear" else layer.name
    y = b.op("CONV_2D", [inputs[0], w, bias_name], out_shape, pre, layer, options)
    return b.act(layer, y, out_shape, layer.activation, layer.name)


def _depthwise_kernel(layer) -> np.ndarray:
    variable = getattr(layer, "depthwise_kernel", None)
    return _value(variable if variable is not None else layer.kernel)


def _emit_depthwise(b, layer, x, kernel, bias, out_shape, name):
    kh, kw, cin, mult = kernel.shape
    options = {"padding": _padding(layer), "stride": _pair(layer.strides),
               "dilation": _pair(layer.dilation_rate), "depth_multiplier": int(mult)}
    w = b.const(f"{name}/depthwise_kernel", kernel.reshape(1, kh, kw, cin * mult))
    bias_name = b.const(f"{name}/bias", bias)
    return b.op("DEPTHWISE_CONV_2D", [x, w, bias_name], out_shape, name, layer, options)


def _depthwise_conv2d(b: _Builder, layer, inputs, out_shape):
    kernel = _depthwise_kernel(layer)
    channels = kernel.shape[2] * kernel.shape[3]
    bias = _value(layer.bias) if layer.use_bias else np.zeros(channels, np.float32)
    pre = layer.name + "/dw" if _activation_name(layer.activation) != "linear" else layer.name
    y = _emit_depthwise(b, layer, inputs[0], kernel, bias, out_shape, pre)
    return b.act(layer, y, out_shape, layer.activation, layer.name)


def _separable_conv2d(b: _Builder, layer, inputs, out_shape):
    kernel = _depthwise_kernel(layer)
    kh, kw, cin, mult = kernel.shape
    mid_shape = out_shape[:-1] + (cin * mult,)
    mid = _emit_depthwise(b, layer, inputs[0], kernel, np.zeros(cin * mult, np.float32),
                          mid_shape, f"{layer.name}/depthwise")
    pointwise = _value(layer.pointwise_kernel)  # [1, 1, cin*mult, out]
    bias = _value(layer.bias) if layer.use_bias else np.zeros(pointwise.shape[-1], np.float32)
    w = b.const(f"{layer.name}/pointwise_kernel", pointwise.transpose(3, 0, 1, 2))
    bias_name = b.const(f"{layer.name}/bias", bias)
    pre = layer.name + "/pw" if _activation_name(layer.activation) != "linear" else layer.name
    options = {"padding": "VALID", "stride": (1, 1), "dilation": (1, 1)}
    y = b.op("CONV_2D", [mid, w, bias_name], out_shape, pre, layer, options)
    return b.act(layer, y, out_shape, layer.activation, layer.name)


def _dense(b: _Builder, layer, inputs, out_shape):
    kernel = _value(layer.kernel)  # [in, out]
    bias = _value(layer.bias) if layer.use_bias else np.zeros(kernel.shape[-1], np.float32)
    w = b.const(f"{layer.name}/kernel", kernel.T)
    bias_name = b.const(f"{layer.name}/bias", bias)
    pre = layer.name + "/matmul" if _activation_name(layer.activation) != "linear" else layer.name
    x, fc_shape = inputs[0], out_shape
    flatten = len(out_shape) > 2 and all(d > 0 for d in out_shape[1:-1])
    if flatten:
        # Dense on [N, ..., in]: RESHAPE to [-1, in], 2-D FULLY_CONNECTED, RESHAPE back. The
        # keep_num_dims form computes wrong per-channel results on tflite-runtime 2.14.
        in_shape = (-1, kernel.shape[0])
        shape = b.const(f"{layer.name}/flatten_shape", np.array(in_shape, np.int32), np.int32)
        x = b.op("RESHAPE", [x, shape], in_shape, f"{layer.name}/flatten", layer)
        fc_shape = (-1, kernel.shape[1])
        pre = f"{layer.name}/matmul"
    options = {"keep_num_dims": len(fc_shape) > 2}
    y = b.op("FULLY_CONNECTED", [x, w, bias_name], fc_shape, pre, layer, options)
    if not flatten:
        return b.act(layer, y, out_shape, layer.activation, layer.name)
    y = b.act(layer, y, fc_shape, layer.activation, f"{layer.name}/activation")
    shape = b.const(f"{layer.name}/shape", np.array(out_shape, np.int32), np.int32)
    return b.op("RESHAPE", [y, shape], out_shape, layer.name, layer)


def _batch_norm(b: _Builder, layer, inputs, out_shape):
    axis = layer.axis[0] if isinstance(layer.axis, (list, tuple)) else layer.axis
    if axis not in (-1, len(out_shape) - 1):
        raise _Unsupported(f"BatchNormalization axis={layer.axis}")
    mean = _value(layer.moving_mean)
    options = {
        "gamma": _value(layer.gamma) if layer.scale else np.ones_like(mean),
        "beta": _value(layer.beta) if layer.center else np.zeros_like(mean),
        "mean": mean, "variance": _value(layer.moving_variance),
        "epsilon": float(layer.epsilon),
    }
    return b.op("BATCH_NORM", inputs[:1], out_shape, layer.name, layer, options)


def _relu(b: _Builder, layer, inputs, out_shape):
    max_value = None if layer.max_value is None else float(np.asarray(layer.max_value))
    slope = float(np.asarray(layer.negative_slope))
    threshold = float(np.asarray(layer.threshold))
    if threshold == 0 and slope == 0 and max_value is None:
        return b.op("RELU", inputs, out_shape, layer.name, layer)
    if threshold == 0 and slope == 0 and max_value == 6.0:
        return b.op("RELU6", inputs, out_shape, layer.name, layer)
    if threshold == 0 and max_value is None:
        return b.op("LEAKY_RELU", inputs, out_shape, layer.name, layer, {"alpha": slope})
    raise _Unsupported(f"ReLU max_value={max_value} negative_slope={slope} "
                       f"threshold={threshold}")


def _leaky_relu(b: _Builder, layer, inputs, out_shape):
    alpha = float(getattr(layer, "negative_slope", getattr(layer, "alpha", 0.3)))
    return b.op("LEAKY_RELU", inputs, out_shape, layer.name, layer, {"alpha": alpha})


def _activation(b: _Builder, layer, inputs, out_shape):
    y = b.act(layer, inputs[0], out_shape, layer.activation, layer.name)
    if y == inputs[0]:  # linear: keep the layer's name on the graph as an identity
        return b.op("IDENTITY", inputs, out_shape, layer.name, layer)
    return y


def _softmax(b: _Builder, layer, inputs, out_shape):
    axis = layer.axis[0] if isinstance(layer.axis, (list, tuple)) else layer.axis
    if axis not in (-1, len(out_shape) - 1):
        raise _Unsupported(f"Softmax axis={layer.axis}")
    return b.op("SOFTMAX", inputs, out_shape, layer.name, layer, {"beta": 1.0})


def _add(b: _Builder, layer, inputs, out_shape):
    y = inputs[0]
    for i, other in enumerate(inputs[1:]):
        last = i == len(inputs) - 2
        y = b.op("ADD", [y, other], out_shape, layer.name if last else f"{layer.name}/{i}",
                 layer)
    return y


def _concatenate(b: _Builder, layer, inputs, out_shape):
    return b.op("CONCATENATION", inputs, out_shape, layer.name, layer,
                {"axis": int(layer.axis) % len(out_shape)})


def _pool(op_type):
    def convert(b: _Builder, layer, inputs, out_shape):
        options = {"padding": _padding(layer), "stride": _pair(layer.strides),
                   "filter": _pair(layer.pool_size)}
        return b.op(op_type, inputs, out_shape, layer.name, layer, options)
    return convert


def _global_average_pooling2d(b: _Builder, layer, inputs, out_shape):
    axes = b.const(f"{layer.name}/axes", np.array([1, 2], np.int32), np.int32)
    return b.op("MEAN", [inputs[0], axes], out_shape, layer.name, layer,
                {"keep_dims": len(out_shape) == 4})


def _reshape(b: _Builder, layer, inputs, out_shape):
    new_shape = b.const(f"{layer.name}/shape", np.array(out_shape, np.int32), np.int32)
    return b.op("RESHAPE", [inputs[0], new_shape], out_shape, layer.name, layer)


def _zero_padding2d(b: _Builder, layer, inputs, out_shape):
    (top, bottom), (left, right) = layer.padding
    paddings = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32)
    pads = b.const(f"{layer.name}/paddings", paddings, np.int32)
    return b.op("PAD", [inputs[0], pads], out_shape, layer.name, layer)


def _identity(b: _Builder, layer, inputs, out_shape):
    return b.op("IDENTITY", inputs[:1], out_shape, layer.name, layer)


def _training_only(b: _Builder, layer, inputs, out_shape):
    """Dropout and noise layers: identities at inference (the layer is kept for QAT)."""
    return b.op("IDENTITY", inputs[:1], out_shape, layer.name, layer,
                {"training_layer": ir.SharedRef(layer)})


def _rescaling(b: _Builder, layer, inputs, out_shape):
    scale = np.asarray(layer.scale, np.float32)
    offset = np.asarray(layer.offset, np.float32)
    y = inputs[0]
    if np.any(scale != 1.0):
        s = b.const(f"{layer.name}/scale", scale)
        name = f"{layer.name}/mul" if np.any(offset != 0.0) else layer.name
        y = b.op("MUL", [y, s], out_shape, name, layer)
    if np.any(offset != 0.0):
        o = b.const(f"{layer.name}/offset", offset)
        y = b.op("ADD", [y, o], out_shape, layer.name, layer)
    if y == inputs[0]:
        y = b.op("IDENTITY", [y], out_shape, layer.name, layer)
    return y


def _folded_batch_norm(b: _Builder, layer, inputs, out_shape):
    """A trained QAT conv/dense + BN: the inference fold with the moving statistics (the
    weights the fake quantizer saw; quantize_int8 puts them on the same grid)."""
    quantize = float(np.asarray(layer.quantize))
    layer.quantize.assign(0.0)
    try:
        kernel = np.array(layer.folded_kernel(), np.float32)
    finally:
        layer.quantize.assign(quantize)
    bias = np.array(layer.folded_bias(), np.float32)
    options = {"padding": layer.padding, "stride": tuple(layer.strides),
               "dilation": tuple(layer.dilation_rate)}
    if layer.kind == "conv2d":
        w = b.const(f"{layer.name}/kernel", kernel.transpose(3, 0, 1, 2))
        op_type = "CONV_2D"
    elif layer.kind == "depthwise_conv2d":
        kh, kw, cin, mult = kernel.shape
        w = b.const(f"{layer.name}/kernel", kernel.reshape(1, kh, kw, cin * mult))
        options["depth_multiplier"] = int(mult)
        op_type = "DEPTHWISE_CONV_2D"
    else:
        if len(out_shape) != 2:
            raise _Unsupported("FoldedBatchNorm(dense) on inputs of rank > 2")
        w = b.const(f"{layer.name}/kernel", kernel.T)
        options = {"keep_num_dims": False}
        op_type = "FULLY_CONNECTED"
    bias_name = b.const(f"{layer.name}/bias", bias)
    # The weight grid the layer trained on; the int8 export puts the weights on the same grid.
    options["qat_weights"] = {"bits": layer.weight_bits, "symmetric": layer.weight_symmetric,
                              "per_channel": layer.weight_per_channel}
    return b.op(op_type, [inputs[0], w, bias_name], out_shape, layer.name, layer, options)


def _constant_operand(b: _Builder, layer, inputs, out_shape):
    """A QAT elementwise op with a constant (Rescaling, a standalone batch norm): MUL / ADD."""
    c = b.const(f"{layer.name}/constant", np.asarray(layer.get_constant(), np.float32))
    return b.op(layer.op.upper(), [inputs[0], c], out_shape, layer.name, layer)


def _activation_quantizer(b: _Builder, layer, inputs, out_shape):
    """Fake quantization is an identity in the exported graph; its learned range becomes the
    range of the tensor it quantizes."""
    if float(np.asarray(layer.initialized)) < 0.5:
        raise TfquantError(f"activation quantizer {layer.name!r} has no range yet: train the "
                           "QAT model (or run it with training=True) before exporting")
    y = b.op("IDENTITY", inputs[:1], out_shape, layer.name, layer)
    value_range = (float(np.asarray(layer.range_min)), float(np.asarray(layer.range_max)))
    b.graph.qat_ranges[inputs[0]] = value_range
    b.graph.qat_ranges[y] = value_range
    return y


_CONVERTERS: dict[str, Callable] = {
    "Conv2D": _conv2d,
    "DepthwiseConv2D": _depthwise_conv2d,
    "SeparableConv2D": _separable_conv2d,
    "Dense": _dense,
    "BatchNormalization": _batch_norm,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
    "Activation": _activation,
    "Softmax": _softmax,
    "Add": _add,
    "Concatenate": _concatenate,
    "MaxPooling2D": _pool("MAX_POOL_2D"),
    "AveragePooling2D": _pool("AVERAGE_POOL_2D"),
    "GlobalAveragePooling2D": _global_average_pooling2d,
    "Flatten": _reshape,
    "Reshape": _reshape,
    "ZeroPadding2D": _zero_padding2d,
    "Dropout": _training_only,
    "SpatialDropout2D": _training_only,
    "GaussianNoise": _training_only,
    "Rescaling": _rescaling,
    "FoldedBatchNorm": _folded_batch_norm,
    "ActivationQuantizer": _activation_quantizer,
    "ConstantOperand": _constant_operand,
}

SUPPORTED_LAYERS = tuple(sorted(_CONVERTERS))
