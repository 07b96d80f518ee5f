"""The DSP delegate on whole models: the MNIST zoo architectures (shipped weights) and
keras.applications MobileNet, MobileNetV2 and ResNet50 (weights=None, batch-norm statistics from
photos, 96x96, calibrated on photo crops), converted by tfquant. On every runtime the delegate
claims every node and every output element equals the reference kernels'."""

import pytest

import tfquant
from test_delegate_ops import RUNTIMES, check_exact
from tfquant.models import applications, data, pretrained

_models = {}

pytestmark = [pytest.mark.slow, pytest.mark.delegate]



def zoo_model(name):
    """The architecture with its shipped MNIST-5k weights (an untrained one can have layers
    whose int8 params the reference kernels themselves reject)."""
    if name not in _models:
        mnist = data.load_mnist_5k()
        model = pretrained.load(name)
        _models[name] = (tfquant.convert(model, mnist.x_train[:512], show_progress=False),
                         mnist.x_test[:16])
    return _models[name]


def application_model(name, include_top=True):
    """tfquant's int8 model of the application, calibrated on 16 photo crops, and 2 other
    crops to run."""
    key = (name, include_top)
    if key not in _models:
        model = applications.build_application(name, 96, include_top=include_top)
        calibration = applications.preprocess(name, data.load_photo_crops(16, 96, seed=0))
        test = applications.preprocess(name, data.load_photo_crops(2, 96, seed=1))
        _models[key] = (tfquant.convert(model, calibration, show_progress=False), test)
    return _models[key]


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "resnet"])
@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_zoo_model_bit_exact(name, runtime_name, capfd):
    model, x = zoo_model(name)
    elements, claimed, total = check_exact(model, x, capfd, runtime_name)
    print(f"{name} on {runtime_name}: {elements} elements equal, claimed {claimed}/{total}")


@pytest.mark.parametrize("name", ["MobileNet", "MobileNetV2", "ResNet50"])
@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_keras_application_bit_exact(name, runtime_name, capfd):
    # The classifier (softmax output) and the headless network (its last feature map, so that
    # thousands of elements are compared rather than ten per image).
    for include_top in (True, False):
        model, x = application_model(name, include_top)
        elements, claimed, total = check_exact(model, x, capfd, runtime_name)
        print(f"{name}{'' if include_top else ' (no top)'} on {runtime_name}: {elements} "
              f"elements equal, claimed {claimed}/{total}")


@pytest.mark.parametrize("packed_weights_kb", [0, 1 << 20])
@pytest.mark.parametrize("threads", [1, 2])
def test_weights_packed_at_each_run_or_kept(packed_weights_kb, threads, capfd):
    """Every GEMM weight packed from the model's buffer at each invoke (0 KB kept), or every one
    kept packed (1 GB): the same bits as the reference kernels either way."""
    model, x = application_model("ResNet50")
    elements, claimed, total = check_exact(model, x, capfd, "litert", threads=threads,
                                           packed_weights_kb=packed_weights_kb)
    print(f"ResNet50, {packed_weights_kb} KB kept, {threads} thread(s): {elements} elements "
          f"equal, claimed {claimed}/{total}")
