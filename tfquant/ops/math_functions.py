"""Element-wise math with int8 lookup-table kernels: EXP, RSQRT (Keras LayerNormalization),
ABS, ELU, GELU (Keras activation="gelu", "elu"), LOG_SOFTMAX; and MAXIMUM / MINIMUM (Keras
Maximum, Minimum).

LayerNormalization is lowered as TFLiteConverter lowers it: MEAN, SQUARED_DIFFERENCE, MEAN,
ADD epsilon, RSQRT, SUB, MUL, then MUL gamma and ADD beta.

Versions and params are the ones TF 2.21's TFLiteConverter writes for int8 (measured): each
table op takes its own output params, LOG_SOFTMAX fixes them to (16/256, 127), MAXIMUM /
MINIMUM compare raw codes, so their inputs and output share one grid. None of them has an
int16 kernel on every runtime: in 16x8 models they run in float. NEG has no record: the int8
kernel is missing in tflite-runtime 2.14 ("Neg only currently supports int64, int32, and
float32"), so it stays float.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.errors import ModelLoadError
from tfquant.ops import common, delegate_models, keras_support as ks, tflite_support as ts
from tfquant.ops.record import DelegateCase, NotApplicable, OpRecord, QatCompute, QuantRule
from tfquant.vocabulary import NoOptions

_NO_WEIGHTS = NotApplicable("no weights")
def _elementwise(function):
    """QAT computation of a unary or binary elementwise op: `function(tf)` maps the
    operands."""
    return QatCompute(lambda tf, operands, options: function(tf)(*operands))
_LOG_PROBABILITY = {8: (16.0 / 256.0, 127)}


@dataclasses.dataclass(frozen=True)
class GeluOptions:
    approximate: bool = False


# -- Keras ------------------------------------------------------------------------------------

def _keras_binary(op_type):
    def convert(b, layer, inputs, out_shape):
        y = inputs[0]
        for i, other in enumerate(inputs[1:]):
            last = i == len(inputs) - 2
            y = b.op(op_type, [y, other], out_shape, layer.name if last else
                     f"{layer.name}/{i}", layer)
        return y
    return convert


def _layer_normalization(b, layer, inputs, out_shape):
    from tfquant.ops.elementwise import BinaryOptions
    from tfquant.ops.pooling import ReducerOptions
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if [a % len(out_shape) for a in axis] != [len(out_shape) - 1]:
        raise ks.Unsupported(f"LayerNormalization axis={layer.axis} (only the last axis)")
    if getattr(layer, "rms_scaling", False):
        raise ks.Unsupported("LayerNormalization rms_scaling=True")
    name, x, binary = layer.name, inputs[0], BinaryOptions()
    reduced = tuple(out_shape[:-1]) + (1,)
    axes = b.const(f"{name}/axes", np.array([len(out_shape) - 1], np.int32), np.int32)
    mean = b.op("MEAN", [x, axes], reduced, f"{name}/mean", layer, ReducerOptions(True))
    square = b.op("SQUARED_DIFFERENCE", [x, mean], out_shape, f"{name}/squared_difference",
                  layer)
    axes2 = b.const(f"{name}/axes2", np.array([len(out_shape) - 1], np.int32), np.int32)
    variance = b.op("MEAN", [square, axes2], reduced, f"{name}/variance", layer,
                    ReducerOptions(True))
    variance = b.op("ADD", [variance, b.const(f"{name}/epsilon", np.float32(layer.epsilon))],
                    reduced, f"{name}/variance_epsilon", layer, binary)
    inverse = b.op("RSQRT", [variance], reduced, f"{name}/rsqrt", layer)
    centered = b.op("SUB", [x, mean], out_shape, f"{name}/centered", layer, binary)
    last = not layer.scale and not layer.center
    y = b.op("MUL", [centered, inverse], out_shape, name if last else f"{name}/normalized",
             layer, binary)
    if layer.scale:
        y = b.op("MUL", [y, b.const(f"{name}/gamma", ks.value(layer.gamma))], out_shape,
                 name if not layer.center else f"{name}/scaled", layer, binary)
    if layer.center:
        y = b.op("ADD", [y, b.const(f"{name}/beta", ks.value(layer.beta))], out_shape, name,
                 layer, binary)
    return y


# -- TFLite -----------------------------------------------------------------------------------

def _read_gelu(imp, inputs, outputs, options, label):
    o = ts.require(options, schema.GeluOptionsT, label)
    ts.unary(imp, inputs, label)
    return "GELU", list(inputs), GeluOptions(bool(o.approximate))


def _write_gelu(options):
    o = schema.GeluOptionsT()
    o.approximate = bool(options.approximate)
    return schema.BuiltinOptions.GeluOptions, o


def _read_extremum(op_type):
    def read(imp, inputs, outputs, options, label):
        ts.require(options, schema.MaximumMinimumOptionsT, label)
        if len(inputs) != 2 or not all(inputs):
            raise ModelLoadError(f"{label} needs two inputs")
        for name in inputs:  # a constant would have to be re-gridded onto the activations'
            ts.activation_input(imp, name, label)
        return op_type, list(inputs), NoOptions()
    return read


# -- delegate ---------------------------------------------------------------------------------

def _unclaimed(op_type, options=None, constants=()):
    def build():
        return delegate_models.after_conv_graph(op_type.lower(), op_type, options, constants)
    return (DelegateCase(f"{op_type.lower()}_on_cpu", build, claimed=False),)


def _layer_normalization_model():
    import keras
    keras.utils.set_random_seed(5)
    x = keras.Input((6, 5))
    y = keras.layers.LayerNormalization(name="ln")(keras.layers.Dense(8, name="dense")(x))
    return keras.Model(x, y), (2, 6, 5), {}


def _extremum_case(op_type):
    def build():
        return delegate_models.after_conv_graph(op_type.lower(), op_type, second_input=True)
    return (DelegateCase(f"{op_type.lower()}_on_cpu", build, claimed=False),)


def _rsqrt(tf, operands, options):
    """1 / sqrt(x); where the quantized input is 0 (a variance under half a step), TFLite's
    int8 RSQRT gives its largest output: here the batch's largest, so that the output's
    moving range is not blown up by 1 / sqrt(0)."""
    x = operands[0]
    positive = x > 0
    y = tf.math.rsqrt(tf.where(positive, x, tf.ones_like(x)))
    return tf.where(positive, y, tf.reduce_max(tf.where(positive, y, tf.zeros_like(y))))


def _unary(name, quant, write=common.no_options, schema_class=None, keras_activations=(),
           options=NoOptions, read=None, case_options=None, version=common.version_by_type,
           keras=None, delegate=None, qat=None):
    return OpRecord(
        name=name, options=options, write=write, read=read or ts.unary_reader(name, schema_class),
        version=version, quant=quant, weights=_NO_WEIGHTS,
        keras=keras or NotApplicable(f"Keras activation functions become {name}"
                                     if keras_activations else
                                     "no Keras layer becomes it alone"),
        keras_activations=keras_activations,
        qat=qat or NotApplicable("no quantization-aware form: QAT keeps it float"),
        delegate=_unclaimed(name, case_options) if delegate is None else delegate)


EXP = _unary("EXP", QuantRule(int16=False),
             common.empty_options(schema.ExpOptionsT, schema.BuiltinOptions.ExpOptions),
             schema.ExpOptionsT, qat=_elementwise(lambda tf: tf.exp))
RSQRT = _unary("RSQRT", QuantRule(int16=False),
               keras={"LayerNormalization": _layer_normalization},
               qat=QatCompute(_rsqrt),
               delegate=(DelegateCase("layer_normalization_on_cpu", _layer_normalization_model,
                                      claimed=False),))
ABS = _unary("ABS", QuantRule(int16=False),
             common.empty_options(schema.AbsOptionsT, schema.BuiltinOptions.AbsOptions),
             schema.AbsOptionsT, qat=_elementwise(lambda tf: tf.abs))
# The runtimes register ELU version 1 only, int8 included.
ELU = _unary("ELU", QuantRule(int16=False), keras_activations=("elu",),
             version=common.version_one, qat=_elementwise(lambda tf: tf.nn.elu),
             delegate=NotApplicable("TFLite's reference op resolver has no ELU kernel to check "
                                    "the delegate's CPU fallback against"))
GELU = _unary("GELU", QuantRule(int16=False), _write_gelu, keras_activations=("gelu",),
              options=GeluOptions, read=_read_gelu, case_options=GeluOptions(),
              qat=QatCompute(lambda tf, operands, options: tf.nn.gelu(
                  operands[0], approximate=options.approximate)))
LOG_SOFTMAX = _unary("LOG_SOFTMAX", QuantRule(fixed_output=_LOG_PROBABILITY, int16=False),
                     common.empty_options(schema.LogSoftmaxOptionsT,
                                          schema.BuiltinOptions.LogSoftmaxOptions),
                     schema.LogSoftmaxOptionsT, qat=_elementwise(lambda tf: tf.nn.log_softmax))


def _extremum(op_type, keras_layer, function):
    return OpRecord(
        name=op_type, options=NoOptions,
        write=common.empty_options(schema.MaximumMinimumOptionsT,
                                   schema.BuiltinOptions.MaximumMinimumOptions),
        read=_read_extremum(op_type), version=common.version_by_type,
        quant=QuantRule(same_scale=True, same_scale_all_inputs=True, int16=False),
        weights=_NO_WEIGHTS, keras={keras_layer: _keras_binary(op_type)},
        qat=_elementwise(lambda tf: getattr(tf, function)),
        delegate=_extremum_case(op_type))


MAXIMUM = _extremum("MAXIMUM", "Maximum", "maximum")
MINIMUM = _extremum("MINIMUM", "Minimum", "minimum")

RECORDS = (EXP, RSQRT, ABS, ELU, GELU, LOG_SOFTMAX, MAXIMUM, MINIMUM)
