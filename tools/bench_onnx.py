#!/usr/bin/env python3
"""The nine light ONNX models at batch 1: Lamina beside ONNX Runtime (2 threads), in alternating rounds.

For each model (the random-weight copy from tools/onnx_light_random.py when it exists, so both frameworks
compute on plausible values; else the original light model, noted):
  - `lamina import` once, then each round: `lamina bench model.lam --batch 1 --threads 2 --no-interpreter
    --json` (the compiled library, timed call by call inside the Swift CLI, after a warm-up: no Python
    in the loop; the library is compiled on the first round and cached in a temporary folder) and ONNX
    Runtime (CPU, intra_op_num_threads 2, inter_op 1, default graph optimizations) timed call by call
    here after a warm-up, the same number of calls. Lamina's bench feeds its own random input and its own
    initializer values for the weights (it takes no weights file); the work per call does not depend on
    them.
  - per round the ratio ONNX Runtime median / Lamina median (above 1: Lamina is faster); the table shows
    each framework's median of round medians, min and max, and the median of the per-round ratios with
    their range. Tie band: 0.95-1.05.
  - for every model, the memory-bandwidth bound: bytes of weights / the machine's best measured read
    bandwidth (a 2-thread read of a 1 GiB buffer and a 2-thread copy, measured in the same run); the
    weights are read once per call at batch 1, so no framework can be faster than this. It matters for the
    FC-heavy ones (AlexNet, ZFNet-512, VGG-19).
  - ResNet-50's import time (`lamina import`) and compile time (`lamina compile --no-cache --timings`,
    fresh cache), wall clock.
  - around each timed process, the core-to-core round trip (tools/core_latency): a 2-vCPU virtual machine
    may have its two vCPUs on one die (~50 ns) or on two (~330 ns here), switching every few seconds, and
    every framework's 2-thread time moves with it (ShuffleNet 2.7 against 4-5 ms, ONNX Runtime's as much).
    Each round's state is "one die" when both probes of both frameworks are under 150 ns, "two dies" when
    all are over, else "mixed"; the ratio is also given per state, over the rounds both ran in it.
The load average is printed before and after: on a loaded machine (above 2 on 2 cores) the absolute
figures are unreliable, the per-round ratios somewhat less so.

Usage:
  swift build -c release --product lamina --scratch-path .build-release
  /work/venv/bin/python tools/onnx_light_random.py
  /work/venv/bin/python tools/bench_onnx.py [--lamina .build-release/release/lamina] [--rounds 3]
      [--runs 20] [--only resnet50,vgg19] [--original] [--json FILE] [--no-compile-time] [--cache-dir DIR]
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy

from bench_common import core_latency_probe, lamina_timing, load_average, probed, state_of, summarize, time_calls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = 2
MODELS = ["bvlc_alexnet", "vgg19", "resnet50", "densenet121", "inception_v1", "inception_v2", "squeezenet",
          "shufflenet", "zfnet512"]
CONV_HEAVY = {"resnet50", "densenet121", "inception_v1", "inception_v2", "squeezenet", "shufflenet"}
DEFAULT_RANDOM_DIR = os.path.join(os.path.expanduser("~"), ".cache", "lamina-onnx")


def light_folder():
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def model_path(name, arguments):
    copy = os.path.join(arguments.random_dir, f"light_{name}", "model.onnx")
    if not arguments.original and os.path.exists(copy):
        return copy, "random-weight copy"
    return os.path.join(light_folder(), f"light_{name}.onnx"), "original (constant weights)"


def weight_bytes(path):
    """Bytes of float weights: initializers and ConstantOfShape fills, shape tensors excluded."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(path)
    initializers = {i.name: i for i in model.graph.initializer}
    shape_inputs = {n.input[0] for n in model.graph.node if n.op_type == "ConstantOfShape"}
    total = 0
    for name, initializer in initializers.items():
        if name in shape_inputs:
            total += 4 * int(numpy.prod(numpy_helper.to_array(initializer)))
        elif initializer.data_type == onnx.TensorProto.FLOAT:
            total += 4 * int(numpy.prod(initializer.dims))
    return total


