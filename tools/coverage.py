"""tfquant-coverage: convert a fixed list of models (tfquant.experiments.coverage_models) to int8
with tfquant, with TFLiteConverter's int8 PTQ and with AI Edge Quantizer's static int8 recipe,
on the same calibration batches, and write a markdown report (progress on stderr).

Per model and converter: whether it converts (else its one-line error), the share of ops that
run in int8 (ops whose outputs are int8 / int16, over all ops but QUANTIZE / DEQUANTIZE and
shape arithmetic, in every subgraph of the written flatbuffer), model size, output SQNR
against the float model (mean over outputs) run on ai-edge-litert, conversion wall time and,
for classifiers, top-1 accuracy. SQNR is pooled over --calibration_draws draws (each a
different random subset of the calibration pool) x --test_sets disjoint test sets: mean +-
standard error.

Criterion (per model): tfquant's pooled SQNR >= the best peer's pooled SQNR minus that peer's
standard error (random-weight models) or >= the best peer's (trained models), tfquant's
int8 op share >= the best peer's, and tfquant's median conversion time <= 0.5x TFLiteConverter's
(native route) or <= 1.0x (lowered route). A row over its time limit is timed again with
minmax ranges, which shows what "auto" calibration's search costs.

TFLiteConverter converts the Keras model or SavedModel (a subclassed Keras model: its
Model.export SavedModel), full-integer first (int8 builtins only) and with float fallback when
that fails; it cannot read a float .tflite. AI Edge Quantizer quantizes the float .tflite
(TFLiteConverter's export of that Keras model or SavedModel, not part of its time).

Example:
  tfquant-coverage --models=MobileNetV2,mtcnn_pnet,basic_pitch_tflite --calibration_draws=2 \
      --test_sets=2
"""

import contextlib
import dataclasses
import io
import time

from tfquant.experiments import coverage_models
from tfquant.tools import _app
from tfquant.tools._app import option

TOOLS = {"tfquant": "tfquant", "tflite_converter": "TFLiteConverter",
         "ai_edge_quantizer": "AI Edge Quantizer"}
RUNTIMES = ("litert", "tflite_runtime", "tf")


@dataclasses.dataclass(frozen=True)
class Config:
    models: tuple = option(coverage_models.NAMES, "Models to convert (default: all).",
                           choices=coverage_models.NAMES)
    calibration_draws: int = option(5, "Calibration draws (random subsets of the calibration "
                                    "pool) per model.", lower=1)
    test_sets: int = option(5, "Disjoint test sets per model.", lower=1)
    size: int = option(64, "keras.applications input size (raised to the smallest each "
                       "accepts: InceptionV3 75, Xception 71).", lower=32)
    output: str = option("docs/coverage.md", "Markdown report to write.")
    runtimes: tuple = option(("litert",), "Runtimes tfquant's model must load and run on; "
                             "more than litert adds a 'runs on' column (SQNR is measured on "
                             "litert).", choices=RUNTIMES)

    def __post_init__(self):
        _app.validate(self)
        if not self.models:
            raise ValueError("--models needs at least one model")


def one_line(error: BaseException) -> str:
    """`Type: message` in one line (at most 200 characters): for TensorFlow's "in user code:"
    tracebacks the last `...Error: ...` line, and after Keras' "Exception encountered when
    calling ..." the line that says what."""
    import re
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", s).strip() for s in str(error).splitlines()]
    lines = [s for s in lines if s]
    index, text = 0, f"{type(error).__name__}: {lines[0] if lines else ''}"
    if lines and lines[0].endswith(":"):
        found = [i for i, s in enumerate(lines) if re.match(r"\w+(Error|Exception): ", s)]
        if found:
            index, text = found[-1], lines[found[-1]]
    if "Exception encountered when calling" in text and index + 1 < len(lines):
        text += " " + lines[index + 1]
    return text[:200]


