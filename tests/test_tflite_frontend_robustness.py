"""The TFLite frontend on untrusted bytes: corrupt, truncated and inconsistent flatbuffers are a
ModelLoadError with a one-line cause, never a crash, a hang or another exception; a fuzz run
feeds 10,000 mutated flatbuffers through it in bounded time."""

import time

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tflite_builders import fp16_sparse_model
from tfquant.errors import ModelLoadError
from tfquant.frontends.tflite_model import from_tflite

NUM_FUZZ_CASES = 10_000
FUZZ_SECONDS = 120  # the run takes about 20-30 s on one core; generous for shared machines
CASE_SECONDS = 2.0


def _pack(model) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _edited(edit) -> bytes:
    data, _ = fp16_sparse_model()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    edit(model)
    return _pack(model)


def _set_buffer_offset(model):
    buffer = model.buffers[model.subgraphs[0].tensors[3].buffer]
    buffer.data, buffer.offset, buffer.size = None, 10 ** 9, 24


def _truncate_buffer(model):
    buffer = model.buffers[model.subgraphs[0].tensors[3].buffer]
    buffer.data = buffer.data[:-4]


def _set(path, value):
    """An edit that sets model.<path> (attribute names and list indices) to `value`."""
    def edit(model):
        target = model
        for step in path[:-1]:
            target = target[step] if isinstance(step, int) else getattr(target, step)
        if isinstance(path[-1], int):
            target[path[-1]] = value
        else:
            setattr(target, path[-1], value)
    return edit


CORRUPT_MODELS = {
    "empty": (lambda: b"", "too short"),
    "not a flatbuffer": (lambda: b"this is not a TFLite model at all", "identifier"),
    "truncated": (lambda: fp16_sparse_model()[0][:700], "corrupt"),
    "root offset out of range": (lambda: b"\xff\xff\x00\x00TFL3" + bytes(64), "root"),
    "no subgraph": (lambda: _edited(_set(["subgraphs"], [])), "no subgraph"),
    "buffer offset out of range": (lambda: _edited(_set_buffer_offset), "outside the file"),
    "wrong buffer size": (lambda: _edited(_truncate_buffer), "bytes"),
    "tensor index out of range": (
        lambda: _edited(_set(["subgraphs", 0, "operators", 2, "inputs"], [99, 2, 3])),
        "refers to tensor 99"),
    "buffer index out of range": (
        lambda: _edited(_set(["subgraphs", 0, "tensors", 3, "buffer"], 77)),
        "refers to buffer 77"),
    "opcode index out of range": (
        lambda: _edited(_set(["subgraphs", 0, "operators", 0, "opcodeIndex"], 9)),
        "opcode index"),
    "operators out of order": (
        lambda: _edited(lambda m: m.subgraphs[0].operators.reverse()), "before it is computed"),
    "subgraph output never computed": (
        lambda: _edited(lambda m: m.subgraphs[0].operators.pop()), "never computed"),
    "corrupt sparse indices": (
        lambda: _edited(_set(["subgraphs", 0, "tensors", 5, "sparsity", "dimMetadata", 1,
                               "arrayIndices", "values"], [40] * 9)), "sparse"),
    "custom op": (
        lambda: _edited(_set(["operatorCodes", 2, "builtinCode"], 32)), "custom"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_MODELS))
def test_corrupt_model_is_a_clear_error(case):
    make, message = CORRUPT_MODELS[case]
    with pytest.raises(ModelLoadError) as error:
        from_tflite(make())
    text = str(error.value)
    assert message in text, text
    assert "\n" not in text and len(text) < 400


def test_repeated_tables_do_not_blow_up():
    """A vector of tables claiming far more entries than the file can hold (as when many
    entries point at one table, or a length field is corrupt) is refused before the parser
    walks it: work stays bounded by the file size."""
    data, _ = fp16_sparse_model()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    model.subgraphs[0].operators = model.subgraphs[0].operators[:1]
    packed = bytearray(_pack(model))
    # The operators vector (length 1) now claims 60,000 entries.
    root = schema.Model.GetRootAs(bytes(packed), 0)
    subgraph = root.Subgraphs(0)
    o = subgraph._tab.Offset(10)  # SubGraph.operators
    vector = subgraph._tab.Vector(o)
    packed[vector - 4:vector] = (60_000).to_bytes(4, "little")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="more tables than the file can hold"):
        from_tflite(bytes(packed))
    assert time.perf_counter() - start < CASE_SECONDS


def _mutations(seed_models, count, rng):
    interesting = [0, 1, 4, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0xFFFF]
    for i in range(count):
        data = bytearray(seed_models[i % len(seed_models)])
        kind = i % 6
        if kind == 0:  # bit flips
            for _ in range(int(rng.integers(1, 9))):
                pos = int(rng.integers(len(data)))
                data[pos] ^= 1 << int(rng.integers(8))
        elif kind == 1:  # truncation
            data = data[:int(rng.integers(len(data)))]
        elif kind == 2:  # a run of random bytes
            pos, run = int(rng.integers(len(data))), int(rng.integers(1, 33))
            data[pos:pos + run] = rng.integers(0, 256, min(run, len(data) - pos),
                                               dtype=np.uint8).tobytes()
        elif kind == 3:  # an aligned 32-bit word (offsets, lengths, indices) set to an edge
            pos = int(rng.integers(len(data) // 4)) * 4
            value = interesting[int(rng.integers(len(interesting)))] if rng.random() < 0.5 \
                else int(rng.integers(0, len(data) + 64))
            data[pos:pos + 4] = value.to_bytes(4, "little")
        elif kind == 4:  # a 32-bit word nudged by a small delta (an offset pointing nearby)
            pos = int(rng.integers(len(data) // 4)) * 4
            word = int.from_bytes(data[pos:pos + 4], "little")
            word = (word + int(rng.integers(-16, 17))) % 2 ** 32
            data[pos:pos + 4] = word.to_bytes(4, "little")
        else:  # a deleted span (everything after it shifts)
            pos, run = int(rng.integers(len(data))), int(rng.integers(1, 17))
            del data[pos:pos + run]
        yield bytes(data)


def test_fuzz_mutated_flatbuffers():
    seeds = [fp16_sparse_model(seed=0)[0], fp16_sparse_model(seed=1, block=2)[0]]
    for seed in seeds:
        from_tflite(seed)  # the seeds themselves are valid
    rng = np.random.default_rng(1234)
    outcomes = {"parsed": 0, "ModelLoadError": 0}
    slowest, start = 0.0, time.perf_counter()
    for case, data in enumerate(_mutations(seeds, NUM_FUZZ_CASES, rng)):
        t0 = time.perf_counter()
        try:
            from_tflite(data)
            outcomes["parsed"] += 1
        except ModelLoadError as e:
            assert "\n" not in str(e), str(e)
            outcomes["ModelLoadError"] += 1
        # any other exception fails the test with its traceback (case number in the locals)
        slowest = max(slowest, time.perf_counter() - t0)
        assert slowest < CASE_SECONDS, (case, slowest)
    total = time.perf_counter() - start
    print(f"\nfuzz: {NUM_FUZZ_CASES} mutated flatbuffers in {total:.1f} s "
          f"(slowest {slowest * 1e3:.1f} ms): {outcomes}")
    assert sum(outcomes.values()) == NUM_FUZZ_CASES
    assert total < FUZZ_SECONDS