def bandwidth():
    """Best of 5: bytes/s reading a 1 GiB float32 buffer on 2 threads, and copying 512 MiB on 2 threads
    (read + write bytes counted)."""
    source = numpy.ones(256 * 1024 * 1024, numpy.float32)
    target = numpy.empty(128 * 1024 * 1024, numpy.float32)

    def on_threads(work):
        halves = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
        start = time.perf_counter()
        for t in halves:
            t.start()
        for t in halves:
            t.join()
        return time.perf_counter() - start

    n = source.size // THREADS
    m = target.size // THREADS
    read = [source.nbytes / on_threads(lambda k: source[k * n:(k + 1) * n].sum()) for _ in range(5)]
    copy = [2 * target.nbytes / on_threads(lambda k: numpy.copyto(target[k * m:(k + 1) * m],
                                                                   source[k * m:(k + 1) * m])) for _ in range(5)]
    return max(read), max(copy)


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr.strip()[:2000]}")
    return result


def lamina_bench(arguments, lam, cache, runs):
    command = [arguments.lamina, "bench", lam, "--batch", "1", "--runs", str(runs), "--seconds",
               str(arguments.seconds), "--threads", str(THREADS), "--no-interpreter", "--json",
               "--cache-dir", cache]
    return lamina_timing(command)


def onnxruntime_call(path):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in value.shape]
        feeds[value.name] = numpy.random.default_rng(1).standard_normal(shape, dtype=numpy.float32)
    return lambda: session.run(None, feeds)


