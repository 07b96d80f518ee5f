"""The DSP delegate never breaks a model: float models pass through untouched, unsupported ops
stay on the CPU (and the result is still exact), the op allow-list is honoured, bad options are
a clear ValueError, TFLiteConverter models with a dynamic batch run exactly, inputs can be
resized, and interpreters in parallel threads give correct results."""

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfquant
import tfquant.delegate
from layer_models import every_layer_model
from test_delegate_ops import RUNTIMES, check_exact, claimed_counts, converted, encode, run
from tfquant import runtime

L = keras.layers
pytestmark = pytest.mark.delegate


def test_float_model_passes_through(capfd):
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    model = keras.Model(x, L.Dense(4)(L.Flatten()(L.Conv2D(4, 3)(x))))
    data = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"))
    batch = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    for rt in RUNTIMES:
        want = run(data, batch, rt)
        capfd.readouterr()
        got = run(data, batch, rt, tfquant.delegate.load(rt, verbose=True))
        assert claimed_counts(capfd.readouterr().err)[0] == 0
        np.testing.assert_array_equal(want[0], got[0])


@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_unsupported_ops_stay_on_cpu_and_result_is_exact(runtime_name, capfd):
    # LEAKY_RELU and TANH-free but LEAKY_RELU is not a delegate op: a partial claim.
    model = every_layer_model(keras)
    calibration = np.random.default_rng(0).uniform(size=(32, 16, 16, 3)).astype(np.float32)
    data = tfquant.convert(model, calibration, show_progress=False)
    x = np.random.default_rng(1).uniform(size=(3, 16, 16, 3)).astype(np.float32)
    _, claimed, total = check_exact(data, x, capfd, runtime_name, expect_all=False)
    assert 0 < claimed < total


def test_best_isa_is_the_table_the_delegate_picks(capfd, monkeypatch):
    """tfquant.delegate.best_isa() names the table isa="auto" runs (the delegate's verbose
    report says which), also under a TFQUANT_DSP_ISA cap."""
    import re
    data, shape = converted("add_residual_and_batchnorm")
    x = encode(data, np.random.default_rng(0).uniform(-1, 1, shape))
    for cap in [None] + list(tfquant.delegate.isas(runnable_only=True)):
        if cap:
            monkeypatch.setenv("TFQUANT_DSP_ISA", cap)
        capfd.readouterr()
        run(data, x, "litert", tfquant.delegate.load("litert", verbose=True))
        picked = re.search(r"\(isa (\w+)\)", capfd.readouterr().err).group(1)
        assert picked == tfquant.delegate.best_isa() == (cap or picked), (cap, picked)


def test_allow_list_limits_the_claim(capfd):
    data, shape = converted("add_residual_and_batchnorm")
    x = encode(data, np.random.default_rng(0).uniform(-1, 1, shape))
    want = run(data, x, "litert")
    capfd.readouterr()
    got = run(data, x, "litert", tfquant.delegate.load("litert", ops=["CONV_2D"], verbose=True))
    claimed, total = claimed_counts(capfd.readouterr().err)
    assert claimed == 2 and total > claimed
    np.testing.assert_array_equal(want[0], got[0])


@pytest.mark.parametrize("options", [
    {"num_threads": "zero"}, {"num_threads": "-3"}, {"ops": "CONV_2D,NOT_AN_OP"}, {"ops": ","},
    {"verbose": "maybe"}, {"fc_requant": "float"}, {"isa": "neon"}, {"no_such_option": "1"},
    {"packed_weights_kb": "-1"}, {"packed_weights_kb": "2MB"},
])
def test_bad_options_are_a_clear_value_error(options):
    with pytest.raises(ValueError, match="tfquant_dsp"):
        runtime.load_delegate(tfquant.delegate.library_path(), options, "litert")


def test_python_loader_validates_its_arguments():
    with pytest.raises(ValueError):
        tfquant.delegate.load("onnx")
    with pytest.raises(ValueError):
        tfquant.delegate.load("litert", num_threads=0)
    with pytest.raises(ValueError):
        tfquant.delegate.load("litert", ops=[])
    with pytest.raises(ValueError, match="packed_weights_kb"):
        tfquant.delegate.options("litert", packed_weights_kb=-5)
    with pytest.raises(ValueError, match="unknown TFLite op.*CONV2D; tfquant knows: .*CONV_2D"):
        tfquant.delegate.load("litert", ops=["CONV_2D", "conv2d"])


