"""tfquant-benchmark: the DSP delegate against TFLite's own int8 and float paths, in one run.

For each model and thread count, on ai-edge-litert, side by side and interleaved (one invoke of
each configuration per round, so a noisy neighbour slows all of them alike):
  float32 + XNNPACK | int8 built-in kernels (no XNNPACK) | int8 + XNNPACK |
  int8 + tfquant DSP delegate (reference kernels underneath: anything the delegate does not
  claim runs TFLite's reference kernels)
with median and p10/p90 latency, the ratios, the 2-thread speed-ups, whether the delegate's
outputs equal the reference kernels' bit for bit, a per-op profile of the delegate (time, MACs,
achieved MACs/cycle against the nominal 128 MAC/cycle AVX-512 VNNI peak at the /proc/cpuinfo
clock, and GMAC/s against the int8 peak the delegate measures on this CPU), and the DSP cost
model: the
emulated HVX instructions each op issues turned into estimated cycles and latency on a
Hexagon-class DSP (see --dsp_* flags for the assumptions).

Progress goes to stderr, markdown tables to stdout (and to --output).

Examples:
  tfquant-benchmark --keras_application=MobileNet,MobileNetV2,ResNet50 --size=224 --threads=1,2
  tfquant-benchmark --model=model_int8.tflite --float_model=model_float.tflite --runs=50
"""

import dataclasses
import os
import time
from typing import Optional

from tfquant.experiments.delegate_profiling import (PEAK_MACS_PER_CYCLE, DspParams,
                                                    check_bit_exact, cost_model_assumptions,
                                                    dsp_cycles, interpreter_for,
                                                    peak_memory_growth, profile_delegate)
from tfquant.experiments.reports import markdown_table as table
from tfquant.tools import _app
from tfquant.tools._app import option


@dataclasses.dataclass(frozen=True)
class Config:
    model: tuple = option((), "int8 .tflite files to benchmark.")
    float_model: Optional[str] = option(None, "A float32 .tflite for the float32 + XNNPACK "
                                        "column when a single --model is given (otherwise that "
                                        "column is n/a).")
    keras_application: tuple = option((), "keras.applications models built on the fly "
                                      "(weights=None, BN statistics from calibration images), "
                                      "converted to int8 and float32 by tfquant: e.g. "
                                      "MobileNet,MobileNetV2,ResNet50.")
    size: int = option(224, "Input size of --keras_application models.", lower=32)
    classes: int = option(1000, "Classes of --keras_application models.", lower=2)
    calibration_images: int = option(16, "Calibration images for conversion.", lower=1)
    threads: tuple[int, ...] = option((1, 2), "Thread counts.")
    runs: int = option(30, "Timed invokes per configuration.", lower=1)
    warmup: int = option(5, "Untimed invokes per configuration first.", lower=0)
    profile_runs: int = option(20, "Invokes of the profiled delegate run.", lower=1)
    check_exact: bool = option(True, "Compare the delegate's outputs with the reference "
                               "kernels' (bit-exact: yes/no).")
    memory: bool = option(True, "Measure the peak resident memory an interpreter adds, with "
                          "the built-in int8 kernels and with the delegate (fresh processes).")
    top_ops: int = option(12, "Ops listed individually in the per-op tables.", lower=0)
    isa: str = option("auto", "The delegate's ISA table: auto (the best this CPU runs) or a "
                      "name of tfquant.delegate.isas(runnable_only=True), e.g. avx2 on an "
                      "AVX-512 machine to measure the AVX2 kernels.")
    output: Optional[str] = option(None, "Also write the tables to this markdown file.")
    cpu_ghz: Optional[float] = option(None, "CPU clock for MACs/cycle (default: "
                                      "/proc/cpuinfo).")
    dsp_clock_ghz: float = option(1.0, "Cost model: DSP clock.", lower=0.01)
    dsp_contexts: int = option(1, "Cost model: HVX contexts an op is split over.", lower=1)
    dsp_slots: int = option(4, "Cost model: HVX instructions per packet (cycle).", lower=1)
    dsp_mpy_units: int = option(2, "Cost model: multiply-class (vrmpy, vmpy) per cycle.",
                                lower=1)
    dsp_alu_units: int = option(2, "Cost model: ALU instructions per cycle.", lower=1)
    dsp_shift_units: int = option(1, "Cost model: shift/pack/permute per cycle.", lower=1)
    dsp_load_units: int = option(1, "Cost model: vector loads per cycle.", lower=1)
    dsp_store_units: int = option(1, "Cost model: vector stores per cycle.", lower=1)
    dsp_op_overhead: int = option(2000, "Cost model: fixed cycles per op (dispatch, "
                                  "synchronisation).", lower=0)

    def __post_init__(self):
        _app.validate(self)
        if not self.threads or min(self.threads) < 1:
            raise ValueError("--threads must list positive integers")
        if not self.model and not self.keras_application:
            raise ValueError("give --model and/or --keras_application")
        if self.float_model and len(self.model) != 1:
            raise ValueError("--float_model needs exactly one --model")
        if self.isa != "auto":
            import tfquant.delegate
            runnable = tfquant.delegate.isas(runnable_only=True)
            if self.isa not in runnable:
                raise ValueError(f"--isa={self.isa} does not run on this CPU; use auto or one "
                                 f"of {', '.join(runnable)}")


