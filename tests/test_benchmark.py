"""tfquant-benchmark end to end on a tiny model (in-process; few runs; no timing is asserted)
and its checked Config, and the DSP cost model: the delegate's analytic HVX instruction counts
agree with the ops' shapes, and the cycle estimate is positive and grows with the counts."""

import keras
import numpy as np
import pytest

import tfquant
import tfquant.delegate
from tfquant import runtime
from tfquant.experiments import delegate_profiling
from tfquant.tools import _app
from tfquant.tools import benchmark

L = keras.layers
CONFIGS = ("float32 + XNNPACK", "int8 built-in", "int8 + XNNPACK", "int8 + delegate")


def _tiny_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((20, 18, 8))
    y = L.Conv2D(40, 3, strides=2, padding="same", activation="relu")(x)   # 10x9x40
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(y)        # 10x9x40
    y = L.Conv2D(70, 1, activation="relu")(y)                              # 10x9x70, 1x1
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(10, activation="softmax")(y)
    return keras.Model(x, y)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = _tiny_model()
    calibration = np.random.default_rng(0).uniform(-1, 1, (8, 20, 18, 8)).astype(np.float32)
    root = tmp_path_factory.mktemp("bench")
    int8 = tfquant.convert(model, calibration, show_progress=False)
    float32 = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"), show_progress=False)
    (root / "tiny_int8.tflite").write_bytes(int8)
    (root / "tiny_float.tflite").write_bytes(float32)
    return root, int8


@pytest.mark.delegate
def test_benchmark_prints_every_section(tiny, capsys):
    root, _ = tiny
    output = root / "report.md"
    config = _app.parse(benchmark.Config, [
        "tfquant-benchmark", f"--model={root / 'tiny_int8.tflite'}",
        f"--float_model={root / 'tiny_float.tflite'}", "--threads=1,2", "--runs=2",
        "--warmup=1", "--profile_runs=2", f"--output={output}"])
    assert config.threads == (1, 2) and config.model == (str(root / "tiny_int8.tflite"),)
    assert benchmark.main(config) == 0
    out = capsys.readouterr().out
    for section in ("## Latency (ms)", "## Ratios", "## Multi-thread speed-ups",
                    "## Bit-exactness", "## Delegate profile", "## Largest 1x1 convolution",
                    "## DSP cost model", "## Peak memory"):
        assert section in out, section
    for name in CONFIGS:
        assert name in out
    assert "bit-exact: yes (tiny_int8.tflite, 1 thread(s))" in out
    assert "bit-exact: yes (tiny_int8.tflite, 2 thread(s))" in out
    assert "CONV_2D" in out and "DEPTHWISE_CONV_2D" in out
    assert "GMAC/s" in out and "of measured peak" in out and "Measured int8 peak:" in out
    written = output.read_text()
    assert written.startswith("# tfquant-benchmark (ai-edge-litert)\n\nMade by "
                              "`tfquant-benchmark --model="), written[:200]
    assert out.strip().partition("\n")[2].strip() in written
    # Peak memory: both configurations measured in fresh processes, in MB, with their ratio.
    memory = out[out.index("## Peak memory"):]
    row = next(line for line in memory.splitlines() if line.startswith("| tiny_int8.tflite | 1 |"))
    builtin, delegate, ratio = [c.strip() for c in row.strip("|").split("|")[2:]]
    assert float(builtin) > 0 and float(delegate) > 0 and ratio.endswith("x"), row


def test_config_is_checked():
    with pytest.raises(ValueError, match="give --model and/or --keras_application"):
        benchmark.Config()
    with pytest.raises(ValueError, match="--float_model needs exactly one --model"):
        benchmark.Config(model=("a.tflite", "b.tflite"), float_model="f.tflite")
    with pytest.raises(ValueError, match="--threads must list positive integers"):
        benchmark.Config(model=("a.tflite",), threads=(1, 0))
    with pytest.raises(ValueError, match="--threads must list positive integers"):
        benchmark.Config(model=("a.tflite",), threads=())
    with pytest.raises(ValueError, match="--threads takes integers, got 'two'"):
        _app.parse(benchmark.Config, ["tfquant-benchmark", "--model=a.tflite",
                                      "--threads=1,two"])
    with pytest.raises(ValueError, match="--dsp_clock_ghz must be at least 0.01"):
        benchmark.Config(model=("a.tflite",), dsp_clock_ghz=0.0)
    assert benchmark.cpu_clock_ghz(2.5) == (2.5, "--cpu_ghz")
    with pytest.raises(ValueError, match="--isa=no_such_isa does not run on this CPU; use auto"):
        benchmark.Config(model=("a.tflite",), isa="no_such_isa")


