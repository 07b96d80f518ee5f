"""Each pass alone: BN folding, activation fusion, identity removal, same-scale groups."""

import numpy as np

from tfquant import ir, ops, runtime, vocabulary, writer
from tfquant.passes import fold_batch_norm, fuse_activation, merge_reshapes, remove_identity
from tfquant.params import same_scale_groups


def _conv_bn_graph(consumers=1):
    g = ir.Graph()
    rng = np.random.default_rng(0)
    x = g.add_tensor("x", (-1, 5, 5, 3))
    g.inputs = [x]
    w = g.add_const("w", rng.normal(size=(4, 3, 3, 3)).astype(np.float32))
    b = g.add_const("b", rng.normal(size=4).astype(np.float32))
    y = g.add_tensor("conv", (-1, 5, 5, 4))
    g.add_op("CONV_2D", [x, w, b], [y], ops.make_options("CONV_2D", padding="SAME",
                                                         stride=(1, 1)), ("conv",))
    bn = vocabulary.BatchNormOptions(gamma=rng.uniform(0.5, 2, 4).astype(np.float32),
                                     beta=rng.normal(size=4).astype(np.float32),
                                     mean=rng.normal(size=4).astype(np.float32),
                                     variance=rng.uniform(0.5, 2, 4).astype(np.float32),
                                     epsilon=1e-3)
    z = g.add_tensor("bn", (-1, 5, 5, 4))
    g.add_op("BATCH_NORM", [y], [z], bn, ("bn",))
    r = g.add_tensor("relu", (-1, 5, 5, 4))
    g.add_op("RELU6", [z], [r], source=("relu",))
    g.outputs = [r] if consumers == 1 else [r, y]
    return g


def _run(graph, x):
    # BATCH_NORM is a pseudo-op: evaluate the unfolded reference with numpy MUL/ADD lowering.
    return runtime.Runner(writer.write_tflite(graph)).predict(x)


def test_fold_batch_norm_preserves_outputs():
    g = _conv_bn_graph()
    folded = fold_batch_norm(g)
    assert [op.type for op in folded.ops] == ["CONV_2D", "RELU6"]
    assert folded.ops[0].source == ("conv", "bn")
    assert [op.type for op in g.ops] == ["CONV_2D", "BATCH_NORM", "RELU6"]  # input untouched
    # Reference: conv, then batch norm in numpy, then relu6.
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 3)).astype(np.float32)
    conv_only = g.copy()
    conv_only.set_ops(conv_only.ops[:1])
    conv_only.outputs = ["conv"]
    conv_only.prune()
    y = _run(conv_only, x)
    o = g.ops[1].options
    expected = np.clip(o.gamma * (y - o.mean) / np.sqrt(o.variance + o.epsilon) + o.beta, 0, 6)
    np.testing.assert_allclose(_run(folded, x), expected, atol=1e-5)


def test_batch_norm_not_folded_when_conv_output_is_shared():
    g = _conv_bn_graph(consumers=2)
    folded = fold_batch_norm(g)
    assert [op.type for op in folded.ops] == ["CONV_2D", "MUL", "ADD", "RELU6"]


def test_fuse_activation():
    fused = fuse_activation(fold_batch_norm(_conv_bn_graph()))
    assert [op.type for op in fused.ops] == ["CONV_2D"]
    assert fused.ops[0].options.fused_activation == "RELU6"
    assert fused.outputs == ["relu"]


def test_activation_not_fused_into_concatenation():
    g = ir.Graph()
    a = g.add_tensor("a", (1, 4))
    c = g.add_tensor("c", (1, 8))
    r = g.add_tensor("r", (1, 8))
    g.inputs = [a]
    g.add_op("CONCATENATION", [a, a], [c], ops.make_options("CONCATENATION", axis=1))
    g.add_op("RELU", [c], [r])
    g.outputs = [r]
    assert [op.type for op in fuse_activation(g).ops] == ["CONCATENATION", "RELU"]


def test_remove_identity_keeps_output_names():
    g = ir.Graph()
    x = g.add_tensor("x", (1, 4))
    y = g.add_tensor("y", (1, 4))
    z = g.add_tensor("dropout", (1, 4))
    g.inputs = [x]
    g.add_op("RELU", [x], [y])
    g.add_op("IDENTITY", [y], [z])
    g.outputs = [z]
    out = remove_identity(g)
    assert [op.type for op in out.ops] == ["RELU"] and out.outputs == ["dropout"]
    assert out.ops[0].outputs == ("dropout",)


def test_same_scale_groups():
    g = ir.Graph()
    x = g.add_tensor("x", (1, 4, 4, 2))
    g.inputs = [x]
    names = {}
    for n in ("a", "b", "pool", "cat", "mean", "reshaped"):
        names[n] = g.add_tensor(n, (1, 4, 4, 2))
    shape = g.add_const("shape", np.array([1, -1], np.int32), np.int32)
    axes = g.add_const("axes", np.array([1, 2], np.int32), np.int32)
    g.add_op("RELU", [x], ["a"])
    g.add_op("RELU6", [x], ["b"])
    g.add_op("MAX_POOL_2D", ["a"], ["pool"], ops.make_options(
        "MAX_POOL_2D", padding="SAME", stride=(1, 1), filter=(1, 1)))
    g.add_op("CONCATENATION", ["pool", "b"], ["cat"], ops.make_options("CONCATENATION", axis=3))
    g.add_op("MEAN", ["cat", axes], ["mean"])
    g.add_op("RESHAPE", ["mean", shape], ["reshaped"])
    g.outputs = ["reshaped"]
    groups = sorted(sorted(grp) for grp in same_scale_groups(g))
    assert ["a", "b", "cat", "pool"] in groups
    assert ["mean", "reshaped"] in groups
    assert ["x"] in groups


def test_merge_reshapes():
    g = ir.Graph()
    x = g.add_tensor("x", (-1, 2, 3))
    g.inputs = [x]
    s1 = g.add_const("s1", np.array([-1, 6], np.int32), np.int32)
    s2 = g.add_const("s2", np.array([-1, 3, 2], np.int32), np.int32)
    a = g.add_tensor("flat", (-1, 6))
    b = g.add_tensor("reshaped", (-1, 3, 2))
    g.add_op("RESHAPE", [x, s1], [a], source=("flatten",))
    g.add_op("RESHAPE", [a, s2], [b], source=("reshape",))
    g.outputs = [b]
    merged = merge_reshapes(g)
    assert len(merged.ops) == 1 and merged.ops[0].inputs == ("x", "s2")
    assert merged.ops[0].source == ("flatten", "reshape")
    data = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    np.testing.assert_array_equal(_run(merged, data), data.reshape(2, 3, 2))