CONFIGS = ("float32 + XNNPACK", "int8 built-in", "int8 + XNNPACK", "int8 + delegate")
# The paper's Table 7 (Pixel 2, ms): int8 CPU / int8 Hexagon DSP.
PAPER_TABLE7 = {"MobileNet": (68.0, 16.0), "MobileNetV2": (63.0, 15.5)}


# ---- models ------------------------------------------------------------------------------------

def image_like(n, size, channels, seed):
    """Smooth random images in [-1, 1], like preprocessed photos rather than white noise."""
    import numpy as np
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, (n, size // 8 + 1, size // 8 + 1, channels))
    images = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :size, :size]
    images = images + rng.normal(0, 0.1, images.shape)
    return np.clip(images, -1, 1).astype(np.float32)


def build_application(name, size, classes, n_calibration):
    """(int8 bytes, float32 bytes) of keras.applications.<name>, weights=None, with batch-norm
    statistics set from the calibration images (one training-mode pass, momentum 0)."""
    import keras
    import tfquant  # noqa: F401  (loads tflite_runtime before tensorflow)
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classes=classes)
    calibration = image_like(n_calibration, size, 3, 0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(calibration, training=True)
    int8 = tfquant.convert(model, calibration, show_progress=False)
    float32 = tfquant.convert(model, recipe=tfquant.Recipe(mode="float"), show_progress=False)
    return int8, float32


def op_details(model):
    """{node index: (op name, weight shape or None)} of the first subgraph (node i is
    operator i), the weights found where the op's record says they are."""
    from tfquant import flatbuffer, ops
    details = {}
    for i, op in enumerate(flatbuffer.operators(model)):
        layout = ops.weight_layout(op.name)
        weights = op.inputs[layout.weight_input] if layout and len(op.inputs) > 1 else None
        details[i] = (op.name, weights.shape if weights is not None else None)
    return details


# ---- measuring ---------------------------------------------------------------------------------

def cpu_clock_ghz(cpu_ghz: Optional[float] = None):
    """(GHz, where it came from): `cpu_ghz` (--cpu_ghz) if given, else /proc/cpuinfo's."""
    if cpu_ghz:
        return cpu_ghz, "--cpu_ghz"
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
        if mhz:
            return sum(mhz) / len(mhz) / 1e3, "/proc/cpuinfo 'cpu MHz' (mean over cores)"
    except OSError:
        pass
    return 3.0, "assumed (no /proc/cpuinfo)"


def time_interleaved(interpreters, runs, warmup):
    """{name: (median, p10, p90) ms}; one invoke of each interpreter per round."""
    import numpy as np
    for _ in range(warmup):
        for interpreter in interpreters.values():
            interpreter.invoke()
    times = {name: [] for name in interpreters}
    for _ in range(runs):
        for name, interpreter in interpreters.items():
            start = time.perf_counter()
            interpreter.invoke()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (float(np.median(t)), float(np.percentile(t, 10)), float(np.percentile(t, 90)))
            for name, t in times.items()}


