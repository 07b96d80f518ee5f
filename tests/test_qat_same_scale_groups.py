"""QAT places its activation quantizers from the converter's same-scale groups: the inputs of a
CONCATENATION share one quantizer (the union of their ranges, the one grid the int8 model holds
them on), so the exported concatenation is what training simulated."""

import keras
import numpy as np

import tfquant
import tfquant.qat
from tfquant import runtime, spec
from tfquant.qat import ActivationQuantizer

L = keras.layers


def _branches_of_different_ranges():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3), name="image")
    a = L.Conv2D(4, 3, padding="same", name="small")(x)
    b = L.Conv2D(4, 3, padding="same", name="large")(x)
    c = L.Concatenate(name="cat")([a, b])
    y = L.Conv2D(5, 1, name="head")(c)
    model = keras.Model(x, L.GlobalAveragePooling2D(name="pool")(y))
    large = model.get_layer("large")
    kernel, bias = large.get_weights()
    large.set_weights([kernel * 20.0, bias])  # a range 20x the other branch's
    return model


def _int8_tensor(model_bytes, name, x):
    interpreter = runtime.make_interpreter(model_bytes, resolver="reference",
                                           preserve_all_tensors=True)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    tensor = next(t for t in interpreter.get_tensor_details() if t["name"] == name)
    scale, zero_point = tensor["quantization"]
    values = runtime.decode(interpreter.get_tensor(tensor["index"]), tensor)
    return np.asarray(values, np.float64), scale, zero_point


def test_concatenation_inputs_share_one_quantizer_and_export_exactly():
    model = _branches_of_different_ranges()
    qat = tfquant.qat.quantize_model(model, tfquant.qat.QatRecipe(
        activation_initial_range=None))
    quantizers = [layer for layer in qat.layers if isinstance(layer, ActivationQuantizer)]
    shared = [q for q in quantizers if q.members > 1]
    assert len(shared) == 1 and shared[0].members == 2
    # Nothing quantizes the concatenation's output again: the head conv reads it directly.
    readers = [node.operation for node in qat.get_layer("cat")._outbound_nodes]
    assert [type(r).__name__ for r in readers] == ["FoldedBatchNorm"]

    rng = np.random.default_rng(0)
    calibration = rng.uniform(-1, 1, (64, 8, 8, 3)).astype(np.float32)
    tfquant.qat.calibrate_activation_ranges(qat, calibration, show_progress=False)
    small, large = shared[0].member_range(0), shared[0].member_range(1)
    assert large[1] - large[0] > 5 * (small[1] - small[0])

    int8 = tfquant.convert(qat, show_progress=False)
    probe = rng.uniform(-1, 1, (8, 8, 8, 3)).astype(np.float32)
    simulated = keras.Model(qat.input, qat.get_layer("cat").output)(probe).numpy()
    exported, step, zero_point = _int8_tensor(int8, "cat", probe)
    # Training simulated the int8 grid itself: every simulated value is a code of it...
    codes = simulated / step + zero_point
    assert np.abs(codes - np.round(codes)).max() < 1e-3
    # ... and the same code as the integer kernels, but where their rounding differs (rare).
    difference = np.abs(simulated - exported) / step
    assert difference.max() <= 1.0 + 1e-3, difference.max()
    assert np.mean(difference > 1e-3) < 0.01, np.mean(difference > 1e-3)
    # The union range is what both use: the small branch sits on the large grid.
    union = spec.params_from_range(min(small[0], large[0]), max(small[1], large[1]),
                                   spec.INT8_ACTIVATION)
    assert np.isclose(step, float(union.scale[0]), rtol=1e-6)


def test_shared_quantizer_survives_save_and_load(tmp_path):
    qat = tfquant.qat.quantize_model(_branches_of_different_ranges())
    probe = np.random.default_rng(1).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    qat(probe, training=True)
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(probe).numpy(), qat(probe).numpy(), atol=1e-6)
    assert tfquant.convert(loaded) == tfquant.convert(qat)


def _sigmoid_and_wide_branch(K=keras):
    K.utils.set_random_seed(0)
    x = K.Input((6, 6, 3), name="image")
    gate = K.layers.Conv2D(4, 3, padding="same", activation="sigmoid", name="gate")(x)
    wide = K.layers.Conv2D(4, 3, padding="same", name="wide")(x)
    model = K.Model(x, K.layers.Concatenate(name="cat")([gate, wide]))
    kernel, bias = model.get_layer("wide").get_weights()
    model.get_layer("wide").set_weights([kernel * 6.0, bias])  # a range well beyond [0, 1]
    return model


def test_fixed_params_output_concatenated_with_a_wider_branch_is_requantized():
    """A sigmoid output keeps LOGISTIC's fixed params (1/256, -128), and the concatenation
    reads it through an int8 -> int8 QUANTIZE to the group's grid: neither branch is clipped
    (holding the group on [0, 1) clipped the wide branch)."""
    model = _sigmoid_and_wide_branch()
    rng = np.random.default_rng(0)
    calibration = rng.uniform(-1, 1, (64, 6, 6, 3)).astype(np.float32)
    result = tfquant.convert_model(model, calibration, show_progress=False)
    graph = result.graph
    gate_out = next(op for op in graph.ops if op.type == "LOGISTIC").outputs[0]
    assert graph.tensors[gate_out].quant.scale[0] == np.float32(1 / 256)
    requantize = [op for op in graph.ops if op.type == "QUANTIZE" and op.inputs[0] == gate_out]
    assert len(requantize) == 1
    cat = next(op for op in graph.ops if op.type == "CONCATENATION")
    assert requantize[0].outputs[0] in cat.inputs
    assert graph.tensors[requantize[0].outputs[0]].quant == graph.tensors[cat.outputs[0]].quant
    test = rng.uniform(-1, 1, (16, 6, 6, 3)).astype(np.float32)
    expected = model.predict(test, verbose=0)
    for rt in runtime.RUNTIMES:
        got = runtime.Runner(result.model, rt, "reference").predict(test)
        assert spec.sqnr_db(expected, got) > 30, rt


def test_qat_of_a_fixed_params_output_in_a_group_exports_what_it_simulates():
    qat = tfquant.qat.quantize_model(_sigmoid_and_wide_branch(), tfquant.qat.QatRecipe(
        activation_initial_range=None))
    shared = [layer for layer in qat.layers
              if isinstance(layer, ActivationQuantizer) and layer.members > 1]
    assert len(shared) == 1 and shared[0].members == 2  # the sigmoid output and the wide one
    rng = np.random.default_rng(0)
    tfquant.qat.calibrate_activation_ranges(
        qat, rng.uniform(-1, 1, (64, 6, 6, 3)).astype(np.float32), show_progress=False)
    int8 = tfquant.convert(qat, show_progress=False)
    probe = rng.uniform(-1, 1, (8, 6, 6, 3)).astype(np.float32)
    simulated = keras.Model(qat.input, qat.get_layer("cat").output)(probe).numpy()
    exported, step, _ = _int8_tensor(int8, "cat/int8", probe)  # (the output is float)
    # Two roundings in the int8 model (the sigmoid's own grid, then the group's) against one
    # in training: within one step.
    assert np.abs(simulated - exported).max() <= step * 1.001
