"""QAT under distribution strategies: activation ranges are reduced across replicas, so that
an extreme seen by one replica's shard reaches the ranges (and the export), and a run on two
replicas trains the same ranges as one device with the same global batch."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

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


# Keras 3's Model.fit does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585,
# tensorflow/tensorflow#72388: "Attempt to convert a value (PerReplica ...)"), so the workers
# train the QAT model with a custom loop: tfquant's QAT layers (range all-gather, folded
# weights) work in any replica context.
_WORKER = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import tfquant
    import tensorflow as tf
    import keras
    from tfquant import qat
    from tfquant.models import data

    output, workers = sys.argv[1], int(sys.argv[2])
    # Grappler's arithmetic optimizer re-associates the sums that meet gradients of a tensor
    # with several consumers (MobileNet-v2's residual blocks) differently in a one-process
    # two-device graph than in a one-device worker graph: ulp differences that fake
    # quantization amplifies. Off in both, the runs are bit-identical.
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
    # Optional: a checkpoint directory to resume from and save to every 4 steps, and the step
    # at which worker 1 dies (a crash in the middle of training).
    checkpoint_dir = sys.argv[3] if len(sys.argv) > 3 else ""
    crash_at = int(sys.argv[4]) if len(sys.argv) > 4 else -1
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
    if workers > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:  # one worker with two replicas: each replica takes the half a worker takes
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mnist = data.load_mnist_5k()
    x, y = mnist.x_train[:1024], mnist.y_train[:1024]
    GLOBAL_BATCH, L = 64, keras.layers
    # The model (TFQ_MODEL): a small convolutional one trained from scratch, or fine-tuned: the
    # MNIST-5k MobileNet-v2 that tfquant ships (batch norms folded) or the trained ViT-tiny of
    # docs/coverage.md (patch embedding, attention, layer norms, gelu).
    name = os.environ.get("TFQ_MODEL", "small")
    learning_rate = {"small": 0.5, "vit_tiny": 0.003, "mobilenet_v2": 0.001}[name]
    with strategy.scope():
        keras.utils.set_random_seed(0)
        if name == "small":
            inputs = keras.Input((28, 28, 1))
            h = L.Conv2D(8, 3, strides=2, activation="relu")(inputs)
            h = L.Dense(32, activation="relu")(L.Flatten()(h))
            model = keras.Model(inputs, L.Dense(10)(h))
        elif name == "vit_tiny":  # trained by the test first (the cache of coverage_models)
            from tfquant.experiments.coverage_models import trained, vit_tiny
            model = trained("vit_tiny", vit_tiny, mnist.x_train, mnist.y_train,
                            "sparse_categorical_crossentropy", 5, print)
        else:
            from tfquant.models import pretrained
            model = pretrained.load("mobilenet_v2")
        qat_model = qat.quantize_model(model, qat.QatRecipe(activation_initial_range=None))
        step = tf.Variable(0, dtype=tf.int64, trainable=False)
    from_logits = name == "small"  # the others end in a softmax
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits,
                                                         reduction="none")
    variables = qat_model.trainable_variables

    @tf.function
    def train_step(batch):
        def replica_step(images, labels):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(loss_fn(labels, qat_model(images, training=True)))
                loss = loss / GLOBAL_BATCH
            return tape.gradient(loss, variables), loss
        gradients, loss = strategy.run(replica_step, args=batch)
        for variable, gradient in zip(variables, gradients):
            total = strategy.reduce("SUM", gradient, axis=None)
            variable.assign_sub(learning_rate * total)
        return strategy.reduce("SUM", loss, axis=None)

    checkpoint = tf.train.Checkpoint(model=qat_model, step=step)
    if checkpoint_dir:  # every worker saves; the chief's copy is the one restored
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir if task == 0 else
                                             os.path.join(checkpoint_dir, f"worker{task}"),
                                             max_to_keep=1)
        latest = tf.train.latest_checkpoint(checkpoint_dir)
        if latest:
            checkpoint.restore(latest)
    resumed_at = int(step.numpy())
    steps = []
    for epoch in range(2):
        losses = []
        for i, batch in enumerate(batches):
            k = epoch * 16 + i
            if k < resumed_at:
                continue
            if k == crash_at and task == 1:
                os._exit(3)
            losses.append(float(train_step(batch)))
            step.assign(k + 1)
            if checkpoint_dir and (k + 1) % 4 == 0:
                manager.save()
        steps.append(losses)
    if task == 0:
        tfquant.save_atomically(tfquant.convert(qat_model, show_progress=False), output)
    print(json.dumps({"task": task, "steps": steps, "resumed_at": resumed_at}))
""")