# ---- the DSP cost model ------------------------------------------------------------------------

def dsp_params(config: Config) -> DspParams:
    """The cost model's assumptions from the --dsp_* flags."""
    return DspParams(config.dsp_clock_ghz, config.dsp_contexts, config.dsp_slots,
                     config.dsp_mpy_units, config.dsp_alu_units, config.dsp_shift_units,
                     config.dsp_load_units, config.dsp_store_units, config.dsp_op_overhead)


# ---- tables ------------------------------------------------------------------------------------

def fmt_latency(t):
    return "n/a" if t is None else f"{t[0]:.2f} [{t[1]:.2f}, {t[2]:.2f}]"


def ratio(a, b):
    return "n/a" if a is None or b is None else f"{a[0] / b[0]:.2f}x"


def macs_per_cycle(macs, us, ghz):
    return macs / (us * 1e-6 * ghz * 1e9) if macs and us else 0.0


def gmacs(macs, us):
    """GMAC/s of `macs` multiply-accumulates in `us` microseconds (0.0 when either is 0)."""
    return macs / (us * 1e3) if macs and us else 0.0


def of_nominal_peak(mpc, threads):
    """`mpc` MACs/cycle as a share of the nominal peak times the threads."""
    return f"{100 * mpc / (PEAK_MACS_PER_CYCLE * threads):.0f}%"


def of_measured_peak(rate, peak, threads):
    """`rate` GMAC/s as a share of the measured one-core peak times the threads."""
    return f"{100 * rate / (peak * threads):.0f}%" if rate and peak > 0 else "-"


def measured_peak_label(peak):
    return f"of measured peak ({peak:.0f} GMAC/s x threads)" if peak > 0 else \
        "of measured peak (no VNNI)"


def by_op_type(rows, ghz, dsp, threads=1, peak=0.0):
    groups = {}
    for r in rows:
        g = groups.setdefault(r["op"], {"n": 0, "us": 0.0, "min": 0.0, "macs": 0, "dsp": 0.0})
        g["n"] += 1
        g["us"] += r["total_us"] / max(r["invokes"], 1)
        g["min"] += r["min_us"]
        g["macs"] += r["macs"]
        g["dsp"] += dsp_cycles(r, dsp)
    total = sum(g["us"] for g in groups.values()) or 1.0
    out = []
    for op, g in sorted(groups.items(), key=lambda kv: -kv[1]["us"]):
        mpc = macs_per_cycle(g["macs"], g["min"], ghz)
        rate = gmacs(g["macs"], g["min"])
        out.append([op, g["n"], f"{g['us'] / 1e3:.3f}", f"{g['min'] / 1e3:.3f}",
                    f"{100 * g['us'] / total:.1f}%",
                    f"{g['macs'] / 1e6:.1f}", f"{mpc:.1f}" if g["macs"] else "-",
                    of_nominal_peak(mpc, threads) if g["macs"] else "-",
                    f"{rate:.1f}" if g["macs"] else "-", of_measured_peak(rate, peak, threads),
                    f"{g['dsp'] / 1e3:.0f}", f"{g['dsp'] / (dsp.clock_ghz * 1e6):.3f}"])
    return out


def per_op(rows, ghz, details, top, dsp, threads=1, peak=0.0):
    out = []
    for r in sorted(rows, key=lambda r: -r["total_us"])[:top]:
        us = r["total_us"] / max(r["invokes"], 1)
        mpc = macs_per_cycle(r["macs"], r["min_us"], ghz)
        filt = details.get(r["node"], (None, None))[1]
        kind = r["op"] + (f" {filt[1]}x{filt[2]}" if r["op"] == "CONV_2D" and filt else "")
        rate = gmacs(r["macs"], r["min_us"])
        out.append([r["node"], kind, r["output_shape"], f"{us / 1e3:.3f}",
                    f"{r['min_us'] / 1e3:.3f}",
                    f"{r['macs'] / 1e6:.1f}", f"{mpc:.1f}" if r["macs"] else "-",
                    f"{rate:.1f}" if r["macs"] else "-", of_measured_peak(rate, peak, threads),
                    r["vrmpy"], f"{dsp_cycles(r, dsp) / 1e3:.0f}"])
    return out