def int8_share(model: bytes) -> float:
    """Share of the ops computing on activations that run in integer: ops (all subgraphs) whose
    outputs are all int8 / int16, over all ops but QUANTIZE / DEQUANTIZE and ops with only
    int32 / int64 / bool outputs (shape arithmetic, ARG_MAX)."""
    from ai_edge_litert import schema_py_generated as schema

    from tfquant import flatbuffer
    unpacked = flatbuffer.read(model)
    types = schema.TensorType
    integer, other = (types.INT8, types.INT16), (types.INT32, types.INT64, types.BOOL)
    total = count = 0
    for index in range(len(unpacked.subgraphs)):
        for op in flatbuffer.operators(unpacked, index):
            kinds = [t.type for t in op.outputs]
            if op.name in ("QUANTIZE", "DEQUANTIZE") or (kinds and all(
                    k in other for k in kinds)):
                continue
            total += 1
            count += bool(kinds) and all(k in integer for k in kinds)
    return count / total if total else 0.0


def as_list(outputs) -> list:
    import numpy as np
    return [np.asarray(o, np.float32) for o in (outputs if isinstance(outputs, list)
                                                 else [outputs])]


def float_outputs(model, x) -> list:
    """The float model's outputs for `x` (a Keras model, float .tflite bytes or SavedModel
    directory; a SavedModel's outputs sorted by name)."""
    if isinstance(model, (bytes, bytearray)):
        from tfquant import runtime
        return as_list(runtime.Runner(model, "litert").predict(x))
    if isinstance(model, str):
        import numpy as np
        import tensorflow as tf
        function = tf.saved_model.load(model).signatures["serving_default"]
        (name,) = function.structured_input_signature[1]
        parts = [function(**{name: tf.constant(x[i:i + 4])}) for i in range(0, len(x), 4)]
        return [np.concatenate([p[k].numpy() for p in parts]) for k in sorted(parts[0])]
    return as_list(model.predict(x, batch_size=32, verbose=0))


def matched_sqnr(reference: list, got: list) -> tuple:
    """(mean SQNR over the reference outputs, the output matched to the first): each reference
    output is matched to an unused output of the same shape, the one closest to it (converters
    may reorder outputs)."""
    import numpy as np

    from tfquant import spec
    unused, values, first = list(range(len(got))), [], None
    for ref in reference:
        candidates = [i for i in unused if got[i].shape == ref.shape]
        if not candidates:
            raise ValueError(f"no output of shape {ref.shape} (outputs: "
                             f"{[g.shape for g in got]})")
        best = max(candidates, key=lambda i: spec.sqnr_db(ref, got[i]))
        unused.remove(best)
        values.append(spec.sqnr_db(ref, got[best]))
        first = got[best] if first is None else first
    return float(np.mean(values)), first


def functional(model) -> bool:
    """Whether `model` is a Keras model with defined inputs (not subclassed)."""
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):
        return False


def peer_source(case, scratch: dict):
    """What the peers convert: the functional Keras model, the SavedModel directory, the float
    .tflite bytes, or for a subclassed Keras model its SavedModel export (Model.export at the
    calibration batches' shape, made once into `scratch`)."""
    if isinstance(case.model, (bytes, bytearray, str)) or functional(case.model):
        return case.model
    if "saved_model" not in scratch:
        import tempfile

        import tensorflow as tf
        example = case.calibration[0][0]
        scratch["directory"] = tempfile.TemporaryDirectory(prefix="tfquant-coverage-")
        scratch["saved_model"] = scratch["directory"].name + "/model"
        with contextlib.redirect_stdout(io.StringIO()):
            case.model.export(scratch["saved_model"], input_signature=[tf.TensorSpec(
                (None,) + example.shape[1:], tf.as_dtype(example.dtype))])
    return scratch["saved_model"]


def tflite_converter(model):
    import tensorflow as tf
    return tf.lite.TFLiteConverter.from_saved_model(model) if isinstance(model, str) else \
        tf.lite.TFLiteConverter.from_keras_model(model)


