"""Activation ranges (EMA) and the QuantizationScheduler callback during model.fit."""

import keras
import numpy as np
import pytest

from tfquant.qat.activation_quantizer import ActivationQuantizer
from tfquant.qat.batch_norm_folding import FoldedBatchNorm
from tfquant.qat.callbacks import QuantizationScheduler


def test_ema_range():
    q = ActivationQuantizer(decay=0.9)
    a = np.array([[-1.0, 2.0]], np.float32)
    b = np.array([[-3.0, 4.0]], np.float32)
    q(a, training=True)
    assert (float(q.range_min), float(q.range_max)) == (-1.0, 2.0)  # first batch initialises
    q(b, training=True)
    assert float(q.range_min) == pytest.approx(0.9 * -1 + 0.1 * -3)
    assert float(q.range_max) == pytest.approx(0.9 * 2 + 0.1 * 4)
    q.freeze_range.assign(1.0)
    q(b * 10, training=True)
    assert float(q.range_max) == pytest.approx(2.2)
    q(b * 10, training=False)  # inference never moves the range
    assert float(q.range_max) == pytest.approx(2.2)


def test_quantize_flag():
    q = ActivationQuantizer()
    x = np.linspace(-1, 1, 7, dtype=np.float32)[None]
    q(x, training=True)
    quantized = np.array(q(x * 0.77))
    q.quantize.assign(0.0)
    np.testing.assert_array_equal(np.array(q(x * 0.77)), x * 0.77)
    assert not np.array_equal(quantized, x * 0.77)


def _model():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 1))
    y = FoldedBatchNorm("conv2d", 4, kernel_size=(3, 3), padding="same", name="conv_bn")(x)
    y = keras.layers.ReLU()(y)
    y = ActivationQuantizer(name="conv_out")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(2, activation="softmax")(y)
    model = keras.Model(x, y)
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_scheduler_during_fit():
    model = _model()
    x = np.random.default_rng(0).normal(size=(40, 8, 8, 1)).astype(np.float32)
    y = np.arange(40) % 2
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            layer = self.model.get_layer("conv_bn")
            seen.append((float(layer.quantize), float(layer.frozen)))

    scheduler = QuantizationScheduler(quant_delay=3, freeze_bn_delay=7, freeze_ranges_delay=9)
    history = model.fit(x, y, batch_size=4, epochs=1, callbacks=[scheduler, Spy()], verbose=0)
    assert seen[:3] == [(0.0, 0.0)] * 3
    assert seen[3:7] == [(1.0, 0.0)] * 4
    assert seen[7:] == [(1.0, 1.0)] * 3
    assert scheduler.step == 10
    assert history.history["qat/quantizing"] == [1.0]
    assert history.history["qat/bn_frozen"] == [1.0]
    assert history.history["qat/range/conv_out/max"][0] > 0
    assert float(model.get_layer("conv_out").freeze_range) == 1.0


def test_scheduler_rejects_negative_delays():
    with pytest.raises(ValueError, match="quant_delay"):
        QuantizationScheduler(quant_delay=-1)


def test_qat_layers_save_and_load(tmp_path):
    model = _model()
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype(np.float32)
    model.fit(x, np.arange(8) % 2, epochs=1, verbose=0,
              callbacks=[QuantizationScheduler(freeze_bn_delay=0)])
    path = tmp_path / "qat.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.array(loaded(x)), np.array(model(x)))
    layer = loaded.get_layer("conv_bn")
    assert float(layer.frozen) == 1.0 and layer.get_config() == model.get_layer(
        "conv_bn").get_config()


def test_initial_range_starts_the_moving_average():
    q = ActivationQuantizer(decay=0.9, initial_range=(-6, 6))
    b = np.array([[-3.0, 4.0]], np.float32)
    q(b, training=False)  # builds; inference uses the initial range
    assert (float(q.range_min), float(q.range_max)) == (-6.0, 6.0)
    q(b, training=True)  # the first batch moves the range instead of replacing it
    assert float(q.range_min) == pytest.approx(0.9 * -6 + 0.1 * -3)
    assert float(q.range_max) == pytest.approx(0.9 * 6 + 0.1 * 4)
    clone = ActivationQuantizer.from_config(q.get_config())
    assert clone.initial_range == (-6.0, 6.0)


@pytest.mark.parametrize("bad", [(1.0, 2.0), (0.0, 0.0), (-1.0, float("nan")), (1.0,), "wide"])
def test_initial_range_is_checked(bad):
    from tfquant import qat
    with pytest.raises(ValueError, match="initial activation range"):
        qat.QatRecipe(activation_initial_range=bad)


def test_recipe_initial_range_reaches_every_quantizer():
    from tfquant import qat
    from tfquant.qat.callbacks import quant_layers
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 1))
    y = keras.layers.Conv2D(4, 3, padding="same")(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.ReLU(6.0)(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model(x, keras.layers.Dense(2)(y))
    qat_model = qat.quantize_model(model, qat.QatRecipe(activation_initial_range=(-2, 3)))
    qat_model(np.zeros((1, 8, 8, 1), np.float32))
    quantizers = quant_layers(qat_model, ActivationQuantizer)
    assert quantizers
    assert all((float(q.range_min), float(q.range_max)) == (-2.0, 3.0) for q in quantizers)
    default = quant_layers(qat.quantize_model(model), ActivationQuantizer)
    assert all(q.initial_range == (-6.0, 6.0) for q in default)  # tfmot's start
    first_batch = qat.quantize_model(model, qat.QatRecipe(activation_initial_range=None))
    assert all(q.initial_range is None for q in quant_layers(first_batch, ActivationQuantizer))


def test_scheduler_follows_the_optimizer_steps_across_fits():
    """The step comes from the optimizer's iteration count: a second fit (or a run restored
    by BackupAndRestore, which restores the optimizer) resumes the schedule, and a new
    scheduler on that model starts where the optimizer is."""
    model = _model()
    x = np.random.default_rng(0).normal(size=(24, 8, 8, 1)).astype(np.float32)
    y = np.arange(24) % 2
    model.fit(x, y, batch_size=4, epochs=1, verbose=0,
              callbacks=[QuantizationScheduler(quant_delay=100)])  # 6 steps, float
    assert int(model.optimizer.iterations) == 6
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(self.model.get_layer("conv_bn").quantize))

    fresh = QuantizationScheduler(quant_delay=8)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[fresh, Spy()])
    assert seen == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]  # steps 6, 7 float; 8 on quantizing
    assert fresh.step == 12


def test_interrupted_run_restored_by_backup_and_restore_equals_an_uninterrupted_one(tmp_path):
    """A run killed after two of four epochs and restarted (a new model, as a new process
    builds it) with keras.callbacks.BackupAndRestore resumes the schedule at the right step:
    every weight, range and schedule flag equals an uninterrupted run's."""
    x = np.random.default_rng(0).normal(size=(24, 8, 8, 1)).astype(np.float32)
    y = np.arange(24) % 2

    def run(callbacks):
        keras.utils.set_random_seed(3)
        model = _model()
        model.fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0, callbacks=[
            QuantizationScheduler(quant_delay=9, freeze_bn_delay=15), *callbacks])
        return model

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("worker killed")

    uninterrupted = run([]).get_weights()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="worker killed"):
        run([backup, Crash()])
    restored = run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert int(restored.optimizer.iterations) == 24
    restored_weights = restored.get_weights()
    assert len(restored_weights) == len(uninterrupted)
    for got, expected in zip(restored_weights, uninterrupted):
        np.testing.assert_array_equal(got, expected)
    assert float(restored.get_layer("conv_bn").frozen) == 1.0
