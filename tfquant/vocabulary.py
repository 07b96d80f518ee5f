"""Words every stage shares: the pseudo-ops, fused activations, paddings, and the options types
that are not one TFLite op's (no options; options carried opaquely from a source .tflite;
pseudo-op options).

Pseudo-ops exist only between a frontend and the passes (or in the QAT graph); the writer never
sees them:
  BATCH_NORM    a batch norm, folded into the conv / dense before it or lowered to MUL + ADD;
  IDENTITY      Dropout, a linear activation, a no-op Rescaling: removed;
  TRAINING_ONLY (QAT graph) Dropout and noise layers, active while fine-tuning;
  KERAS_LAYER   (QAT graph) a layer QAT keeps float: the Keras layer itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np

BATCH_NORM = "BATCH_NORM"
IDENTITY = "IDENTITY"
TRAINING_ONLY = "TRAINING_ONLY"
KERAS_LAYER = "KERAS_LAYER"
PSEUDO_OPS = (BATCH_NORM, IDENTITY, TRAINING_ONLY, KERAS_LAYER)

# Fused activations tfquant writes (the standalone ops the fusion pass folds in), and the upper
# clamp of those with one: TFLite's kernels compute zp + round(bound / scale) in int32 and refuse
# the model at allocation when that overflows.
FUSABLE_ACTIVATIONS = ("RELU", "RELU6")
CLAMP_BOUNDS = {"RELU6": 6.0}


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """An op without options."""


NO_OPTIONS = NoOptions()


@dataclasses.dataclass(frozen=True, eq=False)
class CarriedOptions:
    """The builtin options of an op read from a .tflite file that tfquant keeps as they are
    (an op that stays float): the flatbuffer options type and the options object (the op's
    source version is Op.source_version)."""

    options_type: int
    options: object


@dataclasses.dataclass(frozen=True, eq=False)
class BatchNormOptions:
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    epsilon: float

    def affine(self):
        """(scale, offset) with BN(x) = x * scale + offset (float64 scale)."""
        scale = self.gamma / np.sqrt(self.variance.astype(np.float64) + self.epsilon)
        return scale, self.beta - self.mean * scale


class LayerRef:
    """A Keras layer held by an op (KERAS_LAYER, TRAINING_ONLY): graph copies share it."""

    def __init__(self, layer, arguments=None):
        self.layer = layer
        # How the model called it (a Keras 3 node's SymbolicArguments), for QAT's float copy.
        self.arguments = arguments

    def __repr__(self):
        return f"LayerRef({getattr(self.layer, 'name', self.layer)!r})"


@dataclasses.dataclass(frozen=True)
class LayerOptions:
    """KERAS_LAYER and TRAINING_ONLY: the layer."""

    layer: LayerRef


@dataclasses.dataclass(frozen=True)
class IdentityOptions:
    """IDENTITY: the Dropout-like layer it stands for, kept so that QAT can train with it."""

    training_layer: LayerRef | None = None
