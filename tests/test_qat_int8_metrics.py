"""The int8-metrics callback (issue 18, point 4): while a QAT model trains, the int8 model it
would export is measured on the validation data and the figures reach History and a real
TensorBoard event file, equal to an independent evaluation of the same exported bytes."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfquant import qat, runtime
from tfquant.models.data import load_digits


def _event_histograms(log_dir: str) -> dict:
    """{tag: last histogram as (left, right, count) rows} under log_dir."""
    found = {}
    for path in glob.glob(f"{log_dir}/**/events.out.tfevents.*", recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "histograms":
                    found[value.tag] = tf.make_ndarray(value.tensor)
    return found


def _event_scalars(log_dir: str) -> dict:
    """{tag: [values]} of every scalar in the event files under log_dir."""
    found = {}
    for path in glob.glob(f"{log_dir}/**/events.out.tfevents.*", recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    array = tf.make_ndarray(value.tensor)
                    if array.dtype.kind not in "fiu" or array.size != 1:
                        continue  # the model graph, text
                    number = float(array)
                else:
                    number = float(value.simple_value)
                found.setdefault(value.tag, []).append(number)
    return found


def test_int8_accuracy_reaches_history_and_tensorboard(tmp_path):
    digits = load_digits()
    keras.utils.set_random_seed(0)
    x = keras.Input(digits.x_train.shape[1:])
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(y))
    model = qat.quantize_model(keras.Model(x, keras.layers.Dense(10)(y)))
    qat.calibrate_activation_ranges(model, digits.x_train[:256], show_progress=False)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    validation = (digits.x_test[:200], digits.y_test[:200])
    log_dir = str(tmp_path / "logs")
    metrics = qat.Int8Metrics(validation, every=2, log_dir=f"{log_dir}/int8")
    history = model.fit(digits.x_train, digits.y_train, epochs=3, batch_size=64, verbose=0,
                        callbacks=[qat.QuantizationScheduler(), metrics,
                                   keras.callbacks.TensorBoard(log_dir)])
    # every=2 over 3 epochs: after epoch 2 and after the last one
    assert [h["epoch"] for h in metrics.history] == [1, 2]
    assert "int8/accuracy" in history.history and "int8/agreement" in history.history
    independent = float(np.mean(np.argmax(runtime.Runner(metrics.last_model).predict(
        validation[0]), -1) == validation[1]))
    assert metrics.history[-1]["int8/accuracy"] == pytest.approx(independent)
    scalars = _event_scalars(log_dir)
    tag = next(t for t in scalars if t.endswith("int8/accuracy"))
    print(tag, scalars[tag], "independent", independent, "agreement",
          metrics.history[-1]["int8/agreement"])
    assert scalars[tag][-1] == pytest.approx(independent, abs=1e-6)
    assert metrics.history[-1]["int8/agreement"] >= 0.99
    assert independent > 0.5  # it learned something: the figure is not trivially equal

    # Weight-quantization error histograms: one per folded layer, inside half a step of that
    # layer's weights as the exported model quantizes them (its per-channel scales).
    from ai_edge_litert import schema_py_generated as schema
    tflite = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(metrics.last_model, 0))
    largest_step = max(float(np.max(t.quantization.scale)) for t in tflite.subgraphs[0].tensors
                       if t.type == schema.TensorType.INT8 and t.quantization is not None
                       and t.quantization.scale is not None
                       and len(t.quantization.scale) > 1)
    histograms = _event_histograms(log_dir)
    folded = [layer.name for layer in qat.callbacks.quant_layers(model, (qat.FoldedBatchNorm,))]
    assert {f"int8/weight_error/{name}" for name in folded} <= set(histograms), histograms
    for tag, rows in histograms.items():
        nonempty = rows[rows[:, 2] > 0]
        print(tag, nonempty[:, 0].min(), nonempty[:, 1].max(), "half step", largest_step / 2)
        assert nonempty[:, 0].min() >= -largest_step / 2 * 1.001
        assert nonempty[:, 1].max() <= largest_step / 2 * 1.001
        assert rows[:, 2].sum() > 0


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="every"):
        qat.Int8Metrics((np.zeros(1), np.zeros(1)), every=0)
    with pytest.raises(ValueError, match="unknown int8 metric"):
        qat.Int8Metrics((np.zeros(1), np.zeros(1)), metrics=("f1",))
    with pytest.raises(ValueError, match="validation_data"):
        qat.Int8Metrics(np.zeros(3))