@pytest.mark.delegate
def test_benchmark_of_a_named_isa_table(tiny, capsys):
    """--isa runs every delegate configuration on that table (here each SIMD one this CPU has
    below the best, e.g. AVX2 on an AVX-512 machine), bit-exact, and the report says which."""
    import tfquant.delegate
    root, _ = tiny
    lower = [name for name in tfquant.delegate.isas(runnable_only=True)
             if name not in ("scalar", tfquant.delegate.best_isa())]
    if not lower:
        pytest.skip("this CPU runs one SIMD table")
    config = _app.parse(benchmark.Config, [
        "tfquant-benchmark", f"--model={root / 'tiny_int8.tflite'}", "--threads=1", "--runs=2",
        "--warmup=1", "--profile_runs=2", "--nomemory", f"--isa={lower[0]}"])
    assert benchmark.main(config) == 0
    out = capsys.readouterr().out
    assert f"ISA table {lower[0]} (--isa; only the delegate is restricted" in out
    assert "bit-exact: yes (tiny_int8.tflite, 1 thread(s))" in out


def _profile(model, threads=1):
    rows, _ = delegate_profiling.profile_delegate(model, threads, runs=2)
    return rows


@pytest.mark.delegate
def test_profile_carries_the_measured_peak(tiny, tmp_path):
    _, int8 = tiny
    rows, peak = delegate_profiling.profile_delegate(int8, 1, runs=1)
    assert rows and peak >= 0
    # The delegate writes the measurement when it is created, before any op line.
    path = tmp_path / "profile.tsv"
    delegate = tfquant.delegate.load(profile=str(path))
    gmacs, form = tfquant.delegate.read_profile_peak(path)
    assert form in ("zmm", "ymm", "none")
    assert tfquant.delegate.read_profile(path) == []
    del delegate
    if form == "none":
        assert gmacs == 0.0 == peak
        pytest.skip("this CPU has no VNNI: no peak to measure")
    assert gmacs > 0 and peak > 0


@pytest.mark.delegate
def test_cost_model_counts_match_the_shapes(tiny):
    _, int8 = tiny
    rows = _profile(int8)
    by_op = {}
    for r in rows:
        by_op.setdefault(r["op"], []).append(r)
    conv3, conv1 = by_op["CONV_2D"]
    # 3x3 stride 2 conv: 10x9 outputs x 40 channels x (3*3*8) taps.
    assert conv3["output_shape"] == "1x10x9x40"
    assert conv3["macs"] == 10 * 9 * 40 * 3 * 3 * 8
    # vrmpy: per output pixel, 32-channel block (2 for 40) and group of 4 depth values (72 / 4).
    assert conv3["vrmpy"] == 10 * 9 * 2 * (3 * 3 * 8 // 4)
    assert conv1["macs"] == 10 * 9 * 70 * 40
    assert conv1["vrmpy"] == 10 * 9 * 3 * 10
    (dw,) = by_op["DEPTHWISE_CONV_2D"]
    assert dw["macs"] == 10 * 9 * 40 * 9 and dw["vmpy"] > 0
    (fc,) = by_op["FULLY_CONNECTED"]
    assert fc["macs"] == 70 * 10
    for r in rows:
        assert r["invokes"] == 2 and r["total_us"] >= r["min_us"] >= 0
        assert min(r[k] for k in ("vrmpy", "vmpy", "valu", "vshift", "vload", "vstore")) >= 0
        assert r["vload"] + r["vstore"] > 0
    # Each vrmpy is 128 MACs: the counted vrmpy cover the useful MACs (padding included).
    for r in (conv3, conv1):
        assert 128 * r["vrmpy"] >= r["macs"]


def test_dsp_cycles_positive_and_monotonic():
    p = delegate_profiling.DspParams()
    zero = dict(vrmpy=0, vmpy=0, valu=0, vshift=0, vload=0, vstore=0)
    assert delegate_profiling.dsp_cycles(zero, p) == p.op_overhead > 0
    conv = dict(zero, vrmpy=1000, vload=300, valu=50)
    assert delegate_profiling.dsp_cycles(conv, p) == p.op_overhead + 1000 / p.mpy_units
    more = dict(conv, vrmpy=2000)
    assert delegate_profiling.dsp_cycles(more, p) > delegate_profiling.dsp_cycles(conv, p)
    two = delegate_profiling.DspParams(contexts=2)
    assert delegate_profiling.dsp_cycles(conv, two) == p.op_overhead + 1000 / p.mpy_units / 2


def _outputs(model, x, delegate):
    interpreter = runtime.make_interpreter(model, "litert", "reference", delegates=[delegate]
                                           if delegate else ())
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


@pytest.mark.delegate
def test_thread_pool_gives_the_single_thread_bits(tiny):
    _, int8 = tiny
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (3, 20, 18, 8)).astype(np.float32)  # batch 3: uneven splits
    reference = _outputs(int8, x, None)
    for threads in (1, 2, 3, 5):
        delegate = tfquant.delegate.load("litert", num_threads=threads)
        got = _outputs(int8, x, delegate)
        np.testing.assert_array_equal(got, reference, err_msg=f"{threads} threads")
