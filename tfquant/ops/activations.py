"""Activation functions: RELU, RELU6, LEAKY_RELU, PRELU, HARD_SWISH, LOGISTIC, TANH, SOFTMAX
(Keras ReLU, LeakyReLU, Softmax layers and activation="..." arguments)."""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.errors import ModelLoadError
from tfquant.ops import common, delegate_models, keras_support as ks, tflite_support as ts
from tfquant.ops.record import DelegateCase, NotApplicable, OpRecord, QuantRule
from tfquant.vocabulary import NoOptions

_NO_WEIGHTS = NotApplicable("no weights")
# Output params the int8 / int16 kernels fix (notes/tflite-int8.md section 1).
_PROBABILITY = {8: (1.0 / 256.0, -128), 16: (1.0 / 32768.0, 0)}
_SIGNED_UNIT = {8: (1.0 / 128.0, 0), 16: (1.0 / 32768.0, 0)}


def _softmax_min_input_scale(options) -> float:
    """The reference int8 SOFTMAX kernel aborts when beta * input_scale * 2^26 <= 1
    (notes/tflite-int8.md section 2); keep a margin of 2 above that bound."""
    return 2.0 / 2 ** 26 / float(options.beta)


@dataclasses.dataclass(frozen=True)
class LeakyReluOptions:
    alpha: float


@dataclasses.dataclass(frozen=True)
class SoftmaxOptions:
    beta: float = 1.0


# -- Keras ------------------------------------------------------------------------------------

def _relu(b, layer, inputs, out_shape):
    max_value = None if layer.max_value is None else float(np.asarray(layer.max_value))
    slope = float(np.asarray(layer.negative_slope))
    threshold = float(np.asarray(layer.threshold))
    if threshold == 0 and slope == 0 and max_value is None:
        return b.op("RELU", inputs, out_shape, layer.name, layer)
    if threshold == 0 and slope == 0 and max_value == 6.0:
        return b.op("RELU6", inputs, out_shape, layer.name, layer)
    if threshold == 0 and max_value is None:
        return b.op("LEAKY_RELU", inputs, out_shape, layer.name, layer, LeakyReluOptions(slope))
    raise ks.Unsupported(f"ReLU max_value={max_value} negative_slope={slope} "
                         f"threshold={threshold}")


def _leaky_relu(b, layer, inputs, out_shape):
    alpha = float(getattr(layer, "negative_slope", getattr(layer, "alpha", 0.3)))
    return b.op("LEAKY_RELU", inputs, out_shape, layer.name, layer, LeakyReluOptions(alpha))


def _softmax(b, layer, inputs, out_shape):
    ks.last_axis(layer.axis, len(out_shape), f"Softmax axis={layer.axis}")
    return b.op("SOFTMAX", inputs, out_shape, layer.name, layer, SoftmaxOptions(1.0))


def _silu(b, layer, x, out_shape, name):
    from tfquant.ops.elementwise import BinaryOptions
    gate = b.op("LOGISTIC", [x], out_shape, f"{name}/sigmoid", layer)
    return b.op("MUL", [x, gate], out_shape, name, layer, BinaryOptions())


def _hard_sigmoid(b, layer, x, out_shape, name):
    """relu6(a * x + 3) / 6: a = 1 for Keras 3 (relu6(x + 3) / 6), 1.2 for tf_keras
    (clip(0.2 x + 0.5, 0, 1))."""
    from tfquant.ops.elementwise import BinaryOptions
    activation = getattr(layer, "activation", None)
    slope = 1.2 if getattr(activation, "__module__", "").startswith("tf_keras") else 1.0
    y = x
    if slope != 1.0:
        y = b.op("MUL", [y, b.const(f"{name}/slope", np.float32(slope))], out_shape,
                 f"{name}/slope", layer, BinaryOptions())
    y = b.op("ADD", [y, b.const(f"{name}/three", np.float32(3.0))], out_shape, f"{name}/add",
             layer, BinaryOptions())
    y = b.op("RELU6", [y], out_shape, f"{name}/relu6", layer)
    return b.op("MUL", [y, b.const(f"{name}/sixth", np.float32(1.0 / 6.0))], out_shape, name,
                layer, BinaryOptions())


# -- TFLite -----------------------------------------------------------------------------------

def _read_leaky_relu(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.LeakyReluOptionsT, label)
    ts.unary(imp, inputs, label)
    if not np.isfinite(o.alpha):
        raise ts.KeepFloat(f"alpha {o.alpha}")
    return "LEAKY_RELU", list(inputs), LeakyReluOptions(float(o.alpha))


def _read_prelu(imp, inputs, outputs, options, label):
    if len(inputs) != 2 or not all(inputs):
        raise ModelLoadError(f"{label} needs two inputs")
    ts.activation_input(imp, inputs[0], label)
    ts.const(imp, inputs[1], None, "alpha", label)
    return "PRELU", list(inputs), NoOptions()


def _read_softmax(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.SoftmaxOptionsT, label)
    ts.unary(imp, inputs, label)
    if not np.isfinite(o.beta) or o.beta <= 0:
        raise ts.KeepFloat(f"beta {o.beta}")
    return "SOFTMAX", list(inputs), SoftmaxOptions(float(o.beta))