def largest_pointwise(rows, details):
    """The 1x1 CONV_2D with the most MACs (ties: the most weights)."""
    best, best_key = None, None
    for r in rows:
        filt = details.get(r["node"], (None, None))[1]
        if r["op"] == "CONV_2D" and filt and len(filt) == 4 and filt[1] == filt[2] == 1:
            key = (r["macs"], filt[0] * filt[3])
            if best is None or key > best_key:
                best, best_key = r, key
    return best


# ---- main --------------------------------------------------------------------------------------

def benchmark_model(name, int8, float32, thread_counts, config):
    import tfquant.delegate
    result = {"latency": {}, "exact": {}, "profile": {}, "peak": {}, "memory": {},
              "details": op_details(int8)}
    for threads in thread_counts:
        _app.log(f"{name}: {threads} thread(s): building interpreters ...")
        delegate = tfquant.delegate.load("litert", num_threads=threads, isa=config.isa)
        interpreters = {}
        if float32 is not None:
            interpreters[CONFIGS[0]] = interpreter_for(float32, "default", threads)
        interpreters[CONFIGS[1]] = interpreter_for(int8, "no_xnnpack", threads)
        interpreters[CONFIGS[2]] = interpreter_for(int8, "default", threads)
        interpreters[CONFIGS[3]] = interpreter_for(int8, "reference", threads, [delegate])
        _app.log(f"{name}: {threads} thread(s): timing {len(interpreters)} configurations, "
                 f"{config.warmup} + {config.runs} invokes each, interleaved ...")
        result["latency"][threads] = time_interleaved(interpreters, config.runs, config.warmup)
        del interpreters
        if config.check_exact:
            _app.log(f"{name}: {threads} thread(s): checking bit-exactness against BUILTIN_REF ...")
            result["exact"][threads] = check_bit_exact(int8, threads, config.isa)
        _app.log(f"{name}: {threads} thread(s): profiling the delegate ...")
        result["profile"][threads], result["peak"][threads] = profile_delegate(
            int8, threads, config.profile_runs, config.isa)
        if config.memory:
            _app.log(f"{name}: {threads} thread(s): peak memory, built-in kernels and "
                     "delegate ...")
            result["memory"][threads] = (peak_memory_growth(int8, False, threads),
                                         peak_memory_growth(int8, True, threads, config.isa))
    return result