@pytest.fixture(scope="module")
def converter_model():
    """Int8 model from TFLiteConverter of a Keras 3 model: dynamic batch (shape_signature -1)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((10, 10, 3))
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, strides=2, padding="same")(y)
    y = L.Reshape((-1,))(y)
    y = L.Dense(6)(y)
    model = keras.Model(x, y)
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(16):
            yield [rng.uniform(size=(1, 10, 10, 3)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_converter_model_with_dynamic_batch(converter_model, runtime_name, capfd):
    for batch in (1, 3):
        x = np.random.default_rng(batch).uniform(size=(batch, 10, 10, 3)).astype(np.float32)
        check_exact(converter_model, x, capfd, runtime_name, expect_all=False)


def test_resize_and_reinvoke():
    data, shape = converted("conv_same_stride2_relu")
    delegate = tfquant.delegate.load("litert")
    interpreter = runtime.make_interpreter(data, "litert", "reference", delegates=[delegate])
    reference = runtime.make_interpreter(data, "litert", "reference")
    detail = interpreter.get_input_details()[0]
    for batch in (1, 4, 2):
        x = encode(data, np.random.default_rng(batch).uniform(-1, 1, (batch, *shape[1:])))
        outs = []
        for it in (interpreter, reference):
            it.resize_tensor_input(detail["index"], x.shape)
            it.allocate_tensors()
            it.set_tensor(detail["index"], x)
            it.invoke()
            outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
        np.testing.assert_array_equal(outs[0], outs[1])


def test_parallel_interpreters():
    data, shape = converted("depthwise_multiplier3_stride2")
    delegate = tfquant.delegate.load("litert")
    inputs = [encode(data, np.random.default_rng(i).uniform(-1, 1, shape)) for i in range(4)]
    want = [run(data, x, "litert")[0] for x in inputs]
    got = [None] * 4
    errors = []

    def work(i):
        try:
            for _ in range(5):
                got[i] = run(data, inputs[i], "litert", delegate)[0]
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)


_MEMORY_LIMIT_SCRIPT = r"""
import ctypes, resource, sys
# Every allocation of 64 KB or more maps new memory (no reuse of the heap's free space, which
# the address-space limit would not stop): M_MMAP_THRESHOLD, fixed.
ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)
import numpy as np
sys.path.insert(0, {tests!r})
import keras
import tfquant, tfquant.delegate
from tfquant import runtime
from test_delegate_ops import encode, run

L = keras.layers
keras.utils.set_random_seed(0)
x = keras.Input((112, 112, 16))
y = L.Conv2D(64, 3, padding="same", activation="relu")(x)
y = L.DepthwiseConv2D(3, padding="same", activation="relu")(y)
y = L.Conv2D(64, 3, padding="same")(y)
model = keras.Model(x, L.Dense(4)(L.GlobalAveragePooling2D()(y)))
data = np.random.default_rng(0).uniform(-1, 1, (8, 112, 112, 16)).astype(np.float32)
int8 = tfquant.convert(model, data, show_progress=False)
batch = encode(int8, data[:1])
want = run(int8, batch, "litert")

def vm_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()

def limited(step):
    # No new address space beyond what the process holds now (plus 1 MB for Python).
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (1 << 20), hard))
    try:
        step()
        return "ok"
    except (RuntimeError, MemoryError) as e:
        return str(e).replace("\n", " ")
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

delegate = tfquant.delegate.load("litert")
interpreter = runtime.make_interpreter(int8, "litert", "reference", delegates=[delegate])
detail = interpreter.get_input_details()[0]
# 1. Prepare (the intermediates' arena) under the limit, then without it.
print("PREPARE", limited(interpreter.allocate_tensors))
interpreter.allocate_tensors()
interpreter.set_tensor(detail["index"], batch)
# 2. Invokes under the limit: the kernels' scratch was reserved in Prepare, so an invoke needs
# no new memory; then one without it.
print("INVOKE", limited(interpreter.invoke))
got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
print("EXACT_LIMITED", bool(np.array_equal(got, want[0])))
interpreter.invoke()
got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
print("EXACT", bool(np.array_equal(got, want[0])))
"""


def test_allocation_failure_is_an_error_not_a_crash(tmp_path):
    """Under an address-space limit (RLIMIT_AS at what the process holds) the delegate's
    prepare fails with its message (the interpreter raises) and the process goes on; without
    the limit the same interpreter prepares, and then invokes bit-exactly, under the limit too
    (kernel scratch is reserved in Prepare: an invoke allocates nothing large)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    script = tmp_path / "limit.py"
    script.write_text(_MEMORY_LIMIT_SCRIPT.format(tests=str(Path(__file__).parent)))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines()
                 if line.split(" ", 1)[0] in ("PREPARE", "INVOKE", "EXACT_LIMITED", "EXACT"))
    print(lines)
    assert "tfquant_dsp: prepare: out of memory" in lines["PREPARE"], lines
    assert lines["INVOKE"] == "ok", lines
    assert lines["EXACT_LIMITED"] == "True" and lines["EXACT"] == "True", lines
