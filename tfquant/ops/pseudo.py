"""The pseudo-ops of tfquant.vocabulary: BATCH_NORM (Keras BatchNormalization), IDENTITY
(Dropout, SpatialDropout2D, GaussianNoise), and the QAT graph's TRAINING_ONLY and KERAS_LAYER.
They never reach the writer."""

from __future__ import annotations

import numpy as np

from tfquant import vocabulary
from tfquant.ops import keras_support as ks
from tfquant.ops.record import NotApplicable, OpRecord, QuantRule

_PSEUDO = NotApplicable("pseudo-op: never in a TFLite model")


def _batch_norm(b, layer, inputs, out_shape):
    ks.last_axis(layer.axis, len(out_shape), f"BatchNormalization axis={layer.axis}")
    mean = ks.value(layer.moving_mean)
    ones, zeros = np.ones_like(mean), np.zeros_like(mean)
    options = vocabulary.BatchNormOptions(
        gamma=ks.value(layer.gamma) if layer.scale else ones,
        beta=ks.value(layer.beta) if layer.center else zeros,
        mean=mean, variance=ks.value(layer.moving_variance), epsilon=float(layer.epsilon))
    return b.op(vocabulary.BATCH_NORM, inputs[:1], out_shape, layer.name, layer, options)


def _training_only(b, layer, inputs, out_shape):
    """Dropout and noise layers: identities at inference (the layer is kept for QAT)."""
    return b.op(vocabulary.IDENTITY, inputs[:1], out_shape, layer.name, layer,
                vocabulary.IdentityOptions(vocabulary.LayerRef(layer)))


def _render_layer(r, op, x, name):
    return r.copy_layer(op.options.layer.layer, x, op.options.layer.arguments)


def _pseudo(name, options, keras=_PSEUDO, qat=_PSEUDO, quant=_PSEUDO):
    return OpRecord(name=name, options=options, write=_PSEUDO, read=_PSEUDO, version=_PSEUDO,
                    quant=quant, weights=NotApplicable("no weights"), keras=keras, qat=qat,
                    delegate=_PSEUDO, pseudo=True)


BATCH_NORM = _pseudo(
    vocabulary.BATCH_NORM, vocabulary.BatchNormOptions,
    keras={"BatchNormalization": _batch_norm},
    qat=NotApplicable("attached to its conv / dense or lowered to MUL + ADD before rendering"))
IDENTITY = _pseudo(
    vocabulary.IDENTITY, vocabulary.IdentityOptions,
    keras={"Dropout": _training_only, "SpatialDropout2D": _training_only,
           "GaussianNoise": _training_only},
    qat=NotApplicable("removed before rendering (Dropout becomes TRAINING_ONLY)"))
# An identity in the int8 model: its output shares its input's grid.
TRAINING_ONLY = _pseudo(vocabulary.TRAINING_ONLY, vocabulary.LayerOptions,
                        qat=_render_layer, quant=QuantRule(same_scale=True))
KERAS_LAYER = _pseudo(vocabulary.KERAS_LAYER, vocabulary.LayerOptions, qat=_render_layer)

RECORDS = (BATCH_NORM, IDENTITY, TRAINING_ONLY, KERAS_LAYER)
