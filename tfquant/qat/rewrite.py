"""quantize_model: a float Keras model -> a trainable QAT Keras 3 model.

The model goes through the converter's own frontend and passes (identity removal, activation
fusion, reshape merging), with one QAT difference: batch norms stay attached to their conv /
dense op instead of being folded into constants, so that the rendered FoldedBatchNorm layers
implement the paper's training-time fold. Fake quantization is then placed where the int8 graph
has quantized tensors: every weight (per channel by default), the model input and the output of
every op that produces a new int8 tensor; not between a conv and its batch norm, nor between an
op and its fused ReLU. Tensors the int8 model holds on one grid (the same-scale groups of
tfquant.params: a concatenation's inputs and output) share one quantizer, which quantizes them
all with the union of their ranges, as the export does. After training,
`tfquant.convert(qat_model)` exports the int8 model from the learned ranges and folded weights.

Layers the rewrite cannot quantize stay float: the layer itself (a copy) runs in the QAT model
between the fake-quantized tensors around it, and the int8 export keeps it as float TFLite ops
with DEQUANTIZE / QUANTIZE around them. `float_layers(qat_model)` lists them.
"""

from __future__ import annotations

import dataclasses
import logging

import keras
import numpy as np

from tfquant import ir, ops, params, vocabulary
from tfquant.errors import UnsupportedLayerError
from tfquant.ops import weights
from tfquant.frontends.keras_model import from_keras
from tfquant.passes import fuse_activation, lower_batch_norm, merge_reshapes, remove_identity
from tfquant.qat.activation_quantizer import ActivationQuantizer, check_initial_range
from tfquant.qat.batch_norm_folding import FoldedBatchNorm
from tfquant.qat.constant_operand import ConstantOperand
from tfquant.qat.embedding import QuantizedEmbedding
from tfquant.qat.op_layer import OpLayer, options_config

log = logging.getLogger("tfquant")

@dataclasses.dataclass(frozen=True)
class QatRecipe:
    """Quantizers of the QAT model.

    Attributes:
      weight_bits / activation_bits: 2..16 (4, 8 and 16 are the paper's settings).
      weight_per_channel: per-channel weights (per-layer when False).
      weight_symmetric: symmetric narrow-range weights (asymmetric is simulation only).
      ema_decay: decay of the activation-range moving averages (paper: 0.999).
      bn_momentum: momentum of the folded batch norms' moving statistics; None keeps each
        BatchNormalization's own momentum.
      activation_initial_range: (min, max) every activation range starts from before the
        moving average moves it; (-6, 6) by default, as in TF's contrib.quantize and tfmot
        (with decay 0.999 a short fine-tuning keeps ranges wide, which measured 0.2 pt better
        than starting narrow on the MobileNet-v1-style model: docs/qat_vs_tfmot.md). None
        starts each range at its first training batch's extremes.
    """

    weight_bits: int = 8
    activation_bits: int = 8
    weight_per_channel: bool = True
    weight_symmetric: bool = True
    ema_decay: float = 0.999
    bn_momentum: float | None = None
    activation_initial_range: tuple | None = (-6.0, 6.0)

    def __post_init__(self):
        object.__setattr__(self, "activation_initial_range",
                           check_initial_range(self.activation_initial_range))


def _attach_batch_norm(graph: ir.Graph) -> ir.Graph:
    """Move each BATCH_NORM that follows a conv / dense (sole consumer) onto that op
    (Op.batch_norm): the rendered FoldedBatchNorm trains the paper's fold."""
    graph = graph.copy()
    for bn in graph.ops_of_type(vocabulary.BATCH_NORM):
        producer = graph.producer(bn.inputs[0])
        if (producer is None or ops.weight_layout(producer.type) is None
                or len(graph.consumers(bn.inputs[0])) != 1 or bn.inputs[0] in graph.outputs
                or producer.batch_norm is not None):
            continue
        graph.replace_op(producer, producer.replace(
            batch_norm=bn.options, outputs=(bn.outputs[0],),
            source=producer.source + bn.source))
        graph.remove_op(bn)
    graph.prune()
    return graph


def qat_graph(model) -> ir.Graph:
    """The IR the QAT model is rendered from. Unsupported layers become KERAS_LAYER ops;
    a batch norm with no conv / dense to fold into becomes MUL + ADD, as in the int8 model."""
    graph = from_keras(model, keep_keras_layers=True)
    for op in graph.ops_of_type(vocabulary.IDENTITY):
        if op.options.training_layer is not None:  # dropout regularizes the fine-tuning too
            graph.replace_op(op, op.replace(type=vocabulary.TRAINING_ONLY, options=(
                vocabulary.LayerOptions(op.options.training_layer))))
    graph = remove_identity(graph)
    graph = lower_batch_norm(_attach_batch_norm(graph))
    return merge_reshapes(fuse_activation(graph))


