"""Activation fake quantization with moving-average ranges (paper section 2 and 3.2)."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfquant.qat import fake_quant
from tfquant.spec import QuantSpec


@keras.saving.register_keras_serializable(package="tfquant")
class ActivationQuantizer(keras.layers.Layer):
    """Fake-quantizes a tensor with a per-tensor range tracked as an exponential moving average
    of per-batch min / max (decay 0.999 by default, as in the paper's TF implementation).

    The first training batch initialises the range, or, with `initial_range=(min, max)`, the
    average starts from that range (TF's contrib.quantize and tfmot start from (-6, 6), and so
    does QatRecipe by default).
    `quantize` (0/1) turns the fake quantization on (the quantization delay), `freeze_range`
    (0/1) stops updating the range; both are set by tfquant.qat.callbacks.QuantizationScheduler.

    Tensors the int8 model must hold on one grid (the inputs of a CONCATENATION, which shares
    its params with its output) share one quantizer with `members` > 1: it is called once per
    tensor with `member=i`, tracks each member's range, and quantizes every member with the
    union of those ranges, which is what the int8 export gives the group. (Within one training
    step a member called early uses the union before later members update theirs: with
    initial_range=None that matters on the first batch only.)
    """

    def __init__(self, bits=8, symmetric=False, decay=0.999, initial_range=None, members=1,
                 **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if int(members) < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        self.bits = int(bits)
        self.symmetric = bool(symmetric)
        self.decay = float(decay)
        self.initial_range = check_initial_range(initial_range)
        self.members = int(members)

    @property
    def spec(self) -> QuantSpec:
        return QuantSpec(bits=self.bits, signed=True, symmetric=self.symmetric)

    def build(self, input_shape):
        low, high = self.initial_range or (0.0, 0.0)
        # One range per member; scalars for the usual single member (as saved before groups).
        shape = () if self.members == 1 else (self.members,)
        self.range_min = self.add_weight(name="range_min", shape=shape,
                                         initializer=keras.initializers.Constant(low),
                                         trainable=False)
        self.range_max = self.add_weight(name="range_max", shape=shape,
                                         initializer=keras.initializers.Constant(high),
                                         trainable=False)
        self.initialized = self.add_weight(
            name="initialized", shape=shape, trainable=False,
            initializer="ones" if self.initial_range else "zeros")
        self.quantize = self.add_weight(name="quantize", shape=(), initializer="ones",
                                        trainable=False)
        self.freeze_range = self.add_weight(name="freeze_range", shape=(),
                                            initializer="zeros", trainable=False)

    def _update_range(self, x, member):
        """EMA step of one member's range (its first batch initialises); no change while the
        range is frozen."""
        batch_min, batch_max = global_extremes(x)
        slot = (tf.one_hot(member, self.members, dtype=tf.float32) if self.members > 1
                else tf.constant(1.0))
        decay = tf.where(self.initialized < 0.5, 0.0, self.decay)
        decay = tf.where(self.freeze_range > 0.5, 1.0, decay)
        decay = slot * decay + (1.0 - slot)  # other members keep their range
        self.range_min.assign(decay * self.range_min + (1.0 - decay) * batch_min)
        self.range_max.assign(decay * self.range_max + (1.0 - decay) * batch_max)
        self.initialized.assign(tf.maximum(self.initialized,
                                           slot * (1.0 - self.freeze_range)))

    def current_range(self):
        """(min, max) the quantizer applies: the union of the initialized members' ranges."""
        if self.members == 1:
            return self.range_min, self.range_max
        seen = self.initialized > 0.5
        low = tf.reduce_min(tf.where(seen, self.range_min, tf.float32.max))
        high = tf.reduce_max(tf.where(seen, self.range_max, -tf.float32.max))
        none = tf.logical_not(tf.reduce_any(seen))
        return tf.where(none, 0.0, low), tf.where(none, 0.0, high)

    def applied_range(self) -> tuple:
        """current_range() as floats (for logs and reports)."""
        low, high = self.current_range()
        return float(tf.convert_to_tensor(low).numpy()), float(tf.convert_to_tensor(high).numpy())

    def is_initialized(self, member: int = 0) -> bool:
        return float(np.asarray(self.initialized.numpy()).reshape(-1)[member]) >= 0.5

    def member_range(self, member: int = 0) -> tuple:
        """The range tracked for one member (its tensor's range in the int8 export)."""
        return (float(np.asarray(self.range_min.numpy()).reshape(-1)[member]),
                float(np.asarray(self.range_max.numpy()).reshape(-1)[member]))

    def set_member_range(self, member: int, low: float, high: float):
        """Set and mark initialized one member's range (calibration, simulation)."""
        for variable, value in ((self.range_min, low), (self.range_max, high),
                                (self.initialized, 1.0)):
            current = np.array(variable.numpy(), np.float32)
            current.reshape(-1)[member] = value
            variable.assign(current)

    def call(self, x, member=0, training=False):
        if training:
            self._update_range(x, member)
        low, high = self.current_range()
        quantized = fake_quant.fake_quant(x, low, high, self.spec)
        return self.quantize * quantized + (1.0 - self.quantize) * x

    def get_config(self):
        config = super().get_config()
        config.update(bits=self.bits, symmetric=self.symmetric, decay=self.decay,
                      initial_range=list(self.initial_range) if self.initial_range else None,
                      members=self.members)
        return config


def global_extremes(x):
    """(min, max) of `x` over the whole global batch: under a distribution strategy
    (MirroredStrategy, MultiWorkerMirroredStrategy) each replica sees its own shard, so the
    replicas exchange their shard's extremes (all-gather) and every one moves its range with
    the global batch's, as a single-worker run with the same global batch does. Every replica
    then holds the same range: an extreme seen by one worker's shard reaches the export."""
    low, high = tf.reduce_min(x), tf.reduce_max(x)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return low, high
    gathered = context.all_gather(tf.reshape(tf.stack([-low, high]), (1, 2)), axis=0)
    largest = tf.reduce_max(gathered, axis=0)
    return -largest[0], largest[1]


def check_initial_range(initial_range):
    """None, or (min, max) as floats with min <= 0 <= max and min < max (a quantization range
    holds zero); a clear ValueError otherwise."""
    if initial_range is None:
        return None
    try:
        low, high = (float(v) for v in initial_range)
    except (TypeError, ValueError):
        raise ValueError(f"initial activation range must be (min, max), got {initial_range!r}")
    if not (math.isfinite(low) and math.isfinite(high) and low <= 0.0 <= high and low < high):
        raise ValueError(f"initial activation range must be finite with min <= 0 <= max and "
                         f"min < max, got {initial_range!r}")
    return (low, high)
