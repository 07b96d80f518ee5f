"""Peer helpers: reading a flatbuffer's depthwise weight quantization (used to report whether
each QAT tool quantizes depthwise weights per channel)."""

import keras
import numpy as np

import tfquant
from tfquant import peers


def _depthwise_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 4))
    y = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    y = keras.layers.Conv2D(4, 1)(y)
    return keras.Model(x, keras.layers.GlobalAveragePooling2D()(y))


def test_depthwise_weight_scales_per_channel_and_per_tensor():
    model = _depthwise_model()
    data = np.random.default_rng(0).normal(size=(32, 8, 8, 4)).astype(np.float32)
    per_channel = tfquant.convert(model, data, show_progress=False)
    per_tensor = tfquant.convert(model, data, tfquant.Recipe(per_channel=False),
                                 show_progress=False)
    assert peers.depthwise_weight_scales(per_channel) == [(8, True)]
    assert peers.depthwise_weight_scales(per_tensor) == [(1, None)]
    reference = peers.convert_with_tflite_converter(model, [data[:16], data[16:]])
    assert peers.depthwise_weight_scales(reference) == [(8, True)]
