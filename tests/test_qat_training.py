"""Fine-tuning order (tfquant.qat.epoch_orders / fit_in_order): the batches of
tfquant.qat.fine_tune and of the tfmot peer come from one seeded numpy generator, so a
comparison of the two sees the same data in the same order."""

import keras
import numpy as np
import pytest

from tfquant.qat.training import epoch_orders, fit_in_order


def test_epoch_orders_are_seeded_permutations():
    orders = epoch_orders(50, 3, seed=7)
    assert len(orders) == 3
    for order in orders:
        assert sorted(order.tolist()) == list(range(50))
    assert not np.array_equal(orders[0], orders[1])
    again = epoch_orders(50, 3, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(orders, again))
    assert not np.array_equal(epoch_orders(50, 1, seed=8)[0], orders[0])


def _recorder(K, seen):
    """An identity layer of Keras module K that records the first feature of every sample
    it sees eagerly (fit with run_eagerly: the training batches)."""
    class Recorder(K.layers.Layer):
        def call(self, x):
            if hasattr(x, "numpy"):
                seen.extend(x.numpy()[:, 0].astype(int).tolist())
            return x
    return Recorder()


@pytest.mark.parametrize("module", ["keras", "tf_keras"])
def test_fit_in_order_feeds_the_batches_in_that_order(module):
    K = keras if module == "keras" else pytest.importorskip("tf_keras")
    seen = []
    inputs = K.Input((2,))
    model = K.Model(inputs, K.layers.Dense(1)(_recorder(K, seen)(inputs)))
    model.compile(K.optimizers.SGD(0.01), "mse", run_eagerly=True)
    x = np.stack([np.arange(20), np.ones(20)], axis=1).astype(np.float32)
    y = np.zeros((20, 1), np.float32)
    orders = epoch_orders(20, 2, seed=3)
    fit_in_order(model, x, y, orders, batch_size=8)
    assert seen == np.concatenate(orders).tolist()
