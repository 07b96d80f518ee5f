"""The paper's BN folding for training: with quantization off, the folded layer equals
conv + BatchNormalization in training mode before the freeze and in inference mode after it."""

import keras
import numpy as np
import pytest

from tfquant.qat.batch_norm_folding import FoldedBatchNorm

CASES = {
    "conv2d": (lambda: keras.layers.Conv2D(6, 3, strides=2, padding="same", use_bias=True),
               dict(kind="conv2d", filters=6, kernel_size=(3, 3), strides=(2, 2),
                    padding="same", use_bias=True), (8, 9, 9, 4)),
    "depthwise_conv2d": (lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2,
                                                              padding="valid", use_bias=False),
                         dict(kind="depthwise_conv2d", filters=2, kernel_size=(3, 3),
                              padding="valid"), (8, 7, 7, 3)),
    "dense": (lambda: keras.layers.Dense(5, use_bias=True),
              dict(kind="dense", filters=5, use_bias=True), (16, 12)),
}


def _pair(kind):
    make_layer, folded_args, shape = CASES[kind]
    keras.utils.set_random_seed(1)
    x = np.random.default_rng(0).normal(1.0, 2.0, size=shape).astype(np.float32)
    conv, bn = make_layer(), keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    y = conv(x)
    bn(y)
    rng = np.random.default_rng(2)
    channels = y.shape[-1]
    bn.set_weights([rng.uniform(0.5, 2, channels), rng.normal(0, 1, channels),
                    rng.normal(0, 1, channels), rng.uniform(0.5, 3, channels)])
    folded = FoldedBatchNorm(momentum=0.9, epsilon=1e-3, **folded_args)
    folded(x)
    weights = conv.get_weights()
    kernel, bias = weights[0], (weights[1] if len(weights) > 1 else np.zeros(channels))
    folded.kernel.assign(kernel)
    folded.bias.assign(bias)
    for ours, theirs in zip((folded.gamma, folded.beta, folded.moving_mean,
                             folded.moving_variance), bn.get_weights()):
        ours.assign(theirs)
    return x, conv, bn, folded


def _close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(b).max()), np.abs(a - b).max()


@pytest.mark.parametrize("kind", list(CASES))
def test_before_freeze_matches_batch_norm_in_training_mode(kind):
    x, conv, bn, folded = _pair(kind)
    folded.quantize.assign(0.0)
    _close(folded(x, training=True), bn(conv(x), training=True))
    # ... and the moving statistics moved the same way
    _close(folded.moving_mean, bn.moving_mean)
    _close(folded.moving_variance, bn.moving_variance)


@pytest.mark.parametrize("kind", list(CASES))
def test_after_freeze_matches_batch_norm_in_inference_mode(kind):
    x, conv, bn, folded = _pair(kind)
    folded.quantize.assign(0.0)
    folded.frozen.assign(1.0)
    before = np.array(folded.moving_mean)
    _close(folded(x, training=True), bn(conv(x), training=False))
    np.testing.assert_array_equal(folded.moving_mean, before)  # statistics frozen
    _close(folded(x, training=False), bn(conv(x), training=False))


@pytest.mark.parametrize("kind", list(CASES))
def test_quantized_weights_are_the_folded_weights_on_an_int8_grid(kind):
    x, conv, bn, folded = _pair(kind)
    kernel = np.array(folded.folded_kernel())
    flat = kernel.reshape(-1, kernel.shape[-2] * kernel.shape[-1]) \
        if kind == "depthwise_conv2d" else kernel.reshape(-1, kernel.shape[-1])
    scale = np.abs(flat).max(axis=0) / 127
    codes = flat / scale
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)
    # and close to the float fold (half a step per weight at most)
    folded.quantize.assign(0.0)
    exact = np.array(folded.folded_kernel()).reshape(flat.shape)
    assert np.all(np.abs(exact - flat) <= scale / 2 + 1e-7)


def test_config_round_trip():
    layer = FoldedBatchNorm("depthwise_conv2d", 2, kernel_size=(3, 3), strides=(2, 2),
                            padding="same", weight_bits=4, weight_per_channel=False)
    clone = FoldedBatchNorm.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