def _write_leaky_relu(options):
    o = schema.LeakyReluOptionsT()
    o.alpha = float(options.alpha)
    return schema.BuiltinOptions.LeakyReluOptions, o


def _write_softmax(options):
    o = schema.SoftmaxOptionsT()
    o.beta = float(options.beta)
    return schema.BuiltinOptions.SoftmaxOptions, o


def _leaky_relu_version(t) -> int:  # TFLiteConverter writes 1 for int8 too
    return 2 if t.input == common.INT16 else 1


# -- QAT --------------------------------------------------------------------------------------

def _render_activation(kind):
    def render(r, op, x, name):
        return r.keras.layers.Activation(kind, name=name)(x[0])
    return render


def _render_relu(max_value):
    def render(r, op, x, name):
        return r.keras.layers.ReLU(max_value, name=name)(x[0])
    return render


def _render_leaky_relu(r, op, x, name):
    return r.keras.layers.LeakyReLU(negative_slope=op.options.alpha, name=name)(x[0])


def _prelu_model():
    rng = np.random.default_rng(12)
    return delegate_models.after_conv_graph(
        "prelu", "PRELU", constants=[rng.uniform(0.05, 0.4, 4).astype(np.float32)])


_UNCLAIMED = (DelegateCase("unclaimed_activations", delegate_models.unclaimed_activations,
                           claimed=False),)


def _unary(name, quant, keras_activations=(), qat=None, delegate=_UNCLAIMED,
           version=common.version_by_type, write=common.no_options, keras=None):
    return OpRecord(
        name=name, options=NoOptions, write=write, read=ts.unary_reader(name), version=version,
        quant=quant, weights=_NO_WEIGHTS,
        keras=keras or NotApplicable(f"Keras activation functions become {name}"),
        keras_activations=keras_activations,
        qat=qat or NotApplicable("QAT renders Keras models, which never hold it"),
        delegate=delegate)


RELU = _unary("RELU", QuantRule(), ("relu",), _render_relu(None), keras={"ReLU": _relu})
RELU6 = dataclasses.replace(_unary("RELU6", QuantRule(), ("relu6",), _render_relu(6.0)),
                            keras_composite_activations=(("hard_sigmoid", _hard_sigmoid),))
TANH = _unary("TANH", QuantRule(fixed_output=_SIGNED_UNIT), ("tanh",),
              _render_activation("tanh"))
LOGISTIC = dataclasses.replace(
    _unary("LOGISTIC", QuantRule(fixed_output=_PROBABILITY), ("sigmoid",),
           _render_activation("sigmoid"),
           (DelegateCase("sigmoid_hard_swish", delegate_models.sigmoid_hard_swish),)),
    keras_composite_activations=(("silu", _silu), ("swish", _silu)))
# int8 / uint8 only, on every runtime: float inside 16x8 models.
HARD_SWISH = _unary("HARD_SWISH", QuantRule(int16=False), ("hard_swish", "hard_silu"),
                    _render_activation("hard_swish"),
                    (DelegateCase("sigmoid_hard_swish", delegate_models.sigmoid_hard_swish),),
                    version=common.version_one,
                    write=common.empty_options(schema.HardSwishOptionsT,
                                               schema.BuiltinOptions.HardSwishOptions))

LEAKY_RELU = OpRecord(
    name="LEAKY_RELU", options=LeakyReluOptions, write=_write_leaky_relu,
    read=_read_leaky_relu, version=_leaky_relu_version, quant=QuantRule(),
    weights=_NO_WEIGHTS, keras={"LeakyReLU": _leaky_relu}, qat=_render_leaky_relu,
    delegate=_UNCLAIMED)

# Alpha int8 symmetric, as TFLiteConverter writes it (asymmetric measured 0.3 dB lower); no
# int16 kernel.
PRELU = OpRecord(
    name="PRELU", options=NoOptions, write=common.no_options, read=_read_prelu,
    version=common.version_one, quant=QuantRule(int16=False, symmetric_const_operands=True),
    weights=_NO_WEIGHTS, keras=NotApplicable("Keras PReLU is not converted natively yet"),
    qat=NotApplicable("QAT renders Keras models, which never hold it"),
    delegate=(DelegateCase("prelu_on_cpu", _prelu_model, claimed=False),))

SOFTMAX = OpRecord(
    name="SOFTMAX", options=SoftmaxOptions, write=_write_softmax, read=_read_softmax,
    version=common.version_by_type,
    quant=QuantRule(fixed_output=_PROBABILITY, min_int8_input_scale=_softmax_min_input_scale),
    weights=_NO_WEIGHTS, keras={"Softmax": _softmax}, keras_activations=("softmax",),
    qat=_render_activation("softmax"),
    delegate=(DelegateCase("mean_and_softmax", delegate_models.mean_and_softmax),))

RECORDS = (RELU, RELU6, LEAKY_RELU, PRELU, HARD_SWISH, LOGISTIC, TANH, SOFTMAX)