def report(results, thread_counts, ghz, ghz_source, dsp: DspParams, config):
    import tfquant.delegate
    best = tfquant.delegate.best_isa()
    isa = (f"auto (here {best})" if config.isa == "auto" else
           f"{config.isa} (--isa; only the delegate is restricted: TFLite's kernels and XNNPACK "
           f"use all this CPU has, {best} here)" if config.isa != best else config.isa)
    out = ["# tfquant-benchmark (ai-edge-litert)", "",
           f"Delegate configuration: tfquant DSP delegate, ISA table {isa}, over the reference "
           f"resolver "
           f"(BUILTIN_REF: unclaimed ops run TFLite's reference kernels). Latency in ms: median "
           f"[p10, p90] over {config.runs} interleaved runs after {config.warmup} warm-up runs. "
           f"CPU clock {ghz:.2f} GHz from {ghz_source}. Per-op profile: the delegate times "
           f"each op over {config.profile_runs} invokes (after one untimed); 'mean ms' is the "
           "average, 'min ms' the fastest invoke, and MACs/cycle use 'min ms' unless labelled "
           "(the CPU is shared: the fastest invoke is the best estimate of the kernel itself). "
           f"'of peak' is against the nominal {PEAK_MACS_PER_CYCLE} int8 MACs/cycle at that "
           "clock; 'of measured peak' against the int8 GMAC/s one core reached in a "
           "register-only loop of independent VPDPBUSD the delegate ran for 20 ms before "
           "profiling (real clock and issue rate).",
           ""]
    lat_rows, ratio_rows, exact_rows = [], [], []
    for name, r in results.items():
        for threads in thread_counts:
            lat = r["latency"][threads]
            lat_rows.append([name, threads] + [fmt_latency(lat.get(c)) for c in CONFIGS])
            d = lat.get(CONFIGS[3])
            ratio_rows.append([name, threads, ratio(d, lat.get(CONFIGS[2])),
                               ratio(d, lat.get(CONFIGS[1])), ratio(d, lat.get(CONFIGS[0]))])
            if threads in r["exact"]:
                same, claimed, total = r["exact"][threads]
                exact_rows.append([name, threads, f"{claimed}/{total}",
                                   "yes" if same else "no"])
    out += ["## Latency (ms)", "", table(["model", "threads", *CONFIGS], lat_rows), ""]
    out += ["## Ratios (delegate latency / other)", "",
            table(["model", "threads", "delegate / XNNPACK int8", "delegate / built-in int8",
                   "delegate / float32 XNNPACK"], ratio_rows), ""]
    if len(thread_counts) > 1:
        t0, speed_rows = thread_counts[0], []
        for name, r in results.items():
            for t in thread_counts[1:]:
                speed_rows.append([name, f"{t} vs {t0}"] + [
                    ratio(r["latency"][t0].get(c), r["latency"][t].get(c)) for c in CONFIGS])
        out += ["## Multi-thread speed-ups (latency at fewer threads / at more)", "",
                table(["model", "threads", *CONFIGS], speed_rows), ""]
    memory_rows = [[name, threads, f"{builtin / 2**20:.1f}", f"{delegate / 2**20:.1f}",
                    ratio((delegate,), (builtin,))]
                   for name, r in results.items()
                   for threads, (builtin, delegate) in r["memory"].items()]
    if memory_rows:
        out += ["## Peak memory (MB the resident set grows by: one interpreter, 3 invokes)", "",
                "Each in a fresh process that imports only ai-edge-litert (VmHWM, reset after "
                "the import).", "",
                table(["model", "threads", "int8 built-in", "int8 + delegate",
                       "delegate / built-in"], memory_rows), ""]
    if exact_rows:
        out += ["## Bit-exactness (delegate vs BUILTIN_REF, every output element)", "",
                table(["model", "threads", "claimed/total nodes", "bit-exact"], exact_rows), ""]
        for row in exact_rows:
            out.append(f"bit-exact: {row[3]} ({row[0]}, {row[1]} thread(s))")
        out.append("")
    point_rows, dsp_rows = [], []
    for name, r in results.items():
        for threads in thread_counts:
            rows, peak = r["profile"][threads], r["peak"][threads]
            peak_text = (f"{peak:.1f} GMAC/s per core" if peak > 0
                         else "not measured (no VNNI)")
            out += [f"## Delegate profile: {name}, {threads} thread(s), by op type", "",
                    f"Measured int8 peak: {peak_text}.", "",
                    table(["op", "count", "mean ms", "min ms", "share", "MMACs", "MACs/cycle",
                           f"of peak ({PEAK_MACS_PER_CYCLE} x threads)", "GMAC/s",
                           measured_peak_label(peak), "DSP kcycles", "DSP ms"],
                          by_op_type(rows, ghz, dsp, threads, peak)), ""]
            if config.top_ops:
                out += [f"### Slowest {config.top_ops} ops ({name}, {threads} thread(s))", "",
                        table(["node", "op", "output", "mean ms", "min ms", "MMACs", "MACs/cycle",
                               "GMAC/s", measured_peak_label(peak), "vrmpy", "DSP kcycles"],
                              per_op(rows, ghz, r["details"], config.top_ops, dsp, threads,
                                     peak)),
                        ""]
            best = largest_pointwise(rows, r["details"])
            if best:
                us = best["total_us"] / max(best["invokes"], 1)
                mpc_mean = macs_per_cycle(best["macs"], us, ghz)
                mpc = macs_per_cycle(best["macs"], best["min_us"], ghz)
                rate = gmacs(best["macs"], best["min_us"])
                point_rows.append([name, threads, best["node"], best["output_shape"],
                                   f"{best['macs'] / 1e6:.1f}", f"{us / 1e3:.3f}",
                                   f"{best['min_us'] / 1e3:.3f}", f"{mpc_mean:.1f}",
                                   f"{mpc:.1f}",
                                   of_nominal_peak(mpc, threads),
                                   f"{rate:.1f}", f"{peak:.1f}" if peak > 0 else "n/a",
                                   of_measured_peak(rate, peak, threads)])
        rows = r["profile"][thread_counts[0]]
        cycles = sum(dsp_cycles(row, dsp) for row in rows)
        dsp_ms = cycles / (dsp.clock_ghz * 1e6)
        cpu = r["latency"][thread_counts[0]].get(CONFIGS[1])
        cpu_ratio = f"{cpu[0] / dsp_ms:.2f}x" if cpu else "n/a"
        paper = PAPER_TABLE7.get(name)
        dsp_rows.append([name, f"{sum(row['macs'] for row in rows) / 1e6:.0f}",
                         f"{sum(row['vrmpy'] for row in rows) / 1e6:.2f}",
                         f"{cycles / 1e6:.2f}", f"{dsp_ms:.2f}",
                         f"{cpu[0]:.2f}" if cpu else "n/a", cpu_ratio,
                         f"{paper[0] / paper[1]:.2f}x ({paper[0]:g} / {paper[1]:g} ms)"
                         if paper else "n/a"])
    if point_rows:
        out += ["## Largest 1x1 convolution", "",
                table(["model", "threads", "node", "output", "MMACs", "mean ms", "min ms",
                       "MACs/cycle (mean)", "MACs/cycle (min)",
                       f"of peak ({PEAK_MACS_PER_CYCLE} x threads)", "GMAC/s (min)",
                       "measured peak GMAC/s (1 core)", "of measured peak (x threads)"],
                      point_rows), ""]
    out += ["## DSP cost model (per model)", "", cost_model_assumptions(dsp), "",
            table(["model", "MMACs", "M vrmpy", "DSP Mcycles", "est. DSP ms",
                   f"int8 CPU built-in ms ({thread_counts[0]} thr.)",
                   "CPU / DSP", "paper Table 7 CPU / DSP"], dsp_rows), ""]
    return "\n".join(out)


