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


def native_layer_models(K):
    """{name: (model, inputs)}: one tiny random-weight model per layer family the Keras
    frontend converts beyond the CNN layers (sequence, segmentation, transformer pieces,
    activations), each between layers whose ranges calibrate it, with 64 input samples."""
    L = K.layers
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (64, 8, 8, 4)).astype(np.float32)
    sequence = rng.normal(size=(64, 12, 5)).astype(np.float32)
    tokens = rng.integers(0, 20, size=(64, 7)).astype(np.int32)

    def on_image(body, x=image):
        K.utils.set_random_seed(1)
        inp = K.Input(x.shape[1:])
        y = L.Conv2D(8, 3, padding="same", name="conv_in")(inp)
        y = body(y)
        return K.Model(inp, L.Conv2D(4, 1, name="conv_out")(y)), x

    def on_sequence(body):
        K.utils.set_random_seed(2)
        inp = K.Input(sequence.shape[1:])
        y = L.Dense(8, name="dense_in")(inp)
        return K.Model(inp, L.Dense(3, name="dense_out")(body(y))), sequence

    def act(kind):
        return lambda y: L.Activation(kind, name=kind)(y)

    models = {
        "conv1d": on_sequence(lambda y: L.Conv1D(6, 3, padding="same", activation="relu",
                                                 name="conv1d")(y)),
        "conv1d_strided_valid": on_sequence(lambda y: L.Conv1D(6, 3, strides=2,
                                                               name="conv1d")(y)),
        "conv1d_causal_dilated": on_sequence(lambda y: L.Conv1D(6, 2, padding="causal",
                                                                dilation_rate=2,
                                                                name="conv1d")(y)),
        "global_average_pooling1d": on_sequence(
            lambda y: L.GlobalAveragePooling1D(name="gap1d")(y)),
        "max_pooling1d": on_sequence(lambda y: L.MaxPooling1D(2, name="pool1d")(y)),
        "average_pooling1d": on_sequence(lambda y: L.AveragePooling1D(
            3, strides=2, padding="same", name="pool1d")(y)),
        "global_max_pooling1d": on_sequence(lambda y: L.GlobalMaxPooling1D(name="gmp1d")(y)),
        "global_max_pooling2d": on_image(lambda y: L.Reshape((1, 1, 8))(
            L.GlobalMaxPooling2D(name="gmp2d")(y))),
        "cropping2d": on_image(lambda y: L.Cropping2D(((1, 2), (0, 1)), name="crop")(y)),
        "grouped_conv2d": on_image(lambda y: L.Conv2D(8, 3, groups=4, padding="same",
                                                      name="grouped")(y)),
        "grouped_conv2d_depthwise": on_image(lambda y: L.Conv2D(16, 3, groups=8,
                                                                padding="same",
                                                                name="grouped_dw")(y)),
        "conv2d_transpose_same": on_image(lambda y: L.Conv2DTranspose(
            6, 3, strides=2, padding="same", activation="relu", name="up_conv")(y)),
        "conv2d_transpose_valid": on_image(lambda y: L.Conv2DTranspose(
            6, (2, 3), strides=(1, 2), name="up_conv")(y)),
        "upsampling2d_nearest": on_image(lambda y: L.UpSampling2D(2, name="up")(y)),
        "upsampling2d_bilinear": on_image(lambda y: L.UpSampling2D(
            2, interpolation="bilinear", name="up")(y)),
        "multiply": on_image(lambda y: L.Multiply(name="gate")(
            [y, L.Conv2D(8, 1, activation="sigmoid", name="se")(y)])),
        "subtract": on_image(lambda y: L.Subtract(name="sub")([y, L.Conv2D(8, 1)(y)])),
        "maximum": on_image(lambda y: L.Maximum(name="max")([y, L.Conv2D(8, 1)(y)])),
        "minimum": on_image(lambda y: L.Minimum(name="min")([y, L.Conv2D(8, 1)(y)])),
        "layer_normalization": on_sequence(lambda y: L.LayerNormalization(name="ln")(y)),
        "silu": on_image(act("silu")),
        "swish": on_image(lambda y: L.Dense(8, activation="swish", name="swish")(y)),
        "gelu": on_sequence(lambda y: L.Dense(8, activation="gelu", name="gelu")(y)),
        "hard_sigmoid": on_image(act("hard_sigmoid")),
        "elu": on_image(act("elu")),
        "permute": on_image(lambda y: L.Permute((2, 1, 3), name="permute")(y)),
        "repeat_vector": on_sequence(lambda y: L.RepeatVector(3, name="repeat")(
            L.Flatten()(y))),
    }
    convnext = __import__(f"{K.__name__}.src.applications.convnext", fromlist=["LayerScale"])
    models["layer_scale"] = on_image(lambda y: convnext.LayerScale(0.5, 8, name="scale")(y))
    K.utils.set_random_seed(3)
    inp = K.Input(image.shape[1:])
    norm = L.Normalization(name="norm")
    norm.adapt(image * 3 + 1)
    models["normalization"] = (K.Model(inp, L.Conv2D(4, 3, name="conv_out")(norm(inp))),
                               image * 3 + 1)
    K.utils.set_random_seed(5)
    inp = K.Input(sequence.shape[1:])
    y = L.Dense(8, name="dense_in")(inp)
    y = L.MultiHeadAttention(2, 4, name="self_attention")(y, y)
    models["multi_head_attention_self"] = (K.Model(inp, L.Dense(3, name="dense_out")(y)),
                                           sequence)
    K.utils.set_random_seed(6)
    queries, memory = K.Input((4, 6)), K.Input(sequence.shape[1:])
    y = L.MultiHeadAttention(3, 5, value_dim=2, name="cross_attention")(
        L.Dense(8, name="query_in")(queries), L.Dense(8, name="memory_in")(memory))
    models["multi_head_attention_cross"] = (
        K.Model([queries, memory], L.Dense(3, name="dense_out")(y)),
        (rng.normal(size=(64, 4, 6)).astype(np.float32), sequence))
    K.utils.set_random_seed(4)
    inp = K.Input((7,), dtype="int32")
    y = L.Embedding(20, 8, name="embedding")(inp)
    models["embedding"] = (K.Model(inp, L.Dense(3, name="dense_out")(
        L.GlobalAveragePooling1D()(y))), tokens)
    return models