def _free_ports(count: int) -> list:
    import socket
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_worker(output, workers, env, *extra):
    return subprocess.Popen([sys.executable, "-c", _WORKER, output, str(workers), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_two_workers(output, extra=(), crash=False, model="small") -> list:
    """Two MultiWorkerMirroredStrategy workers on fresh loopback ports; (stdout, stderr,
    return code) of each. With `crash`, worker 1 dies by itself and worker 0, left waiting in
    a collective, is killed (as a cluster manager would). No worker outlives the call."""
    import json
    base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFQ_MODEL=model)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    workers = [_start_worker(output, 2, dict(base, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}})), *extra)
        for i in range(2)]
    try:
        if crash:
            second = workers[1].communicate(timeout=600)
            workers[0].kill()
            first = workers[0].communicate(timeout=60)
            return [(*first, workers[0].returncode), (*second, workers[1].returncode)]
        return [(*w.communicate(timeout=600), w.returncode) for w in workers]
    finally:  # never leave a worker behind
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()


# {model: int8 MNIST-5k accuracy it must pass after 32 steps}: all three (convolution and
# dense; MobileNet-v2 with residual blocks and batch-norm folding; the fine-tuned ViT-tiny with
# attention, layer norms, gelu) are bit-identical to one worker with two replicas: losses and
# int8 bytes (the MobileNet-v2 only with Grappler's arithmetic optimizer off, see _WORKER).
MODELS = {"small": 0.5, "mobilenet_v2": 0.9, "vit_tiny": 0.85}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_two_worker_processes_train_what_one_worker_trains(tmp_path, mnist, model):
    """MultiWorkerMirroredStrategy with two worker processes on loopback ports (CPU
    collectives) trains the QAT model that one worker with two replicas trains on the same
    global batches in the same order. (Against one device the losses agree for the first
    steps, then drift with the order in which gradients are summed: fake quantization rounds
    those differences either way.)"""
    import json

    from tfquant import runtime
    minimum_accuracy = MODELS[model]
    if model == "vit_tiny":  # trained once here, so that the workers load the same weights
        from tfquant.experiments.coverage_models import trained, vit_tiny
        trained("vit_tiny", vit_tiny, mnist.x_train, mnist.y_train,
                "sparse_categorical_crossentropy", 5, print)
    base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFQ_MODEL=model)
    multi, single = str(tmp_path / "two_workers.tflite"), str(tmp_path / "one_worker.tflite")
    results = _run_two_workers(multi, model=model)
    for out, err, code in results:
        assert code == 0, err[-3000:]
    one = _start_worker(single, 1, base)
    out, err = one.communicate(timeout=600)
    assert one.returncode == 0, err[-3000:]
    steps = [json.loads(text.strip().splitlines()[-1])["steps"]
             for text in [r[0] for r in results] + [out]]
    assert steps[0] == steps[1]  # the workers are in sync
    assert steps[0][0][:3] == steps[2][0][:3], steps  # the same first steps
    with open(multi, "rb") as f:
        two_workers = f.read()
    with open(single, "rb") as f:
        one_worker = f.read()
    predicted = [runtime.Runner(m, "litert").predict(mnist.x_test)
                 for m in (two_workers, one_worker)]
    agreement = np.mean(np.argmax(predicted[0], 1) == np.argmax(predicted[1], 1))
    accuracy = np.mean(np.argmax(predicted[0], 1) == mnist.y_test)
    print(f"{model}, two workers: int8 accuracy {accuracy:.3f} after 32 steps, top-1 "
          f"agreement with one worker {agreement:.4f}, int8 bytes "
          f"{'equal' if two_workers == one_worker else 'differ'}, losses "
          f"{'equal' if steps[0] == steps[2] else 'differ'}")
    assert accuracy > minimum_accuracy
    assert steps[0] == steps[2] and two_workers == one_worker


def test_killed_worker_resumes_from_the_checkpoint(tmp_path):
    """Worker 1 dies at step 10 of 32 (checkpoints every 4 steps); both workers restart, restore
    step 8 (weights, quantizer ranges, the step counter) and finish: the int8 model equals an
    uninterrupted run's, byte for byte."""
    import json
    checkpoints = str(tmp_path / "checkpoints")
    resumed, uninterrupted = str(tmp_path / "resumed.tflite"), str(tmp_path / "whole.tflite")
    crashed = _run_two_workers(resumed, (checkpoints, "10"), crash=True)
    assert crashed[1][2] == 3, crashed[1][1][-3000:]  # worker 1's own exit
    assert not os.path.exists(resumed)
    finished = _run_two_workers(resumed, (checkpoints,))
    for out, err, code in finished:
        assert code == 0, err[-3000:]
    report = json.loads(finished[0][0].strip().splitlines()[-1])
    assert report["resumed_at"] == 8 and len(report["steps"][0]) == 8, report
    base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    whole = _start_worker(uninterrupted, 1, base)
    out, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, err[-3000:]
    reference = json.loads(out.strip().splitlines()[-1])["steps"]
    assert report["steps"][0] == reference[0][8:] and report["steps"][1] == reference[1]
    with open(resumed, "rb") as f, open(uninterrupted, "rb") as g:
        assert f.read() == g.read()