def compile_time(arguments, folder):
    """ResNet-50: `lamina import` and `lamina compile --no-cache --timings`, wall clock."""
    path, kind = model_path("resnet50", arguments)
    lam = os.path.join(folder, "resnet50_timed.lam")
    start = time.perf_counter()
    run([arguments.lamina, "import", path, "-o", lam, "--weights", os.path.join(folder, "resnet50_timed.safetensors")])
    imported = time.perf_counter() - start
    start = time.perf_counter()
    result = run([arguments.lamina, "compile", lam, "-o", os.path.join(folder, "libresnet50.so"), "--no-cache",
                  "--timings", "--cache-dir", os.path.join(folder, "compile-cache")])
    compiled = time.perf_counter() - start
    return {"model": kind, "import_seconds": imported, "compile_seconds": compiled,
            "timings": (result.stdout + result.stderr).strip()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamina", default=os.path.join(ROOT, ".build-release/release/lamina"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="timed calls per framework and round")
    parser.add_argument("--seconds", type=float, default=1.0, help="at least this long per framework and round")
    parser.add_argument("--only", default=",".join(MODELS))
    parser.add_argument("--random-dir", default=DEFAULT_RANDOM_DIR)
    parser.add_argument("--original", action="store_true", help="time the original light models")
    parser.add_argument("--no-compile-time", action="store_true")
    parser.add_argument("--cache-dir", help="lamina's library cache for the timed models (default: a fresh one)")
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args()
    arguments.lamina = os.path.abspath(arguments.lamina)
    if not os.path.exists(arguments.lamina):
        print(f"no lamina binary at {arguments.lamina}", file=sys.stderr)
        return 2
    names = arguments.only.split(",")
    print(f"threads: {THREADS}; load average before: {load_average()}", flush=True)
    read_rate, copy_rate = bandwidth()
    best = max(read_rate, copy_rate)
    print(f"memory bandwidth, 2 threads: read {read_rate / 1e9:.1f} GB/s, copy {copy_rate / 1e9:.1f} GB/s "
          f"(read + write bytes); the bound uses {best / 1e9:.1f} GB/s", flush=True)
    report = {"load_before": os.getloadavg(), "read_bytes_per_second": read_rate,
              "copy_bytes_per_second": copy_rate, "models": {}}
    folder = tempfile.mkdtemp(prefix="lamina-bench-onnx-")
    try:
        probe = core_latency_probe(folder)
        if not arguments.no_compile_time and "resnet50" in names:
            timing = compile_time(arguments, folder)
            report["resnet50_import_compile"] = timing
            print(f"ResNet-50 ({timing['model']}): import {timing['import_seconds']:.2f} s, compile (no cache) "
                  f"{timing['compile_seconds']:.2f} s, together {timing['import_seconds'] + timing['compile_seconds']:.2f} s",
                  flush=True)
            for line in timing["timings"].splitlines():
                print(f"    {line}")
        header = (f"\n{'model':<13} {'framework':<12} {'median':>10} {'min':>10} {'max':>10} {'runs':>5}  "
                  f"{'ratio (median of rounds) [range]':<34} {'bandwidth bound':>16}  round medians (ms)")
        rows = []
        for name in names:
            path, kind = model_path(name, arguments)
            lam = os.path.join(folder, f"{name}.lam")
            weights = os.path.join(folder, f"{name}.safetensors")
            imported = subprocess.run([arguments.lamina, "import", path, "-o", lam, "--weights", weights],
                                      capture_output=True, text=True)
            if os.path.exists(weights):
                os.remove(weights)  # bench uses its own initializers
            rounds = {"lamina": [], "onnxruntime": []}
            latencies = []  # per round: the probes around both frameworks' timings
            if imported.returncode != 0:  # ONNX Runtime alone, so its time stands beside the bound
                print(f"{name}: lamina import failed ({imported.stderr.strip().splitlines()[-1][:200]}); "
                      "ONNX Runtime timed alone", flush=True)
                del rounds["lamina"]
            cache = arguments.cache_dir or os.path.join(folder, "cache")
            call = onnxruntime_call(path)
            for _ in range(arguments.rounds):
                probes = []
                if "lamina" in rounds:
                    timing, around = probed(probe, lambda: lamina_bench(arguments, lam, cache, arguments.runs))
                    rounds["lamina"].append(timing)
                    probes += around
                timing, around = probed(probe, lambda: time_calls(call, arguments.runs, arguments.seconds))
                rounds["onnxruntime"].append(timing)
                latencies.append(probes + around)
            del call
            ratios = [o["median"] / l["median"] for o, l in zip(rounds["onnxruntime"], rounds.get("lamina", []))]
            states = [state_of(probes) for probes in latencies]
            by_state = {}
            for ratio, state in zip(ratios, states):
                by_state.setdefault(state, []).append(ratio)
            bound = weight_bytes(path) / best
            results = {k: summarize(v) for k, v in rounds.items()}
            report["models"][name] = {"model": kind, "results": results, "ratios": ratios,
                                      "core_latency_ns": latencies, "states": states,
                                      "weight_bytes": weight_bytes(path), "bound_seconds": bound}
            rows.append((name, kind, results, ratios, bound))
            print_model(header if len(rows) == 1 else None, name, results, ratios, bound)
            if ratios and probe:
                print(f"{'':<13} {'by state':<12} " + "; ".join(
                    f"{state}: {statistics.median(values):.2f}x ({len(values)} rounds)"
                    for state, values in sorted(by_state.items())), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report["load_after"] = os.getloadavg()
    print(f"\nload average after: {load_average()}")
    print("ratio: ONNX Runtime's median over Lamina's per round (above 1: Lamina is faster), median of the "
          "rounds; targets: >= 0.95 everywhere (5% tie band), >= 1.10 on " + ", ".join(sorted(CONV_HEAVY)))
    kinds = {r[1] for r in rows}
    print("models timed: " + ", ".join(sorted(kinds)))
    if arguments.json:
        with open(arguments.json, "w") as file:
            json.dump(report, file, indent=1)
    return 0


def print_model(header, name, results, ratios, bound):
    if header:
        print(header)
    for framework, timing in results.items():
        ratio = ""
        if framework == "onnxruntime" and ratios:
            ratio = f"{statistics.median(ratios):5.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        medians = ", ".join(f"{m * 1e3:.2f}" for m in timing["round medians"])
        bound_text = f"{bound * 1e3:9.2f} ms" if framework == "lamina" or len(results) == 1 else ""
        print(f"{name:<13} {framework:<12} {timing['median'] * 1e3:8.2f}ms {timing['min'] * 1e3:8.2f}ms "
              f"{timing['max'] * 1e3:8.2f}ms {timing['runs']:>5}  {ratio:<34} {bound_text:>16}  [{medians}]",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