def main(config: Config) -> int:
    """Benchmark, print the report (and write it to config.output)."""
    import tfquant  # noqa: F401  (loads before tensorflow; see tfquant/__init__.py)
    thread_counts = list(config.threads)
    ghz, ghz_source = cpu_clock_ghz(config.cpu_ghz)
    models = {}
    for path in config.model:
        with open(path, "rb") as f:
            int8 = f.read()
        float32 = None
        if config.float_model:
            with open(config.float_model, "rb") as f:
                float32 = f.read()
        models[os.path.basename(path)] = (int8, float32)
    for name in config.keras_application:
        _app.log(f"building and converting {name} at {config.size}x{config.size} ...")
        start = time.perf_counter()
        models[name] = build_application(name, config.size, config.classes,
                                         config.calibration_images)
        _app.log(f"  done in {time.perf_counter() - start:.0f} s")
    results = {name: benchmark_model(name, int8, float32, thread_counts, config)
               for name, (int8, float32) in models.items()}
    text = report(results, thread_counts, ghz, ghz_source, dsp_params(config), config)
    print(text)
    if config.output:
        title, _, body = text.partition("\n")
        _app.write_report(config.output, title.lstrip("# "), "\n" + body,
                          _app.command_line("tfquant-benchmark", config))
    return 0


def run():
    """Console-script entry point (tfquant-benchmark)."""
    _app.run(Config, main, __doc__)


if __name__ == "__main__":
    run()
