"""Small float .tflite models built directly with the flatbuffer object API, for the TFLite
frontend's tests: fp16 weights behind DEQUANTIZE, sparse (CSR, optionally block-sparse) weights
behind DENSIFY, an optional bias left out, a signature def and metadata. And read_ops, which
lists any model's ops with their tensors' types and quantization, for op-by-op comparisons."""

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant import flatbuffer


def _tensor(name, shape, dtype, buffer, signature=None):
    t = schema.TensorT()
    t.name = name
    t.shape = list(shape)
    if signature is not None:
        t.shapeSignature = list(signature)
    t.type = dtype
    t.buffer = buffer
    return t


def _csr_level(segments, indices):
    level = schema.DimensionMetadataT()
    level.format = schema.DimensionType.SPARSE_CSR
    level.arraySegmentsType = schema.SparseIndexVector.Int32Vector
    level.arraySegments = schema.Int32VectorT()
    level.arraySegments.values = list(segments)
    level.arrayIndicesType = schema.SparseIndexVector.Int32Vector
    level.arrayIndices = schema.Int32VectorT()
    level.arrayIndices.values = list(indices)
    return level


def _dense_level(size):
    level = schema.DimensionMetadataT()
    level.format = schema.DimensionType.DENSE
    level.denseSize = size
    return level


def encode_sparse(dense: np.ndarray, block: int = 1):
    """(values, SparsityParametersT) of a 2-D matrix: rows dense, columns CSR; with block > 1,
    CSR over column blocks of `block` with dense blocks (TFLite's block-sparse layout)."""
    rows, cols = dense.shape
    params = schema.SparsityParametersT()
    segments, indices, values = [0], [], []
    if block == 1:
        params.traversalOrder = [0, 1]
        for r in range(rows):
            for c in range(cols):
                if dense[r, c] != 0:
                    indices.append(c)
                    values.append(dense[r, c])
            segments.append(len(indices))
        params.dimMetadata = [_dense_level(rows), _csr_level(segments, indices)]
    else:
        params.traversalOrder = [0, 1, 2]
        params.blockMap = [1]
        for r in range(rows):
            for b in range(cols // block):
                chunk = dense[r, b * block:(b + 1) * block]
                if np.any(chunk != 0):
                    indices.append(b)
                    values.extend(chunk)
            segments.append(len(indices))
        params.dimMetadata = [_dense_level(rows), _csr_level(segments, indices),
                              _dense_level(block)]
    return np.asarray(values, np.float32), params


def fp16_sparse_model(seed: int = 0, block: int = 1, metadata: bool = True) -> tuple:
    """x[-1, 4] -> FC(fp16 weights behind DEQUANTIZE, bias) -> RELU
    -> FC(sparse weights behind DENSIFY, no bias) -> y[-1, 4].

    Returns (flatbuffer bytes, dict of the float weights)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(6, 4)).astype(np.float16)
    b1 = rng.normal(size=6).astype(np.float32)
    w2 = rng.normal(size=(4, 6)).astype(np.float32)
    w2[np.abs(w2) < 0.8] = 0.0
    if block > 1:
        w2[:, 2:4] = 0.0
    values, sparsity = encode_sparse(w2, block)

    buffers = [schema.BufferT()]

    def buffer(array):
        b = schema.BufferT()
        b.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
        buffers.append(b)
        return len(buffers) - 1

    f32, f16 = schema.TensorType.FLOAT32, schema.TensorType.FLOAT16
    tensors = [
        _tensor("x", [1, 4], f32, 0, [-1, 4]),                  # 0
        _tensor("w1_fp16", [6, 4], f16, buffer(w1)),            # 1
        _tensor("w1", [6, 4], f32, 0),                          # 2
        _tensor("b1", [6], f32, buffer(b1)),                    # 3
        _tensor("h", [1, 6], f32, 0, [-1, 6]),                  # 4
        _tensor("w2_sparse", [4, 6], f32, buffer(values)),      # 5
        _tensor("w2", [4, 6], f32, 0),                          # 6
        _tensor("y", [1, 4], f32, 0, [-1, 4]),                  # 7
    ]
    tensors[5].sparsity = sparsity
    codes = []
    for code, version in ((schema.BuiltinOperator.DEQUANTIZE, 3),
                          (schema.BuiltinOperator.DENSIFY, 1),
                          (schema.BuiltinOperator.FULLY_CONNECTED, 1)):
        c = schema.OperatorCodeT()
        c.builtinCode = c.deprecatedBuiltinCode = code
        c.version = version
        codes.append(c)

    def operator(code, inputs, outputs, options_type=0, options=None):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = code, inputs, outputs
        op.builtinOptionsType, op.builtinOptions = options_type, options
        return op

    fc1 = schema.FullyConnectedOptionsT()
    fc1.fusedActivationFunction = schema.ActivationFunctionType.RELU
    fc2 = schema.FullyConnectedOptionsT()
    subgraph = schema.SubGraphT()
    subgraph.name = "main"
    subgraph.tensors = tensors
    subgraph.inputs, subgraph.outputs = [0], [7]
    subgraph.operators = [
        operator(0, [1], [2]),
        operator(1, [5], [6]),
        operator(2, [0, 2, 3], [4], schema.BuiltinOptions.FullyConnectedOptions, fc1),
        operator(2, [4, 6, -1], [7], schema.BuiltinOptions.FullyConnectedOptions, fc2),
    ]
    model = schema.ModelT()
    model.version = 3
    model.description = "test model"
    model.operatorCodes = codes
    model.subgraphs = [subgraph]
    signature = schema.SignatureDefT()
    signature.signatureKey = "classify"
    signature.subgraphIndex = 0
    signature.inputs = [schema.TensorMapT()]
    signature.inputs[0].name, signature.inputs[0].tensorIndex = "features", 0
    signature.outputs = [schema.TensorMapT()]
    signature.outputs[0].name, signature.outputs[0].tensorIndex = "scores", 7
    model.signatureDefs = [signature]
    if metadata:
        entry = schema.MetadataT()
        entry.name, entry.buffer = "labels", buffer(np.frombuffer(b"a\nb\nc\nd\n", np.uint8))
        model.metadata = [entry]
    model.buffers = buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    weights = {"w1": w1.astype(np.float32), "b1": b1, "w2": w2}
    return bytes(builder.Output()), weights


def reference_output(weights: dict, x: np.ndarray) -> np.ndarray:
    h = np.maximum(x @ weights["w1"].T + weights["b1"], 0.0)
    return h @ weights["w2"].T


def read_ops(tflite_model: bytes) -> list:
    """The main subgraph's ops in order as (op name, version, inputs, outputs); each tensor is
    (name, TensorType, scale, zero point), with the first scale and zero point (None when the
    tensor is not quantized). Optional (-1) inputs are left out."""
    def tensor(t):
        return (t.name, t.type, float(t.scale[0]) if t.quantized else None,
                int(t.zero_point[0]) if t.quantized else None)

    return [(op.name, op.version, [tensor(t) for t in op.inputs],
             [tensor(t) for t in op.outputs]) for op in flatbuffer.operators(tflite_model)]


def int8_range(tensor) -> tuple:
    """The real (min, max) an int8 tensor of read_ops can hold."""
    _, _, scale, zero_point = tensor
    return (-128 - zero_point) * scale, (127 - zero_point) * scale