def tflite_converter_int8(model, batches) -> tuple:
    """(model, note): TFLiteConverter's int8 PTQ with float I/O of a Keras model or SavedModel,
    int8 builtins only (Keras: tfquant.experiments.peers), else with float fallback (note
    "float fallback")."""
    import tensorflow as tf

    from tfquant.experiments import peers
    if isinstance(model, (bytes, bytearray)):
        raise NotImplementedError("TFLiteConverter does not read a float .tflite")
    try:
        if not isinstance(model, str):
            return peers.convert_with_tflite_converter(model, batches), ""
        converter = tflite_converter(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([b] for b in batches)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        with contextlib.redirect_stdout(io.StringIO()):
            return converter.convert(), ""
    except Exception as e:  # noqa: BLE001  retried with float fallback
        _app.log(f"  TFLiteConverter int8-only fails ({one_line(e)[:120]}); float fallback")
    converter = tflite_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([b] for b in batches)
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert(), "float fallback"


# Each peer's activation range estimator, as a tfquant recipe: where a peer's SQNR is higher,
# tfquant is run again with the peer's estimator to measure how much of the gap that explains.
PEER_ESTIMATORS = {"tflite_converter": ("minmax", {"calibration_method": "minmax"}),
                   "ai_edge_quantizer": ("moving average 0.95",
                                         {"calibration_method": "ema", "ema_decay": 0.95})}


def convert(tool: str, case, batches, scratch: dict, recipe: dict = None) -> tuple:
    """(int8 model bytes, seconds, route or note) of `tool` for one calibration draw (tfquant:
    with its default recipe, or these Recipe fields)."""
    if tool == "tfquant":
        import tfquant
        start = time.perf_counter()
        result = tfquant.convert_model(case.model, batches, tfquant.Recipe(**(recipe or {})),
                                       show_progress=False)
        return result.model, time.perf_counter() - start, result.route
    source = peer_source(case, scratch)
    if tool == "tflite_converter":
        start = time.perf_counter()
        model, note = tflite_converter_int8(source, batches)
        return model, time.perf_counter() - start, note
    from tfquant.tools.compare_tflite_quantizers import quantize_with_ai_edge_quantizer
    if "float" not in scratch:
        if isinstance(source, (bytes, bytearray)):
            scratch["float"] = bytes(source)
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                scratch["float"] = tflite_converter(source).convert()
    start = time.perf_counter()
    return quantize_with_ai_edge_quantizer(scratch["float"], batches), \
        time.perf_counter() - start, ""


def evaluate(entry, config: Config) -> dict:
    """One model's results: {kind, error, float_top1, tools: {tool: {...}}, runs_on}."""
    import numpy as np

    from tfquant import runtime
    row = {"name": entry.name, "kind": entry.kind, "error": None, "float_top1": None,
           "tools": {}, "runs_on": None}
    try:
        case = entry.build(config.calibration_draws, config.test_sets, config.size, _app.log)
        reference = [float_outputs(case.model, x) for x in case.tests]
    except Exception as e:  # noqa: BLE001  a model that cannot be built is a result
        row["error"] = one_line(e)
        _app.log(f"{entry.name}: cannot build: {row['error']}")
        return row
    if case.labels is not None:
        row["float_top1"] = float(np.mean(np.concatenate(
            [np.argmax(r[0], -1) == y for r, y in zip(reference, case.labels)])))
    scratch = {}
    for tool, label in TOOLS.items():
        result = row["tools"][tool] = {"sqnr": [], "seconds": [], "correct": [], "note": "",
                                       "error": None, "bytes": None, "share": None}
        for d, batches in enumerate(case.calibration):
            _app.log(f"{entry.name}: {label}, calibration draw {d + 1}/{len(case.calibration)}")
            stage = "fails"
            try:
                model, seconds, result["note"] = convert(tool, case, batches, scratch)
                stage = "fails to run"
                result["seconds"].append(seconds)
                result["bytes"], result["share"] = len(model), int8_share(model)
                runner = runtime.Runner(model, "litert")
                for i, x in enumerate(case.tests):
                    value, first = matched_sqnr(reference[i], as_list(runner.predict(x)))
                    result["sqnr"].append(value)
                    if case.labels is not None:
                        result["correct"].append(np.argmax(first, -1) == case.labels[i])
            except Exception as e:  # noqa: BLE001  a converter's failure is a result
                result["error"] = f"{stage}: {one_line(e)}"
                _app.log(f"{entry.name}: {label} {result['error']}")
                break
            if tool == "tfquant" and d == 0 and config.runtimes != ("litert",):
                row["runs_on"] = runs_on(model, case.tests[0][:2], config.runtimes)
        if result["sqnr"] and not result["error"]:
            note = f" ({result['note']})" if result["note"] else ""
            _app.log(f"{entry.name}: {label}{note}: {format_sqnr(result)} dB, "
                     f"{result['share']:.0%} int8 ops, {np.median(result['seconds']):.1f} s")
    if "directory" in scratch:
        scratch["directory"].cleanup()
    diagnose(row, case, reference)
    diagnose_time(row, case)
    return row


def diagnose(row: dict, case, reference: list):
    """Where the best peer's SQNR is higher, tfquant again with that peer's range estimator
    on the same draws and test sets: row["diagnosis"] = (peer label, estimator, result)."""
    ours = row["tools"]["tfquant"]
    peers = {t: r for t, r in row["tools"].items() if t != "tfquant" and converted(r)}
    if not converted(ours) or not peers:
        return
    best = max(peers, key=lambda t: pooled(peers[t])[0])
    if pooled(ours)[0] >= pooled(peers[best])[0]:
        return
    from tfquant import runtime
    label, recipe = PEER_ESTIMATORS[best]
    result = {"sqnr": [], "error": None}
    _app.log(f"{row['name']}: tfquant with {TOOLS[best]}'s range estimator ({label})")
    try:
        for batches in case.calibration:
            runner = runtime.Runner(convert("tfquant", case, batches, {}, recipe)[0], "litert")
            for i, x in enumerate(case.tests):
                result["sqnr"].append(matched_sqnr(reference[i],
                                                   as_list(runner.predict(x)))[0])
    except Exception as e:  # noqa: BLE001  a diagnosis that fails is left out
        _app.log(f"{row['name']}: the diagnosis fails: {one_line(e)}")
        return
    row["diagnosis"] = (TOOLS[best], label, result)


# Conversion time limits, as a multiple of TFLiteConverter's int8 conversion, per route.
TIME_LIMITS = {"native": 0.5, "lowered": 1.0}


def time_ratio(row: dict):
    """(tfquant's median conversion time / TFLiteConverter's, the limit of its route), or None
    where there is no comparison (a .tflite input, or a converter failed). Medians over the
    draws: a model's first conversion pays TensorFlow's one-time start-up for its kind of
    model (3 s more on basic-pitch's SavedModel), which the mean would charge to whichever
    tool runs first."""
    import numpy as np
    ours, peer = row["tools"].get("tfquant"), row["tools"].get("tflite_converter")
    if not converted(ours) or not converted(peer):
        return None
    limit = TIME_LIMITS.get(ours["note"].split(" ")[0])
    if limit is None:
        return None
    return float(np.median(ours["seconds"]) / np.median(peer["seconds"])), limit


def diagnose_time(row: dict, case):
    """Where tfquant's time is over its route's limit, its time with minmax ranges (no "auto"
    search over the estimators) on the same draws: row["time_diagnosis"] = ratio."""
    import numpy as np
    ratio = time_ratio(row)
    if ratio is None or ratio[0] <= ratio[1]:
        return
    _app.log(f"{row['name']}: tfquant's time with minmax ranges")
    seconds = [convert("tfquant", case, batches, {}, {"calibration_method": "minmax"})[1]
               for batches in case.calibration]
    row["time_diagnosis"] = float(np.median(seconds) / np.median(
        row["tools"]["tflite_converter"]["seconds"]))


def runs_on(model: bytes, x, runtimes) -> str:
    """Where `model` loads and runs ("not on <runtime> (<error>)" for the others)."""
    from tfquant import runtime
    found = []
    for name in runtimes:
        try:
            runtime.Runner(model, name).predict(x)
            found.append(name)
        except Exception as e:  # noqa: BLE001
            found.append(f"not on {name} ({one_line(e)[:80]})")
    return ", ".join(found)


def pooled(result: dict):
    """(mean, standard error) of the pooled SQNR values (standard error 0 for one value)."""
    from tfquant.experiments import reports
    s = reports.spread(result["sqnr"])
    return s.mean, (s.stderr if s.n > 1 else 0.0)


def converted(result) -> bool:
    return bool(result and result["sqnr"]) and not result["error"]


def criterion(row: dict) -> str:
    """"met", or which part of the criterion is not (see the module docstring)."""
    if row["error"]:
        return "model not built"
    ours = row["tools"]["tfquant"]
    if not converted(ours):
        return "not met: tfquant " + ("fails" if ours["error"] else "did not run")
    peers = {TOOLS[t]: r for t, r in row["tools"].items() if t != "tfquant" and converted(r)}
    if not peers:
        return "met (no peer converts)"
    best_label = max(peers, key=lambda k: pooled(peers[k])[0])
    best_mean, best_se = pooled(peers[best_label])
    random = row["kind"] == "random"
    failing = []
    mean = pooled(ours)[0]
    if not mean >= best_mean - (best_se if random else 0.0):
        text = (f"SQNR {mean:.2f} < {best_mean:.2f}{f' - {best_se:.2f}' if random else ''} dB "
                f"({best_label})")
        if row.get("diagnosis") and row["diagnosis"][0] == best_label:
            _, estimator, result = row["diagnosis"]
            text += f"; with its ranges ({estimator}) tfquant gets {format_sqnr(result)}"
        failing.append(text)
    best_share = max(r["share"] for r in peers.values())
    if ours["share"] < best_share:
        failing.append(f"int8 ops {ours['share']:.1%} < {best_share:.1%}")
    ratio = time_ratio(row)
    if ratio is not None and ratio[0] > ratio[1]:
        text = f"time {ratio[0]:.2f}x TFLiteConverter's > {ratio[1]}x"
        if row.get("time_diagnosis") is not None:
            text += (f"; with minmax ranges (no auto search) {row['time_diagnosis']:.2f}x")
        failing.append(text)
    return "met" if not failing else "not met: " + "; ".join(failing)


def short_route(route: str) -> str:
    """A route without the layer names: "lowered by TFLiteConverter: MultiHeadAttention"."""
    import re
    if len(route) <= 40:
        return route
    head, _, reason = route.partition(" (")
    classes = list(dict.fromkeys(re.findall(r"\(([A-Z]\w*)\)", reason)))
    return f"{head}: " + (", ".join(classes) if classes else
                          re.split(r" \(|:", reason)[0].rstrip(")"))


def format_sqnr(result) -> str:
    mean, se = pooled(result)
    return f"{mean:.2f} ± {se:.2f}"


def _cell(result, value):
    if result is None:
        return "-"
    if result["error"]:
        return "n/a" if "NotImplementedError" in result["error"] else "fails"
    return value(result) if result["sqnr"] else "-"


def format_tables(rows: list, runtimes: tuple) -> str:
    """The coverage table, the size / time / accuracy table and the errors, in markdown."""
    import numpy as np
    keys = list(TOOLS)
    main, detail, errors = [], [], []
    for row in rows:
        tools = row["tools"]
        note = {t: f" ({tools[t]['note']})" if t != "tfquant" and tools.get(t) and
                tools[t]["note"] else "" for t in keys}
        route = short_route(tools["tfquant"]["note"]) if converted(tools.get("tfquant")) \
            else "-"
        cells = [row["name"], row["kind"], route,
                 *(_cell(tools.get(t), format_sqnr) + note[t] for t in keys),
                 *(_cell(tools.get(t), lambda r: f"{r['share']:.1%}") for t in keys),
                 criterion(row)]
        main.append(cells + ([row["runs_on"] or "-"] if runtimes != ("litert",) else []))
        accuracy = ["-" if row["float_top1"] is None else f"{row['float_top1']:.4f}"] + [
            _cell(tools.get(t), lambda r: f"{np.mean(np.concatenate(r['correct'])):.4f}"
                  if r["correct"] else "-") for t in keys]
        detail.append([row["name"],
                       *(_cell(tools.get(t), lambda r: f"{r['bytes']:,}") for t in keys),
                       *(_cell(tools.get(t), lambda r: f"{np.median(r['seconds']):.1f}")
                         for t in keys), *accuracy])
        if row["error"]:
            errors.append(f"- {row['name']}: building the model {row['error']}")
        errors += [f"- {row['name']}, {TOOLS[t]}: {r['error']}" for t, r in tools.items()
                   if r["error"] and "NotImplementedError" not in r["error"]]
    from tfquant.experiments import reports
    labels = list(TOOLS.values())
    header = ["model", "kind", "tfquant route", *(f"SQNR dB {k}" for k in labels),
              *(f"int8 ops {k}" for k in labels), "criterion"]
    text = reports.markdown_table(header + (["runs on"] if runtimes != ("litert",) else []),
                                  main)
    text += "\n\nSize, median conversion time over the calibration draws and top-1 accuracy " \
            "(classifiers, against the labels; pooled over draws and test sets):\n\n"
    text += reports.markdown_table(
        ["model", *(f"bytes {k}" for k in labels), *(f"s {k}" for k in labels),
         "top-1 float", *(f"top-1 {k}" for k in labels)], detail)
    return text + ("\n\nErrors:\n\n" + "\n".join(errors) if errors else "")


def describe(config: Config, seconds: float, done: int) -> str:
    return (f"\n\n{done} of {len(config.models)} models, {seconds / 60:.1f} min. Each model "
            f"is converted once per calibration draw ({config.calibration_draws}) by each "
            f"converter and tested on {config.test_sets} disjoint test sets; SQNR is the mean "
            "over outputs (matched by shape) of 10 log10(signal / noise) against the float "
            "model, pooled over draws x test sets as mean ± standard error, on ai-edge-litert "
            "(default kernels). 'int8 ops': ops with int8 / int16 outputs over all ops but "
            "QUANTIZE / DEQUANTIZE and shape arithmetic (int32 / int64 / bool outputs). "
            "Criterion: tfquant's SQNR >= the best peer's minus its standard error "
            "(random-weight models) or >= the best peer's (trained), its int8 op share "
            ">= the best peer's, and its median conversion time <= 0.5x TFLiteConverter's "
            "(native route) or <= 1.0x (lowered route; a row over it is timed again with "
            "minmax ranges). 'n/a': TFLiteConverter cannot read a float "
            ".tflite. AI Edge Quantizer's time leaves out the float .tflite export.\n\n")


def main(config: Config) -> int:
    """Convert, measure and write the report (rewritten after every model)."""
    import tfquant  # noqa: F401  (loads before tensorflow; see tfquant/__init__.py)
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # TFLiteConverter's SavedModel chatter
    command = _app.command_line("tfquant-coverage", config)
    entries = {e.name: e for e in coverage_models.models()}

    def evaluate_logged(name):
        start = time.perf_counter()
        row = evaluate(entries[name], config)
        _app.log(f"{name}: {criterion(row)} ({time.perf_counter() - start:.0f} s)")
        return row

    def report(rows, seconds):
        text = describe(config, seconds, len(rows)) + format_tables(rows, config.runtimes)
        _app.write_report(config.output, "tfquant coverage", text, command)
        return text

    print(_app.model_by_model(config.models, evaluate_logged, report)[1])
    return 0


def run():
    """Console-script entry point (tfquant-coverage)."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