def _quantized_groups(graph: ir.Graph) -> dict:
    """{tensor: (group's first root, member index, members)} for the tensors the QAT model
    fake-quantizes: where the int8 model's tensors are made (graph inputs and outputs of ops
    that are not same-scale) with params from a range. The tensors of one same-scale group
    share one quantizer: the int8 model holds them on one grid. A fixed-params output (SOFTMAX,
    LOGISTIC, TANH) gets none, unless its group has other roots: then the int8 model
    requantizes it to the group's grid, and it is a member too."""
    placed = {}
    for group in params.same_scale_groups(graph):
        free, fixed = params.group_roots(graph, group)
        roots = [n for n in group if n in free or (free and n in fixed)]
        for member, name in enumerate(roots):
            placed[name] = (roots[0], member, len(roots))
    return placed


class _Renderer:
    """Renders the QAT graph as a Keras 3 model; the op records' `qat` functions render each
    op and call back into linear / constant_operand / copy_layer."""

    def __init__(self, graph: ir.Graph, recipe: QatRecipe, momenta: dict):
        self.graph, self.recipe, self.momenta = graph, recipe, momenta
        self.keras = keras
        self.values = {}
        self.placed = _quantized_groups(graph)
        self.quantizers = {}

    def quantize(self, tensor: str, y, name: str):
        """y, fake-quantized by the quantizer of `tensor`'s group (if it has one)."""
        if tensor not in self.placed:
            return y
        first, member, members = self.placed[tensor]
        if first not in self.quantizers:
            # 16-bit activations are symmetric, as TFLite's 16x8 mode stores them.
            self.quantizers[first] = ActivationQuantizer(
                bits=self.recipe.activation_bits,
                symmetric=self.recipe.activation_bits == 16, decay=self.recipe.ema_decay,
                initial_range=self.recipe.activation_initial_range, members=members,
                name=f"{name}_quant")
        quantizer = self.quantizers[first]
        return quantizer(y, member=member) if members > 1 else quantizer(y)

    def unsupported(self, op: ir.Op, kind: str, hint: str = "convert such models "
                    "post-training instead"):
        layer = op.source[0] if op.source else op.outputs[0]
        return UnsupportedLayerError([(layer, kind)], hint)

    def linear(self, op: ir.Op):
        """A conv / depthwise / dense op as a FoldedBatchNorm (with its batch norm, if any)."""
        layout = ops.weight_layout(op.type)
        w = self.graph.tensors[op.inputs[layout.weight_input]].data
        b = self.graph.tensors[op.inputs[layout.bias_input]].data
        options, bn = op.options, op.batch_norm
        common = dict(use_bias=bool(np.any(b != 0)), weight_bits=self.recipe.weight_bits,
                      weight_symmetric=self.recipe.weight_symmetric,
                      weight_per_channel=self.recipe.weight_per_channel,
                      batch_norm=bn is not None, name=op.outputs[0].replace("/", "_"))
        if bn is not None:
            # op.source names the conv, its batch norm and any fused activation.
            momentum = next((self.momenta[s] for s in op.source if s in self.momenta), 0.99)
            common.update(epsilon=bn.epsilon, momentum=self.recipe.bn_momentum or momentum)
        layer = FoldedBatchNorm(layout.qat_kind, **layout.qat_layer_arguments(w, options),
                                **common)
        y = layer(self.values[op.inputs[layout.data_input]])
        layer.kernel.assign(layout.to_keras(w, options))
        layer.bias.assign(b)
        if bn is not None:
            layer.gamma.assign(bn.gamma)
            layer.beta.assign(bn.beta)
            layer.moving_mean.assign(bn.mean)
            layer.moving_variance.assign(bn.variance)
        return y

    def constant_operand(self, op: ir.Op, x, name):
        constant = next(self.graph.tensors[n].data for n in op.inputs
                        if n and self.graph.tensors[n].is_const)
        return ConstantOperand(op.type.lower(), constant, name=name)(x[0])

    def embedding(self, op: ir.Op, x, name):
        """GATHER of rows of a constant float table (Keras Embedding) as a QuantizedEmbedding;
        other gathers keep their layer float."""
        table = self.graph.tensors[op.inputs[0]]
        if not table.is_const or table.data.ndim != 2 or table.dtype != np.float32 or \
                (op.options.axis, op.options.batch_dims) != (0, 0):
            raise self.unsupported(op, "GATHER of anything but the rows of a constant table "
                                   "in quantization-aware training")
        return QuantizedEmbedding(*table.data.shape, table=table.data, name=name)(x[0])

    def op_layer(self, op: ir.Op, x, name):
        """An op no Keras layer computes alone, as an OpLayer (its record's QatCompute).
        Float constant operands stay unsupported here: the int8 model quantizes them, which
        the layer would not simulate."""
        constants = {i: self.graph.tensors[n].data for i, n in enumerate(op.inputs)
                     if n and self.graph.tensors[n].is_const}
        if any(np.asarray(c).dtype.kind == "f" for c in constants.values()) or "" in op.inputs:
            raise self.unsupported(op, f"{op.type} with a constant float operand in "
                                   "quantization-aware training")
        layer = OpLayer(op.type, options_config(op.options), constants, name=name)
        return layer(x if len(x) > 1 else x[0])

    def copy_layer(self, layer, x, arguments=None):
        """A copy of a source layer (Keras 3 even when the source is tf_keras), applied to x:
        called as the source model called it (`arguments`: the Keras 3 node's, which places
        x among positional and keyword arguments), else on x (one tensor or a list)."""
        try:
            if isinstance(layer, keras.layers.Layer):
                clone = type(layer).from_config(layer.get_config())
            else:  # tf_keras: the Keras 3 layer class of the same name
                keras3_class = getattr(keras.layers, type(layer).__name__, None)
                if keras3_class is None:
                    raise ValueError("Keras 3 has no layer of that name")
                clone = keras3_class.from_config(layer.get_config())
        except Exception as e:  # the layer's own message says what did not carry over
            raise UnsupportedLayerError(
                [(layer.name, type(layer).__name__)],
                f"it cannot be kept float in the Keras 3 QAT model either ({e})") from None
        if arguments is not None:
            args, kwargs = arguments.fill_in(
                {id(t): value for t, value in zip(arguments.keras_tensors, x)})
            y = clone(*args, **kwargs)
        else:
            y = clone(x[0] if len(x) == 1 else x)
        clone.set_weights(layer.get_weights())
        return y

    def render_op(self, op: ir.Op):
        layout = ops.weight_layout(op.type)
        computed = layout.qat_computed_inputs if layout is not None else ()
        x = [self.values[n] for i, n in enumerate(op.inputs)
             if n and not self.graph.tensors[n].is_const and i not in computed]
        name = op.outputs[0].replace("/", "_")
        record = ops.REGISTRY.get(op.type)
        if record is None or not record.qat:
            raise self.unsupported(op, f"{op.type} in quantization-aware training")
        if len(op.outputs) > 1:
            if not hasattr(record.qat, "compute"):
                raise self.unsupported(op, "layer with several outputs", "quantization-aware "
                                       "training keeps such layers float")
            outputs = self.op_layer(op, x, name)  # SPLIT, UNPACK: one OpLayer, a list
            for i, (tensor, y) in enumerate(zip(op.outputs, outputs)):
                self.values[tensor] = self.quantize(tensor, y, f"{name}_{i}")
            return
        y = record.qat(self, op, x, name)
        fused = getattr(op.options, "fused_activation", "NONE")
        if fused != "NONE":  # rendered as the standalone activation op it was fused from
            y = ops.get(fused).qat(self, op, [y], f"{name}_{fused.lower()}")
        self.values[op.outputs[0]] = self.quantize(op.outputs[0], y, name)

    def render(self, model_name: str):
        inputs = []
        for name in self.graph.inputs:
            shape = self.graph.tensors[name].shape
            x = keras.Input(tuple(None if d < 0 else d for d in shape[1:]), name=name,
                            dtype=self.graph.tensors[name].dtype.name)
            inputs.append(x)
            self.values[name] = self.quantize(name, x, name)
        computed = weights.computed_by_qat_layers(self.graph, self.graph.ops)
        for op in self.graph.ops:
            if id(op) not in computed:
                self.render_op(op)
        outputs = [self.values[n] for n in self.graph.outputs]
        return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0],
                           name=f"{model_name}_qat")


