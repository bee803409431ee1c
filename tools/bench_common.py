"""Timing shared by the benchmark scripts (bench_cnn.py, bench_onnx.py, bench_inference.py,
bench_training.py): a framework's calls timed one by one in Python, `lamina bench --json`'s own timing
read back, rounds summarized, the load average printed beside the figures, and the core-to-core probe
(tools/core_latency) that says whether the two vCPUs shared a die while something was timed.

The scripts import it as `import bench_common` (Python puts the script's folder, tools/, on the path).
"""

import json
import os
import statistics
import subprocess
import time


def time_calls(call, runs, min_seconds=1.0, warmup=10, max_calls=None):
    """Seconds per call: at least `runs` calls and `min_seconds` in total (but at most `max_calls`
    calls, when given), after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    samples, total = [], 0.0
    while len(samples) < runs or total < min_seconds:
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        samples.append(elapsed)
        total += elapsed
        if max_calls is not None and len(samples) >= max_calls:
            break
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": len(samples)}


def lamina_timing(command, key="compiled"):
    """Runs a `lamina bench ... --json` command and returns the timing it printed under `key`
    ("compiled", or "train step" with --train) as median, min, max and runs."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr.strip()[:2000]}")
    timing = json.loads(result.stdout.strip().splitlines()[-1])[key]
    return {"median": timing["median_seconds"], "min": timing["min_seconds"], "max": timing["max_seconds"],
            "runs": timing["runs"]}


def summarize(rounds):
    """Rounds of `time_calls` or `lamina_timing` results as one: the median of the rounds' medians, the
    smallest min, the largest max, every run, and the rounds' medians."""
    return {"median": statistics.median(r["median"] for r in rounds), "min": min(r["min"] for r in rounds),
            "max": max(r["max"] for r in rounds), "runs": sum(r["runs"] for r in rounds),
            "round medians": [r["median"] for r in rounds]}


def load_average():
    """The 1, 5 and 15-minute load averages as text ("1.52 1.30 1.10")."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


SAME_DIE_NS = 150  # core-to-core round trips under this: the two vCPUs share a die


def core_latency_probe(folder):
    """A function returning the core-to-core round trip in ns (tools/core_latency), or None without a C compiler."""
    binary = os.path.join(folder, "core_latency")
    compiled = subprocess.run(["cc", "-O2", "-pthread", os.path.join(os.path.dirname(os.path.abspath(__file__)), "core_latency", "core_latency.c"),
                               "-o", binary], capture_output=True, text=True)
    if compiled.returncode != 0:
        print(f"no core-to-core probe (cc failed: {compiled.stderr.strip()[:200]})", flush=True)
        return None
    return lambda: float(subprocess.run([binary, "20000"], capture_output=True, text=True, check=True).stdout)


def probed(probe, timed):
    """(timed(), [probe before, probe after]) ([] without a probe). Each probe waits 0.1 s first, so the threads of
    the run before it (which spin a while when idle) are asleep and not sharing the cores with the probe's."""
    def settled():
        time.sleep(0.1)
        return probe()
    before = settled() if probe else None
    result = timed()
    return result, ([before, settled()] if probe else [])


def state_of(latencies):
    if not latencies:
        return "unknown"
    if all(x < SAME_DIE_NS for x in latencies):
        return "one die"
    if all(x >= SAME_DIE_NS for x in latencies):
        return "two dies"
    return "mixed"
