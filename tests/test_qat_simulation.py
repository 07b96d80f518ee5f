"""PTQ in simulation (tfquant.qat.simulate_ptq): the fake-quantized Keras model computes what
the int8 converter makes of the same float model, and every scheme of the paper's grid runs."""

import keras
import numpy as np
import pytest

import tfquant
from tfquant import qat, runtime, spec
from tfquant.errors import CalibrationDataError
from tfquant.qat.activation_quantizer import ActivationQuantizer

from layer_models import conv_depthwise_classifier


@pytest.fixture(scope="module")
def float_model():
    keras.utils.set_random_seed(0)
    L = keras.layers
    # logits: the softmax output's steps would dominate the comparisons
    model = conv_depthwise_classifier(keras, (16, 16, 1), 4, softmax=False)
    # Batch-norm statistics far from the initial ones: the fold matters.
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.2, 3.0, gamma.shape).astype(np.float32),
                               rng.normal(0, 0.3, beta.shape).astype(np.float32),
                               rng.normal(0, 0.5, mean.shape).astype(np.float32),
                               rng.uniform(0.1, 4.0, var.shape).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 1, (256, 16, 16, 1)).astype(np.float32)


def test_nothing_quantized_is_the_float_model(float_model, images):
    simulated = qat.simulate_ptq(float_model, calibration=images, quantize_weights=False,
                                 quantize_activations=False, show_progress=False)
    expected = float_model.predict(images[:32], verbose=0)
    np.testing.assert_allclose(simulated.predict(images[:32], verbose=0), expected, atol=2e-6)


def test_symmetric_per_channel_simulation_matches_the_int8_converter(float_model, images):
    simulated = qat.simulate_ptq(float_model, qat.QatRecipe(), images, show_progress=False)
    converted = tfquant.convert(float_model, images, tfquant.Recipe(num_calibration_batches=8,
                                                                calibration_method="minmax"),
                                show_progress=False)
    deployed = runtime.Runner(converted, resolver="reference").predict(images[:64])
    sim = simulated.predict(images[:64], verbose=0)
    float_out = float_model.predict(images[:64], verbose=0)
    # The simulation is closer to the int8 model than float is (measured: 55.6 vs 47.5 dB).
    assert spec.sqnr_db(deployed, sim) > spec.sqnr_db(float_out, deployed) + 5.0
    # And its own export is the same int8 model up to calibration-batch rounding.
    exported = runtime.Runner(tfquant.convert_model(simulated, show_progress=False).model,
                              resolver="reference").predict(images[:64])
    assert spec.sqnr_db(deployed, exported) > 40.0


def test_activation_bits_set_the_number_of_levels(float_model, images):
    for bits in (4, 8):
        simulated = qat.simulate_ptq(float_model, qat.QatRecipe(activation_bits=bits), images,
                                     show_progress=False)
        quantizer = next(layer for layer in simulated.layers
                         if isinstance(layer, ActivationQuantizer) and "re_lu" in layer.name)
        probe = keras.Model(simulated.inputs, quantizer.output)
        levels = len(np.unique(np.round(probe.predict(images[:64], verbose=0), 6)))
        assert 2 ** bits // 2 < levels <= 2 ** bits, (bits, levels)


def test_coarser_schemes_lose_more(float_model, images):
    expected = float_model.predict(images[:128], verbose=0)
    ranges = qat.calibrate_activation_ranges(qat.quantize_model(float_model), images,
                                             show_progress=False)

    def sqnr(**recipe):
        simulated = qat.simulate_ptq(float_model, qat.QatRecipe(**recipe),
                                     activation_ranges=ranges)
        return spec.sqnr_db(expected, simulated.predict(images[:128], verbose=0))

    for symmetric in (True, False):
        per_channel_4 = sqnr(weight_bits=4, weight_symmetric=symmetric)
        per_layer_4 = sqnr(weight_bits=4, weight_symmetric=symmetric, weight_per_channel=False)
        per_channel_8 = sqnr(weight_symmetric=symmetric)
        assert per_channel_8 > per_channel_4 > per_layer_4, symmetric


def test_reused_ranges_equal_fresh_calibration(float_model, images):
    ranges = qat.calibrate_activation_ranges(qat.quantize_model(float_model), images,
                                             show_progress=False)
    fresh = qat.simulate_ptq(float_model, qat.QatRecipe(weight_bits=4), images,
                             show_progress=False)
    reused = qat.simulate_ptq(float_model, qat.QatRecipe(weight_bits=4),
                              activation_ranges=ranges)
    np.testing.assert_array_equal(fresh.predict(images[:32], verbose=0),
                                  reused.predict(images[:32], verbose=0))


@pytest.mark.parametrize("bad, message", [(np.zeros((0, 16, 16, 1), np.float32), "empty"),
                                          (np.full((4, 16, 16, 1), np.nan, np.float32), "NaN")])
def test_bad_calibration_data_is_a_clear_error(float_model, bad, message):
    with pytest.raises(CalibrationDataError, match=message):
        qat.simulate_ptq(float_model, calibration=bad)
    with pytest.raises(CalibrationDataError, match="needs calibration"):
        qat.simulate_ptq(float_model)