def _bn_momenta(model) -> dict:
    momenta = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if type(layer).__name__ == "BatchNormalization":
            momenta[layer.name] = float(layer.momentum)
    return momenta


def quantize_model(model, recipe: QatRecipe | None = None):
    """A trainable QAT Keras 3 model (fake quantization, the paper's batch-norm folding)
    initialised from the float `model` (Keras 3 or tf_keras; Sequential, Functional, nested).
    Train it with tfquant.qat.QuantizationScheduler among the callbacks, then export it with
    tfquant.convert(qat_model) (no calibration data needed). Layers it cannot quantize stay
    float and are logged (see float_layers)."""
    recipe = recipe or QatRecipe()
    graph = qat_graph(model)
    if graph.float_layers:
        log.warning("quantization-aware training keeps %d layer(s) float: %s",
                    len(graph.float_layers),
                    ", ".join(f"{name} ({reason})" for name, reason in graph.float_layers))
    return _Renderer(graph, recipe, _bn_momenta(model)).render(model.name)


def float_layers(qat_model) -> list:
    """Names and types of the layers of a QAT model that stay float: those the Keras frontend
    cannot quantize (the test that kept them float when the QAT model was made)."""
    graph = from_keras(qat_model, keep_keras_layers=True, quantized_tensors={})
    kinds = {layer.name: type(layer).__name__
             for layer in qat_model._flatten_layers(include_self=False, recursive=True)}
    return [(name, kinds.get(name, "?")) for name, _ in graph.float_layers]
