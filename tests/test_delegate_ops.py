"""The DSP delegate, op by op: small tfquant-converted models with random shapes and params run
through the delegate on every runtime and every ISA implementation, and every output element
equals TFLite's reference kernels (BUILTIN_REF). The delegate must claim every node."""

import re

import numpy as np
import pytest

import tfquant
import tfquant.delegate
from tfquant import ops, runtime

RUNTIMES = runtime.available_runtimes()
pytestmark = pytest.mark.delegate


def claimed_counts(stderr: str):
    """(claimed, total) from the delegate's verbose report (last interpreter built)."""
    found = re.findall(r"tfquant_dsp: claimed (\d+) of (\d+) nodes", stderr)
    assert found, stderr
    return tuple(int(v) for v in found[-1])


def run(model, x, runtime_name, delegate=None):
    interpreter = runtime.make_interpreter(model, runtime_name, "reference",
                                           delegates=[delegate] if delegate else ())
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != x.shape:
        interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def encode(model, x):
    """The float batch in the model's input type."""
    from ai_edge_litert.interpreter import Interpreter
    return runtime.encode(x, Interpreter(model_content=model).get_input_details()[0])


def check_exact(model, x, capfd, runtime_name, isa="auto", expect_all=True, threads=1,
                packed_weights_kb=None):
    """Runs reference and delegate; asserts bit equality. Returns (elements, claimed, total)."""
    x = encode(model, x)
    want = run(model, x, runtime_name)
    capfd.readouterr()
    delegate = tfquant.delegate.load(runtime_name, num_threads=threads, verbose=True, isa=isa,
                                     packed_weights_kb=packed_weights_kb)
    got = run(model, x, runtime_name, delegate)
    claimed, total = claimed_counts(capfd.readouterr().err)
    if expect_all:
        assert claimed == total, f"claimed {claimed} of {total}"
    elements = 0
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.shape == g.shape
        mismatch = np.flatnonzero(w.ravel() != g.ravel())
        assert mismatch.size == 0, (
            f"{runtime_name}/{isa}: {mismatch.size} of {w.size} elements differ, first at "
            f"{mismatch[0]}: reference {w.ravel()[mismatch[0]]} delegate {g.ravel()[mismatch[0]]}")
        elements += w.size
    return elements, claimed, total


CASES = ops.delegate_cases()  # every op record's delegate test models, by name
CLAIMED = sorted(name for name, case in CASES.items() if case.claimed)
UNCLAIMED = sorted(name for name, case in CASES.items() if not case.claimed)
THREADED = sorted(name for name, case in CASES.items() if case.threads)


_converted = {}


def converted(name):
    if name not in _converted:
        model, shape, recipe = CASES[name].build()
        calibration = np.random.default_rng(0).uniform(-1, 1, (32, *shape[1:])).astype(np.float32)
        _converted[name] = (tfquant.convert(model, calibration, tfquant.Recipe(**recipe),
                                            show_progress=False), shape)
    return _converted[name]


@pytest.mark.parametrize("name", CLAIMED)
@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_op_bit_exact(name, runtime_name, capfd):
    model, shape = converted(name)
    x = np.random.default_rng(1).uniform(-1.2, 1.2, shape).astype(np.float32)
    check_exact(model, x, capfd, runtime_name)


@pytest.mark.parametrize("name", UNCLAIMED)
def test_ops_the_delegate_does_not_run_stay_on_the_cpu_with_the_same_bits(name, capfd):
    model, shape = converted(name)
    x = np.random.default_rng(1).uniform(-1.2, 1.2, shape).astype(np.float32)
    _, claimed, total = check_exact(model, x, capfd, "litert", expect_all=False)
    assert claimed < total


@pytest.mark.parametrize("isa", tfquant.delegate.isas())
def test_every_isa_gives_the_same_bits(isa, capfd):
    """Every ISA of the delegate's registry that this CPU runs (the others are skipped, and
    an unrunnable one is refused with the registry's names)."""
    if isa not in tfquant.delegate.isas(runnable_only=True):
        with pytest.raises(ValueError, match="not on this CPU|not compiled in"):
            tfquant.delegate.load("litert", isa=isa)
        pytest.skip(f"this CPU does not run {isa}")
    for name in CLAIMED:
        model, shape = converted(name)
        x = np.random.default_rng(2).uniform(-1.2, 1.2, shape).astype(np.float32)
        check_exact(model, x, capfd, "litert", isa=isa)


@pytest.mark.parametrize("name", THREADED)
def test_worker_threads_give_the_same_bits(name, capfd):
    model, shape = converted(name)
    x = np.random.default_rng(3).uniform(-1.2, 1.2, shape).astype(np.float32)
    check_exact(model, x, capfd, "litert", threads=2)
