"""Small random-weight models that exercise every supported Keras layer, for Keras 3 and
tf_keras. BatchNormalization statistics are randomized so that folding is really tested."""

import numpy as np


def randomize_batch_norms(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "layers"):
            randomize_batch_norms(layer, seed + 1)
        if type(layer).__name__ == "BatchNormalization":
            shapes = [w.shape for w in layer.get_weights()]
            layer.set_weights([rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, 0.2, shapes[1]),
                               rng.normal(0, 0.2, shapes[2]), rng.uniform(0.5, 1.5, shapes[3])])
    return model


def conv_depthwise_classifier(K, input_shape, classes, softmax=True):
    """conv + BN + ReLU6, depthwise + BN + ReLU6, 1x1 conv, global pooling, dense: the
    MobileNet pattern at its smallest (batch norms to fold, per-channel ranges to spread)."""
    L = K.layers
    x = K.Input(input_shape)
    y = L.Conv2D(8, 3, padding="same", use_bias=False)(x)
    y = L.BatchNormalization()(y)
    y = L.ReLU(6.0)(y)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
    y = L.BatchNormalization()(y)
    y = L.ReLU(6.0)(y)
    y = L.Conv2D(16, 1, activation="relu")(y)
    y = L.GlobalAveragePooling2D()(y)
    return K.Model(x, L.Dense(classes, activation="softmax" if softmax else None)(y))


def every_layer_model(K, input_shape=(16, 16, 3)):
    """A functional model with a nested Sequential and a nested Functional sub-model, using
    every layer type the Keras frontend supports."""
    K.utils.set_random_seed(0)
    L = K.layers
    x = K.Input(input_shape, name="image")
    y = L.Rescaling(2.0, offset=-1.0, name="rescale")(x)
    y = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(y)
    y = L.Conv2D(8, 3, strides=2, padding="valid", use_bias=False, name="stem")(y)
    y = L.BatchNormalization(name="stem_bn")(y)
    y = L.ReLU(6.0, name="stem_relu6")(y)
    block = K.Sequential([
        K.Input(tuple(int(d) for d in y.shape[1:])),
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False, name="dw"),
        L.BatchNormalization(name="dw_bn"),
        L.Activation("relu", name="dw_relu"),
        L.Conv2D(8, 1, name="pw"),
        L.BatchNormalization(name="pw_bn"),
    ], name="block")
    z = block(y)
    y = L.Add(name="residual")([y, z])
    y = L.ReLU(name="residual_relu")(y)
    branch_in = K.Input(tuple(int(d) for d in y.shape[1:]))
    b1 = L.SeparableConv2D(6, 3, padding="same", activation="relu", name="sep")(branch_in)
    b2 = L.Conv2D(4, 3, padding="same", dilation_rate=2, activation="hard_swish" if hasattr(K.activations, "hard_swish") else "relu",
                  name="dilated")(branch_in)
    b3 = L.MaxPooling2D(3, strides=1, padding="same", name="maxpool")(branch_in)
    branches = K.Model(branch_in, L.Concatenate(name="concat")([b1, b2, b3]), name="branches")
    y = branches(y)
    y = L.BatchNormalization(name="lonely_bn")(y)  # after a concat: becomes MUL + ADD
    y = L.AveragePooling2D(2, name="avgpool")(y)
    slope = {"negative_slope": 0.1} if K.__name__ == "keras" else {"alpha": 0.1}
    y = L.LeakyReLU(**slope, name="leaky")(y)
    y = L.Conv2D(12, 3, padding="same", activation="sigmoid", name="gate")(y)
    g = L.GlobalAveragePooling2D(name="gap")(y)
    f = L.Flatten(name="flatten")(y)
    f = L.Reshape((-1, 12), name="reshape")(f)
    f = L.Dense(6, activation="relu6", name="dense_3d")(f)
    f = L.Flatten(name="flatten2")(f)
    y = L.Concatenate(name="features")([g, f])
    y = L.Dropout(0.3, name="dropout")(y)
    y = L.Dense(10, name="logits")(y)
    y = L.Activation("softmax", name="probs")(y)
    return randomize_batch_norms(K.Model(x, y, name="every_layer"))
