"""QAT under distribution strategies: activation ranges are reduced across replicas, so that
an extreme seen by one replica's shard reaches the ranges (and the export), and a run on two
replicas trains the same ranges as one device with the same global batch."""

import os
import subprocess
import sys
import textwrap

_RANGES = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tfquant
    import tensorflow as tf
    replicas = int(sys.argv[1])
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    import keras
    from tfquant import qat

    strategy = (tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
                if replicas > 1 else tf.distribute.get_strategy())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    # Each global batch of 64 is split in halves between two replicas: an extreme in each half,
    # of opposite signs, so that no replica's shard alone holds the global batch's range.
    x[10, 1], x[50, 2] = -40.0, 30.0
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(16, "relu")(inputs)))
    with strategy.scope():
        qat_model = qat.quantize_model(model, qat.QatRecipe(activation_initial_range=None))
        qat_model.compile(keras.optimizers.SGD(0.01),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat_model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0,
                  callbacks=[qat.QuantizationScheduler()])
    ranges = {l.name: l.applied_range() for l in qat_model.layers
              if isinstance(l, qat.ActivationQuantizer)}
    graph = tfquant.convert_model(qat_model, show_progress=False).graph
    quantize = next(op for op in graph.ops if op.type == "QUANTIZE")
    params = graph.tensors[quantize.outputs[0]].quant
    print(json.dumps({"ranges": ranges, "input_scale": float(params.scale[0]),
                      "input_zero_point": int(params.zero_point[0])}))
""")


def _run(replicas: int) -> dict:
    import json
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", _RANGES, str(replicas)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ranges_are_reduced_across_replicas():
    two, one = _run(2), _run(1)
    low, high = two["ranges"]["input_layer_quant"]
    # The input's first batch initialises its range with both shards' extremes (the second
    # batch moves it by 0.1%).
    assert low <= -39.9 and high >= 29.9, (low, high)
    # The exported input grid holds them too.
    scale, zero_point = two["input_scale"], two["input_zero_point"]
    assert (-128 - zero_point) * scale <= -39.5 and (127 - zero_point) * scale >= 29.5
    # Two replicas train the ranges one device trains on the same global batches.
    for name, (low, high) in one["ranges"].items():
        other = two["ranges"][name]
        assert abs(other[0] - low) <= 1e-4 * (1 + abs(low)), (name, other, low)
        assert abs(other[1] - high) <= 1e-4 * (1 + abs(high)), (name, other, high)
